"""A simulated PTP hardware clock, to drive calibration in tests and benchmarks.

The TSC is the ideal local counter here; the PHC runs at (1 + drift + wander(t)) of
true time, where wander is a random walk of the rate. Reads come in brackets like
PTP_SYS_OFFSET_EXTENDED's: each takes a random time (read jitter) on each side of the
instant the PHC is sampled, and an asymmetric delay moves that instant off the middle.
"""
from __future__ import annotations

import numpy as np


class SimulatedPhc:
    """A PHC with configurable offset, drift (ppm), wander (ppm per sqrt-second), read
    jitter (mean extra delay per side, ns) and asymmetric read delay (ns)."""

    def __init__(self, *, tsc_hz: float = 2.5e9, offset_ns: float = 1.7e18, drift_ppm: float = 50.0,
                 wander_ppm_per_s: float = 1.0, jitter_ns: float = 200.0, asymmetry_ns: float = 0.0,
                 read_ns: float = 300.0, seed: int = 0):
        self.domain = "simulated PHC"
        self.tsc_hz = tsc_hz
        self.jitter_ns = jitter_ns
        self.asymmetry_ns = asymmetry_ns
        self.read_ns = read_ns
        self.rng = np.random.default_rng(seed)
        self.wander = wander_ppm_per_s * 1e-6
        self.t_ns = 0.0                        # true time since start
        self.offset_ns = int(offset_ns)        # PHC at start; kept apart so floats keep sub-ns precision
        self.phc_rel = 0.0                     # PHC now, less offset_ns
        self.rate = 1.0 + drift_ppm * 1e-6     # PHC ns per true ns, changes as it wanders

    @property
    def tsc(self) -> int:
        return int(self.t_ns * self.tsc_hz / 1e9)

    def advance(self, dt_ns: float) -> None:
        """Let ``dt_ns`` of true time pass (in steps short enough for the rate walk)."""
        while dt_ns > 0:
            step = min(dt_ns, 1e6)
            self.phc_rel += self.rate * step
            self.t_ns += step
            self.rate += self.wander * np.sqrt(step / 1e9) * self.rng.standard_normal()
            dt_ns -= step

    @property
    def phc_ns(self) -> int:
        """The PHC reading now."""
        return self.phc_at(self.t_ns)

    def phc_at(self, t_ns: float) -> int:
        """The PHC at true time ``t_ns`` near now (rate held over the gap)."""
        return self.offset_ns + round(self.phc_rel + self.rate * (t_ns - self.t_ns))

    def read(self, reads: int) -> np.ndarray:
        """``reads`` bracketed reads in a row: rows of (tsc_before, phc_ns, tsc_after)."""
        rows = np.zeros((reads, 3), np.int64)
        for i in range(reads):
            before = self.t_ns
            lead, lag = self.rng.exponential(self.jitter_ns, 2)
            sampled_at = before + self.read_ns / 2 + lead + self.asymmetry_ns
            after = before + self.read_ns + lead + lag
            rows[i] = (int(before * self.tsc_hz / 1e9), self.phc_at(sampled_at),
                       int(after * self.tsc_hz / 1e9))
            self.advance(after - before)
        return rows


def calibration_errors(phc: SimulatedPhc, *, seconds: float = 60.0, interval_ms: float = 1.0,
                       reads: int = 5, warmup_s: float = 5.0, read_delay_ns: float = 0.0,
                       seed: int = 0) -> np.ndarray:
    """Run netio.clock's Calibrator against ``phc`` and return its errors (model - PHC, ns),
    taken just before each new sample, when the model is stalest, after ``warmup_s``."""
    from netio.clock import Calibrator

    calibrator = Calibrator(phc.tsc_hz, phc.domain, read_delay_ns=read_delay_ns)
    rng = np.random.default_rng(seed)
    errors = []
    while phc.t_ns < seconds * 1e9:
        model = calibrator.add(phc.read(reads))
        phc.advance(interval_ms * 1e6 * rng.uniform(0.5, 1.5))
        if phc.t_ns > warmup_s * 1e9:
            errors.append(model.to_ns(phc.tsc) - phc.phc_ns)
    return np.array(errors, np.float64)


def naive_errors(phc: SimulatedPhc, *, seconds: float = 60.0, interval_ms: float = 1.0,
                 warmup_s: float = 5.0) -> np.ndarray:
    """The naive method: cycles per ns from one read before and one after a sleep(1), then
    extrapolated; errors at the same instants as calibration_errors (ns)."""
    before = phc.read(1)[0]
    phc.advance(1e9)
    after = phc.read(1)[0]
    ns_per_cycle = (after[1] - before[1]) / ((after[0] + after[2]) / 2 - (before[0] + before[2]) / 2)
    tsc0, ns0 = (after[0] + after[2]) // 2, int(after[1])
    errors = []
    while phc.t_ns < seconds * 1e9:
        phc.advance(interval_ms * 1e6)
        if phc.t_ns > warmup_s * 1e9:
            errors.append(ns0 + (phc.tsc - tsc0) * ns_per_cycle - phc.phc_ns)
    return np.array(errors, np.float64)
