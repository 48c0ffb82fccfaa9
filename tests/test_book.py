"""The numpy book: preallocated state, best prices, canonical export, hash, invariant checker."""
import numpy as np
import pytest

from engine.book import S_FREE_LEVEL, S_FREE_ORDER, S_OUTSIDE, Book, check_invariants
from engine.commands import COMMAND_DTYPE, EVENT_DTYPE, Kind, RejectReason, Side, Tif, commands
from engine.matching import Matcher
from engine.reference import ReferenceMatcher

B, S = Side.BUY, Side.SELL
CONFIG = dict(symbols=3, pool_size=32, band_ticks=16, ref_price=[100, 1000, 5000])


def enter(side, price, qty, token, symbol=0, client=1, **kw):
    return commands(1, kind=Kind.ENTER, side=side, price=price, qty=qty, token=token,
                    symbol=symbol, client=client, **kw)


def free_list_length(head, links):
    n, i = 0, int(head)
    while i >= 0:
        n, i = n + 1, int(links[i])
    return n


def test_best_bid_and_ask_follow_the_book():
    book = Book(**CONFIG)
    m = Matcher(book)
    assert book.best_price(0, B) is None and book.best_price(0, S) is None
    m.run(np.concatenate([enter(B, 99, 5, 1), enter(B, 97, 5, 2), enter(S, 102, 5, 3),
                          enter(S, 130, 5, 4)]))         # 130 is outside the band 92..107
    assert (book.best_price(0, B), book.best_price(0, S)) == (99, 102)
    m.run(commands(1, kind=Kind.CANCEL, client=1, token=3))
    assert book.best_price(0, S) == 130, "the overflow level becomes best"
    m.run(enter(B, 140, 5, 5))
    assert (book.best_price(0, B), book.best_price(0, S)) == (99, None)
    check_invariants(book)


def test_orders_export_in_canonical_book_order():
    book = Book(**CONFIG)
    Matcher(book).run(np.concatenate([
        enter(S, 1003, 1, 1, symbol=1), enter(B, 98, 1, 2), enter(B, 99, 1, 3),
        enter(B, 99, 2, 4), enter(S, 101, 1, 5)]))
    o = book.orders()
    assert list(zip(o["symbol"], o["side"], o["price"], o["ref"])) == [
        (0, B, 99, 3), (0, B, 99, 4), (0, B, 98, 2), (0, S, 101, 5), (1, S, 1003, 1)]


def test_state_hash_is_deterministic_and_matches_the_reference():
    stream = np.concatenate([enter(B, 99, 5, 1), enter(S, 101, 5, 2), enter(S, 99, 3, 3)])
    a, b = Book(**CONFIG), Book(**CONFIG)
    ref = ReferenceMatcher(**CONFIG)
    Matcher(a).run(stream)
    Matcher(b).run(stream)
    ref.run(stream)
    assert a.state_hash() == b.state_hash() == ref.state_hash()
    Matcher(b).run(commands(1, kind=Kind.CANCEL, client=1, token=1, qty=1))
    assert a.state_hash() != b.state_hash()


def test_snapshot_and_restore_rebuild_the_same_book():
    book = Book(**CONFIG)
    m = Matcher(book)
    m.run(np.concatenate([enter(B, 99, 5, 1), enter(S, 150, 5, 2)]))
    saved, digest = book.snapshot(), book.state_hash()
    m.run(commands(1, kind=Kind.MASS_CANCEL_CLIENT, client=1))
    assert book.live == 0
    book.restore(saved)
    assert book.state_hash() == digest
    check_invariants(book)
    assert len(m.run(commands(1, kind=Kind.CANCEL, client=1, token=2))) == 2, "restored orders are live"


def test_state_is_preallocated_and_never_grows():
    book = Book(**CONFIG)
    arrays = {k: (v.ctypes.data, v.shape) for k, v in vars(book).items() if isinstance(v, np.ndarray)}
    m = Matcher(book)
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 50
        m.run(commands(n, kind=Kind.ENTER, side=rng.choice([B, S], n), price=rng.integers(90, 110, n),
                       qty=rng.integers(1, 9, n), token=rng.integers(1, 10**9, n), client=1))
    after = {k: (v.ctypes.data, v.shape) for k, v in vars(book).items() if isinstance(v, np.ndarray)}
    assert after == arrays
    check_invariants(book)


def test_full_pool_rejects_then_every_slot_comes_back():
    book = Book(**{**CONFIG, "pool_size": 8})
    m = Matcher(book)
    ev = m.run(commands(10, kind=Kind.ENTER, side=B, price=np.arange(90, 100), qty=1,
                        token=np.arange(1, 11), client=1))
    rejected = ev[ev["kind"] == 2]
    assert list(rejected["reason"]) == [RejectReason.POOL_FULL] * 2 and book.live == 8
    assert book.state[S_FREE_ORDER] == -1
    check_invariants(book)
    m.run(commands(1, kind=Kind.MASS_CANCEL_SYMBOL, symbol=0))
    assert book.live == 0
    assert free_list_length(book.state[S_FREE_ORDER], book.orders_pool["next"]) == 8


def test_overflow_levels_are_returned_when_empty():
    book = Book(**{**CONFIG, "overflow_levels": 3})
    m = Matcher(book)
    m.run(np.concatenate([enter(S, 300, 1, 1), enter(S, 200, 1, 2), enter(B, 10, 1, 3)]))
    assert book.state[S_OUTSIDE] == 3
    ev = m.run(enter(S, 400, 1, 4))
    assert ev[0]["reason"] == RejectReason.LEVELS_FULL
    m.run(enter(B, 300, 2, 5, tif=Tif.IOC))
    assert book.state[S_OUTSIDE] == 1
    assert free_list_length(book.state[S_FREE_LEVEL], book.levels["next"]) == 2
    check_invariants(book)


def test_invariant_checker_catches_a_broken_queue_and_wrong_level_totals():
    book = Book(**CONFIG)
    Matcher(book).run(np.concatenate([enter(B, 99, 5, 1), enter(B, 99, 5, 2)]))
    check_invariants(book)
    saved = book.snapshot()
    pool = book.orders_pool
    first = np.flatnonzero(pool["ref"] == 1)[0]
    pool["ref"][first] = 9                   # time priority no longer ascending
    with pytest.raises(AssertionError, match="FIFO"):
        check_invariants(book)
    book.restore(saved)
    book.levels["qty"][pool["level"][first]] += 1
    with pytest.raises(AssertionError, match="level totals"):
        check_invariants(book)


def test_matcher_refuses_arrays_of_the_wrong_dtype():
    m = Matcher(Book(**CONFIG))
    with pytest.raises(TypeError):
        m.run_into(np.zeros(1, EVENT_DTYPE), np.zeros(4, EVENT_DTYPE))
    with pytest.raises(TypeError):
        m.replay(np.zeros(1, np.int64))
    assert len(m.run(np.zeros(0, COMMAND_DTYPE))) == 0


def test_matching_is_deterministic():
    """The same commands on two fresh books give byte-identical events and books."""
    rng = np.random.default_rng(11)
    n = 2000
    stream = commands(n, kind=rng.choice([Kind.ENTER, Kind.ENTER, Kind.CANCEL], n),
                      side=rng.choice([B, S], n), price=rng.integers(95, 106, n),
                      qty=rng.integers(1, 20, n), token=rng.integers(1, 300, n),
                      client=rng.integers(1, 4, n), symbol=rng.integers(0, 3, n),
                      tif=rng.choice([Tif.DAY, Tif.IOC], n))
    stream["price"] += np.asarray(CONFIG["ref_price"])[stream["symbol"]] - 100
    books = [Book(**CONFIG), Book(**CONFIG)]
    events = [Matcher(b).run(stream) for b in books]
    assert events[0].tobytes() == events[1].tobytes()
    assert np.sum(events[0]["kind"] == 3) > 0, "the stream trades"
    assert books[0].orders().tobytes() == books[1].orders().tobytes()


def test_c_structs_mirror_the_numpy_dtypes_field_for_field():
    from engine._matching import ffi
    from engine.book import LEVEL_DTYPE, ORDER_POOL_DTYPE

    for struct, dtype in (("struct command", COMMAND_DTYPE), ("struct event", EVENT_DTYPE),
                          ("struct order", ORDER_POOL_DTYPE), ("struct level", LEVEL_DTYPE)):
        assert ffi.sizeof(struct) == dtype.itemsize, struct
        fields = dict(ffi.typeof(struct).fields)
        for name in dtype.names:
            (field_dtype, offset), field = dtype.fields[name], fields[name]
            assert (field.offset, ffi.sizeof(field.type)) == (offset, field_dtype.itemsize), name
