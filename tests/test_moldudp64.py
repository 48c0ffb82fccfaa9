"""MoldUDP64 1.00: packet layout, packer and validation, held to the spec's byte layout."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine import moldudp64 as mold

SESSION = "SESSION001"


def test_header_is_session10_sequence8_count2():
    assert mold.HEADER_LEN == 20 == mold.HEADER_DTYPE.itemsize
    assert [(n, mold.HEADER_DTYPE.fields[n][1]) for n in mold.HEADER_DTYPE.names] == [
        ("session", 0), ("sequence", 10), ("count", 18)]
    assert mold.HEADER_DTYPE["sequence"].byteorder == ">" and mold.HEADER_DTYPE["count"].byteorder == ">"


def test_downstream_packet_wire_layout_matches_spec_byte_for_byte():
    packet = mold.encode("ABC", 0x0102030405060708, [b"hello", b"", b"x"])
    assert packet == (b"ABC       " + bytes(range(1, 9)) + b"\x00\x03"
                      + b"\x00\x05hello" + b"\x00\x00" + b"\x00\x01x")


def test_downstream_packet_round_trip():
    p = mold.decode(mold.encode(SESSION, 42, [b"a" * 10, b"bc"]))
    assert (p.session, p.sequence, p.messages) == (SESSION, 42, (b"a" * 10, b"bc"))
    assert not p.heartbeat and not p.end_of_session and p.next_sequence == 44


def test_heartbeat_has_count_zero_and_carries_next_sequence():
    raw = mold.heartbeat(SESSION, 7)
    assert len(raw) == 20 and raw[18:] == b"\x00\x00"
    p = mold.decode(raw)
    assert p.heartbeat and p.sequence == 7 and p.messages == ()


def test_end_of_session_has_count_ffff_and_no_blocks():
    raw = mold.end_of_session(SESSION, 99)
    assert len(raw) == 20 and raw[18:] == b"\xff\xff"
    p = mold.decode(raw)
    assert p.end_of_session and not p.heartbeat and p.sequence == 99


def test_request_packet_round_trip_is_header_only():
    raw = mold.request(SESSION, 1000, 25)
    assert raw == SESSION.encode() + struct.pack(">QH", 1000, 25)
    assert mold.decode_request(raw) == mold.Request(SESSION, 1000, 25)


def test_request_rules():
    with pytest.raises(ValueError):
        mold.request(SESSION, 1, 0)
    with pytest.raises(ValueError):
        mold.request(SESSION, 1, 0xFFFF)
    with pytest.raises(mold.MoldError, match="exactly 20 bytes"):
        mold.decode_request(mold.request(SESSION, 1, 1) + b"x")


def test_session_longer_than_10_is_refused():
    with pytest.raises(ValueError, match="longer than 10"):
        mold.encode("ELEVENCHARS", 1)


@pytest.mark.parametrize("raw, reason, offset", [
    (b"SHORT", mold.Reject.TRUNCATED_HEADER, 5),
    (mold.encode(SESSION, 1, [b"ab"])[:-3] + b"", mold.Reject.COUNT_EXCEEDS_BLOCKS, 20),
    (mold.encode(SESSION, 1, [b"abcd"])[:-1], mold.Reject.BLOCK_OVERRUN, 20),
    (mold.encode(SESSION, 1, [b"ab"]) + b"\x00", mold.Reject.TRAILING_BYTES, 24),
    (mold.end_of_session(SESSION, 1) + b"\x00\x00", mold.Reject.END_OF_SESSION_WITH_DATA, 20),
    (mold.heartbeat(SESSION, 1) + b"\x00\x01z", mold.Reject.TRAILING_BYTES, 20),
])
def test_decode_names_offset_and_rule(raw, reason, offset):
    with pytest.raises(mold.MoldError) as e:
        mold.decode(raw)
    assert e.value.reason is reason and e.value.offset == offset
    assert f"offset {offset}" in str(e.value)


def test_packer_fills_to_the_limit_and_never_splits_a_message():
    messages = [bytes([i]) * 30 for i in range(10)]  # 32 bytes each with its length
    packets = mold.pack(SESSION, 100, messages, max_payload=20 + 3 * 32)
    assert [len(p) for p in packets] == [116, 116, 116, 52]
    decoded = [mold.decode(p) for p in packets]
    assert [p.sequence for p in decoded] == [100, 103, 106, 109]
    assert [m for p in decoded for m in p.messages] == messages


def test_packer_refuses_a_message_too_large_for_any_packet():
    with pytest.raises(ValueError, match="message 1 .*cannot fit"):
        mold.pack(SESSION, 1, [b"ok", b"x" * 100], max_payload=100)
    assert len(mold.pack(SESSION, 1, [b"x" * 78], max_payload=100)[0]) == 100


def test_native_module_is_built_and_used():
    assert mold.NATIVE, "engine._moldudp64 is missing: run `make native`"


@pytest.mark.parametrize("impl", ["c", "python"])
def test_decode_burst_keeps_good_packets_and_counts_bad_ones_by_reason(impl):
    good1 = mold.encode(SESSION, 10, [b"a", b"bb"])
    good2 = mold.encode(SESSION, 12, [b"ccc"])
    packets = [good1, b"tiny", mold.heartbeat(SESSION, 13), good1[:-1], good2,
               mold.end_of_session(SESSION, 13) + b"!"]
    burst = mold.decode_burst(packets, impl=impl)
    assert [burst.message(i) for i in range(len(burst))] == [b"a", b"bb", b"ccc"]
    assert burst.sequence.tolist() == [10, 11, 12]
    assert burst.packet.tolist() == [0, 0, 4]
    assert burst.rejects == {"truncated_header": 1, "block_overrun": 1, "end_of_session_with_data": 1}
    assert burst.reasons() == ["", "truncated_header", "", "block_overrun", "", "end_of_session_with_data"]
    assert burst.headers["count"].tolist() == [2, 0, 0, 0, 1, 0]
    assert burst.headers["session"].tolist()[0] == SESSION.encode()


def test_decode_views_reads_packets_where_they_lie_in_a_shared_buffer():
    a, b = mold.encode(SESSION, 1, [b"xyz"]), mold.encode(SESSION, 2, [b"q" * 9, b""])
    buffer = b"junk" + a + b"more junk" + b
    burst = mold.decode_views(buffer, [4, 4 + len(a) + 9], [len(a), len(b)])
    assert [burst.message(i) for i in range(len(burst))] == [b"xyz", b"q" * 9, b""]
    assert burst.offset.tolist()[0] == 4 + 22
    with pytest.raises(ValueError, match="inside the buffer"):
        mold.decode_views(buffer, [0], [len(buffer) + 1])


def test_pack_stream_cuts_a_length_prefixed_block_stream():
    stream = b"".join(len(m).to_bytes(2, "big") + m for m in [b"a" * 40, b"b" * 40, b"c" * 40])
    packed = mold.pack_stream(SESSION, 7, stream, max_payload=20 + 84)
    assert packed.count.tolist() == [2, 1] and packed.sequence.tolist() == [7, 9]
    assert [mold.decode(p).messages for p in packed.packets()] == [(b"a" * 40, b"b" * 40), (b"c" * 40,)]
    with pytest.raises(ValueError, match="message 2 runs past the end"):
        mold.pack_stream(SESSION, 7, stream[:-1], max_payload=200)


messages_st = st.lists(st.binary(max_size=300), max_size=40)
session_st = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=10)


@settings(deadline=None, max_examples=200)
@given(session=session_st, sequence=st.integers(0, 2**64 - 1), messages=messages_st)
def test_property_encode_then_decode_is_identity(session, sequence, messages):
    p = mold.decode(mold.encode(session, sequence, messages))
    assert (p.session, p.sequence, list(p.messages)) == (session, sequence, messages)


@settings(deadline=None, max_examples=200)
@given(messages=messages_st, max_payload=st.integers(322, 1500), first=st.integers(0, 2**40))
def test_property_packer_preserves_order_sequences_and_size_limit(messages, max_payload, first):
    packets = mold.pack(SESSION, first, messages, max_payload)
    stream = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    reference = mold.pack_stream(SESSION, first, stream, max_payload, impl="python")
    assert packets == reference.packets()
    assert b"".join(p[mold.HEADER_LEN:] for p in packets) == stream  # bodies are the block stream
    assert all(len(p) <= max_payload for p in packets)
    decoded = [mold.decode(p) for p in packets]
    assert [m for p in decoded for m in p.messages] == messages
    expected = first
    for p in decoded:
        assert p.sequence == expected and p.messages
        expected = p.next_sequence


def same_decoding(a: mold.Decoded, b: mold.Decoded) -> bool:
    return (a.rejects == b.rejects and a.status.tolist() == b.status.tolist()
            and a.headers.tobytes() == b.headers.tobytes()
            and all(getattr(a, f).tolist() == getattr(b, f).tolist()
                    for f in ("offset", "length", "sequence", "packet")))


packet_st = st.one_of(
    st.builds(mold.encode, session_st, st.integers(0, 2**63), messages_st.map(lambda m: m[:5])),
    st.builds(mold.heartbeat, session_st, st.integers(0, 2**63)),
    st.builds(mold.end_of_session, session_st, st.integers(0, 2**63)),
    st.binary(max_size=80),
)


@settings(deadline=None, max_examples=300)
@given(st.lists(packet_st.flatmap(lambda p: st.sampled_from([p, p[:-1], p + b"\0", p[:25]])),
                max_size=8))
def test_property_random_packets_never_crash_and_c_matches_the_reference(packets):
    burst = mold.decode_burst(packets)
    assert same_decoding(burst, mold.decode_burst(packets, impl="python"))
    assert sum(burst.rejects.values()) + int((burst.status == 0).sum()) == len(packets)
    assert np.all(burst.offset + burst.length <= len(burst.buffer))
    for p in packets:
        try:
            mold.decode(p)
        except mold.MoldError:
            pass


def test_packer_payload_limit_must_be_udp_sized():
    with pytest.raises(ValueError, match="must be 22..65507"):
        mold.pack(SESSION, 1, [b"x"], max_payload=21)
    with pytest.raises(ValueError, match="must be 22..65507"):
        mold.pack(SESSION, 1, [b"x"], max_payload=70000)


def test_an_itch_stream_travels_in_moldudp64_packets_and_back():
    itch = pytest.importorskip("engine.itch", reason="engine.itch (ITCH 5.0 codec) not present")
    itch_gen = pytest.importorskip("engine.itch_gen", reason="engine.itch_gen not present")
    stream = itch_gen.random_stream(500, seed=3)
    packed = mold.pack_stream(SESSION, 1, stream, max_payload=1400)
    burst = mold.decode_views(packed.data, packed.offset, packed.length)
    assert burst.sequence.tolist() == list(range(1, 501)) and not burst.rejects
    bodies = b"".join(p[mold.HEADER_LEN:] for p in packed.packets())
    assert bodies == stream and itch.decode(bodies).count == 500
