"""The matching core: runs command batches through the C kernel on a ``Book``.

``Matcher(book).run(commands)`` returns the events of every command (EVENT_DTYPE), in
order, exactly as ``engine.reference.ReferenceMatcher.run`` does. ``run_into`` is the
allocation-free form for hot loops: it fills a caller's event buffer and stops at a
command boundary when the buffer could overflow. ``replay`` applies a stream in batches
and keeps only the book (journal replay, benchmarks). ``apply_feed`` rests, reduces and
removes orders as a market-data feed says, without matching (engine/feed.py).
"""
import numpy as np

from ._matching import ffi, lib
from .book import Book
from .commands import COMMAND_DTYPE, EVENT_DTYPE, FEED_OP_DTYPE

_BOOK_ARRAYS = {"band_lo": "band_lo", "ref_price": "ref_price", "collar": "collar",
                "state": "state", "best": "best", "ovf_head": "ovf_head", "count": "count",
                "bitmap": "bitmap", "levels": "levels", "orders": "orders_pool",
                "h_table": "h_table"}


class Matcher:
    """Price-time matching over ``book`` (the book's arrays are changed in place)."""

    def __init__(self, book: Book, event_capacity: int = 4096):
        self.book = book
        b = ffi.new("struct book *")
        b.symbols, b.pool_size, b.band_ticks = book.symbols, book.pool_size, book.band_ticks
        b.band_words, b.max_qty = book.band_words, book.max_qty
        b.hash_mask = len(book.h_table) - 1
        self._keep = [b]
        for name, attribute in _BOOK_ARRAYS.items():
            array = getattr(book, attribute)
            if not array.flags.c_contiguous:
                raise ValueError(f"book.{attribute} must be C-contiguous")
            ptr = ffi.from_buffer(ffi.typeof(getattr(b, name)).item.cname + "[]", array)
            setattr(b, name, ptr)
            self._keep.append(ptr)
        self._b = b
        self._events = np.zeros(event_capacity, EVENT_DTYPE)
        self._out = ffi.new("uint32_t[2]")

    def run_into(self, commands: np.ndarray, events: np.ndarray,
                 tsc: np.ndarray | None = None) -> tuple[int, int, int]:
        """Run as many ``commands`` as fit into ``events``.

        Returns (commands consumed, events written, room the next command needs; 0 if all
        were consumed). Event ``cmd`` fields index ``commands``. ``tsc`` (uint64, len >=
        len(commands)), if given, receives the TSC cycles each consumed command took.
        """
        if commands.dtype != COMMAND_DTYPE or events.dtype != EVENT_DTYPE:
            raise TypeError("commands must be COMMAND_DTYPE and events EVENT_DTYPE arrays")
        if tsc is not None and (tsc.dtype != np.uint64 or len(tsc) < len(commands)):
            raise TypeError("tsc must be a uint64 array as long as commands")
        out = self._out
        consumed = lib.match_run(
            self._b, ffi.from_buffer("struct command[]", commands), len(commands),
            ffi.from_buffer("struct event[]", events, require_writable=True), len(events),
            out, out + 1, ffi.NULL if tsc is None else ffi.from_buffer("uint64_t[]", tsc))
        return consumed, out[0], out[1]

    def replay(self, commands: np.ndarray, batch: int = 64, tsc: np.ndarray | None = None) -> int:
        """Apply ``commands`` in batches of ``batch``, keeping only the event count.

        For rebuilding a book from a journal and for benchmarks: the events go to one
        reused buffer. ``tsc`` as in ``run_into``. Returns the number of events.
        """
        commands = np.ascontiguousarray(commands)
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must be a COMMAND_DTYPE array")
        if tsc is not None and (tsc.dtype != np.uint64 or len(tsc) < len(commands)):
            raise TypeError("tsc must be a uint64 array as long as commands")
        cmds = ffi.from_buffer("struct command[]", commands)
        stamps = ffi.NULL if tsc is None else ffi.from_buffer("uint64_t[]", tsc)
        events = ffi.from_buffer("struct event[]", self._events, require_writable=True)
        cap, out, match_run, b = len(self._events), self._out, lib.match_run, self._b
        total, done, n = 0, 0, len(commands)
        while done < n:
            todo = min(batch, n - done)
            consumed = match_run(b, cmds + done, todo, events, cap, out, out + 1,
                                 stamps if tsc is None else stamps + done)
            total += out[0]
            done += consumed
            if consumed == 0:   # one command needs more room than the whole buffer
                self._events = np.zeros(max(out[1], 2 * cap), EVENT_DTYPE)
                events = ffi.from_buffer("struct event[]", self._events, require_writable=True)
                cap = len(self._events)
        return total

    def apply_feed(self, ops: np.ndarray, status: np.ndarray) -> int:
        """Apply FEED_OP_DTYPE ``ops`` in order; ``status[i]`` gets op i's FEED_STATUS index.
        Returns how many ops did not apply as they stand (status != 0)."""
        if ops.dtype != FEED_OP_DTYPE or status.dtype != np.uint8 or len(status) < len(ops):
            raise TypeError("ops must be FEED_OP_DTYPE and status a uint8 array as long as ops")
        return lib.feed_apply(self._b, ffi.from_buffer("struct feed_op[]", np.ascontiguousarray(ops)),
                              len(ops), ffi.from_buffer("uint8_t[]", status, require_writable=True))

    def run(self, commands: np.ndarray) -> np.ndarray:
        """Apply ``commands`` in order; return all their events (a new array).

        The events are byte-for-byte deterministic, padding included (copied as bytes:
        numpy's structured copies leave padding undefined), so they can be hashed.
        """
        commands = np.ascontiguousarray(commands)
        chunks, done = [], 0
        while done < len(commands):
            consumed, n, need = self.run_into(commands[done:], self._events)
            if n:
                raw = self._events[:n].view(np.uint8).copy()
                raw.view(EVENT_DTYPE)["cmd"] += done
                chunks.append(raw)
            done += consumed
            if consumed == 0:   # one command needs more room than the whole buffer
                self._events = np.zeros(max(need, 2 * len(self._events)), EVENT_DTYPE)
        return np.concatenate(chunks).view(EVENT_DTYPE) if chunks else np.zeros(0, EVENT_DTYPE)


def tsc() -> int:
    """The CPU time stamp counter (the clock of ``run_into``'s per-command cycles)."""
    return lib.match_tsc()
