"""One timeline: TSC readings calibrated against a reference clock (a PHC or the system clock).

A reference is read in brackets, (tsc_before, ref_ns, tsc_after), several times per
sample; the read with the shortest bracket is kept, because its midpoint is the one
we are surest of. A Kalman filter over (reference time, rate) follows offset and drift
(the rate is a random walk, which is how oscillators wander) and gives an error
estimate. The result is a ClockModel: reference ns = ns0 + (tsc - tsc0) * ns_per_cycle,
also as a kernel-style mult/shift pair in a numpy record that C code reads
(`cffi_build/tsc_clock.h`), so hot paths convert in a few nanoseconds.

All conversions between clock domains go through Timeline; a timestamp whose domain
cannot be reached raises ClockDomainError rather than being mixed in silently.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Protocol

import numpy as np

from netio import tsc as _tsc
from netio._tsc import ffi, lib
from netio.port import TimestampSource

SHIFT = 40   # mult = ns_per_cycle << 40: sub-ns precision over minutes between re-anchors

# Mirrors struct netio_clock in cffi_build/tsc_clock.h field for field.
CLOCK_DTYPE = np.dtype([("tsc0", "<u8"), ("ns0", "<i8"), ("mult", "<u8"), ("shift", "<u4"), ("seq", "<u4")])


class ClockDomainError(ValueError):
    """A timestamp's clock cannot be put on this timeline."""


class Reference(Protocol):
    """A clock to calibrate the TSC against."""

    domain: str   # e.g. "CLOCK_REALTIME", "PHC /dev/ptp0", "simulated PHC"

    def read(self, reads: int) -> np.ndarray:
        """``reads`` rows of (tsc_before, ref_ns, tsc_after), int64."""


class SystemClock:
    """CLOCK_REALTIME or CLOCK_TAI (what phc2sys disciplines) read by clock_gettime."""

    def __init__(self, clock_id: int = time.CLOCK_REALTIME):
        self.clock_id = clock_id
        self.domain = {time.CLOCK_REALTIME: "CLOCK_REALTIME", time.CLOCK_TAI: "CLOCK_TAI",
                       time.CLOCK_MONOTONIC_RAW: "CLOCK_MONOTONIC_RAW"}.get(clock_id, f"clock {clock_id}")

    def read(self, reads: int) -> np.ndarray:
        rows = np.zeros((reads, 3), np.int64)
        if lib.sample_clock(self.clock_id, reads, ffi.cast("int64_t *", rows.ctypes.data)) < 0:
            raise OSError(f"clock_gettime({self.domain}) failed")
        return rows


class PtpClock:
    """A PTP hardware clock (/dev/ptpN), read with PTP_SYS_OFFSET_PRECISE where the driver
    offers a hardware cross-timestamp, else PTP_SYS_OFFSET_EXTENDED.

    The PTP ioctls bracket the PHC read with system-clock (CLOCK_REALTIME) reads; the
    bracket is put on the TSC axis by interpolating between TSC reads taken around the ioctl.
    """

    def __init__(self, path: str):
        try:
            self.fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise ClockDomainError(f"no PTP hardware clock at {path}; `ls /dev/ptp*` lists the ones "
                                   "present (ethtool -T IFACE names an interface's)") from None
        except PermissionError:
            raise ClockDomainError(f"cannot open {path}: run as root or give this user read/write "
                                   "access to the PTP device") from None
        self.domain = f"PHC {path}"
        out = np.zeros(3, np.int64)
        rc = lib.ptp_offset_precise(self.fd, ffi.cast("int64_t *", out.ctypes.data))
        self.method = "PTP_SYS_OFFSET_PRECISE" if rc == 0 else "PTP_SYS_OFFSET_EXTENDED"

    def read(self, reads: int) -> np.ndarray:
        sys_rows = np.zeros((25, 3), np.int64)
        before = SystemClock().read(1)[0]
        if self.method == "PTP_SYS_OFFSET_PRECISE":
            out = np.zeros(3, np.int64)
            rc = lib.ptp_offset_precise(self.fd, ffi.cast("int64_t *", out.ctypes.data))
            sys_rows[0] = (out[1], out[0], out[1])
            n = 1 if rc == 0 else rc
        else:
            n = lib.ptp_offset_extended(self.fd, min(reads, 25), ffi.cast("int64_t *", sys_rows.ctypes.data))
        after = SystemClock().read(1)[0]
        if n < 0:
            raise OSError(-n, f"{self.method} on {self.domain}: {os.strerror(-n)}")
        # system ns -> TSC by the straight line through the outer brackets
        sys0, sys1 = before[1], after[1]
        tsc0, tsc1 = (before[0] + before[2]) / 2, (after[0] + after[2]) / 2
        slope = (tsc1 - tsc0) / max(sys1 - sys0, 1)
        rows = sys_rows[:n].astype(np.float64)
        tsc_before = tsc0 + (rows[:, 0] - sys0) * slope
        tsc_after = tsc0 + (rows[:, 2] - sys0) * slope
        return np.stack([tsc_before, rows[:, 1], tsc_after], axis=1).astype(np.int64)

    def close(self) -> None:
        os.close(self.fd)


@dataclasses.dataclass(frozen=True)
class ClockModel:
    """reference ns = ns0 + (tsc - tsc0) * ns_per_cycle, with a 1-sigma error estimate."""

    tsc0: int
    ns0: int
    ns_per_cycle: float
    err_ns: float
    domain: str

    def to_ns(self, tsc: int | np.ndarray) -> int | np.ndarray:
        """TSC readings as reference nanoseconds (exact integer arithmetic as in C)."""
        mult, shift = self.mult_shift()
        if isinstance(tsc, np.ndarray):
            out = np.empty(tsc.shape, np.int64)
            record = self.as_record()
            lib.tsc_to_ns_batch(ffi.cast("struct netio_clock *", record.ctypes.data),
                                ffi.from_buffer("uint64_t[]", np.ascontiguousarray(tsc, np.uint64)),
                                ffi.from_buffer("int64_t[]", out), out.size)
            return out
        return self.ns0 + (((int(tsc) - self.tsc0) * mult) >> shift)

    def mult_shift(self) -> tuple[int, int]:
        """The kernel-style pair: ns = cycles * mult >> shift."""
        return round(self.ns_per_cycle * (1 << SHIFT)), SHIFT

    def as_record(self) -> np.ndarray:
        """This model as a one-element CLOCK_DTYPE array (struct netio_clock for C)."""
        mult, shift = self.mult_shift()
        return np.array([(self.tsc0, self.ns0, mult, shift, 0)], CLOCK_DTYPE)


class Calibrator:
    """Tracks a reference clock against the TSC: a Kalman filter over (reference ns, rate).

    ``wander_ppm_per_s`` is the rate's random walk (1-sigma change in one second);
    ``read_delay_ns`` corrects a known asymmetry between bracket midpoint and the instant
    the reference was read (positive: the read happens that much after the midpoint).
    """

    def __init__(self, nominal_hz: float, domain: str, *, wander_ppm_per_s: float = 1.0,
                 read_delay_ns: float = 0.0, min_read_ns: float = 5.0):
        self.p0 = 1e9 / nominal_hz            # nominal ns per cycle
        self.domain = domain
        self.q_rate = (wander_ppm_per_s * 1e-6) ** 2 / 1e9   # rate variance per ns elapsed
        self.read_delay_ns = read_delay_ns
        self.min_read_ns = min_read_ns
        self.ns_base = 0                      # integer anchor: float state keeps sub-ns precision
        self.x: np.ndarray | None = None      # [reference ns at tsc_k less ns_base, rate (ns per nominal ns)]
        self.P = np.zeros((2, 2))
        self.tsc_k = 0
        self.samples = 0

    def add(self, rows: np.ndarray) -> ClockModel:
        """Fold in one sample (several bracketed reads; the shortest bracket is used)."""
        rows = np.asarray(rows, np.int64)
        best = rows[np.argmin(rows[:, 2] - rows[:, 0])]
        before, ref_ns, after = (int(v) for v in best)
        window_ns = (after - before) * self.p0
        tsc_mid = (before + after) // 2
        if self.x is None:
            self.ns_base = ref_ns
        z = (ref_ns - self.ns_base) - self.read_delay_ns
        # the read happened somewhere in the window: uniform over it, plus a floor for the clock itself
        r = window_ns ** 2 / 12 + self.min_read_ns ** 2
        if self.x is None:
            self.x = np.array([float(z), 1.0])
            self.P = np.diag([r, (100e-6) ** 2])     # the nominal rate is good to 100 ppm
        else:
            dt = (tsc_mid - self.tsc_k) * self.p0
            F = np.array([[1.0, dt], [0.0, 1.0]])
            Q = self.q_rate * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
            self.x = F @ self.x
            self.P = F @ self.P @ F.T + Q
            innovation = z - self.x[0]
            s = self.P[0, 0] + r
            gain = self.P[:, 0] / s
            self.x = self.x + gain * innovation
            self.P = self.P - np.outer(gain, self.P[0, :])
        self.tsc_k = tsc_mid
        self.samples += 1
        return self.model()

    def model(self) -> ClockModel:
        if self.x is None:
            raise ClockDomainError(f"no calibration sample against {self.domain} yet")
        return ClockModel(self.tsc_k, self.ns_base + int(round(self.x[0])), self.x[1] * self.p0,
                          float(np.sqrt(max(self.P[0, 0], 0.0))), self.domain)


class ClockSync:
    """Keeps a ClockModel of ``reference`` up to date from a background thread.

    ``record`` is the struct netio_clock that C code reads; it is written as a seqlock
    (seq odd while writing), so a reader retries when seq changed or is odd.
    """

    def __init__(self, reference: Reference, *, interval_s: float = 0.01, reads: int = 8,
                 wander_ppm_per_s: float = 1.0):
        self.reference = reference
        self.interval_s = interval_s
        self.reads = reads
        self.frequency = _tsc.frequency()
        self.calibrator = Calibrator(self.frequency.hz, reference.domain, wander_ppm_per_s=wander_ppm_per_s)
        self.record = np.zeros(1, CLOCK_DTYPE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for _ in range(8):                    # a usable model before start() returns
            self.update()
            time.sleep(interval_s / 4)

    def update(self) -> ClockModel:
        model = self.calibrator.add(self.reference.read(self.reads))
        fresh = model.as_record()[0]
        rec = self.record[0]
        seq = int(rec["seq"])
        self.record["seq"] = seq + 1
        for field in ("tsc0", "ns0", "mult", "shift"):
            self.record[field] = fresh[field]
        self.record["seq"] = seq + 2
        return model

    @property
    def model(self) -> ClockModel:
        return self.calibrator.model()

    def start(self) -> ClockSync:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.update()
        self._thread = threading.Thread(target=loop, name="netio-clock-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> ClockSync:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tai_offset_ns() -> int:
    """CLOCK_TAI - CLOCK_REALTIME as the kernel keeps it: whole seconds (0 until ptp4l,
    phc2sys -w or chrony sets it)."""
    gap = time.clock_gettime_ns(time.CLOCK_TAI) - time.clock_gettime_ns(time.CLOCK_REALTIME)
    return round(gap / 1e9) * 1_000_000_000


class Timeline:
    """Puts timestamps of every source on one reference timeline, or refuses to.

    ``tsc`` is the TSC model. Kernel software stamps (CLOCK_REALTIME) go through as they
    are when the reference is CLOCK_REALTIME (or a PHC that phc2sys keeps CLOCK_REALTIME
    locked to: say so with ``realtime_is_reference=True``); NIC stamps when it is a PHC.
    Kernel CLOCK_TAI stamps (the XDP program's) differ from CLOCK_REALTIME by the kernel's
    TAI offset (``tai_offset_ns``, read once here), and go through as they are on a
    CLOCK_TAI timeline.
    """

    def __init__(self, tsc: ClockModel, *, realtime_is_reference: bool | None = None,
                 tai_offset: int | None = None):
        self.tsc = tsc
        self.domain = tsc.domain
        self.realtime_is_reference = (tsc.domain == "CLOCK_REALTIME") if realtime_is_reference is None \
            else realtime_is_reference
        self.tai_offset_ns = tai_offset_ns() if tai_offset is None else tai_offset

    def to_reference(self, values: np.ndarray, source: TimestampSource) -> np.ndarray:
        """``values`` stamped by ``source``, as int64 ns on this timeline."""
        values = np.asarray(values)
        if source is TimestampSource.TSC:
            return self.tsc.to_ns(values.astype(np.uint64))
        tai = self.domain == "CLOCK_TAI"
        if source is TimestampSource.KERNEL and (self.realtime_is_reference or tai):
            return values.astype(np.int64) + (self.tai_offset_ns if tai else 0)
        if source is TimestampSource.KERNEL_TAI and (self.realtime_is_reference or tai):
            return values.astype(np.int64) - (0 if tai else self.tai_offset_ns)
        if source is TimestampSource.NIC and self.domain.startswith("PHC"):
            return values.astype(np.int64)
        raise ClockDomainError(f"{source.value} timestamps cannot be put on the {self.domain} timeline "
                               "without a calibration between the two clocks")


def convert_cost_ns(model: ClockModel, iterations: int = 10_000_000) -> float:
    """Nanoseconds one C conversion takes (dependent conversions in a loop, TSC-timed)."""
    record = model.as_record()
    sink = ffi.new("int64_t *")
    cycles = lib.convert_cost(ffi.cast("struct netio_clock *", record.ctypes.data), iterations, sink)
    return cycles * model.ns_per_cycle / iterations


def open_reference(spec: str = "realtime") -> Reference:
    """``realtime``, ``tai`` or a PHC device path such as ``/dev/ptp0``."""
    if spec == "realtime":
        return SystemClock(time.CLOCK_REALTIME)
    if spec == "tai":
        return SystemClock(time.CLOCK_TAI)
    if spec.startswith("/dev/ptp"):
        return PtpClock(spec)
    raise ClockDomainError(f"unknown reference clock {spec!r}: use realtime, tai or /dev/ptpN")


__all__ = ["CLOCK_DTYPE", "Calibrator", "ClockDomainError", "ClockModel", "ClockSync", "PtpClock",
           "Reference", "SystemClock", "Timeline", "convert_cost_ns", "open_reference", "tai_offset_ns"]
