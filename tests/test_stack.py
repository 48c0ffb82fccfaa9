"""The L2-L4 stack: frames made by scapy in, replies and built frames checked by scapy."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, UDP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.igmp import IGMP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from netio.port import Burst
from netio.stack import DROP_REASONS, VERDICTS, Stack, ip_int, multicast_mac

OUR_MAC, OUR_IP = "02:00:00:00:00:01", "10.9.0.1"
PEER_MAC, PEER_IP = "02:00:00:00:00:02", "10.9.0.2"
BOUND = 9000


def make_stack(**kw) -> Stack:
    stack = Stack(OUR_MAC, OUR_IP, **kw)
    stack.bind(BOUND)
    return stack


def to_us(*layers, dst_mac=OUR_MAC):
    frame = Ether(dst=dst_mac, src=PEER_MAC)
    for layer in layers:
        frame = frame / layer
    return frame


def ip(**kw) -> IP:
    return IP(src=PEER_IP, dst=OUR_IP, **kw)


def process(stack: Stack, *frames):
    result = stack.process(Burst.of([bytes(f) for f in frames]))
    return result, [Ether(f) for f in result.replies.to_bytes()]


def assert_checksums_valid(frame: Ether) -> None:
    """Every checksum in the frame equals the one scapy computes itself."""
    rebuilt = frame.copy()
    for layer in (IP, UDP, ICMP, IGMP):
        if layer in rebuilt:
            del rebuilt[layer].chksum
    rebuilt = Ether(bytes(rebuilt))
    for layer in (IP, UDP, ICMP, IGMP):
        if layer in frame:
            assert frame[layer].chksum == rebuilt[layer].chksum, f"{layer.__name__} checksum"


def verdict_names(result) -> list[str]:
    return [VERDICTS[v] for v in result.verdicts]


# -- ARP -------------------------------------------------------------------------------------

def test_arp_request_for_our_address_gets_a_reply_field_by_field():
    stack = make_stack()
    request = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(
        op=1, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst="00:00:00:00:00:00", pdst=OUR_IP)
    result, [reply] = process(stack, request)
    assert verdict_names(result) == ["replied"]
    assert (reply.dst, reply.src, reply.type) == (PEER_MAC, OUR_MAC, 0x0806)
    a = reply[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)


def test_arp_for_another_address_or_not_a_request_is_dropped_by_reason():
    stack = make_stack()
    other = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, psrc=PEER_IP, pdst="10.9.0.77")
    answer = Ether(dst=OUR_MAC, src=PEER_MAC) / ARP(op=2, psrc=PEER_IP, pdst=OUR_IP)
    result, replies = process(stack, other, answer)
    assert verdict_names(result) == ["not_for_us", "arp_ignored"]
    assert replies == []


# -- ICMP ------------------------------------------------------------------------------------

def test_icmp_echo_request_gets_an_echo_reply_with_valid_checksums():
    stack = make_stack()
    request = Ether(bytes(to_us(ip(tos=0x10, ttl=9, id=4242), ICMP(type=8, id=0x1234, seq=77),
                                Raw(b"ping-data" * 7))))
    result, [reply] = process(stack, request)
    assert verdict_names(result) == ["replied"]
    assert (reply.dst, reply.src) == (PEER_MAC, OUR_MAC)
    assert (reply[IP].src, reply[IP].dst, reply[IP].proto, reply[IP].tos) == (OUR_IP, PEER_IP, 1, 0x10)
    assert reply[IP].len == request[IP].len
    icmp = reply[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0x1234, 77)
    assert bytes(icmp.payload) == b"ping-data" * 7
    assert_checksums_valid(reply)


def test_icmp_with_a_bad_checksum_or_other_type_is_dropped():
    stack = make_stack()
    bad = to_us(ip(), ICMP(type=8, chksum=0xBEEF), Raw(b"x"))
    unreachable = to_us(ip(), ICMP(type=3, code=3))
    result, replies = process(stack, bad, unreachable)
    assert verdict_names(result) == ["bad_icmp_checksum", "icmp_ignored"]
    assert replies == []


# -- UDP -------------------------------------------------------------------------------------

def test_udp_to_a_bound_port_is_delivered_with_addresses_and_payload_in_place():
    stack = make_stack()
    frames = [to_us(ip(), UDP(sport=40000 + i, dport=BOUND), Raw(bytes([i]) * (i + 1))) for i in range(5)]
    burst = Burst.of([bytes(f) for f in frames])
    result = stack.process(burst)
    assert verdict_names(result) == ["delivered"] * 5
    d = result.datagrams
    assert d["frame"].tolist() == [0, 1, 2, 3, 4]
    assert d["src_port"].tolist() == [40000 + i for i in range(5)]
    assert set(d["dst_port"].tolist()) == {BOUND}
    assert set(d["src_ip"].tolist()) == {ip_int(PEER_IP)} and set(d["dst_ip"].tolist()) == {ip_int(OUR_IP)}
    assert all(bytes(row) == bytes.fromhex(PEER_MAC.replace(":", "")) for row in d["src_mac"])
    assert [bytes(p) for p in result.payloads()] == [bytes([i]) * (i + 1) for i in range(5)]
    # the payloads are views into the received burst's own buffer
    assert all(np.shares_memory(p, burst.buffer) for p in result.payloads())
    assert d["offset"][0] == 14 + 20 + 8


def test_udp_to_an_unbound_port_is_dropped_and_counted():
    stack = make_stack()
    result, _ = process(stack, to_us(ip(), UDP(sport=1, dport=BOUND + 1), Raw(b"x")))
    assert verdict_names(result) == ["unbound_port"]
    stack.bind(BOUND + 1)
    result, _ = process(stack, to_us(ip(), UDP(sport=1, dport=BOUND + 1), Raw(b"x")))
    assert verdict_names(result) == ["delivered"]
    stack.unbind(BOUND + 1)
    assert stack.bound_ports == [BOUND]


def test_udp_checksum_is_verified_when_present_and_zero_means_none():
    stack = make_stack()
    good = to_us(ip(), UDP(sport=5, dport=BOUND), Raw(b"abc"))
    bad = to_us(ip(), UDP(sport=5, dport=BOUND, chksum=0x1234), Raw(b"abc"))
    none = to_us(ip(), UDP(sport=5, dport=BOUND, chksum=0), Raw(b"abc"))
    result, _ = process(stack, good, bad, none)
    assert verdict_names(result) == ["delivered", "bad_udp_checksum", "delivered"]


def test_ethernet_padding_after_the_ip_datagram_is_ignored():
    stack = make_stack()
    frame = bytes(to_us(ip(), UDP(sport=5, dport=BOUND), Raw(b"hi"))).ljust(60, b"\0")
    result = stack.process(Burst.of([frame]))
    assert verdict_names(result) == ["delivered"] and bytes(result.payload(0)) == b"hi"


# -- IPv4 validation -------------------------------------------------------------------------

def test_ipv4_header_errors_are_dropped_by_reason():
    stack = make_stack()
    udp = UDP(sport=5, dport=BOUND) / Raw(b"data")
    bad_checksum = to_us(ip(chksum=0x0101), udp)
    bad_version = bytearray(bytes(to_us(ip(), udp)))
    bad_version[14] = 0x65                       # version 6 in an IPv4 EtherType
    short_ihl = bytearray(bytes(to_us(ip(), udp)))
    short_ihl[14] = 0x44                         # IHL 4 < 5
    too_long = to_us(ip(len=200), udp)           # total length beyond the frame
    result = stack.process(Burst.of([bytes(bad_checksum), bytes(bad_version), bytes(short_ihl), bytes(too_long)]))
    assert verdict_names(result) == ["bad_ip_checksum", "bad_ip_header", "bad_ip_header", "bad_length"]


def test_fragments_are_dropped_and_counted():
    stack = make_stack()
    first = to_us(ip(flags="MF", frag=0), UDP(sport=5, dport=BOUND), Raw(b"a" * 16))
    later = to_us(ip(flags=0, frag=3, proto=17), Raw(b"b" * 16))
    result, _ = process(stack, first, later)
    assert verdict_names(result) == ["fragment", "fragment"]
    assert stack.counters()["drops"] == {"fragment": 2}


def test_truncated_frames_are_dropped_not_read_past_their_end():
    stack = make_stack()
    full = bytes(to_us(ip(), UDP(sport=5, dport=BOUND), Raw(b"payload")))
    cuts = [b"", full[:5], full[:13], full[:14 + 10], full[:-3]]
    vlan_cut = bytes(Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=0))[:16]
    result = stack.process(Burst.of(cuts + [vlan_cut]))
    assert verdict_names(result) == ["truncated", "truncated", "truncated", "truncated", "bad_length", "truncated"]


def test_frames_that_are_not_ipv4_or_an_unknown_protocol_are_dropped():
    stack = make_stack()
    v6 = Ether(dst=OUR_MAC, src=PEER_MAC) / IPv6() / UDP(dport=BOUND)
    tcp = to_us(ip(), TCP(dport=80))
    result, _ = process(stack, v6, tcp)
    assert verdict_names(result) == ["not_ipv4", "unknown_protocol"]


def test_frames_for_another_mac_or_ip_are_not_for_us():
    stack = make_stack()
    other_mac = to_us(ip(), UDP(dport=BOUND), dst_mac="02:00:00:00:00:99")
    other_ip = to_us(IP(src=PEER_IP, dst="10.9.0.99"), UDP(dport=BOUND))
    result, _ = process(stack, other_mac, other_ip)
    assert verdict_names(result) == ["not_for_us", "not_for_us"]


# -- VLAN ------------------------------------------------------------------------------------

def test_a_vlan_stack_answers_its_vlan_with_tagged_replies_and_drops_the_rest():
    stack = make_stack(vlan=100)
    tagged = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=100, prio=5) / ip() / ICMP(id=1, seq=1)
    tagged_udp = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=100) / ip() / UDP(sport=7, dport=BOUND) / b"v"
    untagged = to_us(ip(), ICMP())
    other_vlan = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=101) / ip() / ICMP()
    qinq = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=100) / Dot1Q(vlan=100) / ip() / ICMP()
    frames = [tagged, tagged_udp, untagged, other_vlan, qinq]
    burst = Burst.of([bytes(f) for f in frames])
    result = stack.process(burst)
    [reply] = [Ether(f) for f in result.replies.to_bytes()]
    assert verdict_names(result) == ["replied", "delivered", "bad_vlan", "bad_vlan", "bad_vlan"]
    assert (reply[Dot1Q].vlan, reply[Dot1Q].prio, reply[Dot1Q].type) == (100, 5, 0x0800)
    assert reply[ICMP].type == 0
    assert_checksums_valid(reply)
    assert result.datagrams["vlan"].tolist() == [100]
    assert result.datagrams["offset"][0] == burst.offsets[1] + 18 + 20 + 8


def test_an_untagged_stack_drops_tagged_frames_but_takes_priority_tags():
    stack = make_stack()
    tagged = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=7) / ip() / UDP(dport=BOUND)
    priority = Ether(dst=OUR_MAC, src=PEER_MAC) / Dot1Q(vlan=0, prio=3) / ip() / UDP(dport=BOUND)
    result, _ = process(stack, tagged, priority)
    assert verdict_names(result) == ["bad_vlan", "delivered"]


# -- multicast -------------------------------------------------------------------------------

GROUP = "239.1.2.3"


def mcast_udp(group=GROUP):
    return Ether(dst=multicast_mac(group).hex(":"), src=PEER_MAC) / IP(src=PEER_IP, dst=group) / \
        UDP(sport=3000, dport=BOUND) / Raw(b"market data")


def test_igmp_join_and_leave_frames_are_valid_igmpv2_and_gate_group_traffic():
    stack = make_stack()
    assert verdict_names(stack.process(Burst.of([bytes(mcast_udp())]))) == ["not_for_us"]

    [report] = [Ether(f) for f in stack.join(GROUP).to_bytes()]
    assert report.dst == "01:00:5e:01:02:03" and report.src == OUR_MAC
    assert (report[IP].src, report[IP].dst, report[IP].ttl, report[IP].proto) == (OUR_IP, GROUP, 1, 2)
    assert report[IP].options[0].option == 20          # router alert
    assert (report[IGMP].type, report[IGMP].gaddr) == (0x16, GROUP)
    assert_checksums_valid(report)
    assert stack.groups == [GROUP]

    result = stack.process(Burst.of([bytes(mcast_udp()), bytes(mcast_udp("239.1.2.4"))]))
    assert verdict_names(result) == ["delivered", "not_for_us"]
    assert result.datagrams["dst_ip"].tolist() == [ip_int(GROUP)]

    [leave] = [Ether(f) for f in stack.leave(GROUP).to_bytes()]
    assert (leave[IP].dst, leave.dst, leave[IGMP].type, leave[IGMP].gaddr) == \
        ("224.0.0.2", "01:00:5e:00:00:02", 0x17, GROUP)
    assert_checksums_valid(leave)
    assert verdict_names(stack.process(Burst.of([bytes(mcast_udp())]))) == ["not_for_us"]


def igmp_query(dst: str, group: str = "0.0.0.0", chksum=None) -> Ether:
    return Ether(dst=multicast_mac(dst).hex(":"), src=PEER_MAC) / \
        IP(src=PEER_IP, dst=dst, ttl=1, proto=2) / IGMP(type=0x11, mrcode=100, gaddr=group, chksum=chksum)


def test_igmp_queries_are_answered_with_a_report_per_joined_group():
    stack = make_stack()
    assert verdict_names(stack.process(Burst.of([bytes(igmp_query("224.0.0.1"))]))) == ["not_for_us"]
    stack.join(GROUP)
    stack.join("239.9.9.9")
    general = igmp_query("224.0.0.1")
    specific = igmp_query(GROUP, GROUP)
    other = igmp_query("239.7.7.7", "239.7.7.7")
    bad = igmp_query("224.0.0.1", chksum=0x1111)
    report = Ether(dst=multicast_mac(GROUP).hex(":"), src=PEER_MAC) / IP(src=PEER_IP, dst=GROUP) / \
        IGMP(type=0x16, gaddr=GROUP)
    result, replies = process(stack, general, specific, other, bad, report)
    assert verdict_names(result) == ["replied", "replied", "not_for_us", "bad_igmp_checksum", "igmp_ignored"]
    assert result.replied == 2 and len(replies) == 3
    assert [(r[IGMP].type, r[IGMP].gaddr, r[IP].dst) for r in replies] == \
        [(0x16, GROUP, GROUP), (0x16, "239.9.9.9", "239.9.9.9"), (0x16, GROUP, GROUP)]
    for r in replies:
        assert_checksums_valid(r)


def test_join_rejects_a_unicast_address():
    with pytest.raises(ValueError, match="not a multicast group"):
        make_stack().join("10.1.1.1")


# -- accounting ------------------------------------------------------------------------------

def test_every_frame_is_delivered_replied_or_dropped_by_reason():
    stack = make_stack()
    frames = [to_us(ip(), UDP(sport=1, dport=BOUND), b"a"), to_us(ip(), ICMP()),
              Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(pdst=OUR_IP, psrc=PEER_IP),
              to_us(ip(), UDP(dport=1)), to_us(ip(chksum=1), UDP(dport=BOUND)), b"\x01\x02"]
    result = stack.process(Burst.of([bytes(f) for f in frames] * 50))   # 300 frames: buffers grow
    assert len(result) == 300 and result.delivered == 50 and result.replied == 100
    assert result.drops == {"unbound_port": 50, "bad_ip_checksum": 50, "truncated": 50}
    c = stack.counters()
    assert c["received"] == c["delivered"] + c["replied"] + sum(c["drops"].values()) == 300
    assert set(c["drops"]) <= set(DROP_REASONS)


# -- transmit --------------------------------------------------------------------------------

def test_built_udp_frames_parse_in_scapy_with_valid_checksums():
    stack = make_stack()
    payloads = Burst.of([b"", b"x", b"odd-length!", bytes(range(256)) * 5])
    dst_macs = np.array([[2, 0, 0, 0, 0, i] for i in range(4)], np.uint8)
    dst_ips = np.array([ip_int(f"10.9.0.{10 + i}") for i in range(4)], np.uint32)
    built = stack.build_udp(payloads, dst_ips, np.arange(5000, 5004), 7000, dst_macs)
    frames = [Ether(f) for f in built.to_bytes()]
    for i, f in enumerate(frames):
        assert f.dst == f"02:00:00:00:00:{i:02x}" and f.src == OUR_MAC
        assert (f[IP].src, f[IP].dst, f[IP].ttl, f[IP].flags) == (OUR_IP, f"10.9.0.{10 + i}", 64, "DF")
        assert (f[UDP].sport, f[UDP].dport) == (7000, 5000 + i)
        assert bytes(f[UDP].payload) == payloads.to_bytes()[i]
        assert f[UDP].chksum != 0
        assert_checksums_valid(f)
    assert len({f[IP].id for f in frames}) == 4


def test_one_destination_for_all_payloads_is_given_as_plain_values():
    stack = make_stack()
    built = stack.build_udp(Burst.of([b"a", b"bb", b"ccc"]), PEER_IP, 5000, 7000, PEER_MAC)
    frames = [Ether(f) for f in built.to_bytes()]
    assert [(f.dst, f[IP].dst, f[UDP].dport, f[UDP].sport) for f in frames] == [(PEER_MAC, PEER_IP, 5000, 7000)] * 3
    assert [bytes(f[UDP].payload) for f in frames] == [b"a", b"bb", b"ccc"]
    with pytest.raises(ValueError, match="dst_port has shape"):
        stack.build_udp(Burst.of([b"a", b"b"]), PEER_IP, [1, 2, 3], 7000, PEER_MAC)


def test_built_multicast_frames_get_the_group_mac_and_the_vlan_tag():
    stack = make_stack(vlan=42, multicast_ttl=4)
    [f] = [Ether(x) for x in stack.build_udp(Burst.of([b"itch"]), GROUP, 26400, 26401).to_bytes()]
    assert f.dst == "01:00:5e:01:02:03" and f[Dot1Q].vlan == 42
    assert f[IP].ttl == 4 and f[IP].dst == GROUP
    assert_checksums_valid(f)


def test_build_udp_refuses_unicast_without_a_mac_and_oversized_payloads():
    stack = make_stack()
    with pytest.raises(ValueError, match="dst_mac"):
        stack.build_udp(Burst.of([b"x"]), PEER_IP, 1, 2)
    with pytest.raises(ValueError, match="65507"):
        stack.build_udp(Burst.of([b"ok", bytes(65508)]), PEER_IP, 1, 2, PEER_MAC)


def test_replies_built_from_delivered_datagrams_echo_back_to_the_sender():
    stack = make_stack()
    result, _ = process(stack, to_us(ip(), UDP(sport=41000, dport=BOUND), Raw(b"echo me")))
    d = result.datagrams
    echoed = stack.build_udp(result.payload_burst(), d["src_ip"], d["src_port"], d["dst_port"], d["src_mac"])
    [f] = [Ether(x) for x in echoed.to_bytes()]
    assert (f.dst, f[IP].dst, f[UDP].dport, f[UDP].sport) == (PEER_MAC, PEER_IP, 41000, BOUND)
    assert bytes(f[UDP].payload) == b"echo me"
    assert_checksums_valid(f)


# -- robustness ------------------------------------------------------------------------------

VALID = [bytes(to_us(ip(), UDP(sport=5, dport=BOUND), Raw(b"abcdef"))), bytes(to_us(ip(), ICMP(), Raw(b"p"))),
         bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(pdst=OUR_IP)), bytes(igmp_query("224.0.0.1")),
         bytes(mcast_udp())]


@settings(deadline=None, max_examples=200)
@given(st.lists(st.one_of(
    st.binary(max_size=120),
    st.tuples(st.sampled_from(VALID), st.integers(0, 80), st.integers(0, 255)).map(
        lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:]),      # one byte changed
    st.tuples(st.sampled_from(VALID), st.integers(0, 80)).map(lambda t: t[0][:t[1]]),  # cut short
), max_size=40))
def test_random_and_mutated_frames_never_crash_and_are_all_accounted_for(frames):
    stack = make_stack(vlan=None)
    stack.join(GROUP)
    result = stack.process(Burst.of(frames))
    assert len(result) == len(frames)
    assert result.delivered + result.replied + sum(result.drops.values()) == len(frames)
    for i in range(result.delivered):
        row = result.datagrams[i]
        frame_end = int(Burst.of(frames).offsets[row["frame"]]) + len(frames[row["frame"]])
        assert row["offset"] + row["length"] <= frame_end
    for reply in result.replies.to_bytes():
        assert_checksums_valid(Ether(reply))


# -- watching (Stack.monitor) ------------------------------------------------------------------

def test_a_monitor_stack_delivers_udp_to_anyone_on_any_vlan_and_answers_nothing():
    stack = Stack.monitor()
    frames = [Ether(dst="02:00:00:00:00:99", src=PEER_MAC) / IP(src=PEER_IP, dst="10.1.2.3") / UDP(sport=1, dport=2) / b"a",
              Ether(dst=multicast_mac("239.1.1.1"), src=PEER_MAC) / Dot1Q(vlan=7)
              / IP(src=PEER_IP, dst="239.1.1.1") / UDP(sport=3, dport=4) / b"bb",
              to_us(ARP(op=1, pdst=OUR_IP, psrc=PEER_IP)), to_us(ip() / ICMP()),
              to_us(IP(src=PEER_IP, dst="224.0.0.1") / IGMP(type=0x11)),
              to_us(ip() / UDP(sport=5, dport=6, chksum=0x1234) / b"bad")]
    result, replies = process(stack, *frames)
    assert verdict_names(result) == ["delivered", "delivered", "arp_ignored", "icmp_ignored", "igmp_ignored",
                                     "bad_udp_checksum"]
    assert replies == []
    assert [bytes(p) for p in result.payloads()] == [b"a", b"bb"]
    assert result.datagrams["dst_port"].tolist() == [2, 4] and result.datagrams["vlan"].tolist() == [0, 7]
