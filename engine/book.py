"""The order books of the matching core, held in preallocated numpy arrays.

``Book`` owns every array the C kernel (``cffi_build/matching.c``) works on: an order pool
(one 64-byte record per order, FIFO links included, so touching an order costs one cache
line rather than one per field), price levels addressed by tick inside a band around each
symbol's reference price (plus a sorted overflow list for prices outside the band), the
best level per symbol and side, and a (client, token) lookup table. Nothing grows: a full
order pool or overflow pool makes the kernel reject with POOL_FULL / LEVELS_FULL. Python
reads every field by name (``book.orders_pool["price"]``, ``book.levels["qty"]``).

``Book.orders()`` exports the live orders in canonical book order (symbol, bids then
asks, best price first, time priority = ascending order reference number, because a
reference number is handed out exactly when an order takes its place in the queue);
``state_hash`` digests that form, so two books with the same orders and counters hash
alike whatever their slot layout.
"""
import hashlib

import numpy as np

from .commands import Flag, Side

#: One live order in canonical form (packed: the bytes are hashed).
ORDER_DTYPE = np.dtype([
    ("symbol", "<u2"), ("side", "u1"), ("hidden", "u1"), ("stp", "u1"), ("price", "<i4"),
    ("qty", "<u4"), ("client", "<u4"), ("stp_group", "<u4"), ("ref", "<u8"),
    ("token", "<u8"), ("ts", "<u8"),
])

#: One slot of the order pool; mirrors ``struct order`` (one 64-byte cache line).
ORDER_POOL_DTYPE = np.dtype([
    ("ref", "<u8"), ("token", "<u8"), ("ts", "<u8"),
    ("price", "<i4"), ("next", "<i4"), ("prev", "<i4"), ("level", "<i4"),
    ("qty", "<u4"), ("client", "<u4"), ("group", "<u4"), ("hash", "<u4"),
    ("symbol", "<u2"), ("side", "u1"), ("flags", "u1"), ("stp", "u1"),
], align=True)
#: One price level; mirrors ``struct level``.
LEVEL_DTYPE = np.dtype([
    ("price", "<i4"), ("head", "<i4"), ("tail", "<i4"), ("next", "<i4"), ("prev", "<i4"),
    ("count", "<u4"), ("qty", "<u8"),
], align=True)
#: One (client, token) table entry; mirrors ``struct hash_entry``.
HASH_DTYPE = np.dtype([("slot", "<i4"), ("hash", "<u4")])

# book.state slots (mirrors enum S_* in matching.c)
S_NEXT_REF, S_NEXT_MATCH, S_LIVE, S_OUTSIDE, S_FREE_ORDER, S_FREE_LEVEL = range(6)
O_LIVE = 0x80


def _cache_aligned(n: int, dtype: np.dtype) -> np.ndarray:
    """Zeroed array whose first record starts on a 64-byte boundary."""
    raw = np.zeros(n * dtype.itemsize + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip:skip + n * dtype.itemsize].view(dtype)


def band_low(ref_price: int, band_ticks: int) -> int:
    """Lowest price of a band of ``band_ticks`` ticks centred on ``ref_price`` (>= 1)."""
    return max(1, int(ref_price) - band_ticks // 2)


def state_hash(orders: np.ndarray, next_ref: int, next_match: int) -> str:
    """blake2b of canonical orders + the reference/match counters (they shape the future)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(orders, ORDER_DTYPE).tobytes())
    h.update(np.array([next_ref, next_match], "<u8").tobytes())
    return h.hexdigest()


class Book:
    """Books of ``symbols`` instruments (ITCH stock locate 0..symbols-1).

    pool_size:       most resting orders over all symbols.
    band_ticks:      directly addressed price levels per symbol and side, centred on
                     ``ref_price`` (scalar or per symbol); other prices take the overflow path.
    collar_ticks:    market order protection (scalar or per symbol).
    overflow_levels: outside-band price levels available (default pool_size: never short).
    max_qty:         largest order size accepted.
    """

    def __init__(self, symbols: int, pool_size: int, band_ticks: int, ref_price=10_000,
                 collar_ticks=100, overflow_levels: int | None = None,
                 max_qty: int = 1_000_000):
        if not (0 < symbols <= 65536 and 0 < pool_size < 2**30 and 0 < band_ticks):
            raise ValueError("need 0 < symbols <= 65536, 0 < pool_size < 2**30, band_ticks > 0")
        self.symbols, self.pool_size, self.band_ticks = symbols, pool_size, band_ticks
        self.max_qty = max_qty
        overflow_levels = pool_size if overflow_levels is None else overflow_levels
        if symbols * 2 * band_ticks + overflow_levels >= 2**31:
            raise ValueError("symbols * 2 * band_ticks + overflow_levels must stay below 2**31")
        self.ref_price = np.broadcast_to(np.asarray(ref_price, np.int32), (symbols,)).copy()
        self.collar = np.broadcast_to(np.asarray(collar_ticks, np.int32), (symbols,)).copy()
        self.band_lo = np.array([band_low(p, band_ticks) for p in self.ref_price], np.int32)
        self.band_words = (band_ticks + 63) // 64

        self.state = np.zeros(6, np.int64)
        self.state[[S_NEXT_REF, S_NEXT_MATCH]] = 1
        self.state[S_FREE_ORDER] = 0 if pool_size else -1
        sides = symbols * 2
        self.best = np.full(sides, -1, np.int32)
        self.ovf_head = np.full(sides, -1, np.int32)
        self.count = np.zeros(sides, np.uint32)
        self.bitmap = np.zeros(sides * self.band_words, np.uint64)

        band_levels = sides * band_ticks
        n_levels = band_levels + overflow_levels
        self.levels = lv = _cache_aligned(n_levels, LEVEL_DTYPE)
        lv["price"][:band_levels] = (np.repeat(self.band_lo, 2 * band_ticks)
                                     + np.tile(np.arange(band_ticks, dtype=np.int32), sides))
        for link in ("head", "tail", "prev", "next"):
            lv[link] = -1
        lv["next"][band_levels:n_levels - 1] = np.arange(band_levels + 1, n_levels)  # free list
        self.state[S_FREE_LEVEL] = band_levels if overflow_levels else -1

        self.orders_pool = pool = _cache_aligned(pool_size, ORDER_POOL_DTYPE)
        pool["next"] = np.arange(1, pool_size + 1)      # free list
        pool["next"][-1] = -1
        pool["prev"] = pool["level"] = -1
        self.h_table = np.zeros(1 << max(1, (2 * pool_size - 1).bit_length()), HASH_DTYPE)
        self.h_table["slot"] = -1

    # ---- inspection ----------------------------------------------------------------

    @property
    def next_ref(self) -> int:
        return int(self.state[S_NEXT_REF])

    @property
    def next_match(self) -> int:
        return int(self.state[S_NEXT_MATCH])

    @property
    def live(self) -> int:
        """Resting orders."""
        return int(self.state[S_LIVE])

    def best_price(self, symbol: int, side: Side) -> int | None:
        """Best bid (Side.BUY) or ask (Side.SELL) of ``symbol``, O(1); None if empty."""
        lv = self.best[symbol * 2 + (side == Side.SELL)]
        return None if lv < 0 else int(self.levels["price"][lv])

    def orders(self) -> np.ndarray:
        """Live orders as ORDER_DTYPE in canonical book order (see module docstring)."""
        live = self.orders_pool[(self.orders_pool["flags"] & O_LIVE) != 0]
        out = np.zeros(len(live), ORDER_DTYPE)
        for name in ("symbol", "side", "stp", "price", "qty", "client", "ref", "token", "ts"):
            out[name] = live[name]
        out["stp_group"] = live["group"]
        out["hidden"] = (live["flags"] & Flag.HIDDEN) != 0
        priority = np.where(out["side"] == Side.BUY, -out["price"].astype(np.int64), out["price"])
        return out[np.lexsort((out["ref"], priority, out["side"], out["symbol"]))]

    def state_hash(self) -> str:
        """Deterministic digest of the live orders and counters (same for the reference)."""
        return state_hash(self.orders(), self.next_ref, self.next_match)

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every array: ``restore`` writes them back to give this exact book."""
        return {k: v.copy() for k, v in vars(self).items() if isinstance(v, np.ndarray)}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        """Write a ``snapshot()`` of a book of the same shape back in place."""
        for name, value in snapshot.items():
            getattr(self, name)[...] = value


def check_invariants(book: Book) -> None:
    """Raise AssertionError unless the book's structures agree with each other.

    Checks: every level's FIFO is linked both ways, holds orders of its own symbol, side and
    price in ascending reference number (time priority), and its count and share total match
    its orders; band levels are non-empty exactly when their bitmap bit is set; overflow
    lists are sorted best first and lie outside the band; ``best`` is the best non-empty
    level; no book is crossed; every live order sits in exactly one level and is findable
    in the token table; counters agree with the pool.
    """
    b, lvs, pool = book, book.levels, book.orders_pool
    seen = np.zeros(b.pool_size, bool)
    band = b.band_ticks
    for s in range(b.symbols):
        lo = int(b.band_lo[s])
        for si, side in enumerate((Side.BUY, Side.SELL)):
            key = s * 2 + si
            bits = np.unpackbits(b.bitmap[key * b.band_words:(key + 1) * b.band_words]
                                 .view(np.uint8), bitorder="little")[:band]
            levels = [key * band + i for i in np.flatnonzero(bits)]
            assert not np.any(lvs["count"][key * band:(key + 1) * band][bits == 0]), "empty bit, full level"
            ovf, prev = [], -1
            for lv in _walk(b.ovf_head[key], lvs["next"]):
                assert lvs["prev"][lv] == prev, "overflow list back link"
                assert not 0 <= lvs["price"][lv] - lo < band, "overflow level inside the band"
                ovf.append(lv)
                prev = lv
            prices = [int(lvs["price"][lv]) for lv in ovf]
            assert prices == sorted(prices, reverse=(side == Side.BUY)), "overflow list order"
            assert len(set(prices)) == len(prices), "duplicate overflow level"
            all_levels = levels + ovf
            n_orders = 0
            for lv in all_levels:
                prev, refs, qty = -1, [], 0
                for i in _walk(lvs["head"][lv], pool["next"]):
                    o = pool[i]
                    assert not seen[i], "order linked twice"
                    seen[i] = True
                    assert o["flags"] & O_LIVE and o["level"] == lv and o["prev"] == prev
                    assert (o["symbol"], o["side"], o["price"]) == (s, side, lvs["price"][lv])
                    assert o["qty"] > 0, "resting order without shares"
                    refs.append(int(o["ref"]))
                    qty += int(o["qty"])
                    prev = i
                assert lvs["tail"][lv] == prev, "level tail"
                assert refs and refs == sorted(refs) and len(set(refs)) == len(refs), "FIFO order"
                assert lvs["count"][lv] == len(refs) and lvs["qty"][lv] == qty, "level totals"
                n_orders += len(refs)
            assert b.count[key] == n_orders, "side order count"
            if all_levels:
                pick = max if side == Side.BUY else min
                assert lvs["price"][b.best[key]] == pick(int(lvs["price"][lv]) for lv in all_levels)
                assert lvs["count"][b.best[key]] > 0, "best level empty"
            else:
                assert b.best[key] == -1, "best level of an empty side"
        bid, ask = b.best_price(s, Side.BUY), b.best_price(s, Side.SELL)
        assert bid is None or ask is None or bid < ask, f"crossed book in symbol {s}: {bid} >= {ask}"
    live = (pool["flags"] & O_LIVE) != 0
    slots = b.h_table["slot"]
    assert np.array_equal(seen, live), "live orders not on the book"
    assert b.live == live.sum(), "live count"
    assert np.array_equal(np.sort(slots[slots >= 0]), np.flatnonzero(live)), "token table"
    assert b.state[S_OUTSIDE] == sum(1 for k in range(2 * b.symbols)
                                     for _ in _walk(b.ovf_head[k], lvs["next"])), "outside levels"


def _walk(head, links):
    i = int(head)
    while i >= 0:
        yield i
        i = int(links[i])
