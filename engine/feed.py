"""The market-data leg: MoldUDP64 sequence checking, then books rebuilt from ITCH 5.0.

    handler = FeedHandler(symbols=8)
    handler.process(buffer, offsets, lengths)    # a burst of MoldUDP64 datagrams (UDP payloads)
    handler.top(0)                               # Top(bid, bid_qty, ask, ask_qty) of stock locate 0
    handler.stats()                              # every packet and message accounted for

Per burst, the MoldUDP64 headers and message blocks are split in C (engine.moldudp64),
sequence numbers are checked in numpy, the ITCH messages are decoded in C (engine.itch),
turned into book operations in numpy and applied in one C call (``feed_apply`` in
cffi_build/matching.c) to a ``Book`` of the matching core, keyed by the feed's order
reference numbers: the book the feed handler builds is the venue's own kind of book, so
the two compare order for order.

Sequencing: the handler locks on the first session it sees (or the one it is given) and
applies messages in sequence order from the expected number on: duplicates are dropped,
and packets reordered within a burst are put back in order. A missing number (skipped,
or announced by a heartbeat) opens a gap. Given ``request`` (a function that sends a
MoldUDP64 request datagram to the re-request server), the handler asks for the gap,
holds what follows it, retries every ``retry_s`` and gives the gap up after
``gap_timeout_s``; without it, the gap is given up at once. A gap given up is counted as
lost and recorded in ``gaps``, and the books may be wrong from there on (``stale``).
Call ``poll`` between bursts so that retries and timeouts happen when nothing arrives.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine import itch, moldudp64
from engine.book import Book
from engine.commands import FEED_OP_DTYPE, FEED_STATUS, Side
from engine.matching import Matcher
from netio.port import Burst

BOOK_TYPES = "AFECXDU"
"""The ITCH 5.0 messages that change an order book."""

_SHARES = {"A": "shares", "F": "shares", "E": "executed_shares", "C": "executed_shares",
           "X": "canceled_shares", "U": "shares"}


def book_ops(batch: itch.ItchBatch) -> np.ndarray:
    """The book-changing messages of ``batch`` as FEED_OP_DTYPE rows, in arrival order."""
    types = batch.order["type"]
    ops = np.zeros(len(types), FEED_OP_DTYPE)
    ops["kind"] = types
    for t in BOOK_TYPES:
        at = np.flatnonzero(types == ord(t))
        if not len(at):
            continue
        m = batch.messages[t][batch.order["index"][at]]
        ops["symbol"][at] = m["stock_locate"]
        ops["ts"][at] = itch.timestamps(m)
        if t == "U":
            ops["ref"][at] = m["original_order_reference_number"]
            ops["new_ref"][at] = m["new_order_reference_number"]
        else:
            ops["ref"][at] = m["order_reference_number"]
        if t in _SHARES:
            ops["qty"][at] = m[_SHARES[t]]
        if t in "AFU":     # beyond the book's int32 prices: -1, refused as a bad price
            ops["price"][at] = np.where(m["price"] > np.iinfo(np.int32).max, -1, m["price"])
        if t in "AF":
            ops["side"][at] = m["buy_sell_indicator"].view(np.uint8)
    return ops[np.isin(types, np.frombuffer(BOOK_TYPES.encode(), np.uint8))]


@dataclass(frozen=True)
class Top:
    """Best bid and ask of one symbol (prices in ITCH Price(4) ticks; None: that side is empty)."""

    bid: int | None
    bid_qty: int
    ask: int | None
    ask_qty: int


@dataclass(frozen=True)
class Gap:
    """Messages ``first`` .. ``first + count - 1`` never arrived."""

    first: int
    count: int


class FeedHandler:
    """Books of ``symbols`` stock locates (0 .. symbols - 1) rebuilt from one MoldUDP64 session.

    ``session``: the session to follow (None: the first one seen). ``pool_size``: most
    resting orders; ``band_ticks``/``ref_price``: the directly addressed price band of the
    book (prices outside it still work, more slowly); see engine.book.Book.
    """

    def __init__(self, symbols: int, *, session: str | bytes | None = None, pool_size: int = 1 << 20,
                 band_ticks: int = 4096, ref_price: int | np.ndarray = 10_000, max_gaps: int = 1000,
                 request: Callable[[bytes], object] | None = None, gap_timeout_s: float = 1.0,
                 retry_s: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.book = Book(symbols, pool_size, band_ticks, ref_price=ref_price, overflow_levels=pool_size)
        self._matcher = Matcher(self.book, event_capacity=1)
        self.session: bytes | None = None if session is None else moldudp64._session_bytes(session)
        self.expected: int | None = None
        """The next sequence number the handler waits for (None before the first packet)."""
        self.ended = False
        """An End of Session packet was seen."""
        self.gaps: list[Gap] = []
        """The first ``max_gaps`` gaps, in order."""
        self._max_gaps = max_gaps
        self.names = np.zeros(symbols, "S8")
        """Stock names by locate, from the feed's Stock Directory messages."""
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._status = np.zeros(256, np.uint8)
        self._request, self.gap_timeout_s, self.retry_s, self._clock = request, gap_timeout_s, retry_s, clock
        self._horizon = 0                  # one past the highest sequence number announced so far
        self._gap_since = self._asked = None
        self._held_buf, self._held_off = np.zeros(0, np.uint8), np.zeros(0, np.int64)
        self._held_len, self._held_seq = np.zeros(0, np.uint32), np.zeros(0, np.int64)

    # ---- input ------------------------------------------------------------------------

    def process(self, buffer: np.ndarray | bytes, offsets: np.ndarray, lengths: np.ndarray) -> int:
        """Take a burst of MoldUDP64 datagrams (``buffer[offsets[i]:offsets[i] + lengths[i]]``,
        in arrival order); returns the ITCH messages applied."""
        mold = moldudp64.decode_views(buffer, offsets, lengths)
        c, drops = self._counts, self._drops
        c["packets"] += len(offsets)
        drops.update({f"moldudp64_{reason}": n for reason, n in mold.rejects.items() if n})
        session = mold.headers["session"]
        good = mold.status == 0
        if self.session is None and good.any():
            self.session = bytes(session[np.argmax(good)])
        ours = good & (session == self.session)
        drops["other_session"] += int(np.count_nonzero(good & ~ours))
        if not ours.any():
            return 0
        if self.expected is None:
            self.expected = self._horizon = int(mold.headers["sequence"][np.argmax(ours)])
        return self._sequence(mold, ours)

    def process_packets(self, packets: list[bytes]) -> int:
        """``process`` for a list of datagrams (tests, files)."""
        lengths = np.array([len(p) for p in packets], np.uint32)
        offsets = np.cumsum(lengths, dtype=np.int64) - lengths
        return self.process(np.frombuffer(b"".join(packets), np.uint8), offsets, lengths)

    def _sequence(self, mold: moldudp64.Decoded, ours: np.ndarray) -> int:
        """Drop duplicates, then apply what continues the sequence; hold or give up on the rest."""
        count = mold.headers["count"].astype(np.int64)
        ended = ours & (count == moldudp64.END_OF_SESSION_COUNT)
        beat = ours & ((count == 0) | ended)           # no messages: they announce the next number
        self._counts["heartbeats"] += int(np.count_nonzero(beat & ~ended))
        self.ended |= bool(ended.any())
        keep = np.flatnonzero(ours[mold.packet])
        seq = mold.sequence[keep].astype(np.int64)
        if len(seq):
            self._horizon = max(self._horizon, int(seq.max()) + 1)
        if beat.any():
            self._horizon = max(self._horizon, int(mold.headers["sequence"][beat].max()))
        fresh = seq >= self.expected
        self._drops["duplicate_message"] += int(np.count_nonzero(~fresh))
        keep, seq = keep[fresh], seq[fresh]
        buffer, offsets, lengths = mold.buffer, mold.offset[keep], mold.length[keep]
        if len(self._held_seq):
            buffer, offsets, lengths, seq = self._with_held(buffer, offsets, lengths, seq)
        return self._drain(buffer, offsets, lengths, seq)

    def poll(self) -> int:
        """Between bursts: retry a waiting gap's request, or give the gap up after ``gap_timeout_s``
        and apply what was held behind it. Returns the messages applied."""
        if self.expected is None or self._horizon <= self.expected:
            return 0
        return self._drain(*self._with_held(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.uint32),
                                            np.zeros(0, np.int64)))

    def _with_held(self, buffer, offsets, lengths, seq):
        """The held messages and these, in one compact buffer."""
        new = Burst.gather(buffer, offsets, lengths)
        new_buf, new_off = new.buffer, new.offsets
        return (np.concatenate((self._held_buf, new_buf)),
                np.concatenate((self._held_off, new_off + len(self._held_buf))),
                np.concatenate((self._held_len, lengths)).astype(np.uint32),
                np.concatenate((self._held_seq, seq)))

    def _drain(self, buffer, offsets, lengths, seq) -> int:
        order = np.argsort(seq, kind="stable")
        s = seq[order]
        first = np.ones(len(s), bool)
        first[1:] = s[1:] != s[:-1]
        self._drops["duplicate_message"] += int(np.count_nonzero(~first))
        order, s = order[first], s[first]
        applied = 0
        while True:
            behind = np.flatnonzero(s != self.expected + np.arange(len(s)))
            k = int(behind[0]) if len(behind) else len(s)
            if k:
                applied += self._apply(buffer, offsets[order[:k]], lengths[order[:k]])
                self._counts["messages"] += k
                self.expected += k
                order, s = order[k:], s[k:]
            gap_end = int(s[0]) if len(s) else self._horizon
            if gap_end <= self.expected:
                self._gap_since = None
                break
            now = self._clock()
            if self._gap_since is None:
                self._gap_since, self._asked = now, None
            if self._request is None or now - self._gap_since >= self.gap_timeout_s:
                self._lose(self.expected, gap_end - self.expected)
                self.expected, self._gap_since = gap_end, None
                continue
            if self._asked is None or now - self._asked >= self.retry_s:
                self._request(moldudp64.request(self.session, self.expected, min(gap_end - self.expected, 0xFFFE)))
                self._counts["requests"] += 1
                self._asked = now
            break
        held = Burst.gather(buffer, offsets[order], lengths[order])
        self._held_buf, self._held_off = held.buffer, held.offsets
        self._held_len, self._held_seq = lengths[order].astype(np.uint32), s
        return applied

    def _lose(self, first: int, n: int) -> None:
        self._counts["gaps"] += 1
        self._counts["lost"] += n
        if len(self.gaps) < self._max_gaps:
            self.gaps.append(Gap(first, n))

    def _apply(self, buffer: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> int:
        batch = itch.decode_views(buffer, offsets, lengths)
        self._drops.update({f"itch_{reason}": n for reason, n in batch.rejects.items() if n})
        directory = batch.messages["R"]
        if len(directory):
            known = directory["stock_locate"] < len(self.names)
            self.names[directory["stock_locate"][known]] = directory["stock"][known]
        ops = book_ops(batch)
        if len(ops) > len(self._status):
            self._status = np.zeros(len(ops), np.uint8)
        status = self._status[:len(ops)]
        bad = self._matcher.apply_feed(ops, status)
        if bad:
            for code, n in enumerate(np.bincount(status, minlength=len(FEED_STATUS))[1:], 1):
                if n:
                    self._drops[FEED_STATUS[code]] += int(n)
        self._counts["book_updates"] += len(ops) - int(bad)
        self._counts["other_messages"] += batch.count - len(ops)
        return batch.count

    # ---- output -----------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """Messages were lost (or an update did not apply): the book may differ from the venue's."""
        return bool(self._counts["lost"] or any(k in FEED_STATUS for k in self._drops))

    def stats(self) -> dict[str, int]:
        """Counts (packets, messages, book_updates, heartbeats, gaps, lost, ...) and drops by
        reason; messages = book_updates + other_messages + messages refused by reason."""
        return {**{k: v for k, v in self._counts.items() if v}, **{k: v for k, v in self._drops.items() if v}}

    def drops(self) -> dict[str, int]:
        """What was dropped, by reason."""
        return {k: v for k, v in self._drops.items() if v}

    def top(self, symbol: int) -> Top:
        """Best bid and ask of stock locate ``symbol``, with the shares at each."""
        b = self.book
        qty = []
        for side in (Side.BUY, Side.SELL):
            level = b.best[symbol * 2 + (side == Side.SELL)]
            qty.append(0 if level < 0 else int(b.levels["qty"][level]))
        return Top(b.best_price(symbol, Side.BUY), qty[0], b.best_price(symbol, Side.SELL), qty[1])

    def depth(self, symbol: int, levels: int = 5) -> dict[str, list[tuple[int, int]]]:
        """Up to ``levels`` (price, shares) per side of ``symbol``, best first."""
        orders = self.book.orders()
        orders = orders[orders["symbol"] == symbol]
        out = {}
        for side, name in ((Side.BUY, "bids"), (Side.SELL, "asks")):
            o = np.sort(orders[orders["side"] == side], order="price")
            prices, first = np.unique(o["price"], return_index=True)
            shares = np.add.reduceat(o["qty"].astype(np.int64), first).tolist() if len(o) else []
            pairs = list(zip(prices.tolist(), shares))
            out[name] = (pairs[::-1] if side == Side.BUY else pairs)[:levels]
        return out

