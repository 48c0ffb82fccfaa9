"""A synthetic run with realistic per-stage latency shapes, for the docs and the tests.

Each simulated message walks the seven venue stages; a stage's time is drawn
from a log-normal body plus a rare tail (interrupts, cache misses, a book
rebuild in Matching), TOTAL is the per-message sum plus the gaps between
stamps, TX completion (the kick until the frames left) comes after TOTAL, and
the round trip adds the wire and the load generator's own stack.
One interval carries a Matching stall, so the per-interval view has a spike.

    python -m tools.report.example run.hlog && netio-report run.hlog --plot run.png
"""
import argparse

import numpy as np

from engine.telemetry import HlogWriter, StageHistogram

# stage tag: (median ns, log-normal sigma, tail probability, tail scale ns)
SHAPES = {
    "NetworkRX": (850, 0.20, 2e-4, 6_000),
    "Deserialize": (160, 0.15, 1e-4, 1_000),
    "Validation": (110, 0.15, 1e-4, 800),
    "Matching": (1_400, 0.45, 1e-3, 9_000),
    "Serialize": (190, 0.15, 1e-4, 900),
    "Journal": (1_200, 0.20, 2e-4, 8_000),
    "NetworkTX": (1_000, 0.25, 3e-4, 5_000),
}
TX_COMPLETION = (6_000, 0.30)
STAMP_GAP_NS = 40  # per hop: the time between one stage's end stamp and the next one's start
WIRE_NS = 7_500  # load generator stack + loopback, both ways
START_TIME_S = 1_763_000_000.0


def draw_stages(rng: np.random.Generator, n: int, stall: bool = False) -> dict[str, np.ndarray]:
    """Per-message stage times (ns) for ``n`` messages, TOTAL, TxCompletion and RoundTrip included."""
    out = {}
    for tag, (median, sigma, p_tail, tail) in SHAPES.items():
        t = rng.lognormal(np.log(median), sigma, n)
        hit = rng.random(n) < p_tail
        t[hit] += rng.exponential(tail, hit.sum())
        if stall and tag == "Matching":
            hit = rng.random(n) < 0.02
            t[hit] += rng.uniform(20_000, 60_000, hit.sum())
        out[tag] = t
    out["TOTAL"] = sum(out.values()) + STAMP_GAP_NS * (len(SHAPES) - 1)
    out["TxCompletion"] = rng.lognormal(np.log(TX_COMPLETION[0]), TX_COMPLETION[1], n)
    out["RoundTrip"] = out["TOTAL"] + rng.lognormal(np.log(WIRE_NS), 0.15, n)
    return out


def write_example(path: str, intervals: int = 30, per_interval: int = 20_000, seed: int = 1,
                  stall_at: int | None = 20, source: str | None = "open-loop") -> None:
    """Write a tagged interval log of a synthetic run to ``path``."""
    rng = np.random.default_rng(seed)
    writer = HlogWriter(path, start_time_s=START_TIME_S, comments=(f"[Source: {source}]",) if source else ())
    for i in range(intervals):
        for tag, values in draw_stages(rng, per_interval, stall=i == stall_at).items():
            stage = StageHistogram(tag)
            stage.record(np.maximum(values.astype(np.int64), 1))
            writer.write(stage.synced(), START_TIME_S + i, START_TIME_S + i + 1, tag)
    writer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the .hlog file to write")
    p.add_argument("--intervals", type=int, default=30)
    p.add_argument("--per-interval", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    write_example(a.out, a.intervals, a.per_interval, a.seed)


if __name__ == "__main__":
    main()
