"""Namespaces, veth pairs and interface set-up (netio.netns, netio.iface): the test bench wire."""
from __future__ import annotations

import ctypes
import os
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from netio import iface
from netio.netns import VethNamespace, leftovers, reclaim_abandoned
from netio.port import PortError

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and veth pairs need root")]

PREFIX = "tns"
MINE = f"{PREFIX}{os.getpid():x}x"   # the names this test process makes


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    yield
    assert leftovers(MINE) == []


@pytest.fixture
def veth():
    with VethNamespace(PREFIX) as v:
        yield v


def _xdp_pass_program() -> int:
    """Load `return XDP_PASS` with the bpf() syscall; returns the program's fd."""
    insns = bytes.fromhex("b700000002000000" "9500000000000000")   # r0 = 2; exit
    insns_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("IIQQIIQII16s", 6, 2, ctypes.addressof(insns_buf), ctypes.addressof(license_buf),
                       0, 0, 0, 0, 0, b"netio_pass")                   # BPF_PROG_TYPE_XDP
    attr_buf = ctypes.create_string_buffer(attr, 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(321, 5, attr_buf, 128)                           # bpf(BPF_PROG_LOAD, ...)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_LOAD failed")
    return fd


def test_the_pair_joins_the_namespace_to_the_root_namespace(veth):
    """Both ends are up with addresses in one subnet, and IPv4 crosses the pair."""
    assert iface.link_state(veth.host_if).admin_up and iface.link_state(veth.host_if).carrier
    assert iface.link_state(veth.ns_if, netns=veth.ns_name).admin_up
    assert iface.link_state(veth.host_if).mac == veth.host_mac
    assert iface.link_state(veth.host_if).kind == "veth" and iface.link_state("lo").kind == ""
    assert iface.link_state(veth.ns_if, netns=veth.ns_name).mac == veth.ns_mac
    assert veth.host_ip.startswith("10.2") and veth.ns_ip.rsplit(".", 1)[0] == veth.host_ip.rsplit(".", 1)[0]
    ping = veth.run(["ping", "-c", "1", "-W", "2", veth.host_ip], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # the peer is not in the root namespace
    with pytest.raises(PortError, match="no network interface"):
        iface.ifindex(veth.ns_if)


def test_names_are_unique_short_and_subnets_do_not_collide():
    with VethNamespace(PREFIX) as a, VethNamespace(PREFIX) as b:
        names = {a.ns_name, b.ns_name, a.host_if, b.host_if, a.ns_if, b.ns_if}
        assert len(names) == 6 and all(len(n) <= 15 for n in names)
        assert a.subnet != b.subnet
    with pytest.raises(ValueError, match="too long"):
        VethNamespace("a_very_long_prefix")


def test_a_fixed_subnet_index_gives_a_fixed_subnet_and_refuses_one_in_use():
    with VethNamespace(PREFIX, subnet_index=12345) as a:
        assert str(a.subnet) == "10.248.57.0/24"
        with pytest.raises(RuntimeError, match="in use"):
            VethNamespace(PREFIX, subnet_index=12345).open()


def test_everything_is_removed_when_the_body_raises():
    with pytest.raises(ZeroDivisionError):
        with VethNamespace(PREFIX) as v:
            name = v.ns_name
            assert leftovers(name)
            1 / 0
    assert leftovers(name) == []


def test_popen_runs_inside_the_namespace(veth):
    proc = veth.popen(["ip", "-o", "link", "show", veth.ns_if], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and veth.ns_if in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_removes_its_namespace_and_pair(signum):
    """The handlers release, then chain: SIGTERM still ends the process, SIGINT still raises."""
    code = textwrap.dedent(f"""
        import sys, time
        from netio.netns import VethNamespace
        with VethNamespace("{PREFIX}") as v:
            print(v.ns_name, flush=True)
            try:
                time.sleep(30)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name and leftovers(name)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert leftovers(name) == []
    if signum == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM
    else:
        assert "interrupted" in out and proc.returncode == 3


def test_what_a_killed_process_left_is_removed_by_the_next_one():
    """SIGKILL runs no handler: the owner's note lets the next netio process clear up."""
    code = textwrap.dedent(f"""
        import time
        from netio.netns import VethNamespace
        v = VethNamespace("{PREFIX}").__enter__()
        print(v.ns_name, flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()
    assert f"namespace {name}" in leftovers(name)
    assert name in reclaim_abandoned()
    assert leftovers(name) == []


def test_a_forked_child_that_is_killed_does_not_remove_the_parents_namespace(veth):
    """pyroute2 forks helpers and kills them; they inherit the handlers but not the objects."""
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    os.waitpid(pid, 0)
    assert f"namespace {veth.ns_name}" in leftovers(veth.ns_name)


def test_offloads_switch_and_ethtool_agrees(veth):
    state = iface.set_offloads(veth.ns_if, tx_checksum=False, gro=True, netns=veth.ns_name)
    assert state == {"tx_checksum": False, "gro": True}
    shown = veth.run(["ethtool", "-k", veth.ns_if], capture_output=True, text=True, check=True).stdout
    assert "tx-checksumming: off" in shown and "generic-receive-offload: on" in shown
    assert iface.set_offloads(veth.host_if, tx_checksum=True, gro=False) == {"tx_checksum": True, "gro": False}
    assert iface.set_offloads(veth.host_if, gro=True) == {"tx_checksum": True, "gro": True}
    assert iface.offloads(veth.host_if) == {"tx_checksum": True, "gro": True}


def test_queue_count_and_ifindex_match_the_kernel(veth):
    queues = len([q for q in os.listdir(f"/sys/class/net/{veth.host_if}/queues") if q.startswith("rx-")])
    assert iface.queue_count(veth.host_if) == queues
    with open(f"/sys/class/net/{veth.host_if}/ifindex") as f:
        assert iface.ifindex(veth.host_if) == int(f.read())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a veth gets one queue per CPU at most")
def test_queue_count_can_be_set_within_what_the_driver_allows(veth):
    assert iface.set_queue_count(veth.host_if, 2) == 2
    shown = subprocess.run(["ethtool", "-l", veth.host_if], capture_output=True, text=True, check=True).stdout
    assert shown.split("Current hardware settings:")[1].split()[:4] == ["RX:", "2", "TX:", "2"]
    assert iface.set_queue_count(veth.host_if, 1) == 1
    with pytest.raises(PortError, match=r"takes 1 to \d+ queues, not 999"):
        iface.set_queue_count(veth.host_if, 999)


def test_link_state_sees_a_link_that_is_down(veth):
    subprocess.run(["ip", "link", "set", veth.host_if, "down"], check=True)
    state = iface.link_state(veth.host_if)
    assert not state.admin_up and state.operstate == "DOWN"


def test_xdp_programs_attach_and_detach_through_netlink(veth):
    fd = _xdp_pass_program()
    try:
        assert iface.xdp_program(veth.host_if) is None
        native = iface.attach_xdp(veth.host_if, fd, mode="native")
        assert native.mode == "native" and native.prog_id > 0
        with pytest.raises(PortError, match="another XDP program is attached"):
            iface.attach_xdp(veth.host_if, fd, mode="native")
        assert not iface.detach_xdp(veth.host_if, prog_id=native.prog_id + 1)   # not that one
        assert iface.detach_xdp(veth.host_if, prog_id=native.prog_id)
        assert iface.xdp_program(veth.host_if) is None
        generic = iface.attach_xdp(veth.ns_if, fd, mode="generic", netns=veth.ns_name)
        assert generic.mode == "generic"
        assert iface.xdp_program(veth.ns_if, netns=veth.ns_name) == generic
        # native and generic cannot be active together: the refusal says what to do
        iface.attach_xdp(veth.host_if, fd, mode="native")
        with pytest.raises(PortError, match="in generic mode: File exists; an XDP program in another mode"):
            iface.attach_xdp(veth.host_if, fd, mode="generic")
        assert iface.detach_xdp(veth.host_if) and iface.xdp_programs(veth.host_if) == []
    finally:
        os.close(fd)
    # closing the VethNamespace detaches it (the fixture's close and the module check prove it)


def test_leftovers_names_what_is_left():
    v = VethNamespace(PREFIX)
    v.open()
    try:
        found = leftovers(v.ns_name)
        assert f"namespace {v.ns_name}" in found and f"link {v.host_if}" in found
        fd = _xdp_pass_program()
        try:
            attached = iface.attach_xdp(v.host_if, fd, mode="generic")
        finally:
            os.close(fd)
        assert f"XDP program {attached.prog_id} on {v.host_if}" in leftovers(v.ns_name)
    finally:
        v.close()
    assert leftovers(v.ns_name) == []


def test_missing_things_get_one_clear_sentence():
    with pytest.raises(PortError, match="no network interface named nosuch0"):
        iface.link_state("nosuch0")
    with pytest.raises(PortError, match="no network interface named nosuch0"):
        iface.set_offloads("nosuch0", gro=True)
    with pytest.raises(PortError, match="no network namespace named nosuchns"):
        iface.queue_count("lo", netns="nosuchns")
    with pytest.raises(PortError, match="XDP mode must be"):
        iface.attach_xdp("lo", 0, mode="turbo")
