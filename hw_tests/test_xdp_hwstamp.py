"""AF_XDP NIC timestamps on a real NIC: RX through netio's XDP program and the
bpf_xdp_metadata_rx_timestamp kfunc, TX through AF_XDP TX metadata (skip without
NETIO_HW_IFACE, or where the driver lacks them - the skip says which).

The interface must receive traffic on queue 0 while the RX test runs (a link partner
sending, e.g. ptp4l or a ping flood from the other side), and its TX must reach a wire.
"""
import time

import numpy as np
import pytest

from netio import hwstamp
from netio.port import Burst, TimestampSource
from netio.xdp import XdpPort


def test_rx_frames_carry_the_nics_stamp_on_its_phc_timeline(hw_iface):
    why = hwstamp.xdp_rx_timestamp_support(hw_iface)
    if why:
        pytest.skip(f"no NIC RX stamps through XDP: {why}")
    with XdpPort(hw_iface, queue=0, xdp_mode="native", rx_metadata=True) as port:
        assert port.info.ts_source is TimestampSource.NIC, port.info.details["rx_timestamps"]
        bursts, end = [], time.monotonic() + 5
        while len(bursts) < 10 and time.monotonic() < end:
            burst = port.rx_burst()
            if len(burst):
                stamps = port.rx_stamps(burst)
                bursts.append((burst.ts_source, stamps))
            port.release(burst)
    if not bursts:
        pytest.skip(f"no traffic arrived on {hw_iface} queue 0 within 5 s")
    for source, stamps in bursts:
        assert np.all(stamps.nic_rc == 0) and np.all(stamps.nic_ns > 0)
        assert source is TimestampSource.NIC
        # NIC and XDP-time stamps are both real time: PHC (TAI under ptp4l) within a second of CLOCK_TAI
        assert np.all(np.abs(stamps.nic_ns - stamps.xdp_tai_ns) < 1_000_000_000)


def test_tx_frames_get_the_nics_completion_stamp_in_zero_copy_mode(hw_iface):
    why = hwstamp.xdp_tx_timestamp_support(hw_iface, zero_copy=True)
    if why:
        pytest.skip(f"no NIC TX stamps through AF_XDP TX metadata: {why}")
    frame = bytes.fromhex("ffffffffffff020000000001" "88b5") + bytes(46)   # local experimental ethertype
    with XdpPort(hw_iface, queue=0, xdp_mode="native", zero_copy=True, rx_metadata=True,
                 tx_timestamps=True) as port:
        assert "NIC hardware stamps" in port.info.details["tx_timestamps"]
        assert port.tx_burst(Burst.of([frame] * 8)) == 8
        seq, ns, end = [], [], time.monotonic() + 2
        while len(seq) < 8 and time.monotonic() < end:
            stamps = port.tx_stamps()
            assert stamps.source is TimestampSource.NIC
            seq += stamps.seq.tolist()
            ns += stamps.ns.tolist()
    assert seq == list(range(8)) and all(t > 0 for t in ns) and ns == sorted(ns)
