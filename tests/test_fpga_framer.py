"""The ITCH framer (fpga/rtl/itch_framer.v) alone, under cocotb: message blocks cut out of
64-bit beats at every byte alignment, bit for bit as the software framing reads them."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from engine import itch
from netio import fpga_sim as fs

pytestmark = pytest.mark.skipif(not fs.shutil.which("iverilog"), reason="Icarus Verilog is not installed")

RECORD = np.dtype([("message", "V50"), ("length", "<u2"), ("seq", "<u8")])
OK, MSGLEN, MOLD = 0, 6, 7


def expected(payload: bytes, seq: int, count: int) -> tuple[list[tuple], int]:
    """Raw records and verdict for one payload of message blocks, walked as the RTL does."""
    recs, pos = [], 0
    while pos < len(payload):
        length = int.from_bytes(payload[pos:pos + 2], "big") if pos + 2 <= len(payload) else 0
        if length < 12 or pos + 2 + length > len(payload):
            return recs, MSGLEN
        body = payload[pos + 2:pos + 2 + length][:50]
        recs.append((np.void(body.ljust(50, b"\0")), length, seq + len(recs)))
        pos += 2 + length
    return recs, (OK if len(recs) == (0 if count == 0xFFFF else count) else MOLD)


def payloads(seed: int) -> list[tuple[bytes, int, int]]:
    """(payload, first seq, header count): real ITCH blocks of random types, plus long
    blocks walked past, short or overrunning blocks, wrong counts, empty payloads."""
    rng = np.random.default_rng(seed)
    types = list(itch.LENGTHS)
    out = []
    seq = 1
    for k in range(60):
        n = int(rng.integers(0, 7))
        msgs = [bytes([ord(t)]) + rng.bytes(itch.LENGTHS[t] - 1) for t in rng.choice(types, n)]
        if k % 9 == 4:
            msgs.append(b"I" + rng.bytes(int(rng.integers(51, 90))))     # longer than the buffer
        blob = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
        count = len(msgs)
        if k % 11 == 5:
            blob += struct.pack(">H", 7) + bytes(7)                      # below 12: not ITCH
        if k % 13 == 6:
            blob += struct.pack(">H", 40) + bytes(10)                    # runs past the end
        if k % 7 == 3:
            count += 1                                                   # count mismatch
        out.append((blob, seq, count))
        seq += len(msgs)
    return out


@pytest.mark.parametrize("valid_prob,ready_prob", [(1.0, 1.0), (0.6, 0.4)])
def test_framer_cuts_blocks_at_every_alignment(valid_prob, ready_prob):
    """Payloads starting on each of the 8 byte lanes, null bytes after them (even a whole
    null last beat): every block is a record with its sequence number, long blocks reach
    the decoder truncated, bad lengths and counts get their verdict, the next packet is whole."""
    items = payloads(seed=int(valid_prob * 10))
    rng = np.random.default_rng(1)
    lead = np.arange(len(items)) % 8
    trail = rng.integers(0, 10, len(items))
    job = {"data": np.frombuffer(b"".join(p for p, _, _ in items), np.uint8),
           "lengths": np.array([len(p) for p, _, _ in items], np.int64),
           "lead": lead.astype(np.int64), "trail": trail.astype(np.int64),
           "seq": np.array([s for _, s, _ in items], np.uint64),
           "count": np.array([c for _, _, c in items], np.int64),
           "valid_prob": np.float64(valid_prob), "ready_prob": np.float64(ready_prob),
           "seed": np.int64(5)}
    out = fs.run_bench("itch_framer_tb", "run_payloads", job, toplevel="itch_framer_harness",
                       sources=("itch_framer.v", str(fs.BENCHES / "itch_framer_harness.v")))
    want_recs, want_verdicts = [], []
    for p, s, c in items:
        recs, verdict = expected(p, s, c)
        want_recs += recs
        want_verdicts.append(verdict)
    got = np.frombuffer(out["records"].tobytes(), RECORD)
    want = np.array(want_recs, RECORD)
    assert {MSGLEN, MOLD, OK} <= set(want_verdicts)
    assert out["verdicts"].tolist() == want_verdicts
    assert len(got) == len(want)
    bad = np.nonzero(got != want)[0]
    assert not len(bad), f"record {bad[0]}: got {got[bad[0]]}, want {want[bad[0]]}"
