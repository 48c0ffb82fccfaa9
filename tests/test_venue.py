"""The venue pipeline: OUCH in -> risk -> matching -> OUCH replies + ITCH in MoldUDP64 out.

Unit tests drive ``engine.venue.Venue`` through an in-memory port (frames made by a
client-side Stack); end-to-end tests run ``netio-run`` on the root end of a veth pair
with a client in the namespace, on the AF_XDP and socket backends.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import itch, journal, moldudp64, ouch
from engine.book import Book
from engine.commands import COMMAND_DTYPE
from engine.matching import Matcher
from engine.venue import Venue
from engine.venue_config import VenueConfig
from netio.port import Burst, Port, PortInfo, PortStats
from netio.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
VENUE_IP, VENUE_MAC = "10.9.0.10", "02:00:00:00:00:0a"
CLIENT_MAC = "02:00:00:00:00:0c"


class MemoryPort(Port):
    """Frames queued by the test come in; frames sent are kept as bytes."""

    def __init__(self):
        self.info = PortInfo("memory", "mem0")
        self.inbox: list[bytes] = []
        self.sent: list[bytes] = []

    def rx_burst(self, max_frames: int = 64) -> Burst:
        frames, self.inbox = self.inbox[:max_frames], self.inbox[max_frames:]
        return Burst.of(frames)

    def tx_burst(self, burst: Burst) -> int:
        self.sent += burst.to_bytes()
        return len(burst)

    def stats(self) -> PortStats:
        return PortStats()

    def close(self) -> None:
        pass


def enter(token: str, side: str, qty: int, stock: str, price: int, firm: str = "FIRM", tif: int = 99999) -> dict:
    return dict(type="O", order_token=token, buy_sell_indicator=side, shares=qty, stock=stock, price=price,
                time_in_force=tif, firm=firm, display="Y", capacity="A", intermarket_sweep_eligibility="N",
                minimum_quantity=0, cross_type="N", customer_type="R")


def datagram(*messages: dict) -> bytes:
    """One UDP payload: each OUCH message in its own SoupBinTCP 'U' packet."""
    out = b""
    for m in messages:
        body = ouch.pack(m["type"], "in", **{k: v for k, v in m.items() if k != "type"})
        out += (len(body) + 1).to_bytes(2, "big") + b"U" + body
    return out


class Client:
    """A client host on the memory wire."""

    def __init__(self, ip: str, port: int):
        self.stack = Stack(CLIENT_MAC, ip)
        self.stack.bind(port)
        self.stack.bind(15001)
        self.stack.join("239.192.0.1")
        self.sport = port

    def frame(self, payload: bytes) -> bytes:
        return self.stack.build_udp(Burst.of([payload]), VENUE_IP, 15000, self.sport, VENUE_MAC).to_bytes()[0]


def split_output(frames: list[bytes], client_stack: Stack):
    """(OUCH replies by type in order, ITCH messages in order, MoldUDP64 sequence numbers)."""
    result = client_stack.process(Burst.of(frames))
    replies, feed, seqs = [], [], []
    for dg, payload in zip(result.datagrams, result.payloads()):
        data = bytes(payload)
        if dg["dst_port"] == 15001:
            p = moldudp64.decode(data)
            seqs.append((p.sequence, len(p.messages)))
            feed += [itch.unpack(m) for m in p.messages]
        else:
            d = ouch.decode_outbound(data, final=True)
            assert not d.rejects
            replies += [ouch.unpack(bytes(d.messages[chr(t)][i].tobytes()), "out")
                        for t, i in zip(d.order_type.tolist(), d.order_index.tolist())]
    return replies, feed, seqs


def empty_book() -> Book:
    """A book like the default venue's, to replay its journal into."""
    cfg = VenueConfig()
    return Book(len(cfg.symbols), cfg.pool_size, cfg.band_ticks, ref_price=[s.reference // s.tick for s in cfg.symbols])


@pytest.fixture
def memory_venue():
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig())
    yield venue, port
    venue.close()


def test_a_cross_is_accepted_filled_on_both_sides_and_printed_on_the_feed(memory_venue):
    venue, port = memory_venue
    a, b = Client("10.9.0.1", 40001), Client("10.9.0.2", 40002)
    port.inbox += [a.frame(datagram(enter("S1", "S", 300, "AAPL", 1_900_000))),
                   b.frame(datagram(enter("B1", "B", 100, "AAPL", 1_900_100)))]
    while venue.poll():
        pass
    replies_a, feed, seqs = split_output(port.sent, a.stack)
    replies_b, _, _ = split_output(port.sent, b.stack)
    assert [r["type"] for r in replies_a] == ["A", "E"]
    assert replies_a[0]["order_token"] == "S1" and replies_a[0]["order_state"] == "L"
    assert replies_a[1]["liquidity_flag"] == "A" and replies_a[1]["executed_shares"] == 100
    assert [r["type"] for r in replies_b] == ["A", "E"]
    assert replies_b[1]["liquidity_flag"] == "R" and replies_b[1]["execution_price"] == 1_900_000
    assert replies_a[1]["match_number"] == replies_b[1]["match_number"]
    types = [m["message_type"] for m in feed]
    assert types[0] == "S" and types[1:9] == ["R"] * 8
    assert types[9:] == ["A", "E"]
    add, execd = feed[9], feed[10]
    assert add["order_reference_number"] == replies_a[0]["order_reference_number"]
    assert add["price"] == 1_900_000 and add["shares"] == 300 and add["stock"] == "AAPL"
    assert execd["executed_shares"] == 100 and execd["match_number"] == replies_a[1]["match_number"]
    first = [s for s, _ in seqs]
    assert first == sorted(first) and all(s + n == nxt for (s, n), nxt in zip(seqs, first[1:]))


def test_rejects_carry_the_ouch_code_and_every_message_is_counted_even_unanswered_ones(memory_venue):
    venue, port = memory_venue
    c = Client("10.9.0.3", 40003)
    bad_tick = enter("T1", "B", 100, "AAPL", 1_900_050)         # not a multiple of the tick
    unknown = enter("T2", "B", 100, "ZZZZ", 1_000_000)
    stranger = enter("T3", "B", 100, "AAPL", 1_900_000, firm="XXXX")
    cancel_unknown = dict(type="X", order_token="NOPE", shares=0)
    port.inbox.append(c.frame(datagram(bad_tick, unknown, stranger, cancel_unknown) + b"\x00\x05Ujunk"))
    venue.poll()
    replies, _, _ = split_output(port.sent, c.stack)
    assert [(r["type"], r["order_token"], r["reason"]) for r in replies] == [
        ("J", "T1", "X"), ("J", "T2", "S"), ("J", "T3", "O")]   # OUCH 4.2: no answer to a cancel of no live order
    counts = venue.counters()
    assert counts["messages"] == 4 and counts["message_drops"] == {"unknown_message_type": 1}
    assert counts["rejects"] == {"invalid_price": 1, "unknown_symbol": 1, "risk_other": 1, "unknown_token": 1}
    assert counts["stack"]["received"] == counts["rx_frames"] == 1


def test_replace_and_cancel_reply_with_the_clients_tokens_and_update_the_feed(memory_venue):
    venue, port = memory_venue
    c = Client("10.9.0.4", 40004)
    port.inbox.append(c.frame(datagram(enter("R1", "B", 200, "MSFT", 4_199_000))))
    port.inbox.append(c.frame(datagram(
        dict(type="U", existing_order_token="R1", replacement_order_token="R2", shares=150, price=4_198_000,
             time_in_force=99999, display="Y", intermarket_sweep_eligibility="N", minimum_quantity=0),
        dict(type="X", order_token="R2", shares=0))))
    while venue.poll():
        pass
    replies, feed, _ = split_output(port.sent, c.stack)
    assert [r["type"] for r in replies] == ["A", "U", "C"]
    assert replies[1]["replacement_order_token"] == "R2" and replies[1]["previous_order_token"] == "R1"
    assert replies[1]["price"] == 4_198_000 and replies[1]["stock"] == "MSFT"
    assert replies[2]["order_token"] == "R2" and replies[2]["decrement_shares"] == 150
    assert [m["message_type"] for m in feed][9:] == ["A", "U", "D"]
    assert venue.book.live == 0


def test_a_journal_replays_to_the_venues_book(tmp_path):
    port = MemoryPort()
    path = tmp_path / "venue.jnl"
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(path))
    c = Client("10.9.0.5", 40005)
    rng = np.random.default_rng(7)
    for k in range(40):
        side = "B" if rng.integers(2) else "S"
        price = 1_900_000 + 100 * int(rng.integers(-5, 6))
        port.inbox.append(c.frame(datagram(enter(f"J{k}", side, int(rng.integers(1, 5)) * 100, "AAPL", price))))
    while venue.poll():
        pass
    final = venue.book.state_hash()
    venue.close()
    book = empty_book()
    journal.replay(path, Matcher(book).run, COMMAND_DTYPE)
    assert book.state_hash() == final


def test_a_venue_restarted_on_its_journal_has_its_book_clients_and_tokens_and_carries_on_the_feed(tmp_path):
    path, c = tmp_path / "venue.jnl", Client("10.9.0.6", 40006)
    first = Venue(MemoryPort(), VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(path))
    first.port.inbox += [c.frame(datagram(enter(f"K{k}", "BS"[k % 2], 100 * (1 + k % 3), "AAPL",
                                                1_900_000 + 100 * (k % 5 - 2)))) for k in range(30)]
    first.port.inbox.append(c.frame(datagram(enter("REST", "B", 100, "AAPL", 1_880_000))))
    while first.poll():
        pass
    first.close()
    port = MemoryPort()
    second = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(path))
    assert second.book.state_hash() == first.book.state_hash() and second.feed_seq == first.feed_seq
    assert port.sent == []                              # no second start of day on the feed
    port.inbox.append(c.frame(datagram(enter("NEW", "B", 100, "MSFT", 4_200_000),
                                       dict(type="X", order_token="REST", shares=0))))   # from before
    second.poll()
    second.close()
    replies, feed, seqs = split_output(port.sent, c.stack)
    assert [(r["type"], r["order_token"]) for r in replies] == [("A", "NEW"), ("C", "REST")]
    assert seqs == [(first.feed_seq, 2)] and [m["message_type"] for m in feed] == ["A", "D"]



@pytest.mark.parametrize("fused, impl", [(False, "c"), (False, "numpy"), (True, "c")], ids=["python", "numpy", "fused"])
def test_a_venue_restarted_on_its_journal_answers_re_requests_for_the_feed_it_sent_before(tmp_path, fused, impl):
    """The book events' messages come back byte for byte as first sent (their timestamps
    are the journaled commands'); the start of day's timestamps were never journaled, so
    those are not held; with a store of 8 messages, only the latest 8."""
    path, c, consumer = tmp_path / "venue.jnl", Client("10.9.0.6", 40006), Client("10.9.0.9", 40100)
    first = Venue(MemoryPort(), VENUE_IP, VENUE_MAC, VenueConfig(), journal=str(path))
    first.port.inbox += [c.frame(datagram(enter(f"K{k}", "BS"[k % 2], 100 * (1 + k % 3), "AAPL",
                                                1_900_000 + 100 * (k % 5 - 2)))) for k in range(30)]
    while first.poll():
        pass
    first.close()
    sent = {p.sequence + i: m for p in map(moldudp64.decode, _payloads_to(first.port.sent, consumer, 15001))
            for i, m in enumerate(p.messages)}
    start_of_day = 1 + len(VenueConfig().symbols)
    for messages, held in ((1 << 18, range(start_of_day + 1, first.feed_seq)),
                           (8, range(first.feed_seq - 8, first.feed_seq))):
        port = MemoryPort()
        second = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(recovery_messages=messages), journal=str(path),
                       fused=fused, impl=impl)
        assert second.recovery.held == held
        port.inbox = [consumer.stack.build_udp(Burst.of([moldudp64.request("NETIO00001", seq, 1)]), VENUE_IP,
                                               15002, 40100, VENUE_MAC).to_bytes()[0] for seq in (1, held.start)]
        while second.poll():
            pass
        counters = second.counters()
        second.close()
        answer = [moldudp64.decode(p) for p in _payloads_to(port.sent, consumer, 40100)]
        assert [(p.sequence, list(p.messages)) for p in answer] == [(held.start, [sent[held.start]])]
        assert counters["message_drops"] == {"request_not_held": 1}
        at = held.start                 # every message held, as many as fit an answer at a time
        while at < held.stop:
            packet = second.recovery.answer(moldudp64.request("NETIO00001", at, held.stop - at), 0, 0)[0]
            got = moldudp64.decode(packet).messages
            assert list(got) == [sent[q] for q in range(at, at + len(got))] and got
            at += len(got)


# ---------------------------------------------------------------------------------------
# End to end: netio-run on a veth pair, a scripted client in the namespace

CLIENT_SCRIPT = r'''
import json, socket, sys, time
from engine import ouch, moldudp64, itch
venue_ip, local_ip, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
feed.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
feed.bind(("239.192.0.1", 15001))
feed.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton("239.192.0.1") + socket.inet_aton(local_ip))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local_ip, 0))
s.settimeout(0.2)
def msg(k):
    side = "S" if k % 2 == 0 else "B"
    body = ouch.pack("O", "in", order_token=f"E{k}", buy_sell_indicator=side, shares=100, stock="AAPL",
                     price=1_900_000, time_in_force=99999, firm="TEST", display="Y", capacity="A",
                     intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type="N", customer_type="R")
    return (len(body) + 1).to_bytes(2, "big") + b"U" + body
for attempt in range(100):       # the venue may still be starting: wait for its first answer
    s.sendto(msg(0), (venue_ip, 15000))
    try:
        s.recvfrom(2048); break
    except socket.timeout:
        pass
else:
    sys.exit("no answer from the venue")
replies = []
for k in range(1, n, 4):
    s.sendto(b"".join(msg(j) for j in range(k, min(k + 4, n))), (venue_ip, 15000))
    time.sleep(0.002)
deadline = time.time() + 5
while time.time() < deadline:
    try:
        data, _ = s.recvfrom(4096)
    except socket.timeout:
        continue
    d = ouch.decode_outbound(data, final=True)
    replies += [ouch.unpack(d.messages[chr(t)][i].tobytes(), "out")
                for t, i in zip(d.order_type.tolist(), d.order_index.tolist())]
    if sum(r["type"] == "E" for r in replies) >= 2 * (n // 2):
        break
feed.setblocking(False)
packets = []
time.sleep(0.3)
while True:
    try:
        packets.append(feed.recv(4096))
    except BlockingIOError:
        break
feed_msgs, seqs = [], []
for p in packets:
    m = moldudp64.decode(p)
    if m.messages:
        seqs.append([m.sequence, len(m.messages)])
    feed_msgs += [itch.unpack(x) for x in m.messages]
print(json.dumps({"replies": replies, "feed": feed_msgs, "seqs": seqs}, default=str))
'''


@pytest.fixture
def veth():
    from netio import iface
    from netio.netns import VethNamespace
    v = VethNamespace("vnue")
    try:
        v.open()
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        yield v
    finally:
        v.close()


def venue_address(v) -> str:
    """An address in the veth subnet that the kernel does not own: only the venue answers it."""
    return str(v.subnet.network_address + 10)


def start_venue(v, backend: str, tmp_path: Path, duration: float = 30) -> subprocess.Popen:
    """netio-run on ``backend`` ("xdp-stamped": AF_XDP with the frames stamped by netio's XDP program;
    "xdp-locked": AF_XDP, the venue pinned to CPU 0 with its memory locked)."""
    extra = ["--dpdk-args", f"--no-huge -m 256 --file-prefix vnue{os.getpid()}"] if backend == "dpdk" else []
    if backend == "xdp-stamped":
        backend, extra = "xdp", ["--rx-stamps", "xdp"]
    if backend == "xdp-locked":
        backend, extra = "xdp", ["--lock-memory", "--cpu", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "tools.run", "--iface", v.host_if, "--backend", backend, "--ip", venue_address(v),
         "--journal", str(tmp_path / "venue.jnl"), "--hlog", str(tmp_path / "venue.hlog"),
         "--duration", str(duration), "--final-state", str(tmp_path / "final.json"), *extra],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)


def serving(venue: subprocess.Popen) -> list[str]:
    """netio-run's stderr lines up to the one that says it serves ("" last if it ended first)."""
    started = [venue.stderr.readline()]
    while started[-1] and not started[-1].startswith("netio-run: venue at"):
        started.append(venue.stderr.readline())
    return started


def loadgen_against_venue(veth, tmp_path, *args: str) -> dict:
    """netio-loadgen in the namespace, with ``args``, against netio-run on AF_XDP, which is
    then stopped: the load generator's summary."""
    venue = start_venue(veth, "xdp", tmp_path)
    try:
        started = serving(venue)
        assert started[-1], "".join(started)
        run = veth.run([sys.executable, "-m", "tools.loadgen", "--venue", venue_address(veth), "--rate", "2000",
                        "--duration", "1", "--json", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        venue.send_signal(signal.SIGTERM)
        venue.communicate(timeout=20)
    finally:
        if venue.poll() is None:
            venue.kill()
    assert run.returncode in (0, 1), run.stderr[-2000:]
    return json.loads(run.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.parametrize("backend", ["xdp", "xdp-stamped", "xdp-locked", "socket", "dpdk"])
@pytest.mark.timeout(90)
def test_every_order_is_answered_fills_match_the_feed_and_sigterm_cleans_up(veth, backend, tmp_path):
    n = 60
    venue = start_venue(veth, backend, tmp_path)
    try:
        started = serving(venue)
        if venue.poll() is not None and venue.wait() == 3 and backend == "dpdk":
            pytest.skip("DPDK cannot open a port here: " + "".join(started))
        assert started[-1], "".join(started)
        if backend.startswith("xdp"):     # the default on a port with a C table: the whole walk in C
            assert started[-1].rstrip().endswith("fused C pipeline"), started[-1]
        if backend == "xdp-locked":       # every page of the venue resident, on the CPU it was given
            status = Path(f"/proc/{venue.pid}/status").read_text()
            assert int(status.split("VmLck:")[1].split()[0]) > 0, status
            assert os.sched_getaffinity(venue.pid) == {0}
            assert any(line.startswith("netio-run: CPU 0 is ") for line in started), started   # what shares it
        out = veth.run([sys.executable, "-c", CLIENT_SCRIPT, venue_address(veth), veth.ns_ip, str(n)],
                       cwd=ROOT, capture_output=True, text=True, timeout=40)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        status = venue.stderr.readline()        # a status line comes every second
        assert "orders/s" in status and "fills" in status and "drops" in status, status
        if backend == "xdp-locked":       # the loop's own thread: how often the machine took its CPU
            assert " stalls " in status, status
        venue.send_signal(signal.SIGTERM)
        _, err = venue.communicate(timeout=20)
    finally:
        if venue.poll() is None:
            venue.kill()
    assert venue.returncode == 143, err                             # stopped by SIGTERM, cleanly
    replies, feed, seqs = got["replies"], got["feed"], got["seqs"]
    accepted = {r["order_token"] for r in replies if r["type"] == "A"}
    assert accepted == {f"E{k}" for k in range(1, n)}                # E0 was the probe's answer
    fills = [r for r in replies if r["type"] == "E"]
    assert len(fills) == 2 * (n // 2)                                # each cross: maker and taker
    assert sorted(f["match_number"] for f in fills if f["liquidity_flag"] == "R") == \
        sorted(m["match_number"] for m in feed if m["message_type"] == "E")
    assert seqs and all(s + c == nxt for (s, c), (nxt, _) in zip(seqs, seqs[1:]))   # no gap in the feed
    from netio import iface
    assert iface.xdp_programs(veth.host_if) == []
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["counters"]["stack"]["received"] == final["counters"]["rx_frames"]
    book = empty_book()
    journal.replay(tmp_path / "venue.jnl", Matcher(book).run, COMMAND_DTYPE)
    assert book.state_hash() == final["book_hash"]
    if backend == "xdp-stamped":    # the kernel's stamp as XDP saw each frame starts the clock
        from tools.report.breakdown import analyse
        from tools.report.hlog import read_run
        bd = analyse(read_run([tmp_path / "venue.hlog"]))
        rx, total = bd.stage("NetworkRX").summary, bd.stage("TOTAL").summary
        assert rx.count == total.count > 0 and 0 < rx.values_ns["p50"] <= total.values_ns["p50"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_the_load_generator_on_af_xdp_itself_gets_every_order_answered_and_the_feed_checked(veth, tmp_path):
    """netio-loadgen --backend xdp: its own AF_XDP port in the namespace and netio's UDP
    stack (ARP for the venue, IGMP for the feed) against the venue on AF_XDP."""
    summary = loadgen_against_venue(veth, tmp_path, "--backend", "xdp", "--iface", veth.ns_if)
    assert summary["passed"], (summary["failures"], summary["examples"])
    assert summary["answered"] > 1000 and summary["feed_messages"] > 1000
    from netio import iface
    assert iface.xdp_programs(veth.ns_if, netns=veth.ns_name) == []      # the client's port closed cleanly


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (Debian package nftables) to lose feed packets")
@pytest.mark.timeout(90)
def test_the_load_generator_gets_the_feed_packets_it_lost_from_the_venues_re_request_server(veth, tmp_path):
    """Every 7th feed packet is dropped on its way into the namespace (from the 4th, so the
    heartbeat the load generator waits for before its first order arrives); it asks the
    venue on AF_XDP for the gaps and checks the whole feed against its fills. Its drain
    outlasts two heartbeats, which show a lost tail."""
    veth.run(["nft", "-f", "-"], check=True, text=True, input=(
        "add table ip lossy\nadd chain ip lossy in { type filter hook input priority 0; }\n"
        "add rule ip lossy in udp dport 15001 numgen inc mod 7 == 3 drop\n"))
    summary = loadgen_against_venue(veth, tmp_path, "--feed-iface", veth.ns_ip, "--drain", "2.5")
    assert summary["passed"], (summary["failures"], summary["examples"])
    assert summary["feed_recovered"] >= summary["feed_packets"] // 7 > 0 and summary["feed_gaps"] == 0
    counters = json.loads((tmp_path / "final.json").read_text())["counters"]
    assert counters["retransmit_requests"] >= summary["feed_packets"] // 7


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_XDP")
@pytest.mark.timeout(90)
def test_sigterm_mid_demo_leaves_no_namespace_veth_or_xdp_program_and_a_journal_that_replays(tmp_path):
    from netio.netns import leftovers
    demo = subprocess.Popen([sys.executable, "-m", "tools.run", "--demo", "--duration", "30", "--rate", "2000",
                             "--journal", str(tmp_path / "demo.jnl"), "--final-state", str(tmp_path / "final.json"),
                             "--logs", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not any(line.startswith("netio-run --demo: xdp on")
                                                  or line.startswith("netio-run --demo: socket on")
                                                  for line in [demo.stderr.readline()]):
            pass
        time.sleep(3)                       # orders flowing
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=40)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 143, err
    assert leftovers(f"demo{demo.pid:x}x") == []
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["counters"]["commands"] > 0
    book = empty_book()
    journal.replay(tmp_path / "demo.jnl", Matcher(book).run, COMMAND_DTYPE)
    assert book.state_hash() == final["book_hash"]
    assert "per-stage latency breakdown" in out
    assert (tmp_path / "venue.hlog").stat().st_size > 0 and (tmp_path / "loadgen.hlog").exists()
    assert "MB of tables on 2 MB pages" in err          # the demo locks its memory, as --lock-memory does


def test_the_example_venue_toml_loads_and_states_the_house_defaults():
    assert VenueConfig.load(ROOT / "engine" / "venue.example.toml") == VenueConfig()


@pytest.mark.parametrize("fields, complaint", [
    ({"recovery_port": 15000}, "recovery_port"),            # the order port's
    ({"recovery_messages": 1000}, "power of two"),
    ({"recovery_answers_per_s": -1}, "recovery_answers_per_s"),
    ({"recovery_answers_per_s": 10.5}, "whole number"),
    ({"recovery_total_answers_per_s": -1}, "recovery_total_answers_per_s"),
    ({"recovery_total_answers_per_s": 2e4}, "whole number"),
    ({"feed_max_payload": 71}, "feed_max_payload"),          # no room for ITCH's longest message
])
def test_a_venue_config_that_cannot_work_is_refused_with_the_field_named(fields, complaint):
    with pytest.raises(ValueError, match=complaint):
        VenueConfig(**fields)


def test_a_venue_toml_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "v.toml").write_text("order_prot = 1\n")
    with pytest.raises(ValueError, match="order_prot"):
        VenueConfig.load(tmp_path / "v.toml")


def test_netio_run_exit_status_says_usage_error_or_port_that_cannot_open():
    run = lambda *a: subprocess.run([sys.executable, "-m", "tools.run", *a], cwd=ROOT, capture_output=True, text=True)
    assert run("--ip", "10.0.0.1").returncode == 2                       # no --iface
    assert run("--backend", "nope", "--iface", "x", "--ip", "10.0.0.1").returncode == 2
    refused = run("--iface", "vnuenosuch0", "--ip", "10.0.0.1", "--backend", "socket")
    assert refused.returncode == 3 and "vnuenosuch0" in refused.stderr


def random_flow(seed: int, n: int, clients: list[Client]) -> list[bytes]:
    """Enters (some crossing, IOC, off-tick, unknown symbol or firm), replaces, cancels
    (some of unknown tokens) from several clients, 1-5 messages a datagram."""
    rng = np.random.default_rng(seed)
    frames, live = [], {i: [] for i in range(len(clients))}
    for k in range(n):
        i = int(rng.integers(len(clients)))
        msgs = []
        for j in range(int(rng.integers(1, 6))):
            r = rng.random()
            stock = ["AAPL", "MSFT", "INTC", "ZZZZ"][int(rng.choice(4, p=[0.33, 0.33, 0.31, 0.03]))]
            ref = {"AAPL": 1_900_000, "MSFT": 4_200_000, "INTC": 300_000, "ZZZZ": 100_000}[stock]
            if r < 0.6 or not live[i]:
                tok = f"C{i}K{k}J{j}" if rng.random() < 0.97 else f"C{i}DUP"
                msgs.append(enter(tok, "BS"[int(rng.integers(2))], 100 * int(rng.integers(1, 6)), stock,
                                  ref + 100 * int(rng.integers(-3, 4)) + (50 if rng.random() < 0.05 else 0),
                                  tif=0 if rng.random() < 0.1 else 99999,
                                  firm="XXXX" if rng.random() < 0.03 else "FIRM"))
                live[i].append(tok)
            elif r < 0.8:
                old = live[i].pop(int(rng.integers(len(live[i]))))
                msgs.append(dict(type="X", order_token=old if rng.random() < 0.9 else "GONE", shares=0))
            else:
                old = live[i].pop(int(rng.integers(len(live[i]))))
                new = f"R{i}K{k}J{j}"
                msgs.append(dict(type="U", existing_order_token=old, replacement_order_token=new,
                                 shares=100 * int(rng.integers(1, 4)), price=1_900_000 + 100 * int(rng.integers(-3, 4)),
                                 time_in_force=99999, display="Y", intermarket_sweep_eligibility="N",
                                 minimum_quantity=0))
                live[i].append(new)
        frames.append(clients[i].frame(datagram(*msgs)))
    return frames


def test_the_c_stages_make_exactly_the_commands_and_frames_of_their_numpy_reference(tmp_path):
    """Random flow from three clients (enters, crosses, IOCs, replaces, cancels, unknown
    tokens): impl="c" journals the same commands and sends the same frames, byte for
    byte, as impl="numpy"."""
    clients = [Client(f"10.9.0.{20 + i}", 41000 + i) for i in range(3)]
    frames = random_flow(11, 400, clients)
    sent = {}
    for impl in ("c", "numpy"):
        port = MemoryPort()
        clock = iter(range(10**12, 10**13, 1000))
        venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), impl=impl, now_ns=lambda: next(clock),
                      journal=str(tmp_path / f"{impl}.jnl"))
        assert venue.impl == impl
        port.inbox = list(frames)
        while venue.poll():
            pass
        venue.close()
        sent[impl] = port.sent
        counts = venue.counters()
    assert counts["fills"] > 20 and counts["replies"] > 1000
    assert {"unknown_symbol", "invalid_price", "risk_other", "unknown_token"} <= set(counts["rejects"])
    assert sent["c"] == sent["numpy"]
    commands = {impl: journal.read(tmp_path / f"{impl}.jnl").records["payload"] for impl in ("c", "numpy")}
    assert len(commands["c"]) > 700
    assert all(np.array_equal(commands["c"][f], commands["numpy"][f]) for f in COMMAND_DTYPE.names)


def test_a_venue_of_thousands_of_symbols_finds_each_stock_by_name_as_the_numpy_reference_does(tmp_path):
    """Stocks are looked up in a hash table, not a scan of every name: the first, a middle
    and the last of 3,000 symbols get their own book, an unknown stock is rejected, and
    the C stages (and the fused walk) send and journal what impl="numpy" does."""
    from engine.venue_config import Symbol
    config = VenueConfig(symbols=tuple(Symbol(f"S{i:04d}", 100_000) for i in range(3000)))
    client = Client("10.9.0.20", 41000)
    orders = [enter(f"T{i}", "B", 100, stock, 100_000) for i, stock in enumerate(["S0000", "S1517", "S2999", "S3000"])]
    frames = [client.frame(datagram(o)) for o in orders]
    sent = {}
    for impl, fused in (("c", False), ("numpy", False), ("c", True)):
        port = MemoryPort()
        clock = iter(range(10**12, 10**13, 1000))
        name = f"{impl}{'-fused' if fused else ''}"
        venue = Venue(port, VENUE_IP, VENUE_MAC, config, impl=impl, now_ns=lambda: next(clock),
                      journal=str(tmp_path / f"{name}.jnl"), fused=fused)
        port.inbox = list(frames)
        while venue.poll():
            pass
        venue.close()
        sent[name] = port.sent
        assert venue.counters()["rejects"] == {"unknown_symbol": 1}
        commands = journal.read(tmp_path / f"{name}.jnl").records["payload"]
        assert commands["symbol"][:3].tolist() == [0, 1517, 2999]
    assert sent["c"] == sent["numpy"] == sent["c-fused"]


def test_sources_beyond_the_client_table_are_dropped_and_counted(memory_venue, monkeypatch):
    import engine.venue
    venue, port = memory_venue
    monkeypatch.setattr(engine.venue, "MAX_CLIENTS", 2)       # room for client 1 only
    a, b = Client("10.9.0.7", 40007), Client("10.9.0.8", 40008)
    port.inbox += [a.frame(datagram(enter("A1", "B", 100, "AAPL", 1_900_000))),
                   b.frame(datagram(enter("B1", "S", 100, "AAPL", 1_900_000), enter("B2", "S", 100, "AAPL", 1_900_000))),
                   a.frame(datagram(enter("A2", "B", 100, "AAPL", 1_800_000), dict(type="X", order_token="A1", shares=0)))]
    venue.poll()
    replies, _, _ = split_output(port.sent, a.stack)
    assert [(r["type"], r["order_token"]) for r in replies] == [("A", "A1"), ("A", "A2"), ("C", "A1")]
    assert split_output(port.sent, b.stack)[0] == []
    counts = venue.counters()
    assert counts["messages"] == 3 and counts["message_drops"] == {"too_many_clients": 2}


def test_pre_trade_limits_from_the_config_reject_with_their_ouch_codes(tmp_path):
    (tmp_path / "limits.toml").write_text(
        "[defaults]\nmax_order_qty = 500\n\n[symbols.0]\nreference = \"mid\"\nprice_band_bps = 100\n")
    (tmp_path / "venue.toml").write_text('limits = "limits.toml"\n')
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig.load(tmp_path / "venue.toml"))
    c = Client("10.9.0.9", 40009)
    port.inbox.append(c.frame(datagram(enter("L1", "B", 100, "AAPL", 1_899_000), enter("L2", "S", 100, "AAPL", 1_901_000))))
    venue.poll()                      # the mid is the book's at the start of a batch: this one's
    port.inbox.append(c.frame(datagram(enter("L3", "B", 600, "AAPL", 1_900_000),       # over max_order_qty
                                       enter("L4", "B", 100, "AAPL", 1_800_000))))     # 5 % off the mid
    venue.poll()
    venue.close()
    replies, _, _ = split_output(port.sent, c.stack)
    assert [(r["type"], r["order_token"]) for r in replies[:2]] == [("A", "L1"), ("A", "L2")]
    assert [(r["type"], r["order_token"], r["reason"]) for r in replies[2:]] == [("J", "L3", "Z"), ("J", "L4", "X")]
    assert venue.counters()["rejects"] == {"risk_size": 1, "risk_price_band": 1}


def test_netio_run_replays_a_capture_and_records_what_the_venue_sends(tmp_path):
    from netio.pcap import PcapPort
    c = Client("10.9.0.11", 40011)
    with PcapPort(tmp_path / "orders.pcap", mode="w") as capture:
        capture.tx_burst(Burst.of([c.frame(datagram(enter("P1", "S", 200, "NVDA", 1_200_000))),
                                   c.frame(datagram(enter("P2", "B", 200, "NVDA", 1_200_000)))]))
    run = subprocess.run([sys.executable, "-m", "tools.run", "--iface", str(tmp_path / "orders.pcap"), "--backend",
                          "pcap", "--ip", VENUE_IP, "--mac", VENUE_MAC, "-q"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    with PcapPort(tmp_path / "orders.out.pcap") as sent:
        frames = []
        while not sent.exhausted:
            burst = sent.rx_burst(64)
            frames += burst.to_bytes()
            sent.release(burst)
    replies, feed, _ = split_output(frames, c.stack)
    assert [(r["type"], r["order_token"]) for r in replies] == [("A", "P1"), ("A", "P2"), ("E", "P2"), ("E", "P1")]
    assert [m["message_type"] for m in feed if m["message_type"] not in "SR"] == ["A", "E"]


def _payloads_to(frames: list[bytes], host: Client, port: int) -> list[bytes]:
    result = host.stack.process(Burst.of(frames))
    return [bytes(p) for dg, p in zip(result.datagrams, result.payloads()) if dg["dst_port"] == port]


def test_a_feed_handler_that_lost_packets_gets_them_again_from_the_recovery_port_on_either_pipeline():
    """A random flow; a consumer that lost every third feed packet (not the last: no
    later one would show it was lost) asks the venue's re-request server for the gaps: it ends with every message and the books of a
    consumer that lost nothing, and both pipelines answer with the same frames."""
    from engine.feed import FeedHandler
    clients = [Client(f"10.9.0.{20 + i}", 41000 + i) for i in range(3)]
    flow, symbols = random_flow(3, 600, clients), len(VenueConfig().symbols)
    answers = {}
    for fused in (False, True):
        port, clock = MemoryPort(), iter(range(10**12, 10**13, 1000))
        venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), now_ns=lambda: next(clock), fused=fused)
        port.inbox = list(flow)
        while venue.poll():
            pass
        consumer = Client("10.9.0.9", 40100)
        feed = _payloads_to(port.sent, consumer, 15001)
        port.sent.clear()
        complete = FeedHandler(symbols)
        complete.process_packets(feed)
        asked, now = [], [0.0]
        lossy = FeedHandler(symbols, request=asked.append, gap_timeout_s=1e9, clock=lambda: now[0])
        lossy.process_packets([p for i, p in enumerate(feed) if i % 3 != 1 or i == len(feed) - 1])
        answers[fused] = []
        while asked or lossy.expected != complete.expected:
            port.inbox += [consumer.stack.build_udp(Burst.of([r]), VENUE_IP, 15002, 40100, VENUE_MAC).to_bytes()[0]
                           for r in asked]
            asked.clear()
            while venue.poll():
                pass
            answers[fused] += port.sent
            lossy.process_packets(_payloads_to(port.sent, consumer, 40100))
            port.sent.clear()
            now[0] += 1.0           # past retry_s: a gap still open is asked for again
            lossy.poll()
            assert len(answers[fused]) < len(feed), "the gaps are not closing"
        counters = venue.counters()
        venue.close()
        assert lossy.stats().get("lost", 0) == 0 and not lossy.stale
        assert [lossy.top(s) for s in range(symbols)] == [complete.top(s) for s in range(symbols)]
        assert counters["retransmit_requests"] == len(answers[fused]) >= len(feed) // 3 // 2
        assert counters["retransmitted_messages"] > 0 and not any("request" in k for k in counters["message_drops"])
    assert answers[True] == answers[False]


def test_a_re_request_in_a_burst_of_orders_is_answered_after_the_bursts_own_frames_on_either_pipeline():
    """Orders and a request in one burst: the orders' replies and feed go first, then the
    answer, which already holds the messages that burst printed; the same frames from both."""
    a = Client("10.9.0.1", 40001)
    consumer = Client("10.9.0.9", 40100)
    burst = [a.frame(datagram(enter("A1", "B", 100, "AAPL", 1_900_000))),
             consumer.stack.build_udp(Burst.of([moldudp64.request("NETIO00001", 10, 5)]), VENUE_IP, 15002, 40100,
                                      VENUE_MAC).to_bytes()[0],
             a.frame(datagram(enter("A2", "S", 100, "AAPL", 1_900_000)))]
    sent = {}
    for fused in (False, True):
        port, clock = MemoryPort(), iter(range(10**12, 10**13, 1000))
        venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), now_ns=lambda: next(clock), fused=fused)
        port.sent.clear()                   # the start of day: sequence numbers 1..9
        port.inbox = list(burst)
        while venue.poll():
            pass
        venue.close()
        sent[fused] = port.sent
    assert sent[True] == sent[False]
    answer = _payloads_to(sent[False][-1:], consumer, 40100)
    assert len(answer) == 1 and not _payloads_to(sent[False][:-1], consumer, 40100)
    p = moldudp64.decode(answer[0])
    feed = [m for f in _payloads_to(sent[False][:-1], consumer, 15001) for m in moldudp64.decode(f).messages]
    assert p.sequence == 10 and list(p.messages) == feed and len(feed) >= 2    # the add, then its execution


@pytest.mark.parametrize("fused", [False, True], ids=["python", "fused"])
def test_requests_the_recovery_port_cannot_answer_are_counted_by_reason_and_get_nothing(fused):
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(), fused=fused)
    consumer = Client("10.9.0.9", 40100)
    held = venue.feed_seq - 1            # the start of day: system event and stock directory
    port.sent.clear()
    for request in (moldudp64.request("OTHER", 1, 1), moldudp64.request("NETIO00001", held + 1, 1), b"\x00" * 7,
                    moldudp64.request("NETIO00001", held, 5)):
        port.inbox.append(consumer.stack.build_udp(Burst.of([request]), VENUE_IP, 15002, 40100,
                                                   VENUE_MAC).to_bytes()[0])
    while venue.poll():
        pass
    counters = venue.counters()
    venue.close()
    answered = [moldudp64.decode(p) for p in _payloads_to(port.sent, consumer, 40100)]
    assert [(p.sequence, len(p.messages)) for p in answered] == [(held, 1)]
    assert counters["message_drops"] == {"request_wrong_session": 1, "request_not_held": 1, "request_malformed": 1}
    assert (counters["retransmit_requests"], counters["retransmitted_messages"]) == (1, 1)
    assert counters["stack"]["delivered"] == 4 and counters.get("datagrams", 0) == 0


@pytest.mark.parametrize("fused", [False, True], ids=["python", "fused"])
def test_an_asker_past_its_budget_of_answers_is_counted_as_rate_limited_and_gets_nothing_more(fused):
    """150 requests at once from one address, at 1,000 answers a second: the first 100
    (a tenth of a second's worth) are answered, the rest dropped; another address is not
    held back by it."""
    port, clock = MemoryPort(), iter(range(10**12, 10**13, 1000))
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(recovery_answers_per_s=1000), now_ns=lambda: next(clock),
                  fused=fused)
    greedy, other = Client("10.9.0.9", 40100), Client("10.9.0.10", 40100)
    request = moldudp64.request("NETIO00001", 1, 1)
    port.sent.clear()
    port.inbox = [c.stack.build_udp(Burst.of([request]), VENUE_IP, 15002, 40100, VENUE_MAC).to_bytes()[0]
                  for c in [greedy] * 150 + [other]]
    while venue.poll():
        pass
    counters = venue.counters()
    venue.close()
    assert len(_payloads_to(port.sent, greedy, 40100)) == 100 and len(_payloads_to(port.sent, other, 40100)) == 1
    assert counters["retransmit_requests"] == 101 and counters["message_drops"] == {"request_rate_limited": 50}


@pytest.mark.parametrize("fused", [False, True], ids=["python", "fused"])
def test_requests_from_many_addresses_past_the_venues_budget_are_counted_as_venue_limited(fused):
    """150 addresses ask once each, at once, of a venue that answers 1,000 a second in all:
    the first 100 (a tenth of a second's worth) are answered, the other 50 dropped."""
    port, clock = MemoryPort(), iter(range(10**12, 10**13, 1000))
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig(recovery_total_answers_per_s=1000),
                  now_ns=lambda: next(clock), fused=fused)
    askers = [Client(f"10.9.{k // 100}.{k % 100 + 10}", 40100) for k in range(150)]
    request = moldudp64.request("NETIO00001", 1, 1)
    port.sent.clear()
    port.inbox = [c.stack.build_udp(Burst.of([request]), VENUE_IP, 15002, 40100, VENUE_MAC).to_bytes()[0]
                  for c in askers]
    while venue.poll():
        pass
    counters = venue.counters()
    venue.close()
    answered = [len(_payloads_to(port.sent, c, 40100)) for c in askers]
    assert answered == [1] * 100 + [0] * 50
    assert counters["retransmit_requests"] == 100 and counters["message_drops"] == {"request_venue_limited": 50}
