"""The matching rules in plain Python: the specification and the oracle of the C kernel.

Written for clarity, not speed. ``ReferenceMatcher.run`` takes the same command array as
``engine.matching.Matcher.run`` and must return identical events; ``orders()`` exports the
book in the same canonical form as ``engine.book.Book.orders()``.

The rules (the C kernel implements exactly these):

* Price-time priority; a trade prints at the resting (maker) order's price. Order
  reference numbers and match numbers are global, start at 1 and only increase.
* A command marked by risk (``risk`` != 0) is rejected with that reason, nothing else.
* ENTER checks, in this order: symbol, side/tif/flags/stp (post-only only with DAY and
  not market), qty in 1..max_qty, min_qty <= qty, price > 0 unless market, token not live
  for the client; then, only for an order that may rest (DAY, not market): a free pool
  slot (POOL_FULL) and, for a price outside the symbol's band at a price with no level
  yet, a free overflow level (LEVELS_FULL); then post-only must not cross (WOULD_CROSS).
* Market orders never rest: their limit is the opposite best (the symbol's reference price
  if that side is empty) plus (buy, capped at 2**31-1) or minus (sell, floored at 1) the
  collar; DAY means IOC for them. Their remainder is canceled with COLLAR if the
  opposite side still has orders, else IOC.
* FOK (needs qty) and minimum quantity (needs min_qty) first do a dry run of the match,
  with the same self-trade rules; if it would trade less than needed the order is
  canceled whole (FOK / MIN_QTY) and nothing else happens. The rest of a min-quantity DAY
  order rests as a plain order.
* Self-trade prevention: see ``engine.commands.Stp``; the mode and group of the taker
  decide. Decrement reports each decrement as a CANCELED on both orders.
* CANCEL takes the order down to ``qty`` open shares (0 = all); not below open: no effect.
* REPLACE finds the order by (client, token) (UNKNOWN_TOKEN), gives it ``new_token``
  (DUPLICATE_TOKEN if live, the old token included), a new size ``qty`` (INVALID_QTY unless
  1..max_qty) and ``price`` (INVALID_PRICE unless > 0). Same price and not larger keeps
  time priority and the reference number; anything else gets a new reference number and
  goes to the back, trading first if it now crosses. The order keeps side, symbol, hidden flag and
  self-trade group/mode; its pessimistic LEVELS_FULL check is made before it moves.
* Hidden orders queue like any other but have no book events; fills against them print
  as BOOK_TRADE (ITCH P) instead of BOOK_EXEC.
* Mass cancels go in book order (see ``Book.orders``); by symbol rejects an unknown symbol.
"""
from collections import deque
from dataclasses import dataclass

import numpy as np

from .book import ORDER_DTYPE, band_low, state_hash
from .commands import (COMMAND_DTYPE, EVENT_DTYPE, CancelReason, EventKind, Flag, Kind,
                       RejectReason, Side, Stp, Tif)

BUY, SELL = int(Side.BUY), int(Side.SELL)
PRICE_MAX = 2**31 - 1


@dataclass(slots=True)
class Order:
    ref: int
    token: int
    client: int
    symbol: int
    side: int
    price: int
    qty: int
    hidden: bool
    group: int
    stp: int
    ts: int


class ReferenceMatcher:
    """Same constructor arguments and semantics as ``Book`` + ``Matcher``."""

    def __init__(self, symbols: int, pool_size: int, band_ticks: int, ref_price=10_000,
                 collar_ticks=100, overflow_levels: int | None = None,
                 max_qty: int = 1_000_000):
        self.symbols = symbols
        self.pool_size = pool_size
        self.band_ticks = band_ticks
        self.ref_price = np.broadcast_to(np.asarray(ref_price, np.int64), (symbols,)).tolist()
        self.collar = np.broadcast_to(np.asarray(collar_ticks, np.int64), (symbols,)).tolist()
        self.band_lo = [band_low(p, band_ticks) for p in self.ref_price]
        self.overflow_levels = pool_size if overflow_levels is None else overflow_levels
        self.max_qty = max_qty
        # book[symbol][side] = {price: deque of Orders in time priority}
        self.book = [{BUY: {}, SELL: {}} for _ in range(symbols)]
        self.live: dict[tuple[int, int], Order] = {}
        self.outside_levels = 0
        self.next_ref = 1
        self.next_match = 1
        self._events: list[tuple] = []

    # ---- public ------------------------------------------------------------------

    def run(self, commands: np.ndarray) -> np.ndarray:
        """Apply ``commands`` (COMMAND_DTYPE) in order; return their events (EVENT_DTYPE)."""
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError(f"commands must be COMMAND_DTYPE, got {commands.dtype}")
        self._events = []
        for i, row in enumerate(commands.tolist()):
            self._command(i, dict(zip(COMMAND_DTYPE.names, row)))
        return np.array(self._events, dtype=EVENT_DTYPE)

    def orders(self) -> np.ndarray:
        """Live orders in canonical book order, as ORDER_DTYPE."""
        rows = []
        for s in range(self.symbols):
            for side in (BUY, SELL):
                levels = self.book[s][side]
                for price in sorted(levels, reverse=(side == BUY)):
                    rows += [(o.symbol, o.side, o.hidden, o.stp, o.price, o.qty, o.client,
                              o.group, o.ref, o.token, o.ts) for o in levels[price]]
        return np.array(rows, dtype=ORDER_DTYPE)

    def state_hash(self) -> str:
        return state_hash(self.orders(), self.next_ref, self.next_match)

    # ---- helpers -----------------------------------------------------------------

    def _emit(self, kind, o: Order | None = None, **fields):
        e = dict(ts=self._ts, cmd=self._cmd, kind=int(kind))
        if o is not None:
            e.update(ref=o.ref, token=o.token, client=o.client, symbol=o.symbol,
                     side=o.side, price=o.price, leaves=o.qty)
        e.update(fields)
        self._events.append(tuple(e.get(name, 0) for name in EVENT_DTYPE.names))

    def _reject(self, c, reason):
        self._emit(EventKind.REJECTED, token=c["token"], client=c["client"],
                   symbol=c["symbol"], side=c["side"], price=c["price"], qty=c["qty"],
                   reason=int(reason))

    def _in_band(self, symbol, price):
        return 0 <= price - self.band_lo[symbol] < self.band_ticks

    def _needs_outside_level(self, symbol, side, price):
        return (not self._in_band(symbol, price)
                and price not in self.book[symbol][side]
                and self.outside_levels >= self.overflow_levels)

    def _best(self, symbol, side):
        levels = self.book[symbol][side]
        if not levels:
            return None
        return max(levels) if side == BUY else min(levels)

    @staticmethod
    def _crosses(side, limit, price):
        return price <= limit if side == BUY else price >= limit

    def _levels_in_priority(self, symbol, side):
        levels = self.book[symbol][side]
        return [(p, levels[p]) for p in sorted(levels, reverse=(side == BUY))]

    def _rest(self, o: Order):
        levels = self.book[o.symbol][o.side]
        if o.price not in levels:
            levels[o.price] = deque()
            if not self._in_band(o.symbol, o.price):
                self.outside_levels += 1
        levels[o.price].append(o)
        self.live[(o.client, o.token)] = o

    def _remove(self, o: Order):
        levels = self.book[o.symbol][o.side]
        level = levels[o.price]
        level.remove(o)
        if not level:
            del levels[o.price]
            if not self._in_band(o.symbol, o.price):
                self.outside_levels -= 1
        del self.live[(o.client, o.token)]

    def _cancel_resting(self, o: Order, shares: int, reason):
        o.qty -= shares
        self._emit(EventKind.CANCELED, o, qty=shares, reason=int(reason))
        if o.qty == 0:
            self._remove(o)
            if not o.hidden:
                self._emit(EventKind.BOOK_DELETE, o)
        elif not o.hidden:
            self._emit(EventKind.BOOK_CANCEL, o, qty=shares)

    def _cancel_taker(self, o: Order, reason):
        shares, o.qty = o.qty, 0
        self._emit(EventKind.CANCELED, o, qty=shares, reason=int(reason))

    # ---- commands ----------------------------------------------------------------

    def _command(self, i, c):
        self._cmd, self._ts = i, c["ts"]
        if c["risk"]:
            return self._reject(c, c["risk"])
        kind = c["kind"]
        if kind == Kind.ENTER:
            self._enter(c)
        elif kind == Kind.CANCEL:
            self._cancel(c)
        elif kind == Kind.REPLACE:
            self._replace(c)
        elif kind == Kind.MASS_CANCEL_CLIENT:
            for s in range(self.symbols):
                self._mass_cancel(s, c["client"], CancelReason.MASS_CLIENT)
        elif kind == Kind.MASS_CANCEL_SYMBOL:
            if c["symbol"] >= self.symbols:
                return self._reject(c, RejectReason.UNKNOWN_SYMBOL)
            self._mass_cancel(c["symbol"], None, CancelReason.MASS_SYMBOL)
        else:
            self._reject(c, RejectReason.UNKNOWN_KIND)

    def _enter(self, c):
        symbol, side, tif, flags = c["symbol"], c["side"], c["tif"], c["flags"]
        market = bool(flags & Flag.MARKET)
        post_only = bool(flags & Flag.POST_ONLY)
        if symbol >= self.symbols:
            return self._reject(c, RejectReason.UNKNOWN_SYMBOL)
        if (side not in (BUY, SELL) or tif > Tif.FOK or flags & ~7 or c["stp"] > Stp.DECREMENT
                or (post_only and (market or tif != Tif.DAY))):
            return self._reject(c, RejectReason.INVALID_ORDER)
        if not 0 < c["qty"] <= self.max_qty:
            return self._reject(c, RejectReason.INVALID_QTY)
        if c["min_qty"] > c["qty"]:
            return self._reject(c, RejectReason.INVALID_MIN_QTY)
        if not market and c["price"] <= 0:
            return self._reject(c, RejectReason.INVALID_PRICE)
        if (c["client"], c["token"]) in self.live:
            return self._reject(c, RejectReason.DUPLICATE_TOKEN)
        may_rest = tif == Tif.DAY and not market
        if may_rest and len(self.live) >= self.pool_size:
            return self._reject(c, RejectReason.POOL_FULL)
        if may_rest and self._needs_outside_level(symbol, side, c["price"]):
            return self._reject(c, RejectReason.LEVELS_FULL)
        opposite = SELL if side == BUY else BUY
        best = self._best(symbol, opposite)
        if post_only and best is not None and self._crosses(side, c["price"], best):
            return self._reject(c, RejectReason.WOULD_CROSS)

        limit = c["price"]
        if market:
            base = self.ref_price[symbol] if best is None else best
            limit = base + self.collar[symbol] if side == BUY else base - self.collar[symbol]
            limit = min(max(limit, 1), PRICE_MAX)
        o = Order(self.next_ref, c["token"], c["client"], symbol, side, limit, c["qty"],
                  bool(flags & Flag.HIDDEN), c["stp_group"], c["stp"], c["ts"])
        self.next_ref += 1
        self._emit(EventKind.ACCEPTED, o, qty=o.qty)

        needed, reason = (o.qty, CancelReason.FOK) if tif == Tif.FOK else (c["min_qty"], CancelReason.MIN_QTY)
        if needed and self._fillable(o, needed) < needed:
            return self._cancel_taker(o, reason)
        if not self._take(o) or not o.qty:
            return
        if market:
            reason = CancelReason.COLLAR if self.book[symbol][opposite] else CancelReason.IOC
            self._cancel_taker(o, reason)
        elif tif != Tif.DAY:
            self._cancel_taker(o, CancelReason.IOC)
        else:
            self._rest_new(o)

    def _rest_new(self, o: Order):
        self._rest(o)
        if not o.hidden:
            self._emit(EventKind.BOOK_ADD, o, qty=o.qty)

    def _stp_applies(self, taker: Order, maker: Order) -> bool:
        return taker.group != 0 and taker.stp != Stp.NONE and taker.group == maker.group

    def _fillable(self, o: Order, needed: int) -> int:
        """Shares ``o`` would trade now (stops counting at ``needed``); changes nothing."""
        remaining, traded = o.qty, 0
        opposite = SELL if o.side == BUY else BUY
        for price, level in self._levels_in_priority(o.symbol, opposite):
            if not self._crosses(o.side, o.price, price):
                break
            for m in level:
                if self._stp_applies(o, m):
                    if o.stp in (Stp.CANCEL_NEWEST, Stp.CANCEL_BOTH):
                        return traded
                    if o.stp == Stp.DECREMENT:
                        remaining -= min(remaining, m.qty)
                else:
                    fill = min(remaining, m.qty)
                    traded += fill
                    remaining -= fill
                if remaining == 0 or traded >= needed:
                    return traded
        return traded

    def _take(self, o: Order) -> bool:
        """Match ``o`` against the opposite side up to its price; False if STP ended it."""
        opposite = SELL if o.side == BUY else BUY
        while o.qty:
            best = self._best(o.symbol, opposite)
            if best is None or not self._crosses(o.side, o.price, best):
                return True
            m = self.book[o.symbol][opposite][best][0]
            if self._stp_applies(o, m):
                if o.stp == Stp.CANCEL_NEWEST:
                    self._cancel_taker(o, CancelReason.STP)
                    return False
                if o.stp == Stp.CANCEL_OLDEST:
                    self._cancel_resting(m, m.qty, CancelReason.STP)
                    continue
                if o.stp == Stp.CANCEL_BOTH:
                    self._cancel_resting(m, m.qty, CancelReason.STP)
                    self._cancel_taker(o, CancelReason.STP)
                    return False
                shares = min(o.qty, m.qty)    # DECREMENT
                self._cancel_resting(m, shares, CancelReason.STP)
                o.qty -= shares
                self._emit(EventKind.CANCELED, o, qty=shares, reason=int(CancelReason.STP))
                if o.qty == 0:
                    return False
                continue
            fill = min(o.qty, m.qty)
            o.qty -= fill
            m.qty -= fill
            match, self.next_match = self.next_match, self.next_match + 1
            self._emit(EventKind.TRADE, o, other_ref=m.ref, other_token=m.token,
                       other_client=m.client, other_leaves=m.qty, match=match,
                       price=m.price, qty=fill)
            self._emit(EventKind.BOOK_TRADE if m.hidden else EventKind.BOOK_EXEC, m,
                       qty=fill, match=match)
            if m.qty == 0:
                self._remove(m)
        return True

    def _cancel(self, c):
        o = self.live.get((c["client"], c["token"]))
        if o is None:
            return self._reject(c, RejectReason.UNKNOWN_TOKEN)
        if c["qty"] < o.qty:
            self._cancel_resting(o, o.qty - c["qty"], CancelReason.USER)

    def _replace(self, c):
        o = self.live.get((c["client"], c["token"]))
        if o is None:
            return self._reject(c, RejectReason.UNKNOWN_TOKEN)
        if (c["client"], c["new_token"]) in self.live:
            return self._reject(c, RejectReason.DUPLICATE_TOKEN)
        if not 0 < c["qty"] <= self.max_qty:
            return self._reject(c, RejectReason.INVALID_QTY)
        if c["price"] <= 0:
            return self._reject(c, RejectReason.INVALID_PRICE)
        price, qty = c["price"], c["qty"]
        keep = price == o.price and qty <= o.qty
        if not keep and self._needs_outside_level(o.symbol, o.side, price):
            return self._reject(c, RejectReason.LEVELS_FULL)

        old_ref, old_token = o.ref, o.token
        if keep:
            del self.live[(o.client, old_token)]
            o.token = c["new_token"]
            self.live[(o.client, o.token)] = o
            shrink, o.qty = o.qty - qty, qty
            self._emit(EventKind.REPLACED, o, other_ref=old_ref, other_token=old_token, qty=qty)
            if shrink and not o.hidden:
                self._emit(EventKind.BOOK_CANCEL, o, qty=shrink)
            return

        self._remove(o)
        old_price = o.price
        o.ref, o.token, o.price, o.qty, o.ts = self.next_ref, c["new_token"], price, qty, c["ts"]
        self.next_ref += 1
        self._emit(EventKind.REPLACED, o, other_ref=old_ref, other_token=old_token, qty=qty)
        opposite = SELL if o.side == BUY else BUY
        best = self._best(o.symbol, opposite)
        if best is None or not self._crosses(o.side, price, best):
            self._rest(o)
            if not o.hidden:
                self._emit(EventKind.BOOK_REPLACE, o, other_ref=old_ref, qty=qty)
            return
        if not o.hidden:    # the old order leaves the book; the new one trades first
            self._emit(EventKind.BOOK_DELETE, o, ref=old_ref, token=old_token,
                       price=old_price, leaves=0)
        if self._take(o) and o.qty:
            self._rest_new(o)

    def _mass_cancel(self, symbol, client, reason):
        for side in (BUY, SELL):
            for _, level in self._levels_in_priority(symbol, side):
                for o in list(level):
                    if client is None or o.client == client:
                        self._cancel_resting(o, o.qty, reason)
