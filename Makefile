# The two commands: `make demo` and `make test` (run as root on Debian 12).
# Every target installs what it needs first, and skips what is already there.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make

# Debian packages the project builds against or drives in its tests.
APT_PACKAGES := build-essential pkg-config clang llvm \
	libxdp-dev libbpf-dev xdp-tools linux-libc-dev \
	dpdk dpdk-dev libdpdk-dev libpcap-dev \
	iverilog tshark ethtool iproute2 iputils-ping tcpdump valgrind nftables

BENCH ?=
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: test demo bench native deps clean

test: native
	$(PY) -m pytest $(PYTEST_ARGS)

demo: native
	$(VENV)/bin/netio-run --demo $(DEMO_ARGS)

bench: native
	$(PY) -m tools.bench $(BENCH)

# Rebuild the cffi modules in place (after editing anything in cffi_build/);
# `make native` runs every cffi_build/*_build.py, each alone builds one module.
native: $(STAMPS)/venv
	@failed=; for b in cffi_build/*_build.py; do \
		$(PY) $$b > $(STAMPS)/$$(basename $$b .py).log 2>&1 || { cat $(STAMPS)/$$(basename $$b .py).log; failed="$$failed $$b"; }; \
	done; if [ -n "$$failed" ]; then echo "native: failed:$$failed"; exit 1; fi; echo "native: built $$(ls cffi_build/*_build.py | wc -l) modules"

deps: $(STAMPS)/venv

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "apt: all $(words $(APT_PACKAGES)) packages present"; fi
	@touch $@

$(STAMPS)/venv: $(STAMPS)/apt pyproject.toml setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi numpy
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	@touch $@

clean:
	rm -rf build $(STAMPS) *.egg-info
	find netio engine fpga -name '_*.so' -delete
	find netio engine fpga -name '_*.[co]' -delete
