"""Packet timestamps: capabilities, SO_TIMESTAMPING on sockets, and agreement with TSC stamps."""
import select
import socket
import time

import numpy as np
import pytest

from netio import hwstamp, tsc
from netio.clock import ClockSync, SystemClock, Timeline
from netio.netns import VethNamespace
from netio.port import TimestampSource


def test_loopback_reports_software_stamping_and_no_phc():
    info = hwstamp.ts_info("lo")
    assert {"rx-software", "software"} <= info.capabilities
    assert info.phc_index == -1 and info.phc_path is None and not info.hardware


def test_missing_interface_is_named():
    with pytest.raises(OSError, match="no interface 'nosuch0'"):
        hwstamp.ts_info("nosuch0")


def test_hardware_stamping_refusal_says_what_happens_instead():
    reason = hwstamp.enable_hardware_stamping("lo")
    assert "no hardware timestamping" in reason and "software timestamps" in reason


def test_xdp_metadata_timestamps_on_loopback_are_refused_with_the_reason():
    """lo's driver implements no XDP RX metadata and no AF_XDP TX timestamps (netdev netlink)."""
    features = hwstamp.netdev_features("lo")
    assert features.xdp_rx_metadata == frozenset() and features.xsk == frozenset()
    assert "lo's driver does not implement the RX timestamp kfunc" in hwstamp.xdp_rx_timestamp_support("lo")
    assert "lo's driver offers no AF_XDP TX timestamps" in hwstamp.xdp_tx_timestamp_support("lo")


def test_tx_stamps_come_from_the_error_queue_numbered_per_send():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        hwstamp.enable_socket_stamping(tx, rx=False, tx=True)
        before = time.clock_gettime_ns(time.CLOCK_REALTIME)
        for i in range(3):
            tx.sendto(b"%d" % i, rx.getsockname())
        deadline = time.monotonic() + 2
        stamps = []
        while len(stamps) < 3 and time.monotonic() < deadline:
            stamps += hwstamp.read_tx_stamps(tx)
        after = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert [ident for ident, _, _ in stamps] == [0, 1, 2]
    assert all(source is TimestampSource.KERNEL and before <= ns <= after for _, ns, source in stamps)


def test_software_rx_stamps_on_a_veth_agree_with_tsc_stamps_at_poll_time():
    """Each kernel RX stamp precedes the TSC stamp taken when we polled the frame, and by
    little: both are on the CLOCK_REALTIME timeline through the calibration."""
    with ClockSync(SystemClock(), interval_s=0.002) as sync, VethNamespace("clk") as veth, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((veth.host_ip, 0))
        hwstamp.enable_socket_stamping(rx, rx=True)
        port = rx.getsockname()[1]
        veth.run(["python3", "-c", "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  f"for i in range(20):\n s.sendto(b'%d'%i,('{veth.host_ip}',{port})); time.sleep(0.005)"],
                 check=True, timeout=30)
        kernel, polled = [], []
        while select.select([rx], [], [], 0.5)[0]:
            _, ancdata, _, _ = rx.recvmsg(64, 256)
            polled.append(tsc.rdtsc())
            ns, source = hwstamp.parse_stamp(ancdata)
            assert source is TimestampSource.KERNEL
            kernel.append(ns)
        line = Timeline(sync.model)
    assert len(kernel) == 20
    kernel_ns = line.to_reference(np.array(kernel), TimestampSource.KERNEL)
    polled_ns = line.to_reference(np.array(polled, np.uint64), TimestampSource.TSC)
    assert np.all(np.diff(kernel_ns) > 0)
    gap = polled_ns - kernel_ns
    assert np.all(gap > -50_000), "a frame was polled before the kernel stamped it"
    assert np.all(gap < 500_000_000), "the poll-time stamp is far from the kernel's"
