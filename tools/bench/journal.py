"""Journal: sealing a batch with the C CRC-32C vs zlib.crc32 per record in Python, append
throughput per flush policy, and verify-on-read throughput (medians over repeats)."""
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from engine import journal
from engine.commands import COMMAND_DTYPE
from engine.journal import FlushPolicy, Journal

BATCH = 65_536
REPEATS = 5


def _median_s(fn, repeats=REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _records() -> np.ndarray:
    recs = np.zeros(BATCH, journal.record_dtype(COMMAND_DTYPE))
    recs["seq"] = np.arange(1, BATCH + 1)
    recs["payload"]["qty"] = np.arange(BATCH)
    return recs


def run() -> dict:
    recs = _records()
    crc_at = recs.dtype.fields["crc"][1]
    c_seal = _median_s(lambda: journal._seal(recs))
    raw = recs.view(np.uint8).reshape(BATCH, -1)

    def zlib_seal():
        for row in raw:
            zlib.crc32(row[:crc_at])
    zlib_seal_s = _median_s(zlib_seal, repeats=3)

    figures = {
        "record_bytes": recs.dtype.itemsize,
        "batch_records": BATCH,
        "seal_c_crc32c_ns_per_record": round(c_seal / BATCH * 1e9, 2),
        "seal_zlib_loop_ns_per_record": round(zlib_seal_s / BATCH * 1e9, 1),
        "seal_speedup_x": round(zlib_seal_s / c_seal, 1),
    }
    payloads = np.zeros(BATCH, COMMAND_DTYPE)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:   # the repo's disk, not tmpfs
        for policy, batch, repeats in ((FlushPolicy.BATCH, BATCH, REPEATS), (FlushPolicy.FSYNC, 1024, 20)):
            path = Path(tmp) / f"{policy.value}.jnl"
            with Journal.open(path, COMMAND_DTYPE, flush=policy) as j:
                s = _median_s(lambda: j.append(payloads[:batch]), repeats)
            name = policy.value.replace("-", "_")
            figures[f"append_{name}_batch_records"] = batch
            figures[f"append_{name}_us_per_batch"] = round(s * 1e6, 1)
            figures[f"append_{name}_records_per_s"] = round(batch / s)
        path = Path(tmp) / "batch.jnl"
        n = len(journal.read(path).records)
        read_s = _median_s(lambda: journal.read(path))
        figures["read_verify_records"] = n
        figures["read_verify_records_per_s"] = round(n / read_s)
    return figures
