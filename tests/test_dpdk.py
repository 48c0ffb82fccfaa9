"""The DPDK backend (netio.dpdk) on virtual devices: net_af_packet on a veth pair, net_pcap, net_ring.

EAL starts once per process, so the tests here share one EAL (started by the first
port, with the options in ``EAL``); the tests about EAL start-up failures run a
small driver in a subprocess each.
"""
from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from netio import iface, tsc
from netio.netns import VethNamespace, leftovers
from wire import capture_in_namespace, frames_to, send_from_namespace
from netio.port import Burst, PortError, PortUnavailable, TimestampSource, open_port

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="DPDK's EAL and veth pairs need root")]

dpdk = pytest.importorskip("netio.dpdk", reason="netio._dpdk is not built (needs libdpdk-dev); run `make native`")

PREFIX = "tdpdk"
MINE = f"{PREFIX}{os.getpid():x}x"
EAL = {"file_prefix": f"dpdk-test-{os.getpid()}", "memory_mb": 256}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOL_PACKET, PACKET_FANOUT = 263, 18          # linux/if_packet.h

# Opens a DPDK port with the keyword arguments in argv[2] (a Python dict literal) and
# prints "opened", or the exception's class and message; then waits for stdin to close.
OPEN = textwrap.dedent("""
    import ast, sys
    from netio.dpdk import DpdkPort
    try:
        port = DpdkPort(sys.argv[1], **ast.literal_eval(sys.argv[2]))
        print("opened", flush=True)
    except Exception as e:
        print(type(e).__name__, e, flush=True)
    sys.stdin.read()
""")


def open_dpdk(spec: str, **options) -> dpdk.DpdkPort:
    return dpdk.DpdkPort(spec, **EAL, **options)


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    yield
    assert leftovers(MINE) == []


@pytest.fixture
def veth():
    with VethNamespace(PREFIX) as v:
        yield v




def receive(port, count: int, timeout: float = 5.0) -> tuple[list[bytes], list[int]]:
    frames, stamps = [], []
    end = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < end:
        burst = port.rx_burst(64)
        frames += burst.to_bytes()
        stamps += burst.timestamps.tolist()
        port.release(burst)
    return frames, stamps



# -- net_af_packet on a kernel interface -------------------------------------------------------
def test_a_kernel_interface_name_opens_through_net_af_packet_and_frames_arrive_byte_exact(veth):
    sent = frames_to(veth.host_mac, veth.ns_mac, [60, 64, 128, 333, 1000, 1514] * 5)
    with open_port(veth.host_if, backend="dpdk", **EAL) as port:
        assert port.info.backend == "dpdk" and port.info.details["driver"] == "net_af_packet"
        assert port.info.zero_copy is False and port.info.ts_source is TimestampSource.TSC
        before = tsc.rdtsc()
        send_from_namespace(veth, sent)
        got, stamps = receive(port, len(sent))
        after = tsc.rdtsc()
        stats = port.stats()
        assert port.in_use() <= port.info.details["ring_size"] + 64, "released mbufs went back to the pool"
    assert got == sent
    assert all(before < s <= after for s in stamps) and stamps == sorted(stamps)
    assert stats.rx_packets == len(sent) and stats.rx_bytes == sum(map(len, sent))


def test_tx_burst_frames_arrive_byte_exact_in_the_namespace(veth):
    sent = frames_to(veth.ns_mac, veth.host_mac, [60, 100, 700, 1514] * 25)
    with open_dpdk(veth.host_if) as port:
        def send():
            taken = 0
            while taken < len(sent):
                taken += port.tx_burst(Burst.of(sent[taken:]))
        assert capture_in_namespace(veth, len(sent), send) == sent
        stats = port.stats()
    assert stats.tx_packets == len(sent) and stats.tx_bytes == sum(map(len, sent))


def test_a_received_burst_is_sent_back_from_its_mbufs_without_a_copy(veth):
    """Echo: swap the MACs in place and tx_burst the received burst itself, then release it."""
    sent = frames_to(veth.host_mac, veth.ns_mac, [90, 91, 92])
    with open_dpdk(veth.host_if) as port:
        def echo():
            send_from_namespace(veth, sent)
            echoed, end = 0, time.monotonic() + 5
            while echoed < 3 and time.monotonic() < end:
                burst = port.rx_burst()
                for frame in burst:
                    assert np.shares_memory(frame, port.buffer)
                    frame[:12] = np.concatenate([frame[6:12], frame[:6]])
                echoed += port.tx_burst(burst)
                port.release(burst)
        back = capture_in_namespace(veth, 3, echo)
    assert back == [f[6:12] + f[:6] + f[12:] for f in sent]


def test_rss_spreads_flows_over_the_queues_and_every_frame_arrives_once(veth):
    sent = frames_to(veth.host_mac, veth.ns_mac, [100] * 64, flows=16)
    with open_dpdk(veth.host_if, queues=2, queue=0) as q0, open_dpdk(veth.host_if, queues=2, queue=1) as q1:
        assert q0.info.details["ethdev"] == q1.info.details["ethdev"], "both queues of one device"
        send_from_namespace(veth, sent)
        got0, got1 = [], []
        end = time.monotonic() + 5
        while len(got0) + len(got1) < len(sent) and time.monotonic() < end:
            for port, got in ((q0, got0), (q1, got1)):
                burst = port.rx_burst()
                got += burst.to_bytes()
                port.release(burst)
        assert q1.stats().rx_packets == len(got1)
    assert collections.Counter(got0 + got1) == collections.Counter(sent)
    assert got0 and got1, "16 flows all hashed to one queue"


def test_net_af_xdp_named_as_a_device_spec_receives_byte_exact_and_leaves_no_program(veth):
    sent = frames_to(veth.host_mac, veth.ns_mac, [60, 500, 1514] * 4)
    with open_dpdk(f"net_af_xdp0,iface={veth.host_if}") as port:
        assert port.info.details["driver"] == "net_af_xdp"
        send_from_namespace(veth, sent)
        got, _ = receive(port, len(sent))
    assert got == sent
    assert iface.xdp_program(veth.host_if) is None, "closing the device detaches its XDP program"


def test_a_packet_fanout_group_id_held_elsewhere_is_unavailable_and_says_so(veth):
    """net_af_packet (DPDK 22.11) joins the fanout group pid ^ ifindex; a group with that id
    on another interface (another process's, in real life) makes the kernel refuse it."""
    group = (os.getpid() ^ socket.if_nametoindex(veth.host_if)) & 0xFFFF
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as other:
        other.bind(("lo", 0))
        other.setsockopt(SOL_PACKET, PACKET_FANOUT, group)   # PACKET_FANOUT_HASH, no flags
        with pytest.raises(PortUnavailable, match="packet fanout group"):
            open_dpdk(veth.host_if)
    with open_dpdk(veth.host_if) as port:                   # the group gone, the device opens
        assert port.info.details["driver"] == "net_af_packet"


def test_a_kernel_interface_that_does_not_exist_is_named_in_the_error():
    with pytest.raises(PortError, match="nosuchif0"):
        open_dpdk("nosuchif0")


# -- net_pcap ------------------------------------------------------------------------------
def test_net_pcap_reads_a_pcap_and_writes_one_byte_exact(tmp_path):
    frames = frames_to("02:00:00:00:00:02", "02:00:00:00:00:01", [60, 61, 200, 1514, 90] * 8)
    wrpcap(str(tmp_path / "in.pcap"), [Ether(f) for f in frames])
    spec = f"net_pcap0,rx_pcap={tmp_path / 'in.pcap'},tx_pcap={tmp_path / 'out.pcap'}"
    got = []
    with open_dpdk(spec) as port:
        assert port.info.details["driver"] == "net_pcap"
        for _ in range(20):
            burst = port.rx_burst(16)
            got += burst.to_bytes()
            assert port.tx_burst(burst) == len(burst)
            port.release(burst)
        stats = port.stats()
    assert got == frames
    assert [bytes(p) for p in rdpcap(str(tmp_path / "out.pcap"))] == frames, "written on close"
    assert stats.rx_packets == stats.tx_packets == len(frames)


# -- net_ring -------------------------------------------------------------------------------
def test_net_ring_loops_frames_back_as_views_into_the_mempool():
    frames = [bytes([i]) * (60 + i) for i in range(40)]
    with open_dpdk("net_ring0") as port:
        assert port.tx_burst(Burst.of(frames)) == len(frames)
        burst = port.rx_burst(64)
        assert burst.buffer is port.buffer and len(burst) == len(frames)
        assert burst.to_bytes() == frames
        assert all(0 <= o < port.buffer.size for o in burst.offsets)
        assert port.in_use() == len(frames)
        port.release(burst)
        port.release(burst)   # a second release of the same burst changes nothing
        assert port.in_use() == 0
        xstats = port.xstats()
        assert xstats["rx_good_packets"] == xstats["tx_good_packets"] == len(frames)
        assert port.device_stats()["ipackets"] == len(frames)
        assert port.link()["up"] is True


def test_released_mbufs_are_reused_so_a_small_pool_carries_many_frames():
    frames = [i.to_bytes(2, "big") * 40 for i in range(1000)]
    got = []
    with open_dpdk("net_ring1", mempool_size=64, ring_size=32) as port:
        for start in range(0, len(frames), 20):
            assert port.tx_burst(Burst.of(frames[start:start + 20])) == 20
            burst = port.rx_burst(32)
            got += burst.to_bytes()
            port.release(burst)
        assert port.stats().drops == {}
    assert got == frames


def test_a_burst_larger_than_64_gathers_up_to_max_frames_in_order():
    frames = [i.to_bytes(2, "big") * 31 for i in range(300)]
    with open_dpdk("net_ring10") as port:
        assert port.tx_burst(Burst.of(frames)) == 300
        first = port.rx_burst(256)
        assert len(first) == 256
        got = first.to_bytes()
        port.release(first)
        rest = port.rx_burst(256)
        got += rest.to_bytes()
        port.release(rest)
        assert got == frames
        assert port.in_use() == 0 and port.stats().rx_packets == 300


def test_an_echo_the_device_still_holds_survives_release_byte_exact():
    """Release frees mbufs nothing else holds in one put; an echoed burst's mbufs are still
    queued in net_ring's ring after release, so they must stay intact until received again."""
    frames = [bytes([i]) * (60 + i) for i in range(50)]
    with open_dpdk("net_ring11") as port:
        assert port.tx_burst(Burst.of(frames)) == len(frames)
        burst = port.rx_burst(64)
        assert port.tx_burst(burst) == len(frames)   # the same mbufs, one more reference each
        port.release(burst)
        assert port.in_use() == len(frames), "the ring still holds every echoed mbuf"
        again = port.rx_burst(64)
        assert again.to_bytes() == frames
        port.release(again)
        assert port.in_use() == 0
        for _ in range(3):   # the pool's mbufs are whole again: a new round trip is byte-exact too
            assert port.tx_burst(Burst.of(frames)) == len(frames)
            burst = port.rx_burst(64)
            assert burst.to_bytes() == frames
            port.release(burst)
        assert port.in_use() == 0 and port.stats().drops == {}


def test_a_full_tx_ring_takes_what_fits_and_counts_the_rest():
    """net_ring's rings hold 1023 frames whatever ring_size says; 1500 do not fit."""
    with open_dpdk("net_ring2") as port:
        taken = port.tx_burst(Burst.of([b"\x01" * 60] * 1500))
        stats = port.stats()
        assert 0 < taken < 1500
        assert stats.tx_packets == taken and stats.ring_full == 1500 - taken
        assert port.in_use() == taken, "the refused frames' mbufs went back to the pool"
        while len(burst := port.rx_burst(256)):
            port.release(burst)


def test_a_frame_larger_than_an_mbuf_is_refused_and_nothing_is_sent():
    with open_dpdk("net_ring3") as port:
        with pytest.raises(PortError, match="frame 1 .*does not fit one mbuf; nothing was sent"):
            port.tx_burst(Burst.of([b"a" * 60, b"b" * 9000]))
        assert port.stats().tx_packets == 0 and len(port.rx_burst()) == 0


def test_a_closed_device_can_be_opened_again_and_a_closed_port_says_so():
    port = open_dpdk("net_ring4")
    port.close()
    port.close()
    with pytest.raises(PortError, match="closed"):
        port.rx_burst()
    with open_dpdk("net_ring4") as again:
        assert again.tx_burst(Burst.of([b"x" * 60])) == 1


def test_c_api_hands_out_the_queue_and_the_burst_table_for_fused_c_loops():
    from netio._dpdk import ffi
    with open_dpdk("net_ring9") as port:
        queue, table = port.c_api()
        assert queue and table
        assert ffi.cast("uint32_t *", table)[0] == 1, "ND_API_VERSION of cffi_build/dpdk_api.h"
    with pytest.raises(PortError, match="closed"):
        port.c_api()


# -- caller mistakes and unavailable features ---------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"colour": "red"}, "does not know option.*colour"),
    ({"queue": 2}, "queue 2 does not exist"),
    ({"ring_size": 0}, "ring_size must be"),
    ({"rx_timestamps": "sometimes"}, "rx_timestamps must be"),
    ({"rx_timestamps": True}, "cannot stamp received frames"),
])
def test_bad_options_are_refused_with_a_sentence(options, message):
    with pytest.raises(PortError, match=message):
        open_dpdk("net_ring5", **options)


def test_eal_arguments_given_by_the_caller_win_over_the_defaults():
    args, prefix = dpdk._eal_args("-l 1 --file-prefix=mine -m 64", 256, None, None, None, False)
    assert prefix == "mine" and "--no-huge" not in args and not any(a.startswith("--lcores") for a in args)
    assert args[-5:] == ["-l", "1", "--file-prefix=mine", "-m", "64"] and "--no-pci" in args
    args, prefix = dpdk._eal_args("", 128, "p", None, None, True)
    assert prefix == "p" and "--no-pci" not in args and "--no-huge" not in args, "PCI: hugepages, PCI bus on"
    args, _ = dpdk._eal_args("", 128, "p", "3", None, False)
    assert args[args.index("-m") + 1] == "128" and args[args.index("-l") + 1] == "3"


def test_a_second_set_of_eal_options_in_one_process_is_refused():
    with open_dpdk("net_ring6"):
        pass
    with pytest.raises(PortError, match="already running in this process.*cannot be restarted"):
        dpdk.DpdkPort("net_ring7", file_prefix="another-prefix")


def test_a_pool_larger_than_eal_memory_is_unavailable_and_says_what_to_raise():
    with pytest.raises(PortUnavailable, match="could not make a pool of 400000 mbufs.*memory_mb"):
        open_dpdk("net_ring8", mempool_size=400_000)


def test_a_pci_address_needs_an_eal_started_with_the_pci_bus():
    with pytest.raises(PortError, match="0000:00:1f.0 is a PCI device but this process's EAL was started without"):
        open_dpdk("00:1f.0")


def test_an_unknown_device_spec_is_refused_with_what_dpdk_said():
    with pytest.raises(PortError, match="could not probe device `net_nosuchdriver0`"):
        open_dpdk("net_nosuchdriver0")


def _open_in_subprocess(spec: str, options: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", OPEN, spec, repr(options)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_bad_eal_arguments_are_a_port_error_quoting_eal():
    proc = _open_in_subprocess("net_null0", {"dpdk_args": "--no-such-eal-option",
                                             "file_prefix": f"dpdk-test-bad-{os.getpid()}"})
    out, _ = proc.communicate("", timeout=30)
    assert out.strip().splitlines()[-1].startswith("PortError DPDK's EAL rejected its arguments")


def test_a_file_prefix_in_use_is_unavailable_and_says_so():
    options = {"file_prefix": f"dpdk-test-busy-{os.getpid()}"}
    holder = _open_in_subprocess("net_null0", options)
    try:
        assert holder.stdout.readline().strip() == "opened"
        second = _open_in_subprocess("net_null0", options)
        out, _ = second.communicate("", timeout=30)
        assert out.strip().splitlines()[-1].startswith(
            f"PortUnavailable DPDK file prefix {options['file_prefix']!r} is in use")
    finally:
        holder.communicate("", timeout=30)
    assert not os.path.exists(f"{dpdk.RUNTIME_DIR}/{options['file_prefix']}"), "EAL's files removed at exit"
