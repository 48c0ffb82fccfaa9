"""Command and event records of the matching core (numpy structured dtypes + enums).

Everything that enters the matching core is a row of ``COMMAND_DTYPE``; everything it
decides is a row of ``EVENT_DTYPE``. Both dtypes are C-aligned and mirrored field for
field by ``struct command`` / ``struct event`` in ``cffi_build/matching.h``.

One command yields events in this order (one batch keeps the command order):

* ENTER: ``ACCEPTED`` (order reference number assigned) or ``REJECTED``; then per fill
  ``TRADE`` + ``BOOK_EXEC`` (displayed maker, ITCH E) or ``BOOK_TRADE`` (hidden maker,
  ITCH P); self-trade prevention produces ``CANCELED`` (+ ``BOOK_CANCEL``/``BOOK_DELETE``
  for a resting order); finally ``BOOK_ADD`` (ITCH A) if the rest is displayed on the book,
  or ``CANCELED`` for a remainder that may not rest (IOC, FOK, market, min quantity).
* CANCEL: ``CANCELED`` + ``BOOK_CANCEL`` (ITCH X, reduced) or ``BOOK_DELETE`` (ITCH D).
  A cancel whose new size is not below the open size does nothing (OUCH 4.2 semantics).
* REPLACE: ``REPLACED``; keeping priority (same price, not larger) a ``BOOK_CANCEL`` for the
  size decrease; losing priority and not crossing ``BOOK_REPLACE`` (ITCH U); losing priority
  and crossing ``BOOK_DELETE`` of the old order, then fills as for ENTER, then ``BOOK_ADD``.
* MASS_CANCEL_*: one ``CANCELED`` (+ book event) per order, in book order (symbol
  ascending, bids then asks, best price first, time priority).

Field use per event kind (subject = the order the event is about; for TRADE the taker):

===========  =====================================================================
ACCEPTED     ref, token, client, symbol, side, price (limit; the collar for market),
             qty, leaves=qty
REJECTED     token, client, symbol, side, price, qty as commanded, reason
TRADE        ref/token/client/side = taker, other_ref/other_token/other_client = maker,
             match, price (maker's), qty, leaves (taker), other_leaves (maker)
CANCELED     ref, token, client, qty (shares taken off), leaves (open after), reason
REPLACED     ref (new; same when priority kept), other_ref (old), token (new),
             other_token (old), price, qty (new open), leaves=qty
BOOK_ADD     A: ref, side, qty, price, symbol (+ client)
BOOK_EXEC    E: ref (maker), qty, leaves, match
BOOK_CANCEL  X: ref, qty (canceled shares), leaves
BOOK_DELETE  D: ref
BOOK_REPLACE U: other_ref (original), ref (new), qty, price
BOOK_TRADE   P: ref (hidden maker), side (maker's), qty, price, match
===========  =====================================================================

Every event carries ``ts`` (the command's timestamp) and ``cmd`` (index of the command in
the batch passed to ``run``), so replies can be routed back without a lookup. ITCH C
(executed with price) never occurs: every trade prints at the resting order's price.
Displayed quantity is all or nothing (``Flag.HIDDEN``); there are no reserve orders.
"""
from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """Command kinds; the letters are the OUCH 4.2 message types where one exists."""

    ENTER = ord("O")
    REPLACE = ord("U")
    CANCEL = ord("X")   # qty = new intended size; 0 cancels the whole order
    MASS_CANCEL_CLIENT = ord("C")   # every resting order of `client`, all symbols
    MASS_CANCEL_SYMBOL = ord("M")   # every resting order in `symbol` (supervisory)


class Side(IntEnum):
    """Order side, as the OUCH/ITCH buy/sell indicator byte."""

    BUY = ord("B")
    SELL = ord("S")


class Tif(IntEnum):
    """Time in force. DAY rests; IOC and FOK never rest."""

    DAY = 0
    IOC = 1
    FOK = 2   # all of qty immediately or nothing


class Flag(IntEnum):
    """Bits of the command ``flags`` field."""

    POST_ONLY = 1   # rejected (WOULD_CROSS) if it would take liquidity
    MARKET = 2      # price ignored; limit = opposite best (or reference) -/+ collar; never rests
    HIDDEN = 4      # rests non-displayed: no ITCH A/X/D/U, fills print as ITCH P


class Stp(IntEnum):
    """Self-trade prevention mode, taken from the incoming (taker) order.

    Applies when taker and maker share a non-zero ``stp_group``.
    """

    NONE = 0
    CANCEL_NEWEST = 1   # cancel the taker's remainder, maker untouched
    CANCEL_OLDEST = 2   # cancel the maker, keep matching
    CANCEL_BOTH = 3     # cancel maker and taker remainder
    DECREMENT = 4       # take min(taker, maker) off both without a trade; cancel what hits 0


class RejectReason(IntEnum):
    """Why a command was refused. ``OUCH_REJECT_CODE`` maps each to an OUCH 4.2 code.

    Values 1..31 are the core's own; 32.. are set by pre-trade risk in the command's
    ``risk`` field (the core echoes them in REJECTED, in command order).
    """

    NONE = 0
    UNKNOWN_SYMBOL = 1
    INVALID_PRICE = 2
    INVALID_QTY = 3
    INVALID_MIN_QTY = 4
    INVALID_ORDER = 5       # bad side/tif/flags combination (e.g. post-only IOC)
    DUPLICATE_TOKEN = 6     # token (or replace's new token) is live for this client
    UNKNOWN_TOKEN = 7       # cancel/replace of an order that is not live
    POOL_FULL = 8           # no free order slot for an order that may rest
    LEVELS_FULL = 9         # price outside the band and no free overflow level
    WOULD_CROSS = 10        # post-only order would take liquidity
    UNKNOWN_KIND = 11
    RISK_SIZE = 32
    RISK_PRICE_BAND = 33
    RISK_POSITION = 34
    RISK_NOTIONAL = 35
    RISK_RATE = 36
    RISK_KILL_SWITCH = 37
    RISK_OTHER = 38


#: OUCH 4.2 Rejected-message reason byte for each RejectReason. OUCH has no code for
#: most engine-specific reasons; those are 'O' (other).
OUCH_REJECT_CODE: dict[RejectReason, bytes] = {
    RejectReason.UNKNOWN_SYMBOL: b"S",     # invalid stock
    RejectReason.INVALID_PRICE: b"X",      # invalid price
    RejectReason.INVALID_QTY: b"Z",        # shares exceed configured safety threshold
    RejectReason.INVALID_MIN_QTY: b"N",    # invalid minimum quantity
    RejectReason.INVALID_ORDER: b"O",
    RejectReason.DUPLICATE_TOKEN: b"O",
    RejectReason.UNKNOWN_TOKEN: b"O",
    RejectReason.POOL_FULL: b"O",
    RejectReason.LEVELS_FULL: b"O",
    RejectReason.WOULD_CROSS: b"O",
    RejectReason.UNKNOWN_KIND: b"O",
    RejectReason.RISK_SIZE: b"Z",
    RejectReason.RISK_PRICE_BAND: b"X",
    RejectReason.RISK_POSITION: b"m",      # exceeded shares limit
    RejectReason.RISK_NOTIONAL: b"n",      # exceeded dollar value limit
    RejectReason.RISK_RATE: b"O",
    RejectReason.RISK_KILL_SWITCH: b"a",   # reject all enabled
    RejectReason.RISK_OTHER: b"O",
}


class CancelReason(IntEnum):
    """Why open shares left an order. ``OUCH_CANCEL_CODE`` maps each to OUCH 4.2."""

    USER = 1            # cancel command (whole or down to a new size)
    IOC = 2             # IOC / market remainder with nothing left to take
    FOK = 3             # FOK that could not fill completely (nothing traded)
    MIN_QTY = 4         # could not trade its minimum quantity at entry (nothing traded)
    STP = 5             # self-trade prevention
    MASS_CLIENT = 6     # mass cancel by client
    MASS_SYMBOL = 7     # mass cancel by symbol (supervisory)
    COLLAR = 8          # market order stopped by its price collar


OUCH_CANCEL_CODE: dict[CancelReason, bytes] = {
    CancelReason.USER: b"U",          # user requested
    CancelReason.IOC: b"I",           # immediate or cancel
    CancelReason.FOK: b"I",
    CancelReason.MIN_QTY: b"I",
    CancelReason.STP: b"Q",           # self match prevention
    CancelReason.MASS_CLIENT: b"U",
    CancelReason.MASS_SYMBOL: b"S",   # supervisory
    CancelReason.COLLAR: b"K",        # market collar
}


class EventKind(IntEnum):
    """Event kinds: order replies (OUCH) first, then book changes named by ITCH type."""

    ACCEPTED = 1
    REJECTED = 2
    TRADE = 3
    CANCELED = 4
    REPLACED = 5
    BOOK_ADD = ord("A")
    BOOK_EXEC = ord("E")
    BOOK_CANCEL = ord("X")
    BOOK_DELETE = ord("D")
    BOOK_REPLACE = ord("U")
    BOOK_TRADE = ord("P")


#: One command. ``risk`` is the pre-trade verdict: 0 = pass, else a RejectReason that the
#: core reports as REJECTED in order, touching nothing.
COMMAND_DTYPE = np.dtype([
    ("ts", "<u8"),          # ns timestamp, copied into every event of this command
    ("token", "<u8"),       # client's order token (unique among its live orders)
    ("new_token", "<u8"),   # REPLACE: the replacement's token
    ("price", "<i4"),       # limit price in ticks (> 0); ignored for MARKET
    ("qty", "<u4"),         # ENTER: shares; REPLACE: new open size; CANCEL: new size
    ("min_qty", "<u4"),     # ENTER: minimum to trade at entry (0 = none)
    ("client", "<u4"),      # client (session/firm) id
    ("stp_group", "<u4"),   # self-trade prevention group, 0 = none
    ("symbol", "<u2"),      # ITCH stock locate
    ("kind", "u1"),         # Kind
    ("side", "u1"),         # Side
    ("tif", "u1"),          # Tif
    ("flags", "u1"),        # Flag bits
    ("stp", "u1"),          # Stp mode
    ("risk", "u1"),         # RejectReason from pre-trade risk, 0 = pass
], align=True)

#: One event; see the module docstring for which fields each kind fills.
EVENT_DTYPE = np.dtype([
    ("ts", "<u8"),
    ("ref", "<u8"),           # order reference number of the subject order
    ("token", "<u8"),
    ("other_ref", "<u8"),     # TRADE: maker's ref; REPLACED/BOOK_REPLACE: original ref
    ("other_token", "<u8"),   # TRADE: maker's token; REPLACED: original token
    ("match", "<u8"),         # match number (TRADE, BOOK_EXEC, BOOK_TRADE)
    ("price", "<i4"),
    ("qty", "<u4"),
    ("leaves", "<u4"),        # subject's open shares after the event
    ("other_leaves", "<u4"),  # TRADE: maker's open shares after the fill
    ("client", "<u4"),
    ("other_client", "<u4"),  # TRADE: maker's client
    ("cmd", "<u4"),           # index of the causing command in the batch
    ("symbol", "<u2"),
    ("kind", "u1"),           # EventKind
    ("side", "u1"),           # subject's Side
    ("reason", "u1"),         # RejectReason or CancelReason
], align=True)


#: One order-book change from a market-data feed (ITCH 5.0 'A', 'F', 'E', 'C', 'X', 'D',
#: 'U' as ``kind``), for a book keyed by the feed's order references (engine/feed.py).
FEED_OP_DTYPE = np.dtype([
    ("ref", "<u8"),         # order reference number ('U': the original one)
    ("new_ref", "<u8"),     # 'U': the replacement's reference number
    ("ts", "<u8"),          # the message's timestamp, ns since midnight
    ("price", "<i4"),       # 'A', 'F', 'U': Price(4) ticks
    ("qty", "<u4"),         # shares added, executed, canceled, or the replacement's shares
    ("symbol", "<u2"),      # stock locate
    ("kind", "u1"),         # the ITCH message type
    ("side", "u1"),         # 'A', 'F': Side
    ("zero", "u1", (4,)),
])

#: Why a feed op did not apply as it stands, by ``enum feed_status`` value.
FEED_STATUS = ("ok", "unknown_order_ref", "duplicate_order_ref", "unknown_stock_locate", "bad_side",
               "bad_price", "bad_shares", "shares_beyond_order", "order_pool_full", "price_levels_full",
               "unknown_kind")


def commands(n: int = 0, **columns) -> np.ndarray:
    """A zeroed command array of length ``n`` (or of the columns' length), columns filled."""
    if columns:
        n = max(n, max(np.size(v) for v in columns.values()))
    out = np.zeros(n, COMMAND_DTYPE)
    for name, value in columns.items():
        out[name] = value
    return out
