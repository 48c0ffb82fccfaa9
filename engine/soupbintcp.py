"""SoupBinTCP 3.00 framing, field for field after NASDAQ's spec.

Every packet is ``Packet Length`` (2 bytes, big-endian, counts the type byte and the
payload) + ``Packet Type`` (1 ASCII byte) + payload. Fixed payloads:

=====  =====================  ==========================================================
type   packet                 payload
=====  =====================  ==========================================================
'+'    Debug                  free text
'A'    Login Accepted         Session (10 alpha) + Sequence Number (20 numeric)
'J'    Login Rejected         Reject Reason Code (1): 'A' not authorized, 'S' no session
'S'    Sequenced Data         one higher-level message (server -> client)
'H'    Server Heartbeat       none
'Z'    End of Session         none
'L'    Login Request          Username (6) + Password (10) + Requested Session (10)
                              + Requested Sequence Number (20 numeric)
'U'    Unsequenced Data       one higher-level message (client -> server)
'R'    Client Heartbeat       none
'O'    Logout Request         none
=====  =====================  ==========================================================

Alpha fields are left-justified and padded with spaces on the right; numeric fields are
ASCII digits right-justified and padded with spaces on the left (the session in Login
Accepted is left-padded too, as the spec says). Decoders strip the padding.

OUCH rides in 'U' (client -> server) and 'S' (server -> client) packets; the same message
bytes also travel as MoldUDP64 blocks over UDP.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

HEADER_LEN = 3  # length (2) + type (1)
MAX_PAYLOAD = 0xFFFF - 1
_LEN = struct.Struct(">H")


class PacketType(str, Enum):
    DEBUG = "+"
    LOGIN_ACCEPTED = "A"
    LOGIN_REJECTED = "J"
    SEQUENCED_DATA = "S"
    SERVER_HEARTBEAT = "H"
    END_OF_SESSION = "Z"
    LOGIN_REQUEST = "L"
    UNSEQUENCED_DATA = "U"
    CLIENT_HEARTBEAT = "R"
    LOGOUT_REQUEST = "O"


class LoginRejectCode(str, Enum):
    NOT_AUTHORIZED = "A"       # invalid username/password
    SESSION_NOT_AVAILABLE = "S"  # requested session not valid or not available


#: Payload length of every fixed-size packet type (Debug and data packets are variable).
FIXED_PAYLOAD = {
    PacketType.LOGIN_ACCEPTED: 30,
    PacketType.LOGIN_REJECTED: 1,
    PacketType.SERVER_HEARTBEAT: 0,
    PacketType.END_OF_SESSION: 0,
    PacketType.LOGIN_REQUEST: 46,
    PacketType.CLIENT_HEARTBEAT: 0,
    PacketType.LOGOUT_REQUEST: 0,
}
_TYPES = {t.value.encode(): t for t in PacketType}


class SoupError(ValueError):
    """A packet broke a SoupBinTCP rule; ``offset`` is where, ``rule`` says which."""

    def __init__(self, offset: int, rule: str):
        super().__init__(f"SoupBinTCP: offset {offset}: {rule}")
        self.offset = offset
        self.rule = rule


@dataclass(frozen=True)
class Packet:
    type: PacketType
    payload: bytes = b""


@dataclass(frozen=True)
class LoginRequest:
    username: str
    password: str
    session: str
    sequence: int  # 0 = start from the most recent; 1 = from the start of the session


@dataclass(frozen=True)
class LoginAccepted:
    session: str
    sequence: int  # sequence number of the next Sequenced Data packet


def _alpha(value: str, width: int, name: str, right_justify: bool = False) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{name} {value!r} is longer than {width} characters")
    return raw.rjust(width, b" ") if right_justify else raw.ljust(width, b" ")


def _numeric(value: int, width: int, name: str) -> bytes:
    if value < 0 or len(str(value)) > width:
        raise ValueError(f"{name} {value} does not fit {width} ASCII digits")
    return str(value).encode().rjust(width, b" ")


def encode(ptype: PacketType | str, payload: bytes = b"") -> bytes:
    """Frame `payload` as one packet of type `ptype`."""
    ptype = PacketType(ptype)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte maximum")
    fixed = FIXED_PAYLOAD.get(ptype)
    if fixed is not None and len(payload) != fixed:
        raise ValueError(f"{ptype.name} payload must be {fixed} bytes, got {len(payload)}")
    return _LEN.pack(len(payload) + 1) + ptype.value.encode() + bytes(payload)


def debug(text: str) -> bytes:
    return encode(PacketType.DEBUG, text.encode("ascii"))


def login_accepted(session: str, sequence: int) -> bytes:
    return encode(PacketType.LOGIN_ACCEPTED, _alpha(session, 10, "session", right_justify=True)
                  + _numeric(sequence, 20, "sequence number"))


def login_rejected(code: LoginRejectCode | str) -> bytes:
    return encode(PacketType.LOGIN_REJECTED, LoginRejectCode(code).value.encode())


def sequenced(message: bytes) -> bytes:
    return encode(PacketType.SEQUENCED_DATA, message)


def server_heartbeat() -> bytes:
    return encode(PacketType.SERVER_HEARTBEAT)


def end_of_session() -> bytes:
    return encode(PacketType.END_OF_SESSION)


def login_request(username: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    """Login Request; a blank session means the currently active one."""
    return encode(PacketType.LOGIN_REQUEST,
                  _alpha(username, 6, "username") + _alpha(password, 10, "password")
                  + _alpha(session, 10, "requested session", right_justify=True)
                  + _numeric(sequence, 20, "requested sequence number"))


def unsequenced(message: bytes) -> bytes:
    return encode(PacketType.UNSEQUENCED_DATA, message)


def client_heartbeat() -> bytes:
    return encode(PacketType.CLIENT_HEARTBEAT)


def logout_request() -> bytes:
    return encode(PacketType.LOGOUT_REQUEST)


def decode(data: bytes, offset: int = 0) -> tuple[Packet, int]:
    """Parse the packet at `offset`; returns it and the offset just after it.

    Raises :class:`SoupError` if the packet is incomplete, empty, of unknown type or of
    the wrong size for its type.
    """
    if len(data) - offset < 2:
        raise SoupError(offset, f"packet length field needs 2 bytes, {len(data) - offset} remain")
    (length,) = _LEN.unpack_from(data, offset)
    if length == 0:
        raise SoupError(offset, "packet length 0 leaves no room for the packet type")
    end = offset + 2 + length
    if end > len(data):
        raise SoupError(offset, f"packet length {length} runs past the end "
                        f"({len(data) - offset - 2} bytes remain)")
    ptype = _TYPES.get(bytes(data[offset + 2:offset + 3]))
    if ptype is None:
        raise SoupError(offset + 2, f"unknown packet type {bytes(data[offset + 2:offset + 3])!r}")
    payload = bytes(data[offset + 3:end])
    fixed = FIXED_PAYLOAD.get(ptype)
    if fixed is not None and len(payload) != fixed:
        raise SoupError(offset, f"{ptype.name} payload must be {fixed} bytes, got {len(payload)}")
    return Packet(ptype, payload), end


def decode_all(data: bytes) -> list[Packet]:
    """Parse a buffer that holds whole packets only."""
    packets, pos = [], 0
    while pos < len(data):
        packet, pos = decode(data, pos)
        packets.append(packet)
    return packets


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip(" ")


def _number(raw: bytes, offset: int, name: str) -> int:
    text = raw.decode("ascii", "replace").strip(" ")
    if not text.isdigit():
        raise SoupError(offset, f"{name} {raw!r} is not a space-padded ASCII number")
    return int(text)


def parse_login_request(packet: Packet) -> LoginRequest:
    p = packet.payload
    return LoginRequest(_text(p[0:6]), _text(p[6:16]), _text(p[16:26]),
                        _number(p[26:46], 29, "requested sequence number"))


def parse_login_accepted(packet: Packet) -> LoginAccepted:
    p = packet.payload
    return LoginAccepted(_text(p[0:10]), _number(p[10:30], 13, "sequence number"))


class Framer:
    """Reassembles packets from a TCP byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Packet]:
        """Add bytes; return every packet now complete.

        A broken packet raises SoupError: framing is lost, so the session should be dropped.
        """
        self._buf += chunk
        packets, pos = [], 0
        while len(self._buf) - pos >= 2:
            (length,) = _LEN.unpack_from(self._buf, pos)
            if len(self._buf) - pos - 2 < length:
                break
            packet, pos = decode(self._buf, pos)
            packets.append(packet)
        del self._buf[:pos]
        return packets

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buf)
