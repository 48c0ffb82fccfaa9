"""The feed handler: MoldUDP64 sequencing and books rebuilt from ITCH 5.0 (engine/feed.py),
and netio-feed around it (tools/feed.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import itch, moldudp64
from engine._matching import ffi
from engine.commands import FEED_OP_DTYPE
from engine.feed import FeedHandler, Gap, Top
from engine.venue import Venue
from engine.venue_config import VenueConfig
from netio.netns import VethNamespace
from netio.pcap import PcapPort
from netio.port import Burst
from netio.stack import Stack
from tests.test_venue import CLIENT_MAC, VENUE_IP, VENUE_MAC, Client, MemoryPort, random_flow
from tests.wire import ns_socket

ROOT = Path(__file__).resolve().parents[1]
STOCK = b"AAPL    "


def add(ref: int, side: bytes, shares: int, price: int, locate: int = 1) -> bytes:
    return itch.pack("A", stock_locate=locate, order_reference_number=ref, buy_sell_indicator=side,
                     shares=shares, stock=STOCK, price=price)


def test_the_feed_op_dtype_mirrors_the_c_struct():
    assert ffi.sizeof("struct feed_op") == FEED_OP_DTYPE.itemsize
    for name in FEED_OP_DTYPE.names:
        assert ffi.offsetof("struct feed_op", name) == FEED_OP_DTYPE.fields[name][1], name


def test_adds_executions_cancels_replaces_and_deletes_shape_the_book():
    h = FeedHandler(4, pool_size=64, band_ticks=64)
    h.process_packets([moldudp64.encode("S", 1, [
        itch.pack("R", stock_locate=1, stock=STOCK),
        add(1, b"B", 100, 10_000), add(2, b"B", 200, 10_000), add(3, b"B", 50, 9_900),
        add(4, b"S", 300, 10_100), add(5, b"S", 100, 250_000),              # outside the band
        itch.pack("E", stock_locate=1, order_reference_number=1, executed_shares=100, match_number=1),
        itch.pack("C", stock_locate=1, order_reference_number=2, executed_shares=20, match_number=2,
                  printable=b"Y", execution_price=10_000),
        itch.pack("X", stock_locate=1, order_reference_number=4, canceled_shares=100),
        itch.pack("U", stock_locate=1, original_order_reference_number=3, new_order_reference_number=6,
                  shares=70, price=10_050),
        itch.pack("D", stock_locate=1, order_reference_number=5),
    ])])
    assert h.top(1) == Top(bid=10_050, bid_qty=70, ask=10_100, ask_qty=200)
    assert h.depth(1, 5) == {"bids": [(10_050, 70), (10_000, 180)], "asks": [(10_100, 200)]}
    assert h.names[1] == STOCK and not h.stale
    assert h.stats() == {"packets": 1, "messages": 11, "book_updates": 10, "other_messages": 1}
    assert sorted(h.book.orders()["ref"].tolist()) == [2, 4, 6], "a full execution removes the order"


def test_updates_that_cannot_apply_are_counted_by_reason_and_the_rest_still_apply():
    h = FeedHandler(2, pool_size=4, band_ticks=16)
    h.process_packets([moldudp64.encode("S", 1, [
        add(1, b"B", 100, 10_000),
        add(1, b"B", 100, 10_000),                                           # its reference is taken
        add(2, b"Q", 100, 10_000),                                           # no such side
        add(3, b"B", 100, 0),                                                # no such price
        add(4, b"B", 100, 10_000, locate=9),                                 # beyond the books
        itch.pack("D", stock_locate=1, order_reference_number=77),           # never added
        itch.pack("X", stock_locate=1, order_reference_number=1, canceled_shares=500),   # more than it has
        *[add(10 + i, b"S", 1, 10_100 + i) for i in range(5)],                # four fit in the pool
    ])])
    assert h.drops() == {"duplicate_order_ref": 1, "bad_side": 1, "bad_price": 1, "unknown_stock_locate": 1,
                         "unknown_order_ref": 1, "shares_beyond_order": 1, "order_pool_full": 1}
    assert h.stale and h.top(1) == Top(None, 0, 10_100, 1)
    assert h.stats()["book_updates"] + sum(h.drops().values()) == 12


def packets(n: int = 4) -> tuple[list[bytes], list[bytes]]:
    """(the messages, ``n`` packets of three of them each, from sequence number 1)."""
    msgs = [add(i, b"B", 100, 10_000 - i) for i in range(1, 3 * n + 1)]
    return msgs, [moldudp64.encode("S", 1 + 3 * k, msgs[3 * k:3 * k + 3]) for k in range(n)]


def test_duplicates_are_dropped_and_packets_reordered_within_a_burst_are_put_back_in_order():
    _, p = packets()
    h = FeedHandler(2, pool_size=64, band_ticks=64)
    assert h.process_packets([p[0], p[0]]) == 3          # the whole second copy is a duplicate
    assert h.process_packets([p[2], p[1], p[1]]) == 6
    assert h.stats()["duplicate_message"] == 6 and not h.gaps and not h.stale and h.expected == 10


def test_without_recovery_a_gap_is_lost_at_once_and_what_comes_late_is_a_duplicate():
    _, p = packets()
    h = FeedHandler(2, pool_size=64, band_ticks=64)
    assert h.process_packets([p[0]]) == 3
    assert h.process_packets([p[2]]) == 3
    assert h.gaps == [Gap(first=4, count=3)] and h.expected == 10
    assert h.process_packets([p[1], p[3]]) == 3
    s = h.stats()
    assert (s["duplicate_message"], s["lost"], s["gaps"], s["book_updates"]) == (3, 3, 1, 9)
    assert h.stale and "requests" not in s


def test_with_recovery_a_gap_is_requested_what_follows_is_held_and_the_answer_fills_it():
    msgs, p = packets()
    asked = []
    h = FeedHandler(2, pool_size=64, band_ticks=64, request=asked.append)
    assert h.process_packets([p[0], p[2], p[3]]) == 3    # 7..12 wait behind the gap
    assert [moldudp64.decode_request(r) for r in asked] == [moldudp64.Request("S", 4, 3)]
    assert len(h.book.orders()) == 3
    answer = moldudp64.encode("S", 4, msgs[3:6])        # the retransmission, unicast to us
    assert h.process_packets([answer]) == 9
    assert len(h.book.orders()) == 12 and h.expected == 13 and not h.stale and not h.gaps


def test_an_unanswered_request_is_retried_and_the_gap_given_up_after_the_timeout():
    _, p = packets()
    now = [100.0]
    asked = []
    h = FeedHandler(2, pool_size=64, band_ticks=64, request=asked.append, gap_timeout_s=1.0, retry_s=0.25,
                    clock=lambda: now[0])
    h.process_packets([p[0], p[2]])
    now[0] += 0.1
    assert h.poll() == 0 and len(asked) == 1
    now[0] += 0.2
    assert h.poll() == 0 and len(asked) == 2, "retried after retry_s"
    now[0] += 1.0
    assert h.poll() == 3, "given up: what was held behind the gap is applied"
    assert h.gaps == [Gap(4, 3)] and h.stats()["lost"] == 3 and h.expected == 10


def test_a_heartbeat_announcing_a_later_number_is_a_gap_and_end_of_session_ends():
    h = FeedHandler(2, pool_size=64, band_ticks=64)
    h.process_packets([moldudp64.encode("S", 1, [add(1, b"B", 100, 10_000)]), moldudp64.heartbeat("S", 2),
                       moldudp64.heartbeat("S", 5)])
    assert h.gaps == [Gap(2, 3)] and h.stats()["heartbeats"] == 2 and not h.ended
    h.process_packets([moldudp64.end_of_session("S", 5)])
    assert h.ended and h.expected == 5


def test_other_sessions_and_malformed_packets_are_dropped_with_a_reason():
    h = FeedHandler(2, pool_size=64, band_ticks=64, session="MINE")
    n = h.process_packets([moldudp64.encode("OTHER", 1, [add(1, b"B", 1, 1)]), b"\x00" * 7,
                           moldudp64.encode("MINE", 1, [add(2, b"B", 100, 10_000), b"\xff\x00"])])
    assert n == 1 and h.top(1).bid == 10_000
    drops = h.drops()
    assert drops["other_session"] == 1 and drops["itch_unknown_type"] == 1
    assert sum(v for k, v in drops.items() if k.startswith("moldudp64_")) == 1


def _venue_feed(seed: int, n: int) -> tuple[Venue, list[bytes]]:
    """A venue after a random OUCH flow from three clients, and the frames it multicast."""
    port = MemoryPort()
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig())
    port.inbox = random_flow(seed, n, [Client(f"10.9.0.{30 + i}", 42000 + i) for i in range(3)])
    while venue.poll():
        pass
    return venue, [f for f in port.sent if f[0] & 1]         # multicast destination MAC


def _displayed(orders: np.ndarray, tick: np.ndarray | None = None) -> list[tuple]:
    price = orders["price"].astype(np.int64) * (1 if tick is None else tick[orders["symbol"]])
    return sorted(zip(orders["symbol"].tolist(), orders["side"].tolist(), price.tolist(),
                      orders["qty"].tolist(), orders["ref"].tolist()))


def test_the_book_rebuilt_from_the_venues_feed_is_the_venues_book_order_for_order():
    """Every displayed order the venue's matching core holds after a random flow (enters,
    crosses, IOCs, replaces, cancels) is in the book rebuilt from its ITCH feed, with the
    same reference number, side, price and open shares, and nothing else is."""
    venue, frames = _venue_feed(23, 500)
    cfg = VenueConfig()
    stack = Stack(CLIENT_MAC, "10.9.0.99")
    stack.join(cfg.feed_group)
    stack.bind(cfg.feed_port)
    result = stack.process(Burst.of(frames))
    h = FeedHandler(len(cfg.symbols), pool_size=4096, band_ticks=512, ref_price=[s.reference for s in cfg.symbols])
    h.process(result.buffer, result.datagrams["offset"], result.datagrams["length"])
    book_orders = venue.matcher.book.orders()
    venue.close()
    displayed = book_orders[book_orders["hidden"] == 0]
    assert len(displayed) > 50 and h.stats()["book_updates"] > 500
    assert not h.stale and not h.drops() and not h.gaps
    assert _displayed(h.book.orders()) == _displayed(displayed, np.array([s.tick for s in cfg.symbols]))
    assert [n.decode().strip() for n in h.names] == [s.name for s in cfg.symbols]


def test_netio_feed_rebuilds_the_books_from_a_capture_and_says_whole(tmp_path):
    venue, frames = _venue_feed(5, 200)
    venue.close()
    capture = tmp_path / "feed.pcap"
    with PcapPort(capture, mode="w") as out:
        out.tx_burst(Burst.of(frames))
    run = subprocess.run([sys.executable, "-m", "tools.feed", "--pcap", str(capture), "--json", "--depth", "3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert not summary["stale"] and summary["stats"]["book_updates"] > 100
    aapl = summary["symbols"]["AAPL"]
    assert aapl["bid"] < aapl["ask"] and len(aapl["bids"]) <= 3 and aapl["orders"] > 0


def test_netio_feed_exits_stale_when_the_capture_has_a_gap(tmp_path):
    venue, frames = _venue_feed(5, 200)
    venue.close()
    capture = tmp_path / "gap.pcap"
    with PcapPort(capture, mode="w") as out:
        out.tx_burst(Burst.of(frames[:3] + frames[4:]))
    run = subprocess.run([sys.executable, "-m", "tools.feed", "--pcap", str(capture)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 1 and "STALE" in run.stdout and "gaps (first sequence, messages)" in run.stdout


def test_netio_feed_explains_what_it_needs():
    run = subprocess.run([sys.executable, "-m", "tools.feed", "--iface", "lo", "--backend", "xdp"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2 and "--ip is needed" in run.stderr
    missing = subprocess.run([sys.executable, "-m", "tools.feed", "--pcap", "/nonexistent.pcap"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert missing.returncode == 3 and "/nonexistent.pcap" in missing.stderr


def _joined(ifname: str, group: str) -> bool:
    """The kernel has ``group`` joined on ``ifname`` (/proc/net/igmp lists it)."""
    want = socket.inet_aton(group)[::-1].hex().upper()
    lines = Path("/proc/net/igmp").read_text().splitlines()
    device = None
    for line in lines[1:]:
        if not line.startswith("\t"):
            device = line.split()[1]
        elif device == ifname and line.split()[0] == want:
            return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_netio_feed_live_asks_the_re_request_server_for_a_gap_and_its_books_come_out_whole():
    """A publisher in a namespace multicasts packets 1, 3 and 4 (2 is lost on the way);
    netio-feed, joined on the root end, asks the namespace's re-request server for the
    gap, holds 3 and 4 behind it, and ends whole at End of Session."""
    msgs, p = packets()
    group, port, server_port = "239.77.0.9", 26409, 26410
    with VethNamespace("tfeed") as v:
        feed = subprocess.Popen([sys.executable, "-m", "tools.feed", "--iface", v.host_if, "--group", group,
                                 "--port", str(port), "--recovery", f"{v.ns_ip}:{server_port}", "--json", "--quiet",
                                 "--duration", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            for _ in range(100):
                if _joined(v.host_if, group) or feed.poll() is not None:
                    break
                time.sleep(0.05)
            publisher = ns_socket(v, socket.AF_INET, socket.SOCK_DGRAM)
            publisher.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(v.ns_ip))
            server = ns_socket(v, socket.AF_INET, socket.SOCK_DGRAM)
            server.bind((v.ns_ip, server_port))
            server.settimeout(5)
            with publisher, server:
                for packet in (p[0], p[2], p[3]):
                    publisher.sendto(packet, (group, port))
                request, client = server.recvfrom(2048)
                r = moldudp64.decode_request(request)
                server.sendto(moldudp64.encode("S", r.sequence, msgs[r.sequence - 1:r.sequence - 1 + r.count]), client)
                publisher.sendto(moldudp64.end_of_session("S", 13), (group, port))
                out, err = feed.communicate(timeout=30)
        finally:
            feed.kill()
    assert feed.returncode == 0, err
    summary = json.loads(out)
    assert (r.sequence, r.count) == (4, 3)
    assert summary["end_of_session"] and not summary["stale"] and summary["next_sequence"] == 13
    assert summary["symbols"]["#1"]["orders"] == 12 and summary["stats"]["requests"] >= 1
