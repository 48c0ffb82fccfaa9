"""ITCH 5.0: the wire layout field for field, bulk decode/encode, bad input, and the stream generator."""
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import itch, itch_gen
from engine.itch import DTYPES, LENGTHS, ItchError

try:
    import itch.messages as itchfeed      # PyPI itchfeed: an independent ITCH 5.0 decoder
except ImportError:
    itchfeed = None

# The spec (NASDAQ TotalView-ITCH 5.0, section 1), written out independently of engine/itch.py:
# every message after the common header message_type(1) stock_locate(2) tracking_number(2)
# timestamp(6), as (field, bytes, kind) with kind a=Alpha, i=Integer, p=Price.
SPEC = {
    "S": [("event_code", 1, "a")],
    "R": [("stock", 8, "a"), ("market_category", 1, "a"), ("financial_status_indicator", 1, "a"),
          ("round_lot_size", 4, "i"), ("round_lots_only", 1, "a"), ("issue_classification", 1, "a"),
          ("issue_sub_type", 2, "a"), ("authenticity", 1, "a"), ("short_sale_threshold_indicator", 1, "a"),
          ("ipo_flag", 1, "a"), ("luld_reference_price_tier", 1, "a"), ("etp_flag", 1, "a"),
          ("etp_leverage_factor", 4, "i"), ("inverse_indicator", 1, "a")],
    "H": [("stock", 8, "a"), ("trading_state", 1, "a"), ("reserved", 1, "a"), ("reason", 4, "a")],
    "Y": [("stock", 8, "a"), ("reg_sho_action", 1, "a")],
    "L": [("mpid", 4, "a"), ("stock", 8, "a"), ("primary_market_maker", 1, "a"), ("market_maker_mode", 1, "a"),
          ("market_participant_state", 1, "a")],
    "V": [("level_1", 8, "p"), ("level_2", 8, "p"), ("level_3", 8, "p")],
    "W": [("breached_level", 1, "a")],
    "K": [("stock", 8, "a"), ("ipo_quotation_release_time", 4, "i"), ("ipo_quotation_release_qualifier", 1, "a"),
          ("ipo_price", 4, "p")],
    "J": [("stock", 8, "a"), ("auction_collar_reference_price", 4, "p"), ("upper_auction_collar_price", 4, "p"),
          ("lower_auction_collar_price", 4, "p"), ("auction_collar_extension", 4, "i")],
    "h": [("stock", 8, "a"), ("market_code", 1, "a"), ("operational_halt_action", 1, "a")],
    "A": [("order_reference_number", 8, "i"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "i"),
          ("stock", 8, "a"), ("price", 4, "p")],
    "F": [("order_reference_number", 8, "i"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "i"),
          ("stock", 8, "a"), ("price", 4, "p"), ("attribution", 4, "a")],
    "E": [("order_reference_number", 8, "i"), ("executed_shares", 4, "i"), ("match_number", 8, "i")],
    "C": [("order_reference_number", 8, "i"), ("executed_shares", 4, "i"), ("match_number", 8, "i"),
          ("printable", 1, "a"), ("execution_price", 4, "p")],
    "X": [("order_reference_number", 8, "i"), ("canceled_shares", 4, "i")],
    "D": [("order_reference_number", 8, "i")],
    "U": [("original_order_reference_number", 8, "i"), ("new_order_reference_number", 8, "i"),
          ("shares", 4, "i"), ("price", 4, "p")],
    "P": [("order_reference_number", 8, "i"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "i"),
          ("stock", 8, "a"), ("price", 4, "p"), ("match_number", 8, "i")],
    "Q": [("shares", 8, "i"), ("stock", 8, "a"), ("cross_price", 4, "p"), ("match_number", 8, "i"),
          ("cross_type", 1, "a")],
    "B": [("match_number", 8, "i")],
    "I": [("paired_shares", 8, "i"), ("imbalance_shares", 8, "i"), ("imbalance_direction", 1, "a"),
          ("stock", 8, "a"), ("far_price", 4, "p"), ("near_price", 4, "p"), ("current_reference_price", 4, "p"),
          ("cross_type", 1, "a"), ("price_variation_indicator", 1, "a")],
    "N": [("stock", 8, "a"), ("interest_flag", 1, "a")],
    "O": [("stock", 8, "a"), ("open_eligibility_status", 1, "a"), ("minimum_allowable_price", 4, "p"),
          ("maximum_allowable_price", 4, "p"), ("near_execution_price", 4, "p"), ("near_execution_time", 8, "i"),
          ("lower_price_range_collar", 4, "p"), ("upper_price_range_collar", 4, "p")],
}
SPEC_LENGTHS = dict(S=12, R=39, H=25, Y=20, L=26, V=35, W=12, K=28, J=35, h=21, A=36, F=40, E=31, C=36,
                    X=23, D=19, U=35, P=44, Q=40, B=19, I=50, N=20, O=48)
HEADER = [("message_type", 1, "a"), ("stock_locate", 2, "i"), ("tracking_number", 2, "i"), ("timestamp", 6, "i")]
TYPES = list(SPEC_LENGTHS)


def frame(*bodies: bytes) -> bytes:
    return b"".join(len(b).to_bytes(2, "big") + b for b in bodies)


def sample_fields(msg_type: str, seed: int) -> dict:
    """Distinct, full-width values for every field (so a shifted or swapped field shows)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, size, kind in HEADER[1:] + SPEC[msg_type]:
        if kind == "a":
            out[name] = "".join(chr(c) for c in rng.integers(ord("A"), ord("Z") + 1, size))
        else:
            out[name] = int.from_bytes(rng.bytes(size), "big") | 1 << (8 * size - 1)   # top bit set
    out["timestamp"] = (1 << 48) - 1 - seed
    return out


# ------------------------------------------------------------------------ the layout

def test_every_message_type_has_its_spec_length():
    assert LENGTHS == SPEC_LENGTHS
    assert {t: dt.itemsize for t, dt in DTYPES.items()} == SPEC_LENGTHS


@pytest.mark.parametrize("msg_type", TYPES)
def test_dtype_is_the_wire_image_field_for_field(msg_type):
    """Names, order, widths and kinds as the spec lists them; packed, big-endian, type byte first."""
    dt = DTYPES[msg_type]
    layout = HEADER + SPEC[msg_type]
    assert dt.names == tuple(name for name, _, _ in layout)
    offset = 0
    for name, size, kind in layout:
        field, at = dt.fields[name]
        assert (at, field.itemsize) == (offset, size), name
        if name == "timestamp":
            assert field == itch.TIMESTAMP and field["high"].byteorder == field["low"].byteorder == ">"
        elif kind == "a":
            assert field.kind == "S"
        else:
            assert field.kind == "u" and (field.byteorder == ">" or size == 1)
            assert (name in itch.PRICE_DECIMALS) == (kind == "p"), name
        offset += size
    assert offset == dt.itemsize == SPEC_LENGTHS[msg_type]


def test_prices_are_integer_ticks_with_spec_decimals():
    assert itch.PRICE_DECIMALS["price"] == 4
    assert {itch.PRICE_DECIMALS[f"level_{i}"] for i in (1, 2, 3)} == {8}
    assert DTYPES["V"]["level_1"] == np.dtype(">u8") and DTYPES["A"]["price"] == np.dtype(">u4")


def test_add_order_decodes_from_hand_written_bytes():
    """An A message assembled byte by byte from the spec decodes to the intended values."""
    body = (b"A" + (7).to_bytes(2, "big") + (3).to_bytes(2, "big") + (0x123456789ABC).to_bytes(6, "big")
            + (42).to_bytes(8, "big") + b"B" + (300).to_bytes(4, "big") + b"AAPL    " + (1234500).to_bytes(4, "big"))
    assert len(body) == 36
    batch = itch.decode(frame(body))
    a = batch.messages["A"]
    assert batch.types() == "A" and a.tobytes() == body
    assert (a["stock_locate"][0], a["tracking_number"][0], a["order_reference_number"][0]) == (7, 3, 42)
    assert (a["buy_sell_indicator"][0], a["shares"][0], a["stock"][0], a["price"][0]) == (b"B", 300, b"AAPL    ", 1234500)
    assert itch.timestamps(a)[0] == 0x123456789ABC
    assert itch.unpack(body) == {"message_type": "A", "stock_locate": 7, "tracking_number": 3,
                                 "timestamp": 0x123456789ABC, "order_reference_number": 42,
                                 "buy_sell_indicator": "B", "shares": 300, "stock": "AAPL", "price": 1234500}
    assert itch.pack("A", stock_locate=7, tracking_number=3, timestamp=0x123456789ABC, order_reference_number=42,
                     buy_sell_indicator="B", shares=300, stock="AAPL", price=1234500) == body


# ----------------------------------------------------------------------- round trips

@pytest.mark.parametrize("msg_type", TYPES)
def test_round_trip_every_message_type(msg_type):
    """pack -> unpack gives the fields back; decode -> encode gives the bytes back."""
    bodies = [itch.pack(msg_type, **sample_fields(msg_type, seed)) for seed in range(3)]
    for seed, body in enumerate(bodies):
        assert len(body) == LENGTHS[msg_type]
        assert itch.unpack(body) == {"message_type": msg_type, **sample_fields(msg_type, seed)}
    data = frame(*bodies)
    batch = itch.decode(data)
    assert batch.count == 3 and batch.types() == msg_type * 3 and not any(batch.rejects.values())
    assert [r.tobytes() for r in batch.messages[msg_type]] == bodies
    assert batch.to_records() == [itch.unpack(b) for b in bodies]
    assert itch.encode(batch) == data


def test_timestamps_are_exact_to_48_bits():
    arr = itch.new_array("D", 4)
    ns = np.array([0, 1, 2**32 + 5, 2**48 - 1], np.uint64)
    itch.set_timestamps(arr, ns)
    assert np.array_equal(itch.timestamps(arr), ns)
    assert arr[3].tobytes()[5:11] == b"\xff" * 6
    with pytest.raises(ItchError, match="timestamp"):
        itch.set_timestamps(arr, 2**48)
    with pytest.raises(ItchError, match="timestamp"):
        itch.pack("D", timestamp=2**48)


def test_new_array_and_pack_default_to_zero_and_spaces():
    arr = itch.new_array("F", 1)
    assert arr.tobytes() == itch.pack("F")
    assert itch.pack("F")[19:20] == b" " and itch.pack("F")[36:40] == b"    " and itch.pack("F")[20:24] == bytes(4)


def test_mixed_stream_keeps_arrival_order_and_rows():
    bodies = [itch.pack(t, order_reference_number=i) if "order_reference_number" in DTYPES[t].names
              else itch.pack(t, stock_locate=i) for i, t in enumerate("SADADEUXAPS")]
    batch = itch.decode(frame(*bodies))
    assert batch.types() == "SADADEUXAPS"
    assert batch.order["index"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 1]
    assert [chr(t) for t in batch.order["type"]] == list("SADADEUXAPS")
    assert batch.messages["A"]["order_reference_number"].tolist() == [1, 3, 8]
    assert all(len(batch.messages[t]) == 0 for t in "RHYLVWKJhFCQBINO")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)])
def test_decode_accepts_any_byte_buffer(kind):
    data = frame(itch.pack("E", executed_shares=5), itch.pack("B", match_number=9))
    batch = itch.decode(kind(data))
    assert batch.types() == "EB" and itch.encode(batch) == data


def test_encode_from_user_built_arrays_in_any_byte_order():
    adds = itch.new_array("A", 2)
    adds["shares"] = [100, 200]
    deletes = itch.new_array("D", 1)
    native = np.concatenate([adds])           # numpy hands back a native-endian copy
    assert native.dtype != DTYPES["A"]
    data = itch.encode(itch.ItchBatch.from_messages({"A": native, "D": deletes}))
    assert itch.decode(data).types() == "AAD"
    assert itch.decode(data).messages["A"]["shares"].tolist() == [100, 200]
    assert [r["shares"] for r in itch.ItchBatch.from_messages({"A": native}).to_records()] == [100, 200]


def test_batches_compare_by_wire_bytes_order_and_rejects():
    data = itch_gen.random_stream(500, seed=4)
    assert itch.decode(data) == itch.decode(bytearray(data))
    assert itch.decode(data) != itch.decode(data[:-1])                  # a truncated last message
    assert itch.decode(data) != itch.decode_views(data, *views_of(data))  # only views trace a source
    changed = itch.decode(data)
    changed.messages["A"]["shares"][0] += 1
    assert changed != itch.decode(data)


def test_encode_refuses_inconsistent_batches():
    batch = itch.decode(frame(itch.pack("D"), itch.pack("D")))
    batch.order["index"][1] = 5
    with pytest.raises(ItchError, match=r"order\[1\]"):
        itch.encode(batch)
    batch = itch.ItchBatch.from_messages({"D": np.zeros(1, DTYPES["D"])})   # message_type byte left 0
    with pytest.raises(ItchError, match=r"order\[0\].*message_type"):
        itch.encode(batch)


# ----------------------------------------------------------------------- bad input

def reference_walk(data: bytes) -> tuple[list[bytes], dict[str, int]]:
    """The framing rules in plain Python: the valid bodies and the rejects by reason."""
    valid, rejects, pos = [], dict.fromkeys(itch.REJECT_REASONS, 0), 0
    while pos < len(data):
        if len(data) - pos < 2:
            rejects["truncated"] += 1
            break
        n = int.from_bytes(data[pos:pos + 2], "big")
        body = data[pos + 2:pos + 2 + n]
        pos += 2 + n
        if n == 0:
            rejects["empty"] += 1
        elif len(body) < n:
            rejects["truncated"] += 1
            break
        elif chr(body[0]) not in LENGTHS:
            rejects["unknown_type"] += 1
        elif LENGTHS[chr(body[0])] != n:
            rejects["length_mismatch"] += 1
        else:
            valid.append(body)
    return valid, rejects


def test_bad_messages_are_counted_by_reason_and_the_rest_kept():
    good = [itch.pack("A", shares=1), itch.pack("D", order_reference_number=2), itch.pack("S", event_code="C")]
    data = (frame(good[0])
            + frame(b"Z" * 10)                       # unknown type
            + frame(itch.pack("D") + b"\x00")        # oversized for its type
            + frame(itch.pack("E")[:-1])             # too short for its type
            + b"\x00\x00"                            # empty
            + frame(good[1], good[2])
            + (36).to_bytes(2, "big") + itch.pack("A")[:20])   # truncated by the end of the buffer
    batch = itch.decode(data)
    assert batch.rejects == {"truncated": 1, "length_mismatch": 2, "unknown_type": 1, "empty": 1}
    assert batch.types() == "ADS"
    assert [batch.messages[chr(t)][i].tobytes() for t, i in batch.order.tolist()] == good
    assert reference_walk(data) == (good, batch.rejects)


def test_a_lone_trailing_byte_is_a_truncated_length_prefix():
    batch = itch.decode(frame(itch.pack("B")) + b"\x00")
    assert batch.types() == "B" and batch.rejects["truncated"] == 1


def test_empty_input_decodes_to_an_empty_batch():
    batch = itch.decode(b"")
    assert batch.count == 0 and set(batch.messages) == set(LENGTHS) and itch.encode(batch) == b""


@pytest.mark.parametrize("data, rule", [
    (frame(itch.pack("A")) + b"\x00", r"offset 38: truncated"),
    (frame(itch.pack("A")) + b"\x00\x24A", r"offset 38: truncated: length prefix 36"),
    (frame(itch.pack("A")) + b"\x00\x00", r"offset 38: empty"),
    (frame(itch.pack("A"), itch.pack("D") + b"\x00"), r"offset 38: length mismatch: type 'D' is 19 bytes"),
    (frame(itch.pack("A"), b"z" * 9), r"offset 40: unknown message type 'z'"),
])
def test_strict_reader_names_offset_and_rule(data, rule):
    with pytest.raises(ItchError, match=rule):
        list(itch.iter_unpack(data))


def test_unpack_names_offset_and_rule():
    with pytest.raises(ItchError, match=r"offset 3: unknown message type 'z'"):
        itch.unpack(b"abcz" + bytes(30), 3)
    with pytest.raises(ItchError, match=r"offset 1: truncated: type 'A' is 36 bytes, 20 remain"):
        itch.unpack(b"x" + itch.pack("A")[:20], 1)
    with pytest.raises(ItchError, match=r"offset 5: truncated"):
        itch.unpack(b"12345", 5)
    assert issubclass(ItchError, ValueError)


def test_unpack_walks_unframed_messages_by_offset():
    run = itch.pack("A", shares=1) + itch.pack("X", canceled_shares=2) + itch.pack("D")
    offset, seen = 0, []
    while offset < len(run):
        message = itch.unpack(run, offset)
        seen.append(message["message_type"])
        offset += LENGTHS[message["message_type"]]
    assert seen == ["A", "X", "D"]


def test_pack_refuses_what_the_wire_cannot_carry():
    with pytest.raises(ItchError, match="no such field"):
        itch.pack("A", colour="red")
    with pytest.raises(ItchError, match="stock"):
        itch.pack("A", stock="TOOLONGNAME")
    with pytest.raises(ItchError, match="shares"):
        itch.pack("A", shares=2**32)
    with pytest.raises(ItchError, match="shares"):
        itch.pack("A", shares=-1)
    with pytest.raises(ItchError, match="unknown message type 'Z'"):
        itch.pack("Z")
    with pytest.raises(ItchError, match="message_type"):
        itch.pack("A", message_type="D")


# The kernels alone, built with AddressSanitizer and UBSan, on random framed streams and
# random views, every buffer allocated to its exact size so any stray byte is caught.
FUZZ_HARNESS = r"""
#include "itch.c"
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static void *exact(size_t n) { return malloc(n ? n : 1); }

static int decode_and_encode(const uint8_t *buf, size_t len, const int64_t *off, const uint16_t *vlen,
                             uint64_t n_views, const uint8_t lengths[256])
{
    uint64_t counts[256] = {0}, offset[257], rejects[4] = {0};
    int64_t valid = off ? itch_scan_views(buf, len, off, vlen, n_views, lengths, counts, offset, rejects)
                        : itch_scan(buf, len, lengths, counts, offset, rejects);
    uint8_t *block = exact(offset[256]), *order = exact(valid * 5);
    uint32_t *source = exact(valid * 4);
    int64_t placed = off ? itch_gather_views(buf, len, off, vlen, n_views, lengths, block, offset, counts,
                                             order, source, valid)
                         : itch_gather(buf, len, lengths, block, offset, counts, order, valid);
    if (placed != valid) return 1;
    const uint8_t *src[256] = {0};
    uint8_t *arrays[256] = {0};
    size_t total = 0;
    for (int t = 0; t < 256; t++) {
        total += counts[t] * (lengths[t] + 2);
        if (counts[t]) {   /* each type in its own exact allocation, as numpy would hold it */
            arrays[t] = exact(counts[t] * lengths[t]);
            memcpy(arrays[t], block + offset[t], counts[t] * lengths[t]);
            src[t] = arrays[t];
        }
    }
    uint8_t *out = exact(total);
    int bad = itch_encode(order, valid, lengths, src, counts, out, total) != (int64_t)total;
    for (int t = 0; t < 256; t++) free(arrays[t]);
    free(out), free(block), free(order), free(source);
    return bad;
}

int main(void)
{
    uint8_t lengths[256] = {0};
    %(lengths)s
    const char *types = "%(types)s";
    for (int round = 0; round < 20000; round++) {
        size_t len = 0, cap = next() %% 400;
        uint8_t *tmp = exact(cap + 64);
        while (len < cap) {          /* valid messages, wrong lengths, garbage, in random turns */
            uint64_t r = next();
            size_t n = r %% 3 == 0 ? next() %% 70 : lengths[(uint8_t)types[next() %% %(n_types)d]];
            if (len + 2 + n > cap + 64) break;
            tmp[len] = (uint8_t)(n >> 8), tmp[len + 1] = (uint8_t)n;
            for (size_t i = 0; i < n; i++) tmp[len + 2 + i] = (uint8_t)next();
            if (n && r %% 3 != 0) tmp[len + 2] = (uint8_t)types[next() %% %(n_types)d];
            if (n && r %% 3 == 0 && next() %% 2) tmp[len + 2] = (uint8_t)types[next() %% %(n_types)d];
            len += 2 + n;
        }
        len -= next() %% 2 ? next() %% (len + 1) %% 7 : 0;   /* sometimes cut the last message short */
        uint8_t *buf = exact(len);
        memcpy(buf, tmp, len);
        uint64_t n_views = next() %% 16;
        int64_t *off = exact(n_views * 8);
        uint16_t *vlen = exact(n_views * 2);
        for (uint64_t k = 0; k < n_views; k++) {
            off[k] = (int64_t)(next() %% (len + 10)) - 5;
            vlen[k] = next() %% 4 ? lengths[(uint8_t)types[next() %% %(n_types)d]] : next() %% 70;
        }
        if (decode_and_encode(buf, len, NULL, NULL, 0, lengths) ||
            decode_and_encode(buf, len, off, vlen, n_views, lengths)) {
            printf("round %%d: placed or encoded size disagrees with the scan\n", round);
            return 1;
        }
        free(tmp), free(buf), free(off), free(vlen);
    }
    return 0;
}
"""


def sanitized_binary(source: Path) -> Path:
    binary = source.with_suffix("")
    cffi_build = Path(__file__).resolve().parent.parent / "cffi_build"
    subprocess.run(["gcc", "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{cffi_build}", str(source), "-o", str(binary)], check=True, capture_output=True)
    return binary


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_kernels_are_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run([str(sanitized_binary(probe))], capture_output=True).returncode != 0:
        pytest.skip("the sanitizer runtime does not start on this kernel")
    source = tmp_path / "itch_fuzz.c"
    source.write_text(FUZZ_HARNESS % {
        "lengths": " ".join(f"lengths[{ord(t)}] = {n};" for t, n in LENGTHS.items()),
        "types": "".join(LENGTHS), "n_types": len(LENGTHS)})
    run = subprocess.run([str(sanitized_binary(source))], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]


# ----------------------------------------------------------------------- properties

valid_message = st.sampled_from(TYPES).flatmap(
    lambda t: st.binary(min_size=LENGTHS[t] - 1, max_size=LENGTHS[t] - 1).map(lambda rest: t.encode() + rest))


@settings(deadline=None, max_examples=300)
@given(st.lists(valid_message, max_size=40))
def test_encode_after_decode_is_the_identity_on_valid_streams(bodies):
    data = frame(*bodies)
    batch = itch.decode(data)
    assert batch.count == len(bodies) and not any(batch.rejects.values())
    assert batch.types() == "".join(chr(b[0]) for b in bodies)
    assert itch.encode(batch) == data
    assert [itch.pack(r["message_type"], **r) for r in batch.to_records()] == bodies


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_and_match_the_reference_walk(data):
    batch = itch.decode(data)
    valid, rejects = reference_walk(data)
    assert batch.rejects == rejects
    assert [batch.messages[chr(t)][i].tobytes() for t, i in batch.order.tolist()] == valid
    assert itch.encode(batch) == frame(*valid)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.one_of(valid_message, st.binary(max_size=60)), max_size=20), st.binary(max_size=3))
def test_garbage_between_valid_messages_loses_none_of_them(messages, tail):
    """Each framed message is kept or counted once; a ragged tail adds only its own rejects."""
    batch = itch.decode(frame(*messages) + tail)
    kept = [m for m in messages if m and LENGTHS.get(chr(m[0])) == len(m)]
    assert [batch.messages[chr(t)][i].tobytes() for t, i in batch.order.tolist()] == kept
    tail_rejects = sum(reference_walk(tail)[1].values())
    assert sum(batch.rejects.values()) == len(messages) - len(kept) + tail_rejects


# ------------------------------------------------------ an independent decoder agrees

# itchfeed (PyPI) spells a few fields differently; everything else has the same name.
ITCHFEED_NAMES = {"luld_ref": "luld_reference_price_tier", "level1_price": "level_1", "level2_price": "level_2",
                  "level3_price": "level_3", "ipo_release_qualifier": "ipo_quotation_release_qualifier",
                  "ipo_release_time": "ipo_quotation_release_time",
                  "auction_collar_extention": "auction_collar_extension", "cancelled_shares": "canceled_shares",
                  "variation_indicator": "price_variation_indicator"}


@pytest.mark.skipif(itchfeed is None, reason="itchfeed (a test extra) not installed")
@settings(deadline=None, max_examples=400)
@given(valid_message)
def test_itchfeed_reads_every_field_as_we_do(body):
    """A third party's reading of the spec (itchfeed) gives the same value for every field."""
    msg_type = chr(body[0])
    theirs = {ITCHFEED_NAMES.get(k, k): v for k, v in vars(itchfeed.messages[body[:1]](body)).items()}
    if msg_type == "U":
        theirs["original_order_reference_number"] = theirs.pop("order_reference_number")
    record = itch.decode(frame(body)).messages[msg_type]
    assert itch.timestamps(record)[0] == theirs["timestamp"]
    for name in DTYPES[msg_type].names[1:]:
        if name != "timestamp":
            spec, at = DTYPES[msg_type].fields[name]
            ours = record.tobytes()[at:at + spec.itemsize]
            assert theirs[name] == (ours if spec.kind == "S" else int.from_bytes(ours, "big")), name


# ------------------------------------------------------------------------ views

def views_of(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of the bodies of a framed stream (as a MoldUDP64 decoder reports them)."""
    offsets, lengths, pos = [], [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        offsets.append(pos + 2)
        lengths.append(n)
        pos += 2 + n
    return np.array(offsets, np.int64), np.array(lengths, np.uint16)


def test_views_decode_like_the_framed_stream():
    data = itch_gen.random_stream(2000, seed=11)
    framed, viewed = itch.decode(data), itch.decode_views(data, *views_of(data))
    assert viewed.types() == framed.types() and viewed.rejects == framed.rejects
    assert all(viewed.messages[t].tobytes() == framed.messages[t].tobytes() for t in LENGTHS)
    assert np.array_equal(viewed.source, np.arange(2000)) and framed.source is None
    assert itch.encode(viewed) == data


def test_bad_views_are_counted_and_skipped_and_the_rest_traced_to_their_view():
    buf = itch.pack("A", shares=1) + itch.pack("D") + b"Z" * 5 + itch.pack("E")[:-1]
    offsets = [0, 36, 55, 60, 0, -1, len(buf) - 3, 36]
    lengths = [36, 19, 5, 30, 0, 19, 19, 19]
    batch = itch.decode_views(np.frombuffer(buf, np.uint8), offsets, lengths)
    assert batch.types() == "ADD"
    assert batch.source.tolist() == [0, 1, 7]
    assert batch.rejects == {"truncated": 2, "length_mismatch": 1, "unknown_type": 1, "empty": 1}


def test_views_refuse_mismatched_arrays():
    with pytest.raises(ValueError, match="equal-length"):
        itch.decode_views(b"", [0, 1], [1])
    with pytest.raises(ValueError, match="65535"):
        itch.decode_views(b"", [0], [70000])


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=200), st.lists(st.tuples(st.integers(-5, 210), st.integers(0, 60)), max_size=20))
def test_random_views_never_crash_and_keep_exactly_the_valid_ones(buf, views):
    batch = itch.decode_views(buf, [o for o, _ in views], [n for _, n in views])
    expected = [k for k, (o, n) in enumerate(views)
                if n and 0 <= o and o + n <= len(buf) and LENGTHS.get(chr(buf[o])) == n]
    assert batch.source.tolist() == expected
    assert [batch.messages[chr(t)][i].tobytes() for t, i in batch.order.tolist()] == \
        [buf[views[k][0]:views[k][0] + views[k][1]] for k in expected]
    assert sum(batch.rejects.values()) == len(views) - len(expected)


def test_moldudp64_burst_decodes_straight_into_itch_arrays():
    """MoldUDP64 packets -> the Mold decoder's views -> ITCH arrays, the feed handler's path."""
    mold = pytest.importorskip("engine.moldudp64", reason="engine.moldudp64 not present")
    data = itch_gen.random_stream(5000, seed=12)
    packed = mold.pack_stream("NETIO00001", 1, data, 1400)
    views = mold.decode_views(packed.data, packed.offset, packed.length)
    batch = itch.decode_views(views.buffer, views.offset, views.length)
    assert batch.count == 5000 and itch.encode(batch) == data
    assert np.array_equal(views.sequence[batch.source], np.arange(1, 5001))


# ------------------------------------------------------------------------ generator

def test_random_stream_is_deterministic_and_exactly_n_messages():
    assert itch_gen.random_stream(5000, seed=7) == itch_gen.random_stream(5000, seed=7)
    assert itch_gen.random_stream(5000, seed=7) != itch_gen.random_stream(5000, seed=8)
    for n in (0, 1, 10, 5000):
        batch = itch.decode(itch_gen.random_stream(n, seed=1))
        assert batch.count == n and not any(batch.rejects.values())


def test_random_stream_is_a_consistent_trading_day():
    """Opens like NASDAQ, time never runs backwards, every order event refers to a live order
    with enough shares, reference and match numbers rise, and the mix is order-message heavy."""
    batch = itch_gen.random_batch(60_000, seed=3)
    assert batch.types().startswith("SR")
    times = np.empty(batch.count, np.uint64)
    for t in LENGTHS:
        rows = batch.order["type"] == ord(t)
        times[rows] = itch.timestamps(batch.messages[t])[batch.order["index"][rows]]
    assert np.all(np.diff(times.astype(np.int64)) >= 0)

    live: dict[int, int] = {}
    last_ref = last_match = 0
    for record in batch.to_records():
        kind = record["message_type"]
        if kind in "AF":
            assert record["order_reference_number"] > last_ref
            last_ref = live_ref = record["order_reference_number"]
            live[live_ref] = record["shares"]
        elif kind in "ECX":
            shares = record["executed_shares"] if kind in "EC" else record["canceled_shares"]
            assert 0 < shares <= live[record["order_reference_number"]]
            live[record["order_reference_number"]] -= shares
        elif kind == "D":
            assert live.pop(record["order_reference_number"]) > 0
        elif kind == "U":
            assert live.pop(record["original_order_reference_number"]) > 0
            assert record["new_order_reference_number"] > last_ref
            last_ref = record["new_order_reference_number"]
            live[last_ref] = record["shares"]
        if kind in "ECPQ":
            assert record["match_number"] == last_match + 1
            last_match = record["match_number"]

    counts = {t: len(a) for t, a in batch.messages.items()}
    assert sum(counts[t] for t in "ADEUXFP") > 0.95 * batch.count
    assert all(counts[t] > 0 for t in LENGTHS)


def test_struct_loop_reference_agrees_with_the_c_decoder():
    """The benchmark's plain-Python baseline decodes the same messages (so the ratio is fair)."""
    from tools.bench.protocols import struct_loop_decode
    data = itch_gen.random_stream(3000, seed=5)
    batch, reference = itch.decode(data), struct_loop_decode(data)
    for t, dt in DTYPES.items():
        fmt = struct.Struct(">" + "".join("HI" if dt[n].names else f"{dt[n].itemsize}s" if dt[n].kind == "S"
                                          else {2: "H", 4: "I", 8: "Q"}[dt[n].itemsize] for n in dt.names))
        assert reference[t] == [fmt.unpack(r.tobytes()) for r in batch.messages[t]]
