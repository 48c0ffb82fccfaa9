"""MoldUDP64 1.00: sequenced message packets over UDP, field for field after NASDAQ's spec.

Downstream packet (server -> client)::

    Session          10  alpha, the session the messages belong to
    Sequence Number   8  big-endian, sequence number of the first message in the packet
    Message Count     2  big-endian; 0 = heartbeat, 0xFFFF = end of session
    Message Blocks   ..  each: Message Length (2, big-endian) + that many bytes

Request packet (client -> re-request server): the same 20-byte header and nothing else;
its count is the number of messages asked for, starting at Sequence Number.

Two ways in: ``decode`` (one packet, raises :class:`MoldError` naming offset and rule) and
``decode_burst`` (many packets, never raises: good packets' messages plus rejects by reason).
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
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
MAX_MESSAGES_PER_PACKET = 0xFFFE  # 0xFFFF is the end-of-session marker
MAX_MESSAGE_LEN = 0xFFFF

#: The 20-byte header, mirrored as a numpy record (big-endian, packed).
HEADER_DTYPE = np.dtype([("session", "S10"), ("sequence", ">u8"), ("count", ">u2")])
assert HEADER_DTYPE.itemsize == HEADER_LEN

_HEADER = struct.Struct(">10sQH")
_BLOCK = struct.Struct(">H")


class Reject(str, Enum):
    """Why a downstream packet was refused (bulk path counts these)."""

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


def pack(session: str | bytes, first_sequence: int, messages: Iterable[bytes],
         max_payload: int) -> list[bytes]:
    """Fill packets of at most `max_payload` bytes (the UDP payload) with `messages`, in order.

    Never splits a message; packet k's Sequence Number is that of its first message.
    A message that cannot fit even an otherwise empty packet is an error.
    """
    room = max_payload - HEADER_LEN
    if room < BLOCK_HEADER_LEN:
        raise ValueError(f"max_payload {max_payload} leaves no room after the {HEADER_LEN}-byte header")
    packets: list[bytes] = []
    batch: list[bytes] = []
    used = 0
    sequence = first_sequence
    for i, m in enumerate(messages):
        need = BLOCK_HEADER_LEN + len(m)
        if need > room or len(m) > MAX_MESSAGE_LEN:
            raise ValueError(f"message {i} ({len(m)} bytes) cannot fit a {max_payload}-byte packet "
                             f"(at most {min(room - BLOCK_HEADER_LEN, MAX_MESSAGE_LEN)} bytes of message)")
        if used + need > room or len(batch) == MAX_MESSAGES_PER_PACKET:
            packets.append(encode(session, sequence, batch))
            sequence += len(batch)
            batch, used = [], 0
        batch.append(m)
        used += need
    if batch:
        packets.append(encode(session, sequence, batch))
    return packets


@dataclass
class Burst:
    """Messages from a burst of downstream packets, as flat numpy arrays.

    Message i is ``data[offset[i]:offset[i] + length[i]]`` with sequence number
    ``sequence[i]``, from input packet ``packet[i]``. ``headers[k]`` is packet k's header
    (zeros if it was refused); ``status[k]`` is "" for a good packet, else the Reject value.
    """

    data: bytes
    offset: np.ndarray
    length: np.ndarray
    sequence: np.ndarray
    packet: np.ndarray
    headers: np.ndarray
    status: list[str]
    rejects: Counter = field(default_factory=Counter)

    def message(self, i: int) -> bytes:
        o = int(self.offset[i])
        return self.data[o:o + int(self.length[i])]

    def __len__(self) -> int:
        return len(self.offset)


def decode_burst(packets: Sequence[bytes]) -> Burst:
    """Decode many packets; a packet breaking any rule is dropped whole and counted by reason."""
    data = b"".join(bytes(p) for p in packets)
    headers = np.zeros(len(packets), HEADER_DTYPE)
    offsets: list[int] = []
    lengths: list[int] = []
    sequences: list[int] = []
    owners: list[int] = []
    status: list[str] = []
    rejects: Counter = Counter()
    base = 0
    for k, p in enumerate(packets):
        try:
            session, sequence, count = _header(p)
            blocks = _blocks(p, count)
        except MoldError as e:
            rejects[e.reason.value] += 1
            status.append(e.reason.value)
        else:
            headers[k] = (session, sequence, count)
            status.append("")
            for j, (o, n) in enumerate(blocks):
                offsets.append(base + o)
                lengths.append(n)
                sequences.append(sequence + j)
                owners.append(k)
        base += len(p)
    return Burst(data=data,
                 offset=np.array(offsets, np.uint32), length=np.array(lengths, np.uint16),
                 sequence=np.array(sequences, np.uint64), packet=np.array(owners, np.uint32),
                 headers=headers, status=status, rejects=rejects)
