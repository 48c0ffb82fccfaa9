"""OUCH 4.2: every message's layout against the spec, the per-message codec, and the bulk
paths (C loop held to the Python reference)."""
import string

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine import ouch
from engine import soupbintcp as sb

# Lengths as printed in the OUCH 4.2 spec, independent of the module's own table.
SPEC_LENGTHS = {
    "in": {"O": 49, "U": 47, "X": 19, "M": 20, "N": 15},
    "out": {"S": 10, "A": 66, "U": 80, "C": 28, "D": 37, "E": 40, "B": 32, "G": 45, "F": 41,
            "J": 24, "P": 23, "I": 23, "T": 36, "M": 28},
}

# Field offsets from the spec's tables for the two longest order messages.
ENTER_ORDER_OFFSETS = {
    "type": 0, "order_token": 1, "buy_sell_indicator": 15, "shares": 16, "stock": 20,
    "price": 28, "time_in_force": 32, "firm": 36, "display": 40, "capacity": 41,
    "intermarket_sweep_eligibility": 42, "minimum_quantity": 43, "cross_type": 47,
    "customer_type": 48}
ACCEPTED_OFFSETS = {
    "type": 0, "timestamp": 1, "order_token": 9, "buy_sell_indicator": 23, "shares": 24,
    "stock": 28, "price": 36, "time_in_force": 40, "firm": 44, "display": 48,
    "order_reference_number": 49, "capacity": 57, "intermarket_sweep_eligibility": 58,
    "minimum_quantity": 59, "cross_type": 63, "order_state": 64, "bbo_weight_indicator": 65}


def all_specs():
    return [*ouch.INBOUND.values(), *ouch.OUTBOUND.values()]


def test_the_message_set_and_lengths_are_the_specs():
    assert {t: s.length for t, s in ouch.INBOUND.items()} == SPEC_LENGTHS["in"]
    assert {t: s.length for t, s in ouch.OUTBOUND.items()} == SPEC_LENGTHS["out"]


@pytest.mark.parametrize("s", all_specs(), ids=lambda s: s.name)
def test_dtype_is_the_packed_big_endian_wire_image_type_byte_first(s):
    assert s.dtype.itemsize == s.length and s.dtype.isalignedstruct is False
    assert s.dtype.names[0] == "type" and s.dtype.fields["type"][1] == 0
    end = 0
    for name in s.dtype.names:  # packed: each field starts where the previous ended
        ftype, offset = s.dtype.fields[name][:2]
        assert offset == end
        end += ftype.itemsize
        assert ftype.kind == "S" or ftype.byteorder == ">"
    assert end == s.length


@pytest.mark.parametrize("s, offsets", [(ouch.INBOUND["O"], ENTER_ORDER_OFFSETS),
                                        (ouch.OUTBOUND["A"], ACCEPTED_OFFSETS)], ids=["O", "A"])
def test_field_offsets_match_the_spec(s, offsets):
    assert {n: s.dtype.fields[n][1] for n in s.dtype.names} == offsets


def test_ambiguous_types_resolve_by_direction_or_length():
    assert ouch.spec("U", "in").name == "replace_order" and ouch.spec("U", "out").name == "replaced"
    assert ouch.spec("modify_order").type == ouch.spec("order_modified").type == "M"
    with pytest.raises(ValueError, match="ambiguous"):
        ouch.spec("U")
    assert ouch.identify(b"U" + bytes(46)).name == "replace_order"
    assert ouch.identify(b"U" + bytes(79)).name == "replaced"
    assert ouch.identify(b"M" + bytes(19)).name == "modify_order"
    assert ouch.identify(b"M" + bytes(27)).name == "order_modified"


ENTER = dict(order_token="ORD0000000001", buy_sell_indicator="B", shares=100, stock="AAPL",
             price=1_502_500, time_in_force=ouch.TimeInForce.MARKET_HOURS, firm="ACME",
             display="Y", capacity="A", intermarket_sweep_eligibility="N", minimum_quantity=0,
             cross_type="N", customer_type=" ")


def test_enter_order_wire_bytes():
    raw = ouch.pack("O", **ENTER)
    assert raw == (b"O" + b"ORD0000000001 " + b"B" + (100).to_bytes(4, "big") + b"AAPL    "
                   + (1_502_500).to_bytes(4, "big") + (99998).to_bytes(4, "big") + b"ACME"
                   + b"YAN" + bytes(4) + b"N" + b" ")
    assert ouch.unpack(raw) == {"type": "O", **ENTER}


def test_rejected_message_carries_a_reject_reason_code():
    raw = ouch.pack("J", timestamp=34_200_000_000_000, order_token="T1",
                    reason=ouch.RejectReason.INVALID_PRICE)
    assert len(raw) == 24 and raw[-1:] == b"X"
    assert ouch.RejectReason(ouch.unpack(raw)["reason"]) is ouch.RejectReason.INVALID_PRICE


@pytest.mark.parametrize("table", ouch._Code.__subclasses__(), ids=lambda t: t.__name__)
def test_code_tables_are_unique_single_ascii_codes_with_meanings(table):
    codes = [r.value for r in table]
    assert len(codes) == len(set(codes)) and all(len(c) == 1 and c.isascii() for c in codes)
    assert all(r.meaning for r in table)
    assert ouch.CancelReason("Q") is ouch.CancelReason.SELF_MATCH_PREVENTION


def test_pack_rules():
    with pytest.raises(ValueError, match="missing fields"):
        ouch.pack("X", order_token="T")
    with pytest.raises(ValueError, match="unknown fields"):
        ouch.pack("X", order_token="T", shares=1, colour="red")
    with pytest.raises(TypeError, match="Price"):
        ouch.pack("O", **{**ENTER, "price": 150.25})
    with pytest.raises(ValueError, match="longer than 8"):
        ouch.pack("O", **{**ENTER, "stock": "TOOLONGSYM"})
    with pytest.raises(ValueError, match="does not fit 4"):
        ouch.pack("X", order_token="T", shares=2**32)


@pytest.mark.parametrize("raw, offset, rule", [
    (b"", 0, "empty message"),
    (b"Q" + bytes(20), 0, "not an OUCH 4.2 message"),
    (b"O" + bytes(40), 41, "enter_order is 49 bytes, got 41 .truncated"),
    (b"X" + bytes(19), 19, "cancel_order is 19 bytes, got 20 .oversized"),
    (b"U" + bytes(50), 51, "replace_order is 47 bytes or replaced is 80 bytes"),
])
def test_unpack_names_offset_and_rule(raw, offset, rule):
    with pytest.raises(ouch.OuchError, match=rule) as e:
        ouch.unpack(raw)
    assert e.value.offset == offset


def test_unpack_with_direction_refuses_the_other_sides_types():
    with pytest.raises(ouch.OuchError, match="not an OUCH 4.2 inbound message"):
        ouch.unpack(ouch.pack("S", timestamp=1, event_code="S"), direction="in")


def test_to_price_is_exact_integer_ticks():
    assert ouch.to_price("150.25") == 1_502_500 and ouch.to_price("0.0001") == 1
    with pytest.raises(ValueError):
        ouch.to_price("1.23456")


# ---------------------------------------------------------------------------------------
# Hypothesis strategies: valid messages of every type

ALNUM = string.ascii_uppercase + string.digits
CHARS = string.ascii_letters + string.digits + " "


def field_strategy(ftype: np.dtype):
    if ftype.kind == "S" and ftype.itemsize == 1:
        return st.sampled_from(CHARS)
    if ftype.kind == "S":
        return st.text(ALNUM, max_size=ftype.itemsize)
    return st.integers(0, 2 ** (8 * ftype.itemsize) - 1)


def message_strategy(s: ouch.MessageSpec):
    return st.fixed_dictionaries({f: field_strategy(s.dtype[f]) for f in s.fields})


@pytest.mark.parametrize("s", all_specs(), ids=lambda s: s.name)
@settings(deadline=None, max_examples=40)
@given(data=st.data())
def test_property_pack_then_unpack_is_identity_for_every_message(s, data):
    fields = data.draw(message_strategy(s))
    raw = ouch.pack(s.name, **fields)
    assert len(raw) == s.length and raw[:1] == s.type.encode()
    assert ouch.unpack(raw, s.direction) == {"type": s.type, **fields}
    assert ouch.unpack(raw) == {"type": s.type, **fields}  # length alone disambiguates


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=90))
def test_property_random_bytes_only_ever_raise_ouch_error(data):
    try:
        ouch.unpack(data)
    except ouch.OuchError:
        pass


# ---------------------------------------------------------------------------------------
# Bulk paths


def test_native_module_is_built_and_used():
    assert ouch.NATIVE, "engine._ouch is missing: run `make native`"


def inbound_stream_st():
    """A client stream: valid OUCH 'U' packets mixed with control and broken packets."""
    msg = st.sampled_from(list(ouch.INBOUND.values())).flatmap(
        lambda s: message_strategy(s).map(lambda f, s=s: sb.unsequenced(ouch.pack(s.name, **f))))
    junk = st.one_of(
        st.just(b"\x00\x00"),                                  # empty packet
        st.builds(lambda p: b"\x00\x03Q" + p, st.binary(min_size=2, max_size=2)),  # unknown type
        st.just(sb.unsequenced(b"Z" + bytes(10))),             # unknown message type
        st.just(sb.unsequenced(b"O" + bytes(40))),             # truncated enter order
        st.just(sb.unsequenced(b"X" + bytes(30))),             # oversized cancel
        st.just(sb.unsequenced(b"")),                          # data packet without a message
        st.sampled_from([sb.client_heartbeat(), sb.login_request("u", "p"), sb.logout_request()]),
    )
    return st.lists(st.one_of(msg, msg, junk), max_size=30)


def assert_same_decoding(a: ouch.Decoded, b: ouch.Decoded):
    assert a.consumed == b.consumed and a.rejects == b.rejects
    assert a.order_type.tolist() == b.order_type.tolist()
    assert a.order_index.tolist() == b.order_index.tolist()
    assert a.control.tobytes() == b.control.tobytes()
    assert a.messages.keys() == b.messages.keys()
    for t in a.messages:
        assert a.messages[t].dtype == b.messages[t].dtype
        assert a.messages[t].tobytes() == b.messages[t].tobytes()


@settings(deadline=None, max_examples=200)
@given(packets=inbound_stream_st(), cut=st.integers(0, 10))
def test_property_c_decoder_matches_the_python_reference(packets, cut):
    stream = b"".join(packets)
    stream = stream[:max(0, len(stream) - cut)]  # often ends inside a packet
    for final in (False, True):
        c = ouch.decode_inbound(stream, final=final)
        py = ouch.decode_inbound(stream, final=final, impl="python")
        assert_same_decoding(c, py)


@settings(deadline=None, max_examples=200)
@given(packets=inbound_stream_st())
def test_property_bulk_decode_recovers_every_valid_message_in_order(packets):
    d = ouch.decode_inbound(b"".join(packets), final=True)
    expected = [p[3:] for p in packets if p[2:3] == b"U" and len(p) > 3
                and p[3:4].decode("latin-1") in ouch.INBOUND
                and len(p) - 3 == ouch.INBOUND[p[3:4].decode("latin-1")].length]
    got = [d.messages[chr(t)][i].tobytes() for t, i in zip(d.order_type, d.order_index)]
    assert got == expected
    assert len(got) + len(d.control) + sum(d.rejects.values()) == len(packets)


def test_bulk_decode_counts_each_reject_reason():
    good = sb.unsequenced(ouch.pack("O", **ENTER))
    stream = (b"\x00\x00" + b"\x00\x02Qx" + sb.unsequenced(b"Z12") + sb.unsequenced(b"O" + bytes(47))
              + good + sb.client_heartbeat() + good[:10])
    d = ouch.decode_inbound(stream, final=True)
    assert d.rejects == {r.value: 1 for r in ouch.Reject}
    assert len(d.messages["O"]) == 1 and ouch.unpack(d.messages["O"][0].tobytes())["stock"] == "AAPL"
    assert d.control.tolist() == [(b"R", len(stream) - 10 - 3, 3)]
    assert d.consumed == len(stream)


def test_stream_mode_leaves_an_unfinished_packet_for_the_next_read():
    stream = sb.unsequenced(ouch.pack("O", **ENTER)) * 2
    first = ouch.decode_inbound(stream[:70])
    assert len(first) == 1 and first.consumed == 52 and not first.rejects
    second = ouch.decode_inbound(stream[first.consumed:])
    assert len(second) == 1 and second.consumed == 52


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_property_random_bytes_never_crash_the_bulk_decoders(data, final):
    for decode in (ouch.decode_inbound, ouch.decode_outbound):
        c = decode(data, final=final)
        assert_same_decoding(c, decode(data, final=final, impl="python"))
        assert c.consumed <= len(data) and (not final or c.consumed == len(data))


def outbound_arrays_st():
    def arrays(spec_and_rows):  # records as they come off the wire: alpha space-padded
        return {s.type: np.frombuffer(b"".join(ouch.pack(s.name, **f) for f in rows), s.dtype)
                for s, rows in spec_and_rows}
    per_type = [st.tuples(st.just(s), st.lists(message_strategy(s), max_size=3))
                for s in ouch.OUTBOUND.values()]
    return st.tuples(*per_type).map(arrays)


@settings(deadline=None, max_examples=40)
@given(messages=outbound_arrays_st(), seed=st.integers(0, 2**32 - 1))
def test_property_encode_outbound_then_decode_is_identity(messages, seed):
    order_type = np.concatenate([np.full(len(a), ord(t), np.uint8) for t, a in messages.items()])
    order_index = np.concatenate([np.arange(len(a), dtype=np.uint32) for a in messages.values()])
    perm = np.random.default_rng(seed).permutation(len(order_type))
    order = (order_type[perm], order_index[perm])
    wire = ouch.encode_outbound(messages, order)
    assert wire == ouch.encode_outbound(messages, order, impl="python")
    d = ouch.decode_outbound(wire, final=True)
    assert not d.rejects and d.consumed == len(wire)
    assert d.order_type.tolist() == order[0].tolist()
    for t, arr in messages.items():  # each type's records come back in arrival order
        assert d.messages[t].tobytes() == arr[order[1][order[0] == ord(t)]].tobytes()


def test_encode_pads_alpha_with_spaces_and_writes_the_type_byte():
    arr = np.zeros(1, ouch.OUTBOUND["J"].dtype)  # numpy leaves type and alpha as NUL
    arr["timestamp"], arr["order_token"], arr["reason"] = 5, b"ABC", b"X"
    wire = ouch.encode_outbound({"J": arr})
    assert wire == b"\x00\x19SJ" + (5).to_bytes(8, "big") + b"ABC" + b" " * 11 + b"X"
    assert ouch.unpack(wire[3:])["order_token"] == "ABC"


def test_inbound_bulk_encode_frames_unsequenced_packets():
    orders = ouch.records("O", 3, **{**ENTER, "shares": [100, 200, 300]})
    wire = ouch.encode_inbound({"O": orders})
    packets = sb.decode_all(wire)
    assert [p.type for p in packets] == [sb.PacketType.UNSEQUENCED_DATA] * 3
    assert [ouch.unpack(p.payload)["shares"] for p in packets] == [100, 200, 300]


def test_encode_refuses_bad_order_and_wrong_dtype():
    arr = ouch.records("C", 1, timestamp=1, order_token="T", decrement_shares=1, reason="U")
    with pytest.raises(ValueError, match="order entry 1: no message 1"):
        ouch.encode_outbound({"C": arr}, (np.array([ord("C")] * 2), np.array([0, 1])))
    with pytest.raises(ValueError, match="dtype"):
        ouch.encode_outbound({"C": ouch.records("J", 1)})
    with pytest.raises(ValueError, match="not an OUCH 4.2 outbound"):
        ouch.encode_outbound({"O": ouch.records("O", 1)})
