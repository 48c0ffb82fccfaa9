"""Socket ports on a veth pair: AF_PACKET + the stack answering a namespace, and UDP sockets on loopback."""
from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest
from pyroute2 import IPRoute
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from netio import iface
from netio.netns import VethNamespace, leftovers
from netio.packet_socket import DROP_RING_FULL, DROP_TOO_LONG, PacketSocketPort
from netio.pcap import PcapPort
from netio.port import Burst, PortError, PortUnavailable, TimestampSource, open_port
from netio.stack import Stack
from netio import udp_socket
from netio.udp_socket import UdpBurst, UdpSocketPort
from tests.wire import ns_socket

PREFIX = "sockp"
MINE = f"{PREFIX}{os.getpid():x}x"       # the names this test process makes
STACK_MAC = "02:00:00:00:77:77"           # the stack is its own host beside the root kernel's
ECHO_PORT = 7777
ETH_P_ALL = 3
RINGS = ["v3", "v2"]                      # TPACKET versions the socket port offers
SOL_PACKET, PACKET_AUXDATA = 263, 8
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET sockets and namespaces need root")


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    yield
    if os.geteuid() == 0:
        assert leftovers(MINE) == []


@pytest.fixture
def veth():
    with VethNamespace(PREFIX) as v:
        # the namespace's stack would leave UDP checksums to a NIC that a veth does not have
        iface.set_offloads(v.ns_if, tx_checksum=False, netns=v.ns_name)
        yield v


def stack_ip(v: VethNamespace) -> str:
    """An address in the pair's subnet that only the netio stack answers for."""
    return str(v.subnet.network_address + 77)


def ns_raw(v: VethNamespace) -> socket.socket:
    s = ns_socket(v, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((v.ns_if, ETH_P_ALL))
    return s


def receive(port, want: int, timeout: float = 5.0, keep=lambda f: True) -> tuple[list[bytes], list[int]]:
    """Frames (and stamps) passing ``keep`` until ``want`` of them came or time ran out."""
    frames, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(frames) < want and time.monotonic() < deadline:
        b = port.rx_burst(64)
        for f, t in zip(b.to_bytes(), b.timestamps.tolist()):
            if keep(f):
                frames.append(f)
                stamps.append(t)
        port.release(b)
        if not len(b):
            select.select([port.fileno()], [], [], 0.01)
    return frames, stamps


class StackLoop(threading.Thread):
    """Port + stack for the duration of a test: answers ARP and ping, echoes UDP to ECHO_PORT."""

    def __init__(self, port, stack: Stack):
        super().__init__(daemon=True)
        self.port, self.stack = port, stack
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                b = self.port.rx_burst(64)
                if not len(b):
                    select.select([self.port.fileno()], [], [], 0.01)
                    continue
                r = self.stack.process(b)
                self.port.tx_burst(r.replies)
                if r.delivered:
                    d = r.datagrams
                    self.port.tx_burst(self.stack.build_udp(r.payload_burst(), d["src_ip"], d["src_port"],
                                                            d["dst_port"], d["src_mac"]))
                self.port.release(b)
        except BaseException as e:  # handed to the test thread by stop()
            self.error = e

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        if self.error:
            raise self.error

    def __enter__(self) -> StackLoop:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- AF_PACKET port ---------------------------------------------------------------------------

@root_only
@pytest.mark.parametrize("ring", RINGS)
def test_frames_from_the_namespace_arrive_byte_exact_with_kernel_timestamps(veth, ring):
    src = "02:00:00:00:55:55"
    frames = [bytes(Ether(dst=veth.host_mac, src=src) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                    UDP(sport=1, dport=2) / Raw(bytes([i]) * size))
              for i, size in enumerate([18, 100, 555, 1472])]
    frames.append(bytes(Ether(dst=STACK_MAC, src=src) / Dot1Q(vlan=42, prio=3) / IP(dst="10.1.1.1") / UDP() / b"vlan"))
    frames.append(bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=src) / ARP(pdst="10.1.1.1")))
    with PacketSocketPort(veth.host_if, ring=ring) as port, ns_raw(veth) as tx:
        before = time.time_ns()
        for f in frames:
            tx.send(f)
        got, stamps = receive(port, len(frames), keep=lambda f: f[6:12] == bytes.fromhex(src.replace(":", "")))
        after = time.time_ns()
        assert got == frames                       # byte for byte, the VLAN tag back in place
        assert all(before <= t <= after for t in stamps)
        assert port.info.ts_source is TimestampSource.KERNEL
        assert port.stats().rx_packets >= len(frames)


@root_only
@pytest.mark.parametrize("ring", RINGS)
def test_a_small_ring_overflows_into_counted_drops_and_its_blocks_come_back_after_release(veth, ring):
    """received + ring_full drops = sent, in order; released blocks take frames again."""
    src = bytes.fromhex("020000005656")

    template = bytes(Ether(dst=veth.host_mac, src=src.hex(":")) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                     UDP(sport=9, dport=9, chksum=0) / Raw(bytes(64)))

    def frames(start: int, count: int) -> list[bytes]:
        return [template[:-64] + i.to_bytes(4, "big") * 16 for i in range(start, start + count)]
    with PacketSocketPort(veth.host_if, ring=ring, block_size=16384, block_nr=4, frame_size=2048) as port, \
            ns_raw(veth) as tx:
        flood = frames(0, 2000)
        for f in flood:
            tx.send(f)
        got, _ = receive(port, len(flood), timeout=1, keep=lambda f: f[6:12] == src)
        seqs = [int.from_bytes(f[-64:-60], "big") for f in got]
        assert seqs == sorted(set(seqs)) and set(got) <= set(flood)
        assert len(got) < len(flood)                           # the ring was too small to hold them
        assert len(got) + port.stats().drops[DROP_RING_FULL] == len(flood)
        after = frames(5000, 20)                               # the drained ring takes frames again
        for f in after:
            tx.send(f)
        assert receive(port, len(after), keep=lambda f: f[6:12] == src)[0] == after


@root_only
@pytest.mark.parametrize("ring", RINGS)
def test_a_ring_whose_blocks_are_all_held_takes_nothing_until_a_release(veth, ring):
    src = bytes.fromhex("020000005757")
    frame = bytes(Ether(dst=veth.host_mac, src=src.hex(":")) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                  UDP(sport=9, dport=9) / Raw(bytes(1000)))
    with PacketSocketPort(veth.host_if, ring=ring, block_size=4096, block_nr=2, frame_size=2048) as port, \
            ns_raw(veth) as tx:
        held = []                                              # bursts read and never released
        deadline = time.monotonic() + 3
        while port.stats().fill_ring_empty == 0 and time.monotonic() < deadline:
            tx.send(frame)
            time.sleep(0.005)
            if len(b := port.rx_burst(64)):
                held.append(b)
        assert port.stats().fill_ring_empty >= 1
        ours = [f for b in held for f in b.to_bytes() if f[6:12] == src]
        assert ours and all(f == frame for f in ours)          # held views stay intact
        port.release(held[-1])                                 # hands back every block (in order)
        tx.send(frame)
        assert receive(port, 1, keep=lambda f: f[6:12] == src)[0] == [frame]


@root_only
def test_frames_longer_than_a_v2_slot_are_dropped_and_counted(veth):
    src = bytes.fromhex("020000005959")
    small, big = (bytes(Ether(dst=veth.host_mac, src=src.hex(":")) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                        UDP(sport=9, dport=9) / Raw(bytes(size))) for size in (64, 400))
    with PacketSocketPort(veth.host_if, ring="v2", block_size=4096, block_nr=4, frame_size=256) as port, \
            ns_raw(veth) as tx:
        for f in (small, big, small):
            tx.send(f)
        assert receive(port, 2, keep=lambda f: f[6:12] == src)[0] == [small, small]
        assert port.stats().drops == {DROP_TOO_LONG: 1}


@root_only
def test_frames_sent_on_the_port_arrive_byte_exact_in_the_namespace(veth):
    frames = [bytes(Ether(dst=veth.ns_mac, src=STACK_MAC) / IP(src="10.1.1.1", dst=veth.ns_ip) /
                    UDP(sport=3, dport=4) / Raw(bytes([i]) * (10 + 300 * i))) for i in range(5)]
    with PacketSocketPort(veth.host_if) as port, ns_raw(veth) as rx:
        rx.settimeout(2)
        assert port.tx_burst(Burst.of(frames)) == len(frames)
        got = []
        while len(got) < len(frames):
            data, addr = rx.recvfrom(4096)
            if data[6:12] == bytes.fromhex(STACK_MAC.replace(":", "")):
                got.append(data)
        assert got == frames
        assert port.stats().tx_packets == len(frames)


@root_only
@pytest.mark.parametrize("ring", RINGS)
def test_ping_from_the_namespace_is_answered_by_the_stack(veth, ring):
    stack = Stack(STACK_MAC, stack_ip(veth))
    with PacketSocketPort(veth.host_if, ring=ring) as port, StackLoop(port, stack):
        ping = veth.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "200", stack_ip(veth)],
                        capture_output=True, text=True, timeout=20)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "3 received" in ping.stdout and "DUP" not in ping.stdout
    c = stack.counters()
    assert c["replied"] >= 4                      # at least one ARP reply and three echo replies
    assert c["received"] == c["delivered"] + c["replied"] + sum(c["drops"].values())


@root_only
@pytest.mark.parametrize("ring", RINGS)
def test_a_vlan_tagged_echo_request_is_answered_with_a_tagged_reply_through_the_ring(veth, ring):
    """Tags survive the ring both ways (this kernel has no 8021q devices, so raw sockets stand in)."""
    stack = Stack(STACK_MAC, stack_ip(veth), vlan=100)
    request = bytes(Ether(dst=STACK_MAC, src=veth.ns_mac) / Dot1Q(vlan=100, prio=2) /
                    IP(src=veth.ns_ip, dst=stack_ip(veth)) / ICMP(id=0x4242, seq=9) / Raw(b"tagged ping"))
    with PacketSocketPort(veth.host_if, ring=ring) as port, StackLoop(port, stack), ns_raw(veth) as raw:
        raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)         # the kernel hands the stripped tag here
        raw.settimeout(3)
        raw.send(request)
        while True:
            data, ancillary, _, addr = raw.recvmsg(4096, 256)
            if data[6:12] == bytes.fromhex(STACK_MAC.replace(":", "")) and addr[2] != socket.PACKET_OUTGOING:
                break
    [(_, _, aux)] = [a for a in ancillary if a[:2] == (SOL_PACKET, PACKET_AUXDATA)]
    tci = struct.unpack_from("<H", aux, 16)[0]               # struct tpacket_auxdata.tp_vlan_tci
    assert (tci & 0x0FFF, tci >> 13) == (100, 2)
    reply = Ether(data)
    assert (reply[IP].src, reply[IP].dst, reply[ICMP].type, reply[ICMP].id, reply[ICMP].seq) == \
        (stack_ip(veth), veth.ns_ip, 0, 0x4242, 9)
    assert bytes(reply[ICMP].payload) == b"tagged ping"


@root_only
def test_a_udp_echo_loop_on_port_and_stack_answers_a_namespace_socket(veth):
    stack = Stack(STACK_MAC, stack_ip(veth))
    stack.bind(ECHO_PORT)
    with PacketSocketPort(veth.host_if) as port, StackLoop(port, stack), \
            ns_socket(veth, socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.bind((veth.ns_ip, 0))
        answers = []
        for msg in (b"order 1", b"x" * 1400, b""):
            s.sendto(msg, (stack_ip(veth), ECHO_PORT))
            answers.append(s.recvfrom(2048))     # the namespace kernel checked our checksums
    assert answers == [(m, (stack_ip(veth), ECHO_PORT)) for m in (b"order 1", b"x" * 1400, b"")]
    assert stack.counters()["delivered"] == 3


GROUP = "239.77.0.1"


def ns_multicast_socket(v: VethNamespace, port: int = 0, join: bool = False) -> socket.socket:
    s = ns_socket(v, socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(v.ns_ip))
    if join:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(GROUP) + socket.inet_aton(v.ns_ip))
    s.bind(("", port))
    return s


@root_only
def test_multicast_flows_both_ways_between_the_stack_and_namespace_sockets(veth):
    """Group traffic from the namespace reaches the joined stack; the stack's group frames reach members."""
    stack = Stack(STACK_MAC, stack_ip(veth))
    stack.bind(26400)
    with PacketSocketPort(veth.host_if) as port, ns_multicast_socket(veth) as sender, \
            ns_multicast_socket(veth, 26401, join=True) as member:
        assert port.tx_burst(stack.join(GROUP)) == 1
        sender.sendto(b"to the group", (GROUP, 26400))
        got, _ = receive(port, 1, keep=lambda f: f[:3] == bytes.fromhex("01005e") and f[-12:] == b"to the group")
        result = stack.process(Burst.of(got))
        assert result.delivered == 1 and result.datagrams["dst_ip"].tolist() == [int.from_bytes(
            socket.inet_aton(GROUP), "big")]
        assert port.tx_burst(stack.build_udp(Burst.of([b"itch"]), GROUP, 26401, 26400)) == 1
        assert member.recvfrom(2048) == (b"itch", (stack_ip(veth), 26400))


@root_only
def test_udp_ports_join_groups_and_send_to_them_through_the_named_interface(veth):
    with UdpSocketPort(":0", groups=[GROUP], multicast_if=veth.host_ip) as rx, \
            UdpSocketPort(f"{veth.host_ip}:0") as tx, \
            ns_multicast_socket(veth) as sender, ns_multicast_socket(veth, 26402, join=True) as member:
        sender.sendto(b"feed", (GROUP, rx.address[1]))
        assert receive(rx, 1)[0] == [b"feed"]
        assert tx.tx_burst(UdpBurst.to([b"out"], GROUP, 26402)) == 1
        assert member.recvfrom(2048) == (b"out", (veth.host_ip, tx.address[1]))
    with pytest.raises(PortError, match="needs multicast_if="):
        UdpSocketPort(":0", groups=[GROUP])


@root_only
def test_two_members_of_one_group_on_one_host_both_get_every_datagram(veth):
    with UdpSocketPort(f"{GROUP}:26403", groups=[GROUP], multicast_if=veth.host_ip) as a, \
            UdpSocketPort(f"{GROUP}:26403", groups=[GROUP], multicast_if=veth.host_ip) as b, \
            ns_multicast_socket(veth) as sender:
        sender.sendto(b"tick", (GROUP, 26403))
        assert receive(a, 1)[0] == [b"tick"] and receive(b, 1)[0] == [b"tick"]


@root_only
def test_malformed_frames_from_the_namespace_are_dropped_and_counted_by_reason(veth):
    stack = Stack(STACK_MAC, stack_ip(veth))
    stack.bind(ECHO_PORT)

    def to_stack(*layers):
        f = Ether(dst=STACK_MAC, src=veth.ns_mac) / IP(src=veth.ns_ip, dst=stack_ip(veth))
        for layer in layers:
            f = f / layer
        return f
    frames = [to_stack(UDP(dport=ECHO_PORT) / b"good"),
              Ether(dst=STACK_MAC, src=veth.ns_mac) / IP(src=veth.ns_ip, dst=stack_ip(veth), chksum=7) / UDP(),
              to_stack(UDP(dport=ECHO_PORT, chksum=0x4242) / b"bad"),
              Ether(dst=STACK_MAC, src=veth.ns_mac) / IP(src=veth.ns_ip, dst=stack_ip(veth), flags="MF") / UDP(),
              to_stack(TCP(dport=80)),
              to_stack(UDP(dport=ECHO_PORT + 1)),
              Ether(dst=STACK_MAC, src=veth.ns_mac, type=0x0800) / b"\x45\x00",
              Ether(dst=STACK_MAC, src=veth.ns_mac, type=0x88B5) / b"local experimental"]
    sent = [bytes(f) for f in frames]
    with PacketSocketPort(veth.host_if) as port, ns_raw(veth) as tx:
        for f in sent:
            tx.send(f)
        got, _ = receive(port, len(sent), keep=lambda f: f[:6] == bytes.fromhex(STACK_MAC.replace(":", "")))
    assert got == sent
    result = stack.process(Burst.of(got))
    assert result.delivered == 1 and bytes(result.payload(0)) == b"good"
    assert result.drops == {"bad_ip_checksum": 1, "bad_udp_checksum": 1, "fragment": 1, "unknown_protocol": 1,
                            "unbound_port": 1, "truncated": 1, "not_ipv4": 1}


@root_only
def test_open_port_auto_gives_a_working_port_and_records_its_fallbacks(veth):
    iface.set_offloads(veth.ns_if, gro=True, netns=veth.ns_name)     # what native XDP on a veth wants
    frame = bytes(Ether(dst=veth.host_mac, src=veth.ns_mac) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                  UDP(sport=5, dport=6) / b"auto")
    with open_port(veth.host_if, backend="auto") as port, ns_raw(veth) as tx:
        assert port.info.backend in ("xdp", "socket"), port.info
        if port.info.backend == "socket":
            assert port.info.fallbacks and port.info.fallbacks[0].startswith("xdp: "), port.info.fallbacks
        got = []
        for _ in range(5):                         # an XDP port may need a moment to be wired up
            tx.send(frame)
            got, _ = receive(port, 1, timeout=1, keep=lambda f: f == frame)
            if got:
                break
        assert got == [frame], port.info.describe()


@root_only
def test_a_missing_or_down_interface_is_a_clear_error(veth):
    with pytest.raises(PortError, match="no network interface called 'nosuch0'"):
        PacketSocketPort("nosuch0")
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=veth.host_if)[0], state="down")
    with pytest.raises(PortError, match=f"interface {veth.host_if} is down; bring it up"):
        PacketSocketPort(veth.host_if)
    with pytest.raises(PortUnavailable, match="reads every queue"):
        PacketSocketPort(veth.host_if, queue=1)


@root_only
def test_without_root_the_socket_port_is_unavailable_in_one_sentence():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child drops root and tries
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                PacketSocketPort("lo")
                msg = "opened"
            except PortUnavailable as e:
                msg = f"PortUnavailable: {e}"
            except BaseException as e:
                msg = f"{type(e).__name__}: {e}"
            os.write(write, msg.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        msg = f.read()
    assert msg == ("PortUnavailable: opening an AF_PACKET socket needs root (CAP_NET_RAW); run as root, "
                   "or use the udp backend for unprivileged UDP")


# -- UDP socket port --------------------------------------------------------------------------

def test_udp_ports_exchange_datagrams_on_loopback_with_sender_addresses_and_stamps():
    with UdpSocketPort("127.0.0.1:0") as a, open_port("127.0.0.1:0", backend="udp") as b:
        payloads = [b"order-%d" % i for i in range(100)] + [b""]
        before = time.time_ns()
        assert a.tx_burst(UdpBurst.to(payloads, "127.0.0.1", b.address[1])) == len(payloads)
        got, stamps = receive(b, len(payloads))
        assert got == payloads
        assert all(before <= t <= time.time_ns() for t in stamps)
        # a received burst sent back answers every datagram to its sender
        rx = b.rx_burst()
        assert len(rx) == 0
        a.tx_burst(UdpBurst.to([b"ping"], "127.0.0.1", b.address[1]))
        deadline = time.monotonic() + 2
        while not len(rx) and time.monotonic() < deadline:
            rx = b.rx_burst()
        assert rx.to_bytes() == [b"ping"]
        assert (rx.peer_ip.tolist(), rx.peer_port.tolist()) == ([0x7F000001], [a.address[1]])
        b.tx_burst(rx)
        b.release(rx)
        echoed, _ = receive(a, 1)
        assert echoed == [b"ping"]
        assert b.stats().rx_packets == len(payloads) + 1 and b.info.ts_source is TimestampSource.KERNEL


def test_udp_port_counts_datagrams_too_long_for_a_slot_and_holds_unreleased_slots():
    with UdpSocketPort("127.0.0.1:0", slot_size=64, slots=4) as rx, UdpSocketPort("127.0.0.1:0") as tx:
        tx.tx_burst(UdpBurst.to([b"a" * 65, b"b" * 64] + [b"c"] * 5, "127.0.0.1", rx.address[1]))
        time.sleep(0.05)
        first = rx.rx_burst(64)                    # 4 slots: the long one is dropped, 3 delivered
        assert first.to_bytes() == [b"b" * 64, b"c", b"c"]
        assert rx.stats().drops == {udp_socket.DROP_TOO_LONG: 1}
        assert len(rx.rx_burst(64)) == 0 and rx.stats().fill_ring_empty == 1
        rx.release(first)
        assert rx.rx_burst(64).to_bytes() == [b"c"] * 3


def test_udp_port_needs_a_destination_and_a_valid_address():
    with UdpSocketPort("127.0.0.1:0") as port:
        with pytest.raises(PortError, match="no destination"):
            port.tx_burst(Burst.of([b"x"]))
        with pytest.raises(PortError, match="cannot bind a UDP socket to 127.0.0.1:"):
            UdpSocketPort(f"127.0.0.1:{port.address[1]}")
    with pytest.raises(PortError, match="like 127.0.0.1:9000"):
        UdpSocketPort("localhost")
    with UdpSocketPort("127.0.0.1:0") as a, UdpSocketPort("127.0.0.1:0", peer=f"127.0.0.1:{a.address[1]}") as b:
        b.tx_burst(Burst.of([b"to the default peer"]))
        assert receive(a, 1)[0] == [b"to the default peer"]


@root_only
@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed")
def test_a_capture_through_the_port_into_pcap_matches_tcpdumps_capture(veth, tmp_path):
    """Socket port -> PcapPort gives the frames and kernel stamps tcpdump records of the same traffic."""
    src = "02:00:00:00:58:58"
    frames = [bytes(Ether(dst=veth.host_mac, src=src) / IP(src=veth.ns_ip, dst=veth.host_ip) /
                    UDP(sport=9, dport=9) / Raw(bytes([i]) * (50 + i))) for i in range(20)]
    theirs, ours = tmp_path / "tcpdump.pcap", tmp_path / "ours.pcapng"
    dump = subprocess.Popen(["tcpdump", "-i", veth.host_if, "-U", "-n", "--time-stamp-precision=nano",
                             "-c", str(len(frames)), "-w", str(theirs), "ether", "src", src],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in dump.stderr.readline()
        with PacketSocketPort(veth.host_if) as port, ns_raw(veth) as tx, \
                PcapPort(ours, mode="w", format="pcapng") as capture:
            for f in frames:
                tx.send(f)
            got = 0
            deadline = time.monotonic() + 5
            while got < len(frames) and time.monotonic() < deadline:
                b = port.rx_burst(64)
                mine = [i for i, f in enumerate(b.to_bytes()) if f[6:12] == bytes.fromhex(src.replace(":", ""))]
                sub = Burst(b.buffer, b.offsets[mine], b.lengths[mine], b.timestamps[mine], b.ts_source)
                got += capture.tx_burst(sub)
                port.release(b)
        dump.wait(timeout=5)
    finally:
        dump.kill()
        dump.wait()
    ours_frames, ours_stamps = read_capture(ours)
    theirs_frames, theirs_stamps = read_capture(theirs)
    assert ours_frames == theirs_frames == frames
    assert ours_stamps == theirs_stamps                  # the same skb stamp, read by two sockets


def read_capture(path) -> tuple[list[bytes], list[int]]:
    with PcapPort(path) as port:
        b = port.rx_burst(1000)
        return b.to_bytes(), b.timestamps.tolist()
