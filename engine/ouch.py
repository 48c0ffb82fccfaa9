"""OUCH 4.2 order entry messages, field for field after NASDAQ's "O*U*C*H Version 4.2".

Every message is fixed length; integers are unsigned big-endian; alpha fields are
left-justified and padded with spaces; prices are Price(4) integers with four implied
decimals (never floats here); timestamps are nanoseconds since midnight (8 bytes).

* Per message: :func:`pack` / :func:`unpack` (raise :class:`OuchError` naming offset and rule).
* Per type: a numpy structured dtype that *is* the wire image (big-endian, packed,
  itemsize == spec length, the type byte first): :data:`INBOUND`, :data:`OUTBOUND`.
* Per burst: :func:`decode_inbound` splits a buffer of SoupBinTCP packets into per-type
  record arrays plus arrival order, never raising (rejects counted by reason);
  :func:`encode_outbound` turns record arrays back into one buffer of 'S' packets. The
  mirror pair (:func:`decode_outbound`, :func:`encode_inbound`) serves clients and load
  generators. The loops run in C (``engine._ouch``); the pure-Python reference beside
  them (``impl="python"``) is what the tests hold them to.

'U' and 'M' name both an inbound and an outbound message (Replace Order / Replaced,
Modify Order / Order Modified); their lengths differ, and the direction settles it.
Price Correction ('K', OUCH 4.0/4.1) is not part of 4.2. tests/test_tshark.py holds every
layout and the reject/cancel code tables to tshark's own OUCH dissector.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Mapping

import numpy as np

# ---------------------------------------------------------------------------------------
# Field types and message layouts

_TOKEN, _CHAR, _U32, _U64 = "S14", "S1", ">u4", ">u8"

#: Wire type of every field name used in OUCH 4.2 (snake_case of the spec's names).
FIELD_TYPES: dict[str, str] = {
    "order_token": _TOKEN, "existing_order_token": _TOKEN,
    "replacement_order_token": _TOKEN, "previous_order_token": _TOKEN,
    "stock": "S8", "firm": "S4",
    "buy_sell_indicator": _CHAR, "display": _CHAR, "capacity": _CHAR,
    "intermarket_sweep_eligibility": _CHAR, "cross_type": _CHAR, "customer_type": _CHAR,
    "order_state": _CHAR, "bbo_weight_indicator": _CHAR, "event_code": _CHAR, "reason": _CHAR,
    "liquidity_flag": _CHAR, "reference_price_type": _CHAR,
    "shares": _U32, "price": _U32, "time_in_force": _U32, "minimum_quantity": _U32,
    "decrement_shares": _U32, "quantity_prevented_from_trading": _U32,
    "execution_price": _U32, "executed_shares": _U32, "reference_price": _U32,
    "timestamp": _U64, "order_reference_number": _U64, "match_number": _U64,
}

_ORDER_BODY = ("buy_sell_indicator", "shares", "stock", "price", "time_in_force", "firm",
               "display", "order_reference_number", "capacity", "intermarket_sweep_eligibility",
               "minimum_quantity", "cross_type", "order_state")
_EXECUTION = ("executed_shares", "execution_price", "liquidity_flag", "match_number")

# (type, name, fields, spec length) — the length is asserted against the dtype below.
_INBOUND_LAYOUT = [
    ("O", "enter_order", ("order_token", "buy_sell_indicator", "shares", "stock", "price",
                          "time_in_force", "firm", "display", "capacity",
                          "intermarket_sweep_eligibility", "minimum_quantity", "cross_type",
                          "customer_type"), 49),
    ("U", "replace_order", ("existing_order_token", "replacement_order_token", "shares", "price",
                            "time_in_force", "display", "intermarket_sweep_eligibility",
                            "minimum_quantity"), 47),
    ("X", "cancel_order", ("order_token", "shares"), 19),
    ("M", "modify_order", ("order_token", "buy_sell_indicator", "shares"), 20),
    ("N", "trade_now", ("order_token",), 15),
]
_OUTBOUND_LAYOUT = [
    ("S", "system_event", ("timestamp", "event_code"), 10),
    ("A", "accepted", ("timestamp", "order_token") + _ORDER_BODY + ("bbo_weight_indicator",), 66),
    ("U", "replaced", ("timestamp", "replacement_order_token") + _ORDER_BODY
     + ("previous_order_token", "bbo_weight_indicator"), 80),
    ("C", "canceled", ("timestamp", "order_token", "decrement_shares", "reason"), 28),
    ("D", "aiq_canceled", ("timestamp", "order_token", "decrement_shares", "reason",
                           "quantity_prevented_from_trading", "execution_price",
                           "liquidity_flag"), 37),
    ("E", "executed", ("timestamp", "order_token") + _EXECUTION, 40),
    ("B", "broken_trade", ("timestamp", "order_token", "match_number", "reason"), 32),
    ("G", "executed_with_reference_price", ("timestamp", "order_token") + _EXECUTION
     + ("reference_price", "reference_price_type"), 45),
    ("F", "trade_correction", ("timestamp", "order_token") + _EXECUTION + ("reason",), 41),
    ("J", "rejected", ("timestamp", "order_token", "reason"), 24),
    ("P", "cancel_pending", ("timestamp", "order_token"), 23),
    ("I", "cancel_reject", ("timestamp", "order_token"), 23),
    ("T", "order_priority_update", ("timestamp", "order_token", "price", "display",
                                    "order_reference_number"), 36),
    ("M", "order_modified", ("timestamp", "order_token", "buy_sell_indicator", "shares"), 28),
]


@dataclass(frozen=True)
class MessageSpec:
    """One OUCH 4.2 message: its type byte, direction, field names and wire dtype."""

    type: str
    name: str
    direction: str  # "in" (client -> exchange) or "out" (exchange -> client)
    fields: tuple[str, ...]
    dtype: np.dtype

    @property
    def length(self) -> int:
        return self.dtype.itemsize

    @property
    def alpha_mask(self) -> bytes:
        """1 for each byte of an alpha field (space-padded on the wire), else 0."""
        mask = bytearray(self.length)
        for f in self.fields:
            if self.dtype[f].kind == "S":
                off = self.dtype.fields[f][1]
                mask[off:off + self.dtype[f].itemsize] = b"\x01" * self.dtype[f].itemsize
        return bytes(mask)


def _specs(layout, direction) -> dict[str, MessageSpec]:
    table = {}
    for mtype, name, fields, length in layout:
        dtype = np.dtype([("type", "S1")] + [(f, FIELD_TYPES[f]) for f in fields])
        assert dtype.itemsize == length, (name, dtype.itemsize, length)
        table[mtype] = MessageSpec(mtype, name, direction, tuple(fields), dtype)
    return table


#: Inbound (client -> exchange) messages by type character.
INBOUND: dict[str, MessageSpec] = _specs(_INBOUND_LAYOUT, "in")
#: Outbound (exchange -> client) messages by type character.
OUTBOUND: dict[str, MessageSpec] = _specs(_OUTBOUND_LAYOUT, "out")
#: Every message by name ("enter_order", "replaced", ...).
BY_NAME: dict[str, MessageSpec] = {s.name: s for s in (*INBOUND.values(), *OUTBOUND.values())}
_TABLES = {"in": INBOUND, "out": OUTBOUND}

# ---------------------------------------------------------------------------------------
# Enumerated values (ASCII codes with the spec's meanings)


class _Code(str, Enum):
    """A one-character OUCH code that also carries the spec's meaning."""

    def __new__(cls, code: str, meaning: str):
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.meaning = meaning
        return obj

    @property
    def byte(self) -> bytes:
        return self.value.encode("ascii")


class RejectReason(_Code):
    """Reason field of the Rejected message ('J')."""

    TEST_MODE = "T", "Test Mode"
    HALTED = "H", "Halted"
    SHARES_EXCEED_SAFETY_THRESHOLD = "Z", "Shares exceeds configured safety threshold"
    INVALID_STOCK = "S", "Invalid stock"
    INVALID_DISPLAY_TYPE = "D", "Invalid Display Type"
    CLOSED = "C", "NASDAQ is closed"
    FIRM_NOT_AUTHORIZED = "L", "Requested firm not authorized for requested clearing type on this account"
    OUTSIDE_PERMITTED_TIMES = "M", "Outside of permitted times for requested clearing type"
    NOT_ALLOWED_IN_CROSS = "R", "This order is not allowed in this type of cross"
    INVALID_PRICE = "X", "Invalid price"
    INVALID_MINIMUM_QUANTITY = "N", "Invalid Minimum Quantity"
    OTHER = "O", "Other"
    INVALID_MID_POINT_POST_ONLY_PRICE = "W", "Invalid Mid-point Post Only Price"
    REJECT_ALL_ENABLED = "a", "Reject All enabled"
    EASY_TO_BORROW = "b", "Easy to Borrow (ETB) reject"
    RESTRICTED_SYMBOL = "c", "Restricted symbol list reject"
    ISO_RESTRICTION = "d", "ISO order restriction"
    ODD_LOT_RESTRICTION = "e", "Odd lot order restriction"
    MID_POINT_RESTRICTION = "f", "Mid-Point order restriction"
    PRE_MARKET_RESTRICTION = "g", "Pre-Market order restriction"
    POST_MARKET_RESTRICTION = "h", "Post-Market order restriction"
    SHORT_SALE_RESTRICTION = "i", "Short sale order restriction"
    ON_OPEN_RESTRICTION = "j", "On Open order restriction"
    ON_CLOSE_RESTRICTION = "k", "On Close order restriction"
    TWO_SIDED_QUOTE = "l", "Two sided quote reject"
    EXCEEDED_SHARES_LIMIT = "m", "Exceeded shares limit"
    EXCEEDED_DOLLAR_VALUE_LIMIT = "n", "Exceeded dollar value limit"


class CancelReason(_Code):
    """Reason field of the Canceled ('C') and AIQ Canceled ('D') messages."""

    USER_REQUESTED = "U", "User requested cancel (sent in response to a Cancel Order)"
    IMMEDIATE_OR_CANCEL = "I", "Immediate or Cancel order"
    TIMEOUT = "T", "Timeout: the Time In Force for this order has expired"
    SUPERVISORY = "S", "Supervisory: canceled manually by a NASDAQ supervisory terminal"
    REGULATORY_RESTRICTION = "D", "This order cannot be executed because of a regulatory restriction"
    SELF_MATCH_PREVENTION = "Q", "Self Match Prevention"
    SYSTEM_CANCEL = "Z", "System cancel: canceled by the system"
    CROSS_CANCELED = "C", "Cross canceled"
    MARKET_COLLARS = "K", "This order cannot be executed because of Market Collars"
    HALTED = "H", "Halted: on-open order canceled because the symbol remained halted"
    OPEN_PROTECTION = "X", "Open Protection"
    CLOSED = "E", "Closed: order canceled because the market closed"
    POST_ONLY_DISPLAYED = "F", "Post Only cancel: displayed order would remove liquidity or trade through"
    POST_ONLY_NON_DISPLAYED = "G", "Post Only cancel: non-displayed order would remove liquidity"


class BuySellIndicator(_Code):
    BUY = "B", "Buy"
    SELL = "S", "Sell"
    SELL_SHORT = "T", "Sell short"
    SELL_SHORT_EXEMPT = "E", "Sell short exempt"


class Capacity(_Code):
    AGENCY = "A", "Agency"
    PRINCIPAL = "P", "Principal"
    RISKLESS = "R", "Riskless"
    OTHER = "O", "Other"


class Display(_Code):
    ATTRIBUTABLE = "A", "Attributable-Price to Display"
    ANONYMOUS = "Y", "Anonymous-Price to Comply"
    NON_DISPLAY = "N", "Non-Display"
    POST_ONLY = "P", "Post-Only"
    IMBALANCE_ONLY = "I", "Imbalance-Only"
    MID_POINT_PEG = "M", "Mid-Point Peg"
    MID_POINT_PEG_POST_ONLY = "W", "Mid-Point Peg Post Only"
    POST_ONLY_ATTRIBUTABLE = "L", "Post-Only and Attributable-Price to Display"
    RETAIL_ORDER_TYPE_1 = "O", "Retail Order Type 1"
    RETAIL_ORDER_TYPE_2 = "T", "Retail Order Type 2"
    RETAIL_PRICE_IMPROVEMENT = "Q", "Retail Price Improvement Order"
    PRICE_TO_COMPLY_NON_DISPLAYED = "Z", "Entered as displayed but changed to non-displayed (outbound only)"


class CrossType(_Code):
    NO_CROSS = "N", "No cross (continuous market)"
    OPENING = "O", "Opening Cross"
    CLOSING = "C", "Closing Cross"
    HALT_IPO = "H", "Halt/IPO Cross"
    SUPPLEMENTAL = "S", "Supplemental Order"
    RETAIL = "R", "Retail"
    EXTENDED_LIFE = "E", "Extended Life"


class CustomerType(_Code):
    RETAIL = "R", "Retail designated order"
    NOT_RETAIL = "N", "Not a retail designated order"
    PORT_DEFAULT = " ", "Use the default configured for the port"


class IntermarketSweepEligibility(_Code):
    ELIGIBLE = "Y", "Eligible"
    NOT_ELIGIBLE = "N", "Not eligible"


class OrderState(_Code):
    LIVE = "L", "Order is live"
    DEAD = "D", "Order is dead"


class EventCode(_Code):
    START_OF_DAY = "S", "Start of Day: always the first message each day"
    END_OF_DAY = "E", "End of Day: no new orders or replaces accepted in this session"


class BboWeightIndicator(_Code):
    UP_TO_0_2_PERCENT = "0", "0 - 0.2%"
    UP_TO_1_PERCENT = "1", "0.2% - 1%"
    UP_TO_2_PERCENT = "2", "1% - 2%"
    ABOVE_2_PERCENT = "3", "Greater than 2%"
    UNSPECIFIED = " ", "Unspecified"
    SETS_QBBO = "S", "Sets the QBBO while joining the NBBO"
    IMPROVES_NBBO = "N", "Improves the NBBO upon entry"


class BrokenTradeReason(_Code):
    ERRONEOUS = "E", "Erroneous: the trade was deemed clearly erroneous"
    CONSENT = "C", "Consent: the two parties mutually agreed to break the trade"
    SUPERVISORY = "S", "Supervisory: manually broken by a NASDAQ supervisory terminal"
    EXTERNAL = "X", "External: broken by an external third party"


class TradeCorrectionReason(_Code):
    """Reason field of the Trade Correction message ('F')."""

    ADJUSTED_TO_NAV = "N", "Adjusted to NAV"


class LiquidityFlag(_Code):
    """Liquidity Flag of the execution messages ('E', 'G', 'F') and AIQ Canceled ('D')."""

    ADDED = "A", "Added"
    REMOVED = "R", "Removed"
    OPENING_CROSS = "O", "Opening Cross"
    OPENING_CROSS_IMBALANCE_ONLY = "M", "Opening Cross (imbalance-only)"
    CLOSING_CROSS = "C", "Closing Cross"
    CLOSING_CROSS_IMBALANCE_ONLY = "L", "Closing Cross (imbalance-only)"
    HALT_IPO_CROSS = "H", "Halt/IPO Cross"
    HALT_CROSS = "K", "Halt Cross"
    HALT_CROSS_LULD_PILOT = "N", "Halt Cross, orders entered in pilot symbols during the LULD Trading Pause"
    INTRADAY_POST_MARKET_CROSS = "I", "Intraday/Post-Market Cross"
    NON_DISPLAYED_ADDING = "J", "Non-displayed adding liquidity"
    ADDED_POST_ONLY = "W", "Added post-only"
    REMOVED_AT_MIDPOINT = "m", "Removed liquidity at a midpoint"
    ADDED_VIA_MIDPOINT = "k", "Added liquidity via a midpoint order"
    SUPPLEMENTAL = "0", "Supplemental Order Execution"
    DISPLAYED_IMPROVES_NBBO = "7", "Displayed, liquidity-adding order improves the NBBO"
    DISPLAYED_SETS_QBBO = "8", "Displayed, liquidity-adding order sets the QBBO while joining the NBBO"
    GROUP_A_ADDED_DISPLAYED = "4", "Added displayed liquidity in a Group A Symbol"
    GROUP_A_ADDED_NON_DISPLAYED = "5", "Added non-displayed liquidity in a Group A Symbol"
    GROUP_A_REMOVED = "6", "Removed liquidity in a Group A Symbol"
    GROUP_A_ADDED_MIDPOINT = "g", "Added non-displayed mid-point liquidity in a Group A Symbol"
    RETAIL_REMOVED = "d", "Retail designated execution that removed liquidity"
    RETAIL_ADDED_DISPLAYED = "e", "Retail designated execution that added displayed liquidity"
    RETAIL_ADDED_NON_DISPLAYED = "f", "Retail designated execution that added non-displayed liquidity"
    RPI_PROVIDES = "j", "RPI (Retail Price Improving) order provides liquidity"
    RETAIL_REMOVES_RPI = "r", "Retail Order removes RPI liquidity"
    RETAIL_REMOVES_NON_DISPLAYED = "t", "Retail Order removes price improving non-displayed liquidity other than RPI"
    SCIP_ADDED_DISPLAYED = "a", "Added displayed liquidity in a SCIP Symbol"
    SCIP_IMPROVES_NBBO = "x", "Displayed, liquidity-adding order improves the NBBO in a SCIP Symbol"
    SCIP_SETS_QBBO = "y", "Displayed, liquidity-adding order set the QBBO while joining the NBBO in a SCIP Symbol"
    LULD_PILOT_IMPROVES_NBBO = "b", "Displayed, adding order improves the NBBO in a pilot symbol (LULD Pricing Pilot)"
    LULD_PILOT_ADDED_DISPLAYED = "c", "Added displayed liquidity in a pilot symbol (LULD Pricing Pilot)"
    LULD_PILOT_REMOVED = "h", "Removed liquidity in a pilot symbol (LULD Pricing Pilot)"


class TimeInForce:
    """Special Time In Force values; any other value is a lifetime in seconds."""

    IMMEDIATE_OR_CANCEL = 0
    MARKET_HOURS = 99998
    SYSTEM_HOURS = 99999


PRICE_SCALE = 10_000  # Price(4): four implied decimal places

# ---------------------------------------------------------------------------------------
# Per-message API


class OuchError(ValueError):
    """A message broke an OUCH 4.2 rule; ``offset`` is where, ``rule`` says which."""

    def __init__(self, offset: int, rule: str):
        super().__init__(f"OUCH 4.2: offset {offset}: {rule}")
        self.offset = offset
        self.rule = rule


def spec(msg: str, direction: str | None = None) -> MessageSpec:
    """The spec of a message given by name or by type character (+ direction if ambiguous)."""
    if msg in BY_NAME:
        return BY_NAME[msg]
    if direction is not None:
        try:
            return _TABLES[direction][msg]
        except KeyError:
            raise ValueError(f"{msg!r} is not an OUCH 4.2 {direction}bound message type") from None
    found = [t[msg] for t in _TABLES.values() if msg in t]
    if len(found) != 1:
        raise ValueError(f"{msg!r} is " + ("ambiguous (inbound and outbound); pass direction='in' "
                                           "or 'out', or the message name" if found
                                           else "not an OUCH 4.2 message type or name"))
    return found[0]


def _field_value(s: MessageSpec, name: str, value):
    ftype = s.dtype[name]
    if ftype.kind == "S":
        raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
        if len(raw) > ftype.itemsize:
            raise ValueError(f"{s.name}.{name}: {raw!r} is longer than {ftype.itemsize} characters")
        return raw.ljust(ftype.itemsize, b" ")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{s.name}.{name}: integer field needs an int, got {type(value).__name__}"
                        + (" (prices are integer Price(4) ticks)" if isinstance(value, float) else ""))
    if not 0 <= value < 1 << (8 * ftype.itemsize):
        raise ValueError(f"{s.name}.{name}: {value} does not fit {ftype.itemsize} unsigned bytes")
    return value


def pack(msg: str, direction: str | None = None, **fields) -> bytes:
    """The wire bytes of one message: ``pack("O", order_token="T1", ...)``.

    `msg` is a type character or a message name; every field of the message is required.
    Alpha fields take str or bytes (space-padded here); integer fields take ints only.
    """
    s = spec(msg, direction)
    missing = [f for f in s.fields if f not in fields]
    extra = [f for f in fields if f not in s.fields]
    if missing or extra:
        raise ValueError(f"{s.name}: " + "; ".join(
            part for part in (f"missing fields {missing}" if missing else "",
                              f"unknown fields {extra}" if extra else "") if part))
    record = np.zeros((), s.dtype)
    record["type"] = s.type.encode()
    for name in s.fields:
        record[name] = _field_value(s, name, fields[name])
    return record.tobytes()


def unpack(data: bytes, direction: str | None = None) -> dict:
    """Fields of one message as a dict (alpha fields as str, integers as int).

    Multi-character alpha fields lose their space padding; one-character codes are kept
    as they are (a space is a meaningful code, e.g. Customer Type "use the port default").

    The type byte picks the message; for 'U' and 'M' the length (or `direction`) decides.
    Raises :class:`OuchError` naming the offset and rule broken.
    """
    s = identify(data, direction)
    record = np.frombuffer(data, s.dtype, count=1)[0]
    out = {"type": s.type}
    for name in s.fields:
        v = record[name]
        if s.dtype[name].kind != "S":
            out[name] = int(v)
        elif s.dtype[name].itemsize == 1:
            out[name] = v.decode("ascii", "replace") or "\0"  # numpy drops a NUL byte
        else:
            out[name] = v.decode("ascii", "replace").rstrip(" ")
    return out


def identify(data: bytes, direction: str | None = None) -> MessageSpec:
    """The spec a message's type byte and length select; raises :class:`OuchError`."""
    if not data:
        raise OuchError(0, "empty message: no type byte")
    mtype = chr(data[0])
    tables = [_TABLES[direction]] if direction else list(_TABLES.values())
    candidates = [t[mtype] for t in tables if mtype in t]
    if not candidates:
        where = f"{direction}bound " if direction else ""
        raise OuchError(0, f"message type {data[:1]!r} is not an OUCH 4.2 {where}message")
    for s in candidates:
        if len(data) == s.length:
            return s
    want = " or ".join(f"{s.name} is {s.length} bytes" for s in candidates)
    if len(data) < max(s.length for s in candidates):
        raise OuchError(len(data), f"{want}, got {len(data)} (truncated)")
    raise OuchError(max(s.length for s in candidates), f"{want}, got {len(data)} (oversized)")


def to_price(dollars: str) -> int:
    """Price(4) ticks from a decimal string such as "12.3456" (exact, no floats)."""
    whole, _, frac = dollars.partition(".")
    if len(frac) > 4 or not (whole or "0").isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"{dollars!r} is not a price with at most 4 decimals")
    return int(whole or "0") * PRICE_SCALE + int(frac.ljust(4, "0"))


# ---------------------------------------------------------------------------------------
# Bulk paths: SoupBinTCP-framed bursts <-> per-type record arrays


class Reject(str, Enum):
    """Why a packet of a burst was dropped (the bulk path counts these, never raises).

    The order is that of OUCH_R_* in cffi_build/ouch.h.
    """

    EMPTY_PACKET = "empty_packet"                  # SoupBinTCP length 0: no type byte
    UNKNOWN_PACKET_TYPE = "unknown_packet_type"    # not one of the ten SoupBinTCP types
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"  # data packet with no such OUCH message
    BAD_MESSAGE_LENGTH = "bad_message_length"      # truncated or oversized OUCH message
    TRUNCATED_PACKET = "truncated_packet"          # a final buffer ends inside a packet


_REJECTS = list(Reject)
_SOUP_TYPES = frozenset(b"+AJSHZLURO")
#: Non-data SoupBinTCP packets of a burst, for the session layer.
CONTROL_DTYPE = np.dtype([("type", "S1"), ("offset", "<u4"), ("length", "<u2")])


@dataclass
class Decoded:
    """A decoded burst.

    ``messages[t]`` holds every message of type `t` in arrival order (records of that
    type's dtype); ``order_type``/``order_index`` give the arrival order across types
    (message k is ``messages[chr(order_type[k])][order_index[k]]``). ``control`` lists
    the other SoupBinTCP packets (login, heartbeats, ...) by offset and length.
    ``consumed`` bytes were used; the rest is the start of an unfinished packet.
    """

    messages: dict[str, np.ndarray]
    order_type: np.ndarray
    order_index: np.ndarray
    control: np.ndarray
    consumed: int
    rejects: Counter

    def __len__(self) -> int:
        return len(self.order_type)


@dataclass(frozen=True)
class _Side:
    """What the bulk paths need to know about one direction, computed once."""

    direction: str
    specs: dict[str, MessageSpec]
    lengths: np.ndarray            # uint16[256]: wire length per type byte, 0 = none
    data_type: int                 # SoupBinTCP packet type that carries OUCH: 'U' or 'S'
    empty: dict[str, np.ndarray]   # a zero-length record array per type


def _side(direction: str) -> _Side:
    specs = _TABLES[direction]
    lengths = np.zeros(256, np.uint16)
    for t, s in specs.items():
        lengths[ord(t)] = s.length
    empty = {t: np.empty(0, s.dtype) for t, s in specs.items()}
    return _Side(direction, specs, lengths, ord("U" if direction == "in" else "S"), empty)


_SIDES = {d: _side(d) for d in _TABLES}


def _scan_python(buf: bytes, side: _Side, final: bool):
    """Reference scanner: per-packet Python, kept to hold the C loop to account."""
    order_type, order_off, ctrl_off = [], [], []
    rejects = [0] * len(_REJECTS)
    pos, n = 0, len(buf)
    while n - pos >= 2:
        length = buf[pos] << 8 | buf[pos + 1]
        if length == 0:
            rejects[0] += 1
            pos += 2
            continue
        if n - pos - 2 < length:
            break
        ptype = buf[pos + 2]
        if ptype not in _SOUP_TYPES:
            rejects[1] += 1
        elif ptype != side.data_type:
            ctrl_off.append(pos)
        elif length == 1 or side.lengths[buf[pos + 3]] == 0:
            rejects[2] += 1
        elif side.lengths[buf[pos + 3]] != length - 1:
            rejects[3] += 1
        else:
            order_type.append(buf[pos + 3])
            order_off.append(pos + 3)
        pos += 2 + length
    if final and pos < n:
        rejects[4] += 1
        pos = n
    return (np.array(order_type, np.uint8), np.array(order_off, np.uint32),
            np.array(ctrl_off, np.uint32), pos, rejects)


def _gather_python(buf: bytes, order_type: np.ndarray, order_off: np.ndarray, side: _Side):
    messages = dict(side.empty)
    order_index = np.zeros(len(order_type), np.uint32)
    view = np.frombuffer(buf, np.uint8)
    for t, s in side.specs.items():
        sel = np.flatnonzero(order_type == ord(t))
        if len(sel):
            order_index[sel] = np.arange(len(sel), dtype=np.uint32)
            rows = view[order_off[sel, None].astype(np.int64) + np.arange(s.length)]
            messages[t] = rows.view(s.dtype).reshape(-1)
    return messages, order_index


_NO_CONTROL = np.empty(0, CONTROL_DTYPE)


def _control(buf, ctrl_off: np.ndarray) -> np.ndarray:
    if not len(ctrl_off):
        return _NO_CONTROL
    view = np.frombuffer(buf, np.uint8)
    ctrl = np.empty(len(ctrl_off), CONTROL_DTYPE)
    ctrl["type"] = view[ctrl_off + 2].view("S1")
    ctrl["offset"] = ctrl_off
    ctrl["length"] = (view[ctrl_off].astype(np.uint16) << 8 | view[ctrl_off + 1]) + 2
    return ctrl


def _decode(buf, direction: str, final: bool, impl: str) -> Decoded:
    side = _SIDES[direction]
    if impl == "c" and _native is not None:
        order_type, order_off, ctrl_off, consumed, rejects, counts = _native.scan(buf, side, final)
        messages, order_index = _native.gather(buf, order_type, order_off, counts, side)
    else:
        buf = bytes(buf)
        order_type, order_off, ctrl_off, consumed, rejects = _scan_python(buf, side, final)
        messages, order_index = _gather_python(buf, order_type, order_off, side)
    return Decoded(messages, order_type, order_index, _control(buf, ctrl_off), consumed,
                   Counter({r.value: c for r, c in zip(_REJECTS, rejects) if c}))


def decode_inbound(buf: bytes, *, final: bool = False, impl: str = "c") -> Decoded:
    """Split a client's stream of SoupBinTCP packets; OUCH rides in 'U' packets.

    `final=True` for a buffer that must hold whole packets (one UDP datagram): an
    unfinished trailing packet is then counted as truncated instead of left unconsumed.
    """
    return _decode(buf, "in", final, impl)


def decode_outbound(buf: bytes, *, final: bool = False, impl: str = "c") -> Decoded:
    """Split an exchange's stream of SoupBinTCP packets; OUCH rides in 'S' packets."""
    return _decode(buf, "out", final, impl)


def _encode(messages: Mapping[str, np.ndarray], order: tuple | None, direction: str, impl: str) -> bytes:
    specs = _TABLES[direction]
    for t, arr in messages.items():
        if t not in specs:
            raise ValueError(f"{t!r} is not an OUCH 4.2 {direction}bound message type")
        if arr.dtype != specs[t].dtype:
            raise ValueError(f"messages[{t!r}] has dtype {arr.dtype}, not the {specs[t].name} dtype")
    if order is None:
        keys = [t for t in messages if len(messages[t])]
        order_type = np.repeat(np.frombuffer("".join(keys).encode(), np.uint8),
                               [len(messages[t]) for t in keys])
        order_index = np.concatenate([np.arange(len(messages[t]), dtype=np.uint32) for t in keys]
                                     or [np.zeros(0, np.uint32)])
    else:
        order_type = np.ascontiguousarray(order[0], np.uint8)
        order_index = np.ascontiguousarray(order[1], np.uint32)
        if order_type.shape != order_index.shape:
            raise ValueError("order_type and order_index differ in length")
    counts = np.zeros(256, np.int64)
    for t, arr in messages.items():
        counts[ord(t)] = len(arr)
    bad = np.flatnonzero(order_index >= counts[order_type])
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"order entry {k}: no message {order_index[k]} of type {chr(order_type[k])!r}")
    if impl == "c" and _native is not None:
        return _native.encode(messages, order_type, order_index, direction)
    return _encode_python(messages, order_type, order_index, _SIDES[direction])


def _encode_python(messages, order_type: np.ndarray, order_index: np.ndarray, side: "_Side") -> bytes:
    """Reference encoder: per-message Python, kept to hold the C loop to account."""
    out = bytearray()
    packet_type = bytes([side.data_type])
    masks = {t: np.frombuffer(s.alpha_mask, np.bool_) for t, s in side.specs.items()}
    for t_code, i in zip(order_type.tolist(), order_index.tolist()):
        t = chr(t_code)
        body = np.frombuffer(messages[t][i:i + 1].tobytes(), np.uint8).copy()
        body[masks[t] & (body == 0)] = 0x20  # numpy pads alpha with NUL; the wire wants spaces
        body[0] = t_code
        out += (len(body) + 1).to_bytes(2, "big") + packet_type + body.tobytes()
    return bytes(out)


def encode_outbound(messages: Mapping[str, np.ndarray], order: tuple | None = None,
                    *, impl: str = "c") -> bytes:
    """One buffer of SoupBinTCP 'S' packets from per-type outbound record arrays.

    `order` is ``(order_type, order_index)`` as in :class:`Decoded`; without it the
    messages go type by type in the mapping's order. The type byte is written from the
    key, and NUL padding in alpha fields (numpy's default) goes out as spaces.
    """
    return _encode(messages, order, "out", impl)


def encode_inbound(messages: Mapping[str, np.ndarray], order: tuple | None = None,
                   *, impl: str = "c") -> bytes:
    """One buffer of SoupBinTCP 'U' packets from per-type inbound record arrays."""
    return _encode(messages, order, "in", impl)


def records(msg: str, count: int, direction: str | None = None, **fields) -> np.ndarray:
    """A record array of `count` messages, fields set from scalars or arrays (for bulk tests/tools)."""
    s = spec(msg, direction)
    arr = np.zeros(count, s.dtype)
    arr["type"] = s.type.encode()
    for name, value in fields.items():
        if name not in s.fields:
            raise ValueError(f"{s.name}: unknown field {name!r}")
        arr[name] = value
    return arr


class _Native:
    """The C loops of engine._ouch behind numpy-in, numpy-out functions."""

    def __init__(self, ffi, lib):
        self.ffi, self.lib = ffi, lib
        self.lengths = {d: ffi.from_buffer("uint16_t[]", side.lengths) for d, side in _SIDES.items()}
        self.masks = {}  # direction -> (cffi array of alpha-mask pointers, buffers kept alive)
        for d, side in _SIDES.items():
            masks = ffi.new("uint8_t *[256]")
            keep = [ffi.from_buffer(s.alpha_mask) for s in side.specs.values()]
            for s, m in zip(side.specs.values(), keep):
                masks[ord(s.type)] = m
            self.masks[d] = (masks, keep)

    def scan(self, buf, side: _Side, final: bool):
        ffi, lib = self.ffi, self.lib
        cap = len(buf) // 3 + 1
        order_type = np.empty(cap, np.uint8)
        order_off, ctrl_off = np.empty(cap, np.uint32), np.empty(cap, np.uint32)
        stats = np.zeros(lib.OUCH_STAT_SIZE, np.uint32)
        consumed = lib.ouch_scan(ffi.from_buffer(buf), len(buf), final, side.data_type,
                                 self.lengths[side.direction],
                                 ffi.from_buffer("uint8_t[]", order_type),
                                 ffi.from_buffer("uint32_t[]", order_off),
                                 ffi.from_buffer("uint32_t[]", ctrl_off),
                                 ffi.from_buffer("uint32_t[]", stats))
        n, nc = int(stats[lib.OUCH_STAT_N_ORDER]), int(stats[lib.OUCH_STAT_N_CTRL])
        rejects = stats[lib.OUCH_STAT_REJECTS:lib.OUCH_STAT_REJECTS + len(_REJECTS)].tolist()
        return (order_type[:n], order_off[:n], ctrl_off[:nc], consumed, rejects,
                stats[lib.OUCH_STAT_COUNTS:lib.OUCH_STAT_COUNTS + 256])

    def gather(self, buf, order_type, order_off, counts, side: _Side):
        ffi = self.ffi
        messages = dict(side.empty)
        dst = ffi.new("uint8_t *[256]")
        for t, s in side.specs.items():
            c = int(counts[ord(t)])
            if c:
                messages[t] = arr = np.empty(c, s.dtype)
                dst[ord(t)] = ffi.from_buffer("uint8_t[]", arr, require_writable=True)
        order_index = np.empty(len(order_type), np.uint32)
        self.lib.ouch_gather(ffi.from_buffer(buf), ffi.from_buffer("uint8_t[]", order_type),
                             ffi.from_buffer("uint32_t[]", order_off), len(order_type),
                             self.lengths[side.direction], dst,
                             ffi.from_buffer("uint32_t[]", order_index))
        return messages, order_index

    def encode(self, messages, order_type, order_index, direction: str) -> bytes:
        ffi, side = self.ffi, _SIDES[direction]
        src = ffi.new("uint8_t *[256]")
        keep = []  # buffers must outlive the call
        for t, arr in messages.items():
            arr = np.ascontiguousarray(arr)
            keep.append(arr)
            src[ord(t)] = ffi.from_buffer("uint8_t[]", arr)
        total = int(side.lengths[order_type].sum(dtype=np.int64)) + 3 * len(order_type)
        out = np.empty(total, np.uint8)
        written = self.lib.ouch_encode(ffi.from_buffer("uint8_t[]", out), side.data_type, src,
                                       self.lengths[direction], self.masks[direction][0],
                                       ffi.from_buffer("uint8_t[]", order_type),
                                       ffi.from_buffer("uint32_t[]", order_index), len(order_type))
        assert written == total
        return out.tobytes()


def _load_native() -> _Native | None:
    try:
        from engine._ouch import ffi, lib
    except ImportError:
        return None
    return _Native(ffi, lib)


_native = _load_native()
#: True when the C bulk paths (``engine._ouch``) are built and in use.
NATIVE: bool = _native is not None
