"""MoldUDP64 1.00: sequenced message packets over UDP, field for field after NASDAQ's spec.

Downstream packet (server -> client)::

    Session          10  alpha, the session the messages belong to
    Sequence Number   8  big-endian, sequence number of the first message in the packet
    Message Count     2  big-endian; 0 = heartbeat, 0xFFFF = end of session
    Message Blocks   ..  each: Message Length (2, big-endian) + that many bytes

Request packet (client -> re-request server): the same 20-byte header and nothing else;
its count is the number of messages asked for, starting at Sequence Number.

Per packet: ``encode``/``decode`` (the latter raises :class:`MoldError` naming offset and
rule). Per burst, in C (``engine._moldudp64``) with a Python reference beside it:
``decode_views``/``decode_burst`` (never raise: good packets' messages plus rejects by
reason) and ``pack_stream``/``pack`` (fill packets up to a payload size limit).
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

import numpy as np

SESSION_LEN = 10
HEADER_LEN = 20
BLOCK_HEADER_LEN = 2
END_OF_SESSION_COUNT = 0xFFFF
MAX_MESSAGES_PER_PACKET = 0xFFFE  # 0xFFFF is the end-of-session marker
MAX_MESSAGE_LEN = 0xFFFF
MAX_PAYLOAD = 65507  # the largest UDP payload over IPv4

#: The 20-byte header, mirrored as a numpy record (big-endian, packed).
HEADER_DTYPE = np.dtype([("session", "S10"), ("sequence", ">u8"), ("count", ">u2")])
assert HEADER_DTYPE.itemsize == HEADER_LEN

_HEADER = struct.Struct(">10sQH")
_BLOCK = struct.Struct(">H")


class Reject(str, Enum):
    """Why a downstream packet was refused (bulk path counts these).

    The order is that of MOLD_R_* in cffi_build/moldudp64.h.
    """

    TRUNCATED_HEADER = "truncated_header"            # fewer than 20 bytes
    COUNT_EXCEEDS_BLOCKS = "count_exceeds_blocks"    # count says more blocks than the packet holds
    BLOCK_OVERRUN = "block_overrun"                  # a block's length runs past the end
    TRAILING_BYTES = "trailing_bytes"                # bytes left after `count` blocks
    END_OF_SESSION_WITH_DATA = "end_of_session_with_data"  # count 0xFFFF but a body follows


class MoldError(ValueError):
    """A packet broke a MoldUDP64 rule; ``offset`` is where, ``rule`` says which."""

    def __init__(self, offset: int, rule: str, reason: Reject | None = None):
        super().__init__(f"MoldUDP64: offset {offset}: {rule}")
        self.offset = offset
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class Packet:
    """One decoded downstream packet."""

    session: str
    sequence: int
    messages: tuple[bytes, ...] = ()
    end_of_session: bool = False

    @property
    def heartbeat(self) -> bool:
        return not self.messages and not self.end_of_session

    @property
    def next_sequence(self) -> int:
        """Sequence number the next packet of this session should carry."""
        return self.sequence + len(self.messages)


@dataclass(frozen=True)
class Request:
    """A retransmission request: `count` messages from `sequence` of `session`."""

    session: str
    sequence: int
    count: int


def _session_bytes(session: str | bytes) -> bytes:
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LEN:
        raise ValueError(f"session {raw!r} is longer than {SESSION_LEN} bytes")
    return raw.ljust(SESSION_LEN, b" ")


def _check_sequence(sequence: int) -> None:
    if not 0 <= sequence < 1 << 64:
        raise ValueError(f"sequence {sequence} does not fit 8 unsigned bytes")


def encode(session: str | bytes, sequence: int, messages: Sequence[bytes] = ()) -> bytes:
    """A downstream packet carrying `messages` (none: a heartbeat)."""
    _check_sequence(sequence)
    if len(messages) > MAX_MESSAGES_PER_PACKET:
        raise ValueError(f"{len(messages)} messages: at most {MAX_MESSAGES_PER_PACKET} fit one packet")
    parts = [_HEADER.pack(_session_bytes(session), sequence, len(messages))]
    for i, m in enumerate(messages):
        if len(m) > MAX_MESSAGE_LEN:
            raise ValueError(f"message {i} is {len(m)} bytes; a block holds at most {MAX_MESSAGE_LEN}")
        parts.append(_BLOCK.pack(len(m)))
        parts.append(bytes(m))
    return b"".join(parts)


def heartbeat(session: str | bytes, next_sequence: int) -> bytes:
    """Heartbeat: count 0, Sequence Number = the next message's sequence number."""
    return encode(session, next_sequence)


def end_of_session(session: str | bytes, next_sequence: int) -> bytes:
    """End of session: count 0xFFFF, no blocks."""
    _check_sequence(next_sequence)
    return _HEADER.pack(_session_bytes(session), next_sequence, END_OF_SESSION_COUNT)


def request(session: str | bytes, sequence: int, count: int) -> bytes:
    """Request packet asking for `count` messages starting at `sequence`."""
    _check_sequence(sequence)
    if not 0 < count < END_OF_SESSION_COUNT:
        raise ValueError(f"requested count {count} must be 1..{END_OF_SESSION_COUNT - 1}")
    return _HEADER.pack(_session_bytes(session), sequence, count)


def decode_request(data: bytes) -> Request:
    """Parse a request packet; it is exactly the 20-byte header."""
    if len(data) != HEADER_LEN:
        raise MoldError(min(len(data), HEADER_LEN),
                        f"request packet must be exactly {HEADER_LEN} bytes, got {len(data)}")
    session, sequence, count = _HEADER.unpack(data)
    return Request(session.decode("ascii", "replace").rstrip(" "), sequence, count)


def _blocks(data: bytes | memoryview, count: int) -> list[tuple[int, int]]:
    """(offset, length) of each block; raises MoldError on the first broken rule."""
    n = len(data)
    if count == END_OF_SESSION_COUNT:
        if n != HEADER_LEN:
            raise MoldError(HEADER_LEN, f"end-of-session packet (count 0xFFFF) carries "
                            f"{n - HEADER_LEN} bytes after the header", Reject.END_OF_SESSION_WITH_DATA)
        return []
    blocks = []
    pos = HEADER_LEN
    for i in range(count):
        if pos + BLOCK_HEADER_LEN > n:
            raise MoldError(pos, f"count is {count} but the packet ends after {i} blocks",
                            Reject.COUNT_EXCEEDS_BLOCKS)
        (length,) = _BLOCK.unpack_from(data, pos)
        if pos + BLOCK_HEADER_LEN + length > n:
            raise MoldError(pos, f"block {i} says {length} bytes but only "
                            f"{n - pos - BLOCK_HEADER_LEN} remain", Reject.BLOCK_OVERRUN)
        blocks.append((pos + BLOCK_HEADER_LEN, length))
        pos += BLOCK_HEADER_LEN + length
    if pos != n:
        raise MoldError(pos, f"{n - pos} bytes follow the {count} blocks the count announces",
                        Reject.TRAILING_BYTES)
    return blocks


def _header(data: bytes | memoryview) -> tuple[bytes, int, int]:
    if len(data) < HEADER_LEN:
        raise MoldError(len(data), f"header needs {HEADER_LEN} bytes, packet has {len(data)}",
                        Reject.TRUNCATED_HEADER)
    return _HEADER.unpack_from(data, 0)


def decode(data: bytes) -> Packet:
    """Parse one downstream packet, raising :class:`MoldError` on any broken rule."""
    session, sequence, count = _header(data)
    blocks = _blocks(data, count)
    return Packet(session=session.decode("ascii", "replace").rstrip(" "), sequence=sequence,
                  messages=tuple(bytes(data[o:o + n]) for o, n in blocks),
                  end_of_session=count == END_OF_SESSION_COUNT)


@dataclass
class Packed:
    """Downstream packets back to back in ``data``: packet k is
    ``data[offset[k]:offset[k] + length[k]]``, carrying ``count[k]`` messages from
    ``sequence[k]``."""

    data: bytes
    offset: np.ndarray
    length: np.ndarray
    sequence: np.ndarray
    count: np.ndarray

    def packets(self) -> list[bytes]:
        return [self.data[o:o + n] for o, n in zip(self.offset.tolist(), self.length.tolist())]

    def __len__(self) -> int:
        return len(self.offset)


def _pack_python(session: bytes, first_sequence: int, stream: bytes, max_payload: int) -> Packed:
    """Reference packer: per-message Python, kept to hold the C loop to account."""
    room = max_payload - HEADER_LEN
    out, offs, lens, seqs, counts = bytearray(), [], [], [], []
    pos, index, sequence = 0, 0, first_sequence
    while pos < len(stream):
        start, count = pos, 0
        while pos < len(stream) and count < MAX_MESSAGES_PER_PACKET:
            if len(stream) - pos < 2 or len(stream) - pos - 2 < _BLOCK.unpack_from(stream, pos)[0]:
                raise ValueError(f"block stream: message {index} runs past the end (offset {pos})")
            block = 2 + _BLOCK.unpack_from(stream, pos)[0]
            if block > room:
                raise ValueError(f"message {index} ({block - 2} bytes) cannot fit a {max_payload}-byte "
                                 f"packet (at most {room - 2} bytes of message)")
            if pos - start + block > room:
                break
            pos, count, index = pos + block, count + 1, index + 1
        offs.append(len(out))
        out += _HEADER.pack(session, sequence, count) + stream[start:pos]
        lens.append(HEADER_LEN + pos - start)
        seqs.append(sequence)
        counts.append(count)
        sequence += count
    return Packed(bytes(out), np.array(offs, np.int64), np.array(lens, np.uint32),
                  np.array(seqs, np.uint64), np.array(counts, np.uint16))


def pack_stream(session: str | bytes, first_sequence: int, stream: bytes, max_payload: int,
                *, impl: str = "c") -> Packed:
    """Cut a block stream (2-byte length + message, repeated: what ``engine.itch.encode``
    produces) into downstream packets of at most `max_payload` bytes (the UDP payload).

    Never splits a message; packet k's Sequence Number is that of its first message. A
    message too large for any packet, or a block running past the stream's end, is an error.
    """
    _check_sequence(first_sequence)
    if not HEADER_LEN + BLOCK_HEADER_LEN <= max_payload <= MAX_PAYLOAD:
        raise ValueError(f"max_payload {max_payload} must be {HEADER_LEN + BLOCK_HEADER_LEN}.."
                         f"{MAX_PAYLOAD} (header + one block .. the largest UDP payload)")
    session = _session_bytes(session)
    if impl != "c" or _native is None:
        return _pack_python(session, first_sequence, bytes(stream), max_payload)
    ffi, lib = _native
    # Greedy filling: two neighbouring packets hold more than one packet's room, and with a
    # UDP-sized room the 0xFFFE-message limit never cuts first, so this bounds the count.
    cap = 2 * len(stream) // (max_payload - HEADER_LEN) + 2
    out = np.empty(len(stream) + HEADER_LEN * cap, np.uint8)
    offs, lens = np.empty(cap, np.int64), np.empty(cap, np.uint32)
    seqs, counts = np.empty(cap, np.uint64), np.empty(cap, np.uint16)
    error, index = ffi.new("int *"), ffi.new("uint64_t *")
    n = lib.mold_pack(session, first_sequence, ffi.from_buffer(stream), len(stream), max_payload,
                      ffi.from_buffer("uint8_t[]", out), ffi.from_buffer("int64_t[]", offs),
                      ffi.from_buffer("uint32_t[]", lens), ffi.from_buffer("uint64_t[]", seqs),
                      ffi.from_buffer("uint16_t[]", counts), error, index)
    if n < 0:
        if error[0] == lib.MOLD_E_BLOCK_PAST_END:
            raise ValueError(f"block stream: message {index[0]} runs past the end")
        raise ValueError(f"message {index[0]} cannot fit a {max_payload}-byte packet "
                         f"(at most {max_payload - HEADER_LEN - BLOCK_HEADER_LEN} bytes of message)")
    end = int(offs[n - 1] + lens[n - 1]) if n else 0
    return Packed(out[:end].tobytes(), offs[:n], lens[:n], seqs[:n], counts[:n])


def pack(session: str | bytes, first_sequence: int, messages: Iterable[bytes],
         max_payload: int) -> list[bytes]:
    """Fill packets of at most `max_payload` bytes (the UDP payload) with `messages`, in order.

    Never splits a message; packet k's Sequence Number is that of its first message.
    A message that cannot fit even an otherwise empty packet is an error.
    """
    blocks = []
    for i, m in enumerate(messages):
        if len(m) > MAX_MESSAGE_LEN:
            raise ValueError(f"message {i} is {len(m)} bytes; a block holds at most {MAX_MESSAGE_LEN}")
        blocks += (_BLOCK.pack(len(m)), bytes(m))
    return pack_stream(session, first_sequence, b"".join(blocks), max_payload).packets()


@dataclass
class Decoded:
    """Messages from a burst of downstream packets, as flat numpy arrays.

    Message i is ``buffer[offset[i]:offset[i] + length[i]]`` with sequence number
    ``sequence[i]``, from input packet ``packet[i]``. ``headers[k]`` is packet k's header
    (zeros if refused); ``status[k]`` is 0 for a good packet, else 1 + the index of its
    :class:`Reject` in ``REJECTS``.
    """

    buffer: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    sequence: np.ndarray
    packet: np.ndarray
    headers: np.ndarray
    status: np.ndarray
    rejects: Counter = field(default_factory=Counter)

    def message(self, i: int) -> bytes:
        o = int(self.offset[i])
        return self.buffer[o:o + int(self.length[i])].tobytes()

    def reasons(self) -> list[str]:
        """Per packet: "" if good, else the Reject value."""
        return ["" if s == 0 else REJECTS[s - 1].value for s in self.status.tolist()]

    def __len__(self) -> int:
        return len(self.offset)


REJECTS = list(Reject)


def _scan_python(buffer: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
    """Reference decoder: per-packet Python, kept to hold the C loop to account."""
    headers = np.zeros(len(offsets), HEADER_DTYPE)
    status = np.zeros(len(offsets), np.uint8)
    msg_off, msg_len, msg_seq, msg_pkt = [], [], [], []
    rejects = [0] * len(REJECTS)
    for k, (o, n) in enumerate(zip(offsets.tolist(), lengths.tolist())):
        p = buffer[o:o + n].tobytes()
        try:
            session, sequence, count = _header(p)
            blocks = _blocks(p, count)
        except MoldError as e:
            i = REJECTS.index(e.reason)
            rejects[i] += 1
            status[k] = 1 + i
            continue
        headers[k] = (session, sequence, count)
        for j, (bo, bn) in enumerate(blocks):
            msg_off.append(o + bo)
            msg_len.append(bn)
            msg_seq.append(sequence + j)
            msg_pkt.append(k)
    return (headers, status, np.array(msg_off, np.int64), np.array(msg_len, np.uint16),
            np.array(msg_seq, np.uint64), np.array(msg_pkt, np.uint32), rejects)


def decode_views(buffer, offsets, lengths, *, impl: str = "c") -> Decoded:
    """Decode the packets lying in `buffer` at `offsets` for `lengths` bytes (a burst's
    UDP payloads, say). A packet breaking any rule is dropped whole and counted by reason;
    nothing raises."""
    buffer = np.frombuffer(buffer, np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    offsets = np.ascontiguousarray(offsets, np.int64)
    lengths = np.ascontiguousarray(lengths, np.uint32)
    if len(offsets) != len(lengths) or np.any(offsets + lengths > len(buffer)) or np.any(offsets < 0):
        raise ValueError("offsets/lengths must describe packets inside the buffer")
    if impl != "c" or _native is None:
        headers, status, off, ln, seq, pkt, rejects = _scan_python(buffer, offsets, lengths)
    else:
        ffi, lib = _native
        n = len(offsets)
        cap = int(np.maximum(lengths.astype(np.int64) - HEADER_LEN, 0).sum()) // 2 + 1
        headers, status = np.empty(n, HEADER_DTYPE), np.empty(n, np.uint8)
        off, ln = np.empty(cap, np.int64), np.empty(cap, np.uint16)
        seq, pkt = np.empty(cap, np.uint64), np.empty(cap, np.uint32)
        counts = np.zeros(len(REJECTS), np.uint32)
        m = lib.mold_scan(ffi.from_buffer("uint8_t[]", buffer), ffi.from_buffer("int64_t[]", offsets),
                          ffi.from_buffer("uint32_t[]", lengths), n,
                          ffi.from_buffer("uint8_t[]", headers), ffi.from_buffer("uint8_t[]", status),
                          ffi.from_buffer("int64_t[]", off), ffi.from_buffer("uint16_t[]", ln),
                          ffi.from_buffer("uint64_t[]", seq), ffi.from_buffer("uint32_t[]", pkt),
                          ffi.from_buffer("uint32_t[]", counts))
        off, ln, seq, pkt, rejects = off[:m], ln[:m], seq[:m], pkt[:m], counts.tolist()
    return Decoded(buffer, off, ln, seq, pkt, headers, status,
                   Counter({r.value: c for r, c in zip(REJECTS, rejects) if c}))


def decode_burst(packets: Sequence[bytes], *, impl: str = "c") -> Decoded:
    """Decode a list of packets (see :func:`decode_views`)."""
    lengths = np.fromiter((len(p) for p in packets), np.uint32, len(packets))
    offsets = np.zeros(len(packets), np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return decode_views(b"".join(bytes(p) for p in packets), offsets, lengths, impl=impl)


def _load_native():
    try:
        from engine._moldudp64 import ffi, lib
    except ImportError:
        return None
    return ffi, lib


_native = _load_native()
#: True when the C bulk paths (``engine._moldudp64``) are built and in use.
NATIVE: bool = _native is not None
