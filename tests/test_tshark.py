"""Independent check: our encoders' bytes, written to pcap with scapy, as tshark's own
moldudp64, soupbintcp and ouch dissectors read them back (every field they expose).

tshark's nasdaq_itch dissector only knows TotalView-ITCH 2.0/3.0 (ASCII), so ITCH 5.0
is checked at the MoldUDP64 level only: block lengths, sequence numbers and bytes.
"""
import itertools
import random
import shutil
import string
import subprocess
import xml.etree.ElementTree as ET

import pytest

from engine import moldudp64 as mold
from engine import ouch
from engine import soupbintcp as sb

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark is not installed (Debian package tshark)")

MOLD_PORT, REQUEST_PORT, SOUP_PORT = 30001, 30002, 30010
CLIENT, SERVER = ("10.9.0.1", 40000), ("10.9.0.2", SOUP_PORT)


# ---------------------------------------------------------------------------------------
# pcap in, PDML out


def udp_frames(payloads, dport):
    from scapy.all import IP, UDP, Ether, Raw
    return [Ether() / IP(src="10.9.0.2", dst="239.9.0.1") / UDP(sport=5000, dport=dport) / Raw(p)
            for p in payloads]


class TcpSession:
    """Frames of one TCP connection, sequence numbers kept per direction."""

    def __init__(self):
        self.frames, self.seq = [], {True: 1000, False: 9000}

    def send(self, data: bytes, from_client: bool):
        from scapy.all import IP, TCP, Ether, Raw
        (src, sport), (dst, dport) = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        self.frames.append(Ether() / IP(src=src, dst=dst)
                           / TCP(sport=sport, dport=dport, flags="PA", seq=self.seq[from_client],
                                 ack=self.seq[not from_client]) / Raw(data))
        self.seq[from_client] += len(data)


def dissect(tmp_path, frames, *decode_as):
    """Every packet as a list of (protocol, [field attributes]) in tshark's PDML order."""
    from scapy.all import wrpcap
    pcap = tmp_path / "capture.pcap"
    wrpcap(str(pcap), frames)
    args = ["tshark", "-n", "-r", str(pcap), "-T", "pdml"]
    for d in decode_as:
        args += ["-d", d]
    out = subprocess.run(args, capture_output=True, check=True, timeout=120).stdout
    return [[(p.get("name"), [f.attrib for f in p.iter("field")]) for p in packet.iter("proto")]
            for packet in ET.fromstring(out).iter("packet")]


def protos(packets, name):
    """All instances of protocol `name`, in capture order (a frame may hold several)."""
    return [fields for packet in packets for proto, fields in packet if proto == name]


def values(fields, name, attr="show"):
    return [f.get(attr, "") for f in fields if f["name"] == name]


def malformed(fields) -> bool:
    """Whether tshark raised an Error-level expert item (its verdict "malformed")."""
    return any("Error" in v for v in values(fields, "_ws.expert.severity", "showname"))


def one(fields, name, attr="show"):
    (v,) = values(fields, name, attr)
    return v


# ---------------------------------------------------------------------------------------
# MoldUDP64


def test_tshark_reads_our_moldudp64_packets_field_for_field(tmp_path):
    rng = random.Random(64)
    messages = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 120))) for _ in range(60)]
    packets = mold.pack("NETIO00001", 1_000_000, messages, max_payload=600)
    packets += [mold.heartbeat("NETIO00001", 1_000_060), mold.end_of_session("NETIO00001", 1_000_060)]
    requests = [mold.request("NETIO00001", 1_000_005, 7)]
    frames = udp_frames(packets, MOLD_PORT) + udp_frames(requests, REQUEST_PORT)
    seen = protos(dissect(tmp_path, frames, f"udp.port=={MOLD_PORT},moldudp64",
                          f"udp.port=={REQUEST_PORT},moldudp64"), "moldudp64")
    assert len(seen) == len(packets) + len(requests)

    for raw, fields in zip(packets + requests, seen):  # the header, as our dtype lays it out
        for name in mold.HEADER_DTYPE.names:
            ftype, offset = mold.HEADER_DTYPE.fields[name][:2]
            field = next(f for f in fields if f["name"] == f"moldudp64.{name}")
            assert int(field["pos"]) - 42 == offset and int(field["size"]) == ftype.itemsize
            assert field["value"] == raw[offset:offset + ftype.itemsize].hex()
        assert one(fields, "moldudp64.session") == raw[:10].decode()
        assert int(one(fields, "moldudp64.count")) == int.from_bytes(raw[18:20], "big")

    request = mold.decode_request(requests[0])
    assert values(seen[-1], "moldudp64.request") == [""]  # tshark: "Number of Requested Messages"
    assert (int(one(seen[-1], "moldudp64.sequence")), int(one(seen[-1], "moldudp64.count"))) == (
        request.sequence, request.count)

    for raw, fields in zip(packets, seen):
        ours = mold.decode(raw)
        assert int(one(fields, "moldudp64.sequence")) == ours.sequence
        assert [int(v) for v in values(fields, "moldudp64.msglen")] == [len(m) for m in ours.messages]
        assert [int(v) for v in values(fields, "moldudp64.msgseq")] == [
            ours.sequence + i for i in range(len(ours.messages))]
        assert values(fields, "moldudp64.msgdata", "value") == [m.hex() for m in ours.messages]
        assert not malformed(fields)
    assert [m for raw in packets for m in mold.decode(raw).messages] == messages


def test_tshark_reads_the_venues_re_request_answer_as_the_messages_its_feed_sent(tmp_path):
    """The venue's frames as it sent them: a cross printed on the feed (multicast to
    15001), then the answer to a request for those messages (unicast from 15002): tshark
    reads both as MoldUDP64 without complaint, and the answer as the feed's messages."""
    from scapy.all import Ether

    from engine.venue import Venue
    from engine.venue_config import VenueConfig
    from netio.port import Burst
    from tests.test_venue import VENUE_IP, VENUE_MAC, Client, MemoryPort, datagram, enter
    port, client = MemoryPort(), Client("10.9.0.1", 40001)
    venue = Venue(port, VENUE_IP, VENUE_MAC, VenueConfig())
    first = venue.feed_seq
    port.sent.clear()
    port.inbox = [client.frame(datagram(enter("A1", "B", 100, "AAPL", 1_900_000),
                                        enter("A2", "S", 100, "AAPL", 1_900_000)))]
    venue.poll()
    asked = venue.feed_seq - first
    request = mold.request("NETIO00001", first, asked)
    port.inbox = [client.stack.build_udp(Burst.of([request]), VENUE_IP, 15002, 40001, VENUE_MAC).to_bytes()[0]]
    venue.poll()
    venue.close()
    seen = protos(dissect(tmp_path, [Ether(f) for f in port.sent], "udp.port==15001,moldudp64",
                          "udp.port==15002,moldudp64"), "moldudp64")
    *feed, answered = seen
    assert len(feed) >= 1 and asked >= 2 and not any(malformed(f) for f in seen)
    assert (one(answered, "moldudp64.session"), int(one(answered, "moldudp64.sequence"))) == ("NETIO00001", first)
    assert [int(v) for v in values(answered, "moldudp64.msgseq")] == list(range(first, first + asked))
    assert values(answered, "moldudp64.msgdata", "value") == [
        v for f in feed for v in values(f, "moldudp64.msgdata", "value")]


def test_tshark_and_our_decoder_agree_on_malformed_moldudp64(tmp_path):
    overrun = mold.encode("S", 1, [b"abcd"])[:-1]
    eos_with_data = mold.end_of_session("S", 1) + b"\x00\x00"
    seen = protos(dissect(tmp_path, udp_frames([overrun, eos_with_data], MOLD_PORT),
                          f"udp.port=={MOLD_PORT},moldudp64"), "moldudp64")
    assert values(seen[0], "moldudp64.msglen.invalid") and values(seen[1], "moldudp64.end_of_session_extra")
    assert malformed(seen[0]) and malformed(seen[1])
    assert mold.decode_burst([overrun, eos_with_data]).reasons() == ["block_overrun", "end_of_session_with_data"]


def test_tshark_reads_itch50_messages_inside_our_moldudp64(tmp_path):
    itch = pytest.importorskip("engine.itch", reason="engine.itch (ITCH 5.0 codec) not present")
    messages = [
        itch.pack("S", stock_locate=0, tracking_number=1, timestamp=34_200_000_000_000, event_code="Q"),
        itch.pack("A", stock_locate=7, tracking_number=2, timestamp=34_200_000_000_100,
                  order_reference_number=12345, buy_sell_indicator="B", shares=100, stock="AAPL",
                  price=1_502_500),
        itch.pack("D", stock_locate=7, tracking_number=3, timestamp=34_200_000_000_200,
                  order_reference_number=12345),
    ]
    assert [len(m) for m in messages] == [12, 36, 19]  # ITCH 5.0 spec lengths
    (fields,) = protos(dissect(tmp_path, udp_frames([mold.encode("ITCH50", 5, messages)], MOLD_PORT),
                               f"udp.port=={MOLD_PORT},moldudp64"), "moldudp64")
    assert [int(v) for v in values(fields, "moldudp64.msglen")] == [12, 36, 19]
    assert [int(v) for v in values(fields, "moldudp64.msgseq")] == [5, 6, 7]
    assert values(fields, "moldudp64.msgdata", "value") == [m.hex() for m in messages]


# ---------------------------------------------------------------------------------------
# SoupBinTCP


def test_tshark_reads_every_soupbintcp_packet_type(tmp_path):
    session = TcpSession()
    script = [  # (packet, from client)
        (sb.login_request("netio", "secret", "SESS7", 41), True),
        (sb.login_accepted("SESS7", 41), False),
        (sb.debug("hello from the server"), False),
        (sb.sequenced(ouch.pack("S", timestamp=1, event_code="S")), False),
        (sb.sequenced(ouch.pack("S", timestamp=2, event_code="E")), False),
        (sb.server_heartbeat(), False),
        (sb.client_heartbeat(), True),
        (sb.unsequenced(ouch.pack("X", order_token="TOK", shares=0)), True),
        (sb.logout_request(), True),
        (sb.login_rejected(sb.LoginRejectCode.NOT_AUTHORIZED), False),
        (sb.end_of_session(), False),
    ]
    for raw, from_client in script:
        session.send(raw, from_client)
    seen = protos(dissect(tmp_path, session.frames, f"tcp.port=={SOUP_PORT},soupbintcp"), "soupbintcp")
    assert len(seen) == len(script)
    data_seq = 41
    for (raw, _), fields in zip(script, seen):
        packet, _ = sb.decode(raw)
        assert int(one(fields, "soupbintcp.packet_length")) == len(raw) - 2
        assert one(fields, "soupbintcp.packet_type") == f"'{packet.type.value}'"
        p = packet.payload
        if packet.type is sb.PacketType.LOGIN_REQUEST:
            assert one(fields, "soupbintcp.username") == p[0:6].decode()
            assert one(fields, "soupbintcp.password") == p[6:16].decode()
            assert one(fields, "soupbintcp.session") == p[16:26].decode()
            assert one(fields, "soupbintcp.req_seq_num", "showname").endswith(": 41")
        elif packet.type is sb.PacketType.LOGIN_ACCEPTED:
            assert one(fields, "soupbintcp.session") == p[0:10].decode()
            assert one(fields, "soupbintcp.next_seq_num", "showname").endswith(": 41")
        elif packet.type is sb.PacketType.LOGIN_REJECTED:
            assert "'A'" in one(fields, "soupbintcp.reject_code", "showname")
        elif packet.type is sb.PacketType.DEBUG:
            assert one(fields, "soupbintcp.text") == "hello from the server"
        elif packet.type is sb.PacketType.SEQUENCED_DATA:
            # tshark counts Sequenced Data from the Login Accepted's next sequence number
            assert one(fields, "soupbintcp.seq_num", "showname").endswith(f": {data_seq} (Calculated)")
            data_seq += 1


# ---------------------------------------------------------------------------------------
# OUCH 4.2

# tshark's field names that differ from ours (snake_case of the OUCH 4.2 spec's names)
TSHARK_ALIASES = {"packet_type": "type", "tif": "time_in_force",
                  "iso_eligible": "intermarket_sweep_eligibility", "min_quantity": "minimum_quantity",
                  "cancel_reason": "reason", "broken_trade_reason": "reason",
                  "trade_correction_reason": "reason", "reject_reason": "reason"}
NOT_IN_TSHARK = {"N"}  # Trade Now: tshark 4.0's OUCH dissector predates it


def random_fields(s: ouch.MessageSpec, rng: random.Random) -> dict:
    fields = {}
    for name in s.fields:
        ftype = s.dtype[name]
        if ftype.kind == "S" and ftype.itemsize == 1:
            fields[name] = rng.choice(string.ascii_uppercase + string.digits)
        elif ftype.kind == "S":
            fields[name] = "".join(rng.choices(string.ascii_uppercase + string.digits,
                                               k=rng.randint(1, ftype.itemsize)))
        elif name == "timestamp":
            fields[name] = rng.randrange(86_400 * 10**9)
        else:
            fields[name] = rng.randrange(2 ** (8 * ftype.itemsize))
    return fields


def expected_show(s: ouch.MessageSpec, name: str, raw: bytes) -> set[str]:
    """What tshark's PDML `show` may print for our field (it is a string of some kind)."""
    ftype, offset = s.dtype.fields[name][:2]
    chunk = raw[offset:offset + ftype.itemsize]
    if name == "timestamp":
        ns = int.from_bytes(chunk, "big")
        secs, nanos = divmod(ns, 10**9)
        return {f"{secs // 3600}:{secs % 3600 // 60:02}:{secs % 60:02}.{nanos:09}"}
    if ftype.kind == "S" and ftype.itemsize == 1:
        return {f"'{chunk.decode()}'", str(chunk[0])}  # FT_CHAR, or an integer in a few fields
    if ftype.kind == "S":
        return {chunk.decode()}
    return {str(int.from_bytes(chunk, "big"))}


def test_tshark_reads_every_ouch42_message_field_for_field(tmp_path):
    rng = random.Random(42)
    sent = []  # (spec, raw message) in wire order
    session = TcpSession()
    for table in (ouch.INBOUND, ouch.OUTBOUND):
        for s in table.values():
            for _ in range(3):
                sent.append((s, ouch.pack(s.name, **random_fields(s, rng))))
    sizes = itertools.cycle([1, 2, 5])  # several SoupBinTCP packets per TCP segment, too
    for direction, group in itertools.groupby(sent, key=lambda m: m[0].direction):
        group = [raw for _, raw in group]
        wrap = sb.unsequenced if direction == "in" else sb.sequenced
        while group:
            n = next(sizes)
            session.send(b"".join(wrap(raw) for raw in group[:n]), from_client=direction == "in")
            group = group[n:]
    packets = dissect(tmp_path, session.frames, f"tcp.port=={SOUP_PORT},soupbintcp")
    soup = protos(packets, "soupbintcp")
    assert len(soup) == len(sent)

    # walk the capture: each SoupBinTCP packet is followed by its OUCH message, if tshark knows it
    flat = [(proto, fields) for packet in packets for proto, fields in packet
            if proto in ("soupbintcp", "ouch")]
    k = 0
    checked_types = set()
    for (s, raw) in sent:
        proto, soup_fields = flat[k]
        assert proto == "soupbintcp"
        start = int(one(soup_fields, "soupbintcp.packet_length", "pos")) + 3
        k += 1
        if s.type in NOT_IN_TSHARK and s.direction == "in":
            assert one(soup_fields, "soupbintcp.message", "value") == raw.hex()
            continue
        proto, fields = flat[k]
        k += 1
        assert proto == "ouch", f"tshark did not see OUCH in our {s.name}"
        names = set()
        for f in fields:
            name = f["name"].removeprefix("ouch.")
            name = TSHARK_ALIASES.get(name, name)
            assert name in s.dtype.names, f"{s.name}: tshark shows {f['name']} that we do not have"
            ftype, offset = s.dtype.fields[name][:2]
            assert int(f["pos"]) - start == offset, f"{s.name}.{name} offset"
            assert int(f["size"]) == ftype.itemsize, f"{s.name}.{name} size"
            assert f["value"] == raw[offset:offset + ftype.itemsize].hex(), f"{s.name}.{name} bytes"
            assert f["show"] in expected_show(s, name, raw), f"{s.name}.{name}: {f['show']!r}"
            names.add(name)
        assert names == set(s.dtype.names), f"{s.name}: tshark and we disagree on the field set"
        checked_types.add((s.direction, s.type))
    assert checked_types == {(d, t) for d, table in (("in", ouch.INBOUND), ("out", ouch.OUTBOUND))
                             for t in table if not (d == "in" and t in NOT_IN_TSHARK)}


# Our code tables beside tshark's. Its OUCH dissector spans 4.0 to 4.2: codes it lists that
# 4.2 dropped, and 4.2 codes it has not caught up with, are named here explicitly.
CODE_TABLES = {
    "ouch.reject_reason": (ouch.RejectReason, set(), set()),
    "ouch.cancel_reason": (ouch.CancelReason, set(), {"F", "G"}),   # 4.2 Post Only cancels
    "ouch.liquidity_flag": (ouch.LiquidityFlag, set(), set()),
    "ouch.buy_sell_indicator": (ouch.BuySellIndicator, set(), set()),
    "ouch.capacity": (ouch.Capacity, set(), set()),
    "ouch.display": (ouch.Display, {"R"}, set()),                   # Round-Lot Only: pre-4.2
    "ouch.cross_type": (ouch.CrossType, {"I"}, {"E"}),              # Intra-day: pre-4.2; Extended Life
    "ouch.customer_type": (ouch.CustomerType, set(), set()),
    "ouch.iso_eligible": (ouch.IntermarketSweepEligibility, set(), set()),
    "ouch.order_state": (ouch.OrderState, set(), set()),
    "ouch.event_code": (ouch.EventCode, set(), set()),
    "ouch.bbo_weight_indicator": (ouch.BboWeightIndicator, set(), set()),
    "ouch.broken_trade_reason": (ouch.BrokenTradeReason, set(), set()),
    "ouch.trade_correction_reason": (ouch.TradeCorrectionReason, set(), set()),
}


def test_our_ouch_code_tables_match_tshark():
    out = subprocess.run(["tshark", "-G", "values"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    tshark: dict[str, set[str]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] in CODE_TABLES:
            tshark.setdefault(parts[1], set()).add(parts[2].strip("'"))
    assert tshark.keys() == CODE_TABLES.keys()
    for field, (table, older, newer) in CODE_TABLES.items():
        assert {c.value for c in table} == (tshark[field] - older) | newer, field
