"""The venue pipeline: port → stack → OUCH decode → risk → matching → OUCH + ITCH → port.

    venue = Venue(port, ip="10.0.0.10", mac=port_mac, config=VenueConfig())
    while running:
        venue.poll()          # one burst through every stage; returns frames received
    venue.close()

Every burst takes the same walk, each stage one or a few C calls over the whole burst
(the stack, the OUCH scanner and encoder, risk, the matching kernel, the ITCH encoder and
MoldUDP64 packer, the frame builder); Python only maps between their arrays with numpy.
What a burst does, in order:

1. ``rx_burst`` → ``Stack.process``: ARP/ICMP answered, datagrams to the order port kept.
2. The datagrams' payloads, back to back, are split into OUCH messages in one call; a
   message belongs to the datagram its bytes lie in, and its client is the datagram's
   source IP:port (``client id`` 1.. in order of first appearance).
3. Messages become matching-core commands. A client's 14-byte order tokens map to the
   core's u64 tokens through one dict per venue keyed by (client, token): new tokens
   (enter, replace) get fresh numbers, known ones their number, in one ``map`` per burst.
4. Pre-trade risk checks the batch, the journal appends it (before anything is
   acknowledged), the matching core runs it, risk settles from the events.
5. Order events become OUCH replies (Accepted, Replaced, Canceled, Executed to taker
   and maker, Rejected), grouped per client into datagrams of at most ``REPLY_PAYLOAD``
   bytes and sent unicast to the client's address; book events become ITCH 5.0 messages
   (A, E, X, D, U, P) packed into MoldUDP64 datagrams for the feed group.
6. Telemetry gets the TSC stamps of the six hops and each frame's RX wait.

Accounting: frames received = the stack's delivered + replied + dropped (by reason);
OUCH messages = commands + dropped messages (by reason); commands = accepted (and their
later fills/cancels) + rejected (by reason). ``counters()`` holds all of it.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from engine import itch, moldudp64, ouch
from engine.book import Book
from engine.commands import (COMMAND_DTYPE, OUCH_CANCEL_CODE, OUCH_REJECT_CODE, EventKind, Flag, Kind,
                             RejectReason, Side, Tif)
from engine.journal import FlushPolicy, Journal
from engine.matching import Matcher
from engine.risk import Limits, RiskEngine
from engine.venue_config import VenueConfig
from netio.clock import ClockModel, Timeline
from netio.port import Burst, Port, TimestampSource
from netio.stack import Stack, ip_int
from netio.tsc import rdtsc

MAX_CLIENTS = 1024          # client ids 1..MAX_CLIENTS-1; id 0 is never a client
REPLY_PAYLOAD = 1300        # OUCH bytes per reply datagram before the next one starts
NS_PER_DAY = 86_400 * 10**9
FEED_HEARTBEAT_S = 1.0

_O, _U, _X = ord("O"), ord("U"), ord("X")
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


def ns_since_midnight(ns: int) -> int:
    return ns % NS_PER_DAY


class Venue:
    """A matching venue on one port at ``ip``/``mac`` (see the module docstring).

    ``journal``: path of the command journal (appended; an existing one is replayed into
    the books first). ``hlog``: where telemetry writes its interval log. ``clock``: the
    TSC model that puts RX stamps and hop stamps on one timeline (without it, RX waits
    are not recorded).
    """

    def __init__(self, port: Port, ip: str, mac: str | bytes, config: VenueConfig | None = None, *,
                 journal: str | None = None, hlog: str | None = None, clock: ClockModel | None = None,
                 telemetry=None, burst_size: int = 64):
        self.port, self.config = port, config or VenueConfig()
        cfg = self.config
        self.burst_size = burst_size
        self.stack = Stack(mac, ip)
        self.stack.bind(cfg.order_port)
        n_sym = len(cfg.symbols)
        self.tick = np.array([s.tick for s in cfg.symbols], np.int64)
        self.names = np.array([s.name.ljust(8).encode() for s in cfg.symbols], "S8")
        self.book = Book(n_sym, cfg.pool_size, cfg.band_ticks,
                         ref_price=[s.reference // s.tick for s in cfg.symbols])
        self.matcher = Matcher(self.book)
        limits = Limits.load(cfg.limits, MAX_CLIENTS, n_sym) if cfg.limits else None
        self.risk = RiskEngine(MAX_CLIENTS, n_sym, limits, max_orders=cfg.pool_size)
        self.journal = None
        self._client_base = 0      # a reopened journal's clients keep their ids; new ones follow
        self._next_token = 1
        if journal:
            self.journal = Journal.open(journal, COMMAND_DTYPE, flush=FlushPolicy.BATCH)
            if self.journal.recovered is not None and len(self.journal.recovered.records):
                replayed = self.journal.recovered.records["payload"].copy()
                self.risk.follow(replayed, self.matcher.run(replayed))
                self._client_base = int(replayed["client"].max())
                self._next_token = int(max(replayed["token"].max(), replayed["new_token"].max())) + 1
        self.clock = clock
        self.timeline = Timeline(clock) if clock else None
        if telemetry is None and (hlog or clock):
            from engine.telemetry import Telemetry
            ns_per_cycle = clock.ns_per_cycle if clock else 1e9 / _tsc_hz()
            telemetry = Telemetry(ns_per_cycle, hlog)
        self.telemetry = telemetry
        self._stamps = np.zeros(6, np.uint64)

        # clients: id -> address; (ip << 16 | port) -> id
        self._client_of: dict[int, int] = {}
        self.client_ip = np.zeros(MAX_CLIENTS, np.uint32)
        self.client_port = np.zeros(MAX_CLIENTS, np.uint16)
        self.client_mac = np.zeros((MAX_CLIENTS, 6), np.uint8)
        self.client_firm = np.zeros(MAX_CLIENTS, "S4")
        # tokens: (client, 14-byte token) -> core token; core token -> bytes, symbol
        self._token_of: dict[bytes, int] = {}
        self.token_bytes = np.zeros(max(1 << 16, 2 * self._next_token), "S14")
        self.token_symbol = np.zeros(len(self.token_bytes), np.uint16)

        self.feed_seq = 1
        self._feed_last = time.monotonic()
        self.counts: Counter = Counter()
        self.drops: Counter = Counter()        # OUCH messages and datagrams dropped, by reason
        self.rejects: Counter = Counter()      # commands rejected, by RejectReason name
        self._send_feed_start()

    # -- the loop -----------------------------------------------------------------------
    def poll(self) -> int:
        """Take one burst through the pipeline; returns the frames received (0: idle)."""
        burst = self.port.rx_burst(self.burst_size)
        n = len(burst)
        if not n:
            self.port.release(burst)
            if time.monotonic() - self._feed_last > FEED_HEARTBEAT_S:
                self._send_feed(moldudp64.heartbeat(self.config.feed_session, self.feed_seq))
            if self.telemetry:
                self.telemetry.tick()
            return 0
        st = self._stamps
        st[0] = rdtsc()
        rx_wait = self._rx_wait(burst, int(st[0])) if self.timeline else None
        self.counts["rx_frames"] += n
        result = self.stack.process(burst)
        if len(result.replies):
            self._tx(result.replies)
        cmds, msg_type, msg_index, decoded = self._commands(result)
        self.port.release(burst)
        st[1] = rdtsc()
        if len(cmds):
            self._validate(cmds, msg_type, msg_index, decoded)
            st[2] = rdtsc()
            if self.journal:
                self.journal.append(cmds)
            events = self.matcher.run(cmds)
            self.risk.on_events(cmds, events)
            st[3] = rdtsc()
            replies, feed = self._replies(cmds, events, decoded, msg_index), self._feed(events)
            st[4] = rdtsc()
            if len(replies):
                self._tx(replies)
            if feed is not None:
                self._tx(feed)
        else:
            st[2] = st[3] = st[4] = st[1]
        st[5] = rdtsc()
        if self.telemetry:
            self.telemetry.record_burst(st, n, rx_wait)
            self.telemetry.tick()
        return n

    def close(self) -> None:
        """Send the feed's end of messages, flush the journal and the telemetry log."""
        if self.port is None:
            return
        sys_event = itch.new_array("S", 1)
        sys_event["event_code"] = b"C"
        itch.set_timestamps(sys_event, ns_since_midnight(time.time_ns()))
        self._send_feed(itch.encode(itch.ItchBatch.from_messages({"S": sys_event})), blocks=True)
        if self.journal:
            self.journal.close()
        if self.telemetry:
            self.telemetry.close()
        self.port = None

    def set_clock(self, clock: ClockModel) -> None:
        """Take a fresh TSC model (call about once a second: the TSC drifts against the reference)."""
        self.clock, self.timeline = clock, Timeline(clock)

    # -- stage 1-3: frames -> commands --------------------------------------------------
    def _rx_wait(self, burst: Burst, poll_tsc: int) -> np.ndarray | None:
        """Per frame, ns from its RX stamp to our poll, on the clock model's timeline."""
        if burst.ts_source in (TimestampSource.NONE, TimestampSource.SIMULATION, TimestampSource.CAPTURE):
            return None
        try:
            rx = self.timeline.to_reference(burst.timestamps, burst.ts_source)
        except ValueError:
            return None
        return np.maximum(self.clock.to_ns(poll_tsc) - rx, 0)

    def _client_ids(self, dgs: np.ndarray) -> np.ndarray:
        """Client id of each datagram (by source IP:port); new sources get the next ids."""
        keys = dgs["src_ip"].astype(np.uint64) << np.uint64(16) | dgs["src_port"]
        uniq, inverse = np.unique(keys, return_inverse=True)
        ids = np.array([self._client_of.get(k, 0) for k in uniq.tolist()], np.uint32)
        for j in np.flatnonzero(ids == 0).tolist():    # once per new client, not per packet
            cid = self._client_base + len(self._client_of) + 1
            if cid >= MAX_CLIENTS:
                continue                               # id 0: risk rejects (RISK_OTHER)
            self._client_of[int(uniq[j])] = ids[j] = cid
            first = int(np.flatnonzero(inverse == j)[0])
            self.client_ip[cid], self.client_port[cid] = dgs["src_ip"][first], dgs["src_port"][first]
            self.client_mac[cid] = dgs["src_mac"][first]
        return ids[inverse]

    def _split(self, buf: np.ndarray, starts: np.ndarray) -> tuple[ouch.Decoded, np.ndarray]:
        """OUCH messages of back-to-back datagram payloads, and the datagram of each."""
        decoded = ouch.decode_inbound(buf, final=True)
        sizes = _in_len(decoded.order_type) + 3
        msg_start = np.zeros(len(sizes), np.int64)
        np.cumsum(sizes[:-1], out=msg_start[1:])
        aligned = (not decoded.rejects and not len(decoded.control) and decoded.consumed == len(buf)
                   and np.isin(starts, msg_start).all())
        if aligned or not len(starts):
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
        lengths = dgs["length"].astype(np.int64)
        starts = np.zeros(len(dgs), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        gather = np.repeat(dgs["offset"] - starts, lengths) + np.arange(int(lengths.sum()))
        buf = result.buffer[gather]
        decoded, src = self._split(buf, starts)
        client = self._client_ids(dgs)[src]
        t, idx = decoded.order_type, decoded.order_index
        # Only enter, replace and cancel are traded here; modify and trade-now are dropped.
        unsupported = (t != _O) & (t != _U) & (t != _X)
        if unsupported.any():
            self.drops["unsupported_message"] += int(unsupported.sum())
            keep = ~unsupported
            t, idx, client = t[keep], idx[keep], client[keep]
        self.counts["messages"] += len(t)
        cmds = np.zeros(len(t), COMMAND_DTYPE)
        cmds["client"] = client
        cmds["ts"] = time.time_ns()
        msgs = decoded.messages
        for code, kind in ((_O, Kind.ENTER), (_U, Kind.REPLACE), (_X, Kind.CANCEL)):
            sel = np.flatnonzero(t == code)
            if not len(sel):
                continue
            m = msgs[chr(code)]
            cmds["kind"][sel] = kind
            cmds["qty"][sel] = m["shares"]
            if code == _O:
                cmds["token"][sel] = self._tokens(client[sel], m["order_token"], new=True)
                cmds["side"][sel] = np.where(m["buy_sell_indicator"] == b"B", Side.BUY, Side.SELL)
                cmds["min_qty"][sel] = m["minimum_quantity"]
                self.client_firm[client[sel]] = m["firm"]
            elif code == _U:
                cmds["token"][sel] = self._tokens(client[sel], m["existing_order_token"], new=False)
                cmds["new_token"][sel] = self._tokens(client[sel], m["replacement_order_token"], new=True)
            else:
                cmds["token"][sel] = self._tokens(client[sel], m["order_token"], new=False)
            if code != _X:
                cmds["tif"][sel] = np.where(m["time_in_force"] == 0, Tif.IOC, Tif.DAY)
                display = m["display"]
                cmds["flags"][sel] = np.where(display == b"N", Flag.HIDDEN,
                                              np.where(display == b"P", Flag.POST_ONLY, 0))
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
        if self._next_token > len(self.token_bytes):
            grow = max(self._next_token, 2 * len(self.token_bytes))
            self.token_bytes = np.resize(self.token_bytes, grow)
            self.token_symbol = np.resize(self.token_symbol, grow)
        self.token_bytes[fresh] = token
        return np.fromiter(map(self._token_of.setdefault, keys, fresh.tolist()), np.uint64, len(keys))

    # -- stage 4: validation -------------------------------------------------------------
    def _validate(self, cmds, msg_type, msg_index, decoded) -> None:
        """Symbols and prices to the core's terms, then pre-trade risk; venue verdicts win."""
        msgs, verdict = decoded.messages, np.zeros(len(cmds), np.uint8)
        enter = np.flatnonzero(msg_type == _O)
        if len(enter):
            stock = msgs["O"]["stock"]
            hit = stock[:, None] == self.names[None, :]
            known = hit.any(axis=1)
            symbol = hit.argmax(axis=1).astype(np.uint16)
            cmds["symbol"][enter] = symbol
            verdict[enter[~known]] = RejectReason.UNKNOWN_SYMBOL
            self.token_symbol[cmds["token"][enter]] = np.where(known, symbol, 0)
            self._price(cmds, enter, msgs["O"]["price"], verdict)
        repl = np.flatnonzero(msg_type == _U)
        if len(repl):
            symbol = self.token_symbol[cmds["token"][repl]]
            cmds["symbol"][repl] = symbol
            self.token_symbol[cmds["new_token"][repl]] = symbol
            self._price(cmds, repl, msgs["U"]["price"], verdict)
        cancel = np.flatnonzero(msg_type == _X)
        cmds["symbol"][cancel] = self.token_symbol[cmds["token"][cancel]]
        best = self.book.best
        levels = self.book.levels["price"]
        bid = np.where(best[0::2] >= 0, levels[best[0::2]], 0)
        ask = np.where(best[1::2] >= 0, levels[best[1::2]], 0)
        self.risk.check(cmds, bid, ask)
        mine = verdict != 0
        cmds["risk"][mine] = verdict[mine]

    def _price(self, cmds, rows, price, verdict) -> None:
        tick = self.tick[cmds["symbol"][rows]]
        price = price.astype(np.int64)
        cmds["price"][rows] = np.minimum(price // tick, np.iinfo(np.int32).max)
        off_tick = (price % tick != 0) | (price <= 0)
        verdict[rows[off_tick & (verdict[rows] == 0)]] = RejectReason.INVALID_PRICE

    # -- stage 5: events -> OUCH replies and ITCH -----------------------------------------
    def _replies(self, cmds, events, decoded, msg_index) -> Burst:
        """OUCH replies of the batch's order events, in event order, as unicast frames."""
        kinds = events["kind"]
        self.counts["commands"] += len(cmds)
        self.counts["fills"] += int(np.count_nonzero(kinds == EventKind.TRADE))
        self.counts["accepted"] += int(np.count_nonzero(kinds == EventKind.ACCEPTED))
        rej = events[kinds == EventKind.REJECTED]
        if len(rej):
            reasons, counts = np.unique(rej["reason"], return_counts=True)
            for r, c in zip(reasons.tolist(), counts.tolist()):
                self.rejects[_reason_name(r)] += c
        per = _REPLY_COUNT[kinds]
        # OUCH 4.2 answers nothing to a cancel or replace of an order that is not live
        silent = (kinds == EventKind.REJECTED) & (events["reason"] == RejectReason.UNKNOWN_TOKEN) \
            & (cmds["kind"][events["cmd"]] != Kind.ENTER)
        per = np.where(silent, 0, per)
        ev = np.repeat(np.arange(len(events)), per)
        if not len(ev):
            return Burst.empty()
        maker = np.zeros(len(ev), bool)
        maker[1:] = ev[1:] == ev[:-1]
        e = events[ev]
        rtype = _REPLY_TYPE[e["kind"]]
        client = np.where(maker, e["other_client"], e["client"])
        ts = e["ts"] % np.uint64(NS_PER_DAY)
        tick = self.tick[e["symbol"]]
        index = np.zeros(len(ev), np.uint32)
        out = {}
        for code in np.unique(rtype).tolist():
            sel = np.flatnonzero(rtype == code)
            index[sel] = np.arange(len(sel))
            r, t = e[sel], chr(code)
            m = ouch.records(t, len(sel), "out", timestamp=ts[sel])
            if t == "A" or t == "U":
                orig = decoded.messages["O" if t == "A" else "U"][msg_index[r["cmd"]]]
                m["order_token" if t == "A" else "replacement_order_token"] = self.token_bytes[r["token"]]
                m["buy_sell_indicator"] = np.where(r["side"] == Side.BUY, b"B", b"S")
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
                m["order_token"] = self.token_bytes[np.where(cmd["kind"] == Kind.REPLACE, cmd["new_token"],
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
        size = _OUT_LEN[rtype] + 3
        start = np.zeros(len(size), np.int64)
        np.cumsum(size[:-1], out=start[1:])
        new_client = np.ones(len(client), bool)
        new_client[1:] = client[1:] != client[:-1]
        run_start = np.maximum.accumulate(np.where(new_client, start, 0))
        piece = (start - run_start) // REPLY_PAYLOAD
        first = new_client.copy()
        first[1:] |= piece[1:] != piece[:-1]
        heads = np.flatnonzero(first)
        offsets = start[heads]
        lengths = np.diff(np.append(offsets, len(payload))).astype(np.uint32)
        dst = client[heads]
        self.counts["replies"] += len(rtype)
        return self.stack.build_udp(Burst(payload, offsets, lengths, np.zeros(len(heads), np.int64)),
                                    self.client_ip[dst], self.client_port[dst], self.config.order_port,
                                    self.client_mac[dst])

    def _feed(self, events) -> Burst | None:
        """ITCH 5.0 messages of the batch's book events, in MoldUDP64 datagrams to the group."""
        e = events[_BOOK_KINDS[events["kind"]]]
        if not len(e):
            return None
        kinds = e["kind"]
        order = np.empty(len(e), itch.ORDER_DTYPE)
        order["type"] = kinds
        messages = {}
        ts = e["ts"] % np.uint64(NS_PER_DAY)
        for code in np.unique(kinds).tolist():
            sel = np.flatnonzero(kinds == code)
            order["index"][sel] = np.arange(len(sel))
            r, t = e[sel], chr(code)
            m = itch.new_array(t, len(sel))
            m["stock_locate"] = r["symbol"]
            itch.set_timestamps(m, ts[sel])
            price = r["price"].astype(np.int64) * self.tick[r["symbol"]]
            if t in "AP":
                m["order_reference_number"] = r["ref"]
                m["buy_sell_indicator"] = np.where(r["side"] == Side.BUY, b"B", b"S")
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
        return self._feed_frames(itch.encode(itch.ItchBatch(messages={**messages}, order=order)))

    def _feed_frames(self, stream: bytes) -> Burst:
        cfg = self.config
        packed = moldudp64.pack_stream(cfg.feed_session, self.feed_seq, stream, cfg.feed_max_payload)
        self.feed_seq += int(packed.count.sum())
        self.counts["feed_messages"] += int(packed.count.sum())
        self._feed_last = time.monotonic()
        payloads = Burst(np.frombuffer(packed.data, np.uint8), packed.offset, packed.length,
                         np.zeros(len(packed), np.int64))
        return self.stack.build_udp(payloads, ip_int(cfg.feed_group), cfg.feed_port, cfg.feed_port)

    def _send_feed(self, data: bytes, blocks: bool = False) -> None:
        """Send ITCH blocks (``blocks``) or one ready MoldUDP64 datagram to the group."""
        if blocks:
            self._tx(self._feed_frames(data))
            return
        self._feed_last = time.monotonic()
        cfg = self.config
        self._tx(self.stack.build_udp(Burst.of([data]), ip_int(cfg.feed_group), cfg.feed_port, cfg.feed_port))

    def _send_feed_start(self) -> None:
        """Start of messages and one stock directory entry per symbol."""
        now = ns_since_midnight(time.time_ns())
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
        return {**self.counts, "stack": self.stack.counters(), "message_drops": dict(self.drops),
                "rejects": dict(self.rejects), "feed_next_seq": self.feed_seq, "live_orders": self.book.live}


def _in_len(types: np.ndarray) -> np.ndarray:
    table = np.zeros(256, np.int64)
    for t, s in ouch.INBOUND.items():
        table[ord(t)] = s.length
    return table[types]


def _reason_name(code: int) -> str:
    try:
        return RejectReason(code).name.lower()
    except ValueError:
        return f"reason_{code}"


def _tsc_hz() -> float:
    from netio.tsc import frequency
    return frequency().hz
