"""UDP endpoints over a netio frame port: the kernel-bypass twin of netio.udp_socket.

``UdpStack(port, mac, ip)`` runs netio.stack over a frame port (AF_XDP, DPDK, ...): it
answers ARP and IGMP queries, and each UDP datagram goes to the endpoint bound to its
destination port. ``endpoint(local_port, peer=..., groups=...)`` has UdpSocketPort's
burst API over payloads (what netio-loadgen drives): ``tx_burst`` sends each payload as
one datagram to the peer, whose MAC the stack asked for by ARP when the endpoint opened.

    stack = UdpStack(XdpPort("eth0"), "02:00:00:00:00:01", "10.0.0.2")
    orders = stack.endpoint(50000, peer=("10.0.0.1", 15000))
    orders.tx_burst(Burst.of([payload]))
    replies = orders.rx_burst()           # payloads, copied out of the port's frames

Received payloads carry stamp 0: the frame port's stamps are TSC readings, and callers
stamp what they receive when they poll.
"""
from __future__ import annotations

import struct
import time

import numpy as np

from netio.port import Burst, Port, PortError, PortStats
from netio.stack import Stack, ip_int, mac_bytes

ARP_WAIT_S = 0.5            # for each ARP request's answer
ARP_TRIES = 4
_ARP = struct.Struct("!6s6sH HHBBH6s4s6s4s")    # Ethernet header, then the ARP packet (RFC 826)
_ETH_P_ARP, _ARP_REQUEST, _ARP_REPLY = 0x0806, 1, 2
_BROADCAST = b"\xff" * 6


class UdpStack:
    """IPv4 host ``ip`` with ``mac`` on ``port``, for endpoints to share (see the module
    docstring). Closing it, or its last endpoint, closes the port."""

    def __init__(self, port: Port, mac: str | bytes, ip: str):
        self.port, self.mac, self.ip = port, mac_bytes(mac), ip_int(ip)
        self.stack = Stack(mac, ip)
        self._endpoints: dict[int, UdpEndpoint] = {}
        self._neighbours: dict[int, bytes] = {}     # IPv4 address -> MAC, as ARP answered

    def endpoint(self, local_port: int, peer: tuple[str, int] | None = None,
                 groups: tuple[str, ...] = ()) -> UdpEndpoint:
        """An endpoint bound to UDP ``local_port``, sending to ``peer`` (host, port) and
        receiving what is sent to it and to the multicast ``groups`` it joins."""
        if local_port in self._endpoints:
            raise PortError(f"UDP port {local_port} is already bound on {self.port.info.iface}")
        peer_mac = self.resolve(peer[0]) if peer else None
        self.stack.bind(local_port)
        for group in groups:
            self.port.tx_burst(self.stack.join(group))
        endpoint = self._endpoints[local_port] = UdpEndpoint(self, local_port, peer, peer_mac)
        return endpoint

    def resolve(self, host: str) -> bytes:
        """``host``'s MAC, asked for by ARP (once); PortError when nobody answers. What else
        comes in meanwhile goes its usual way."""
        target = ip_int(host)
        if target in self._neighbours:
            return self._neighbours[target]
        ask = _ARP.pack(_BROADCAST, self.mac, _ETH_P_ARP, 1, 0x0800, 6, 4, _ARP_REQUEST,
                        self.mac, self.ip.to_bytes(4, "big"), bytes(6), target.to_bytes(4, "big"))
        for _ in range(ARP_TRIES):
            self.port.tx_burst(Burst.of([ask]))
            deadline = time.monotonic() + ARP_WAIT_S
            while time.monotonic() < deadline:
                burst = self.port.rx_burst(64)
                try:
                    answers = [mac for mac in (_arp_answer(frame, target) for frame in burst) if mac is not None]
                    self._take(burst)
                finally:
                    self.port.release(burst)
                if answers:
                    self._neighbours[target] = answers[0]
                    return answers[0]
        raise PortError(f"no ARP answer from {host} on {self.port.info.iface} "
                        f"({ARP_TRIES} requests, {ARP_WAIT_S} s apart): is it up and on this link?")

    def poll(self) -> None:
        """Take one burst off the port: answer what the stack answers, and queue the
        payloads of each endpoint's datagrams on it, copied into a burst of their own."""
        burst = self.port.rx_burst(256)
        try:
            self._take(burst)
        finally:
            self.port.release(burst)

    def _take(self, burst: Burst) -> None:
        if not len(burst):
            return
        result = self.stack.process(burst)
        if len(result.replies):
            self.port.tx_burst(result.replies)
        datagrams = result.datagrams
        for local_port, endpoint in self._endpoints.items():
            mine = datagrams[datagrams["dst_port"] == local_port]
            if len(mine):
                endpoint.queue.append(Burst.gather(result.buffer, mine["offset"], mine["length"]))

    def close(self) -> None:
        """Leave the groups and close the port."""
        for group in self.stack.groups:
            self.port.tx_burst(self.stack.leave(group))
        self._endpoints.clear()
        self.port.close()


class UdpEndpoint:
    """One bound UDP port of a UdpStack, with UdpSocketPort's burst API over payloads."""

    def __init__(self, owner: UdpStack, local_port: int, peer: tuple[str, int] | None, peer_mac: bytes | None):
        self.owner, self.local_port, self.peer, self.peer_mac = owner, local_port, peer, peer_mac
        self.peer_ip = ip_int(peer[0]) if peer else None
        self.queue: list[Burst] = []

    def rx_burst(self, max_payloads: int = 256) -> Burst:
        """The payloads received for this endpoint from one burst of the port, oldest first
        (at most the port's 256 frames' worth, whatever ``max_payloads`` says)."""
        if not self.queue:
            self.owner.poll()
        return self.queue.pop(0) if self.queue else Burst.of([])

    def release(self, burst: Burst) -> None:
        """Payloads are copies: nothing to give back."""

    def tx_burst(self, burst: Burst) -> int:
        """Send each payload as one datagram to the peer; returns how many went."""
        if self.peer is None:
            raise PortError(f"UDP port {self.local_port} has no peer to send to")
        frames = self.owner.stack.build_udp(burst, self.peer_ip, self.peer[1], self.local_port, self.peer_mac)
        return self.owner.port.tx_burst(frames)

    def fileno(self) -> None:
        """None: an endpoint is polled, never waited on (a kernel-bypass port has nothing
        that wakes a waiter on time, a DPDK one no descriptor at all)."""
        return None

    def stats(self) -> PortStats:
        return PortStats()

    def close(self) -> None:
        """Unbind; the last endpoint to close closes the stack and its port."""
        self.owner._endpoints.pop(self.local_port, None)
        self.owner.stack.unbind(self.local_port)
        if not self.owner._endpoints:
            self.owner.close()


def _arp_answer(frame: np.ndarray, target: int) -> bytes | None:
    """The sender's MAC when ``frame`` is an ARP reply from ``target``."""
    if len(frame) < _ARP.size:
        return None
    (_, _, ethertype, _, _, _, _, op, sender_mac, sender_ip, _, _) = _ARP.unpack_from(frame.tobytes())
    if ethertype != _ETH_P_ARP or op != _ARP_REPLY or int.from_bytes(sender_ip, "big") != target:
        return None
    return sender_mac
