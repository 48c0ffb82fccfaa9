"""AF_XDP stamps on veth pairs: netio's XDP metadata program (rx_metadata=True) and AF_XDP
TX metadata (tx_timestamps=True)."""
from __future__ import annotations

import errno
import os
import subprocess
import time

import numpy as np
import pytest
from wire import capture_in_namespace, frames_to, send_from_namespace

from netio import hwstamp, iface, tsc
from netio.clock import ClockSync, SystemClock, Timeline
from netio.netns import VethNamespace, leftovers
from netio.port import Burst, PortError, PortUnavailable, TimestampSource

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="AF_XDP and veth pairs need root")]

xdp = pytest.importorskip("netio.xdp", reason="netio._xdp is not built; run `make native`")

PREFIX = "txm"
MINE = f"{PREFIX}{os.getpid():x}x"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ["native", "generic"]


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    if not xdp.BPF_OBJECT.exists():
        pytest.skip(f"{xdp.BPF_OBJECT} is not built; run `make native`")
    yield
    assert leftovers(MINE) == []
    assert sorted(xdp.STATE_DIR.glob(f"xdp-{MINE}*")) == [], "an owner note outlived its port"
    assert not any(name.startswith(MINE) for name in xdp._meta_programs)


@pytest.fixture
def veth():
    """A veth pair set up as AF_XDP needs it: no TX checksum offload, GRO on both ends."""
    with VethNamespace(PREFIX) as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        yield v
    assert leftovers(v.ns_name) == []


def receive(port, count: int, timeout: float = 5.0):
    """(frames, [(burst source, burst stamps, RxStamps)]) of the first ``count`` frames."""
    frames, bursts = [], []
    end = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < end:
        burst = port.rx_burst(64)
        if len(burst):
            frames += burst.to_bytes()
            bursts.append((burst.ts_source, burst.timestamps.copy(), port.rx_stamps(burst)))
            magic = [port.umem[o - 4:o].view(np.uint32)[0] for o in burst.offsets.tolist()]
            assert magic == [0] * len(burst), "read metadata is cleared so a recycled frame shows no old stamps"
        port.release(burst)
    return frames, bursts


@pytest.mark.parametrize("mode", MODES)
def test_the_metadata_program_is_attached_for_the_port_and_detached_on_close(veth, mode):
    with xdp.XdpPort(veth.host_if, xdp_mode=mode, rx_metadata=True) as port:
        attached = iface.xdp_program(veth.host_if)
        assert attached.mode == mode and attached.prog_id == port.info.details["prog_id"]
        assert attached.prog_id == xdp._meta_programs[veth.host_if].prog_id
        assert port.info.xdp_mode == mode and port.info.ts_source is TimestampSource.KERNEL_TAI
    assert iface.xdp_program(veth.host_if) is None
    assert veth.host_if not in xdp._meta_programs


@pytest.mark.parametrize("mode", MODES)
def test_frames_arrive_byte_exact_with_the_xdp_programs_stamps_in_front(veth, mode):
    sent = frames_to(veth.host_mac, veth.ns_mac, [60, 64, 128, 333, 1000, 1514] * 5)
    with xdp.XdpPort(veth.host_if, xdp_mode=mode, rx_metadata=True) as port:
        before = time.clock_gettime_ns(time.CLOCK_TAI)
        send_from_namespace(veth, sent)
        got, bursts = receive(port, len(sent))
        after = time.clock_gettime_ns(time.CLOCK_TAI)
    assert got == sent
    for source, stamps, rx in bursts:
        assert source is TimestampSource.KERNEL_TAI, "every frame had metadata: the XDP stamp is used"
        assert stamps.tolist() == rx.xdp_tai_ns.tolist()
        assert all(before < s < after for s in stamps)
    xdp_ns = np.concatenate([rx.xdp_tai_ns for _, _, rx in bursts])
    assert np.all(np.diff(xdp_ns) > 0), "frames were stamped in the order they arrived"


def test_xdp_stamps_precede_the_poll_time_tsc_on_one_calibrated_timeline(veth):
    """Each frame's CLOCK_TAI stamp from the XDP program comes before the TSC read when its
    burst was polled, and by little, once both are on one timeline - calibrated against
    CLOCK_TAI (stamps as they are) and against CLOCK_REALTIME (less the kernel's TAI offset)."""
    sent = frames_to(veth.host_mac, veth.ns_mac, [100] * 40)
    with ClockSync(SystemClock(time.CLOCK_TAI), interval_s=0.002) as tai, \
            ClockSync(SystemClock(time.CLOCK_REALTIME), interval_s=0.002) as realtime, \
            xdp.XdpPort(veth.host_if, xdp_mode="native", rx_metadata=True) as port:
        send_from_namespace(veth, sent)
        got, bursts = receive(port, len(sent))
        lines = [Timeline(tai.model), Timeline(realtime.model)]
    assert len(got) == len(sent)
    for line in lines:
        for source, stamps, rx in bursts:
            xdp_ns = line.to_reference(stamps, source)
            poll_ns = line.to_reference(np.array([rx.poll_tsc], np.uint64), TimestampSource.TSC)[0]
            gap = poll_ns - xdp_ns
            assert np.all(gap > -50_000), f"a frame was polled before XDP saw it ({line.domain})"
            assert np.all(gap < 500_000_000), f"the poll is far from the XDP stamp ({line.domain})"


def test_a_burst_with_a_frame_lacking_metadata_falls_back_to_the_poll_time_tsc(veth):
    """The burst's clock is one every frame has: wipe the first frame's metadata (as if the
    program had written none) and the whole burst is stamped with the TSC at poll time."""
    with xdp.XdpPort(veth.host_if, xdp_mode="generic", rx_metadata=True) as port:
        send_from_namespace(veth, frames_to(veth.host_mac, veth.ns_mac, [80, 81]))
        time.sleep(0.2)                               # both wait in the RX ring
        first = 256                                   # copy mode: fill address 0 plus XDP_PACKET_HEADROOM
        port.umem[first - 4:first] = 0
        burst = port.rx_burst()
        assert burst.offsets.tolist()[:1] == [first] and len(burst) == 2
        rx = port.rx_stamps(burst)
        assert burst.ts_source is TimestampSource.TSC
        assert burst.timestamps.tolist() == [rx.poll_tsc] * 2
        assert rx.xdp_tai_ns[0] == 0 and rx.xdp_tai_ns[1] > 0
        port.release(burst)


def test_a_veth_has_no_nic_stamp_and_the_port_says_why(veth):
    """veth answers the kfunc for a device-bound program but has no hardware clock behind it."""
    with xdp.XdpPort(veth.host_if, xdp_mode="native", rx_metadata=True) as port:
        reason = port.info.details["rx_timestamps"]
        send_from_namespace(veth, frames_to(veth.host_mac, veth.ns_mac, [80] * 4))
        _, bursts = receive(port, 4)
    assert reason.startswith("no NIC RX stamps: ") and "stamps no frames in hardware" in reason
    assert "CLOCK_TAI" in reason
    assert bursts
    for _, _, rx in bursts:
        assert np.all(rx.nic_ns == 0)
        assert set(rx.nic_rc.tolist()) <= {0, -errno.ENODATA}, "the device-bound program asked the driver"


def test_generic_mode_cannot_ask_the_nic_and_says_so(veth):
    with xdp.XdpPort(veth.host_if, xdp_mode="generic", rx_metadata=True) as port:
        reason = port.info.details["rx_timestamps"]
        send_from_namespace(veth, frames_to(veth.host_mac, veth.ns_mac, [80] * 4))
        _, bursts = receive(port, 4)
    assert "needs native XDP" in reason and "generic (SKB) mode" in reason
    assert all(np.all(rx.nic_rc == -errno.EOPNOTSUPP) for _, _, rx in bursts)


def test_a_port_that_cannot_bind_leaves_no_program_behind(veth):
    """veth has no zero-copy: every attempt fails, and each attempt's program goes with it."""
    with pytest.raises(PortUnavailable, match="no AF_XDP socket could be bound"):
        xdp.XdpPort(veth.host_if, zero_copy=True, rx_metadata=True)
    assert iface.xdp_program(veth.host_if) is None
    assert veth.host_if not in xdp._meta_programs


def test_ports_on_one_interface_must_agree_on_rx_metadata(veth):
    with xdp.XdpPort(veth.host_if, rx_metadata=True), pytest.raises(PortError, match="open them all alike"):
        xdp.XdpPort(veth.host_if, rx_metadata=False)
    with xdp.XdpPort(veth.host_if), pytest.raises(PortError, match="open them all alike"):
        xdp.XdpPort(veth.host_if, rx_metadata=True)
    assert iface.xdp_program(veth.host_if) is None


def test_rx_stamps_needs_a_metadata_port_and_an_unreleased_burst(veth):
    with pytest.raises(PortError, match="rx_metadata must be True or False"):
        xdp.XdpPort(veth.host_if, rx_metadata="yes")
    sent = frames_to(veth.host_mac, veth.ns_mac, [64])
    with xdp.XdpPort(veth.host_if) as plain:
        send_from_namespace(veth, sent)
        end = time.monotonic() + 5
        while not len(burst := plain.rx_burst()) and time.monotonic() < end:
            pass
        assert burst.ts_source is TimestampSource.TSC
        with pytest.raises(PortError, match="opened without rx_metadata=True"):
            plain.rx_stamps(burst)
        plain.release(burst)
        with pytest.raises(PortError, match="has not released yet"):
            plain.rx_stamps(burst)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a veth gets one queue per CPU at most")
def test_two_queues_share_one_metadata_program_until_the_last_port_closes(veth):
    assert iface.set_queue_count(veth.host_if, 2) == 2
    assert iface.set_queue_count(veth.ns_if, 2, netns=veth.ns_name) == 2
    sent = frames_to(veth.host_mac, veth.ns_mac, [80 + i for i in range(40)], flows=8)
    with xdp.XdpPort(veth.host_if, queue=0, rx_metadata=True) as q0, \
            xdp.XdpPort(veth.host_if, queue=1, rx_metadata=True) as q1:
        assert q0.info.details["prog_id"] == q1.info.details["prog_id"]
        send_from_namespace(veth, sent)
        got, sources = [], set()
        end = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < end:
            for port in (q0, q1):
                burst = port.rx_burst()
                if len(burst):
                    got += burst.to_bytes()
                    sources.add(burst.ts_source)
                port.release(burst)
        q1.close()
        assert iface.xdp_program(veth.host_if) is not None, "queue 0 still needs the program"
    assert sorted(got) == sorted(sent) and sources == {TimestampSource.KERNEL_TAI}
    assert iface.xdp_program(veth.host_if) is None


def test_a_veth_offers_the_rx_timestamp_kfunc_but_no_af_xdp_tx_timestamps(veth):
    """What the netdev netlink family says of the veth driver, and what that means for stamps."""
    features = hwstamp.netdev_features(veth.host_if)
    assert "timestamp" in features.xdp_rx_metadata and "tx-timestamp" not in features.xsk
    assert "stamps no frames in hardware" in hwstamp.xdp_rx_timestamp_support(veth.host_if)
    assert "xsk-features lacks tx-timestamp" in hwstamp.xdp_tx_timestamp_support(veth.host_if, zero_copy=True)
    assert hwstamp.xdp_tx_timestamp_support(veth.host_if, zero_copy=False) is None, \
        "copy mode: the kernel stamps completions itself"


@pytest.mark.parametrize("mode", MODES)
def test_sent_frames_get_the_kernels_completion_stamp_through_tx_metadata_in_copy_mode(veth, mode):
    sent = frames_to(veth.ns_mac, veth.host_mac, [60, 100, 700, 1514] * 10)
    with xdp.XdpPort(veth.host_if, xdp_mode=mode, rx_metadata=True, tx_timestamps=True) as port:
        assert "CLOCK_TAI when it completes each frame" in port.info.details["tx_timestamps"]
        before = time.clock_gettime_ns(time.CLOCK_TAI)

        def send():
            taken = 0
            while taken < len(sent):
                taken += port.tx_burst(Burst.of(sent[taken:]))
        assert capture_in_namespace(veth, len(sent), send) == sent, "the TX metadata is not sent on the wire"
        after = time.clock_gettime_ns(time.CLOCK_TAI)
        end = time.monotonic() + 5
        seq, ns = [], []
        while len(seq) < len(sent) and time.monotonic() < end:
            stamps = port.tx_stamps()
            assert stamps.source is TimestampSource.KERNEL_TAI and stamps.lost == 0
            seq += stamps.seq.tolist()
            ns += stamps.ns.tolist()
    assert seq == list(range(len(sent)))
    assert all(before < t < after for t in ns) and ns == sorted(ns)


def test_without_the_metadata_program_tx_stamps_are_the_tsc_when_reaped_and_the_port_says_why(veth):
    sent = frames_to(veth.ns_mac, veth.host_mac, [80] * 5)
    with xdp.XdpPort(veth.host_if, tx_timestamps=True) as port:
        assert "needs netio's own socket set-up" in port.info.details["tx_timestamps"]
        before = tsc.rdtsc()
        capture_in_namespace(veth, len(sent), lambda: port.tx_burst(Burst.of(sent)))
        end = time.monotonic() + 5
        stamps = port.tx_stamps()
        while len(stamps.seq) < len(sent) and time.monotonic() < end:
            more = port.tx_stamps()
            stamps = xdp.TxStamps(np.concatenate([stamps.seq, more.seq]), np.concatenate([stamps.ns, more.ns]),
                                  more.source, 0)
        after = tsc.rdtsc()
    assert stamps.source is TimestampSource.TSC and stamps.seq.tolist() == list(range(len(sent)))
    assert all(before < t <= after for t in stamps.ns.tolist())


def test_tx_metadata_takes_room_from_the_frame_and_a_port_without_tx_stamps_refuses_tx_stamps(veth):
    with xdp.XdpPort(veth.host_if, frame_size=2048, rx_metadata=True, tx_timestamps=True) as port:
        with pytest.raises(PortError, match="does not fit a 2048-byte UMEM frame after its TX metadata"):
            port.tx_burst(Burst.of([b"\0" * 2040]))
        assert port.stats().tx_packets == 0
    with xdp.XdpPort(veth.host_if) as plain, pytest.raises(PortError, match="without tx_timestamps=True"):
        plain.tx_stamps()


# A fused loop of the kind XdpPort.c_api() serves: receive through the table (rx_burst, or
# rx_burst_meta), swap the MACs in place, send back, release; the stamps of the first frame.
FUSED_ECHO = r"""
#include <string.h>
#include <time.h>
#include "xdp_api.h"
#include "xdp_meta.h"

int64_t echo(struct nx_xsk *x, const struct nx_burst_api *api, uint8_t *umem, uint64_t umem_len,
             int64_t want, int use_meta, int64_t *first_stamp, uint32_t *first_source)
{
    int64_t off[64], stamps[64], poll_tsc, done = 0;
    uint32_t len[64], source = NX_TS_TSC;
    struct netio_xdp_meta meta[64];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (api->version != NX_API_VERSION)
        return -1;
    while (done < want) {
        uint32_t n = use_meta ? api->rx_burst_meta(x, 64, off, len, stamps, meta, &source, &poll_tsc)
                              : api->rx_burst(x, 64, off, len, stamps);
        if (n && !done) {
            *first_stamp = stamps[0];
            *first_source = source;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *f = umem + off[i], mac[6];
            memcpy(mac, f, 6);
            memcpy(f, f + 6, 6);
            memcpy(f + 6, mac, 6);
        }
        if (n) {
            done += api->tx_burst(x, umem, umem_len, off, len, n);
            api->release(x, off, n);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 5)
            break;
    }
    return done;
}
"""


@pytest.mark.parametrize("use_meta", [False, True], ids=["rx_burst", "rx_burst_meta"])
def test_a_fused_c_loop_drives_a_metadata_port_through_the_c_api_table(veth, tmp_path, use_meta):
    """XdpPort.c_api()'s table keeps its meaning with netio's program and socket set-up:
    rx_burst gives TSC stamps as before; rx_burst_meta gives the XDP program's CLOCK_TAI."""
    import ctypes
    (tmp_path / "echo.c").write_text(FUSED_ECHO)
    so = tmp_path / "echo.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", os.path.join(ROOT, "cffi_build"), "-o", str(so),
                    str(tmp_path / "echo.c")], check=True)
    fused = ctypes.CDLL(str(so)).echo
    fused.restype = ctypes.c_int64
    fused.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                      ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint32)]
    sent = frames_to(veth.host_mac, veth.ns_mac, [64, 128, 1500])
    stamp, source = ctypes.c_int64(0), ctypes.c_uint32(99)
    with xdp.XdpPort(veth.host_if, xdp_mode="native", rx_metadata=True, tx_timestamps=True) as port:
        echoed = []

        def echo():
            send_from_namespace(veth, sent)
            port_addr, api_addr = port.c_api()
            before = time.clock_gettime_ns(time.CLOCK_TAI)
            echoed.append(fused(port_addr, api_addr, port.umem.ctypes.data, port.umem.nbytes, len(sent),
                                int(use_meta), ctypes.byref(stamp), ctypes.byref(source)))
            echoed.append(before)
        start_tsc = tsc.rdtsc()
        back = capture_in_namespace(veth, 3, echo)
        time.sleep(0.05)
        assert port.tx_stamps().seq.tolist() == [0, 1, 2]
    assert echoed[0] == 3
    assert back == [f[6:12] + f[:6] + f[12:] for f in sent]
    if use_meta:
        assert source.value == xdp.lib.NX_TS_XDP and 0 < echoed[1] - stamp.value < 5_000_000_000
    else:
        assert source.value == xdp.lib.NX_TS_TSC and start_tsc < stamp.value <= tsc.rdtsc()
