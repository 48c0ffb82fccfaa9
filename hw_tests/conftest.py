"""Tests here need what a virtual machine lacks: real NIC hardware (a PTP clock, hardware
timestamps, zero-copy drivers), or a CPU the kernel leaves alone (test_venue_latency.py).

Run them with `.venv/bin/python -m pytest hw_tests` on such a machine; elsewhere each
skips and says what it looked for. Select the device with NETIO_HW_IFACE=eth0.
"""
import os

import pytest


@pytest.fixture
def hw_iface() -> str:
    """The hardware interface under test, or a skip naming what is missing."""
    iface = os.environ.get("NETIO_HW_IFACE")
    if not iface:
        pytest.skip("no hardware interface: set NETIO_HW_IFACE to a NIC with PTP and hardware timestamps")
    if not os.path.exists(f"/sys/class/net/{iface}/device"):
        pytest.skip(f"{iface} is not a physical device (no /sys/class/net/{iface}/device)")
    return iface
