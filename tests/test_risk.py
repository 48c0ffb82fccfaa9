"""Pre-trade risk, rule by rule: each reject as a scenario, with its OUCH 4.2 code.

Every scenario runs the real pipeline: RiskEngine.check -> C matching -> on_events.
"""
from pathlib import Path

import numpy as np
import pytest

from engine.book import Book
from engine.commands import (OUCH_REJECT_CODE, EventKind, Flag, Kind, RejectReason, Side, Tif,
                             commands)
from engine.matching import Matcher
from engine.risk import NO_LIMIT, Limits, RefMode, RiskEngine

CLIENTS, SYMBOLS = 4, 2
A, B = 1, 2                     # two clients
BUY, SELL = Side.BUY, Side.SELL


class Venue:
    """Risk in front of a matching core, one batch at a time."""

    def __init__(self, limits: Limits):
        self.book = Book(symbols=SYMBOLS, pool_size=256, band_ticks=256, ref_price=10_000)
        self.matcher = Matcher(self.book)
        self.risk = RiskEngine(CLIENTS, SYMBOLS, limits)
        self.ts = 1_000_000_000
        self.token = 0

    def bbo(self):
        bid = [self.book.best_price(s, BUY) or 0 for s in range(SYMBOLS)]
        ask = [self.book.best_price(s, SELL) or 0 for s in range(SYMBOLS)]
        return np.array(bid, np.int32), np.array(ask, np.int32)

    def batch(self, *orders: dict) -> np.ndarray:
        cmds = commands(len(orders))
        for c, o in zip(cmds, orders):
            for k, v in o.items():
                c[k] = v
        self.risk.check(cmds, *self.bbo())
        events = self.matcher.run(cmds)
        self.risk.on_events(cmds, events)
        return events

    def order(self, client=A, side=BUY, qty=100, price=10_000, symbol=0, ts=None, **kw) -> dict:
        self.token += 1
        if ts is None:
            self.ts += 1_000_000
        return dict(kind=Kind.ENTER, client=client, side=side, qty=qty, price=price, symbol=symbol,
                    token=self.token, ts=self.ts if ts is None else ts, **kw)

    def enter(self, **kw) -> int:
        """Enter one order; return the reject reason (0 = accepted)."""
        return verdict(self.batch(self.order(**kw)))


def verdict(events: np.ndarray, cmd: int = 0) -> int:
    rejected = events[(events["kind"] == EventKind.REJECTED) & (events["cmd"] == cmd)]
    return int(rejected["reason"][0]) if len(rejected) else 0


def verdicts(events: np.ndarray, n: int) -> list[int]:
    return [verdict(events, i) for i in range(n)]


def ouch(reason: int) -> bytes:
    return OUCH_REJECT_CODE[RejectReason(reason)]


def limits(**values) -> Limits:
    return Limits.unlimited(CLIENTS, SYMBOLS).with_changes(**values)


# ---- order size and notional ------------------------------------------------------------

def test_an_order_above_the_maximum_quantity_is_rejected_with_Z():
    v = Venue(limits(max_qty=500))
    assert v.enter(qty=500) == 0
    assert v.enter(qty=501) == RejectReason.RISK_SIZE
    assert ouch(RejectReason.RISK_SIZE) == b"Z"       # shares exceed configured safety threshold


def test_a_replace_above_the_maximum_quantity_is_rejected_and_the_order_stays():
    v = Venue(limits(max_qty=500))
    v.enter(qty=100, price=9_990)
    ev = v.batch(dict(kind=Kind.REPLACE, client=A, token=v.token, new_token=99, qty=501, price=9_990,
                      ts=v.ts + 1))
    assert verdict(ev) == RejectReason.RISK_SIZE
    assert v.risk.orders() == {(A, v.token): (0, BUY, 100)}


def test_notional_is_price_times_qty_times_lot():
    v = Venue(limits(max_notional=1_000_000).with_changes(symbol=1, lot=10))
    assert v.enter(qty=100, price=10_000) == 0                        # 1,000,000: at the limit
    assert v.enter(qty=101, price=10_000) == RejectReason.RISK_NOTIONAL
    assert v.enter(qty=10, price=10_000, symbol=1) == 0               # 10 * 10,000 * lot 10
    assert v.enter(qty=11, price=10_000, symbol=1) == RejectReason.RISK_NOTIONAL
    assert ouch(RejectReason.RISK_NOTIONAL) == b"n"       # exceeded dollar value limit


def test_a_market_order_is_valued_at_the_reference_price():
    v = Venue(limits(max_notional=1_000_000).with_changes(symbol=0, ref_mode=RefMode.STATIC, static_ref=20_000))
    assert v.enter(qty=51, flags=Flag.MARKET, tif=Tif.IOC) == RejectReason.RISK_NOTIONAL   # 51 * 20,000
    assert v.enter(qty=50, flags=Flag.MARKET, tif=Tif.IOC) == 0


# ---- price band, per reference --------------------------------------------------------

def test_price_band_around_the_last_trade():
    v = Venue(limits(symbol=0, band_bps=100, ref_mode=RefMode.LAST))
    assert v.enter(price=20_000, side=SELL) == 0, "no trade yet and no static price: no band"
    v.enter(client=B, side=BUY, price=20_000)                         # trades at 20,000
    assert v.risk.last_trade[0] == 20_000
    assert v.enter(price=20_200) == 0                                 # +1 %
    assert v.enter(price=20_201) == RejectReason.RISK_PRICE_BAND
    assert v.enter(price=19_799, side=SELL) == RejectReason.RISK_PRICE_BAND
    assert ouch(RejectReason.RISK_PRICE_BAND) == b"X"                 # invalid price


def test_price_band_around_the_bbo_mid():
    v = Venue(limits(symbol=0, band_bps=50, ref_mode=RefMode.MID))
    v.batch(v.order(client=B, side=BUY, price=9_990), v.order(client=B, side=SELL, price=10_010))
    assert v.enter(price=10_050, side=SELL) == 0                       # mid 10,000 + 0.5 %
    assert v.enter(price=10_051, side=SELL) == RejectReason.RISK_PRICE_BAND
    assert v.enter(price=9_950) == 0
    assert v.enter(price=9_949) == RejectReason.RISK_PRICE_BAND


def test_price_band_around_a_static_price():
    v = Venue(limits(symbol=1, band_bps=1_000, ref_mode=RefMode.STATIC, static_ref=5_000))
    assert v.enter(symbol=1, price=5_500) == 0
    assert v.enter(symbol=1, price=5_501) == RejectReason.RISK_PRICE_BAND
    assert v.enter(symbol=0, price=50_000) == 0, "symbol 0 has no band"


def test_a_missing_reference_falls_back_to_the_static_price():
    v = Venue(limits(symbol=0, band_bps=100, ref_mode=RefMode.MID, static_ref=10_000))
    assert v.enter(price=10_101) == RejectReason.RISK_PRICE_BAND     # empty book: static 10,000


def test_market_orders_have_no_price_band():
    v = Venue(limits(symbol=0, band_bps=10, ref_mode=RefMode.STATIC, static_ref=10_000))
    assert v.enter(price=0, flags=Flag.MARKET, tif=Tif.IOC) == 0


# ---- position limits count open orders ---------------------------------------------------

def test_long_limit_counts_position_and_open_buys():
    v = Venue(limits(long_limit=1_000))
    assert v.enter(qty=600, price=9_990) == 0                        # rests: open buy 600
    assert v.enter(qty=500, price=9_990) == RejectReason.RISK_POSITION
    assert v.enter(qty=400, price=9_990) == 0                        # exactly 1,000
    assert v.risk.open_buy[A, 0] == 1_000
    assert ouch(RejectReason.RISK_POSITION) == b"m"       # exceeded shares limit


def test_fills_turn_open_quantity_into_position():
    v = Venue(limits(long_limit=1_000))
    v.enter(client=B, side=SELL, qty=700, price=10_000)
    assert v.enter(qty=700, price=10_000) == 0                       # fills
    assert (v.risk.position[A, 0], v.risk.open_buy[A, 0]) == (700, 0)
    assert (v.risk.position[B, 0], v.risk.open_sell[B, 0]) == (-700, 0)
    assert v.enter(qty=301, price=9_990) == RejectReason.RISK_POSITION
    assert v.enter(qty=300, price=9_990) == 0


def test_short_limit_counts_position_and_open_sells():
    v = Venue(limits(short_limit=1_000))
    v.enter(client=B, side=BUY, qty=400, price=10_000)
    assert v.enter(side=SELL, qty=400, price=10_000) == 0            # position -400
    assert v.enter(side=SELL, qty=500, price=10_010) == 0            # open sell 500
    assert v.enter(side=SELL, qty=101, price=10_010) == RejectReason.RISK_POSITION
    assert v.enter(side=SELL, qty=100, price=10_010) == 0
    assert v.enter(side=BUY, qty=5_000, price=9_000) == 0, "buys do not count against the short limit"


def test_canceling_an_order_frees_its_open_quantity():
    v = Venue(limits(long_limit=1_000))
    v.enter(qty=1_000, price=9_990)
    assert v.enter(qty=1, price=9_990) == RejectReason.RISK_POSITION
    v.batch(dict(kind=Kind.CANCEL, client=A, token=1, qty=0, ts=v.ts + 1))
    assert v.risk.open_buy[A, 0] == 0
    assert v.enter(qty=1_000, price=9_990) == 0


def test_orders_earlier_in_the_same_batch_count():
    v = Venue(limits(long_limit=1_000))
    ev = v.batch(v.order(qty=600, price=9_990), v.order(qty=600, price=9_980), v.order(qty=400, price=9_980))
    assert verdicts(ev, 3) == [0, RejectReason.RISK_POSITION, 0]


def test_a_replace_counts_only_the_shares_it_adds():
    v = Venue(limits(long_limit=1_000))
    v.enter(qty=800, price=9_990)
    replace = dict(kind=Kind.REPLACE, client=A, token=1, price=9_990, ts=v.ts + 1)
    assert verdict(v.batch({**replace, "qty": 1_001, "new_token": 50})) == RejectReason.RISK_POSITION
    assert verdict(v.batch({**replace, "qty": 1_000, "new_token": 51})) == 0
    assert v.risk.open_buy[A, 0] == 1_000
    assert v.risk.orders() == {(A, 51): (0, BUY, 1_000)}


def test_a_core_reject_releases_the_reservation():
    v = Venue(limits(long_limit=1_000))
    ev = v.batch(v.order(qty=600, price=-5))                         # the core: invalid price
    assert verdict(ev) == RejectReason.INVALID_PRICE
    assert v.risk.open_buy[A, 0] == 0 and v.risk.orders() == {}


# ---- order rate --------------------------------------------------------------------------

def test_rate_limit_is_a_token_bucket_on_command_timestamps():
    v = Venue(limits(client=A, rate=10, burst=2))                    # 10 orders/s, 2 in a burst
    t = 5_000_000_000
    ev = v.batch(*(v.order(ts=t, price=9_000 + i) for i in range(3)))
    assert verdicts(ev, 3) == [0, 0, RejectReason.RISK_RATE]
    assert v.enter(ts=t + 99_999_999) == RejectReason.RISK_RATE       # not yet a whole token back
    assert v.enter(ts=t + 100_000_000) == 0                            # 100 ms: one token
    assert v.enter(ts=t + 100_000_000) == RejectReason.RISK_RATE
    assert v.enter(ts=t + 10_000_000_000) == 0                         # refilled to the burst...
    assert v.enter(ts=t + 10_000_000_000) == 0
    assert v.enter(ts=t + 10_000_000_000) == RejectReason.RISK_RATE   # ...and no further
    assert v.enter(client=B, ts=t + 10_000_000_000) == 0, "other clients have their own bucket"
    assert ouch(RejectReason.RISK_RATE) == b"O"


def test_cancels_are_never_rate_limited():
    v = Venue(limits(client=A, rate=0, burst=1))
    assert v.enter(price=9_990) == 0
    assert v.enter(price=9_990) == RejectReason.RISK_RATE
    ev = v.batch(dict(kind=Kind.CANCEL, client=A, token=1, ts=v.ts + 1))
    assert (ev["kind"] == EventKind.CANCELED).any()


# ---- kill switches --------------------------------------------------------------------

def test_client_kill_switch_rejects_that_clients_orders_only():
    v = Venue(limits())
    v.enter(price=9_990)
    v.risk.kill_client(A)
    assert v.enter() == RejectReason.RISK_KILL_SWITCH
    assert v.enter(client=B, price=9_990) == 0
    ev = v.batch(dict(kind=Kind.CANCEL, client=A, token=1, ts=v.ts + 1))
    assert (ev["kind"] == EventKind.CANCELED).any(), "a killed client can still cancel"
    v.risk.kill_client(A, False)
    assert v.enter(price=9_990) == 0
    assert ouch(RejectReason.RISK_KILL_SWITCH) == b"a"    # reject all enabled


def test_global_kill_switch_rejects_everyone_from_the_next_command():
    v = Venue(limits())
    v.risk.kill_all()
    ev = v.batch(v.order(client=A), v.order(client=B), v.order(client=3))
    assert verdicts(ev, 3) == [RejectReason.RISK_KILL_SWITCH] * 3
    v.risk.kill_all(False)
    assert v.enter(client=B) == 0


# ---- limits change while running ---------------------------------------------------------

def test_limits_swap_between_batches(tmp_path):
    v = Venue(limits(max_qty=100))
    assert v.enter(qty=200) == RejectReason.RISK_SIZE
    v.risk.update_limits(max_qty=1_000)
    assert v.enter(qty=200, price=9_000) == 0
    v.risk.update_limits(client=A, long_limit=250)                   # A already has 200 open
    assert v.enter(qty=51, price=9_000) == RejectReason.RISK_POSITION
    assert v.enter(client=B, qty=51, price=9_000) == 0

    path = tmp_path / "limits.toml"
    path.write_text("[defaults]\nmax_order_qty = 10\n[clients.2]\nmax_order_qty = 20\n")
    v.risk.load(path)
    assert v.enter(qty=11) == RejectReason.RISK_SIZE
    assert v.enter(client=B, qty=20, price=9_000) == 0
    assert v.risk.open_buy[A, 0] == 200, "swapping limits keeps the state"


def test_a_batch_is_checked_against_one_set_of_limits():
    v = Venue(limits(max_qty=100))
    old = v.risk.limits
    v.risk.update_limits(max_qty=50)
    assert old.max_qty[0, 0] == 100, "limits are never edited in place"
    with pytest.raises(ValueError):
        old.max_qty[0, 0] = 1


# ---- configuration ---------------------------------------------------------------------

def test_the_example_config_loads_and_resolves_most_specific_then_tightest():
    lim = Limits.load(Path(__file__).parent.parent / "engine" / "limits.example.toml", 3, 2)
    assert lim.max_qty[0, 0] == 5_000          # [symbols.0] beats [defaults]
    assert lim.max_qty[0, 1] == 10_000         # [defaults]
    assert lim.max_qty[1, 0] == 1_000          # tighter of [clients.1] 1,000 and [symbols.0] 5,000
    assert lim.long_limit[1, 1] == 2_000 and lim.short_limit[1, 1] == 0   # [clients.1.symbols.1]
    assert lim.long_limit[1, 0] == 50_000
    assert list(lim.ref_mode) == [RefMode.STATIC, RefMode.MID] and list(lim.lot) == [1, 10]
    assert list(lim.rate) == [2_000, 20, 2_000] and list(lim.burst) == [200, 5, 200]
    assert list(lim.band_bps) == [200, 500]


def test_a_key_left_out_means_no_limit():
    lim = Limits.from_config({}, 2, 2)
    assert (lim.max_qty == NO_LIMIT).all() and (lim.band_bps == -1).all() and (lim.rate == -1).all()


@pytest.mark.parametrize("config, message", [
    ({"defaults": {"max_qty": 5}}, "unknown key"),
    ({"clients": {"9": {"burst": 5}}}, "outside"),
    ({"symbols": {"0": {"orders_per_second": 5}}}, "unknown key"),
    ({"symbols": {"0": {"reference": "vwap"}}}, "not one of"),
    ({"defaults": {"max_order_qty": -1}}, "not an integer"),
    ({"limits": {}}, "unknown section"),
])
def test_bad_config_is_refused_with_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        Limits.from_config(config, 2, 2)


# ---- bookkeeping -----------------------------------------------------------------------

def test_rejects_are_counted_by_reason():
    v = Venue(limits(max_qty=10))
    v.enter(qty=11)
    v.enter(qty=12)
    v.risk.kill_all()
    v.enter()
    assert v.risk.reject_counts() == {RejectReason.RISK_SIZE: 2, RejectReason.RISK_KILL_SWITCH: 1}


def test_an_unknown_client_is_rejected_as_other():
    v = Venue(limits())
    assert v.enter(client=CLIENTS) == RejectReason.RISK_OTHER
    assert ouch(RejectReason.RISK_OTHER) == b"O"


def test_following_a_replayed_batch_rebuilds_the_same_state():
    """RiskEngine.follow settles a batch from its events alone (journal replay)."""
    v = Venue(limits(long_limit=5_000))
    batches = [[v.order(qty=300, price=9_990), v.order(client=B, side=SELL, qty=200, price=9_990)],
               [v.order(client=B, side=SELL, qty=500, price=10_020)]]
    replica, matcher = RiskEngine(CLIENTS, SYMBOLS), Matcher(Book(symbols=SYMBOLS, pool_size=256, band_ticks=256))
    for orders in batches:
        cmds = commands(len(orders))
        for c, o in zip(cmds, orders):
            for k, val in o.items():
                c[k] = val
        v.risk.check(cmds, *v.bbo())
        ev = v.matcher.run(cmds)
        v.risk.on_events(cmds, ev)
        replica.follow(cmds, matcher.run(cmds))
    for name in ("position", "open_buy", "open_sell", "last_trade"):
        assert np.array_equal(getattr(replica, name), getattr(v.risk, name)), name
    assert replica.orders() == v.risk.orders()


@pytest.mark.parametrize("struct, dtype_name", [("risk_hold", "HOLD_DTYPE"), ("risk_order", "ORDER_SLOT_DTYPE")])
def test_numpy_dtypes_mirror_the_c_structs(struct, dtype_name):
    import engine.risk
    from engine._risk import ffi
    dtype = getattr(engine.risk, dtype_name)
    assert ffi.sizeof(f"struct {struct}") == dtype.itemsize
    for name in dtype.names:
        assert ffi.offsetof(f"struct {struct}", name) == dtype.fields[name][1], name
