"""NASDAQ TotalView-ITCH 5.0: every message type as a numpy wire image, bulk decode/encode in C.

Each message type is a packed, big-endian numpy structured dtype whose records are the
message bytes exactly as on the wire (``DTYPES[t].itemsize == LENGTHS[t]``), starting with
the ``message_type`` byte.  Conventions of the spec carried over unchanged:

* integers are unsigned big-endian (``>u2``, ``>u4``, ``>u8``);
* prices are integer ticks: Price(4) has 4 implied decimals (``>u4``), Price(8) -- the
  MWCB levels -- has 8 (``>u8``); ``PRICE_DECIMALS`` names every price field;
* alpha fields are left-justified, space-padded ASCII (``S1``, ``S2``, ``S4``, ``S8``);
* the timestamp (ns since midnight) is 6 bytes on the wire and so is the ``timestamp``
  field: a ``(high >u2, low >u4)`` pair; ``timestamps()`` / ``set_timestamps()`` convert.

numpy hands back native-endian copies from some operations (``np.concatenate``): pass
``dtype=DTYPES[t]`` to keep wire images; ``encode`` casts such arrays back by itself.

Streams (a MoldUDP64 payload's message blocks, or an ITCH file) are messages each preceded
by a 2-byte big-endian length.  ``decode`` splits one into per-type arrays plus the arrival
order; ``encode`` is its exact inverse.  ``decode_views`` takes unframed message bodies at
given offsets and lengths in a buffer instead (the MoldUDP64 decoder's output).  The bulk
path never raises on bad input: it keeps what is valid and counts the rest in
``ItchBatch.rejects`` by reason.  The per-message API (``pack``, ``unpack``,
``iter_unpack``) raises ``ItchError`` naming the offset and the rule.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from engine._itch import ffi, lib

__all__ = [
    "LENGTHS", "DTYPES", "NAMES", "PRICE_DECIMALS", "REJECT_REASONS", "TIMESTAMP", "ORDER_DTYPE",
    "ItchError", "ItchBatch", "decode", "decode_views", "encode", "pack", "unpack", "iter_unpack",
    "new_array", "timestamps", "set_timestamps",
]


class ItchError(ValueError):
    """A message or stream breaks an ITCH 5.0 rule; the text names the offset and the rule."""


TIMESTAMP = np.dtype([("high", ">u2"), ("low", ">u4")])
"""The 6-byte wire timestamp: nanoseconds since midnight = high << 32 | low."""

ORDER_DTYPE = np.dtype([("type", "u1"), ("index", "u4")])
"""One entry per decoded message in arrival order: ASCII type code, row in messages[type]."""

# Field types in the spec's own notation: Alpha(n), Integer(n), Price(4), Price(8).
ALPHA1, ALPHA2, ALPHA4, STOCK = "a1", "a2", "a4", "a8"
INT2, INT4, INT8 = "i2", "i4", "i8"
PRICE4, PRICE8 = "p4", "p8"
_NUMPY = {"a": "S{}", "i": ">u{}", "p": ">u{}"}


def _field(name: str, kind):
    return (name, kind) if isinstance(kind, np.dtype) else (name, _NUMPY[kind[0]].format(kind[1:]))


_HEADER = [("message_type", ALPHA1), ("stock_locate", INT2), ("tracking_number", INT2),
           ("timestamp", TIMESTAMP)]

# The spec, section 1.x, in wire order after the common 11-byte header.
_SPEC: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "S": ("system_event", [("event_code", ALPHA1)]),
    "R": ("stock_directory", [
        ("stock", STOCK), ("market_category", ALPHA1), ("financial_status_indicator", ALPHA1),
        ("round_lot_size", INT4), ("round_lots_only", ALPHA1), ("issue_classification", ALPHA1),
        ("issue_sub_type", ALPHA2), ("authenticity", ALPHA1), ("short_sale_threshold_indicator", ALPHA1),
        ("ipo_flag", ALPHA1), ("luld_reference_price_tier", ALPHA1), ("etp_flag", ALPHA1),
        ("etp_leverage_factor", INT4), ("inverse_indicator", ALPHA1)]),
    "H": ("stock_trading_action", [
        ("stock", STOCK), ("trading_state", ALPHA1), ("reserved", ALPHA1), ("reason", ALPHA4)]),
    "Y": ("reg_sho_restriction", [("stock", STOCK), ("reg_sho_action", ALPHA1)]),
    "L": ("market_participant_position", [
        ("mpid", ALPHA4), ("stock", STOCK), ("primary_market_maker", ALPHA1),
        ("market_maker_mode", ALPHA1), ("market_participant_state", ALPHA1)]),
    "V": ("mwcb_decline_level", [("level_1", PRICE8), ("level_2", PRICE8), ("level_3", PRICE8)]),
    "W": ("mwcb_status", [("breached_level", ALPHA1)]),
    "K": ("ipo_quoting_period_update", [
        ("stock", STOCK), ("ipo_quotation_release_time", INT4),
        ("ipo_quotation_release_qualifier", ALPHA1), ("ipo_price", PRICE4)]),
    "J": ("luld_auction_collar", [
        ("stock", STOCK), ("auction_collar_reference_price", PRICE4),
        ("upper_auction_collar_price", PRICE4), ("lower_auction_collar_price", PRICE4),
        ("auction_collar_extension", INT4)]),
    "h": ("operational_halt", [
        ("stock", STOCK), ("market_code", ALPHA1), ("operational_halt_action", ALPHA1)]),
    "A": ("add_order", [
        ("order_reference_number", INT8), ("buy_sell_indicator", ALPHA1), ("shares", INT4),
        ("stock", STOCK), ("price", PRICE4)]),
    "F": ("add_order_mpid", [
        ("order_reference_number", INT8), ("buy_sell_indicator", ALPHA1), ("shares", INT4),
        ("stock", STOCK), ("price", PRICE4), ("attribution", ALPHA4)]),
    "E": ("order_executed", [
        ("order_reference_number", INT8), ("executed_shares", INT4), ("match_number", INT8)]),
    "C": ("order_executed_with_price", [
        ("order_reference_number", INT8), ("executed_shares", INT4), ("match_number", INT8),
        ("printable", ALPHA1), ("execution_price", PRICE4)]),
    "X": ("order_cancel", [("order_reference_number", INT8), ("canceled_shares", INT4)]),
    "D": ("order_delete", [("order_reference_number", INT8)]),
    "U": ("order_replace", [
        ("original_order_reference_number", INT8), ("new_order_reference_number", INT8),
        ("shares", INT4), ("price", PRICE4)]),
    "P": ("trade", [
        ("order_reference_number", INT8), ("buy_sell_indicator", ALPHA1), ("shares", INT4),
        ("stock", STOCK), ("price", PRICE4), ("match_number", INT8)]),
    "Q": ("cross_trade", [
        ("shares", INT8), ("stock", STOCK), ("cross_price", PRICE4), ("match_number", INT8),
        ("cross_type", ALPHA1)]),
    "B": ("broken_trade", [("match_number", INT8)]),
    "I": ("noii", [
        ("paired_shares", INT8), ("imbalance_shares", INT8), ("imbalance_direction", ALPHA1),
        ("stock", STOCK), ("far_price", PRICE4), ("near_price", PRICE4),
        ("current_reference_price", PRICE4), ("cross_type", ALPHA1),
        ("price_variation_indicator", ALPHA1)]),
    "N": ("retail_price_improvement_indicator", [("stock", STOCK), ("interest_flag", ALPHA1)]),
    "O": ("direct_listing_capital_raise", [
        ("stock", STOCK), ("open_eligibility_status", ALPHA1), ("minimum_allowable_price", PRICE4),
        ("maximum_allowable_price", PRICE4), ("near_execution_price", PRICE4),
        ("near_execution_time", INT8), ("lower_price_range_collar", PRICE4),
        ("upper_price_range_collar", PRICE4)]),
}

DTYPES: dict[str, np.dtype] = {t: np.dtype([_field(*f) for f in _HEADER + body]) for t, (_, body) in _SPEC.items()}
"""Message type char -> packed big-endian structured dtype, the wire image of the message."""

LENGTHS: dict[str, int] = {t: dt.itemsize for t, dt in DTYPES.items()}
"""Message type char -> total message length in bytes, including the type byte."""

NAMES: dict[str, str] = {t: name for t, (name, _) in _SPEC.items()}
"""Message type char -> the spec's message name in snake_case."""

PRICE_DECIMALS: dict[str, int] = {name: int(kind[1]) for _, body in _SPEC.values()
                                   for name, kind in body if kind in (PRICE4, PRICE8)}
"""Price field name -> implied decimal places (4 for Price(4), 8 for the MWCB levels)."""

REJECT_REASONS = ("truncated", "length_mismatch", "unknown_type", "empty")
"""Why the bulk decoders drop a message (``ItchBatch.rejects`` keys, in the C enum's order):
truncated -- a length prefix or body runs past the end of the buffer (ends a framed walk),
    or a view lies outside its buffer;
length_mismatch -- a known type whose length is not its spec length (too short or oversized);
unknown_type -- the type byte is not an ITCH 5.0 message type;
empty -- a zero length."""

_LEN_TABLE = np.zeros(256, np.uint8)
for _t, _n in LENGTHS.items():
    _LEN_TABLE[ord(_t)] = _n
_C_LENGTHS = ffi.from_buffer("uint8_t[]", _LEN_TABLE)

_EMPTY = {t: np.empty(0, dt) for t, dt in DTYPES.items()}
for _a in _EMPTY.values():
    _a.flags.writeable = False


# --------------------------------------------------------------------------- bulk path

@dataclass(eq=False)
class ItchBatch:
    """Decoded messages: one wire-image array per type plus the arrival order.

    ``messages`` has an array (possibly empty) for every type in ``LENGTHS``; ``order``
    has one ``ORDER_DTYPE`` entry per message; ``rejects`` counts dropped messages by
    reason (every reason in ``REJECT_REASONS`` present).  Decoded arrays are views into
    one block per decode call (copy an array to keep it without the rest).
    """

    messages: dict[str, np.ndarray]
    order: np.ndarray
    rejects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    source: np.ndarray | None = None
    """From ``decode_views``: per message, the index of the view it came from (uint32)."""

    @classmethod
    def from_messages(cls, messages: dict[str, np.ndarray]) -> ItchBatch:
        """A batch sending each array's rows in turn, arrays in the dict's order."""
        sizes = [len(a) for a in messages.values()]
        order = np.empty(sum(sizes), ORDER_DTYPE)
        order["type"] = np.repeat(np.array([ord(t) for t in messages], np.uint8), sizes)
        order["index"] = np.concatenate([np.arange(n, dtype=np.uint32) for n in sizes] or [[]])
        return cls({**_EMPTY, **messages}, order)

    def __eq__(self, other: object) -> bool:
        """Same messages byte for byte in the same order, same rejects and sources."""
        if not isinstance(other, ItchBatch):
            return NotImplemented
        def wire(batch: ItchBatch, t: str) -> bytes:
            return np.ascontiguousarray(batch.messages.get(t, _EMPTY[t]), DTYPES[t]).tobytes()
        def trace(source) -> list | None:
            return None if source is None else np.asarray(source).tolist()
        return (self.rejects == other.rejects and trace(self.source) == trace(other.source)
                and np.ascontiguousarray(self.order, ORDER_DTYPE).tobytes()
                == np.ascontiguousarray(other.order, ORDER_DTYPE).tobytes()
                and all(wire(self, t) == wire(other, t) for t in DTYPES))

    @property
    def count(self) -> int:
        """Number of valid messages."""
        return len(self.order)

    def types(self) -> str:
        """The message types in arrival order, as one string (handy in tests)."""
        return self.order["type"].tobytes().decode("latin-1")

    def to_records(self) -> list[dict]:
        """Per-message dicts (as ``unpack`` returns them) in arrival order; slow, for tests."""
        wire = {t: np.asarray(a, DTYPES[t]) for t, a in self.messages.items() if t in DTYPES}
        return [unpack(wire[chr(t)][i].tobytes()) for t, i in self.order.tolist()]


def _as_bytes_array(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, np.uint8)


def decode(data: bytes | bytearray | memoryview | np.ndarray) -> ItchBatch:
    """Split length-prefixed ITCH 5.0 messages into per-type arrays; never raises on bad bytes.

    A zero length prefix is an ``empty`` reject; a prefix or body running past the end of
    the buffer is one ``truncated`` reject and ends the walk.
    """
    buf = _as_bytes_array(data)
    c_buf = ffi.from_buffer("uint8_t[]", buf)
    return _two_pass(lambda *out: lib.itch_scan(c_buf, len(buf), _C_LENGTHS, *out),
                     lambda *out: lib.itch_gather(c_buf, len(buf), _C_LENGTHS, *out))


def decode_views(buffer: bytes | bytearray | memoryview | np.ndarray, offsets, lengths) -> ItchBatch:
    """Decode message bodies (no length prefixes) lying at ``buffer[offsets[k]:offsets[k] + lengths[k]]``.

    This is what the MoldUDP64 decoder hands over, so a burst of packets goes from the
    receive buffer to per-type arrays in one C call with no reframing.  ``source`` of the
    result gives each decoded message's view index.  A zero length is an ``empty``
    reject, a view outside the buffer a ``truncated`` one; nothing raises on bad bytes.
    """
    buf = _as_bytes_array(buffer)
    offsets = np.ascontiguousarray(offsets, np.int64)
    lengths = np.asarray(lengths)
    if offsets.shape != lengths.shape or offsets.ndim != 1:
        raise ValueError(f"offsets {offsets.shape} and lengths {lengths.shape} must be equal-length 1-d arrays")
    if lengths.size and (lengths.min() < 0 or lengths.max() > 0xFFFF):
        raise ValueError("lengths must be 0 .. 65535 (a MoldUDP64 message block's length)")
    lengths = np.ascontiguousarray(lengths, np.uint16)
    c_buf, c_off = ffi.from_buffer("uint8_t[]", buf), ffi.from_buffer("int64_t[]", offsets)
    c_len = ffi.from_buffer("uint16_t[]", lengths)
    n = len(offsets)
    return _two_pass(lambda *out: lib.itch_scan_views(c_buf, len(buf), c_off, c_len, n, _C_LENGTHS, *out),
                     lambda *out: lib.itch_gather_views(c_buf, len(buf), c_off, c_len, n, _C_LENGTHS, *out),
                     sourced=True)


def _two_pass(scan, gather, sourced: bool = False) -> ItchBatch:
    """Run a C scan (count per type, lay out one block) then a C gather (copy, record order).

    The arrays of the types present are views into the one block, an allocation per call
    cheap enough for a single packet; absent types share a read-only empty array.
    """
    counts = np.zeros(256, np.uint64)
    offsets = np.empty(257, np.uint64)
    rejects = np.zeros(len(REJECT_REASONS), np.uint64)
    c_counts, c_offsets = ffi.from_buffer("uint64_t[]", counts), ffi.from_buffer("uint64_t[]", offsets)
    valid = scan(c_counts, c_offsets, ffi.from_buffer("uint64_t[]", rejects))
    block = np.empty(int(offsets[256]), np.uint8)
    messages = dict(_EMPTY)
    for code in np.flatnonzero(counts).tolist():
        messages[chr(code)] = np.ndarray(int(counts[code]), DTYPES[chr(code)], block, int(offsets[code]))
    order = np.empty(valid, ORDER_DTYPE)
    out = [ffi.from_buffer("uint8_t[]", block, require_writable=True), c_offsets, c_counts,
           ffi.from_buffer("uint8_t[]", order, require_writable=True)]
    source = np.empty(valid, np.uint32) if sourced else None
    if sourced:
        out.append(ffi.from_buffer("uint32_t[]", source, require_writable=True))
    placed = gather(*out, valid)
    if placed != valid:  # only if the caller mutated the buffer while we read it
        raise RuntimeError(f"itch decode: buffer changed during decode ({placed} of {valid} placed)")
    return ItchBatch(messages, order, dict(zip(REJECT_REASONS, rejects.tolist())), source)


def encode(batch: ItchBatch) -> bytes:
    """Length-prefixed bytes of ``batch``'s messages in its order: the inverse of ``decode``.

    Arrays with the right fields but another byte order are cast to DTYPES first.
    Raises ItchError if an order entry names an unknown type or a missing row, or a
    record's own message_type byte disagrees with the array it sits in.
    """
    order = np.ascontiguousarray(batch.order, dtype=ORDER_DTYPE)
    total = int(_LEN_TABLE[order["type"]].sum(dtype=np.int64)) + 2 * len(order)
    out = np.empty(total, np.uint8)
    src = ffi.new("const uint8_t *[256]")
    counts = np.zeros(256, np.uint64)
    keep = []  # the arrays must outlive the C call that reads through src
    for t, arr in batch.messages.items():
        if len(arr) == 0:
            continue
        if arr.dtype != DTYPES.get(t):
            if t not in DTYPES or arr.dtype.names != DTYPES[t].names:
                raise ItchError(f"encode: messages[{t!r}] must be an array of DTYPES[{t!r}], got {arr.dtype}")
            # numpy operations such as concatenate hand back native-endian copies: cast back, exactly.
            arr = arr.astype(DTYPES[t])
        arr = np.ascontiguousarray(arr)
        keep.append(arr)
        src[ord(t)] = ffi.from_buffer("uint8_t[]", arr)
        counts[ord(t)] = len(arr)
    written = lib.itch_encode(ffi.from_buffer("uint8_t[]", order), len(order), _C_LENGTHS, src,
                              ffi.from_buffer("uint64_t[]", counts), ffi.from_buffer("uint8_t[]", out), total)
    if written < 0:
        k = -written - 1
        t, i = order[k]["type"], int(order[k]["index"])
        raise ItchError(f"encode: order[{k}] = ({chr(t)!r}, {i}): unknown type, row out of range, "
                        f"or the record's message_type byte is not {chr(t)!r}")
    return out.tobytes()


# --------------------------------------------------------------------- per-message API

def _alpha_fields(msg_type: str) -> list[str]:
    dt = DTYPES[msg_type]
    return [n for n in dt.names if dt[n].kind == "S"]


def new_array(msg_type: str, n: int) -> np.ndarray:
    """``n`` records of ``msg_type``: message_type set, alpha fields spaces, the rest zero."""
    arr = np.zeros(n, _dtype(msg_type, 0))
    for name in _alpha_fields(msg_type):
        arr[name] = b" " * arr.dtype[name].itemsize
    arr["message_type"] = msg_type.encode()
    return arr


def timestamps(arr: np.ndarray) -> np.ndarray:
    """The ``timestamp`` field of ITCH records as uint64 nanoseconds since midnight."""
    ts = arr["timestamp"]
    return (ts["high"].astype(np.uint64) << np.uint64(32)) | ts["low"].astype(np.uint64)


def set_timestamps(arr: np.ndarray, ns) -> None:
    """Write nanoseconds since midnight (0 .. 2**48-1, scalar or per-row) into ``arr``'s timestamps."""
    ns = np.asarray(ns)
    if ns.size and (ns.min() < 0 or ns.max() >= 1 << 48):
        raise ItchError(f"timestamp out of range 0 .. 2**48-1: {ns.min()} .. {ns.max()}")
    ns = ns.astype(np.uint64)
    ts = arr["timestamp"]
    ts["high"] = ns >> np.uint64(32)
    ts["low"] = ns & np.uint64(0xFFFFFFFF)


def _dtype(msg_type: str, offset: int) -> np.dtype:
    try:
        return DTYPES[msg_type]
    except (KeyError, TypeError):
        raise ItchError(f"offset {offset}: unknown message type {msg_type!r}") from None


def pack(msg_type: str, **fields) -> bytes:
    """One message body (no length prefix).  Unset fields are zero, or spaces for alpha.

    Alpha values are str or bytes, at most the field width, space-padded on the right;
    ``timestamp`` is nanoseconds since midnight; integers must fit their field.  A
    ``message_type`` keyword, if given, must agree: ``pack(d["message_type"], **d)`` with
    ``d = unpack(body)`` gives ``body`` back.
    """
    dt = _dtype(msg_type, 0)
    if fields.pop("message_type", msg_type) != msg_type:
        raise ItchError(f"pack {msg_type!r}: message_type field says otherwise")
    parts = [msg_type.encode("latin-1")]
    for name in dt.names[1:]:
        spec = dt[name]
        value = fields.pop(name, None)
        if name == "timestamp":
            ns = 0 if value is None else operator.index(value)
            if not 0 <= ns < 1 << 48:
                raise ItchError(f"pack {msg_type!r}: timestamp {ns} out of range 0 .. 2**48-1")
            parts.append(ns.to_bytes(6, "big"))
        elif spec.kind == "S":
            raw = b"" if value is None else value.encode("latin-1") if isinstance(value, str) else bytes(value)
            if len(raw) > spec.itemsize:
                raise ItchError(f"pack {msg_type!r}: {name} {raw!r} longer than {spec.itemsize} bytes")
            parts.append(raw.ljust(spec.itemsize, b" "))
        else:
            v = 0 if value is None else operator.index(value)
            if not 0 <= v < 1 << (8 * spec.itemsize):
                raise ItchError(f"pack {msg_type!r}: {name} {v} does not fit {spec.itemsize} unsigned bytes")
            parts.append(v.to_bytes(spec.itemsize, "big"))
    if fields:
        raise ItchError(f"pack {msg_type!r}: no such field(s) {sorted(fields)}; fields are {dt.names[1:]}")
    return b"".join(parts)


def unpack(body: bytes | bytearray | memoryview, offset: int = 0) -> dict:
    """The message starting at ``body[offset]`` (no length prefix) as a dict of Python values.

    Its length is implied by its type; bytes after it are left alone, so a run of
    unframed messages can be walked with ``offset += LENGTHS[d["message_type"]]``.
    Alpha fields come back as str with the right-hand space padding removed,
    ``timestamp`` as int nanoseconds.  Raises ItchError for an unknown type or a
    message running past the end of ``body``.
    """
    body = memoryview(body).cast("B")
    if not 0 <= offset < len(body):
        raise ItchError(f"offset {offset}: truncated: no message type byte ({len(body)} bytes)")
    msg_type = chr(body[offset])
    dt = _dtype(msg_type, offset)
    if len(body) - offset < dt.itemsize:
        raise ItchError(f"offset {offset}: truncated: type {msg_type!r} is {dt.itemsize} bytes, "
                        f"{len(body) - offset} remain")
    raw = bytes(body[offset:offset + dt.itemsize])
    out = {}
    for name in dt.names:
        spec, at = dt.fields[name]
        chunk = raw[at:at + spec.itemsize]
        if name == "timestamp":
            out[name] = int.from_bytes(chunk, "big")
        elif spec.kind == "S":
            out[name] = chunk.decode("latin-1").rstrip(" ")
        else:
            out[name] = int.from_bytes(chunk, "big")
    return out


def iter_unpack(data: bytes | bytearray | memoryview) -> Iterator[dict]:
    """Strictly walk length-prefixed messages, yielding ``unpack`` dicts.

    Raises ItchError at the first framing rule broken (truncated prefix or body, empty
    message, length not the spec length of its type, unknown type), naming its offset.
    """
    data = memoryview(data).cast("B")
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise ItchError(f"offset {pos}: truncated: 1 byte where a 2-byte length prefix belongs")
        n = int.from_bytes(data[pos:pos + 2], "big")
        body = pos + 2
        if n == 0:
            raise ItchError(f"offset {pos}: empty: zero length prefix")
        if n > len(data) - body:
            raise ItchError(f"offset {pos}: truncated: length prefix {n}, {len(data) - body} bytes remain")
        msg_type = chr(data[body])
        if msg_type not in LENGTHS:
            raise ItchError(f"offset {body}: unknown message type {msg_type!r}")
        if n != LENGTHS[msg_type]:
            raise ItchError(f"offset {pos}: length mismatch: type {msg_type!r} is {LENGTHS[msg_type]} bytes, "
                            f"length prefix says {n}")
        yield unpack(data[body:body + n])
        pos = body + n
