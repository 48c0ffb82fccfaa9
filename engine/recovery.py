"""The feed's re-request server: its latest messages, and answers to MoldUDP64 requests.

MoldUDP64 goes out once, by multicast; a consumer that missed packets asks the venue's
re-request server (``VenueConfig.recovery_port``) for the messages by sequence number,
in a request packet (engine.moldudp64.request: session, first sequence number, count).
The venue keeps its feed's latest ``recovery_messages`` messages here, as it sent them,
and answers each request with one downstream packet unicast to the asker: the requested
messages it holds from the requested sequence number on, as many as fit in a feed
datagram (the asker asks again for the rest, as engine.feed.FeedHandler does). A request
it cannot answer is counted by reason (``Verdict``) and dropped: not 20 bytes or a count
of 0 or 0xFFFF, another session, or messages it no longer (or does not yet) hold.

Requests are answered after the burst they came in has sent its own frames, so a
re-request never holds up an order's replies. The store lives in memory; a venue
restarted on its journal holds its feed's latest book-event messages again, rebuilt from
the journal byte for byte (the start of day's are ``NOT_HELD``: their timestamps were
never journaled). Like any MoldUDP64 re-request server it sends back far more than it
is sent, to whatever source a request names, so each asking address gets at most
``answers_per_s`` answers a second (a tenth of a second's worth at once; addresses that
hash alike share a budget) and requests beyond it are dropped as ``RATE_LIMITED``: an
asker that keeps within it still recovers tens of thousands of messages a second, and a
forged source draws at most answers_per_s packets a second onto its victim. All askers
together get at most ``total_answers_per_s`` (the same way), and requests beyond that
are dropped as ``VENUE_LIMITED``: requests from many addresses, forged or not, take at
most so much of the venue's CPU and its network (first come, first served: a flood of
them crowds honest askers out until it stops). Serve it on networks you trust
(``recovery_port = 0`` turns it off).

The store is C (cffi_build/moldudp64.c) shared by both pipelines: the Python-driven one
calls ``add`` and ``answer``; the fused walk adds to it and answers from it in C.
"""
from __future__ import annotations

from enum import Enum

import numpy as np

from engine.moldudp64 import HEADER_LEN, _session_bytes

try:
    from engine._moldudp64 import ffi, lib
except ImportError as _e:  # pragma: no cover - the module is built by `make native`
    raise ImportError(f"engine._moldudp64 is not built ({_e}); run `make native`") from _e

BLOCK_BYTES = 64            # ring bytes per message held: ITCH 5.0's longest is 50, + 2
BUDGET_SLOTS = 4096         # asker addresses hash to this many budgets
BURST_PER_S = 10            # a budget holds a tenth of a second's worth of answers


class Verdict(str, Enum):
    """What became of a request (cffi_build/moldudp64.h MOLD_Q_*, in order)."""

    ANSWERED = "answered"
    MALFORMED = "request_malformed"
    WRONG_SESSION = "request_wrong_session"
    NOT_HELD = "request_not_held"
    RATE_LIMITED = "request_rate_limited"
    VENUE_LIMITED = "request_venue_limited"


VERDICTS = list(Verdict)


class Retransmissions:
    """The latest ``messages`` messages (a power of two) of ``session``'s feed, and the
    answers to requests for them in packets of at most ``max_payload`` bytes, at most
    ``answers_per_s`` a second to each asker and ``total_answers_per_s`` to all of them
    (0: no limit)."""

    def __init__(self, session: str, messages: int, max_payload: int, answers_per_s: int = 0,
                 total_answers_per_s: int = 0):
        if messages < 1 or messages & (messages - 1):
            raise ValueError(f"recovery_messages must be a power of two, not {messages}")
        self.session = _session_bytes(session)
        self.max_payload = max_payload
        self._bytes = np.zeros(messages * BLOCK_BYTES, np.uint8)
        self._start = np.zeros(messages, np.uint64)
        self._store = ffi.new("struct mold_store *")
        self._store.bytes = ffi.from_buffer("uint8_t[]", self._bytes)
        self._store.start = ffi.from_buffer("uint64_t[]", self._start)
        self._store.bytes_mask, self._store.seq_mask = len(self._bytes) - 1, messages - 1
        self._due = np.zeros(BUDGET_SLOTS, np.uint64)
        self._store.due, self._store.due_mask = ffi.from_buffer("uint64_t[]", self._due), BUDGET_SLOTS - 1
        self._store.interval_ns, self._store.burst_ns = _budget(answers_per_s)
        self._store.total_interval_ns, self._store.total_burst_ns = _budget(total_answers_per_s)
        self._out = np.zeros(max_payload, np.uint8)
        self._verdict, self._sent = ffi.new("int *"), ffi.new("uint32_t *")

    @property
    def held(self) -> range:
        """The sequence numbers of the messages held."""
        return range(self._store.first, self._store.next)

    @property
    def address(self) -> int:
        """The C store's address, for the fused walk."""
        return int(ffi.cast("uintptr_t", self._store))

    def add(self, first_sequence: int, stream: bytes | np.ndarray) -> None:
        """Hold a block stream (2-byte length + message, repeated) of messages numbered
        from ``first_sequence``, as the feed sent them."""
        lib.mold_store_add(self._store, first_sequence, ffi.from_buffer(stream), len(stream))

    def answer(self, request: bytes | np.ndarray, asker: int, now_ns: int) -> tuple[bytes | None, Verdict, int]:
        """(the downstream packet that answers ``request`` from IPv4 address ``asker`` (an
        int) at ``now_ns`` or None, the verdict, messages in it)."""
        n = lib.mold_store_answer(self._store, self.session, ffi.from_buffer(request), len(request), asker, now_ns,
                                  self.max_payload, ffi.from_buffer("uint8_t[]", self._out, require_writable=True),
                                  self._verdict, self._sent)
        return (self._out[:n].tobytes() if n >= HEADER_LEN else None), VERDICTS[self._verdict[0]], self._sent[0]


def _budget(answers_per_s: int) -> tuple[int, int]:
    """(interval_ns, burst_ns) of a budget of answers_per_s (0: none, no limit)."""
    if not answers_per_s:
        return 0, 0
    interval = 10**9 // answers_per_s
    return interval, interval * (max(1, answers_per_s // BURST_PER_S) - 1)
