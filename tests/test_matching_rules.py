"""The matching rules, one scenario each, checked on the C kernel and on the Python reference."""
import numpy as np
import pytest

from engine.book import Book, check_invariants
from engine.commands import (EVENT_DTYPE, CancelReason, EventKind, Flag, Kind, RejectReason,
                             Side, Stp, Tif, commands)
from engine.matching import Matcher
from engine.reference import ReferenceMatcher

B, S = Side.BUY, Side.SELL


class Venue:
    """One symbol (0) around 1000, sending one command at a time through an engine."""

    def __init__(self, engine: str, **config):
        config = {"symbols": 2, "pool_size": 64, "band_ticks": 64, "ref_price": 1000,
                  "collar_ticks": 2, **config}
        if engine == "kernel":
            self.book = Book(**config)
            self.engine = Matcher(self.book)
        else:
            self.book = None
            self.engine = ReferenceMatcher(**config)
        self.token = 0

    def send(self, kind=Kind.ENTER, **fields) -> np.ndarray:
        fields.setdefault("client", 1)
        events = self.engine.run(commands(1, kind=kind, **fields))
        if self.book is not None:
            check_invariants(self.book)
        return events

    def order(self, side, price, qty, **fields) -> np.ndarray:
        self.token += 1
        fields.setdefault("token", self.token)
        return self.send(side=side, price=price, qty=qty, **fields)

    def orders(self) -> list[tuple[int, int, int, int]]:
        """(side, price, qty, token) of every live order in book order."""
        o = self.engine.orders() if self.book is None else self.book.orders()
        return [(chr(s), int(p), int(q), int(t))
                for s, p, q, t in zip(o["side"], o["price"], o["qty"], o["token"])]


@pytest.fixture(params=["kernel", "reference"])
def venue(request):
    return lambda **config: Venue(request.param, **config)


def kinds(events):
    return [EventKind(k).name for k in events["kind"]]


def trades(events):
    t = events[events["kind"] == EventKind.TRADE]
    return [(int(p), int(q), int(r)) for p, q, r in zip(t["price"], t["qty"], t["other_ref"])]


def test_trade_prints_at_the_resting_orders_price(venue):
    v = venue()
    v.order(S, 1001, 10)
    ev = v.order(B, 1005, 4)
    assert kinds(ev) == ["ACCEPTED", "TRADE", "BOOK_EXEC"]
    assert trades(ev) == [(1001, 4, 1)]
    assert v.orders() == [("S", 1001, 6, 1)]


def test_partial_fills_walk_levels_best_price_first_then_time(venue):
    v = venue()
    v.order(S, 1002, 5)          # ref 1
    v.order(S, 1001, 3)          # ref 2
    v.order(S, 1001, 4)          # ref 3
    ev = v.order(B, 1002, 10)    # takes 3 + 4 at 1001, then 3 of 5 at 1002
    assert trades(ev) == [(1001, 3, 2), (1001, 4, 3), (1002, 3, 1)]
    matches = ev["match"][ev["kind"] == EventKind.TRADE]
    assert list(matches) == [1, 2, 3], "match numbers are unique and increasing"
    assert v.orders() == [("S", 1002, 2, 1)]


def test_day_remainder_rests_and_is_displayed(venue):
    v = venue()
    v.order(S, 1001, 3)
    ev = v.order(B, 1001, 5)
    assert kinds(ev) == ["ACCEPTED", "TRADE", "BOOK_EXEC", "BOOK_ADD"]
    assert ev[-1]["qty"] == 2 and v.orders() == [("B", 1001, 2, 2)]


def test_size_reduction_at_same_price_keeps_time_priority(venue):
    v = venue()
    v.order(B, 1000, 10, token=1)
    v.order(B, 1000, 10, token=2)
    ev = v.send(Kind.REPLACE, token=1, new_token=11, price=1000, qty=6)
    assert kinds(ev) == ["REPLACED", "BOOK_CANCEL"]
    assert ev[0]["ref"] == ev[0]["other_ref"] == 1, "priority kept: same reference number"
    assert ev[1]["qty"] == 4
    assert trades(v.order(S, 1000, 6)) == [(1000, 6, 1)], "reduced order still first"


def test_size_increase_loses_time_priority(venue):
    v = venue()
    v.order(B, 1000, 10, token=1)
    v.order(B, 1000, 10, token=2)
    ev = v.send(Kind.REPLACE, token=1, new_token=11, price=1000, qty=12)
    assert kinds(ev) == ["REPLACED", "BOOK_REPLACE"]
    assert (ev[0]["other_ref"], ev[0]["ref"]) == (1, 3)
    assert v.orders() == [("B", 1000, 10, 2), ("B", 1000, 12, 11)]


def test_price_change_loses_priority_and_trades_if_it_crosses(venue):
    v = venue()
    v.order(S, 1003, 5, token=1)
    v.order(B, 1000, 8, token=2)
    ev = v.send(Kind.REPLACE, token=2, new_token=3, price=1003, qty=8)
    assert kinds(ev) == ["REPLACED", "BOOK_DELETE", "TRADE", "BOOK_EXEC", "BOOK_ADD"]
    assert ev[1]["ref"] == 2 and ev[2]["ref"] == 3
    assert v.orders() == [("B", 1003, 3, 3)]


def test_cancel_whole_or_down_to_a_new_size(venue):
    v = venue()
    v.order(B, 1000, 10, token=1)
    ev = v.send(Kind.CANCEL, token=1, qty=4)
    assert kinds(ev) == ["CANCELED", "BOOK_CANCEL"] and (ev[0]["qty"], ev[0]["leaves"]) == (6, 4)
    assert len(v.send(Kind.CANCEL, token=1, qty=4)) == 0, "not below open size: no effect"
    ev = v.send(Kind.CANCEL, token=1)
    assert kinds(ev) == ["CANCELED", "BOOK_DELETE"] and ev[0]["reason"] == CancelReason.USER
    ev = v.send(Kind.CANCEL, token=1)
    assert kinds(ev) == ["REJECTED"] and ev[0]["reason"] == RejectReason.UNKNOWN_TOKEN


def test_ioc_remainder_is_canceled_never_rests(venue):
    v = venue()
    v.order(S, 1001, 3)
    ev = v.order(B, 1001, 5, tif=Tif.IOC)
    assert kinds(ev)[-1] == "CANCELED" and ev[-1]["reason"] == CancelReason.IOC
    assert ev[-1]["qty"] == 2 and v.orders() == []


def test_fok_that_cannot_fill_is_canceled_whole_and_trades_nothing(venue):
    v = venue()
    v.order(S, 1001, 3)
    v.order(S, 1002, 3)
    ev = v.order(B, 1002, 7, tif=Tif.FOK)
    assert kinds(ev) == ["ACCEPTED", "CANCELED"] and ev[1]["reason"] == CancelReason.FOK
    assert len(v.orders()) == 2
    ev = v.order(B, 1002, 6, tif=Tif.FOK)
    assert trades(ev) == [(1001, 3, 1), (1002, 3, 2)] and v.orders() == []


def test_minimum_quantity_must_trade_on_entry_then_rest_is_plain(venue):
    v = venue()
    v.order(S, 1001, 3)
    ev = v.order(B, 1001, 10, min_qty=4)
    assert kinds(ev) == ["ACCEPTED", "CANCELED"] and ev[1]["reason"] == CancelReason.MIN_QTY
    ev = v.order(B, 1001, 10, min_qty=3)
    assert trades(ev) == [(1001, 3, 1)] and v.orders() == [("B", 1001, 7, 3)]


def test_market_order_stops_at_its_collar(venue):
    v = venue(collar_ticks=2)
    for price in (1000, 1002, 1003):
        v.order(S, price, 5)
    ev = v.order(B, 0, 20, flags=Flag.MARKET)
    assert ev[0]["price"] == 1002, "collar = best ask at arrival + 2"
    assert trades(ev) == [(1000, 5, 1), (1002, 5, 2)]
    assert ev[-1]["reason"] == CancelReason.COLLAR and ev[-1]["qty"] == 10
    assert v.orders() == [("S", 1003, 5, 3)]
    ev = v.order(S, 0, 5, flags=Flag.MARKET)
    assert kinds(ev) == ["ACCEPTED", "CANCELED"] and ev[1]["reason"] == CancelReason.IOC


def test_post_only_is_rejected_when_it_would_take(venue):
    v = venue()
    v.order(S, 1001, 5)
    ev = v.order(B, 1001, 5, flags=Flag.POST_ONLY)
    assert kinds(ev) == ["REJECTED"] and ev[0]["reason"] == RejectReason.WOULD_CROSS
    assert kinds(v.order(B, 1000, 5, flags=Flag.POST_ONLY)) == ["ACCEPTED", "BOOK_ADD"]


def test_hidden_order_rests_unseen_and_prints_as_non_displayed_trade(venue):
    v = venue()
    assert kinds(v.order(S, 1001, 5, flags=Flag.HIDDEN)) == ["ACCEPTED"]
    ev = v.order(B, 1001, 2)
    assert kinds(ev) == ["ACCEPTED", "TRADE", "BOOK_TRADE"]


def test_stp_cancel_newest_cancels_the_incoming_order(venue):
    v = venue()
    v.order(S, 1001, 5, stp_group=7)
    ev = v.order(B, 1001, 5, client=2, stp_group=7, stp=Stp.CANCEL_NEWEST)
    assert kinds(ev) == ["ACCEPTED", "CANCELED"] and ev[1]["reason"] == CancelReason.STP
    assert v.orders() == [("S", 1001, 5, 1)]


def test_stp_cancel_oldest_cancels_the_resting_order_and_keeps_matching(venue):
    v = venue()
    v.order(S, 1001, 5, stp_group=7)
    v.order(S, 1001, 5, client=3)
    ev = v.order(B, 1001, 5, client=2, stp_group=7, stp=Stp.CANCEL_OLDEST)
    assert kinds(ev) == ["ACCEPTED", "CANCELED", "BOOK_DELETE", "TRADE", "BOOK_EXEC"]
    assert ev[1]["ref"] == 1 and trades(ev) == [(1001, 5, 2)] and v.orders() == []


def test_stp_cancel_both(venue):
    v = venue()
    v.order(S, 1001, 5, stp_group=7)
    ev = v.order(B, 1001, 8, stp_group=7, stp=Stp.CANCEL_BOTH)
    assert kinds(ev) == ["ACCEPTED", "CANCELED", "BOOK_DELETE", "CANCELED"]
    assert (ev[1]["ref"], ev[3]["ref"], ev[3]["qty"]) == (1, 2, 8) and v.orders() == []


def test_stp_decrement_takes_the_smaller_size_off_both(venue):
    v = venue()
    v.order(S, 1001, 5, stp_group=7)
    ev = v.order(B, 1001, 3, stp_group=7, stp=Stp.DECREMENT)
    assert kinds(ev) == ["ACCEPTED", "CANCELED", "BOOK_CANCEL", "CANCELED"]
    assert [int(q) for q in ev["qty"][1:]] == [3, 3, 3] and "TRADE" not in kinds(ev)
    assert v.orders() == [("S", 1001, 2, 1)]
    ev = v.order(B, 1001, 6, stp_group=7, stp=Stp.DECREMENT)
    assert v.orders() == [("B", 1001, 4, 3)], "maker gone after 2, taker rests 4"


def test_pool_full_rejects_orders_that_could_rest_and_corrupts_nothing(venue):
    v = venue(pool_size=2)
    v.order(B, 999, 1, token=1)
    v.order(B, 998, 1, token=2)
    ev = v.order(B, 997, 1)
    assert kinds(ev) == ["REJECTED"] and ev[0]["reason"] == RejectReason.POOL_FULL
    ev = v.order(S, 999, 1, tif=Tif.IOC)
    assert trades(ev) == [(999, 1, 1)], "orders that never rest still trade when full"
    assert kinds(v.order(B, 997, 1)) == ["ACCEPTED", "BOOK_ADD"], "a freed slot is reused"
    assert v.orders() == [("B", 998, 1, 2), ("B", 997, 1, 5)]


def test_prices_outside_the_band_take_the_overflow_path(venue):
    v = venue(band_ticks=8)          # band is 996..1003
    v.order(S, 5000, 2, token=1)
    v.order(S, 1002, 2, token=2)
    v.order(S, 1500, 2, token=3)
    ev = v.order(B, 6000, 6)
    assert trades(ev) == [(1002, 2, 2), (1500, 2, 3), (5000, 2, 1)]
    v.order(B, 10, 1)
    v.order(B, 999, 1)
    assert v.orders() == [("B", 999, 1, 6), ("B", 10, 1, 5)]


def test_overflow_levels_exhausted_rejects_with_levels_full(venue):
    v = venue(band_ticks=8, overflow_levels=1)
    assert kinds(v.order(S, 5000, 1)) == ["ACCEPTED", "BOOK_ADD"]
    assert kinds(v.order(S, 5000, 1)) == ["ACCEPTED", "BOOK_ADD"], "same level: no new one"
    ev = v.order(S, 6000, 1)
    assert kinds(ev) == ["REJECTED"] and ev[0]["reason"] == RejectReason.LEVELS_FULL


def test_risk_verdicts_are_rejected_in_command_order(venue):
    v = venue()
    batch = commands(3, kind=Kind.ENTER, side=B, price=1000, qty=1, client=1,
                     token=[1, 2, 3], risk=[0, RejectReason.RISK_NOTIONAL, 0])
    ev = v.engine.run(batch)
    assert kinds(ev) == ["ACCEPTED", "BOOK_ADD", "REJECTED", "ACCEPTED", "BOOK_ADD"]
    assert ev[2]["reason"] == RejectReason.RISK_NOTIONAL and ev[2]["cmd"] == 1


def test_mass_cancel_by_client_and_by_symbol(venue):
    v = venue()
    v.order(B, 999, 1, client=1)
    v.order(S, 1001, 1, client=2)
    v.order(S, 1001, 1, client=1, symbol=1)
    ev = v.send(Kind.MASS_CANCEL_CLIENT, client=1)
    assert [int(r) for r in ev["ref"][ev["kind"] == EventKind.CANCELED]] == [1, 3]
    assert v.orders() == [("S", 1001, 1, 2)]
    ev = v.send(Kind.MASS_CANCEL_SYMBOL, symbol=0)
    assert ev[0]["reason"] == CancelReason.MASS_SYMBOL and v.orders() == []


def test_event_buffer_overflow_stops_at_a_command_boundary():
    """run_into never splits a command; run() calls again until every command is done."""
    config = dict(symbols=1, pool_size=64, band_ticks=64, ref_price=1000)
    book, ref = Book(**config), ReferenceMatcher(**config)
    rest = commands(20, kind=Kind.ENTER, side=S, price=1001, qty=1, client=1, token=np.arange(20))
    sweep = commands(1, kind=Kind.ENTER, side=B, price=1001, qty=20, client=2, token=1)
    batch = np.concatenate([rest, sweep])
    m = Matcher(book, event_capacity=8)
    events = np.zeros(50, EVENT_DTYPE)
    consumed, n, need = m.run_into(batch, events)
    assert (consumed, n) == (20, 40) and need > 10, "the sweep needs more room than is left"
    m2 = Matcher(Book(**config), event_capacity=8)
    expected = ref.run(batch)
    assert np.array_equal(m2.run(batch), expected)
    replayed = Book(**config)
    assert Matcher(replayed, event_capacity=8).replay(batch, batch=4) == len(expected)
    assert replayed.state_hash() == ref.state_hash()


def test_fok_dry_run_and_mass_cancel_walk_overflow_levels_in_price_order(venue):
    v = venue(band_ticks=8)          # band is 996..1003: bids above, in and below it
    for side, price in ((S, 5000), (S, 3000), (B, 999), (B, 500), (B, 2000)):
        v.order(side, price, 1)
    assert v.orders() == [("B", 2000, 1, 5), ("B", 999, 1, 3), ("B", 500, 1, 4),
                          ("S", 3000, 1, 2), ("S", 5000, 1, 1)]
    ev = v.order(S, 400, 4, tif=Tif.FOK)
    assert kinds(ev)[-1] == "CANCELED", "only 3 shares bid down to 400"
    ev = v.order(S, 400, 3, tif=Tif.FOK)
    assert trades(ev) == [(2000, 1, 5), (999, 1, 3), (500, 1, 4)]
    v.order(B, 2500, 2)
    v.order(B, 10, 2)
    ev = v.send(Kind.MASS_CANCEL_SYMBOL, symbol=0)
    assert [int(p) for p in ev["price"][ev["kind"] == EventKind.CANCELED]] == [2500, 10, 3000, 5000]


def test_tokens_are_per_client(venue):
    v = venue()
    v.order(B, 999, 1, token=5, client=1)
    assert kinds(v.order(B, 998, 1, token=5, client=2)) == ["ACCEPTED", "BOOK_ADD"]
    ev = v.order(B, 997, 1, token=5, client=1)
    assert ev[0]["reason"] == RejectReason.DUPLICATE_TOKEN
    v.send(Kind.CANCEL, token=5, client=2)
    assert v.orders() == [("B", 999, 1, 5)]
