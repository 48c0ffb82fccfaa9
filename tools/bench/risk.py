"""Pre-trade risk: ns per command for the C checks and the C settlement from events, next
to the plain-Python reference doing the same (same stream, same limits; medians)."""
import time

import numpy as np

from engine.book import Book
from engine.commands import COMMAND_DTYPE, Kind, Side, Tif
from engine.matching import Matcher
from engine.risk import Limits, RefMode, RiskEngine
from engine.risk_reference import ReferenceRisk

CLIENTS, SYMBOLS = 16, 8
BATCH, BATCHES, PY_BATCHES = 1024, 40, 4
REPEATS = 5


def stream(seed: int) -> list[np.ndarray]:
    """Enters near the touch (some IOC), cancels and replaces of recent tokens."""
    r = np.random.default_rng(seed)
    out = []
    for k in range(BATCHES):
        c = np.zeros(BATCH, COMMAND_DTYPE)
        serial = k * BATCH + np.arange(BATCH) + 1
        kind = r.choice([Kind.ENTER, Kind.CANCEL, Kind.REPLACE], BATCH, p=[0.7, 0.2, 0.1])
        c["ts"] = 1_000_000_000 + serial * 2_000
        c["client"] = r.integers(0, CLIENTS, BATCH)
        c["symbol"] = r.integers(0, SYMBOLS, BATCH)
        c["kind"] = kind
        c["token"] = np.where(kind == Kind.ENTER, serial, np.maximum(1, serial - r.integers(1, 2000, BATCH)))
        c["new_token"] = np.where(kind == Kind.REPLACE, serial + 10**9, 0)
        c["side"] = r.choice([Side.BUY, Side.SELL], BATCH)
        c["price"] = 10_000 + r.integers(-20, 21, BATCH)
        c["qty"] = np.where(kind == Kind.CANCEL, 0, r.choice([1, 100, 500, 2000], BATCH))
        c["tif"] = r.choice([Tif.DAY] * 4 + [Tif.IOC], BATCH)
        out.append(c)
    return out


def limits() -> Limits:
    lim = Limits.unlimited(CLIENTS, SYMBOLS).with_changes(
        max_qty=1_000, max_notional=15_000_000, long_limit=20_000, short_limit=20_000,
        band_bps=100, ref_mode=RefMode.LAST, static_ref=10_000, rate=100_000, burst=500)
    return lim


def measure(make_risk, batches: list[np.ndarray]) -> tuple[float, float]:
    """(check ns/command, settle ns/command) over one pass of ``batches``."""
    book = Book(symbols=SYMBOLS, pool_size=1 << 16, band_ticks=256)
    matcher, risk = Matcher(book), make_risk()
    check = settle = 0.0
    for cmds in batches:
        cmds = cmds.copy()
        t = time.perf_counter()
        risk.check(cmds)
        check += time.perf_counter() - t
        events = matcher.run(cmds)
        t = time.perf_counter()
        risk.on_events(cmds, events)
        settle += time.perf_counter() - t
    n = sum(len(b) for b in batches)
    return check / n * 1e9, settle / n * 1e9


def run() -> dict:
    batches = stream(1)
    c = [measure(lambda: RiskEngine(CLIENTS, SYMBOLS, limits(), max_orders=1 << 16), batches)
         for _ in range(REPEATS)]
    py = [measure(lambda: ReferenceRisk(CLIENTS, SYMBOLS, limits(), max_orders=1 << 16), batches[:PY_BATCHES])
          for _ in range(3)]
    c_check, c_settle = np.median(c, axis=0)
    py_check, py_settle = np.median(py, axis=0)
    return {
        "batch_commands": BATCH,
        "c_check_ns_per_cmd": round(float(c_check), 1),
        "c_settle_ns_per_cmd": round(float(c_settle), 1),
        "py_reference_check_ns_per_cmd": round(float(py_check)),
        "py_reference_settle_ns_per_cmd": round(float(py_settle)),
        "check_speedup_x": round(float(py_check / c_check)),
        "commands_measured_c": BATCH * BATCHES,
        "commands_measured_py": BATCH * PY_BATCHES,
    }
