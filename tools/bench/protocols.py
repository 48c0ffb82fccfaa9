"""Wire-protocol codec throughput: each fast codec beside a plain-Python reference, same run.

Every codec contributes one function to ``SECTIONS`` returning a flat dict of its figures;
``run()`` merges them.  Timings are medians over repeats (the machines are shared and noisy).
"""
from __future__ import annotations

import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from engine import itch, itch_gen

ITCH_MESSAGES = 1_000_000
ITCH_CALLGRIND_MESSAGES = 100_000


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def struct_loop_decode(data: bytes) -> dict[str, list[tuple]]:
    """The plain-Python reference: one ``struct.unpack_from`` per message into per-type lists.

    Fields are read as the wire has them (alpha as bytes, the timestamp as 2+4 bytes),
    the same information the C path puts in its arrays.
    """
    codecs = {ord(t): (struct.Struct(">" + "".join(_struct_code(dt[name]) for name in dt.names)).unpack_from,
                       dt.itemsize) for t, dt in itch.DTYPES.items()}
    out: dict[str, list[tuple]] = {t: [] for t in itch.DTYPES}
    sinks = {ord(t): out[t].append for t in itch.DTYPES}
    length_prefix = struct.Struct(">H").unpack_from
    pos, end = 0, len(data)
    while pos + 2 <= end:
        (n,) = length_prefix(data, pos)
        pos += 2
        if pos + n > end:
            break
        if n:
            codec = codecs.get(data[pos])
            if codec is not None and codec[1] == n:
                sinks[data[pos]](codec[0](data, pos))
        pos += n
    return out


def callgrind_instructions(script: str, functions: list[str]) -> dict[str, int] | None:
    """Instructions executed inside each C function while ``script`` runs under callgrind.

    Instruction counts do not depend on machine load, unlike the timings.  None when
    valgrind is not installed.
    """
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        toggles = [f"--toggle-collect={f}" for f in functions]
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
                        *toggles, sys.executable, "-c", script], check=True, capture_output=True)
        report = subprocess.run(["callgrind_annotate", str(out)], check=True, capture_output=True, text=True).stdout
    found = dict.fromkeys(functions, 0)
    for count, name in re.findall(r"^\s*([\d,]+) .*?:(\w+) \[", report, re.MULTILINE):
        if name in found:
            found[name] += int(count.replace(",", ""))
    return found


def _framed_prefix(data: bytes, n: int) -> int:
    """Bytes taken by the first ``n`` length-prefixed messages of ``data``."""
    pos = 0
    for _ in range(n):
        pos += 2 + int.from_bytes(data[pos:pos + 2], "big")
    return pos


def _struct_code(field: np.dtype) -> str:
    if field.names:                     # the timestamp: (high >u2, low >u4)
        return "HI"
    if field.kind == "S":
        return f"{field.itemsize}s"
    return {2: "H", 4: "I", 8: "Q"}[field.itemsize]


def itch_figures() -> dict:
    data = itch_gen.random_stream(ITCH_MESSAGES, seed=2024)
    batch = itch.decode(data)
    assert batch.count == ITCH_MESSAGES and not any(batch.rejects.values())
    reference = struct_loop_decode(data)
    assert all(len(reference[t]) == len(batch.messages[t]) for t in itch.DTYPES)

    length_of = np.zeros(256, np.uint16)
    length_of[[ord(t) for t in itch.LENGTHS]] = list(itch.LENGTHS.values())
    lengths = length_of[batch.order["type"]]
    offsets = np.cumsum(lengths.astype(np.int64) + 2) - lengths      # each body, past its prefix

    decode_s = median_seconds(lambda: itch.decode(data), repeats=21)
    views_s = median_seconds(lambda: itch.decode_views(data, offsets, lengths), repeats=21)
    encode_s = median_seconds(lambda: itch.encode(batch), repeats=21)
    struct_s = median_seconds(lambda: struct_loop_decode(data), repeats=3)
    start = _framed_prefix(data, ITCH_MESSAGES // 2)    # 30 mid-session messages: a MoldUDP64 payload's worth
    packet = data[start:start + _framed_prefix(data[start:], 30)]
    packet_s = median_seconds(lambda: [itch.decode(packet) for _ in range(1000)], repeats=7) / 1000
    share = {t: len(batch.messages[t]) / batch.count for t in "ADEUXFP"}
    figures = {
        "itch_stream_messages": batch.count,
        "itch_stream_bytes": len(data),
        "itch_stream_order_messages_share": round(sum(share.values()), 4),
        "itch_decode_msgs_per_s": round(batch.count / decode_s),
        "itch_decode_gbytes_per_s": round(len(data) / decode_s / 1e9, 3),
        "itch_decode_views_msgs_per_s": round(batch.count / views_s),
        "itch_encode_msgs_per_s": round(batch.count / encode_s),
        "struct_loop_msgs_per_s": round(batch.count / struct_s),
        "itch_decode_vs_struct_loop": round(struct_s / decode_s, 1),
        "itch_decode_30_msg_packet_us": round(packet_s * 1e6, 2),
    }
    n = ITCH_CALLGRIND_MESSAGES
    with tempfile.NamedTemporaryFile(suffix=".itch") as stream:
        stream.write(data[:_framed_prefix(data, n)])
        stream.flush()
        instructions = callgrind_instructions(
            "from pathlib import Path\nfrom engine import itch\n"
            f"itch.encode(itch.decode(Path({stream.name!r}).read_bytes()))\n",
            ["itch_scan", "itch_gather", "itch_encode"])
    if instructions:
        figures["itch_decode_instructions_per_msg"] = round((instructions["itch_scan"] + instructions["itch_gather"]) / n, 1)
        figures["itch_encode_instructions_per_msg"] = round(instructions["itch_encode"] / n, 1)
    return figures


SECTIONS: list[Callable[[], dict]] = [itch_figures]
"""One function per codec; add yours here (figure names prefixed with the codec)."""


def run() -> dict:
    figures: dict = {}
    for section in SECTIONS:
        figures.update(section())
    return figures


# --- OUCH 4.2 in SoupBinTCP, MoldUDP64 (engine.ouch, engine.moldudp64): C beside the Python reference

OUCH_MESSAGES = 1_000_000
REFERENCE_MESSAGES = 100_000  # the per-message Python references are too slow for the full set
CALLGRIND_MESSAGES = 20_000


def _ouch_inbound(n: int, rng: np.random.Generator) -> bytes:
    """A client stream of n SoupBinTCP 'U' packets: 60% Enter Order, 30% Cancel, 10% Replace."""
    from engine import ouch
    kinds = rng.choice(np.frombuffer(b"OXU", np.uint8), n, p=[0.6, 0.3, 0.1])
    arrays, order_index = {}, np.zeros(n, np.uint32)
    for t in "OXU":
        sel = np.flatnonzero(kinds == ord(t))
        order_index[sel] = np.arange(len(sel))
        arr = np.frombuffer(rng.integers(0, 256, len(sel) * ouch.INBOUND[t].length, np.uint8).tobytes(),
                            ouch.INBOUND[t].dtype)
        arrays[t] = arr
    return ouch.encode_inbound(arrays, (kinds.astype(np.uint8), order_index))


def ouch_figures() -> dict:
    from engine import ouch
    rng = np.random.default_rng(42)
    stream = _ouch_inbound(OUCH_MESSAGES, rng)
    small = _ouch_inbound(REFERENCE_MESSAGES, rng)
    burst32 = _ouch_inbound(32, rng)
    decoded = ouch.decode_inbound(stream)
    assert len(decoded) == OUCH_MESSAGES and not decoded.rejects

    replies = {t: np.frombuffer(rng.integers(0, 256, OUCH_MESSAGES // 3 * ouch.OUTBOUND[t].length,
                                             np.uint8).tobytes(), ouch.OUTBOUND[t].dtype)
               for t in "AEC"}
    n_out = sum(len(a) for a in replies.values())
    replies_small = {t: a[:REFERENCE_MESSAGES // 3] for t, a in replies.items()}
    n_out_small = sum(len(a) for a in replies_small.values())

    decode_s = median_seconds(lambda: ouch.decode_inbound(stream), repeats=11)
    decode_ref_s = median_seconds(lambda: ouch.decode_inbound(small, impl="python"), repeats=3)
    encode_s = median_seconds(lambda: ouch.encode_outbound(replies), repeats=11)
    encode_ref_s = median_seconds(lambda: ouch.encode_outbound(replies_small, impl="python"), repeats=3)
    burst_s = median_seconds(lambda: ouch.decode_inbound(burst32), repeats=2001)
    decode_rate = OUCH_MESSAGES / decode_s
    encode_rate = n_out / encode_s
    figures = {
        "ouch_decode_inbound_msgs_per_s": round(decode_rate),
        "ouch_decode_inbound_gbytes_per_s": round(len(stream) / decode_s / 1e9, 3),
        "ouch_decode_inbound_reference_msgs_per_s": round(REFERENCE_MESSAGES / decode_ref_s),
        "ouch_decode_vs_reference": round(decode_rate / (REFERENCE_MESSAGES / decode_ref_s), 1),
        "ouch_decode_burst32_us": round(burst_s * 1e6, 2),
        "ouch_encode_outbound_msgs_per_s": round(encode_rate),
        "ouch_encode_outbound_reference_msgs_per_s": round(n_out_small / encode_ref_s),
        "ouch_encode_vs_reference": round(encode_rate / (n_out_small / encode_ref_s), 1),
    }
    n = CALLGRIND_MESSAGES
    with tempfile.NamedTemporaryFile(suffix=".soup") as f:
        f.write(_ouch_inbound(n, np.random.default_rng(7)))
        f.flush()
        instructions = callgrind_instructions(
            "from pathlib import Path\nfrom engine import ouch\n"
            f"ouch.decode_inbound(Path({f.name!r}).read_bytes())\n"
            f"ouch.encode_outbound({{'A': ouch.records('A', {n})}})\n",
            ["ouch_scan", "ouch_gather", "ouch_encode"])
    if instructions:
        figures["ouch_decode_instructions_per_msg"] = round(
            (instructions["ouch_scan"] + instructions["ouch_gather"]) / n, 1)
        figures["ouch_encode_accepted_instructions_per_msg"] = round(instructions["ouch_encode"] / n, 1)
    return figures


def moldudp64_figures() -> dict:
    from engine import moldudp64 as mold
    rng = np.random.default_rng(64)
    sizes = rng.integers(12, 51, OUCH_MESSAGES)  # ITCH-sized messages
    blocks = np.zeros(sizes.sum() + 2 * len(sizes), np.uint8)
    starts = np.concatenate([[0], np.cumsum(sizes + 2)[:-1]])
    blocks[starts] = sizes >> 8
    blocks[starts + 1] = sizes & 0xFF
    stream = blocks.tobytes()
    small = stream[:int(starts[REFERENCE_MESSAGES])]
    packed = mold.pack_stream("NETIO00001", 1, stream, 1400)
    burst = mold.decode_views(packed.data, packed.offset, packed.length)
    assert len(burst) == OUCH_MESSAGES and not burst.rejects
    packed_small = mold.pack_stream("NETIO00001", 1, small, 1400)

    pack_s = median_seconds(lambda: mold.pack_stream("NETIO00001", 1, stream, 1400), repeats=11)
    pack_ref_s = median_seconds(lambda: mold.pack_stream("NETIO00001", 1, small, 1400, impl="python"), 3)
    dec_s = median_seconds(lambda: mold.decode_views(packed.data, packed.offset, packed.length), 11)
    dec_ref_s = median_seconds(lambda: mold.decode_views(packed_small.data, packed_small.offset,
                                                         packed_small.length, impl="python"), 3)
    figures = {
        "moldudp64_packets_per_1m_msgs_at_1400b": len(packed),
        "moldudp64_pack_msgs_per_s": round(OUCH_MESSAGES / pack_s),
        "moldudp64_pack_reference_msgs_per_s": round(REFERENCE_MESSAGES / pack_ref_s),
        "moldudp64_pack_vs_reference": round(pack_ref_s / REFERENCE_MESSAGES * OUCH_MESSAGES / pack_s, 1),
        "moldudp64_decode_msgs_per_s": round(OUCH_MESSAGES / dec_s),
        "moldudp64_decode_reference_msgs_per_s": round(REFERENCE_MESSAGES / dec_ref_s),
        "moldudp64_decode_vs_reference": round(dec_ref_s / REFERENCE_MESSAGES * OUCH_MESSAGES / dec_s, 1),
    }
    n = CALLGRIND_MESSAGES
    with tempfile.NamedTemporaryFile(suffix=".blocks") as f:
        f.write(stream[:int(starts[n])])
        f.flush()
        instructions = callgrind_instructions(
            "from pathlib import Path\nfrom engine import moldudp64 as mold\n"
            f"p = mold.pack_stream('NETIO00001', 1, Path({f.name!r}).read_bytes(), 1400)\n"
            "mold.decode_views(p.data, p.offset, p.length)\n",
            ["mold_pack", "mold_scan"])
    if instructions:
        figures["moldudp64_pack_instructions_per_msg"] = round(instructions["mold_pack"] / n, 1)
        figures["moldudp64_decode_instructions_per_msg"] = round(instructions["mold_scan"] / n, 1)
    return figures


SECTIONS += [ouch_figures, moldudp64_figures]
