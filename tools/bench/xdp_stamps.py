"""AF_XDP stamps from netio's XDP metadata program on a veth pair (root; copy mode).

RX: frames sent one every half millisecond from the namespace; per frame, how long after
the XDP program's CLOCK_TAI stamp the burst was polled (the TSC stamp, both on one
timeline calibrated against CLOCK_TAI) - what a poll-time stamp would have hidden - in
native and generic XDP. TX: from the TSC just before tx_burst to the completion stamp
the kernel wrote through AF_XDP TX metadata (software, CLOCK_TAI).
"""
import os
import sys
import threading
import time

import numpy as np

from netio import iface, tsc
from netio.clock import ClockSync, SystemClock, Timeline
from netio.netns import VethNamespace
from netio.port import Burst, TimestampSource
from netio.xdp import XdpPort

FRAMES = 1000
# Sends the hex frames read from stdin out of argv[1], one every argv[2] seconds.
PACED = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    s.send(bytes.fromhex(line.strip()))
    time.sleep(float(sys.argv[2]))
"""


def _frame(dst: str, src: str, i: int) -> bytes:
    head = bytes.fromhex(dst.replace(":", "") + src.replace(":", "")) + b"\x88\xb5"   # local experimental type
    return head + i.to_bytes(4, "big") + bytes(50)


def _rx_gaps(v: VethNamespace, port: XdpPort, line_of) -> np.ndarray:
    """ns from each frame's XDP stamp to the poll that found it."""
    frames = [_frame(v.host_mac, v.ns_mac, i) for i in range(FRAMES)]
    sender = threading.Thread(target=lambda: v.run([sys.executable, "-c", PACED, v.ns_if, "0.0005"],
                                                   input="\n".join(f.hex() for f in frames), text=True,
                                                   check=True, timeout=60))
    sender.start()
    seen, end = [], time.monotonic() + 30
    while sum(len(s) for _, s, _ in seen) < FRAMES and time.monotonic() < end:
        burst = port.rx_burst()
        if len(burst):
            seen.append((port.rx_stamps(burst).poll_tsc, burst.timestamps.copy(), burst.ts_source))
        port.release(burst)
    sender.join()
    line = line_of()
    return np.concatenate([line.to_reference(np.array([poll], np.uint64), TimestampSource.TSC)[0]
                           - line.to_reference(stamps, source) for poll, stamps, source in seen])


def _tx_delays(v: VethNamespace, port: XdpPort, line_of) -> np.ndarray:
    """ns from just before tx_burst to each frame's completion stamp."""
    submitted = []
    for i in range(FRAMES):
        submitted.append(tsc.rdtsc())
        port.tx_burst(Burst.of([_frame(v.ns_mac, v.host_mac, i)]))
        time.sleep(0.0002)
    time.sleep(0.05)
    stamps = port.tx_stamps()
    line = line_of()
    return (line.to_reference(stamps.ns, stamps.source)
            - line.to_reference(np.array(submitted, np.uint64), TimestampSource.TSC)[stamps.seq.astype(np.int64)])


def run() -> dict:
    if os.geteuid() != 0:
        raise PermissionError("the xdp_stamps benchmark needs root (veth pairs in a namespace, AF_XDP)")
    figures = {"frames": FRAMES}
    with ClockSync(SystemClock(time.CLOCK_TAI), interval_s=0.002) as sync, VethNamespace("bxs") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)

        def line_of() -> Timeline:   # the model as it is when the figures are taken
            return Timeline(sync.model)
        for mode in ("native", "generic"):
            with XdpPort(v.host_if, xdp_mode=mode, rx_metadata=True, tx_timestamps=True) as port:
                gaps = _rx_gaps(v, port, line_of)
                delays = _tx_delays(v, port, line_of)
            figures[f"{mode}_rx_xdp_to_poll_ns_p50"] = int(np.median(gaps))
            figures[f"{mode}_rx_xdp_to_poll_ns_p99"] = int(np.percentile(gaps, 99))
            figures[f"{mode}_rx_xdp_to_poll_ns_min"] = int(gaps.min())
            figures[f"{mode}_rx_frames_seen"] = len(gaps)
            figures[f"{mode}_tx_submit_to_completion_ns_p50"] = int(np.median(delays))
            figures[f"{mode}_tx_submit_to_completion_ns_p99"] = int(np.percentile(delays, 99))
        figures["calib_err_ns"] = round(sync.model.err_ns, 1)
    return figures
