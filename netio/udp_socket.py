"""The unprivileged UDP port: one UDP socket, recvmmsg()/sendmmsg() over whole bursts.

Unlike every other backend, its frames are UDP PAYLOADS, not Ethernet frames: the
kernel's own stack has already done Ethernet, IP and UDP, so these bursts skip
``netio.stack``. The far end of each datagram travels alongside in the arrays
``peer_ip`` (host-order IPv4 integers) and ``peer_port`` of a ``UdpBurst``: the
sender on receive, the destination on send. A received UdpBurst handed back to
``tx_burst`` therefore answers each datagram to its sender.

    with UdpSocketPort("127.0.0.1:9000") as port:
        burst = port.rx_burst()
        port.tx_burst(burst)              # echo every datagram to where it came from
        port.release(burst)

Timestamps are the kernel's software receive stamps (SO_TIMESTAMPING,
``TimestampSource.KERNEL``). Received payloads lie in a ring of ``slots`` buffers of
``slot_size`` bytes; datagrams longer than a slot are dropped and counted.

Multicast: ``groups`` are joined on the interface whose address is ``multicast_if``
(bind to ":port" to take datagrams sent to the groups), and datagrams sent to a
group leave through that interface with ``multicast_ttl``.
"""
from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import socket

import numpy as np

from netio._packet import ffi, lib
from netio.port import Burst, Port, PortError, PortInfo, PortStats, TimestampSource

SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_RX_SOFTWARE, SOF_TIMESTAMPING_SOFTWARE = 1 << 3, 1 << 4
TRANSIENT_ERRORS = (errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED)
DROP_TOO_LONG = "rx datagram longer than a slot"


def _ptr(ctype: str, array: np.ndarray):
    return ffi.from_buffer(ctype, array, require_writable=False)


@dataclasses.dataclass(frozen=True, slots=True)
class UdpBurst(Burst):
    """A burst of UDP payloads with the far end of each: ``peer_ip`` (uint32, host order) and ``peer_port`` (uint16)."""

    peer_ip: np.ndarray | None = None
    peer_port: np.ndarray | None = None

    @classmethod
    def to(cls, payloads: list[bytes], ip: str | int | np.ndarray, port: int | np.ndarray) -> UdpBurst:
        """Payloads addressed to ``ip:port`` (one for all, or one per payload), ready for ``tx_burst``."""
        b = Burst.of(payloads)
        n = len(b)
        if isinstance(ip, str):
            ip = int(ipaddress.IPv4Address(ip))
        return cls(b.buffer, b.offsets, b.lengths, b.timestamps,
                   peer_ip=np.ascontiguousarray(np.broadcast_to(np.asarray(ip, np.uint32), (n,))),
                   peer_port=np.ascontiguousarray(np.broadcast_to(np.asarray(port, np.uint16), (n,))))


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PortError(f"the udp backend takes an address like 127.0.0.1:9000 or :9000, not {address!r}")
    return host or "0.0.0.0", int(port)


class UdpSocketPort(Port):
    """A UDP socket bound to ``address`` ("host:port"; port 0 picks a free one, see ``address``).

    ``peer`` ("host:port") is where bursts without their own ``peer_ip``/``peer_port`` go.
    """

    def __init__(self, address: str, queue: int = 0, *, peer: str | None = None,
                 slot_size: int = 2048, slots: int = 4096, rcvbuf: int | None = None,
                 groups: tuple[str, ...] | list[str] = (), multicast_if: str | None = None,
                 multicast_ttl: int = 1, multicast_loop: bool = False):
        if queue != 0:
            raise PortError(f"a UDP socket has one queue, 0; queue {queue} was asked for")
        host, port = _parse_address(address)
        self._peer = None
        if peer is not None:
            peer_host, peer_port = _parse_address(peer)
            self._peer = (int(ipaddress.IPv4Address(peer_host)), peer_port)
        self._sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if rcvbuf:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if groups:      # several receivers of one group on one host each get every datagram
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING,
                                  SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE)
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            self._sock = None
            raise PortError(f"cannot bind a UDP socket to {host}:{port}: {e.strerror}") from None
        self.address = self._sock.getsockname()
        try:
            self._multicast(groups, multicast_if or (self.address[0] if self.address[0] != "0.0.0.0" else None),
                            multicast_ttl, multicast_loop)
        except BaseException:
            self.close()
            raise
        self._sock.setblocking(False)
        self._slot, self._nslots = slot_size, slots
        self._buf = np.zeros(slot_size * slots, np.uint8)
        self._buf_ptr = _ptr("uint8_t[]", self._buf)
        self._head = 0              # slots filled since open
        self._tail = 0              # slots released since open
        self._filled = ffi.new("uint32_t *")
        self._truncated = ffi.new("uint64_t *")
        self._err = ffi.new("int *")
        self._stats = PortStats()
        self.info = PortInfo(backend="udp", iface=f"{self.address[0]}:{self.address[1]}", queue=0,
                             ts_source=TimestampSource.KERNEL,
                             details={"frames": "UDP payloads", "slot_size": slot_size, "slots": slots,
                                      "groups": list(groups)})

    def _multicast(self, groups, local: str | None, ttl: int, loop: bool) -> None:
        sock = self._sock
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))
        if local is not None:
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
            except OSError as e:
                raise PortError(f"cannot send multicast through the interface with address {local}: "
                                f"{e.strerror or e}") from None
        for group in groups:
            if not ipaddress.IPv4Address(group).is_multicast:
                raise PortError(f"{group} is not a multicast group")
            if local is None:
                raise PortError(f"joining {group} needs multicast_if=, the address of the interface to join on")
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                socket.inet_aton(group) + socket.inet_aton(local))
            except OSError as e:
                raise PortError(f"cannot join {group} on the interface with address {local}: {e.strerror}") from None

    def rx_burst(self, max_frames: int = 64) -> UdpBurst:
        if self._sock is None:
            raise PortError("the UDP port is closed")
        room = min(max_frames, self._nslots - (self._head - self._tail))
        if room <= 0:
            self._stats.fill_ring_empty += 1    # every slot is held by unreleased bursts
            return self._burst(0, *(np.zeros(0, t) for t in (np.int64, np.uint32, np.int64, np.uint32, np.uint16)))
        off, lengths, ts = np.empty(room, np.int64), np.empty(room, np.uint32), np.empty(room, np.int64)
        ips, ports = np.empty(room, np.uint32), np.empty(room, np.uint16)
        used = lib.udp_recv(self._sock.fileno(), self._buf_ptr, self._slot, self._nslots, self._head, room,
                            _ptr("int64_t[]", off), _ptr("uint32_t[]", lengths), _ptr("int64_t[]", ts),
                            _ptr("uint32_t[]", ips), _ptr("uint16_t[]", ports), self._filled, self._truncated)
        if used < 0:
            if -used in TRANSIENT_ERRORS:
                used = 0
                self._filled[0] = 0
            else:
                raise PortError(f"receiving on UDP {self.info.iface} failed: {os.strerror(-used)}")
        self._head += used
        n = self._filled[0]
        self._stats.rx_packets += n
        self._stats.rx_bytes += int(lengths[:n].sum())
        return self._burst(n, off, lengths, ts, ips, ports)

    def _burst(self, n: int, off, lengths, ts, ips, ports) -> UdpBurst:
        return UdpBurst(self._buf, off[:n], lengths[:n], ts[:n], TimestampSource.KERNEL, handle=self._head,
                        peer_ip=ips[:n], peer_port=ports[:n])

    def release(self, burst: Burst) -> None:
        if isinstance(burst.handle, int) and burst.buffer is self._buf:
            self._tail = max(self._tail, burst.handle)

    def tx_burst(self, burst: Burst) -> int:
        """Send each payload to its ``peer_ip``/``peer_port`` (a UdpBurst), else to ``peer``."""
        if self._sock is None:
            raise PortError("the UDP port is closed")
        n = len(burst)
        if n == 0:
            return 0
        ips = getattr(burst, "peer_ip", None)
        ports = getattr(burst, "peer_port", None)
        if ips is None or ports is None:
            if self._peer is None:
                raise PortError("no destination: send a UdpBurst with peer_ip/peer_port, or open the port with peer=")
            ips, ports = np.full(n, self._peer[0], np.uint32), np.full(n, self._peer[1], np.uint16)
        lengths = np.ascontiguousarray(burst.lengths, np.uint32)
        sent = lib.udp_send(self._sock.fileno(), _ptr("uint8_t[]", np.ascontiguousarray(burst.buffer, np.uint8)),
                            _ptr("int64_t[]", np.ascontiguousarray(burst.offsets, np.int64)),
                            _ptr("uint32_t[]", lengths), n,
                            _ptr("uint32_t[]", np.ascontiguousarray(ips, np.uint32)),
                            _ptr("uint16_t[]", np.ascontiguousarray(ports, np.uint16)), self._err)
        self._stats.tx_packets += sent
        self._stats.tx_bytes += int(lengths[:sent].sum())
        if sent < n:
            if self._err[0] not in TRANSIENT_ERRORS:
                raise PortError(f"sending datagram {sent} of a burst of {n} from UDP {self.info.iface} "
                                f"failed: {os.strerror(self._err[0])}")
            self._stats.ring_full += n - sent
        return sent

    def stats(self) -> PortStats:
        drops = {DROP_TOO_LONG: int(self._truncated[0])} if self._truncated[0] else {}
        return PortStats(**{**self._stats.as_dict(), "drops": drops})

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
