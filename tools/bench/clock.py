"""Clock calibration on a simulated PHC (60 s, 50 ppm drift, 1 ppm/s wander, 200 ns read
jitter): our Kalman calibration vs the naive sleep(1) rate, same PHC parameters and seed;
plus the cost of one TSC->ns conversion in C."""
import numpy as np

from netio import tsc
from netio.clock import ClockModel, convert_cost_ns
from netio.clock_sim import SimulatedPhc, calibration_errors, naive_errors

PHC = dict(drift_ppm=50.0, wander_ppm_per_s=1.0, jitter_ns=200.0, seed=7)
SECONDS = 60.0
WARMUP_S = 5.0


def run() -> dict:
    ours = calibration_errors(SimulatedPhc(**PHC), seconds=SECONDS, warmup_s=WARMUP_S)
    naive = naive_errors(SimulatedPhc(**PHC), seconds=SECONDS, warmup_s=WARMUP_S)
    freq = tsc.frequency()
    model = ClockModel(tsc.rdtsc(), 0, 1e9 / freq.hz, 0.0, "bench")
    costs = [convert_cost_ns(model) for _ in range(5)]
    rms = float(np.sqrt(np.mean(ours ** 2)))
    naive_rms = float(np.sqrt(np.mean(naive ** 2)))
    return {
        "calib_err_ns_rms": round(rms, 2),
        "calib_err_ns_max": float(np.abs(ours).max()),
        "naive_err_ns_rms": round(naive_rms, 1),
        "naive_err_ns_max": round(float(np.abs(naive).max()), 1),
        "improvement_rms_x": round(naive_rms / rms, 1),
        "convert_ns": round(float(np.median(costs)), 3),
        "sim_seconds": SECONDS,
        "warmup_s": WARMUP_S,
        "sample_interval_ms": 1.0,
        "tsc_hz": round(freq.hz),
        "tsc_hz_source": freq.source,
    }
