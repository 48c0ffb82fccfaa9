"""C risk + C matching against the Python risk reference + Python reference matcher.

Random command streams (hypothesis draws the limits, the switches and the stream's
seed) go batch by batch through both pipelines: check, match, settle. Verdicts, events
and the whole risk state must agree after every batch.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.book import Book
from engine.commands import COMMAND_DTYPE, Flag, Kind, Side, Stp, Tif
from engine.matching import Matcher
from engine.reference import ReferenceMatcher
from engine.risk import NO_LIMIT, Limits, RefMode, RiskEngine
from engine.risk_reference import ReferenceRisk

CLIENTS, SYMBOLS, POOL, MAX_ORDERS = 4, 3, 400, 600
BOOK = dict(symbols=SYMBOLS, pool_size=POOL, band_ticks=64, ref_price=10_000, collar_ticks=20,
            overflow_levels=40, max_qty=5_000)


def bbo_c(book: Book):
    bid = np.array([book.best_price(s, Side.BUY) or 0 for s in range(SYMBOLS)], np.int32)
    ask = np.array([book.best_price(s, Side.SELL) or 0 for s in range(SYMBOLS)], np.int32)
    return bid, ask


def bbo_reference(ref: ReferenceMatcher):
    bid = np.array([ref._best(s, int(Side.BUY)) or 0 for s in range(SYMBOLS)], np.int32)
    ask = np.array([ref._best(s, int(Side.SELL)) or 0 for s in range(SYMBOLS)], np.int32)
    return bid, ask


@st.composite
def limits(draw) -> Limits:
    """Limits tight enough that every check fires now and then."""
    def per(shape, lo, hi, unlimited_ok=True):
        values = draw(st.lists(st.integers(lo, hi), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        a = np.array(values, np.int64).reshape(shape)
        if unlimited_ok and draw(st.booleans()):
            a[draw(st.integers(0, shape[0] - 1))] = NO_LIMIT
        return a
    cell = (CLIENTS, SYMBOLS)
    return Limits(
        max_qty=per(cell, 50, 3000),
        max_notional=per(cell, 500_000, 20_000_000),
        long_limit=per(cell, 100, 6000),
        short_limit=per(cell, 100, 6000),
        lot=np.array(draw(st.lists(st.integers(1, 3), min_size=SYMBOLS, max_size=SYMBOLS)), np.int64),
        band_bps=np.array(draw(st.lists(st.integers(-1, 400), min_size=SYMBOLS, max_size=SYMBOLS)), np.int32),
        static_ref=np.array(draw(st.lists(st.sampled_from([0, 9_990, 10_000, 10_011]),
                                          min_size=SYMBOLS, max_size=SYMBOLS)), np.int32),
        ref_mode=np.array(draw(st.lists(st.sampled_from(list(RefMode)), min_size=SYMBOLS, max_size=SYMBOLS)),
                          np.uint8),
        rate=np.array(draw(st.lists(st.sampled_from([-1, 0, 50, 2_000, 100_000]),
                                    min_size=CLIENTS, max_size=CLIENTS)), np.int64),
        burst=np.array(draw(st.lists(st.integers(1, 40), min_size=CLIENTS, max_size=CLIENTS)), np.int64),
    )


class Stream:
    """Random but plausible order flow: mostly enters near the touch, cancels and
    replaces of tokens the client used (live or not), some market/IOC/FOK/hidden/STP
    orders, mass cancels, out-of-range clients and symbols."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.ts = 1_000_000_000
        self.next_token = [1] * (CLIENTS + 1)

    def batch(self, n: int) -> np.ndarray:
        r = self.rng
        cmds = np.zeros(n, COMMAND_DTYPE)
        for i in range(n):
            c = cmds[i]
            self.ts += int(r.choice([0, 1_000, 200_000, 5_000_000]))
            client = int(r.integers(0, CLIENTS + 1) if r.random() < 0.02 else r.integers(0, CLIENTS))
            c["ts"], c["client"] = self.ts, client
            c["symbol"] = int(r.integers(0, SYMBOLS + (r.random() < 0.02)))
            used = self.next_token[client]
            kind = r.choice(["enter", "cancel", "replace", "mass"], p=[0.62, 0.18, 0.17, 0.03])
            if kind == "enter":
                c["kind"], c["token"] = Kind.ENTER, self._token(client, reuse=r.random() < 0.03)
                c["side"] = Side.BUY if r.random() < 0.5 else Side.SELL
                c["price"] = 10_000 + int(r.integers(-12, 13)) + (int(r.integers(-900, 900)) if r.random() < 0.05 else 0)
                c["qty"] = int(r.choice([1, 10, 100, 100, 300, 1000, 2500, 4000]))
                c["tif"] = int(r.choice([Tif.DAY] * 6 + [Tif.IOC, Tif.FOK]))
                c["flags"] = int(r.choice([0] * 10 + [Flag.MARKET, Flag.HIDDEN, Flag.POST_ONLY]))
                if c["flags"] & (Flag.MARKET | Flag.POST_ONLY) and c["flags"] & Flag.POST_ONLY:
                    c["tif"] = Tif.DAY
                if r.random() < 0.1:
                    c["min_qty"] = int(r.integers(1, c["qty"] + 1))
                if r.random() < 0.15:
                    c["stp_group"], c["stp"] = 1 + client % 2, int(r.integers(1, len(Stp)))
            elif kind in ("cancel", "replace") and used > 1:
                c["token"] = int(r.integers(1, used))
                if kind == "cancel":
                    c["kind"], c["qty"] = Kind.CANCEL, int(r.choice([0, 0, 50]))
                else:
                    c["kind"], c["new_token"] = Kind.REPLACE, self._token(client)
                    c["price"] = 10_000 + int(r.integers(-12, 13))
                    c["qty"] = int(r.choice([1, 50, 300, 1000, 3000]))
            else:
                c["kind"] = Kind.MASS_CANCEL_CLIENT if r.random() < 0.7 else Kind.MASS_CANCEL_SYMBOL
        return cmds

    def _token(self, client: int, reuse: bool = False) -> int:
        if reuse and self.next_token[client] > 1:
            return int(self.rng.integers(1, self.next_token[client]))
        self.next_token[client] += 1
        return self.next_token[client] - 1


def assert_same_state(c: RiskEngine, p: ReferenceRisk, where: str):
    assert np.array_equal(c.position, p.position), f"{where}: positions differ"
    assert np.array_equal(c.open_buy, p.open_buy), f"{where}: open buy differs"
    assert np.array_equal(c.open_sell, p.open_sell), f"{where}: open sell differs"
    assert np.array_equal(c.last_trade, p.last_trade), f"{where}: last trade differs"
    assert list(c.bucket) == p.bucket, f"{where}: token buckets differ"
    assert c.orders() == p.orders(), f"{where}: followed orders differ"
    assert c.untracked == p.untracked, f"{where}: untracked counts differ"
    assert c.pending_orders == len(p.pending) == 0, f"{where}: orders left pending after settling"


def run_both(lim: Limits, changed: Limits, seed: int, batches: int, switches: list[tuple[int, int]],
             max_orders: int = MAX_ORDERS):
    book = Book(**BOOK)
    matcher, reference = Matcher(book), ReferenceMatcher(**BOOK)
    risk_c = RiskEngine(CLIENTS, SYMBOLS, lim, max_orders=max_orders)
    risk_p = ReferenceRisk(CLIENTS, SYMBOLS, lim, max_orders=max_orders)
    stream = Stream(seed)
    verdicts = 0
    for b in range(batches):
        for when, what in switches:       # kill switches and a limit swap between batches
            if when == b:
                if what == CLIENTS:
                    risk_c.kill_all(not risk_c.global_kill[0]), risk_p.kill_all(not risk_p.global_kill)
                elif what == CLIENTS + 1:
                    risk_c.update_limits(changed), risk_p.update_limits(changed)
                else:
                    on = not risk_c.client_kill[what]
                    risk_c.kill_client(what, on), risk_p.kill_client(what, on)
        cmds = stream.batch(int(stream.rng.integers(1, 120)))
        cmds_c, cmds_p = cmds.copy(), cmds.copy()
        v_c = risk_c.check(cmds_c, *bbo_c(book))
        v_p = risk_p.check(cmds_p, *bbo_reference(reference))
        assert np.array_equal(v_c, v_p), f"batch {b}: verdicts differ at {np.flatnonzero(v_c != v_p)[:5]}"
        verdicts += int(np.count_nonzero(v_c))
        ev_c, ev_p = matcher.run(cmds_c), reference.run(cmds_p)
        assert np.array_equal(ev_c, ev_p), f"batch {b}: events differ"
        risk_c.on_events(cmds_c, ev_c)
        risk_p.on_events(cmds_p, ev_p)
        assert_same_state(risk_c, risk_p, f"batch {b}")
    assert book.state_hash() == reference.state_hash()
    return verdicts, risk_c


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lim=limits(), changed=limits(), seed=st.integers(0, 2**32 - 1),
       switches=st.lists(st.tuples(st.integers(0, 11), st.integers(0, CLIENTS + 1)), max_size=6))
def test_c_risk_and_matching_agree_with_the_python_references(lim, changed, seed, switches):
    _, risk = run_both(lim, changed, seed, batches=12, switches=switches)
    assert risk.untracked == 0, "risk lost track of an order"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_orders=st.integers(1, 24))
def test_a_crowded_order_table_agrees_too(seed, max_orders):
    """Few table slots: long probe chains, deletions inside them, and RISK_OTHER when full."""
    _, risk = run_both(Limits.unlimited(CLIENTS, SYMBOLS), Limits.unlimited(CLIENTS, SYMBOLS), seed,
                       batches=10, switches=[], max_orders=max_orders)
    assert risk.live_orders <= max_orders


def test_random_streams_hit_every_risk_reject():
    """The stream generator is strong enough to exercise every check (guards the test above)."""
    rng = np.random.default_rng(7)
    seen = np.zeros(256, np.int64)
    for seed in range(6):
        lim = Limits.unlimited(CLIENTS, SYMBOLS).with_changes(
            max_qty=2000, max_notional=8_000_000, long_limit=600, short_limit=600)
        lim = lim.with_changes(symbol=0, band_bps=5, ref_mode=RefMode.LAST, static_ref=10_000)
        lim = lim.with_changes(symbol=1, band_bps=8, ref_mode=RefMode.MID)
        lim = lim.with_changes(symbol=2, band_bps=6, ref_mode=RefMode.STATIC, static_ref=10_003)
        lim = lim.with_changes(client=1, rate=200, burst=5)
        _, risk = run_both(lim, lim, int(rng.integers(2**32)), batches=8, switches=[(3, 2), (6, CLIENTS), (7, CLIENTS)])
        seen += risk.rejects
    for reason in range(32, 39):
        assert seen[reason], f"no reject with reason {reason} in the streams"
