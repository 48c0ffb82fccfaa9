"""netio-loadgen: an open-loop OUCH 4.2 client that checks every reply and the ITCH feed.

The whole order flow is drawn and encoded before the first send (numpy records through
``engine.ouch.encode_inbound`` into one buffer of SoupBinTCP 'U' packets), each request
with its *intended* send time, drawn with it: Poisson arrivals at the rate, as orders
from many independent traders arrive (``arrivals="uniform"``: evenly spaced, which on the
venue's own host can lock onto its periodic interruptions, such as a 4 ms timer tick,
and meet them by the phase the run started at). The send loop only slices that buffer
into datagrams of the requests now due and hands them to the kernel in one sendmmsg
(``netio.udp_socket.UdpSocketPort``), or, with ``backend`` ``xdp`` or ``dpdk``, to a netio
port on ``iface`` through netio's own UDP stack (``netio.udp_stack``), busy-polled: the
fast client, which never sleeps between sends, so less of its own lateness is in the
round trip (on the demo's veth at 2,000 requests/s: p50 70 us against the sockets' 124,
p99 0.2 ms against 2.9). Round trip is measured from the intended send time,
so a stall at the venue or in the sender shows up in every request scheduled during it
(no coordinated omission).

Replies (OUCH in SoupBinTCP 'S' packets) and the feed (ITCH 5.0 in MoldUDP64) are stored
as received, with their kernel receive stamps, and checked after the drain:

* every Enter answered by exactly one Accepted or Rejected; every Cancel of a live order by
  a Canceled, every Replace of a live order by a Replaced or a Rejected (OUCH 4.2 answers
  nothing for a cancel or replace of an order that is no longer live); nothing
  duplicated, nothing for tokens or states the client does not have;
* executions consistent: never more shares than open, never through the limit price;
* feed: MoldUDP64 sequence without gaps (the messages of a gap are asked for again from
  the venue's re-request server, ``recovery_port``: only a gap it does not fill fails). A
  gap shows only between packets that arrived, so before the first order the load waits
  up to FEED_SYNC_S for a feed packet (an idle venue sends a heartbeat every second);
  packets lost after the last that arrives show only if a heartbeat comes within ``drain``;
  every own execution printed as ITCH E/C/P with the same match number, shares and price
  (an E prints at its resting order's price, which for an order added before the run is
  on an Add we did not see: then only its shares are checked); every own order that
  rested added as A/F (or U for a replacement) with its order reference number, side,
  price and shares, and taken off as D/X when we canceled it.

With ``clients`` > 1 the flow is dealt over several sockets, each a venue session of its
own, whose orders trade with each other. Round trips go to an HdrHistogram interval log
(tag ``RoundTrip``, ns, one line per second of intended send time, ``#[Source: open-loop]``
for netio-report). ``run(LoadConfig(...), stop) -> Summary`` is the API; ``main`` the CLI.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import select
import socket
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from engine import itch, moldudp64, ouch
from engine.telemetry import HlogWriter, StageHistogram
from engine.venue_config import VenueConfig
from netio import iface
from netio.port import Burst, PortError, open_port
from netio.udp_socket import UdpSocketPort
from netio.udp_stack import UdpEndpoint, UdpStack

ENTER, REPLACE, CANCEL = ord("O"), ord("U"), ord("X")
KIND_NAMES = {ENTER: "enter", REPLACE: "replace", CANCEL: "cancel"}
TAG = "RoundTrip"
SOURCE_COMMENT = "[Source: open-loop]"   # tools/report/hlog.py reads the loop mode from this
_PACKET_LEN = {t: ouch.INBOUND[chr(t)].length + 3 for t in KIND_NAMES}  # SoupBinTCP header + OUCH
_TOKEN_DIGITS = 14
_MAX_EXAMPLES = 5
RECOVERY_WAIT_S = 0.2       # for each answer of the re-request server
RECOVERY_TRIES = 5          # unanswered requests in a row before a gap is given up
RECOVERY_S = 10.0           # for all the gaps of a run
FEED_SYNC_S = 1.5           # to wait for a first feed packet before sending
# An E prints at its resting order's price, on the order's Add: unseen when that order
# was added before the run (another client's liquidity), and then only its shares are checked.
_UNSEEN = -1


@dataclasses.dataclass
class LoadConfig:
    """One load run. Addresses are "host:port"; the venue defaults come from engine/venue_config.

    The flow: ``rate`` requests/s (at ``arrivals`` times) for ``duration`` s in all, the Enters dealt round-robin to
    ``clients`` sockets (an order's follow-ups go from its socket); each Enter is followed, some requests
    later, by a Cancel with probability ``cancel_ratio`` or a Replace with ``replace_ratio``;
    ``ioc_ratio`` of the Enters are immediate-or-cancel. Prices walk around each symbol's
    reference (a random-walk mid), from ``cross_ticks`` through the mid to ``away_ticks``
    behind it, so some orders trade.
    """

    venue: str = f"127.0.0.1:{VenueConfig.order_port}"
    bind: str = "0.0.0.0:0"         # client c binds port + c (port 0: any free port each)
    clients: int = 1                # order entry sockets, each a client of the venue; they trade with each other
    firm: str = "LOAD"
    rate: float = 10_000.0
    duration: float = 2.0
    arrivals: str = "poisson"       # or "uniform": requests evenly spaced at 1 / rate
    seed: int = 1
    symbols: tuple = VenueConfig.symbols
    cancel_ratio: float = 0.2
    replace_ratio: float = 0.1
    ioc_ratio: float = 0.1
    cross_ticks: int = 2
    away_ticks: int = 5
    max_lag: int = 50               # a follow-up goes at most this many requests after its Enter
    batch: int = 16                 # requests per datagram at most
    drain: float = 0.5              # s to wait for late replies after the last send
    feed: bool = True
    feed_group: str | None = VenueConfig.feed_group   # None: unicast feed to feed_bind
    feed_port: int = VenueConfig.feed_port
    feed_iface: str | None = None   # local address to join on; None: the one that reaches the venue
    feed_bind: str | None = None    # unicast feed: "host:port" to receive on
    feed_session: str = VenueConfig.feed_session
    backend: str = "socket"         # kernel UDP sockets; "xdp"/"dpdk": a netio port on iface
    iface: str | None = None        # the interface of a netio port
    recovery_port: int = VenueConfig.recovery_port    # the venue's MoldUDP64 re-request server; 0: ask nothing
    hlog: str | None = None
    interval: float = 1.0           # s per .hlog interval

    @classmethod
    def from_venue(cls, venue: VenueConfig, host: str, **overrides) -> LoadConfig:
        """A run against a venue at `host` described by `venue` (ports, feed, symbols)."""
        return cls(venue=f"{host}:{venue.order_port}", symbols=venue.symbols, feed_group=venue.feed_group,
                   feed_port=venue.feed_port, feed_session=venue.feed_session, recovery_port=venue.recovery_port,
                   **overrides)


@dataclasses.dataclass
class Summary:
    """What a run did and found. ``passed`` is False if any check failed (see ``failures``)."""

    planned: int                    # requests in the schedule (more than sent if stopped early)
    sent: dict[str, int]
    datagrams: int
    answered: int
    silent: int                     # cancels/replaces of orders no longer live: no answer is due
    lost: dict[str, int]
    duplicated: int
    unexpected: dict[str, int]
    rejects: dict[str, int]
    cancels: dict[str, int]
    fills: int
    filled_shares: int
    wrong_fills: dict[str, int]
    feed_packets: int
    feed_messages: int
    feed_gaps: int                  # gaps the re-request server did not fill
    feed_missing: int               # messages in them
    feed_recovered: int             # messages of gaps the re-request server sent again
    feed_errors: dict[str, int]
    rx_drops: dict[str, int]        # datagrams the client's own ports dropped, by port and reason
    rtt_ns: dict[str, int]          # count, p50, p99, p99.9, max
    max_send_lag_ns: int
    failures: list[str]
    examples: list[str]
    rtt: np.ndarray = dataclasses.field(repr=False, default=None)       # per request, -1: none
    intended: np.ndarray = dataclasses.field(repr=False, default=None)  # per request, ns since epoch
    kind: np.ndarray = dataclasses.field(repr=False, default=None)      # per request, ord('O'|'U'|'X')

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("rtt", "intended", "kind")}
        d["passed"] = self.passed
        return d

    def text(self) -> str:
        r = self.rtt_ns
        lines = [
            f"sent        {sum(self.sent.values())} requests ({', '.join(f'{k} {v}' for k, v in self.sent.items())})"
            f" in {self.datagrams} datagrams" + (f"; STOPPED EARLY, {self.planned} planned"
                                                 if self.planned > sum(self.sent.values()) else ""),
            f"answered    {self.answered}  (silent, order no longer live: {self.silent})",
            f"lost        {sum(self.lost.values())} {_fmt(self.lost)}",
            f"duplicated  {self.duplicated}",
            f"unexpected  {sum(self.unexpected.values())} {_fmt(self.unexpected)}",
            f"rejects     {sum(self.rejects.values())} {_fmt(self.rejects)}",
            f"cancels     {_fmt(self.cancels)}",
            f"fills       {self.fills} ({self.filled_shares} shares); wrong fills {sum(self.wrong_fills.values())}"
            f" {_fmt(self.wrong_fills)}",
            f"feed        {self.feed_messages} messages in {self.feed_packets} packets; gaps {self.feed_gaps}"
            f" ({self.feed_missing} messages missing; {self.feed_recovered} recovered from the re-request server);"
            f" errors {sum(self.feed_errors.values())} {_fmt(self.feed_errors)}",
            f"rx drops    {sum(self.rx_drops.values())} {_fmt(self.rx_drops)}",
            f"RTT (ns)    n={r['count']} p50={r['p50']} p99={r['p99']} p99.9={r['p99.9']} max={r['max']}"
            f"  (from intended send times; sender lag max {self.max_send_lag_ns} ns)",
        ]
        lines += [f"  e.g. {e}" for e in self.examples]
        lines.append("PASS: all checks passed" if self.passed else "FAIL: " + "; ".join(self.failures))
        return "\n".join(lines)


def _fmt(counts: dict) -> str:
    return "(" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")" if counts else ""


# ---------------------------------------------------------------------------------------
# The schedule: every request drawn, encoded and timed before the first send


@dataclasses.dataclass
class Schedule:
    """Requests in send order. Request i's own token spells ``token_base + i`` (an Enter's
    order token, a Replace's replacement token; a Cancel carries its target's token);
    ``target[i]`` is the Enter a Cancel/Replace acts on (-1 for an Enter)."""

    kind: np.ndarray         # uint8: ord('O' | 'U' | 'X')
    target: np.ndarray       # int64
    client: np.ndarray       # int64: the socket that sends it (its Enter's)
    symbol: np.ndarray       # int64 index into config.symbols (the target's for follow-ups)
    side: np.ndarray         # S1 b"B" | b"S" (the target's for follow-ups)
    shares: np.ndarray       # int64 (0 for a Cancel: cancel the whole order)
    price: np.ndarray        # int64 Price(4)
    ioc: np.ndarray          # bool
    token_base: int
    intended: np.ndarray     # int64 ns since the run's start
    wire: bytes              # the SoupBinTCP 'U' packets of every request, client by client
    start: np.ndarray        # int64: request i is wire[start[i]:end[i]]; a client's requests
    end: np.ndarray          # lie back to back in send order, so a run of them is one slice

    def __len__(self) -> int:
        return len(self.kind)

    def head(self, m: int) -> Schedule:
        """The first `m` requests (a run stopped early checks only what it sent)."""
        cut = {f: getattr(self, f)[:m] for f in ("kind", "target", "client", "symbol", "side", "shares", "price",
                                                  "ioc", "intended", "start", "end")}
        return dataclasses.replace(self, **cut)


def tokens(ids: np.ndarray) -> np.ndarray:
    """Order tokens (S14) spelling each id in 14 decimal digits."""
    ids = np.asarray(ids, np.int64)
    digits = ids[:, None] // 10 ** np.arange(_TOKEN_DIGITS - 1, -1, -1, dtype=np.int64) % 10
    return np.ascontiguousarray((digits + ord("0")).astype(np.uint8)).view("S14").reshape(-1)


def token_ids(raw: np.ndarray) -> np.ndarray:
    """The ids spelled by S14 tokens; -1 where a token is not 14 decimal digits."""
    b = np.ascontiguousarray(raw, "S14").view(np.uint8).reshape(-1, _TOKEN_DIGITS).astype(np.int64) - ord("0")
    ok = ((b >= 0) & (b <= 9)).all(axis=1)
    return np.where(ok, b @ 10 ** np.arange(_TOKEN_DIGITS - 1, -1, -1, dtype=np.int64), -1)


def build_schedule(cfg: LoadConfig) -> Schedule:
    """Draw the order flow of `cfg` and encode it (deterministic for a given seed)."""
    if cfg.arrivals not in ("poisson", "uniform"):
        raise ValueError(f"arrivals: poisson or uniform, not {cfg.arrivals!r}")
    rng = np.random.default_rng(cfg.seed)
    n_total = max(1, int(round(cfg.rate * cfg.duration)))
    n_enter = n_total   # more than needed: the first n_total of Enters and follow-ups are sent
    draw = rng.random(n_enter)
    follow_kind = np.where(draw < cfg.cancel_ratio, CANCEL,
                           np.where(draw < cfg.cancel_ratio + cfg.replace_ratio, REPLACE, 0))
    followed = np.flatnonzero(follow_kind)
    # Place Enter j at j and its follow-up a few Enters later; the merged order is the send order,
    # so every follow-up sent comes after its Enter.
    at = np.concatenate([np.arange(n_enter, dtype=np.float64),
                         followed + rng.integers(1, max(2, cfg.max_lag), len(followed)) + 0.5])
    order = np.argsort(at, kind="stable")[:n_total]
    kind = np.concatenate([np.full(n_enter, ENTER), follow_kind[followed]]).astype(np.uint8)[order]
    enter_no = np.concatenate([np.arange(n_enter), followed])[order]   # the Enter each request is about
    n = len(order)
    req_of_enter = np.full(n_enter, -1, np.int64)
    is_enter = kind == ENTER
    req_of_enter[enter_no[is_enter]] = np.flatnonzero(is_enter)
    target = np.where(is_enter, -1, req_of_enter[enter_no])
    # Enter fields, per Enter number, then spread to the requests about it.
    n_sym = len(cfg.symbols)
    ref_ticks = np.array([s.reference // s.tick for s in cfg.symbols], np.int64)
    tick = np.array([s.tick for s in cfg.symbols], np.int64)
    sym = rng.integers(0, n_sym, n_enter)
    mid = np.empty(n_enter, np.int64)
    steps = rng.integers(-1, 2, n_enter)
    for s in range(n_sym):    # one random-walk mid per symbol
        m = sym == s
        mid[m] = ref_ticks[s] + np.cumsum(steps[m])
    buy = rng.random(n_enter) < 0.5
    behind = rng.integers(-cfg.cross_ticks, cfg.away_ticks + 1, n_enter)
    enter_price = np.maximum(np.where(buy, mid - behind, mid + behind), 1) * tick[sym]
    enter_shares = 100 * rng.integers(1, 11, n_enter)
    enter_ioc = rng.random(n_enter) < cfg.ioc_ratio

    symbol, side = sym[enter_no], np.where(buy, b"B", b"S")[enter_no]
    client = enter_no % cfg.clients
    ioc = enter_ioc[enter_no] & is_enter
    shares = np.where(kind == CANCEL, 0, np.where(is_enter, enter_shares[enter_no], 100 * rng.integers(1, 11, n)))
    moved = rng.integers(-1, 2, n) * tick[symbol]
    price = np.where(kind == REPLACE, np.maximum(enter_price[enter_no] + moved, tick[symbol]), enter_price[enter_no])
    price = np.where(kind == CANCEL, 0, price)

    token_base = (time.time_ns() // 10**9 % 10**5) * 10**9   # runs against one venue don't reuse tokens
    own = tokens(token_base + np.arange(n))
    target_token = own[np.maximum(target, 0)]
    names = np.array([s.name.encode() for s in cfg.symbols], "S8")
    messages, index = {}, np.zeros(n, np.uint32)
    for code in (ENTER, REPLACE, CANCEL):
        sel = np.flatnonzero(kind == code)
        index[sel] = np.arange(len(sel))
        if code == ENTER:
            messages["O"] = ouch.records(
                "enter_order", len(sel), order_token=own[sel], buy_sell_indicator=side[sel],
                shares=shares[sel], stock=names[symbol[sel]], price=price[sel],
                time_in_force=np.where(ioc[sel], ouch.TimeInForce.IMMEDIATE_OR_CANCEL, ouch.TimeInForce.SYSTEM_HOURS),
                firm=cfg.firm, display=b"Y", capacity=b"P", intermarket_sweep_eligibility=b"N",
                minimum_quantity=0, cross_type=b"N", customer_type=b"N")
        elif code == REPLACE:
            messages["U"] = ouch.records(
                "replace_order", len(sel), existing_order_token=target_token[sel],
                replacement_order_token=own[sel], shares=shares[sel], price=price[sel],
                time_in_force=ouch.TimeInForce.SYSTEM_HOURS, display=b"Y",
                intermarket_sweep_eligibility=b"N", minimum_quantity=0)
        else:
            messages["X"] = ouch.records("cancel_order", len(sel), order_token=target_token[sel], shares=0)
    by_client = np.argsort(client, kind="stable")
    wire = ouch.encode_inbound(messages, (kind[by_client], index[by_client]))
    start, end = np.empty(n, np.int64), np.empty(n, np.int64)
    end[by_client] = np.cumsum(_packet_lengths(kind[by_client]))
    start[by_client] = end[by_client] - _packet_lengths(kind[by_client])
    assert not n or end[by_client[-1]] == len(wire)
    gap = 1e9 / cfg.rate
    times = (np.arange(n) * gap if cfg.arrivals == "uniform"
             else np.concatenate(([0.0], np.cumsum(rng.exponential(gap, max(n - 1, 0))))))
    intended = np.round(times).astype(np.int64)
    return Schedule(kind, target, client, symbol, side, shares, price, ioc, token_base, intended, wire, start, end)


def _packet_lengths(kind: np.ndarray) -> np.ndarray:
    table = np.zeros(256, np.int64)
    for t, n in _PACKET_LEN.items():
        table[t] = n
    return table[kind]


# ---------------------------------------------------------------------------------------
# The exchange: send on schedule, store every datagram received


class _Received:
    """Datagrams as they arrived: payloads back to back, kernel receive stamps beside."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.stamps: list[np.ndarray] = []

    def take(self, burst: Burst, now_ns: int) -> int:
        n = len(burst)
        if n:
            self.chunks.extend(burst.buffer[o:o + n_].tobytes()
                               for o, n_ in zip(burst.offsets.tolist(), burst.lengths.tolist()))
            ts = np.asarray(burst.timestamps, np.int64)
            self.stamps.append(np.where(ts > 0, ts, now_ns))   # no kernel stamp: the poll time
        return n

    def joined(self) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
        """(buffer, offsets, lengths, stamps) of every datagram."""
        return self.merged([self])

    @staticmethod
    def merged(stores: list[_Received]) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
        """(buffer, offsets, lengths, stamps) of the datagrams of several sockets in one
        order by receive stamp that keeps each socket's own arrival order (everything about
        one order goes to one socket, so that is the order that matters)."""
        chunks = [c for s in stores for c in s.chunks]
        stamps = [np.concatenate(s.stamps) if s.stamps else np.zeros(0, np.int64) for s in stores]
        key = np.concatenate([np.maximum.accumulate(t) for t in stamps]) if stamps else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        lengths = np.array([len(chunks[i]) for i in order.tolist()], np.int64)
        offsets = np.zeros(len(lengths), np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        stamps = np.concatenate(stamps)[order] if stamps else np.zeros(0, np.int64)
        return b"".join(chunks[i] for i in order.tolist()), offsets, lengths, stamps


def _local_address_towards(host: str) -> str:
    """The local address the kernel would send from to reach `host` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


# Any UDP datagram fits a slot (a venue may pack many replies into one); the ring is
# drained and released every loop, so few slots do.
_RX = dict(slot_size=65536, slots=256, rcvbuf=8 << 20)


EPHEMERAL_PORT = 49152      # a netio port's first client binds here when ``bind`` names port 0


def _open_ports(cfg: LoadConfig) -> tuple[list[UdpSocketPort], UdpSocketPort | None]:
    if cfg.backend != "socket":
        return _open_netio_ports(cfg)
    host, _, port = cfg.bind.rpartition(":")
    orders = []
    try:
        for c in range(cfg.clients):
            orders.append(UdpSocketPort(f"{host}:{int(port) + c if int(port) else 0}", peer=cfg.venue, **_RX))
    except BaseException:
        for p in orders:
            p.close()
        raise
    if not cfg.feed:
        return orders, None
    try:
        if cfg.feed_group is None:
            feed = UdpSocketPort(cfg.feed_bind or f"0.0.0.0:{cfg.feed_port}", **_RX)
        else:
            local = cfg.feed_iface or _local_address_towards(cfg.venue.rpartition(":")[0])
            feed = UdpSocketPort(f"{cfg.feed_group}:{cfg.feed_port}", groups=[cfg.feed_group],
                                 multicast_if=local, **_RX)
    except BaseException:
        for p in orders:
            p.close()
        raise
    return orders, feed


def _sync_feed(cfg: LoadConfig, feed: UdpSocketPort | None) -> _Received:
    """The feed's datagrams until one of our session arrives, or FEED_SYNC_S passes: where
    its sequence stands before the first order, so that any packet lost later, the first
    of our orders' too, leaves a gap."""
    market = _Received()
    if feed is None:
        return market
    session = cfg.feed_session.encode().ljust(moldudp64.SESSION_LEN)
    deadline = time.monotonic() + FEED_SYNC_S
    while time.monotonic() < deadline:
        if feed.fileno() is not None:
            select.select([feed.fileno()], [], [], 0.05)
        burst = feed.rx_burst(256)
        market.take(burst, time.time_ns())
        synced = any(d[:moldudp64.SESSION_LEN] == session for d in burst.to_bytes())
        feed.release(burst)
        if synced:
            break
    return market


def _open_netio_ports(cfg: LoadConfig) -> tuple[list[UdpEndpoint], UdpEndpoint | None]:
    """The order and feed endpoints on a netio port on ``cfg.iface``: our address is the
    one the kernel has there towards the venue (or ``bind``'s host), our MAC the
    interface's."""
    if not cfg.iface:
        raise ValueError(f"--backend {cfg.backend} needs --iface: the interface to open a netio port on")
    venue_host, _, venue_port = cfg.venue.rpartition(":")
    host, _, port = cfg.bind.rpartition(":")
    ip = host if host not in ("", "0.0.0.0") else _local_address_towards(venue_host)
    stack = UdpStack(open_port(cfg.iface, cfg.backend), iface.link_state(cfg.iface).mac, ip)
    try:
        first = int(port) or EPHEMERAL_PORT
        orders = [stack.endpoint(first + c, peer=(venue_host, int(venue_port))) for c in range(cfg.clients)]
        feed = None
        if cfg.feed:
            feed = (stack.endpoint(cfg.feed_port, groups=(cfg.feed_group,)) if cfg.feed_group is not None
                    else stack.endpoint(int(cfg.feed_bind.rpartition(":")[2])))
    except BaseException:
        stack.close()
        raise
    return orders, feed


def _exchange(cfg: LoadConfig, sched: Schedule, orders: list[UdpSocketPort], feed: UdpSocketPort | None,
              market: _Received, start_ns: int, stop: threading.Event | None) -> tuple[list[_Received], int, int, int]:
    """Send every request when due (late ones at once, in order); receive until the drain ends,
    the feed's datagrams into ``market``. Once `stop` is set, only what is already due goes
    out, then the drain begins.

    Returns (replies per client, requests sent, datagrams sent, worst lag of a send behind
    its schedule). The requests sent are always the first ones.
    """
    due_at = start_ns + sched.intended
    wire = np.frombuffer(sched.wire, np.uint8)
    mine = [np.flatnonzero(sched.client == c) for c in range(len(orders))]   # each client's requests
    done = [0] * len(orders)                                                  # of which sent
    replies = [_Received() for _ in orders]
    ports = list(zip(orders, replies)) + ([(feed, market)] if feed is not None else [])
    fds = [p.fileno() for p, _ in ports]
    spin = None in fds              # a netio port is polled, never waited on
    n, datagrams, max_lag = len(sched), 0, 0
    due, drain_end = 0, None
    while True:
        now = time.time_ns()
        if drain_end is None:
            if stop is not None and stop.is_set():
                n = due                 # what was due is all that goes out
            due = min(int(np.searchsorted(due_at, now, "right")), n)
            for c, port in enumerate(orders):
                upto = int(np.searchsorted(mine[c], due))
                if upto > done[c]:
                    first = np.arange(done[c], upto, cfg.batch)[:256]
                    last = np.minimum(first + cfg.batch, upto) - 1
                    lo, hi = sched.start[mine[c][first]], sched.end[mine[c][last]]
                    k = port.tx_burst(Burst(wire, lo, (hi - lo).astype(np.uint32), np.zeros(len(lo), np.int64)))
                    if k:
                        max_lag = max(max_lag, now - int(due_at[mine[c][done[c]]]))   # the oldest waited longest
                        done[c], datagrams = int(last[k - 1]) + 1, datagrams + k
            if due == n and all(d == np.searchsorted(m, n) for d, m in zip(done, mine)):
                drain_end = now + int(cfg.drain * 1e9)
        elif now >= drain_end:
            break
        got = 0
        for port, store in ports:
            while True:
                burst = port.rx_burst(256)
                if not len(burst):
                    break
                got += store.take(burst, now)
                port.release(burst)
        if not got:
            wake = int(due_at[due]) if drain_end is None and due < n else drain_end or now
            wait = (wake - time.time_ns()) / 1e9
            if wait > 50e-6 and not spin:   # sleep in select so replies still wake us, and other threads run
                select.select(fds, [], [], min(wait, 0.002))
    return replies, n, datagrams, max_lag


# ---------------------------------------------------------------------------------------
# Checking the replies


_OUT_LEN = np.zeros(256, np.int64)
for _t, _s in ouch.OUTBOUND.items():
    _OUT_LEN[ord(_t)] = _s.length
_REJECT_NAMES = {r.value: r.name.lower() for r in ouch.RejectReason}
_CANCEL_NAMES = {r.value: r.name.lower() for r in ouch.CancelReason}


def _data_packets(buf: bytes, offsets: np.ndarray, lengths: np.ndarray, notes: Counter) -> tuple[bytes, np.ndarray]:
    """Keep only well-formed 'S' packets (per-packet Python; used when a datagram holds
    anything else): their bytes and the datagram each came from. Others are counted in `notes`."""
    kept, where = [], []
    for d, (o, n) in enumerate(zip(offsets.tolist(), lengths.tolist())):
        pos, end = o, o + n
        while pos + 3 <= end:
            size = buf[pos] << 8 | buf[pos + 1]
            if size == 0 or pos + 2 + size > end:
                notes["bad SoupBinTCP framing"] += 1
                break
            if buf[pos + 2] == ord("S") and size > 1 and _OUT_LEN[buf[pos + 3]] == size - 1:
                kept.append(buf[pos:pos + 2 + size])
                where.append(d)
            elif buf[pos + 2] == ord("S"):
                notes["bad OUCH message"] += 1
            elif buf[pos + 2] not in b"H+":   # heartbeats and debug text are harmless
                notes[f"SoupBinTCP {chr(buf[pos + 2])!r} packet"] += 1
            pos += 2 + size
        else:
            if pos != end:
                notes["bad SoupBinTCP framing"] += 1
    return b"".join(kept), np.array(where, np.int64)


def decode_replies(buf: bytes, offsets: np.ndarray, lengths: np.ndarray,
                   notes: Counter) -> tuple[ouch.Decoded, np.ndarray]:
    """All replies in arrival order and the datagram each message came in."""
    dec = ouch.decode_outbound(buf, final=True)
    if len(dec.control) or dec.rejects:
        buf, where = _data_packets(buf, offsets, lengths, notes)
        return ouch.decode_outbound(buf, final=True), where
    start = np.zeros(len(dec) + 1, np.int64)
    np.cumsum(_OUT_LEN[dec.order_type] + 3, out=start[1:])
    return dec, np.searchsorted(offsets, start[:-1], "right") - 1


def _first_copies(arr: np.ndarray) -> np.ndarray:
    """True for the first occurrence of each distinct message (byte for byte)."""
    first = np.zeros(len(arr), bool)
    if len(arr):
        _, idx = np.unique(np.ascontiguousarray(arr).view(f"V{arr.dtype.itemsize}"), return_index=True)
        first[idx] = True
    return first


class _Book:
    """The client's view of its own orders, advanced reply by reply in arrival order.

    Indexed by request: an Enter's order, and a Replace's replacement order."""

    def __init__(self, sched: Schedule):
        n = len(sched)
        self.s = sched
        self.kind = sched.kind.tolist()
        self.target = sched.target.tolist()
        self.answer = [-1] * n          # arrival index of the reply answering request i
        self.open = [0] * n
        self.live = [False] * n         # accepted or replaced into (an order the venue knows)
        self.ref = [0] * n
        self.price = sched.price.tolist()
        self.buy = (sched.side == b"B").tolist()
        self.ioc = sched.ioc.tolist()
        self.removed = [0] * n          # shares taken on entry (liquidity flag 'R')
        self.other_cancel = [False] * n  # canceled for a reason other than the user's
        self.user_cancel = [False] * n   # canceled at our request
        self.moved = [False] * n        # replaced: its open shares moved to the replacement
        cancel_of = np.full(n, -1, np.int64)   # the Cancel request aimed at each order, if any
        cancels = np.flatnonzero(sched.kind == CANCEL)
        cancel_of[sched.target[cancels]] = cancels
        self.cancel_of = cancel_of.tolist()
        self.unexpected, self.wrong, self.rejects, self.cancels = Counter(), Counter(), Counter(), Counter()
        self.fills: list[tuple[int, int, int]] = []   # (match number, shares, price)
        self.examples: list[str] = []

    def _flag(self, counter: Counter, what: str, detail: str) -> None:
        counter[what] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{what}: {detail}")

    def _answer(self, r: int, k: int, what: str) -> bool:
        if self.answer[r] >= 0:
            self._flag(self.unexpected, "second answer", f"{what} for request {r}, already answered")
            return False
        self.answer[r] = k
        return True

    def accepted(self, k, r, shares, price, buy, ref, dead) -> None:
        if r < 0 or self.kind[r] != ENTER:
            return self._flag(self.unexpected, "accepted unknown token", f"reply {k}")
        if self._answer(r, k, "Accepted"):
            if shares != int(self.s.shares[r]) or price != self.price[r] or buy != self.buy[r]:
                self._flag(self.unexpected, "accepted differs from the order",
                           f"request {r}: {shares}@{price} for {int(self.s.shares[r])}@{self.price[r]}")
            self.live[r], self.open[r], self.ref[r] = True, 0 if dead else shares, ref

    def rejected(self, k, r, reason) -> None:
        if r < 0 or self.kind[r] == CANCEL:
            return self._flag(self.unexpected, "rejected unknown token", f"reply {k}")
        if self._answer(r, k, "Rejected"):
            self.rejects[_REJECT_NAMES.get(reason, repr(reason))] += 1

    def replaced(self, k, r, prev, shares, price, ref, dead) -> None:
        if r < 0 or self.kind[r] != REPLACE or prev != self.target[r]:
            return self._flag(self.unexpected, "replaced unknown token", f"reply {k}")
        if self._answer(r, k, "Replaced"):
            if not self.open[prev]:
                self._flag(self.unexpected, "replaced an order not live", f"request {prev}")
            self.live[r], self.open[r], self.ref[r], self.price[r] = True, 0 if dead else shares, ref, price
            self.open[prev], self.moved[prev] = 0, True

    def canceled(self, k, r, shares, reason) -> None:
        if r < 0 or not self.live[r]:
            return self._flag(self.unexpected, "canceled unknown order", f"reply {k}")
        if shares > self.open[r]:
            self._flag(self.unexpected, "canceled more than open", f"request {r}: {shares} of {self.open[r]}")
        self.open[r] -= min(shares, self.open[r])
        self.cancels[_CANCEL_NAMES.get(reason, repr(reason))] += 1
        if reason == "U":
            self.user_cancel[r] = True
            c = self.cancel_of[r]
            if c < 0:
                return self._flag(self.unexpected, "user cancel never asked for", f"request {r}")
            self._answer(c, k, "Canceled")
        elif reason == "I" and not self.ioc[r]:
            self._flag(self.unexpected, "IOC cancel of a day order", f"request {r}")
        else:
            self.other_cancel[r] = True

    def executed(self, k, r, shares, price, flag, match) -> None:
        if r < 0 or not self.live[r]:
            return self._flag(self.unexpected, "execution for unknown order", f"reply {k}, match {match}")
        if shares > self.open[r]:
            self._flag(self.wrong, "more shares than open", f"request {r}: {shares} of {self.open[r]}, match {match}")
        if (price > self.price[r]) if self.buy[r] else (price < self.price[r]):
            self._flag(self.wrong, "through the limit", f"request {r}: {price} vs limit {self.price[r]}, match {match}")
        self.open[r] -= min(shares, self.open[r])
        if flag == "R":
            self.removed[r] += shares
        self.fills.append((match, shares, price))

    def lost_and_silent(self) -> tuple[Counter, int]:
        """Requests without an answer: lost, or silent where OUCH answers nothing."""
        lost, silent = Counter(), 0
        for r, kind in enumerate(self.kind):
            if self.answer[r] >= 0:
                continue
            t = self.target[r]
            if kind == ENTER or (self.open[t] > 0 and not self.moved[t]):
                lost[KIND_NAMES[kind]] += 1
                if len(self.examples) < _MAX_EXAMPLES:
                    self.examples.append(f"lost: no answer to {KIND_NAMES[kind]} request {r}")
            else:
                silent += 1
        return lost, silent


def check_replies(sched: Schedule, dec: ouch.Decoded) -> tuple[_Book, int]:
    """Run every reply (arrival order) through the client's book; returns it and the duplicates."""
    book = _Book(sched)
    m = dec.messages
    first = {t: _first_copies(a) for t, a in m.items()}
    ids = {t: token_ids(a["order_token"]) for t, a in m.items() if "order_token" in (a.dtype.names or ())}
    if len(m["U"]):
        ids["U"] = token_ids(m["U"]["replacement_order_token"])
        prev_ids = (token_ids(m["U"]["previous_order_token"]) - sched.token_base).tolist()
    col = {t: {f: a[f].tolist() for f in a.dtype.names} for t, a in m.items() if len(a)}
    req = {t: np.where((v >= 0) & (v >= sched.token_base) & (v < sched.token_base + len(sched)),
                       v - sched.token_base, -1).tolist() for t, v in ids.items()}   # request of each token
    duplicates = 0
    for k, (t, i) in enumerate(zip(dec.order_type.tolist(), dec.order_index.tolist())):
        t = chr(t)
        if not first[t][i]:
            duplicates += 1
            if len(book.examples) < _MAX_EXAMPLES:
                book.examples.append(f"duplicated: reply {k} ({ouch.OUTBOUND[t].name}) repeats an earlier one")
            continue
        f = col[t]
        if t == "A":
            book.accepted(k, req[t][i], f["shares"][i], f["price"][i], f["buy_sell_indicator"][i] == b"B",
                          f["order_reference_number"][i], f["order_state"][i] == b"D")
        elif t == "J":
            book.rejected(k, req[t][i], f["reason"][i].decode("ascii", "replace"))
        elif t == "U":
            book.replaced(k, req[t][i], prev_ids[i], f["shares"][i], f["price"][i],
                          f["order_reference_number"][i], f["order_state"][i] == b"D")
        elif t == "C":
            book.canceled(k, req[t][i], f["decrement_shares"][i], f["reason"][i].decode("ascii", "replace"))
        elif t == "E":
            book.executed(k, req[t][i], f["executed_shares"][i], f["execution_price"][i],
                          f["liquidity_flag"][i].decode("ascii", "replace"), f["match_number"][i])
        elif t != "S":
            book._flag(book.unexpected, f"{ouch.OUTBOUND[t].name} message", f"reply {k}")
    return book, duplicates


# ---------------------------------------------------------------------------------------
# Checking the feed


@dataclasses.dataclass
class FeedResult:
    packets: int = 0
    messages: int = 0
    gaps: int = 0                   # not filled by the recovered packets
    missing: int = 0
    recovered: int = 0
    errors: Counter = dataclasses.field(default_factory=Counter)


def _our_packets(cfg: LoadConfig, mold: moldudp64.Decoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of the well-formed packets of our session, their first sequence numbers, their
    message counts) of decoded MoldUDP64 packets."""
    session = cfg.feed_session.encode().ljust(moldudp64.SESSION_LEN)
    ours = (mold.status == 0) & (mold.headers["session"] == session)
    count = mold.headers["count"][ours].astype(np.int64)
    count[count == moldudp64.END_OF_SESSION_COUNT] = 0
    return ours, mold.headers["sequence"][ours].astype(np.int64), count


def _sequence_gaps(seq: np.ndarray, count: np.ndarray) -> tuple[list[tuple[int, int]], int]:
    """The gaps in packets' sequence numbers in arrival order, as (first missing, how many),
    and the packets that came behind the sequence (duplicated or reordered)."""
    if len(seq) < 2:
        return [], 0
    expected = np.maximum.accumulate(seq + count)[:-1]
    gap = seq[1:] - expected
    return [(int(expected[k]), int(gap[k])) for k in np.flatnonzero(gap > 0)], int((gap < 0).sum())


class _Asker:
    """Requests to the venue's re-request server and their answers, through a port of the
    burst API: a kernel UDP socket, or an endpoint of the load's own netio ``stack``."""

    def __init__(self, cfg: LoadConfig, stack: UdpStack | None):
        host = cfg.venue.rpartition(":")[0]
        if stack is None:
            self.port = UdpSocketPort(f"{cfg.feed_iface or _local_address_towards(host)}:0",
                                      peer=f"{host}:{cfg.recovery_port}", **_RX)
        else:
            self.port = stack.endpoint(EPHEMERAL_PORT - 1, peer=(host, cfg.recovery_port))
        self.pending: list[bytes] = []

    def ask(self, request: bytes) -> None:
        self.port.tx_burst(Burst.of([request]))

    def answer(self, wait_s: float) -> bytes | None:
        """The next datagram from the server, or None after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while not self.pending and (left := deadline - time.monotonic()) > 0:
            if self.port.fileno() is not None:      # a socket is waited on, an endpoint polled
                select.select([self.port.fileno()], [], [], left)
            burst = self.port.rx_burst(256)
            self.pending = burst.to_bytes()
            self.port.release(burst)
        return self.pending.pop(0) if self.pending else None

    def close(self) -> None:
        self.port.close()


def recover(cfg: LoadConfig, buf: bytes, offsets: np.ndarray, lengths: np.ndarray,
            stack: UdpStack | None = None) -> list[bytes]:
    """Ask the venue's re-request server (``cfg.recovery_port``) for the messages of every gap
    in the feed datagrams received, over a kernel socket or the load's netio ``stack``:
    each answer holds as many as fit, so the rest is asked for again; a gap is given up
    after RECOVERY_TRIES unanswered requests in a row (the server keeps only the latest
    messages, and holds each asker to a rate), and asking stops after RECOVERY_S. Returns
    the answers, MoldUDP64 packets."""
    _, seq, count = _our_packets(cfg, moldudp64.decode_views(buf, offsets, lengths))
    gaps, _ = _sequence_gaps(seq, count)
    if not gaps or not cfg.recovery_port:
        return []
    answers, deadline = [], time.monotonic() + RECOVERY_S
    asker = _Asker(cfg, stack)
    try:
        for first, n in gaps:
            at, end, misses, ask = first, first + n, 0, True
            while at < end and misses < RECOVERY_TRIES and time.monotonic() < deadline:
                if ask:
                    asker.ask(moldudp64.request(cfg.feed_session, at, min(end - at, 0xFFFE)))
                data = asker.answer(RECOVERY_WAIT_S)
                if data is None:
                    misses, ask = misses + 1, True
                    continue
                try:
                    packet = moldudp64.decode(data)
                except moldudp64.MoldError:
                    packet = None
                if packet is None or packet.session != cfg.feed_session or packet.sequence != at \
                        or not packet.messages:
                    ask = False     # not the answer (one to an earlier request, come late): wait for it
                    continue
                answers.append(data)
                at, misses, ask = at + len(packet.messages), 0, True
    finally:
        asker.close()
    return answers


def check_feed(cfg: LoadConfig, buf: bytes, offsets: np.ndarray, lengths: np.ndarray,
               book: _Book, examples: list[str], recovered: Sequence[bytes] = ()) -> FeedResult:
    """Sequence the MoldUDP64 packets of our session (``recovered``: packets the re-request
    server sent again, which fill gaps) and find our fills and adds in the ITCH."""
    res = FeedResult()

    def error(what: str, detail: str, count: int = 1) -> None:
        res.errors[what] += count
        if len(examples) < _MAX_EXAMPLES:
            examples.append(f"feed {what}: {detail}")

    live = len(offsets)
    if recovered:
        sizes = np.array([len(p) for p in recovered], np.int64)
        offsets = np.concatenate([offsets, len(buf) + np.cumsum(sizes) - sizes])
        lengths = np.concatenate([lengths, sizes])
        buf = buf + b"".join(recovered)
    mold = moldudp64.decode_views(buf, offsets, lengths)
    for reason, c in mold.rejects.items():
        error(f"bad MoldUDP64 packet ({reason})", f"{c} packets", c)
    ours, seq, count = _our_packets(cfg, mold)
    from_feed = np.flatnonzero(ours) < live
    res.packets = int(from_feed.sum())
    gaps, stale = _sequence_gaps(seq[from_feed], count[from_feed])
    if stale:
        error("packet behind the sequence", "duplicate or reordered packets", stale)
    held = np.unique(np.concatenate([np.arange(q, q + c) for q, c in zip(seq[~from_feed], count[~from_feed])] +
                                    [np.zeros(0, np.int64)]))
    for first, n in gaps:
        got = int(np.searchsorted(held, first + n) - np.searchsorted(held, first))
        res.recovered += got
        if got < n:
            res.gaps, res.missing = res.gaps + 1, res.missing + n - got
            if res.gaps == 1 and len(examples) < _MAX_EXAMPLES:
                examples.append(f"feed gap: {n - got} of sequence {first} to {first + n - 1} never arrived"
                                + (" nor came back from the re-request server" if cfg.recovery_port else ""))
    good_packets = np.flatnonzero(ours)
    take = np.isin(mold.packet, good_packets)
    res.messages = int(np.isin(mold.packet, good_packets[from_feed]).sum())
    batch = itch.decode_views(mold.buffer, mold.offset[take], mold.length[take])
    for reason, c in batch.rejects.items():
        if c:
            error(f"bad ITCH message ({reason})", f"{c} messages", c)
    m = batch.messages

    # Prices of every order reference the feed has announced (adds and replacements).
    refs = np.concatenate([m["A"]["order_reference_number"], m["F"]["order_reference_number"],
                           m["U"]["new_order_reference_number"]]).astype(np.uint64)
    prices = np.concatenate([m["A"]["price"], m["F"]["price"], m["U"]["price"]]).astype(np.int64)
    by_ref = np.argsort(refs, kind="stable")
    refs, prices = refs[by_ref], prices[by_ref]

    def price_of(r: np.ndarray) -> np.ndarray:
        if not len(refs):
            return np.full(len(r), _UNSEEN, np.int64)
        i = np.minimum(np.searchsorted(refs, r), len(refs) - 1)
        return np.where(refs[i] == r, prices[i], _UNSEEN)

    e_ref = m["E"]["order_reference_number"].astype(np.uint64)
    prints = {}
    for match, shares, price in zip(
            np.concatenate([m["E"]["match_number"], m["C"]["match_number"], m["P"]["match_number"]]).tolist(),
            np.concatenate([m["E"]["executed_shares"], m["C"]["executed_shares"], m["P"]["shares"]]).tolist(),
            np.concatenate([price_of(e_ref), m["C"]["execution_price"].astype(np.int64),
                            m["P"]["price"].astype(np.int64)]).tolist()):
        prints[match] = (shares, price)
    for match, shares, price in book.fills:
        on_feed = prints.get(match)
        if on_feed is None:
            error("execution missing", f"match {match} ({shares}@{price}) not printed")
        elif on_feed[0] != shares or on_feed[1] not in (price, _UNSEEN):
            error("execution differs", f"match {match}: ours {shares}@{price}, feed {on_feed[0]}@{on_feed[1]}")

    # Every own order that rested is on the book: A/F (an Enter) or A/F/U (a replacement).
    adds = {}
    for t in "AF":
        a = m[t]
        for ref, side, shares, price in zip(a["order_reference_number"].tolist(), a["buy_sell_indicator"].tolist(),
                                            a["shares"].tolist(), a["price"].tolist()):
            adds[ref] = (side == b"B", shares, price)
    replaced_in = dict(zip(m["U"]["new_order_reference_number"].tolist(), m["U"]["price"].tolist()))
    taken_off = set(m["D"]["order_reference_number"].tolist()) | set(m["X"]["order_reference_number"].tolist())
    s = book.s
    for r, kind in enumerate(book.kind):
        if kind == CANCEL or not book.live[r] or book.ioc[r] or book.other_cancel[r]:
            continue
        if kind == ENTER:
            rested = int(s.shares[r]) - book.removed[r]
            if rested <= 0:
                continue
            got = adds.get(book.ref[r])
            if got is None:
                error("add missing", f"order ref {book.ref[r]} (request {r}) never added")
            elif got != (book.buy[r], rested, book.price[r]):
                error("add differs", f"order ref {book.ref[r]}: ours {(book.buy[r], rested, book.price[r])}, feed {got}")
            if book.user_cancel[r] and book.ref[r] not in taken_off:
                error("cancel missing", f"order ref {book.ref[r]} (request {r}) canceled but never taken off (D/X)")
        elif book.ref[r] != book.ref[book.target[r]]:   # a replacement that lost priority
            if book.removed[r] >= int(s.shares[r]):
                continue
            price = replaced_in.get(book.ref[r], adds.get(book.ref[r], (None, None, None))[2])
            if price is None:
                error("replacement missing", f"order ref {book.ref[r]} (request {r}) never on the book")
            elif price != book.price[r]:
                error("replacement differs", f"order ref {book.ref[r]}: ours @{book.price[r]}, feed @{price}")
    return res


# ---------------------------------------------------------------------------------------
# Round trips, the .hlog, the run


def round_trips(sched: Schedule, book: _Book, stamps_by_reply: np.ndarray, start_ns: int) -> np.ndarray:
    """Per request: receive stamp of its answer minus its intended send time (ns); -1 if none."""
    answer = np.array(book.answer, np.int64)
    rtt = np.full(len(sched), -1, np.int64)
    ok = answer >= 0
    rtt[ok] = stamps_by_reply[answer[ok]] - (start_ns + sched.intended[ok])
    return rtt


def write_hlog(path: str, rtt: np.ndarray, sched: Schedule, start_ns: int, interval: float) -> None:
    """RoundTrip histograms per interval of intended send time, in the standard interval-log format."""
    writer = HlogWriter(path, start_time_s=start_ns / 1e9, comments=(SOURCE_COMMENT,))
    try:
        ok = rtt >= 0
        step = int(interval * 1e9)
        bins = sched.intended[ok] // step
        values = np.maximum(rtt[ok], 1)
        hist = StageHistogram(TAG)
        for b in range(int(bins.max()) + 1 if len(bins) else 0):
            hist.reset()
            hist.record(values[bins == b])
            t0 = (start_ns + b * step) / 1e9
            writer.write(hist.synced(), t0, t0 + interval, tag=TAG)
    finally:
        writer.close()


def run(cfg: LoadConfig, stop: threading.Event | None = None) -> Summary:
    """Run one load: send the schedule, drain, check replies and feed, write the .hlog.

    Setting `stop` (from another thread or a signal handler) ends the sending early; what
    was sent is still drained and checked.
    """
    sched = build_schedule(cfg)
    planned = len(sched)
    orders, feed = _open_ports(cfg)
    try:
        market = _sync_feed(cfg, feed)
        start_ns = time.time_ns() + 20_000_000   # the schedule starts once the loop is warm
        replies, sent, datagrams, max_lag = _exchange(cfg, sched, orders, feed, market, start_ns, stop)
        sched = sched.head(sent)
        named = [(f"client {c}" if len(orders) > 1 else "replies", p) for c, p in enumerate(orders)]
        rx_drops = {f"{name}: {why}": n for name, port in named + [("feed", feed)] if port
                    for why, n in port.stats().drops.items() if n}
        # while the ports are open: on a netio port its own stack asks (the kernel sees none of it)
        stack = orders[0].owner if isinstance(orders[0], UdpEndpoint) else None
        recovered = recover(cfg, *market.joined()[:3], stack=stack) if cfg.feed else []
    finally:
        for port in orders + [feed]:
            if port is not None:
                port.close()

    notes = Counter()
    buf, offsets, lengths, stamps = _Received.merged(replies)
    dec, datagram_of = decode_replies(buf, offsets, lengths, notes)
    book, duplicates = check_replies(sched, dec)
    for what, c in notes.items():
        book.unexpected[what] += c
    lost, silent = book.lost_and_silent()
    rtt = round_trips(sched, book, stamps[datagram_of] if len(datagram_of) else stamps[:0], start_ns)
    fres = check_feed(cfg, *market.joined()[:3], book, book.examples, recovered) if cfg.feed else FeedResult()
    if cfg.hlog:
        write_hlog(cfg.hlog, rtt, sched, start_ns, cfg.interval)

    answered = rtt[rtt >= 0]
    pct = (np.percentile(answered, [50, 99, 99.9]).round().astype(np.int64).tolist()
           if len(answered) else [0, 0, 0])
    failures = []
    for what, bad in (("lost replies", sum(lost.values())), ("duplicated replies", duplicates),
                      ("unexpected replies", sum(book.unexpected.values())),
                      ("wrong fills", sum(book.wrong.values())), ("feed gaps", fres.gaps),
                      ("feed mismatches", sum(fres.errors.values())), ("receive drops", sum(rx_drops.values()))):
        if bad:
            failures.append(f"{what}: {bad}")
    if not len(answered):
        failures.append("no request was answered")
    return Summary(
        planned=planned, sent={KIND_NAMES[k]: int((sched.kind == k).sum()) for k in KIND_NAMES}, datagrams=datagrams,
        answered=int(len(answered)), silent=silent, lost=dict(lost), duplicated=duplicates,
        unexpected=dict(book.unexpected), rejects=dict(book.rejects), cancels=dict(book.cancels),
        fills=len(book.fills), filled_shares=sum(f[1] for f in book.fills), wrong_fills=dict(book.wrong),
        feed_packets=fres.packets, feed_messages=fres.messages, feed_gaps=fres.gaps, feed_missing=fres.missing,
        feed_recovered=fres.recovered,
        feed_errors=dict(fres.errors), rx_drops=rx_drops,
        rtt_ns={"count": int(len(answered)), "p50": pct[0], "p99": pct[1], "p99.9": pct[2],
                "max": int(answered.max()) if len(answered) else 0},
        max_send_lag_ns=int(max_lag), failures=failures, examples=book.examples,
        rtt=rtt, intended=start_ns + sched.intended, kind=sched.kind)


# ---------------------------------------------------------------------------------------
# The command line

EXAMPLES = """
examples:
  netio-loadgen                                    # 10k orders/s for 2 s against 127.0.0.1:15000
  netio-loadgen --venue 10.0.0.1 --rate 50000 --duration 10 --hlog rtt.hlog
  netio-loadgen --venue 10.0.0.1 --feed-iface 10.0.0.2 --json   # machine-readable summary
  netio-loadgen --venue-config venue.toml --venue 10.0.0.1      # ports, feed and symbols from the venue's TOML
  netio-loadgen --feed-addr 127.0.0.1:16001        # unicast feed instead of the multicast group
  netio-loadgen --no-feed --cancel-ratio 0 --replace-ratio 0 --ioc-ratio 1
  sudo netio-loadgen --backend xdp --iface eth1 --venue 10.0.0.1   # the client on AF_XDP too
  netio-loadgen --clients 4                        # four venue sessions whose orders trade with each other

Round trip runs from each request's intended send time on a schedule drawn before the
run (open loop, Poisson arrivals unless --arrivals uniform), so stalls are measured, not
hidden. Exit status: 0 all checks passed, 1 a check failed, 2 bad usage.
"""


def _parser() -> argparse.ArgumentParser:
    d = LoadConfig()
    p = argparse.ArgumentParser(prog="netio-loadgen", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venue", default="127.0.0.1", help="venue order entry: host or host:port (port from the venue config)")
    p.add_argument("--venue-config", help="venue TOML (engine/venue_config.py): ports, feed group/session, symbols")
    p.add_argument("--bind", default=d.bind, help="local host:port for order entry (default %(default)s)")
    p.add_argument("--clients", type=int, default=d.clients,
                   help="order entry sockets (venue clients) sharing the flow (default %(default)s)")
    p.add_argument("--firm", default=d.firm, help="OUCH Firm (default %(default)s)")
    p.add_argument("--rate", type=float, default=d.rate, help="requests per second (default %(default)s)")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of sending (default %(default)s)")
    p.add_argument("--arrivals", choices=("poisson", "uniform"), default=d.arrivals,
                   help="send times: a Poisson process at --rate, as from many independent traders, or evenly "
                        "spaced, which on the venue's own host can lock onto its timer tick (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--symbols", help="comma-separated subset of the venue's symbols")
    p.add_argument("--cancel-ratio", type=float, default=d.cancel_ratio, help="Enters later canceled")
    p.add_argument("--replace-ratio", type=float, default=d.replace_ratio, help="Enters later replaced")
    p.add_argument("--ioc-ratio", type=float, default=d.ioc_ratio, help="Enters that are IOC")
    p.add_argument("--batch", type=int, default=d.batch, help="requests per datagram at most (default %(default)s)")
    p.add_argument("--drain", type=float, default=d.drain, help="seconds to wait for replies after the last send")
    p.add_argument("--no-feed", action="store_true", help="do not join or check the ITCH feed")
    p.add_argument("--feed-iface", help="local address to join the feed group on (default: the one towards the venue)")
    p.add_argument("--feed-addr", help="receive the feed unicast on this host:port instead of the group")
    p.add_argument("--backend", choices=("socket", "xdp", "dpdk"), default=d.backend,
                   help="socket (default): kernel UDP sockets; xdp, dpdk: a netio port on --iface with netio's own "
                        "UDP stack (ARP, IGMP), busy-polled: the fast client, which takes a CPU to itself")
    p.add_argument("--iface", help="the interface for --backend xdp or dpdk (our address: the kernel's there "
                                   "towards the venue, or --bind's host)")
    p.add_argument("--recovery-port", type=int,
                   help="the venue's MoldUDP64 re-request server, asked for the messages of feed gaps after the "
                        f"run (default: the venue config's, {d.recovery_port}); 0: ask nothing, a gap fails the run")
    p.add_argument("--hlog", help="write round trips to this HdrHistogram interval log (tag RoundTrip, ns)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    venue = VenueConfig.load(args.venue_config) if args.venue_config else VenueConfig()
    host, _, port = args.venue.partition(":")
    symbols = venue.symbols
    if args.symbols:
        wanted = args.symbols.split(",")
        symbols = tuple(s for s in venue.symbols if s.name in wanted)
        if len(symbols) != len(set(wanted)):
            raise ValueError(f"--symbols: not all of {wanted} are venue symbols ({[s.name for s in venue.symbols]})")
    cfg = LoadConfig.from_venue(
        venue, host, bind=args.bind, clients=args.clients, firm=args.firm, rate=args.rate, duration=args.duration,
        arrivals=args.arrivals, seed=args.seed,
        cancel_ratio=args.cancel_ratio, replace_ratio=args.replace_ratio, ioc_ratio=args.ioc_ratio,
        batch=args.batch, drain=args.drain, feed=not args.no_feed, feed_iface=args.feed_iface, hlog=args.hlog,
        backend=args.backend, iface=args.iface)
    cfg.symbols = symbols
    if port:
        cfg.venue = f"{host}:{port}"
    if args.feed_addr:
        cfg.feed_group, cfg.feed_bind = None, args.feed_addr
    if args.recovery_port is not None:
        if not 0 <= args.recovery_port <= 65535:
            raise ValueError("--recovery-port: a UDP port, or 0 to ask nothing")
        cfg.recovery_port = args.recovery_port
    if cfg.rate <= 0 or cfg.duration <= 0 or cfg.batch <= 0 or cfg.clients <= 0:
        raise ValueError("--rate, --duration, --batch and --clients must be positive")
    if cfg.cancel_ratio < 0 or cfg.replace_ratio < 0 or cfg.cancel_ratio + cfg.replace_ratio > 1:
        raise ValueError("--cancel-ratio and --replace-ratio must be >= 0 and add up to at most 1")
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())   # stop sending, then drain, check, report
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cfg = config_from_args(args)
        summary = run(cfg, stop)
    except (ValueError, OSError, PortError) as e:
        print(f"netio-loadgen: {e}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.text())
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
