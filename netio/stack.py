"""The L2-L4 stack over bursts: Ethernet/802.1Q, ARP, ICMP echo, IPv4, UDP, IGMPv2.

    stack = Stack(mac="02:00:00:00:00:01", ip="10.0.0.1")
    stack.bind(9000)
    burst = port.rx_burst()
    result = stack.process(burst)            # one C call for the whole burst
    port.tx_burst(result.replies)            # ARP replies, ICMP echo replies, IGMP reports
    for payload in result.payloads(): ...    # UDP datagrams for bound ports
    port.release(burst)

IGMP membership queries for our groups are answered at once with IGMPv2 reports
(no random delay), so snooping switches keep the groups flowing to us.
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

# numpy mirror of struct stk_datagram: offsets and size from the compiled struct,
# field sizes checked against it
_DG_FIELDS = {"offset": "<i8", "length": "<u4", "frame": "<u4", "src_ip": "<u4", "dst_ip": "<u4",
              "src_port": "<u2", "dst_port": "<u2", "src_mac": ("u1", 6), "vlan": "<u2", "reserved": "<u4"}
DATAGRAM_DTYPE = np.dtype({
    "names": list(_DG_FIELDS), "formats": list(_DG_FIELDS.values()),
    "offsets": [ffi.offsetof("struct stk_datagram", f) for f in _DG_FIELDS],
    "itemsize": ffi.sizeof("struct stk_datagram"),
})
assert [(name, ffi.sizeof(field.type)) for name, field in ffi.typeof("struct stk_datagram").fields] == \
    [(name, DATAGRAM_DTYPE.fields[name][0].itemsize) for name in _DG_FIELDS], "DATAGRAM_DTYPE != struct stk_datagram"

REPLY_ROOM = 2048          # reply-buffer bytes reserved per received frame
IGMP_REPORTS = lib.STK_MAX_GROUPS   # room for the reports answering one general query
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


U8, U16, U32, I64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.int64))
CTYPES = {U8: "uint8_t[]", U16: "uint16_t[]", U32: "uint32_t[]", I64: "int64_t[]"}
BUILD_COLUMNS = {"dst_ip": U32, "dst_port": U16, "src_port": U16}


def _ptr(ctype: str, array: np.ndarray):
    return ffi.from_buffer(ctype, array, require_writable=False)


def _typed(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` itself when it already has the dtype C expects (the usual case), else a converted copy."""
    return array if array.dtype is dtype else np.ascontiguousarray(array, dtype)


def _scratch(dtype: np.dtype) -> tuple[np.ndarray, object]:
    array = np.zeros(1, dtype)
    return array, _ptr(CTYPES[dtype], array)


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
        """Frames answered (an IGMP general query is answered with one report per group)."""
        return int(np.count_nonzero(self.verdicts == REPLIED))

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
        # one-value-for-all columns of build_udp go here, so the common case allocates nothing
        self._one = {name: _scratch(dtype) for name, dtype in BUILD_COLUMNS.items()}
        self._rx_buffer = self._rx_buffer_ptr = None
        self._capacity = 0
        self._grow(64)

    def _grow(self, n: int) -> None:
        self._capacity = n
        self._verdicts = np.zeros(n, np.uint8)
        self._datagrams = np.zeros(n, DATAGRAM_DTYPE)
        self._reply_buf = np.zeros(n * REPLY_ROOM, np.uint8)
        self._reply_off = np.zeros(n + IGMP_REPORTS, np.int64)
        self._reply_len = np.zeros(n + IGMP_REPORTS, np.uint32)
        self._reply_ts = np.zeros(n + IGMP_REPORTS, np.int64)     # replies carry no stamp
        self._ptrs = (_ptr("uint8_t[]", self._verdicts),
                      ffi.cast("struct stk_datagram *", ffi.from_buffer(self._datagrams)),
                      _ptr("uint8_t[]", self._reply_buf), len(self._reply_buf),
                      _ptr("int64_t[]", self._reply_off), _ptr("uint32_t[]", self._reply_len),
                      len(self._reply_len))
        self._n_replies = ffi.new("uint32_t *")

    @classmethod
    def monitor(cls) -> Stack:
        """A stack that only watches (captures, taps): every well-formed UDP datagram is
        delivered whatever its addresses, port or VLAN; ARP, ICMP and IGMP are ignored
        and nothing is answered."""
        stack = cls("00:00:00:00:00:00", 0)
        stack._cfg.monitor = 1
        stack._bound[:] = 1
        return stack

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
        if burst.buffer is not self._rx_buffer:     # ports hand out bursts over one ring or mapping
            self._rx_buffer = burst.buffer
            self._rx_buffer_ptr = _ptr("uint8_t[]", burst.buffer)
        n_dg = lib.stk_process(self._cfg, self._bound_ptr, self._rx_buffer_ptr,
                               _ptr("int64_t[]", _typed(burst.offsets, I64)),
                               _ptr("uint32_t[]", _typed(burst.lengths, U32)), n, *self._ptrs,
                               self._n_replies, self._counts_ptr)
        k = self._n_replies[0]
        replies = Burst(self._reply_buf, self._reply_off[:k], self._reply_len[:k], self._reply_ts[:k])
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
        ips, ip_step = self._column("dst_ip", dst_ip, n)
        dports, dport_step = self._column("dst_port", dst_port, n)
        sports, sport_step = self._column("src_port", src_port, n)
        if dst_mac is None:
            if n and not np.all((np.asarray(dst_ip, np.uint32) >> 28) == 0xE):
                raise ValueError("dst_mac is needed for unicast destinations")
            macs, mac_step = bytes(6), 0
        elif isinstance(dst_mac, (bytes, bytearray, str)):
            macs, mac_step = mac_bytes(dst_mac), 0
        else:
            array = np.ascontiguousarray(dst_mac, U8)
            if array.shape != (n, 6):
                raise ValueError(f"dst_mac has shape {array.shape}, not ({n}, 6)")
            macs, mac_step = _ptr("uint8_t[]", array), 1
        lengths = _typed(payloads.lengths, U32)
        out = np.empty(int(lengths.sum()) + n * UDP_HEADROOM, U8)
        offsets = np.empty(n, I64)
        out_lengths = np.empty(n, U32)
        built = lib.stk_build_udp(self._cfg, _ptr("uint8_t[]", _typed(payloads.buffer, U8)),
                                  _ptr("int64_t[]", _typed(payloads.offsets, I64)), _ptr("uint32_t[]", lengths), n,
                                  macs, mac_step, ips, ip_step, dports, dport_step, sports, sport_step,
                                  _ptr("uint8_t[]", out), len(out), _ptr("int64_t[]", offsets),
                                  _ptr("uint32_t[]", out_lengths))
        if built < n:
            raise ValueError(f"payload {built} is {int(lengths[built])} bytes; "
                             "a UDP datagram carries at most 65507")
        return Burst(out, offsets, out_lengths, np.zeros(n, I64))

    def _column(self, name: str, values, n: int) -> tuple[object, int]:
        """A build_udp column for C: one value for all (step 0) or one per frame (step 1)."""
        if isinstance(values, (int, np.integer)):
            array, ptr = self._one[name]
            array[0] = values
            return ptr, 0
        array = np.ascontiguousarray(values, BUILD_COLUMNS[name])
        if array.shape != (n,):
            raise ValueError(f"{name} has shape {array.shape}; give one value or {n}")
        return _ptr(CTYPES[array.dtype], array), 1


def _udp_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"UDP port {port} is outside 1..65535")
    return port
