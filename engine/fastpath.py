"""The venue's fused C path (cffi_build/fastpath.c): a whole burst in one C call.

A venue on a port with a C table (AF_XDP) runs this by default; ``Venue(..., fused=True)``
forces it. It takes over the venue's state: the same Stack config, book, risk state and
client arrays the Python pipeline uses, so both walk the same state. Clients and OUCH
tokens move to C tables (a venue's recovered ones are loaded into them). With a journal,
C writes each burst's new clients and tokens (``JOURNAL.sessions``) and its commands to
the venue's two journals, in engine/journal.py's format, before sending any of its
frames; the Journal objects are told how far C got after every call.
On an AF_XDP port the walk runs on a C thread of its own (``start``: fp_start runs fp_poll,
which reads and sends through the port's C table, ``XdpPort.c_api``, and sends the feed's
heartbeats) and Python only drains each burst's stamps (``drain``); on other ports one
burst per ``burst`` call. The thread counts the times the machine took its CPU for longer
than STALL_S while it waited for frames (``cpu_stalls``, ``cpu_stalled_us``,
``cpu_longest_stall_us`` in counts()): an order that arrives then waits, and one in the
middle of its walk when such a gap comes takes that much longer (that shows in its
latency, not in the count).
"""
from __future__ import annotations

import os
import weakref

import numpy as np

from engine._fastpath import ffi, lib
from engine.journal import FlushPolicy
from engine.recovery import VERDICTS
from netio.clock import CLOCK_DTYPE
from netio.port import Burst
from netio.stack import ip_int

MAX_BURST = 256
RING_BURSTS = 1 << 16   # stamps of bursts with commands the loop's thread holds for drain()
CHECK_S = 100e-6        # how soon the thread sees stop()
STALL_S = 10e-6         # a gap in the loop's polling this long is a stall: the p99.9 goal's length

_COUNTS = ["rx_frames", "datagrams", "messages", "commands", "fills", "accepted", "replies",
           "feed_messages", "tx_frames"]
_DROPS = {lib.FP_TX_RING_FULL: "tx_ring_full", lib.FP_DROP_SOUP_CONTROL: "soup_control_packet",
          lib.FP_DROP_UNSUPPORTED: "unsupported_message", lib.FP_DROP_TOO_MANY_CLIENTS: "too_many_clients"}


def lock_memory() -> None:
    """Lock every page of this process in RAM, mapped now or later (mlockall MCL_CURRENT |
    MCL_FUTURE), for a venue that must not stall on page faults. Its tables are calloc'd or
    numpy-zeroed, so the kernel maps them page by page as orders first touch them (hashed
    tables at random pages): in a fresh venue about one order in four took a fault, each
    microseconds on a VM. Locked, every page is there before the first order (and none is
    ever swapped out). Needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK: OSError if refused."""
    err = lib.fp_lock_memory()
    if err:
        raise OSError(err, f"mlockall: {os.strerror(err)}")


HUGE_PAGE = 2 << 20


def huge_pages() -> tuple[int, int]:
    """Move this process's private anonymous memory (the venue's tables: call it once they
    exist, before the orders) onto 2 MB pages where the kernel can (MADV_COLLAPSE, Linux
    6.1, whatever the transparent hugepage setting short of ``never``). A walk touches a
    few dozen pages of tables; on 4 kB pages each can cost a TLB miss and a page-table walk
    (on a VM a two-level one): on 2 MB pages the walk's p50 fell 8 % and its p99 a fifth in
    a test of one order a millisecond. Returns (bytes moved, bytes the kernel refused)."""
    moved = refused = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[1] != "rw-p" or len(fields) > 5 and fields[5] != "[heap]":
                continue
            lo, hi = (int(a, 16) for a in fields[0].split("-"))
            lo, hi = -(-lo // HUGE_PAGE) * HUGE_PAGE, hi // HUGE_PAGE * HUGE_PAGE
            if hi > lo:
                if lib.fp_collapse(ffi.cast("void *", lo), hi - lo):
                    refused += hi - lo
                else:
                    moved += hi - lo
    return moved, refused


def unlock_memory() -> None:
    """Undo lock_memory (munlockall), for a process that carries on without a venue."""
    err = lib.fp_unlock_memory()
    if err:
        raise OSError(err, f"munlockall: {os.strerror(err)}")


def _addr(module_ffi, pointer) -> int:
    return int(module_ffi.cast("uintptr_t", pointer))


class FusedPath:
    """The fused walk over ``venue``'s state (engine.venue.Venue, built with ``fused=True``)."""

    def __init__(self, venue, reject_code: np.ndarray, cancel_code: np.ndarray, max_clients: int,
                 reply_payload: int):
        from engine import matching, risk
        from netio import stack
        from engine.ouch import Reject
        self.venue = venue
        self._drops = dict(_DROPS)
        self._drops.update({lib.FP_DROP_OUCH_REJECT + i: r.value for i, r in enumerate(Reject)})
        self._drops.update({lib.FP_REQUESTS + i: verdict.value for i, verdict in enumerate(VERDICTS) if i})
        v = ffi.gc(lib.fp_new(MAX_BURST), lib.fp_free)
        if v == ffi.NULL:
            raise MemoryError("fp_new")
        self.v, cfg = v, venue.config
        self._keep = []
        v.stack_cfg = ffi.cast("void *", _addr(stack.ffi, venue.stack._cfg))
        v.bound = self._buf("uint8_t[]", venue.stack._bound)
        v.stack_counts = self._buf("uint64_t[]", venue.stack._counts)
        v.book = ffi.cast("void *", _addr(matching.ffi, venue.matcher._b))
        self._risk_ffi = risk.ffi
        v.risk_state = ffi.cast("void *", _addr(risk.ffi, venue.risk._state))
        v.mid_reference = int(venue._mid_reference)
        v.tick = self._buf("int64_t[]", venue.tick)
        v.names = self._buf("uint8_t[]", venue.names)
        v.symbol_keys = self._buf("uint64_t[]", venue.symbol_keys)
        v.symbol_ids = self._buf("uint16_t[]", venue.symbol_ids)
        v.symbol_mask = len(venue.symbol_keys) - 1
        v.n_symbols, v.n_firms = len(venue.names), len(venue.firms)
        v.venue_firms = self._buf("uint8_t[]", venue.firms)
        v.reject_code, v.cancel_code = self._buf("uint8_t[]", reject_code), self._buf("uint8_t[]", cancel_code)
        v.client_ip = self._buf("uint32_t[]", venue.client_ip)
        v.client_port = self._buf("uint16_t[]", venue.client_port)
        v.client_mac = self._buf("uint8_t[]", venue.client_mac)
        v.client_firm = self._buf("uint8_t[]", venue.client_firm)
        v.max_clients, v.next_client, v.next_token = max_clients, venue._next_client, venue._next_token
        v.order_port, v.feed_port = cfg.order_port, cfg.feed_port
        v.feed_ip, v.feed_max_payload, v.reply_payload = ip_int(cfg.feed_group), cfg.feed_max_payload, reply_payload
        v.feed_session = list(cfg.feed_session.encode().ljust(10))
        v.feed_seq = venue.feed_seq
        if venue.recovery is not None:
            v.recovery, v.recovery_port = ffi.cast("void *", venue.recovery.address), cfg.recovery_port
        self._counts = ffi.cast("int64_t[%d]" % lib.FP_N_COUNTS, ffi.addressof(v, "counts"))
        self._rejects = ffi.cast("int64_t[256]", ffi.addressof(v, "rejects"))
        self._journals = ()
        if venue.journal is not None:
            for j in (venue.journal, venue.sessions):
                if j.flush_policy is not FlushPolicy.BATCH:
                    raise ValueError(f"the fused path writes journals with FlushPolicy.BATCH, not {j.flush_policy}")
            self._journals = (venue.journal, venue.sessions)
            v.jnl_fd, v.jnl_seq = venue.journal.fileno(), venue.journal.next_seq
            v.sessions_fd, v.sessions_seq = venue.sessions.fileno(), venue.sessions.next_seq
        if venue._client_of or venue._token_of:
            self._restore(venue)
        # two clock records: set_clock writes the one the loop's thread is not reading
        self._clocks = np.zeros(2, CLOCK_DTYPE)
        self._clocks_c = [self._buf("uint8_t[]", self._clocks[i:i + 1]) for i in range(2)]
        self.set_clock(venue.clock)
        self._hops = ffi.new("uint64_t[%d]" % lib.FP_HOPS)
        self._stamps = np.zeros((RING_BURSTS, lib.FP_STAMPS), np.uint64)
        self._stamps_c = self._buf("uint64_t[]", self._stamps)
        self._drained = ffi.new("uint64_t[3]")
        self._runner = None
        self._failed = False        # drain() raised what ended the thread
        self._limits_used = []      # every limits table the thread may still read
        self.stamps_lost = self.heartbeats = 0
        self._cycles_per_s = 0.0    # the TSC rate start() was given
        self._reply_cap = MAX_BURST * 2048
        self._reply_buf = np.frombuffer(ffi.buffer(v.reply_buf, self._reply_cap), np.uint8)
        self._xdp = None
        if hasattr(venue.port, "c_api") and hasattr(venue.port, "umem"):
            xsk, api = venue.port.c_api()
            self._xdp = (ffi.cast("void *", api), ffi.cast("void *", xsk), self._buf("uint8_t[]", venue.port.umem))

    def set_clock(self, model) -> None:
        """fp_poll's command timestamps from this TSC model (netio.clock.ClockModel) where it
        models CLOCK_REALTIME, what they are in: no clock_gettime between a burst's poll and
        its walk. Any other model (or None): clock_gettime(CLOCK_REALTIME) itself."""
        if model is not None and model.domain == "CLOCK_REALTIME":
            spare = 1 if self.v.clock == self._clocks_c[0] else 0
            self._clocks[spare] = model.as_record()[0]
            self.v.clock = self._clocks_c[spare]
        else:
            self.v.clock = ffi.NULL

    def _restore(self, venue) -> None:
        """The clients and tokens the venue recovered from its journal, into the C tables."""
        keys = np.array(list(venue._client_of), np.uint64)
        ids = np.array(list(venue._client_of.values()), np.uint32)
        pairs = np.array(list(venue._token_of), "V18").view([("c", "<u4"), ("t", "S14")])
        core = np.array(list(venue._token_of.values()), np.uint64)
        n = venue._next_token
        token_bytes = np.ascontiguousarray(venue.token_bytes[:n])
        token_symbol = np.ascontiguousarray(venue.token_symbol[:n])
        client = np.ascontiguousarray(pairs["c"])
        tokens = np.ascontiguousarray(pairs["t"])
        if lib.fp_restore(self.v, len(keys), self._buf("uint32_t[]", (keys >> 16).astype(np.uint32)),
                          self._buf("uint16_t[]", (keys & 0xFFFF).astype(np.uint16)), self._buf("uint32_t[]", ids),
                          len(core), self._buf("uint32_t[]", client), self._buf("uint8_t[]", tokens),
                          self._buf("uint64_t[]", core), self._buf("uint8_t[]", token_bytes),
                          self._buf("uint16_t[]", token_symbol), n):
            raise MemoryError("fp_restore")

    def _done(self, result: int) -> None:
        """Tell the journals how far C wrote; raise what went wrong."""
        if self._journals:
            self._journals[0].wrote(int(self.v.jnl_seq))
            self._journals[1].wrote(int(self.v.sessions_seq))
        if result == lib.FP_ERR_JOURNAL:
            raise OSError(self.v.jnl_errno, "the fused path could not write the journal (nothing of the burst was sent)")
        if result < 0:
            raise MemoryError("the fused path ran out of memory")

    def _buf(self, ctype: str, array: np.ndarray):
        p = ffi.from_buffer(ctype, array, require_writable=False)
        self._keep.append(p)
        return p

    def _limits(self) -> None:
        active = self.venue.risk._active
        if not self._limits_used or self._limits_used[-1] is not active:
            if self._runner is None:
                self._limits_used.clear()
            self._limits_used.append(active)
            self.v.risk_limits = ffi.cast("void *", _addr(self._risk_ffi, active[1]))

    def burst(self, burst: Burst, now_ns: int, stamps: np.ndarray) -> tuple[int, list[Burst], list[Burst]]:
        """One received burst through the walk, journaled: (commands, bursts to send in
        order, then the answers to its re-requests); ``stamps`` get the hops up to journaled."""
        self._limits()
        v = self.v
        n = len(burst)
        if n > MAX_BURST:
            raise ValueError(f"the fused path takes bursts of at most {MAX_BURST} frames")
        frames = ffi.from_buffer("uint8_t[]", burst.buffer)
        nc = lib.fp_burst(v, frames,
                          ffi.from_buffer("int64_t[]", np.ascontiguousarray(burst.offsets, np.int64)),
                          ffi.from_buffer("uint32_t[]", np.ascontiguousarray(burst.lengths, np.uint32)),
                          n, now_ns, self._hops)
        lib.fp_settle(v)            # sent or not, the book has the burst's matches: risk follows them
        self._done(nc)
        stamps[:lib.FP_JOURNALED + 1] = ffi.unpack(self._hops, lib.FP_JOURNALED + 1)
        out = []
        if v.n_replies:
            k = v.n_replies
            out.append(Burst(self._reply_buf, _array(v.reply_off, k, np.int64), _array(v.reply_len, k, np.uint32),
                             np.zeros(k, np.int64)))
        out += self._out()
        if lib.fp_answer(v, frames) < 0:
            raise MemoryError("fp_answer")
        return nc, out, self._out()

    def _out(self) -> list[Burst]:
        """The frames fp_burst or fp_answer left in out_*, copied."""
        v = self.v
        if not v.n_out:
            return []
        off, length = _array(v.out_off, v.n_out, np.int64), _array(v.out_len, v.n_out, np.uint32)
        size = int(off[-1] + length[-1])
        return [Burst(np.frombuffer(ffi.buffer(v.out_buf, size), np.uint8).copy(), off, length,
                      np.zeros(v.n_out, np.int64))]

    @property
    def polls_port(self) -> bool:
        """The port is AF_XDP: the walk runs on a C thread that reads and sends itself."""
        return self._xdp is not None

    @property
    def running(self) -> bool:
        """The loop's thread runs (started, not stopped)."""
        return self._runner is not None

    def start(self, burst_size: int, cycles_per_s: float, heartbeat_s: float) -> None:
        """Start the loop's thread (fp_start) on the CPUs the calling thread may use now.
        The port's close() stops it first."""
        self._limits()
        api, xsk, umem = self._xdp
        self._cycles_per_s = cycles_per_s
        self.v.stall_cycles = int(STALL_S * cycles_per_s)
        runner = lib.fp_start(self.v, api, xsk, umem, burst_size, RING_BURSTS, int(CHECK_S * cycles_per_s),
                              int(heartbeat_s * cycles_per_s))
        if runner == ffi.NULL:
            err = ffi.errno
            raise OSError(err, f"the venue's loop thread did not start: {os.strerror(err)}")
        self._runner = runner
        me = weakref.ref(self)
        self.venue.port.before_close(lambda: (f := me()) is not None and f.stop())

    def drain(self) -> tuple[int, np.ndarray]:
        """What the loop's thread did since the last call: (frames received, per burst with
        commands: the hops (engine.telemetry.HOPS), frames, commands, RX stamp, RX stamp's
        clock: xdp_api.h NX_TS_*). Raises what ended the thread, once."""
        if self._failed:
            return 0, self._stamps[:0]
        self._limits()
        d = self._drained
        k = lib.fp_drain(self._runner, self._stamps_c, RING_BURSTS, d, d + 1, d + 2)
        self.stamps_lost, self.heartbeats = int(d[1]), int(d[2])
        self._failed = k < 0
        self._done(k)
        return int(d[0]), self._stamps[:k]

    def stop(self) -> None:
        """Stop the loop's thread and wait for it (within CHECK_S); the journals learn how
        far it wrote. Raises what had ended it, unless drain() did."""
        runner, self._runner = self._runner, None
        if runner is not None:
            result = lib.fp_stop(runner)
            self._limits_used = self._limits_used[-1:]
            self._done(0 if self._failed else result)

    def __del__(self) -> None:
        # before the venue struct is freed: the thread must not outlive what it walks
        if self._runner is not None:
            lib.fp_stop(self._runner)

    @property
    def feed_seq(self) -> int:
        return int(self.v.feed_seq)

    def counts(self) -> tuple[dict, dict, dict]:
        """(venue counts, message drops by reason, rejects by RejectReason code) so far."""
        c = ffi.unpack(self._counts, lib.FP_N_COUNTS)
        counts = {name: c[i] for i, name in enumerate(_COUNTS) if c[i]}
        counts.update({name: k for name, k in (("retransmit_requests", c[lib.FP_REQUESTS]),
                                               ("retransmitted_messages", c[lib.FP_RETRANSMITTED])) if k})
        if self._cycles_per_s:      # the loop's thread ran: its stalls, none or some
            us = 1e6 / self._cycles_per_s
            counts.update(cpu_stalls=c[lib.FP_STALLS], cpu_stalled_us=round(c[lib.FP_STALLED_CYCLES] * us, 1),
                          cpu_longest_stall_us=round(c[lib.FP_LONGEST_STALL] * us, 1))
        # the loop's thread: its heartbeats, and stamps the full ring dropped (never the bursts)
        counts.update({name: k for name, k in (("feed_heartbeats", self.heartbeats),
                                               ("telemetry_stamps_lost", self.stamps_lost)) if k})
        drops = {name: c[i] for i, name in self._drops.items() if c[i]}
        r = ffi.unpack(self._rejects, 256)
        return counts, drops, {code: n for code, n in enumerate(r) if n}


def _array(pointer, n: int, dtype) -> np.ndarray:
    return np.frombuffer(ffi.buffer(pointer, n * np.dtype(dtype).itemsize), dtype).copy()
