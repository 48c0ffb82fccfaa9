"""The CPU's time-stamp counter: reading it, its frequency, and whether it can be trusted.

Stage stamps on hot paths are raw TSC readings (a few cycles each); netio.clock turns
them into nanoseconds on a calibrated timeline. This module only answers "how fast does
the TSC tick, who says so, and is it safe to use at all".
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from netio._tsc import ffi, lib

CLOCK_MONOTONIC_RAW = time.CLOCK_MONOTONIC_RAW


def rdtsc() -> int:
    """The current TSC reading (not serialising: cheap, may be reordered by a few cycles)."""
    return lib.tsc_now()


def rdtscp() -> tuple[int, int]:
    """The TSC reading after earlier instructions retired, and the CPU it was read on (TSC_AUX)."""
    aux = ffi.new("uint32_t *")
    value = lib.tscp_now(aux)
    return value, aux[0]


def _cpuid(leaf: int, sub: int = 0) -> tuple[int, int, int, int] | None:
    out = ffi.new("uint32_t[4]")
    return tuple(out) if lib.cpuid_leaf(leaf, sub, out) == 0 else None


@dataclasses.dataclass(frozen=True)
class TscFrequency:
    """A TSC frequency and where it came from (exact sources first; 'measured' is the last resort)."""

    hz: float
    source: str      # "cpuid-15h" | "perf-mmap" | "hypervisor-cpuid" | "measured"
    exact: bool      # False where the figure is nominal or measured and needs calibration


def _from_cpuid_15h() -> TscFrequency | None:
    regs = _cpuid(0x15)
    if not regs:
        return None
    denominator, numerator, crystal_hz, _ = regs
    if denominator and numerator and crystal_hz:
        return TscFrequency(crystal_hz * numerator / denominator, "cpuid-15h", True)
    return None


def _from_perf_mmap() -> TscFrequency | None:
    mult, shift, zero = ffi.new("uint32_t *"), ffi.new("uint32_t *"), ffi.new("uint64_t *")
    if lib.perf_tsc_conversion(mult, shift, zero) != 0 or mult[0] == 0:
        return None
    # The kernel converts ns = cycles * mult >> shift: exactly its own view of the TSC rate.
    return TscFrequency((1 << shift[0]) * 1e9 / mult[0], "perf-mmap", True)


def _from_hypervisor() -> TscFrequency | None:
    top = _cpuid(0x40000000)
    if not top or top[0] < 0x40000010:
        return None
    regs = _cpuid(0x40000010)
    return TscFrequency(regs[0] * 1e3, "hypervisor-cpuid", True) if regs and regs[0] else None


def sample_reference(clock_id: int = CLOCK_MONOTONIC_RAW, reads: int = 16) -> tuple[int, int, int]:
    """(tsc_before, clock_ns, tsc_after) of the read with the shortest TSC window out of ``reads``."""
    rows = np.zeros((reads, 3), np.int64)
    if lib.sample_clock(clock_id, reads, ffi.cast("int64_t *", rows.ctypes.data)) < 0:
        raise OSError(f"clock_gettime({clock_id}) failed")
    best = rows[np.argmin(rows[:, 2] - rows[:, 0])]
    return int(best[0]), int(best[1]), int(best[2])


def measure_frequency(interval_s: float = 0.2) -> TscFrequency:
    """The TSC rate measured against CLOCK_MONOTONIC_RAW over ``interval_s``."""
    b0, ns0, a0 = sample_reference()
    time.sleep(interval_s)
    b1, ns1, a1 = sample_reference()
    cycles = (b1 + a1) / 2 - (b0 + a0) / 2
    return TscFrequency(cycles * 1e9 / (ns1 - ns0), "measured", False)


def frequency() -> TscFrequency:
    """The best available TSC frequency: CPUID 15h, the kernel's perf conversion, the
    hypervisor's leaf, and failing those a measurement (CPUID 16h's nominal base clock is
    not used: it is the marketing frequency, not the TSC's)."""
    for source in (_from_cpuid_15h, _from_perf_mmap, _from_hypervisor):
        found = source()
        if found:
            return found
    return measure_frequency()


@dataclasses.dataclass(frozen=True)
class TscCheck:
    """Whether TSC readings are safe to use as a clock on this machine."""

    invariant: bool           # CPUID 80000007h EDX[8], or constant_tsc + nonstop_tsc
    clocksource: str          # the kernel's current clocksource ("tsc" means the kernel trusts it)
    warnings: list[str]

    @property
    def usable(self) -> bool:
        return self.invariant


def check() -> TscCheck:
    """Check that the TSC is invariant and that the kernel trusts it; warnings say what to do."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    regs = _cpuid(0x80000007)
    invariant = bool(regs and regs[3] & (1 << 8)) or {"constant_tsc", "nonstop_tsc"} <= flags
    source_file = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    clocksource = source_file.read_text().strip() if source_file.exists() else "unknown"
    warnings = []
    if not invariant:
        warnings.append("the TSC is not invariant (no constant_tsc/nonstop_tsc): its rate changes with "
                        "power states, so TSC stage stamps are unreliable; use CLOCK_MONOTONIC stamps instead")
    if clocksource != "tsc":
        warnings.append(f"the kernel's clocksource is {clocksource!r}, not 'tsc': the kernel did not find the "
                        "TSC stable (see dmesg); TSC readings may disagree between cores")
    if "rdtscp" not in flags:
        warnings.append("the CPU lacks rdtscp: do not call rdtscp(); rdtsc() works")
    return TscCheck(invariant, clocksource, warnings)
