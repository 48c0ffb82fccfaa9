"""The L2-L4 stack over bursts: Ethernet/802.1Q, ARP, ICMP echo, IPv4, UDP, IGMPv2.

    stack = Stack(mac="02:00:00:00:00:01", ip="10.0.0.1")
    stack.bind(9000)
    burst = port.rx_burst()
    result = stack.process(burst)            # one C call for the whole burst
    port.tx_burst(result.replies)            # ARP replies and ICMP echo replies
    for payload in result.payloads(): ...    # UDP datagrams for bound ports
    port.release(burst)

Every frame gets exactly one verdict: delivered, replied, or dropped for a reason
(``VERDICTS``), so received = delivered + replied + dropped, per burst and in
``Stack.counters()``. Addresses in arrays are host-order integers (``ip_int``),
MACs are 6-byte rows. The per-frame work is C (``cffi_build/stack.c``).
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator

import numpy as np

from netio._stack import ffi, lib
from netio.port import Burst

VERDICTS: tuple[str, ...] = tuple(ffi.string(lib.stk_verdict_name(v)).decode()
                                  for v in range(lib.STK_N_VERDICTS))
DELIVERED, REPLIED = 0, 1
DROP_REASONS: tuple[str, ...] = VERDICTS[2:]

# numpy mirror of struct stk_datagram, checked against the compiled layout below
DATAGRAM_DTYPE = np.dtype({
    "names": ["offset", "length", "frame", "src_ip", "dst_ip", "src_port", "dst_port",
              "src_mac", "vlan", "reserved"],
    "formats": ["<i8", "<u4", "<u4", "<u4", "<u4", "<u2", "<u2", ("u1", 6), "<u2", "<u4"],
    "offsets": [ffi.offsetof("struct stk_datagram", f) for f in
                ("offset", "length", "frame", "src_ip", "dst_ip", "src_port", "dst_port",
                 "src_mac", "vlan", "reserved")],
    "itemsize": ffi.sizeof("struct stk_datagram"),
})
assert DATAGRAM_DTYPE.itemsize == 40, "struct stk_datagram changed: update DATAGRAM_DTYPE"

REPLY_ROOM = 2048          # reply-buffer bytes reserved per received frame
UDP_HEADROOM = 14 + 4 + 20 + 8


def ip_int(address: str | int | ipaddress.IPv4Address) -> int:
    """An IPv4 address as the host-order integer the stack's arrays hold."""
    return int(ipaddress.IPv4Address(address))


def mac_bytes(mac: str | bytes) -> bytes:
    """A MAC given as "aa:bb:cc:dd:ee:ff" or 6 bytes, as 6 bytes."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"{mac!r} is not a MAC address like 02:00:00:00:00:01")
    return bytes(int(p, 16) for p in parts)


def multicast_mac(group: str | int) -> bytes:
    """The Ethernet address an IPv4 multicast group maps to (RFC 1112)."""
    g = ip_int(group)
    return bytes([0x01, 0x00, 0x5e, (g >> 16) & 0x7f, (g >> 8) & 0xff, g & 0xff])


def _ptr(ctype: str, array: np.ndarray):
    return ffi.from_buffer(ctype, array, require_writable=False)


def _burst_ptrs(burst: Burst) -> tuple:
    """C pointers to a burst's buffer, offsets and lengths (converted if not in the API's dtypes)."""
    return (_ptr("uint8_t[]", np.ascontiguousarray(burst.buffer, np.uint8)),
            _ptr("int64_t[]", np.ascontiguousarray(burst.offsets, np.int64)),
            _ptr("uint32_t[]", np.ascontiguousarray(burst.lengths, np.uint32)))


@dataclasses.dataclass(frozen=True, slots=True)
class StackResult:
    """What ``Stack.process`` made of one burst; valid until the next ``process`` call.

    ``datagrams`` is a DATAGRAM_DTYPE array (one row per UDP datagram delivered,
    ``offset``/``length`` locate the payload in ``buffer``, ``frame`` is the index of
    its frame in the burst); ``replies`` is a burst ready for ``tx_burst``;
    ``verdicts[i]`` is the index into VERDICTS of frame i.
    """

    buffer: np.ndarray
    verdicts: np.ndarray
    datagrams: np.ndarray
    replies: Burst

    def __len__(self) -> int:
        return len(self.verdicts)

    @property
    def delivered(self) -> int:
        return len(self.datagrams)

    @property
    def replied(self) -> int:
        return len(self.replies)

    @property
    def drops(self) -> dict[str, int]:
        """Frames of this burst dropped, by reason (reasons with no drops left out)."""
        counts = np.bincount(self.verdicts, minlength=len(VERDICTS))
        return {VERDICTS[v]: int(counts[v]) for v in np.flatnonzero(counts[2:]) + 2}

    def payload(self, i: int) -> np.ndarray:
        """Payload of delivered datagram ``i`` as a view into the burst's buffer."""
        start = int(self.datagrams["offset"][i])
        return self.buffer[start:start + int(self.datagrams["length"][i])]

    def payloads(self) -> Iterator[np.ndarray]:
        return (self.payload(i) for i in range(len(self.datagrams)))

    def payload_burst(self) -> Burst:
        """The delivered payloads as a burst over the same buffer (e.g. to echo them)."""
        n = len(self.datagrams)
        return Burst(self.buffer, self.datagrams["offset"].copy(), self.datagrams["length"].copy(),
                     np.zeros(n, np.int64))


class Stack:
    """One IPv4 host on one port: our MAC/IP (and VLAN), bound UDP ports, joined groups.

    ``vlan=None`` accepts untagged (and priority-tagged) frames; ``vlan=N`` accepts only
    frames tagged with VID N and tags everything it builds. Replies carry the tag of
    the request.
    """

    def __init__(self, mac: str | bytes, ip: str | int, *, vlan: int | None = None,
                 ttl: int = 64, multicast_ttl: int = 1):
        if vlan is not None and not 1 <= vlan <= 4094:
            raise ValueError(f"VLAN id {vlan} is outside 1..4094")
        self.mac = mac_bytes(mac)
        self.ip = str(ipaddress.IPv4Address(ip))
        self.vlan = vlan
        self._cfg = ffi.new("struct stk_config *")
        self._cfg.mac = list(self.mac)
        self._cfg.vlan = vlan or 0
        self._cfg.ip = ip_int(ip)
        self._cfg.ttl = ttl
        self._cfg.mcast_ttl = multicast_ttl
        self._bound = np.zeros(65536, np.uint8)
        self._bound_ptr = _ptr("uint8_t[]", self._bound)
        self._counts = np.zeros(len(VERDICTS), np.uint64)
        self._counts_ptr = _ptr("uint64_t[]", self._counts)
        self._capacity = 0
        self._grow(64)

    def _grow(self, n: int) -> None:
        self._capacity = n
        self._verdicts = np.zeros(n, np.uint8)
        self._datagrams = np.zeros(n, DATAGRAM_DTYPE)
        self._reply_buf = np.zeros(n * REPLY_ROOM, np.uint8)
        self._reply_off = np.zeros(n, np.int64)
        self._reply_len = np.zeros(n, np.uint32)
        self._ptrs = (_ptr("uint8_t[]", self._verdicts),
                      ffi.cast("struct stk_datagram *", ffi.from_buffer(self._datagrams)),
                      _ptr("uint8_t[]", self._reply_buf), len(self._reply_buf),
                      _ptr("int64_t[]", self._reply_off), _ptr("uint32_t[]", self._reply_len))
        self._n_replies = ffi.new("uint32_t *")

    # -- configuration --------------------------------------------------------------------
    def bind(self, port: int) -> None:
        """Deliver UDP datagrams for destination ``port``."""
        self._bound[_udp_port(port)] = 1

    def unbind(self, port: int) -> None:
        self._bound[_udp_port(port)] = 0

    @property
    def bound_ports(self) -> list[int]:
        return np.flatnonzero(self._bound).tolist()

    @property
    def groups(self) -> list[str]:
        return [str(ipaddress.IPv4Address(self._cfg.groups[i])) for i in range(self._cfg.n_groups)]

    def join(self, group: str | int) -> Burst:
        """Accept frames for multicast ``group``; returns the IGMPv2 membership report to send."""
        g = ip_int(group)
        if not ipaddress.IPv4Address(g).is_multicast:
            raise ValueError(f"{ipaddress.IPv4Address(g)} is not a multicast group")
        if g not in [self._cfg.groups[i] for i in range(self._cfg.n_groups)]:
            if self._cfg.n_groups == lib.STK_MAX_GROUPS:
                raise ValueError(f"already joined {lib.STK_MAX_GROUPS} groups, the most a Stack holds")
            self._cfg.groups[self._cfg.n_groups] = g
            self._cfg.n_groups += 1
        return self._igmp(g, leave=False)

    def leave(self, group: str | int) -> Burst:
        """Stop accepting ``group``; returns the IGMPv2 leave message to send."""
        g = ip_int(group)
        kept = [x for x in (self._cfg.groups[i] for i in range(self._cfg.n_groups)) if x != g]
        for i, x in enumerate(kept):
            self._cfg.groups[i] = x
        self._cfg.n_groups = len(kept)
        return self._igmp(g, leave=True)

    def _igmp(self, group: int, leave: bool) -> Burst:
        out = np.zeros(64, np.uint8)
        n = lib.stk_build_igmp(self._cfg, group, int(leave), _ptr("uint8_t[]", out))
        return Burst.of([out[:n]])

    # -- receive --------------------------------------------------------------------------
    def process(self, burst: Burst) -> StackResult:
        """Classify every frame of ``burst`` in one C call (see the module docstring)."""
        n = len(burst)
        if n > self._capacity:
            self._grow(max(n, 2 * self._capacity))
        verdicts, dgrams, rbuf, rcap, roff, rlen = self._ptrs
        n_dg = lib.stk_process(self._cfg, self._bound_ptr, *_burst_ptrs(burst), n,
                               verdicts, dgrams, rbuf, rcap, roff, rlen, self._n_replies,
                               self._counts_ptr)
        k = self._n_replies[0]
        replies = Burst(self._reply_buf, self._reply_off[:k], self._reply_len[:k], np.zeros(k, np.int64))
        return StackResult(burst.buffer, self._verdicts[:n], self._datagrams[:n_dg], replies)

    def counters(self) -> dict[str, int | dict[str, int]]:
        """Frames seen since the stack was made: received = delivered + replied + sum(drops)."""
        c = self._counts
        return {"received": int(c.sum()), "delivered": int(c[DELIVERED]), "replied": int(c[REPLIED]),
                "drops": {VERDICTS[v]: int(c[v]) for v in np.flatnonzero(c[2:]) + 2}}

    # -- transmit -------------------------------------------------------------------------
    def build_udp(self, payloads: Burst, dst_ip: np.ndarray | int | str,
                  dst_port: np.ndarray | int, src_port: np.ndarray | int,
                  dst_mac: np.ndarray | bytes | str | None = None) -> Burst:
        """Complete Ethernet/IPv4/UDP frames (checksums filled) around ``payloads``, in one C call.

        ``dst_ip``/``dst_port``/``src_port`` are per-frame arrays or one value for all;
        ``dst_mac`` is an (n, 6) uint8 array or one MAC, and may be omitted when every
        destination is a multicast group (their MAC is derived from the group).
        """
        n = len(payloads)
        if isinstance(dst_ip, (str, ipaddress.IPv4Address)):
            dst_ip = ip_int(dst_ip)
        ips = np.ascontiguousarray(np.broadcast_to(np.asarray(dst_ip, np.uint32), (n,)))
        dports = np.ascontiguousarray(np.broadcast_to(np.asarray(dst_port, np.uint16), (n,)))
        sports = np.ascontiguousarray(np.broadcast_to(np.asarray(src_port, np.uint16), (n,)))
        if dst_mac is None:
            if n and not np.all((ips >> 28) == 0xE):
                raise ValueError("dst_mac is needed for unicast destinations")
            macs = np.zeros((n, 6), np.uint8)
        elif isinstance(dst_mac, (bytes, bytearray, str)):
            macs = np.tile(np.frombuffer(mac_bytes(dst_mac), np.uint8), (n, 1))
        else:
            macs = np.ascontiguousarray(np.broadcast_to(np.asarray(dst_mac, np.uint8), (n, 6)))
        out = np.empty(int(payloads.lengths.sum()) + n * UDP_HEADROOM, np.uint8)
        offsets = np.empty(n, np.int64)
        lengths = np.empty(n, np.uint32)
        built = lib.stk_build_udp(self._cfg, *_burst_ptrs(payloads), n,
                                  _ptr("uint8_t[]", macs), _ptr("uint32_t[]", ips),
                                  _ptr("uint16_t[]", dports), _ptr("uint16_t[]", sports),
                                  _ptr("uint8_t[]", out), len(out),
                                  _ptr("int64_t[]", offsets), _ptr("uint32_t[]", lengths))
        if built < n:
            raise ValueError(f"payload {built} is {int(payloads.lengths[built])} bytes; "
                             "a UDP datagram carries at most 65507")
        return Burst(out, offsets, lengths, np.zeros(n, np.int64))


def _udp_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"UDP port {port} is outside 1..65535")
    return port
