"""A real PTP hardware clock and hardware packet timestamps (skip without NETIO_HW_IFACE)."""
import time

import pytest

from netio import hwstamp
from netio.clock import ClockSync, PtpClock


@pytest.fixture
def phc_path(hw_iface):
    info = hwstamp.ts_info(hw_iface)
    if info.phc_path is None:
        pytest.skip(f"{hw_iface} has no PTP hardware clock (ethtool -T {hw_iface}: PTP Hardware Clock: none)")
    return info.phc_path


def test_interface_stamps_in_hardware(hw_iface):
    assert hwstamp.ts_info(hw_iface).hardware
    assert hwstamp.enable_hardware_stamping(hw_iface) is None


def test_tsc_calibrates_against_the_phc(phc_path):
    reference = PtpClock(phc_path)
    try:
        with ClockSync(reference, interval_s=0.001) as sync:
            time.sleep(2)
            model = sync.model
        assert model.domain == f"PHC {phc_path}"
        assert model.err_ns < 200, f"{reference.method}: calibration error estimate {model.err_ns:.0f} ns"
    finally:
        reference.close()
