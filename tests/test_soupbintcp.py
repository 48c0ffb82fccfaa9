"""SoupBinTCP 3.00 framing: every packet type, the spec's lengths, and stream reassembly."""
import pytest
from hypothesis import given, settings, strategies as st

from engine import moldudp64 as mold
from engine import ouch
from engine import soupbintcp as sb
from engine.soupbintcp import PacketType as T


def test_packet_is_length2_big_endian_then_type_then_payload():
    assert sb.sequenced(b"hello") == b"\x00\x06Shello"
    assert sb.client_heartbeat() == b"\x00\x01R"


@pytest.mark.parametrize("raw, ptype, payload_len", [
    (sb.debug("some text"), T.DEBUG, 9),
    (sb.login_accepted("SESS1", 1234), T.LOGIN_ACCEPTED, 30),
    (sb.login_rejected("A"), T.LOGIN_REJECTED, 1),
    (sb.sequenced(b"msg"), T.SEQUENCED_DATA, 3),
    (sb.server_heartbeat(), T.SERVER_HEARTBEAT, 0),
    (sb.end_of_session(), T.END_OF_SESSION, 0),
    (sb.login_request("user", "pass", "SESS1", 5), T.LOGIN_REQUEST, 46),
    (sb.unsequenced(b"msg"), T.UNSEQUENCED_DATA, 3),
    (sb.client_heartbeat(), T.CLIENT_HEARTBEAT, 0),
    (sb.logout_request(), T.LOGOUT_REQUEST, 0),
])
def test_every_packet_type_round_trips_with_the_spec_length(raw, ptype, payload_len):
    packet, end = sb.decode(raw)
    assert packet.type is ptype and len(packet.payload) == payload_len and end == len(raw)
    assert sb.encode(ptype, packet.payload) == raw
    assert int.from_bytes(raw[:2], "big") == payload_len + 1


def test_ten_packet_types_with_the_spec_characters():
    assert {t.value for t in T} == set("+AJSHZLURO")


def test_login_request_fields_and_padding():
    raw = sb.login_request("user", "secret", "SESS1", 17)
    payload = raw[3:]
    assert payload[0:6] == b"user  " and payload[6:16] == b"secret    "
    assert payload[16:26] == b"     SESS1" and payload[26:46] == b" " * 18 + b"17"
    assert sb.parse_login_request(sb.decode(raw)[0]) == sb.LoginRequest("user", "secret", "SESS1", 17)


def test_login_accepted_fields_and_padding():
    raw = sb.login_accepted("SESS1", 1)
    assert raw[3:13] == b"     SESS1" and raw[13:33] == b" " * 19 + b"1"
    assert sb.parse_login_accepted(sb.decode(raw)[0]) == sb.LoginAccepted("SESS1", 1)


def test_login_reject_codes():
    assert {c.value for c in sb.LoginRejectCode} == {"A", "S"}
    assert sb.decode(sb.login_rejected(sb.LoginRejectCode.SESSION_NOT_AVAILABLE))[0].payload == b"S"


@pytest.mark.parametrize("raw, offset, rule", [
    (b"\x00", 0, "needs 2 bytes"),
    (b"\x00\x00", 0, "length 0"),
    (b"\x00\x05Sab", 0, "runs past the end"),
    (b"\x00\x01Q", 2, "unknown packet type"),
    (b"\x00\x02Rx", 0, "must be 0 bytes"),
    (b"\x00\x02A1", 0, "must be 30 bytes"),
])
def test_decode_names_offset_and_rule(raw, offset, rule):
    with pytest.raises(sb.SoupError, match=rule) as e:
        sb.decode(raw)
    assert e.value.offset == offset


def test_encode_refuses_wrong_fixed_payloads_and_overlong_fields():
    with pytest.raises(ValueError):
        sb.encode(T.SERVER_HEARTBEAT, b"x")
    with pytest.raises(ValueError):
        sb.login_request("toolonguser", "p")
    with pytest.raises(ValueError):
        sb.login_accepted("S", 10**20)


def test_same_ouch_bytes_ride_soupbintcp_and_moldudp64():
    msg = ouch.pack("X", order_token="TOKEN1", shares=0)
    packet, _ = sb.decode(sb.unsequenced(msg))
    assert packet.payload == msg == mold.decode(mold.encode("S", 1, [msg])).messages[0]


packet_st = st.one_of(
    st.builds(sb.sequenced, st.binary(max_size=60)),
    st.builds(sb.unsequenced, st.binary(max_size=60)),
    st.builds(sb.debug, st.text(alphabet="abc XYZ", max_size=20)),
    st.builds(sb.login_request, st.text("abc", max_size=6), st.text("xyz", max_size=10),
              st.text("S1", max_size=10), st.integers(0, 10**19)),
    st.builds(sb.login_accepted, st.text("S1", max_size=10), st.integers(0, 10**19)),
    st.sampled_from([sb.server_heartbeat(), sb.client_heartbeat(), sb.end_of_session(),
                     sb.logout_request(), sb.login_rejected("A")]),
)


@settings(deadline=None, max_examples=200)
@given(packets=st.lists(packet_st, max_size=20), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_property_framer_reassembles_any_split_of_the_stream(packets, cuts):
    stream = b"".join(packets)
    framer, got, pos = sb.Framer(), [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        got += framer.feed(stream[pos:cut])
        pos = cut
    assert got == sb.decode_all(stream) and framer.pending == 0
    assert [sb.encode(p.type, p.payload) for p in got] == packets


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=100))
def test_property_random_bytes_only_ever_raise_soup_error(data):
    try:
        packet, end = sb.decode(data)
    except sb.SoupError:
        return
    assert sb.encode(packet.type, packet.payload) == data[:end]
