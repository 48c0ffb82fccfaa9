"""Matching core throughput and per-command latency on an exchange-core-like mixed load.

Workload (after exchange-core's published mix): 100 symbols holding about 1,000 resting
orders over about 750 price levels in all (bids under the mid, asks over it); then 82%
replaces that move an order to a new passive price, 9% new resting limits, 6% cancels and
3% IOC orders that sweep the best levels (adds and cancels trade places to hold the book
near its size). A ``deep_`` variant holds 1,000 orders over ~750 levels in *each* symbol
(100,000 resting), where the book no longer fits the caches.

The stream is generated against a scratch copy of the kernel (so cancels and replaces name
live orders), then replayed from the prefilled snapshot in batches of 64 by:

* the C kernel. ``kernel_cmds_per_s``: commands over the time spent inside the kernel,
  summed from TSC stamps taken in C around each command (median over repeats, one core);
  ``python_loop_cmds_per_s``: wall clock of the whole Python loop handing batches of 64 to
  the kernel (``Matcher.replay``), call overhead included. Per-command percentiles come
  from the same TSC stamps, converted with the TSC rate measured against CLOCK_MONOTONIC
  in this run;
* the Python reference on a prefix of the same stream (same run);
* callgrind: instructions inside ``match_run`` per command, from a small driver.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.book import Book
from engine.commands import COMMAND_DTYPE, EventKind, Kind, Side, Tif
from engine.matching import Matcher, tsc
from engine.reference import ReferenceMatcher

SYMBOLS, MID, BATCH, REPEATS = 100, 10_000, 64, 9
#: (resting orders per symbol, ticks each side of the mid, commands in the stream)
SHALLOW = (10, 7, 1_000_000)
DEEP = (1000, 820, 200_000)
REFERENCE_PREFIX, CALLGRIND_PREFIX = 20_000, 20_000
PREEMPTED_NS = 20_000   # no command of these workloads takes 20 us unless the OS stepped in


def config(per_symbol: int) -> dict:
    return dict(symbols=SYMBOLS, pool_size=2 * SYMBOLS * per_symbol + 1024, band_ticks=2048,
                ref_price=MID, collar_ticks=50)


class Workload:
    """The generator's model of the live orders: per symbol a list of tokens."""

    def __init__(self, rng: np.random.Generator, per_symbol: int, half_range: int):
        self.rng, self.per_symbol, self.half_range = rng, per_symbol, half_range
        self.tokens = [[] for _ in range(SYMBOLS)]
        self.where: dict[int, tuple[int, int]] = {}   # token -> (symbol, index in its list)
        self.info: dict[int, tuple[int, int]] = {}    # token -> (client, side)
        self.next_token = 1

    def passive_price(self, side: int) -> int:
        offset = int(self.rng.integers(1, self.half_range + 1))
        return MID - offset if side == Side.BUY else MID + offset

    def add(self, symbol: int, token: int, client: int, side: int):
        self.where[token] = (symbol, len(self.tokens[symbol]))
        self.tokens[symbol].append(token)
        self.info[token] = (client, side)

    def drop(self, token: int):
        symbol, i = self.where.pop(token)
        last = self.tokens[symbol].pop()
        if last != token:
            self.tokens[symbol][i] = last
            self.where[last] = (symbol, i)
        del self.info[token]

    def new_order(self, c, symbol: int, tif: int = Tif.DAY):
        side = int(self.rng.choice([Side.BUY, Side.SELL]))
        client = int(self.rng.integers(1, 51))
        c["kind"], c["symbol"], c["side"], c["client"], c["tif"] = Kind.ENTER, symbol, side, client, tif
        c["token"], c["qty"] = self.next_token, int(self.rng.integers(1, 101))
        if tif == Tif.DAY:
            c["price"] = self.passive_price(side)
            self.add(symbol, self.next_token, client, side)
        else:   # sweeps the other side's best levels
            c["price"] = MID + self.half_range if side == Side.BUY else MID - self.half_range
            c["qty"] = int(self.rng.integers(1, 201))
        self.next_token += 1

    def prefill(self) -> np.ndarray:
        c = np.zeros(SYMBOLS * self.per_symbol, COMMAND_DTYPE)
        for i in range(len(c)):
            self.new_order(c[i], i % SYMBOLS)
        return c

    def chunk(self, n: int) -> np.ndarray:
        c = np.zeros(n, COMMAND_DTYPE)
        draws = self.rng.random(n)
        for i in range(n):
            symbol = int(self.rng.integers(0, SYMBOLS))
            live = self.tokens[symbol]
            r = draws[i]
            if r < 0.82 and live:
                token = live[int(self.rng.integers(0, len(live)))]
                client, side = self.info[token]
                c[i]["kind"], c[i]["client"], c[i]["token"] = Kind.REPLACE, client, token
                c[i]["new_token"], c[i]["price"] = self.next_token, self.passive_price(side)
                c[i]["qty"] = int(self.rng.integers(1, 101))
                self.drop(token)
                self.add(symbol, self.next_token, client, side)
                self.next_token += 1
            elif r < 0.97:
                # 9% adds, 6% cancels while the book is within 10% of its size, else whichever
                # brings it back
                add = len(live) < 1.1 * self.per_symbol if r < 0.91 else len(live) < 0.9 * self.per_symbol
                if add or not live:
                    self.new_order(c[i], symbol)
                else:
                    token = live[int(self.rng.integers(0, len(live)))]
                    c[i]["kind"], c[i]["client"], c[i]["token"] = Kind.CANCEL, self.info[token][0], token
                    self.drop(token)
            else:
                self.new_order(c[i], symbol, Tif.IOC)
        return c

    def learn(self, events: np.ndarray):
        """Forget makers that the IOC orders filled completely."""
        gone = events[(events["kind"] == EventKind.TRADE) & (events["other_leaves"] == 0)]
        for token in gone["other_token"].tolist():
            if token in self.where:
                self.drop(token)


def make_stream(per_symbol: int, half_range: int, length: int, seed: int = 1):
    """(prefill commands, book snapshot after them, the mixed stream)."""
    model = Workload(np.random.default_rng(seed), per_symbol, half_range)
    book = Book(**config(per_symbol))
    matcher = Matcher(book)
    prefill = model.prefill()
    matcher.run(prefill)
    snapshot = book.snapshot()
    chunks = []
    while sum(map(len, chunks)) < length:
        chunks.append(model.chunk(BATCH))
        model.learn(matcher.run(chunks[-1]))
    return prefill, snapshot, np.concatenate(chunks)[:length]


def tsc_hz(seconds: float = 0.2) -> float:
    t0, m0 = tsc(), time.monotonic_ns()
    time.sleep(seconds)
    t1, m1 = tsc(), time.monotonic_ns()
    return (t1 - t0) * 1e9 / (m1 - m0)


def measure(per_symbol: int, half_range: int, length: int) -> tuple[dict, tuple]:
    prefill, snapshot, stream = make_stream(per_symbol, half_range, length)
    book = Book(**config(per_symbol))
    matcher = Matcher(book)
    book.restore(snapshot)
    start_orders, levels = book.live, int(np.count_nonzero(book.levels["count"]))

    hz_before = tsc_hz()
    loop_rates, kernel_rates, cycles = [], [], np.zeros(len(stream), np.uint64)
    for _ in range(REPEATS):
        book.restore(snapshot)
        start = time.perf_counter()
        matcher.replay(stream, BATCH)
        loop_rates.append(len(stream) / (time.perf_counter() - start))
        book.restore(snapshot)
        matcher.replay(stream, BATCH, tsc=cycles)
        kernel_rates.append(float(cycles.sum()))
    hz = (hz_before + tsc_hz()) / 2
    kernel_rates = [len(stream) * hz / c for c in kernel_rates]
    ns = cycles / hz * 1e9
    kinds, tif = stream["kind"], stream["tif"]
    preempted = ns > PREEMPTED_NS
    figures = {
        "kernel_cmds_per_s": float(np.median(kernel_rates)),
        # the machine is shared: the last repeat without the commands the OS interrupted
        "kernel_cmds_per_s_unpreempted": float((~preempted).sum() / ns[~preempted].sum() * 1e9),
        "kernel_preempted_cmds": int(preempted.sum()),
        "python_loop_cmds_per_s": float(np.median(loop_rates)),
        "kernel_cmd_ns_p50": float(np.percentile(ns, 50)),
        "kernel_cmd_ns_p99": float(np.percentile(ns, 99)),
        "kernel_cmd_ns_p999": float(np.percentile(ns, 99.9)),
        "kernel_cmd_ns_max": float(ns.max()),
        "stream_cmds": len(stream),
        "resting_orders_start": start_orders,
        "price_levels_start": levels,
        "resting_orders_end": book.live,
        "share_replace": float(np.mean(kinds == Kind.REPLACE)),
        "share_new_limit": float(np.mean((kinds == Kind.ENTER) & (tif == Tif.DAY))),
        "share_cancel": float(np.mean(kinds == Kind.CANCEL)),
        "share_ioc": float(np.mean((kinds == Kind.ENTER) & (tif == Tif.IOC))),
    }
    return figures, (prefill, snapshot, stream, hz)


# Runs under callgrind: load the prefilled book, replay the stream; only match_run counts.
DRIVER = """
import sys, numpy as np
from engine.book import Book
from engine.matching import Matcher
from tools.bench.core import BATCH, SHALLOW, config
state = np.load(sys.argv[1])
book = Book(**config(SHALLOW[0]))
book.restore({k[5:]: state[k] for k in state.files if k.startswith("book_")})
Matcher(book).replay(state["stream"], BATCH)
"""


def callgrind_instr_per_cmd(snapshot: dict, stream: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.npz"
        np.savez(state, stream=stream, **{f"book_{k}": v for k, v in snapshot.items()})
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        "--toggle-collect=match_run", sys.executable, "-c", DRIVER, str(state)],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
        totals = next(line for line in out.read_text().splitlines()
                      if line.startswith(("summary:", "totals:")))
        return int(totals.split()[1]) / len(stream)


def reference_cmds_per_s(prefill: np.ndarray, stream: np.ndarray) -> tuple[float, bool]:
    """Reference rate on ``stream`` (batches of 64) and whether its events equal the kernel's."""
    reference = ReferenceMatcher(**config(SHALLOW[0]))
    reference.run(prefill)
    events = []
    start = time.perf_counter()
    for i in range(0, len(stream), BATCH):
        events.append(reference.run(stream[i:i + BATCH]))
    rate = len(stream) / (time.perf_counter() - start)
    book = Book(**config(SHALLOW[0]))
    matcher = Matcher(book)
    matcher.run(prefill)
    same = np.array_equal(np.concatenate(events)["kind"], matcher.run(stream)["kind"])
    return rate, bool(same and reference.state_hash() == book.state_hash())


def run() -> dict:
    load = os.getloadavg()[0]
    cpus = os.sched_getaffinity(0)
    cpu = max(cpus)
    os.sched_setaffinity(0, {cpu})      # one core, no migrations mid-measurement
    try:
        shallow, (prefill, snapshot, stream, hz) = measure(*SHALLOW)
        deep, _ = measure(*DEEP)
        ref_rate, same = reference_cmds_per_s(prefill, stream[:REFERENCE_PREFIX])
    finally:
        os.sched_setaffinity(0, cpus)
    return {
        **shallow,
        "tsc_ghz": hz / 1e9,
        "load_avg_1m_at_start": load,     # the machine is shared: context for the figures
        "batch": BATCH,
        "cpu": cpu,
        "symbols": SYMBOLS,
        "reference_cmds_per_s": ref_rate,
        "reference_agrees": same,
        "callgrind_instr_per_cmd": callgrind_instr_per_cmd(snapshot, stream[:CALLGRIND_PREFIX]),
        **{f"deep_{k}": v for k, v in deep.items()},
    }
