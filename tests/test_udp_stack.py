"""netio.udp_stack: UDP endpoints over a frame port, through netio's own stack."""
from __future__ import annotations

import ipaddress

import pytest

from netio import udp_stack
from netio.port import Burst, PortError, PortInfo
from netio.stack import Stack
from netio.udp_stack import UdpStack
from tests.test_venue import MemoryPort

OURS = ("02:00:00:00:00:02", "10.0.0.2")
PEER = ("02:00:00:00:00:01", "10.0.0.1")


class Wire(MemoryPort):
    """Our end of a link to a peer host (a netio Stack): what we send (``sent``), it takes
    in (and answers ARP requests for itself); what it sends, comes in."""

    def __init__(self, answers_arp: bool = True):
        super().__init__()
        self.info = PortInfo("memory", "wire0")
        self.peer = Stack(*PEER)
        self.peer.bind(15000)
        self.answers_arp = answers_arp
        self.at_peer: list[tuple[str, int, bytes]] = []    # (source IP, source port, payload)
        self.closed = False

    def tx_burst(self, burst: Burst) -> int:
        super().tx_burst(burst)
        result = self.peer.process(burst)
        if self.answers_arp:
            self.inbox += result.replies.to_bytes()
        for dg, payload in zip(result.datagrams, result.payloads()):
            self.at_peer.append((str(ipaddress.IPv4Address(int(dg["src_ip"]))), int(dg["src_port"]),
                                 payload.tobytes()))
        return len(burst)

    def send(self, payloads: list[bytes], to_ip: str, to_port: int, to_mac: str | None = OURS[0]) -> None:
        """The peer sends payloads to us (or to a group: to_mac None)."""
        self.inbox += self.peer.build_udp(Burst.of(payloads), to_ip, to_port, 15000, to_mac).to_bytes()

    def close(self) -> None:
        self.closed = True


def test_an_endpoint_asks_for_its_peers_mac_and_sends_each_payload_as_one_datagram_to_it():
    wire = Wire()
    orders = UdpStack(wire, *OURS).endpoint(50000, peer=(PEER[1], 15000))
    assert orders.peer_mac == bytes.fromhex(PEER[0].replace(":", ""))
    assert orders.tx_burst(Burst.of([b"one", b"two"])) == 2
    assert wire.at_peer == [("10.0.0.2", 50000, b"one"), ("10.0.0.2", 50000, b"two")]


def test_datagrams_go_to_the_endpoint_of_their_port_in_order_as_copies():
    wire = Wire()
    stack = UdpStack(wire, *OURS)
    a, b = stack.endpoint(50000, peer=(PEER[1], 15000)), stack.endpoint(50001)
    wire.send([b"a1", b"a2"], OURS[1], 50000)
    wire.send([b"b1"], OURS[1], 50001)
    wire.send([b"nobody"], OURS[1], 50002)
    got_a = a.rx_burst()
    wire.inbox.clear()                  # the port's frames are gone: the payloads were copied
    assert got_a.to_bytes() == [b"a1", b"a2"] and b.rx_burst().to_bytes() == [b"b1"]
    assert len(a.rx_burst()) == len(b.rx_burst()) == 0
    assert not got_a.timestamps.any()   # stamped by the caller when it polls


def test_a_group_endpoint_joins_with_an_igmp_report_and_takes_the_groups_datagrams():
    wire = Wire()
    feed = UdpStack(wire, *OURS).endpoint(15001, groups=("239.192.0.1",))
    assert wire.sent[-1][23] == 2          # IPv4 protocol 2: IGMP
    wire.send([b"tick"], "239.192.0.1", 15001, to_mac=None)
    assert feed.rx_burst().to_bytes() == [b"tick"]


def test_a_peer_is_asked_for_once_and_what_comes_in_meanwhile_is_kept():
    wire = Wire()
    stack = UdpStack(wire, *OURS)
    feed = stack.endpoint(15001, groups=("239.192.0.1",))
    wire.send([b"early"], "239.192.0.1", 15001, to_mac=None)        # waiting in the port during the ARP
    stack.endpoint(50000, peer=(PEER[1], 15000))
    stack.endpoint(50001, peer=(PEER[1], 15000))
    assert sum(f[12:14] == b"\x08\x06" for f in wire.sent) == 1
    assert feed.rx_burst().to_bytes() == [b"early"]


def test_a_peer_that_does_not_answer_arp_is_a_port_error_naming_it(monkeypatch):
    monkeypatch.setattr(udp_stack, "ARP_WAIT_S", 0.01)
    with pytest.raises(PortError, match="no ARP answer from 10.0.0.1 on wire0"):
        UdpStack(Wire(answers_arp=False), *OURS).endpoint(50000, peer=(PEER[1], 15000))


def test_a_port_bound_twice_is_refused_and_the_last_endpoint_closes_the_port():
    wire = Wire()
    stack = UdpStack(wire, *OURS)
    first = stack.endpoint(50000)
    with pytest.raises(PortError, match="UDP port 50000 is already bound"):
        stack.endpoint(50000)
    second = stack.endpoint(50001, groups=("239.192.0.1",))
    first.close()
    assert not wire.closed
    second.close()
    assert wire.closed and wire.sent[-1][23] == 2    # and the group was left
    with pytest.raises(PortError, match="no peer"):
        first.tx_burst(Burst.of([b"x"]))
