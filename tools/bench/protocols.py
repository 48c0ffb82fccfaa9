"""Wire-protocol codec throughput: each fast codec beside a plain-Python reference, same run.

Every codec contributes one function to ``SECTIONS`` returning a flat dict of its figures;
``run()`` merges them.  Timings are medians over repeats (the machines are shared and noisy).
"""
from __future__ import annotations

import statistics
import struct
import time
from typing import Callable

import numpy as np

from engine import itch, itch_gen

ITCH_MESSAGES = 1_000_000


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
    formats = {t: struct.Struct(">" + "".join(_struct_code(dt[name]) for name in dt.names))
               for t, dt in itch.DTYPES.items()}
    lengths = {ord(t): n for t, n in itch.LENGTHS.items()}
    codecs = {ord(t): (s, n) for t, s, n in ((t, formats[t], itch.LENGTHS[t]) for t in itch.DTYPES)}
    out: dict[str, list[tuple]] = {t: [] for t in itch.DTYPES}
    sinks = {ord(t): out[t].append for t in itch.DTYPES}
    length_prefix = struct.Struct(">H").unpack_from
    pos, end = 0, len(data)
    while pos + 2 <= end:
        (n,) = length_prefix(data, pos)
        pos += 2
        if n == 0 or pos + n > end:
            break
        codec = codecs.get(data[pos])
        if codec is not None and codec[1] == n == lengths[data[pos]]:
            sinks[data[pos]](codec[0].unpack_from(data, pos))
        pos += n
    return out


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

    decode_s = median_seconds(lambda: itch.decode(data), repeats=21)
    encode_s = median_seconds(lambda: itch.encode(batch), repeats=21)
    struct_s = median_seconds(lambda: struct_loop_decode(data), repeats=3)
    share = {t: len(batch.messages[t]) / batch.count for t in "ADEUXFP"}
    return {
        "itch_stream_messages": batch.count,
        "itch_stream_bytes": len(data),
        "itch_stream_order_messages_share": round(sum(share.values()), 4),
        "itch_decode_msgs_per_s": round(batch.count / decode_s),
        "itch_decode_gbytes_per_s": round(len(data) / decode_s / 1e9, 3),
        "itch_encode_msgs_per_s": round(batch.count / encode_s),
        "struct_loop_msgs_per_s": round(batch.count / struct_s),
        "itch_decode_vs_struct_loop": round(struct_s / decode_s, 1),
    }


SECTIONS: list[Callable[[], dict]] = [itch_figures]
"""One function per codec; add yours here (figure names prefixed with the codec)."""


def run() -> dict:
    figures: dict = {}
    for section in SECTIONS:
        figures.update(section())
    return figures
