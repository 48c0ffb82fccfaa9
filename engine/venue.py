"""The venue pipeline: port → stack → OUCH decode → risk → matching → OUCH + ITCH → port.

    venue = Venue(port, ip="10.0.0.10", mac=port_mac, config=VenueConfig())
    venue.start(cpu=2)        # AF_XDP: the fused walk's own thread, on CPU 2
    while running:
        venue.poll()          # one burst through every stage (or what the thread did); frames received
    venue.close()

Every burst takes the same walk, each stage one or a few C calls over the whole burst
(the stack, the OUCH scanner, risk, the matching kernel, the MoldUDP64 packer, the frame
builder, and ``cffi_build/venue.c``: messages -> command fields, events -> OUCH replies
and ITCH messages); Python hands arrays from one to the next. ``impl="numpy"`` runs
venue.c's two steps as vectorised numpy instead: the reference the C is tested against.
What a burst does, in order (telemetry's TSC hops in brackets):

1. ``rx_burst`` [poll] → ``Stack.process``: ARP/ICMP answered, datagrams to the order port kept;
   MoldUDP64 requests to the recovery port set aside, to be answered from the feed's latest
   messages (engine.recovery), unicast to the asker, once the burst's own frames are sent.
2. The datagrams' payloads, back to back, are split into OUCH messages in one call; a
   message belongs to the datagram its bytes lie in, and its client is the datagram's
   source IP:port (``client id`` 1.. in order of first appearance). An Enter whose Firm
   is not one of the venue's ``firms`` is rejected ('O').
3. Messages become matching-core commands. A client's 14-byte order tokens map to the
   core's u64 tokens through one dict per venue keyed by (client, token): new tokens
   (enter, replace) get fresh numbers, known ones their number, in one ``map`` per burst.
   [parsed] Fields, symbols (by name) and prices (to ticks) filled in, then pre-trade
   risk. [validated]
4. The matching core runs the batch, risk settles from the events (the fused walk: once
   the frames are sent). [matched]
5. Order events become OUCH replies (Accepted, Replaced, Canceled, Executed to taker
   and maker, Rejected), grouped per client into datagrams of at most ``REPLY_PAYLOAD``
   bytes and sent unicast to the client's address; book events become ITCH 5.0 messages
   (A, E, X, D, U, P) packed into MoldUDP64 datagrams for the feed group; all of it
   framed in one call. [serialized] The journal appends the batch: nothing of it has
   left yet. [journaled] ``tx_burst``. [tx_submitted]
6. Telemetry gets the TSC stamps of the hops (engine.telemetry.HOPS) and each frame's RX
   wait (bursts with orders only: ARP and the like would record empty stages).

The pipeline: on a port with a C table (AF_XDP) the whole walk runs in C by default
(``fused``: engine/fastpath.py, the same frames byte for byte, the same journal), on a
thread of its own that ``start(cpu)`` (or the first ``poll``) starts and ``close`` stops;
``poll`` then waits COLLECT_S and collects what the thread did (telemetry, journal
positions). This Python-driven pipeline is its reference and
runs on every other port or with ``fused=False``, one burst per ``poll``. The fused loop
stamps TX submit (descriptors on the ring) and TX completion (after the kick) apart;
``tx_burst`` here does both in one call. It also leaves what the frames do not need (risk
settling from the events, the feed's messages into the re-request server's store) until
they are sent, so its Matching stage is the matching core alone.

Restart: a venue opened on an existing journal replays it into the books and risk, and
its feed carries on in the same MoldUDP64 session with the next sequence number (the
feed is a function of the journal: start of messages and the stock directory once, then
one ITCH message per book event, whose latest the re-request server holds again).
Clients' addresses and 14-byte tokens from before the restart are journaled beside the
commands (``JOURNAL.sessions``: every new client address and token, written before the
commands that use them), so a client that comes back from the same IP:port cancels and
replaces its old orders by their tokens.

Accounting: frames the port dropped (ring full, ...) are in ``port_drops``; frames
received = the stack's delivered + replied + dropped (by reason);
OUCH messages = commands + dropped messages (by reason); commands = accepted (and their
later fills/cancels) + rejected (by reason); requests to the recovery port =
``retransmit_requests`` answered + requests dropped (by reason, with the messages' drops).
``counters()`` holds all of it, and on the fused loop's thread ``cpu_stalls``: the times
the machine took the loop's CPU for over 10 us (engine.fastpath.STALL_S), the usual cause
of a p99.9 far above the p50.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from typing import NamedTuple

import numpy as np

from engine import itch, moldudp64, ouch
from engine.book import Book
from engine.commands import (COMMAND_DTYPE, OUCH_CANCEL_CODE, OUCH_REJECT_CODE, EventKind, Flag, Kind,
                             RejectReason, Side, Tif)
from engine.journal import FlushPolicy, Journal
from engine.matching import Matcher
from engine.recovery import Retransmissions
from engine.risk import Limits, RefMode, RiskEngine
from engine.telemetry import HOPS, TX_SUBMITTED
from engine.venue_config import VenueConfig
from netio.clock import ClockModel, Timeline
from netio.port import Burst, Port, TimestampSource
from netio.stack import Stack, StackResult, ip_int, multicast_mac
from netio.tsc import rdtsc

MAX_CLIENTS = 1024          # client ids 1..MAX_CLIENTS-1; id 0 is never a client
REPLY_PAYLOAD = 1300        # OUCH bytes per reply datagram before the next one starts
NS_PER_DAY = 86_400 * 10**9
FEED_HEARTBEAT_S = 1.0
# poll() on a venue whose loop has a thread of its own: how long it waits before collecting.
# Seldom, as its wake-ups land on another CPU's work: every millisecond, they cost the
# bench's client, on the same CPU, 2 us of its round trip's p50 (11.7 us against 9.4).
COLLECT_S = 0.02

_O, _U, _X = ord("O"), ord("U"), ord("X")
_IN_LEN = np.zeros(256, np.int64)
for _t, _s in ouch.INBOUND.items():
    _IN_LEN[ord(_t)] = _s.length
_OUT_LEN = np.zeros(256, np.int64)
for _t, _s in ouch.OUTBOUND.items():
    _OUT_LEN[ord(_t)] = _s.length
_REJECT_CODE = np.full(256, ord("O"), np.uint8)
for _r, _c in OUCH_REJECT_CODE.items():
    _REJECT_CODE[_r] = _c[0]
_CANCEL_CODE = np.full(256, ord("U"), np.uint8)
for _r, _c in OUCH_CANCEL_CODE.items():
    _CANCEL_CODE[_r] = _c[0]
# OUCH reply type and count per event kind (TRADE answers taker and maker)
_REPLY_TYPE = np.zeros(256, np.uint8)
_REPLY_COUNT = np.zeros(256, np.int64)
for _k, _t, _n in ((EventKind.ACCEPTED, "A", 1), (EventKind.REPLACED, "U", 1), (EventKind.REJECTED, "J", 1),
                   (EventKind.CANCELED, "C", 1), (EventKind.TRADE, "E", 2)):
    _REPLY_TYPE[_k], _REPLY_COUNT[_k] = ord(_t), _n
_BOOK_KINDS = np.zeros(256, bool)
_BOOK_KINDS[[EventKind.BOOK_ADD, EventKind.BOOK_EXEC, EventKind.BOOK_CANCEL, EventKind.BOOK_DELETE,
             EventKind.BOOK_REPLACE, EventKind.BOOK_TRADE]] = True


# enum members as plain ints: the hot path compares arrays with them
_ACCEPTED = int(EventKind.ACCEPTED)
_BUY = int(Side.BUY)
_CANCEL = int(Kind.CANCEL)
_DAY = int(Tif.DAY)
_ENTER = int(Kind.ENTER)
_HIDDEN = int(Flag.HIDDEN)
_INVALID_PRICE = int(RejectReason.INVALID_PRICE)
_IOC = int(Tif.IOC)
_POST_ONLY = int(Flag.POST_ONLY)
_REJECTED = int(EventKind.REJECTED)
_REPLACE = int(Kind.REPLACE)
_RISK_OTHER = int(RejectReason.RISK_OTHER)
_SELL = int(Side.SELL)
_TRADE = int(EventKind.TRADE)
_UNKNOWN_SYMBOL = int(RejectReason.UNKNOWN_SYMBOL)
_UNKNOWN_TOKEN = int(RejectReason.UNKNOWN_TOKEN)


#: A client or a token the venue learned, journaled (``JOURNAL.sessions``) before the
#: commands that use it, so a restart knows its clients' addresses and OUCH tokens.
SESSION_DTYPE = np.dtype([("kind", "u1"), ("client", "<u4"), ("token", "<u8"), ("ip", "<u4"),
                          ("port", "<u2"), ("mac", "<u8"), ("order_token", "S14")])
_LEARNED_CLIENT, _LEARNED_TOKEN = ord("C"), ord("T")


class Datagrams(NamedTuple):
    """UDP payloads back to back in ``payload`` and where each goes, before framing."""

    payload: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    dst_ip: np.ndarray
    dst_port: np.ndarray
    src_port: np.ndarray
    dst_mac: np.ndarray


def _where(mask: np.ndarray) -> np.ndarray:
    return mask.nonzero()[0]


def ns_since_midnight(ns: int) -> int:
    return ns % NS_PER_DAY


class Venue:
    """A matching venue on one port at ``ip``/``mac`` (see the module docstring).

    ``journal``: path of the command journal (appended; an existing one is replayed into
    the books first). ``hlog``: where telemetry writes its interval log. ``clock``: the
    TSC model that puts RX stamps and hop stamps on one timeline (without it, RX waits
    are not recorded). ``impl``: venue.c's steps in C, or their numpy reference.
    ``now_ns``: the clock of the command timestamps (tests pin it). ``fused``: the whole
    walk in one C call (engine/fastpath.py; same frames and journal); None (default): on
    a port with a C table (AF_XDP), True; False: this Python-driven pipeline.
    """

    def __init__(self, port: Port, ip: str, mac: str | bytes, config: VenueConfig | None = None, *,
                 journal: str | None = None, hlog: str | None = None, clock: ClockModel | None = None,
                 telemetry=None, burst_size: int = 64, impl: str = "c", now_ns=time.time_ns,
                 fused: bool | None = None):
        if impl not in ("c", "numpy"):
            raise ValueError(f"impl is 'c' or 'numpy', not {impl!r}")
        if fused is None:
            fused = has_c_table(port) and impl == "c"
        self.port, self.config = port, config or VenueConfig()
        self.closed = False
        self.impl = impl if _venue_c is not None else "numpy"
        self.now_ns = now_ns
        cfg = self.config
        self.burst_size = burst_size
        self.stack = Stack(mac, ip)
        self.stack.bind(cfg.order_port)
        self.recovery = None
        if cfg.recovery_port:
            self.stack.bind(cfg.recovery_port)
            self.recovery = Retransmissions(cfg.feed_session, cfg.recovery_messages, cfg.feed_max_payload,
                                            cfg.recovery_answers_per_s, cfg.recovery_total_answers_per_s)
        n_sym = len(cfg.symbols)
        self.tick = np.array([s.tick for s in cfg.symbols], np.int64)
        self.names = np.array([s.name.ljust(8).encode() for s in cfg.symbols], "S8")
        self.firms = np.array([f.ljust(4).encode() for f in cfg.firms], "S4")
        self.book = Book(n_sym, cfg.pool_size, cfg.band_ticks,
                         ref_price=[s.reference // s.tick for s in cfg.symbols])
        self.matcher = Matcher(self.book)
        limits = Limits.load(cfg.limits, MAX_CLIENTS, n_sym) if cfg.limits else None
        self.risk = RiskEngine(MAX_CLIENTS, n_sym, limits, max_orders=cfg.pool_size)
        self._mid_reference = limits is not None and bool((limits.ref_mode == RefMode.MID).any())
        self.clock = clock
        self.timeline = Timeline(clock) if clock else None
        if telemetry is None and (hlog or clock):
            from engine.telemetry import Telemetry
            ns_per_cycle = clock.ns_per_cycle if clock else 1e9 / _tsc_hz()
            telemetry = Telemetry(ns_per_cycle, hlog)
        self.telemetry = telemetry
        self._stamps = np.zeros(TX_SUBMITTED + 1, np.uint64)   # the Python pipeline's hops

        # clients: id -> address; (ip << 16 | port) -> id
        self._client_of: dict[int, int] = {}
        self._next_client = 1
        self.client_ip = np.zeros(MAX_CLIENTS, np.uint32)
        self.client_port = np.zeros(MAX_CLIENTS, np.uint16)
        self.client_mac = np.zeros((MAX_CLIENTS, 6), np.uint8)
        self.client_firm = np.zeros(MAX_CLIENTS, "S4")
        # tokens: (client, 14-byte token) -> core token; core token -> bytes, symbol
        self._token_of: dict[bytes, int] = {}
        self._next_token = 1
        self.token_bytes = np.zeros(1 << 16, "S14")
        self.token_symbol = np.zeros(len(self.token_bytes), np.uint16)
        self._learned: list[np.ndarray] = []     # clients and tokens new in this batch, to journal

        self.journal = self.sessions = None
        published = None           # the book events whose ITCH the journal's commands already sent
        if journal:
            self.sessions = Journal.open(f"{journal}.sessions", SESSION_DTYPE, flush=FlushPolicy.BATCH)
            self.journal = Journal.open(journal, COMMAND_DTYPE, flush=FlushPolicy.BATCH)
            if self.journal.recovered is not None and len(self.journal.recovered.records):
                published = self._recover(self.journal.recovered.records["payload"].copy(),
                                          self.sessions.recovered)

        self._init_c()
        self.feed_seq = 1
        if published is not None:
            self._carry_on_feed(published)
        # destination columns of feed and reply datagrams, sliced rather than made per burst
        self._feed_ip = np.zeros(0, np.uint32)
        self._zero_offset = np.zeros(1, np.int64)
        self._order_port = np.full(1, cfg.order_port, np.uint16)
        self._feed_last = time.monotonic()
        self.counts: Counter = Counter()
        self.drops: Counter = Counter()        # OUCH messages and datagrams dropped, by reason
        self.rejects: Counter = Counter()      # commands rejected, by RejectReason name
        if published is None:
            self._send_feed_start()
        self._fused = None
        if fused:     # the whole walk in one C call (engine/fastpath.py)
            from engine.fastpath import FusedPath
            self._fused = FusedPath(self, _REJECT_CODE, _CANCEL_CODE, MAX_CLIENTS, REPLY_PAYLOAD)
            self._cycles_per_s = 1e9 / clock.ns_per_cycle if clock else _tsc_hz()

    @property
    def fused(self) -> bool:
        """The whole walk runs in C (engine/fastpath.py)."""
        return self._fused is not None

    # -- the loop -----------------------------------------------------------------------
    def start(self, cpu: int | None = None) -> bool:
        """Start the fused walk's thread on an AF_XDP port (the first ``poll`` does it
        otherwise), on ``cpu`` or else wherever the calling thread may run. Keep the
        calling thread off that CPU: its turns would take the CPU from the loop. Returns
        whether the walk runs on a thread of its own (False: ``poll`` runs it, on the
        Python-driven pipeline or a port without a C table)."""
        f = self._fused
        if f is None or not f.polls_port:
            return False
        if f.running:
            return True
        mine = os.sched_getaffinity(0)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})     # the thread takes the affinity of its maker
        try:
            f.start(self.burst_size, self._cycles_per_s, FEED_HEARTBEAT_S)
        finally:
            os.sched_setaffinity(0, mine)
        return True

    def poll(self) -> int:
        """Take one burst through the pipeline; returns the frames received (0: idle).
        With the fused walk on its own thread: what it received since the last call,
        after waiting COLLECT_S."""
        if self._fused is not None:
            return self._poll_fused()
        burst = self.port.rx_burst(self.burst_size)
        n = len(burst)
        if not n:
            self.port.release(burst)
            if time.monotonic() - self._feed_last > FEED_HEARTBEAT_S:
                self._heartbeat()
            if self.telemetry:
                self.telemetry.tick()
            return 0
        st = self._stamps
        st[0] = rdtsc()
        self.counts["rx_frames"] += n
        result = self.stack.process(burst)
        if len(result.replies):
            self._tx(result.replies)
        asks = None
        if self.recovery is not None:
            result, asks = self._take_requests(result)
        cmds, msg_type, msg_index, decoded = self._commands(result)
        stamps, source = burst.timestamps.copy(), burst.ts_source
        self.port.release(burst)
        st[1] = rdtsc()
        if len(cmds):
            self._validate(cmds, msg_type, msg_index, decoded)
            st[2] = rdtsc()
            events = self.matcher.run(cmds)
            self.risk.on_events(cmds, events)
            st[3] = rdtsc()
            self._count(cmds, events)
            replies = self._replies_c if self.impl == "c" else self._replies
            parts = [replies(cmds, events, decoded, msg_index), self._feed(events)]
            frames = self._frames(parts)
            st[4] = rdtsc()
            if self.journal:
                if self._learned:
                    self.sessions.append(np.concatenate(self._learned))
                    self._learned.clear()
                self.journal.append(cmds)
            st[5] = rdtsc()
            if frames is not None:
                self._tx(frames)
            st[6] = rdtsc()
            if self.telemetry:   # the stages of bursts that carried orders, after the replies left
                rx_wait = self._rx_wait(stamps, source, int(st[0])) if self.timeline else None
                self.telemetry.record_burst(st, n, rx_wait)
        if asks is not None:
            self._answer(*asks)
        if self.telemetry:
            self.telemetry.tick()
        return n

    # -- the fused path (engine/fastpath.py) ----------------------------------------------
    def _poll_fused(self) -> int:
        """poll() in C: one burst, or on AF_XDP what the walk's thread did since the last call."""
        f, n = self._fused, 0
        if f.polls_port:
            self.start()
            time.sleep(COLLECT_S)
            n, bursts = f.drain()
            if self.telemetry and len(bursts):
                rx = len(HOPS) + 2
                if bursts[:, rx + 1].any():          # stamped by the XDP program or the NIC
                    bursts[:, rx] = self._rx_as_tsc(bursts[:, rx], bursts[:, rx + 1], bursts[:, 0])
                self.telemetry.record_bursts(bursts, bursts[:, len(HOPS)], rx)
        else:
            burst = self.port.rx_burst(self.burst_size)
            n = len(burst)
            if n:
                st = self._stamps
                commands, out, answers = f.burst(burst, self.now_ns(), st)
                stamps, source = burst.timestamps.copy(), burst.ts_source
                self.port.release(burst)
                for frames in out:
                    self._tx(frames)
                st[TX_SUBMITTED] = rdtsc()
                for frames in answers:      # re-requests, after the burst's own frames
                    self._tx(frames)
                if commands and self.telemetry:
                    rx_wait = self._rx_wait(stamps, source, int(st[0])) if self.timeline else None
                    self.telemetry.record_burst(st, n, rx_wait)
            else:
                self.port.release(burst)
        if f.feed_seq != self.feed_seq:
            self.feed_seq, self._feed_last = f.feed_seq, time.monotonic()
        elif not f.running and time.monotonic() - self._feed_last > FEED_HEARTBEAT_S:
            self._heartbeat()
        if self.telemetry:
            self.telemetry.tick()
        return n

    def close(self) -> None:
        """Flush the journal and the telemetry log. The feed session stays open: a venue
        restarted on the same journal carries on with the next sequence number."""
        if self.closed:
            return
        if self._fused is not None and self._fused.running:
            try:
                self._poll_fused()      # the telemetry of what it did so far
            finally:
                self._fused.stop()
                self.feed_seq = self._fused.feed_seq
        if self.journal:
            self.journal.close()
            self.sessions.close()
        if self.telemetry:
            self.telemetry.close()
        self._port_drops = dict(self.port.stats().drops)
        self.closed = True

    def _recover(self, replayed: np.ndarray, sessions) -> np.ndarray:
        """Books, risk, clients and tokens as the journals left them; returns the book events
        of the replayed commands (what they published on the feed)."""
        events = self.matcher.run(replayed)
        self.risk.follow(replayed, events)
        learned = sessions.records["payload"] if sessions is not None else np.zeros(0, SESSION_DTYPE)
        for c in learned[learned["kind"] == _LEARNED_CLIENT]:     # once per client
            cid = int(c["client"])
            self._client_of[int(c["ip"]) << 16 | int(c["port"])] = cid
            self.client_ip[cid], self.client_port[cid] = c["ip"], c["port"]
            self.client_mac[cid] = np.frombuffer(int(c["mac"]).to_bytes(6, "big"), np.uint8)
        tokens = learned[learned["kind"] == _LEARNED_TOKEN]
        keys = np.empty(len(tokens), [("c", "<u4"), ("t", "S14")])
        keys["c"], keys["t"] = tokens["client"], tokens["order_token"]
        self._token_of.update(zip(keys.view("V18").tolist(), tokens["token"].tolist()))
        self._next_client = int(max(replayed["client"].max(), learned["client"].max(initial=0))) + 1
        self._next_token = int(max(replayed["token"].max(), replayed["new_token"].max(),
                                   learned["token"].max(initial=0))) + 1
        self._grow_tokens(self._next_token)
        self.token_bytes[tokens["token"]] = tokens["order_token"]
        for kind, token in ((_ENTER, "token"), (_REPLACE, "new_token")):
            rows = replayed["kind"] == kind
            self.token_symbol[replayed[token][rows]] = replayed["symbol"][rows]
        return events[_BOOK_KINDS[events["kind"]]]

    def _carry_on_feed(self, published: np.ndarray) -> None:
        """The feed's session goes on after the start of day and the journal's book events;
        the re-request server holds the latest of those again, byte for byte as sent (their
        timestamps are the journaled commands'; the start of day's are not journaled, so its
        messages are not held)."""
        self.feed_seq = 2 + len(self.names) + len(published)
        if self.recovery is not None:
            tail = published[-self.config.recovery_messages:]
            self.recovery.add(self.feed_seq - len(tail), self._itch(tail))

    def _grow_tokens(self, n: int) -> None:
        if n > len(self.token_bytes):
            grow = max(n, 2 * len(self.token_bytes))
            self.token_bytes = np.resize(self.token_bytes, grow)
            self.token_symbol = np.resize(self.token_symbol, grow)

    def _init_c(self) -> None:
        """The tables the C serialize stage reads (token_bytes, enters, replaces per call)."""
        self._pkt_len = self._pkt_client = np.empty(0, np.uint32)
        self._reply_out = self._itch_out = np.empty(0, np.uint8)
        if _venue_c is None:
            return
        ffi = _venue_c.ffi
        self._tables = t = ffi.new("struct venue_tables *")
        self._n_msgs = ffi.new("uint32_t *")
        self._tables_keep = [ffi.from_buffer("int64_t[]", self.tick), self._c(t, "names", self.names),
                             self._c(t, "firms", self.client_firm),
                             self._c(t, "reject_code", _REJECT_CODE), self._c(t, "cancel_code", _CANCEL_CODE)]
        t.tick = self._tables_keep[0]
        # stock name -> symbol in one probe, not a pass over every name for each Enter
        size = 1 << max(1, (2 * len(self.names) - 1).bit_length())
        self.symbol_keys, self.symbol_ids = np.zeros(size, np.uint64), np.zeros(size, np.uint16)
        _venue_c.lib.venue_symbol_table(ffi.from_buffer("uint8_t[]", self.names), len(self.names),
                                        ffi.from_buffer("uint64_t[]", self.symbol_keys),
                                        ffi.from_buffer("uint16_t[]", self.symbol_ids), size - 1)
        t.symbol_mask = size - 1
        self._tables_keep += [ffi.from_buffer("uint64_t[]", self.symbol_keys),
                              ffi.from_buffer("uint16_t[]", self.symbol_ids)]
        t.symbol_keys, t.symbol_ids = self._tables_keep[-2:]

    def set_clock(self, clock: ClockModel) -> None:
        """Take a fresh TSC model (call about once a second: the TSC drifts against the reference)."""
        self.clock, self.timeline = clock, Timeline(clock)
        if self._fused is not None:
            self._fused.set_clock(clock)

    # -- stage 1-3: frames -> commands --------------------------------------------------
    def _rx_wait(self, stamps: np.ndarray, source: TimestampSource, poll_tsc: int) -> np.ndarray | None:
        """Per frame, ns from its RX stamp to our poll, on the clock model's timeline."""
        if source in (TimestampSource.NONE, TimestampSource.SIMULATION, TimestampSource.CAPTURE):
            return None
        try:
            rx = self.timeline.to_reference(stamps, source)
        except ValueError:
            return None
        return np.maximum(self.clock.to_ns(poll_tsc) - rx, 0)

    def _rx_as_tsc(self, stamps: np.ndarray, clocks: np.ndarray, poll_tsc: np.ndarray) -> np.ndarray:
        """The fused path's RX stamps (xdp_api.h NX_TS_* ``clocks``) as the TSC reading of the
        same moment, so one C call records every burst; the poll TSC where there is no
        timeline to convert on."""
        out = poll_tsc.copy()
        if self.timeline is None:
            return out
        poll_ns = self.clock.to_ns(poll_tsc)
        for clock, source in ((1, TimestampSource.KERNEL_TAI), (2, TimestampSource.NIC)):
            rows = clocks == clock
            if rows.any():
                try:
                    wait = poll_ns[rows] - self.timeline.to_reference(stamps[rows], source)
                except ValueError:
                    continue
                cycles = np.maximum(wait, 0) / self.clock.ns_per_cycle
                out[rows] = poll_tsc[rows] - np.minimum(cycles, poll_tsc[rows]).astype(np.uint64)
        return out

    def _client_ids(self, dgs: np.ndarray) -> np.ndarray:
        """Client id of each datagram (by source IP:port); new sources get the next ids."""
        keys = (dgs["src_ip"].astype(np.uint64) << np.uint64(16) | dgs["src_port"]).tolist()
        ids = np.fromiter(map(self._client_of.get, keys, [0] * len(keys)), np.uint32, len(keys))
        if ids.all():
            return ids
        for j in np.nonzero(ids == 0)[0].tolist():     # once per new client, not per packet
            if keys[j] in self._client_of:            # new twice in this burst
                ids[j] = self._client_of[keys[j]]
                continue
            cid = self._next_client
            if cid >= MAX_CLIENTS:
                continue                               # id 0: its messages are dropped
            self._next_client += 1
            self._client_of[keys[j]] = ids[j] = cid
            self.client_ip[cid], self.client_port[cid] = dgs["src_ip"][j], dgs["src_port"][j]
            self.client_mac[cid] = dgs["src_mac"][j]
            if self.sessions:
                learned = np.zeros(1, SESSION_DTYPE)
                learned["kind"], learned["client"] = _LEARNED_CLIENT, cid
                learned["ip"], learned["port"] = dgs["src_ip"][j], dgs["src_port"][j]
                learned["mac"] = int.from_bytes(dgs["src_mac"][j].tobytes(), "big")
                self._learned.append(learned)
        return ids

    def _split(self, buf: np.ndarray, starts: np.ndarray) -> tuple[ouch.Decoded, np.ndarray]:
        """OUCH messages of back-to-back datagram payloads, and the datagram of each."""
        decoded = ouch.decode_inbound(buf, final=True)
        sizes = _IN_LEN[decoded.order_type] + 3
        msg_start = np.zeros(len(sizes), np.int64)
        np.cumsum(sizes[:-1], out=msg_start[1:])
        clean = not decoded.rejects and not len(decoded.control) and decoded.consumed == len(buf)
        if clean and len(starts) == 1:
            return decoded, np.zeros(len(msg_start), np.int64)
        at = np.searchsorted(msg_start, starts)
        if clean and (at < len(msg_start)).all() and (msg_start[np.minimum(at, len(msg_start) - 1)] == starts).all():
            return decoded, np.searchsorted(starts, msg_start, "right") - 1
        # Malformed input somewhere: decode datagram by datagram, keep the valid messages
        # and decode those again (only bad bursts take this path).
        ends = np.append(starts[1:], len(buf))
        clean, src = [], []
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            d = ouch.decode_inbound(buf[a:b], final=True)
            self.drops.update(d.rejects)
            if len(d.control):
                self.drops["soup_control_packet"] += len(d.control)
            if len(d):
                clean.append(ouch.encode_inbound(d.messages, (d.order_type, d.order_index)))
                src.append(np.full(len(d), i))
        decoded = ouch.decode_inbound(b"".join(clean), final=True)
        return decoded, np.concatenate(src) if src else np.zeros(0, np.int64)

    def _commands(self, result):
        dgs = result.datagrams
        self.counts["datagrams"] += len(dgs)
        if not len(dgs):
            return np.zeros(0, COMMAND_DTYPE), None, None, None
        payloads = Burst.gather(result.buffer, dgs["offset"], dgs["length"])
        decoded, src = self._split(payloads.buffer, payloads.offsets)
        client = self._client_ids(dgs)[src]
        t, idx = decoded.order_type, decoded.order_index
        # Only enter, replace and cancel are traded here; modify and trade-now are dropped,
        # and so is everything from sources beyond MAX_CLIENTS (client id 0).
        unsupported = (t != _O) & (t != _U) & (t != _X)
        orphan = client == 0
        if unsupported.any() or orphan.any():
            self.drops["unsupported_message"] += int(unsupported.sum())
            self.drops["too_many_clients"] += int((orphan & ~unsupported).sum())
            self.drops = +self.drops        # keep only reasons that happened
            keep = ~unsupported & ~orphan
            t, idx, client = t[keep], idx[keep].copy(), client[keep]
            for code in (_O, _U, _X):     # each type's records: exactly its kept messages, in order
                sel = t == code
                decoded.messages[chr(code)] = decoded.messages[chr(code)][idx[sel]]
                idx[sel] = np.arange(np.count_nonzero(sel))
        self.counts["messages"] += len(t)
        cmds = np.zeros(len(t), COMMAND_DTYPE)
        cmds["client"] = client
        cmds["ts"] = self.now_ns()
        msgs = decoded.messages
        for code in (_O, _U, _X):
            m = msgs[chr(code)]
            if not len(m):
                continue
            sel = _where(t == code) if len(m) < len(t) else slice(None)
            if code == _O:
                cmds["token"][sel] = self._tokens(client[sel], m["order_token"], new=True)
            elif code == _U:
                cmds["token"][sel] = self._tokens(client[sel], m["existing_order_token"], new=False)
                cmds["new_token"][sel] = self._tokens(client[sel], m["replacement_order_token"], new=True)
            else:
                cmds["token"][sel] = self._tokens(client[sel], m["order_token"], new=False)
        return cmds, t, idx, decoded

    def _tokens(self, client: np.ndarray, token: np.ndarray, new: bool) -> np.ndarray:
        """Core tokens for (client, OUCH token) pairs; ``new`` gives unknown ones fresh numbers."""
        keys = np.empty(len(client), [("c", "<u4"), ("t", "S14")])
        keys["c"], keys["t"] = client, token
        keys = keys.view("V18").tolist()
        if not new:
            return np.fromiter(map(self._token_of.get, keys, [0] * len(keys)), np.uint64, len(keys))
        fresh = np.arange(self._next_token, self._next_token + len(keys), dtype=np.uint64)
        self._next_token += len(keys)
        self._grow_tokens(self._next_token)
        self.token_bytes[fresh] = token
        ids = np.fromiter(map(self._token_of.setdefault, keys, fresh.tolist()), np.uint64, len(keys))
        if self.sessions:
            made = ids == fresh
            learned = np.zeros(int(made.sum()), SESSION_DTYPE)
            learned["kind"], learned["client"], learned["token"] = _LEARNED_TOKEN, client[made], ids[made]
            learned["order_token"] = token[made]
            self._learned.append(learned)
        return ids

    # -- stage 4: validation -------------------------------------------------------------
    def _validate(self, cmds, msg_type, msg_index, decoded) -> None:
        """The commands' fields from their messages, symbols and prices to the core's terms,
        then pre-trade risk; the venue's own verdicts win."""
        if self.impl == "c":
            verdict = self._fields_c(cmds, msg_type, msg_index, decoded)
        else:
            verdict = self._fields(cmds, msg_type, decoded)
        if self._mid_reference:     # some symbol's price band centres on the mid
            best = self.book.best
            levels = self.book.levels["price"]
            bid = np.where(best[0::2] >= 0, levels[best[0::2]], 0)
            ask = np.where(best[1::2] >= 0, levels[best[1::2]], 0)
            self.risk.check(cmds, bid, ask)
        else:
            self.risk.check(cmds)
        mine = verdict != 0
        cmds["risk"][mine] = verdict[mine]

    def _fields_c(self, cmds, msg_type, msg_index, decoded) -> np.ndarray:
        """``_fields`` in one C call (cffi_build/venue.c)."""
        ffi, msgs = _venue_c.ffi, decoded.messages
        verdict = np.empty(len(cmds), np.uint8)
        keep = [self._c(self._tables, "enters", msgs["O"]), self._c(self._tables, "replaces", msgs["U"]),
                ffi.from_buffer("uint8_t[]", msgs["X"]) if len(msgs["X"]) else ffi.NULL]
        _venue_c.lib.venue_commands(
            ffi.from_buffer(cmds, require_writable=True), len(cmds), ffi.from_buffer("uint8_t[]", msg_type),
            ffi.from_buffer("uint32_t[]", msg_index), self._tables, keep[2], len(self.names),
            ffi.from_buffer("uint8_t[]", self.firms), len(self.firms),
            ffi.from_buffer("uint16_t[]", self.token_symbol, require_writable=True),
            ffi.from_buffer("uint8_t[]", self.client_firm, require_writable=True),
            ffi.from_buffer("uint8_t[]", verdict, require_writable=True))
        return verdict

    def _fields(self, cmds, msg_type, decoded) -> np.ndarray:
        """Fill the commands from their messages; return the venue's verdicts (numpy
        reference of ``_fields_c``)."""
        msgs, verdict = decoded.messages, np.zeros(len(cmds), np.uint8)
        for code, kind in ((_O, _ENTER), (_U, _REPLACE), (_X, _CANCEL)):
            sel = _where(msg_type == code)
            if not len(sel):
                continue
            m = msgs[chr(code)]
            cmds["kind"][sel] = kind
            cmds["qty"][sel] = m["shares"]
            if code == _O:
                cmds["side"][sel] = np.where(m["buy_sell_indicator"] == b"B", _BUY, _SELL)
                cmds["min_qty"][sel] = m["minimum_quantity"]
                self.client_firm[cmds["client"][sel]] = m["firm"]
            if code != _X:
                cmds["tif"][sel] = np.where(m["time_in_force"] == 0, _IOC, _DAY)
                display = m["display"]
                cmds["flags"][sel] = np.where(display == b"N", _HIDDEN,
                                              np.where(display == b"P", _POST_ONLY, 0))
        enter = _where(msg_type == _O)
        if len(enter):
            stock = msgs["O"]["stock"]
            hit = stock[:, None] == self.names[None, :]
            known = hit.any(axis=1)
            symbol = hit.argmax(axis=1).astype(np.uint16)
            cmds["symbol"][enter] = symbol
            verdict[enter[~known]] = _UNKNOWN_SYMBOL
            firm_ok = (msgs["O"]["firm"][:, None] == self.firms[None, :]).any(axis=1)
            verdict[enter[~firm_ok]] = _RISK_OTHER       # a firm the venue does not know
            self.token_symbol[cmds["token"][enter]] = np.where(known, symbol, 0)
            self._price(cmds, enter, msgs["O"]["price"], verdict)
        repl = _where(msg_type == _U)
        if len(repl):
            symbol = self.token_symbol[cmds["token"][repl]]
            cmds["symbol"][repl] = symbol
            self.token_symbol[cmds["new_token"][repl]] = symbol
            self._price(cmds, repl, msgs["U"]["price"], verdict)
        cancel = _where(msg_type == _X)
        cmds["symbol"][cancel] = self.token_symbol[cmds["token"][cancel]]
        return verdict

    def _price(self, cmds, rows, price, verdict) -> None:
        tick = self.tick[cmds["symbol"][rows]]
        price = price.astype(np.int64)
        cmds["price"][rows] = np.minimum(price // tick, np.iinfo(np.int32).max)
        off_tick = (price % tick != 0) | (price <= 0)
        verdict[rows[off_tick & (verdict[rows] == 0)]] = _INVALID_PRICE

    # -- stage 5: events -> OUCH replies and ITCH -----------------------------------------
    def _count(self, cmds, events) -> None:
        kinds = events["kind"]
        self.counts["commands"] += len(cmds)
        self.counts["fills"] += int(np.count_nonzero(kinds == _TRADE))
        self.counts["accepted"] += int(np.count_nonzero(kinds == _ACCEPTED))
        rejected = kinds == _REJECTED
        if rejected.any():
            for r, c in Counter(events["reason"][rejected].tolist()).items():
                self.rejects[_reason_name(r)] += c

    def _replies(self, cmds, events, decoded, msg_index) -> Datagrams | None:
        """OUCH replies of the batch's order events, in event order, grouped per client
        (numpy reference of ``_replies_c``)."""
        kinds = events["kind"]
        per = _REPLY_COUNT[kinds]
        # OUCH 4.2 answers nothing to a cancel or replace of an order that is not live
        silent = (kinds == _REJECTED) & (events["reason"] == _UNKNOWN_TOKEN) \
            & (cmds["kind"][events["cmd"]] != _ENTER)
        per = np.where(silent, 0, per)
        ev = np.repeat(np.arange(len(events)), per)
        if not len(ev):
            return None
        maker = np.zeros(len(ev), bool)
        maker[1:] = ev[1:] == ev[:-1]
        e = events[ev]
        rtype = _REPLY_TYPE[e["kind"]]
        client = np.where(maker, e["other_client"], e["client"])
        ts = e["ts"] % np.uint64(NS_PER_DAY)
        tick = self.tick[e["symbol"]]
        index = np.zeros(len(ev), np.uint32)
        out = {}
        for code in sorted(set(rtype.tolist())):
            sel = _where(rtype == code)
            index[sel] = np.arange(len(sel))
            r, t = e[sel], chr(code)
            m = ouch.records(t, len(sel), "out", timestamp=ts[sel])
            if t == "A" or t == "U":
                orig = decoded.messages["O" if t == "A" else "U"][msg_index[r["cmd"]]]
                m["order_token" if t == "A" else "replacement_order_token"] = self.token_bytes[r["token"]]
                m["buy_sell_indicator"] = np.where(r["side"] == _BUY, b"B", b"S")
                m["shares"], m["price"] = r["qty"], r["price"] * tick[sel]
                m["stock"] = self.names[r["symbol"]]
                m["time_in_force"], m["display"] = orig["time_in_force"], orig["display"]
                m["intermarket_sweep_eligibility"] = orig["intermarket_sweep_eligibility"]
                m["minimum_quantity"], m["order_reference_number"] = orig["minimum_quantity"], r["ref"]
                m["order_state"], m["bbo_weight_indicator"] = b"L", b" "
                if t == "A":
                    m["firm"], m["capacity"], m["cross_type"] = orig["firm"], orig["capacity"], orig["cross_type"]
                else:
                    m["firm"], m["capacity"], m["cross_type"] = self.client_firm[r["client"]], b"A", b"N"
                    m["previous_order_token"] = self.token_bytes[r["other_token"]]
            elif t == "J":
                cmd = cmds[r["cmd"]]
                m["order_token"] = self.token_bytes[np.where(cmd["kind"] == _REPLACE, cmd["new_token"],
                                                             cmd["token"])]
                m["reason"] = _REJECT_CODE[r["reason"]].view("S1")
            elif t == "C":
                m["order_token"], m["decrement_shares"] = self.token_bytes[r["token"]], r["qty"]
                m["reason"] = _CANCEL_CODE[r["reason"]].view("S1")
            else:   # "E": the taker's fill, then the maker's
                mk = maker[sel]
                m["order_token"] = self.token_bytes[np.where(mk, r["other_token"], r["token"])]
                m["executed_shares"], m["execution_price"] = r["qty"], r["price"] * tick[sel]
                m["liquidity_flag"], m["match_number"] = np.where(mk, b"A", b"R"), r["match"]
            out[t] = m
        # group per client (stable: each client's replies keep event order), then cut
        perm = np.argsort(client, kind="stable")
        rtype, index, client = rtype[perm], index[perm], client[perm]
        payload = np.frombuffer(ouch.encode_outbound(out, (rtype, index)), np.uint8)
        return self._reply_datagrams(payload, _OUT_LEN[rtype] + 3, client)

    def _replies_c(self, cmds, events, decoded, msg_index) -> Datagrams | None:
        """``_replies`` in one C call (cffi_build/venue.c), then grouped per client."""
        n = len(events)
        if len(self._pkt_len) < 2 * n:
            self._pkt_len, self._pkt_client = np.empty(2 * n, np.uint32), np.empty(2 * n, np.uint32)
            self._reply_out = np.empty(2 * n * 83, np.uint8)
        t = self._tables
        keep = [self._c(t, "token_bytes", self.token_bytes), self._c(t, "enters", decoded.messages["O"]),
                self._c(t, "replaces", decoded.messages["U"])]
        k = _venue_c.lib.venue_replies(_venue_c.ffi.from_buffer(events), n, _venue_c.ffi.from_buffer(cmds),
                                      _venue_c.ffi.from_buffer("uint32_t[]", msg_index), t,
                                      _venue_c.ffi.from_buffer("uint8_t[]", self._reply_out, require_writable=True),
                                      _venue_c.ffi.from_buffer("uint32_t[]", self._pkt_client, require_writable=True),
                                      _venue_c.ffi.from_buffer("uint32_t[]", self._pkt_len, require_writable=True))
        del keep
        if not k:
            return None
        size, client = self._pkt_len[:k].astype(np.int64), self._pkt_client[:k]
        payload = self._reply_out[:int(size.sum())]
        if (client[1:] < client[:-1]).any():      # several clients, interleaved: group them
            perm = np.argsort(client, kind="stable")
            start = np.zeros(k, np.int64)
            np.cumsum(size[:-1], out=start[1:])
            size, client = size[perm], client[perm]
            moved = np.zeros(k, np.int64)
            np.cumsum(size[:-1], out=moved[1:])
            payload = payload[np.repeat(start[perm] - moved, size) + np.arange(len(payload))]
        else:
            payload = payload.copy()
        return self._reply_datagrams(payload, size, client)

    def _c(self, tables, field: str, array: np.ndarray):
        ptr = _venue_c.ffi.from_buffer("uint8_t[]", array) if len(array) else _venue_c.ffi.NULL
        setattr(tables, field, ptr)
        return ptr

    def _reply_datagrams(self, payload: np.ndarray, size: np.ndarray, client: np.ndarray) -> Datagrams:
        """Packets grouped per client (``size`` bytes each) cut into datagrams of about
        REPLY_PAYLOAD bytes, each to its client."""
        self.counts["replies"] += len(size)
        if len(payload) <= REPLY_PAYLOAD and client[0] == client[-1]:   # the common case: one datagram
            dst = client[:1]
            return Datagrams(payload, self._zero_offset, np.array([len(payload)], np.uint32), self.client_ip[dst],
                             self.client_port[dst], self._order_port[:1], self.client_mac[dst])
        start = np.zeros(len(size), np.int64)
        np.cumsum(size[:-1], out=start[1:])
        new_client = np.ones(len(client), bool)
        new_client[1:] = client[1:] != client[:-1]
        run_start = np.maximum.accumulate(np.where(new_client, start, 0))
        piece = (start - run_start) // REPLY_PAYLOAD
        first = new_client.copy()
        first[1:] |= piece[1:] != piece[:-1]
        heads = _where(first)
        offsets = start[heads]
        lengths = np.diff(np.append(offsets, len(payload))).astype(np.uint32)
        dst = client[heads]
        return Datagrams(payload, offsets, lengths, self.client_ip[dst], self.client_port[dst],
                         np.full(len(dst), self.config.order_port, np.uint16), self.client_mac[dst])

    def _feed(self, events) -> Datagrams | None:
        """ITCH 5.0 messages of the batch's book events, in MoldUDP64 datagrams to the group."""
        stream = self._itch(events)
        return self._feed_datagrams(stream) if len(stream) else None

    def _itch(self, events) -> np.ndarray | bytes:
        """The ITCH 5.0 messages of book events, as a MoldUDP64 block stream."""
        return self._itch_c(events) if self.impl == "c" else self._itch_numpy(events)

    def _itch_c(self, events) -> np.ndarray:
        """``_itch`` in one C call (cffi_build/venue.c)."""
        if len(self._itch_out) < 46 * len(events):
            self._itch_out = np.empty(46 * len(events), np.uint8)
        ffi = _venue_c.ffi
        written = _venue_c.lib.venue_itch(ffi.from_buffer(events), len(events), self._tables,
                                          ffi.from_buffer("uint8_t[]", self._itch_out, require_writable=True),
                                          self._n_msgs)
        return self._itch_out[:written]

    def _itch_numpy(self, events) -> bytes:
        """``_itch`` in numpy, the reference of ``_itch_c``."""
        e = events[_BOOK_KINDS[events["kind"]]]
        if not len(e):
            return b""
        kinds = e["kind"]
        order = np.empty(len(e), itch.ORDER_DTYPE)
        order["type"] = kinds
        messages = {}
        ts = e["ts"] % np.uint64(NS_PER_DAY)
        for code in sorted(set(kinds.tolist())):
            sel = _where(kinds == code)
            order["index"][sel] = np.arange(len(sel))
            r, t = e[sel], chr(code)
            m = itch.new_array(t, len(sel))
            m["stock_locate"] = r["symbol"]
            m["timestamp"]["high"], m["timestamp"]["low"] = ts[sel] >> np.uint64(32), ts[sel]   # low: truncated
            price = r["price"].astype(np.int64) * self.tick[r["symbol"]]
            if t in "AP":
                m["order_reference_number"] = r["ref"]
                m["buy_sell_indicator"] = np.where(r["side"] == _BUY, b"B", b"S")
                m["shares"], m["stock"], m["price"] = r["qty"], self.names[r["symbol"]], price
                if t == "P":
                    m["match_number"] = r["match"]
            elif t == "E":
                m["order_reference_number"], m["executed_shares"], m["match_number"] = r["ref"], r["qty"], r["match"]
            elif t == "X":
                m["order_reference_number"], m["canceled_shares"] = r["ref"], r["qty"]
            elif t == "D":
                m["order_reference_number"] = r["ref"]
            else:   # "U"
                m["original_order_reference_number"], m["new_order_reference_number"] = r["other_ref"], r["ref"]
                m["shares"], m["price"] = r["qty"], price
            messages[t] = m
        return itch.encode(itch.ItchBatch(messages=messages, order=order))

    def _take_requests(self, result: StackResult) -> tuple[StackResult, tuple | None]:
        """The burst's requests to the recovery port, copied out (the port gets the burst
        back before they are answered): the result without them, and the requests with
        their senders (None: there were none)."""
        dgs = result.datagrams
        asks = dgs["dst_port"] == self.config.recovery_port
        if not asks.any():
            return result, None
        requests = [result.payload(i).tobytes() for i in np.flatnonzero(asks)]
        return dataclasses.replace(result, datagrams=dgs[~asks]), (requests, dgs[asks])

    def _answer(self, requests: list[bytes], senders: np.ndarray) -> None:
        """Answer requests from the feed's store, unicast to each sender, after the burst's
        own frames: a re-request never holds up an order's replies."""
        packets, answered, now = [], [], self.now_ns()
        for i, (request, asker) in enumerate(zip(requests, senders["src_ip"].tolist())):
            packet, verdict, sent = self.recovery.answer(request, asker, now)
            if packet is None:
                self.drops[verdict.value] += 1
                continue
            self.counts["retransmit_requests"] += 1
            self.counts["retransmitted_messages"] += sent
            packets.append(packet)
            answered.append(i)
        if packets:
            burst, to = Burst.of(packets), senders[answered]
            port = np.full(len(packets), self.config.recovery_port, np.uint16)
            self._tx(self._frames([Datagrams(burst.buffer, burst.offsets, burst.lengths, to["src_ip"],
                                             to["src_port"], port, to["src_mac"])]))

    def _feed_datagrams(self, stream: bytes | np.ndarray) -> Datagrams:
        cfg = self.config
        if self.recovery is not None:
            self.recovery.add(self.feed_seq, stream)
        packed = moldudp64.pack_stream(cfg.feed_session, self.feed_seq, stream, cfg.feed_max_payload)
        self.feed_seq += int(packed.count.sum())
        self.counts["feed_messages"] += int(packed.count.sum())
        self._feed_last = time.monotonic()
        n = len(packed)
        if n > len(self._feed_ip):
            self._feed_ip = np.full(n, ip_int(cfg.feed_group), np.uint32)
            self._feed_port = np.full(n, cfg.feed_port, np.uint16)
            self._feed_mac = np.tile(multicast_mac_array(cfg.feed_group), (n, 1))
        return Datagrams(np.frombuffer(packed.data, np.uint8), packed.offset, packed.length,
                         self._feed_ip[:n], self._feed_port[:n], self._feed_port[:n], self._feed_mac[:n])

    def _frames(self, parts: list[Datagrams | None]) -> Burst | None:
        """Ethernet frames for all ``parts`` in one build call."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        if len(parts) == 1:
            d = parts[0]
        else:
            sizes = [len(p.payload) for p in parts]
            shift = np.repeat(np.cumsum([0] + sizes[:-1]), [len(p.offsets) for p in parts])
            d = Datagrams(*(np.concatenate(cols) for cols in zip(*parts)))
            d = d._replace(offsets=d.offsets + shift)
        return self.stack.build_udp(Burst(d.payload, d.offsets, d.lengths, np.zeros(len(d.offsets), np.int64)),
                                    d.dst_ip, d.dst_port, d.src_port, d.dst_mac)

    def _heartbeat(self) -> None:
        """An empty MoldUDP64 packet with the next sequence number: the feed is alive."""
        self._send_feed(moldudp64.heartbeat(self.config.feed_session, self.feed_seq))
        self.counts["feed_heartbeats"] += 1

    def _send_feed(self, data: bytes, blocks: bool = False) -> None:
        """Send ITCH blocks (``blocks``) or one ready MoldUDP64 datagram to the group."""
        if blocks:
            self._tx(self._frames([self._feed_datagrams(data)]))
            return
        self._feed_last = time.monotonic()
        cfg = self.config
        self._tx(self.stack.build_udp(Burst.of([data]), ip_int(cfg.feed_group), cfg.feed_port, cfg.feed_port))

    def _send_feed_start(self) -> None:
        """Start of messages and one stock directory entry per symbol."""
        now = ns_since_midnight(self.now_ns())
        start = itch.new_array("S", 1)
        start["event_code"] = b"O"
        itch.set_timestamps(start, now)
        directory = itch.new_array("R", len(self.names))
        directory["stock_locate"] = np.arange(len(self.names))
        directory["stock"], directory["round_lot_size"] = self.names, 100
        directory["market_category"], directory["financial_status_indicator"] = b"Q", b"N"
        directory["round_lots_only"], directory["authenticity"] = b"N", b"P"
        itch.set_timestamps(directory, now)
        self._send_feed(itch.encode(itch.ItchBatch.from_messages({"S": start, "R": directory})), blocks=True)

    def _tx(self, burst: Burst) -> None:
        sent = self.port.tx_burst(burst)
        self.counts["tx_frames"] += sent
        if sent < len(burst):
            self.drops["tx_ring_full"] += len(burst) - sent

    # -- inspection ----------------------------------------------------------------------
    def counters(self) -> dict:
        """Everything counted so far (see the module docstring for how they add up)."""
        port_drops = self._port_drops if self.closed else dict(self.port.stats().drops)
        counts, drops, rejects = Counter(self.counts), Counter(self.drops), Counter(self.rejects)
        if self._fused is not None:
            c, d, r = self._fused.counts()
            counts.update(c)
            drops.update(d)
            rejects.update({_reason_name(code): k for code, k in r.items()})
        return {**counts, "port_drops": port_drops, "stack": self.stack.counters(),
                "message_drops": dict(drops),
                "rejects": dict(rejects), "feed_next_seq": self.feed_seq, "live_orders": self.book.live}


def has_c_table(port: Port) -> bool:
    """The port offers its burst functions to C (netio.xdp.XdpPort.c_api): the fused path polls it."""
    return hasattr(port, "c_api") and hasattr(port, "umem")


def multicast_mac_array(group: str) -> np.ndarray:
    return np.frombuffer(multicast_mac(group), np.uint8)


def _load_c():
    try:
        from engine import _venue
    except ImportError:   # not built: the numpy path serves (run `make native`)
        return None
    return _venue


_venue_c = _load_c()


def _reason_name(code: int) -> str:
    try:
        return RejectReason(code).name.lower()
    except ValueError:
        return f"reason_{code}"


def _tsc_hz() -> float:
    from netio.tsc import frequency
    return frequency().hz
