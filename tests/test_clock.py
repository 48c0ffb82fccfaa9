"""netio.clock: TSC readings on one calibrated timeline, driven by a simulated PHC."""
import time

import numpy as np
import pytest

from netio import tsc
from netio.clock import (CLOCK_DTYPE, Calibrator, ClockDomainError, ClockModel, ClockSync, SystemClock,
                         Timeline, open_reference, tai_offset_ns)
from netio.clock_sim import SimulatedPhc, calibration_errors, naive_errors
from netio.port import TimestampSource


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def test_calibration_tracks_drift_and_wander_within_bounds():
    """50 ppm drift, 1 ppm/s wander, 200 ns read jitter: RMS under 20 ns, worst under 100 ns."""
    errors = calibration_errors(SimulatedPhc(drift_ppm=50, wander_ppm_per_s=1, jitter_ns=200, seed=3),
                                seconds=15, warmup_s=3)
    assert rms(errors) < 20
    assert np.abs(errors).max() < 100


def test_calibration_beats_the_naive_sleep_one_second_rate_tenfold():
    phc = dict(drift_ppm=50, wander_ppm_per_s=1, jitter_ns=200, seed=4)
    ours = calibration_errors(SimulatedPhc(**phc), seconds=15, warmup_s=3)
    naive = naive_errors(SimulatedPhc(**phc), seconds=15, warmup_s=3)
    assert rms(naive) > 10 * rms(ours)


def test_a_large_constant_offset_loses_no_precision():
    """A PHC at TAI-like 1.7e18 ns must not round the model to float64's 256 ns steps."""
    errors = calibration_errors(SimulatedPhc(offset_ns=1.7e18, drift_ppm=0, wander_ppm_per_s=0,
                                             jitter_ns=20, seed=5), seconds=4, warmup_s=1)
    assert np.abs(errors).max() < 20


def test_shortest_window_read_is_the_one_used():
    """Of several bracketed reads, the one with the narrowest TSC window decides."""
    cal = Calibrator(1e9, "test")
    rows = np.array([[1000, 5_000_000, 3000],      # 2000-cycle window: midpoint 2000
                     [1900, 4_000_000, 2100],      # 200-cycle window: midpoint 2000 -> this one
                     [500, 3_000_000, 3500]])
    model = cal.add(rows)
    assert model.tsc0 == 2000 and model.ns0 == 4_000_000


def test_uncorrected_read_asymmetry_biases_and_correction_removes_it():
    phc = dict(drift_ppm=10, wander_ppm_per_s=0.1, jitter_ns=50, asymmetry_ns=300, seed=6)
    biased = calibration_errors(SimulatedPhc(**phc), seconds=5, warmup_s=1)
    corrected = calibration_errors(SimulatedPhc(**phc), seconds=5, warmup_s=1, read_delay_ns=300)
    assert abs(np.mean(biased) - 300) < 30     # read late: the model runs 300 ns ahead
    assert abs(np.mean(corrected)) < 30


def test_error_estimate_is_honest_on_the_simulation():
    """The filter's 1-sigma estimate is within a factor of three of the error it makes."""
    phc = SimulatedPhc(drift_ppm=50, wander_ppm_per_s=1, jitter_ns=200, seed=8)
    cal = Calibrator(phc.tsc_hz, phc.domain)
    errors, estimates = [], []
    for i in range(6000):
        model = cal.add(phc.read(5))
        phc.advance(1e6)
        if i > 2000:
            errors.append(model.to_ns(phc.tsc) - phc.phc_ns)
            estimates.append(model.err_ns)
    assert rms(errors) / 3 < np.median(estimates) < 3 * rms(errors)


def test_c_conversion_matches_python_integer_arithmetic():
    model = ClockModel(tsc0=10**12, ns0=1_700_000_000_000_000_000, ns_per_cycle=0.3851921, err_ns=1, domain="x")
    readings = np.array([0, 10**12 - 12345, 10**12, 10**12 + 1, 10**12 + 2_600_000_000 * 60], np.uint64)
    assert model.to_ns(readings).tolist() == [model.to_ns(int(r)) for r in readings]
    assert model.to_ns(10**12 + 2_600_000_000) - model.ns0 == pytest.approx(2_600_000_000 * 0.3851921, abs=1)


def test_model_record_mirrors_struct_netio_clock():
    assert CLOCK_DTYPE.itemsize == 32
    record = ClockModel(5, 7, 0.5, 0, "x").as_record()
    assert record["mult"][0] == 1 << 39 and record["shift"][0] == 40


def test_sync_against_realtime_agrees_with_clock_gettime():
    with ClockSync(SystemClock(), interval_s=0.002) as sync:
        time.sleep(0.2)
        model = sync.model
        before = time.clock_gettime_ns(time.CLOCK_REALTIME)
        stamp = model.to_ns(tsc.rdtsc())
        after = time.clock_gettime_ns(time.CLOCK_REALTIME)
    # within the bracket, with slack for the scheduler and a noisy VM clock
    assert before - 50_000 <= stamp <= after + 50_000
    assert sync.record["seq"][0] % 2 == 0 and sync.record["seq"][0] > 0


def test_timeline_refuses_to_mix_clock_domains():
    model = ClockModel(0, 0, 1.0, 0, "CLOCK_REALTIME")
    line = Timeline(model)
    assert line.to_reference(np.array([5]), TimestampSource.KERNEL).tolist() == [5]
    assert line.to_reference(np.array([7], np.uint64), TimestampSource.TSC).tolist() == [7]
    with pytest.raises(ClockDomainError, match="nic-hw timestamps cannot be put on the CLOCK_REALTIME"):
        line.to_reference(np.array([1]), TimestampSource.NIC)


def test_kernel_tai_stamps_differ_from_realtime_by_the_tai_offset_and_no_more():
    """The XDP program's CLOCK_TAI stamps: as they are on a CLOCK_TAI timeline, less the
    kernel's TAI offset on a CLOCK_REALTIME one, refused on a PHC nobody tied to the system clock."""
    offset = 37_000_000_000
    realtime = Timeline(ClockModel(0, 0, 1.0, 0, "CLOCK_REALTIME"), tai_offset=offset)
    tai = Timeline(ClockModel(0, 0, 1.0, 0, "CLOCK_TAI"), tai_offset=offset)
    stamps = np.array([offset + 5, offset + 9])
    assert realtime.to_reference(stamps, TimestampSource.KERNEL_TAI).tolist() == [5, 9]
    assert tai.to_reference(stamps, TimestampSource.KERNEL_TAI).tolist() == stamps.tolist()
    assert tai.to_reference(np.array([5]), TimestampSource.KERNEL).tolist() == [offset + 5]
    with pytest.raises(ClockDomainError, match="kernel-tai timestamps cannot be put on the PHC /dev/ptp0"):
        Timeline(ClockModel(0, 0, 1.0, 0, "PHC /dev/ptp0")).to_reference(stamps, TimestampSource.KERNEL_TAI)


def test_tai_offset_is_the_kernels_in_whole_seconds():
    offset = tai_offset_ns()
    gap = time.clock_gettime_ns(time.CLOCK_TAI) - time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert offset % 1_000_000_000 == 0 and abs(gap - offset) < 10_000_000


def test_unknown_or_missing_reference_clock_is_a_clear_error():
    with pytest.raises(ClockDomainError, match="use realtime, tai or /dev/ptpN"):
        open_reference("sundial")
    with pytest.raises(ClockDomainError, match="no PTP hardware clock at /dev/ptp99"):
        open_reference("/dev/ptp99")


def test_tsc_frequency_has_a_source_and_matches_a_measurement():
    found = tsc.frequency()
    assert found.source in {"cpuid-15h", "perf-mmap", "hypervisor-cpuid", "measured"}
    assert found.hz == pytest.approx(tsc.measure_frequency(0.05).hz, rel=2e-3)


def test_tsc_is_checked_for_invariance():
    result = tsc.check()
    assert result.clocksource
    assert result.usable == result.invariant
    assert all(w.endswith(("instead", "cores", "works")) for w in result.warnings)


def test_rdtsc_and_rdtscp_move_forward():
    a = tsc.rdtsc()
    b, cpu = tsc.rdtscp()
    assert b > a and cpu >= 0
