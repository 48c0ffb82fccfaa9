"""netio-loadgen against a small scripted venue on loopback.

The fake venue answers by the OUCH 4.2 rules (accept, match price-time, IOC remainder
canceled, cancel and replace of live orders only) and publishes ITCH 5.0 in MoldUDP64 on a
multicast group looped back on lo. Faults are scripted on top: a reply dropped, duplicated
or invented, a fill with the wrong size, a feed packet skipped, a 200 ms stall.
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from engine import itch, moldudp64, ouch, soupbintcp
from engine.recovery import Retransmissions
from netio.port import Burst
from netio.stack import Stack
from netio.udp_stack import UdpStack
from tests.test_venue import MemoryPort
from engine.venue_config import Symbol
from tools import loadgen
from tools.report.hlog import read_run

SYMBOLS = (Symbol("AAPL", 1_900_000), Symbol("MSFT", 4_200_000))
SESSION = "LOADTEST01"
GROUP = "239.192.77.5"   # a group of our own, so parallel tests by other areas never mix in
HEARTBEAT_S = 0.2


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class FakeVenue(threading.Thread):
    """An OUCH venue over UDP (a client per source address) with an ITCH feed; ``faults``
    script the misbehaviour:

    drop=("A", n)      drop the n-th Accepted          dup=("E", n)  send the n-th Execution twice
    invent=n           after the n-th reply, an Execution for a token nobody sent
    overfill=n         the n-th Execution (taker side) reports 100 shares more than were open
    feed_skip=n        the n-th feed packet is never sent (its sequence numbers are lost)
    recovery=True      answer MoldUDP64 re-requests on ``recovery_port`` from every message sent
    resting=n          before the run, n orders of another client rest on both sides of every
                       symbol near its reference (their Adds were on the feed before the load joined)
    Idle for HEARTBEAT_S, it sends a MoldUDP64 heartbeat, as a venue does.
    hide_delete=n      the n-th ITCH Order Delete is never published (the sequence stays whole)
    stall=(n, s)       before request n, stop reading for s seconds
    """

    def __init__(self, feed_port: int, feed_host: str = GROUP, **faults):
        super().__init__(daemon=True)
        self.faults = faults
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A Python venue sharing the GIL with the load generator falls behind in bursts: room for them.
        self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF), 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "%s:%d" % self.sock.getsockname()
        self.feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.feed.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        self.feed.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.feed_to = (feed_host, feed_port)
        self.recovery = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.recovery.bind(("127.0.0.1", 0))
        self.recovery_port = self.recovery.getsockname()[1]
        self.store = Retransmissions(SESSION, 1 << 16, 1400)
        self.stop = threading.Event()
        self.book = {(s.name, side): [] for s in SYMBOLS for side in "BS"}   # resting orders, time order
        self.orders: dict[tuple, dict] = {}   # (client address, token) -> order
        self.ref = self.match = self.requests = self.feed_packets = self.deletes = 0
        self.sequence = 1
        self.seen = Counter()
        elsewhere = ("127.0.0.1", 9)      # another client: its replies go nowhere
        for k in range(faults.get("resting", 0)):
            for s in SYMBOLS:
                for side, off in (("B", -100 * (k + 1)), ("S", 100 * (k + 1))):
                    self.enter(dict(order_token=f"OLD{k}{side}{s.name}", buy_sell_indicator=side, shares=300,
                                    stock=s.name, price=s.reference + off, time_in_force=99999, firm="FIRM"),
                               elsewhere, [], [])

    def run(self) -> None:
        fed = time.monotonic()
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock, self.recovery], [], [], 0.02)
            if time.monotonic() - fed > HEARTBEAT_S:
                self.feed.sendto(moldudp64.heartbeat(SESSION, self.sequence), self.feed_to)
                fed = time.monotonic()
            if self.recovery in ready:
                self.answer()
            if self.sock not in ready:
                continue
            data, peer = self.sock.recvfrom(65536)
            replies, feed = [], []   # replies: (client address, message)
            for packet in soupbintcp.decode_all(data):
                stall = self.faults.get("stall")
                if stall and self.requests == stall[0]:
                    time.sleep(stall[1])
                self.requests += 1
                self.handle(ouch.unpack(packet.payload, "in"), peer, replies, feed)
            for to in dict.fromkeys(to for to, _ in replies):   # one datagram per client, in order
                self.sock.sendto(b"".join(soupbintcp.sequenced(m) for t, m in replies if t == to), to)
            if feed:
                fed = time.monotonic()
                self.feed_packets += 1
                if self.faults.get("feed_skip") != self.feed_packets:
                    self.feed.sendto(moldudp64.encode(SESSION, self.sequence, feed), self.feed_to)
                self.store.add(self.sequence, b"".join(len(m).to_bytes(2, "big") + m for m in feed))
                self.sequence += len(feed)

    def answer(self) -> None:
        data, peer = self.recovery.recvfrom(65536)
        packet, _, _ = self.store.answer(data, 0, time.monotonic_ns())
        if packet is not None and self.faults.get("recovery"):
            self.recovery.sendto(packet, peer)

    def reply(self, replies: list, to, msg: str, **fields) -> None:
        t = ouch.spec(msg).type
        self.seen[t] += 1
        n = self.seen[t]
        body = ouch.pack(msg, timestamp=time.time_ns() % 86_400_000_000_000, **fields)
        if self.faults.get("drop") == (t, n):
            return
        replies.append((to, body))
        if self.faults.get("dup") == (t, n):
            replies.append((to, body))
        if self.faults.get("invent") == sum(self.seen.values()):
            replies.append((to, ouch.pack("executed", timestamp=1, order_token="99999999999999", executed_shares=100,
                                          execution_price=1_900_000, liquidity_flag="R", match_number=10**9)))

    def handle(self, m: dict, peer, replies: list, feed: list) -> None:
        if m["type"] == "O":
            self.enter(m, peer, replies, feed)
        elif m["type"] == "X":
            o = self.orders.get((peer, m["order_token"]))
            if o and o["open"] and o["resting"]:
                self.reply(replies, peer, "canceled", order_token=o["token"], decrement_shares=o["open"], reason="U")
                self.deletes += 1
                if self.faults.get("hide_delete") != self.deletes:
                    feed.append(itch.pack("D", stock_locate=o["locate"], order_reference_number=o["ref"]))
                self.book[o["stock"], o["side"]].remove(o)
                o["open"] = 0
        elif m["type"] == "U":
            o = self.orders.get((peer, m["existing_order_token"]))
            if o and o["open"] and o["resting"]:
                self.book[o["stock"], o["side"]].remove(o)
                self.ref += 1
                new = dict(o, token=m["replacement_order_token"], ref=self.ref, open=m["shares"], price=m["price"])
                o["open"] = 0
                self.orders[peer, new["token"]] = new
                self.book[new["stock"], new["side"]].append(new)
                self.reply(replies, peer, "replaced", replacement_order_token=new["token"], buy_sell_indicator=new["side"],
                           shares=new["open"], stock=new["stock"], price=new["price"], time_in_force=99999,
                           firm="LOAD", display="Y", order_reference_number=new["ref"], capacity="P",
                           intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type="N", order_state="L",
                           previous_order_token=o["token"], bbo_weight_indicator=" ")
                feed.append(itch.pack("U", stock_locate=o["locate"], original_order_reference_number=o["ref"],
                                      new_order_reference_number=new["ref"], shares=new["open"], price=new["price"]))

    def enter(self, m: dict, peer, replies: list, feed: list) -> None:
        self.ref += 1
        side, stock, limit = m["buy_sell_indicator"], m["stock"], m["price"]
        o = dict(token=m["order_token"], ref=self.ref, side=side, stock=stock, price=limit, open=m["shares"],
                 locate=[s.name for s in SYMBOLS].index(stock), resting=False, peer=peer)
        self.orders[peer, o["token"]] = o
        self.reply(replies, peer, "accepted", order_token=o["token"], buy_sell_indicator=side, shares=m["shares"],
                   stock=stock, price=limit, time_in_force=m["time_in_force"], firm=m["firm"], display="Y",
                   order_reference_number=o["ref"], capacity="P", intermarket_sweep_eligibility="N",
                   minimum_quantity=0, cross_type="N", order_state="L", bbo_weight_indicator=" ")
        opposite = self.book[stock, "S" if side == "B" else "B"]
        while o["open"]:
            crosses = [r for r in opposite if (r["price"] <= limit if side == "B" else r["price"] >= limit)]
            if not crosses:
                break
            best = min(r["price"] for r in crosses) if side == "B" else max(r["price"] for r in crosses)
            maker = next(r for r in crosses if r["price"] == best)   # price, then time priority
            q = min(o["open"], maker["open"])
            self.match += 1
            reported = o["open"] + 100 if self.faults.get("overfill") == self.seen["E"] + 1 else q
            self.reply(replies, peer, "executed", order_token=o["token"], executed_shares=reported,
                       execution_price=best, liquidity_flag="R", match_number=self.match)
            self.reply(replies, maker["peer"], "executed", order_token=maker["token"], executed_shares=q,
                       execution_price=best, liquidity_flag="A", match_number=self.match)
            feed.append(itch.pack("E", stock_locate=o["locate"], order_reference_number=maker["ref"],
                                  executed_shares=q, match_number=self.match))
            o["open"] -= q
            maker["open"] -= q
            if not maker["open"]:
                opposite.remove(maker)
        if o["open"] and m["time_in_force"] == 0:
            self.reply(replies, peer, "canceled", order_token=o["token"], decrement_shares=o["open"], reason="I")
            o["open"] = 0
        elif o["open"]:
            o["resting"] = True
            self.book[stock, side].append(o)
            feed.append(itch.pack("A", stock_locate=o["locate"], order_reference_number=o["ref"],
                                  buy_sell_indicator=side, shares=o["open"], stock=stock, price=limit))

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close()
        self.feed.close()
        self.recovery.close()


def _run(tmp_path=None, rate=2000.0, duration=1.0, unicast=False, clients=1, **faults) -> loadgen.Summary:
    feed_port = _free_udp_port()
    venue = FakeVenue(feed_port, "127.0.0.1" if unicast else GROUP, **faults)
    venue.start()
    try:
        cfg = loadgen.LoadConfig(venue=venue.address, bind="127.0.0.1:0", rate=rate, duration=duration,
                                 clients=clients, symbols=SYMBOLS, feed_group=None if unicast else GROUP, feed_port=feed_port,
                                 feed_bind=f"127.0.0.1:{feed_port}" if unicast else None, feed_iface="127.0.0.1",
                                 feed_session=SESSION, recovery_port=venue.recovery_port, drain=0.3, seed=7,
                                 hlog=str(tmp_path / "rtt.hlog") if tmp_path else None)
        return loadgen.run(cfg)
    finally:
        venue.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("loadgen")
    return _run(path), path


def test_clean_run_passes_every_check(clean):
    s, _ = clean
    assert s.passed, s.text()
    assert s.lost == {} and s.duplicated == 0 and s.unexpected == {} and s.wrong_fills == {}
    assert sum(s.sent.values()) == 2000 and set(s.sent) == {"enter", "cancel", "replace"}
    assert s.answered + s.silent == 2000
    assert s.fills > 0 and s.cancels.get("immediate_or_cancel", 0) > 0 and s.cancels.get("user_requested", 0) > 0
    assert s.feed_gaps == 0 and s.feed_messages > 0 and s.feed_errors == {}
    assert 0 < s.rtt_ns["p50"] <= s.rtt_ns["p99"] <= s.rtt_ns["max"]
    assert json.loads(json.dumps(s.to_dict()))["passed"] is True


def test_hlog_is_an_open_loop_roundtrip_log_hdrh_can_decode(clean):
    s, path = clean
    lines = (path / "rtt.hlog").read_text().splitlines()
    assert "#[Source: open-loop]" in lines
    total = 0
    for line in lines:
        if line.startswith("Tag=RoundTrip,"):
            total += HdrHistogram.decode(line.split(",")[4]).get_total_count()
    assert total == s.answered
    run = read_run([path / "rtt.hlog"])   # and the report CLI reads it as the client's stage
    assert run.source == "open-loop" and run.histograms["RoundTrip"].get_total_count() == s.answered


def test_the_feed_can_come_unicast():
    s = _run(unicast=True, duration=0.5)
    assert s.passed, s.text()
    assert s.feed_messages > 0 and s.fills > 0


def test_several_clients_trade_with_each_other_and_every_check_holds():
    """Each client is its own venue session; a maker's fill goes to the maker's socket."""
    s = _run(clients=3, duration=0.5)
    assert s.passed, s.text()
    assert s.fills > 0 and s.answered + s.silent == 1000


def test_a_lost_reply_is_detected():
    s = _run(drop=("A", 50))
    assert s.lost == {"enter": 1} and not s.passed
    assert any("lost" in f for f in s.failures)


def test_a_duplicated_reply_is_detected():
    s = _run(dup=("E", 3))
    assert s.duplicated == 1 and not s.passed


def test_an_unexpected_reply_is_detected():
    s = _run(invent=40)
    assert s.unexpected == {"execution for unknown order": 1} and not s.passed


def test_a_wrong_fill_is_detected_against_the_order_and_the_feed():
    s = _run(overfill=5)
    assert s.wrong_fills.get("more shares than open", 0) >= 1   # later fills of that order overrun too
    assert s.feed_errors.get("execution differs") == 1 and not s.passed


def test_fills_against_orders_that_rested_before_the_run_pass_on_their_shares():
    """Another client's orders rest before the load joins the feed: our executions against
    them print at prices on Adds we never saw, and are checked on their shares."""
    s = _run(resting=3)
    assert s.passed, s.failures
    assert s.fills > 0 and s.feed_errors == {}


def test_a_feed_gap_the_re_request_server_does_not_fill_is_detected():
    s = _run(feed_skip=20)
    assert s.feed_gaps == 1 and s.feed_missing >= 1 and s.feed_recovered == 0 and not s.passed
    assert s.lost == {} and s.unexpected == {}   # the order entry side was fine


def test_a_feed_gap_is_filled_from_the_re_request_server_and_its_messages_are_checked():
    s = _run(feed_skip=20, recovery=True)
    assert s.passed, s.failures
    assert s.feed_gaps == s.feed_missing == 0 and s.feed_recovered >= 1


def test_the_first_feed_packet_of_the_run_lost_is_a_gap_too():
    """The load waited for the feed's heartbeat before its first order: the sequence was
    known, so the packet with its first order's messages is a gap, recovered."""
    lost = _run(feed_skip=1)
    assert (lost.feed_gaps, lost.feed_recovered) == (1, 0) and not lost.passed
    recovered = _run(feed_skip=1, recovery=True)
    assert recovered.passed, recovered.failures
    assert recovered.feed_gaps == 0 and recovered.feed_recovered >= 1


class ReRequestWire(MemoryPort):
    """A link to a re-request server at 10.0.0.1:15002 (a netio Stack answering ARP, and
    ``store`` answering MoldUDP64 requests): for a load on a netio port of its own."""

    def __init__(self, store: Retransmissions):
        super().__init__()
        self.server, self.store = Stack("02:00:00:00:00:01", "10.0.0.1"), store
        self.server.bind(15002)

    def tx_burst(self, burst: Burst) -> int:
        result = self.server.process(burst)
        self.inbox += result.replies.to_bytes()
        for dg, request in zip(result.datagrams, result.payloads()):
            answer = self.store.answer(request.tobytes(), int(dg["src_ip"]), 0)[0]
            self.inbox += self.server.build_udp(Burst.of([answer]), int(dg["src_ip"]), int(dg["src_port"]), 15002,
                                                bytes(dg["src_mac"])).to_bytes()
        return len(burst)


def _adds(n: int) -> list[bytes]:
    return [itch.pack("A", stock_locate=0, order_reference_number=k, buy_sell_indicator="B", shares=100,
                      stock="AAPL", price=1_900_000) for k in range(1, n + 1)]


def test_on_a_netio_port_the_loads_own_stack_asks_for_the_gaps():
    adds = _adds(301)
    store = Retransmissions(SESSION, 1 << 10, 1400)
    store.add(1, b"".join(len(m).to_bytes(2, "big") + m for m in adds))
    stack = UdpStack(ReRequestWire(store), "02:00:00:00:00:02", "10.0.0.2")
    cfg = loadgen.LoadConfig(venue="10.0.0.1:15000", feed_session=SESSION, recovery_port=15002)
    feed = [moldudp64.encode(SESSION, 1, adds[:1]), moldudp64.encode(SESSION, 301, adds[300:])]   # 2..300 lost
    got = loadgen.recover(cfg, b"".join(feed), np.array([0, len(feed[0])]), np.array([len(p) for p in feed]),
                          stack=stack)
    assert [m for p in got for m in moldudp64.decode(p).messages] == adds[1:300]


def test_recovery_asks_again_for_what_did_not_fit_one_answer():
    """A gap of 299 Add Orders: answers of at most 1,400 bytes hold 36 each, so nine asks."""
    store = Retransmissions(SESSION, 1 << 10, 1400)
    adds = _adds(301)
    store.add(1, b"".join(len(m).to_bytes(2, "big") + m for m in adds))
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    asked = []

    def serve():
        while len(asked) < 9:
            data, peer = server.recvfrom(100)
            asked.append(moldudp64.decode_request(data))
            server.sendto(store.answer(data, 0, 0)[0], peer)

    threading.Thread(target=serve, daemon=True).start()
    cfg = loadgen.LoadConfig(venue="127.0.0.1:1", feed_iface="127.0.0.1", feed_session=SESSION,
                             recovery_port=server.getsockname()[1])
    feed = [moldudp64.encode(SESSION, 1, adds[:1]), moldudp64.encode(SESSION, 301, adds[300:])]   # 2..300 lost
    got = loadgen.recover(cfg, b"".join(feed), np.array([0, len(feed[0])]), np.array([len(p) for p in feed]))
    server.close()
    assert [(a.sequence, a.count) for a in asked][:2] == [(2, 299), (38, 263)]
    assert [m for p in got for m in moldudp64.decode(p).messages] == adds[1:300]


def test_an_order_canceled_but_left_on_the_feed_is_detected():
    s = _run(hide_delete=10)
    assert s.feed_errors == {"cancel missing": 1} and s.feed_gaps == 0 and not s.passed


def test_round_trip_runs_from_the_intended_send_time():
    """A 200 ms stall delays every request scheduled during it, and each one is measured so:
    RTT falls from ~200 ms for the first one linearly to ~0 at the stall's end."""
    rate, at = 1000.0, 300
    s = _run(rate=rate, duration=0.8, stall=(at, 0.2))
    assert s.passed, s.text()
    answered = s.rtt >= 0
    slow = (s.rtt > 50_000_000) & answered
    # ~150 ms of the stall has RTT > 50 ms: ~150 requests, not one.
    assert slow.sum() >= 100
    first = int(np.flatnonzero(slow)[0])
    assert abs(first - at) <= 20 and s.rtt[first] > 150_000_000
    assert s.rtt_ns["max"] >= 190_000_000


def test_schedule_is_fixed_in_advance_and_encodes_every_request():
    cfg = loadgen.LoadConfig(rate=5000, duration=1.0, symbols=SYMBOLS, seed=3, arrivals="uniform")
    sched = loadgen.build_schedule(cfg)
    assert len(sched) == 5000
    assert np.array_equal(sched.intended, np.round(np.arange(5000) * 200_000))
    dec = ouch.decode_inbound(sched.wire, final=True)
    assert len(dec) == 5000 and not dec.rejects
    assert dec.order_type.tobytes() == sched.kind.tobytes()
    follow = sched.kind != loadgen.ENTER
    assert (sched.target[follow] < np.flatnonzero(follow)).all()      # a follow-up comes after its Enter
    assert (sched.kind[sched.target[follow]] == loadgen.ENTER).all()
    assert len(np.unique(sched.target[follow])) == follow.sum()       # one follow-up per Enter at most
    x = dec.messages["X"]
    assert set(loadgen.token_ids(x["order_token"]) - sched.token_base) == set(sched.target[sched.kind == ord("X")])


def test_poisson_arrivals_keep_the_rate_with_exponential_gaps_and_are_the_same_for_a_seed():
    cfg = loadgen.LoadConfig(rate=5000, duration=4.0, symbols=SYMBOLS, seed=3)
    assert cfg.arrivals == "poisson"
    intended = loadgen.build_schedule(cfg).intended
    gaps = np.diff(intended)
    assert intended[0] == 0 and (gaps >= 0).all()
    assert abs(gaps.mean() - 200_000) < 200_000 * 0.03
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05                  # an exponential's spread is its mean
    assert np.mean(gaps < 200_000) > 0.6                              # 1 - 1/e of them shorter than the mean
    assert np.array_equal(loadgen.build_schedule(cfg).intended, intended)
    with pytest.raises(ValueError, match="arrivals"):
        loadgen.build_schedule(loadgen.LoadConfig(rate=5000, duration=1.0, symbols=SYMBOLS, arrivals="bursty"))


def test_each_clients_requests_lie_back_to_back_in_send_order():
    """So a run of one client's due requests goes out as one slice of the encoded buffer."""
    sched = loadgen.build_schedule(loadgen.LoadConfig(rate=3000, duration=1.0, symbols=SYMBOLS, clients=3))
    follow = sched.kind != loadgen.ENTER
    assert (sched.client[follow] == sched.client[sched.target[follow]]).all()   # follow-ups from the order's socket
    for c in range(3):
        mine = np.flatnonzero(sched.client == c)
        assert (sched.start[mine[1:]] == sched.end[mine[:-1]]).all()
        dec = ouch.decode_inbound(sched.wire[sched.start[mine[0]]:sched.end[mine[-1]]], final=True)
        assert dec.order_type.tobytes() == sched.kind[mine].tobytes()


def test_cli_prints_json_and_exits_by_the_checks(capsys):
    feed_port = _free_udp_port()
    venue = FakeVenue(feed_port, drop=("A", 5))
    venue.start()
    try:
        code = loadgen.main(["--venue", venue.address, "--bind", "127.0.0.1:0", "--rate", "500",
                             "--duration", "0.4", "--drain", "0.2", "--feed-iface", "127.0.0.1", "--json",
                             "--symbols", "AAPL,MSFT", "--no-feed"])
    finally:
        venue.close()
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["passed"] is False and out["lost"] == {"enter": 1}
    assert out["sent"]["enter"] > 0 and "p99.9" in out["rtt_ns"]
    assert loadgen.main(["--rate", "-1"]) == 2
    assert loadgen.main(["--backend", "xdp"]) == 2 and "needs --iface" in capsys.readouterr().err


def test_replies_mixed_with_heartbeats_still_map_to_their_datagrams():
    """Non-data SoupBinTCP packets (a heartbeat, an end of session) leave every OUCH reply
    tied to the datagram, hence the receive stamp, it came in; the odd packet is noted."""
    accepted = ouch.pack("rejected", timestamp=1, order_token="00000000000001", reason="X")
    canceled = ouch.pack("canceled", timestamp=2, order_token="00000000000002", decrement_shares=100, reason="U")
    datagrams = [soupbintcp.server_heartbeat() + soupbintcp.sequenced(accepted),
                 soupbintcp.sequenced(canceled) + soupbintcp.end_of_session()]
    buf = b"".join(datagrams)
    offsets = np.array([0, len(datagrams[0])])
    lengths = np.array([len(d) for d in datagrams])
    notes = Counter()
    dec, where = loadgen.decode_replies(buf, offsets, lengths, notes)
    assert dec.order_type.tobytes() == b"JC" and where.tolist() == [0, 1]
    assert notes == {"SoupBinTCP 'Z' packet": 1}


def test_a_stopped_run_checks_what_it_sent():
    """Stopping mid-run (SIGINT/SIGTERM in the CLI) ends the sending, drains, and checks only
    the requests that went out: none of the unsent ones counts as lost."""
    feed_port = _free_udp_port()
    venue = FakeVenue(feed_port)
    venue.start()
    stop = threading.Event()
    threading.Timer(0.4, stop.set).start()
    try:
        cfg = loadgen.LoadConfig(venue=venue.address, bind="127.0.0.1:0", rate=1000, duration=5, symbols=SYMBOLS,
                                 feed_group=GROUP, feed_port=feed_port, feed_iface="127.0.0.1",
                                 feed_session=SESSION, drain=0.2)
        s = loadgen.run(cfg, stop)
    finally:
        venue.close()
    assert s.planned == 5000 and 100 < sum(s.sent.values()) < 2000
    assert s.passed, s.text()
    assert "STOPPED EARLY" in s.text()
