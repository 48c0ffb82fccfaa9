"""A tiny journaled venue for the crash test (tests/test_journal.py), run as a child process.

    python tests/journal_crash_driver.py JOURNAL SEED BATCHES [--pause-ms N]

Recovers whatever JOURNAL holds (replays it into a fresh book and risk state, printing
``recovered <records> <state hash>``), then carries on with the deterministic command
stream of SEED from the first command not journaled, up to BATCHES batches. Each batch
is risk-checked, journaled (flush policy BATCH), matched, and only then acknowledged
with ``ack <last sequence number>``. Prints ``done <state hash>`` at the end.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.book import Book  # noqa: E402
from engine.commands import COMMAND_DTYPE, Kind, Side, Tif  # noqa: E402
from engine.journal import FlushPolicy, Journal  # noqa: E402
from engine.matching import Matcher  # noqa: E402
from engine.risk import Limits, RiskEngine  # noqa: E402

CLIENTS, SYMBOLS = 4, 2


def stream_batch(seed: int, k: int) -> np.ndarray:
    """Batch ``k`` of the stream: the same for the same (seed, k), whatever came before."""
    r = np.random.default_rng([seed, k])
    n = int(r.integers(1, 40))
    cmds = np.zeros(n, COMMAND_DTYPE)
    cmds["ts"] = 1_000_000_000 + k * 1_000_000 + np.arange(n)
    cmds["client"] = r.integers(0, CLIENTS, n)
    cmds["symbol"] = r.integers(0, SYMBOLS, n)
    serial = k * 64 + np.arange(n) + 1                      # unique tokens across the stream
    kind = r.choice([Kind.ENTER, Kind.CANCEL, Kind.REPLACE], n, p=[0.7, 0.15, 0.15])
    earlier = np.maximum(1, serial - r.integers(1, 300, n))  # some live, some long gone
    cmds["kind"] = kind
    cmds["token"] = np.where(kind == Kind.ENTER, serial, earlier)
    cmds["new_token"] = np.where(kind == Kind.REPLACE, serial, 0)
    cmds["side"] = r.choice([Side.BUY, Side.SELL], n)
    cmds["price"] = 10_000 + r.integers(-8, 9, n)
    cmds["qty"] = np.where(kind == Kind.CANCEL, 0, r.choice([1, 10, 100, 500, 2_000], n))
    cmds["tif"] = r.choice([Tif.DAY] * 5 + [Tif.IOC], n)
    return cmds


class Venue:
    """Risk + matching, as a venue runs them; ``replay`` is the recovery path."""

    def __init__(self):
        self.book = Book(symbols=SYMBOLS, pool_size=4096, band_ticks=128)
        self.matcher = Matcher(self.book)
        limits = Limits.unlimited(CLIENTS, SYMBOLS).with_changes(max_qty=1_000, long_limit=6_000, short_limit=6_000)
        self.risk = RiskEngine(CLIENTS, SYMBOLS, limits)

    def check(self, cmds: np.ndarray) -> None:
        self.risk.check(cmds)

    def match(self, cmds: np.ndarray) -> np.ndarray:
        events = self.matcher.run(cmds)
        self.risk.on_events(cmds, events)
        return events

    def replay(self, cmds: np.ndarray) -> None:
        """Apply journaled (already checked) commands: their verdicts ride along."""
        self.risk.follow(cmds, self.matcher.run(cmds))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("journal", type=Path)
    p.add_argument("seed", type=int)
    p.add_argument("batches", type=int)
    p.add_argument("--pause-ms", type=float, default=0)
    args = p.parse_args()

    venue = Venue()
    journal = Journal.open(args.journal, COMMAND_DTYPE, flush=FlushPolicy.BATCH)
    done = 0
    if journal.recovered is not None:
        payloads = np.ascontiguousarray(journal.recovered.records["payload"])
        venue.replay(payloads)
        done = len(payloads)
    print(f"recovered {done} {venue.book.state_hash()}", flush=True)

    seen = 0
    for k in range(args.batches):
        cmds = stream_batch(args.seed, k)
        start = max(0, done - seen)          # skip what the journal already holds
        seen += len(cmds)
        if start >= len(cmds):
            continue
        cmds = np.ascontiguousarray(cmds[start:])
        venue.check(cmds)
        last = journal.append(cmds)          # journaled before anything is acknowledged
        venue.match(cmds)
        print(f"ack {last}", flush=True)
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
    journal.close()
    print(f"done {venue.book.state_hash()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
