"""The AF_XDP backend: one XDP socket on one queue of one interface, frames in a numpy UMEM.

    port = XdpPort("eth0", queue=0)            # or open_port("eth0", backend="xdp")
    burst = port.rx_burst(64)                  # frames lie in port.umem, no copy
    ...; port.release(burst)                   # frames go back to the fill ring
    port.tx_burst(Burst.of([frame]))           # copied into free UMEM transmit frames

The socket and libxdp's redirect program come from libxdp (``netio._xdp``, built from
cffi_build/xdp.c). Opening tries zero-copy before copy mode and native XDP before
generic, and writes down why each faster step was refused in ``info.fallbacks``.
The XDP program is detached on close, on SIGINT/SIGTERM, and - when the process
died without either - by the next open on that interface, which finds the owner's
pid in /run/netio/.
"""
from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from netio import iface, teardown
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

try:
    from netio._xdp import ffi, lib
except ImportError as _e:  # pragma: no cover - the module is built by `make native`
    raise ImportError(f"netio._xdp is not built ({_e}); run `make native`") from _e

log = logging.getLogger("netio")

STATE_DIR = Path("/run/netio")
BUSY_POLL_USECS = 20
REBIND_WAIT_S = 1.0      # the kernel frees a closed socket's queue binding a few ms late
_owners: dict[str, int] = {}    # interface -> XdpPorts this process has open on it


class _Slot:
    """The arrays a received burst lives in; lent out with the burst, reused once it is released.

    The Burst objects over a slot's arrays are made once per burst length and then
    reused: C refills the arrays, so the same views show each new burst.
    """

    __slots__ = ("owner", "umem", "size", "offsets", "lengths", "stamps", "c_args", "released", "bursts")

    def __init__(self, owner: object, umem: np.ndarray, size: int):
        self.owner, self.umem, self.size = owner, umem, size
        self.offsets = np.empty(size, np.int64)
        self.lengths = np.empty(size, np.uint32)
        self.stamps = np.empty(size, np.int64)
        self.c_args = (ffi.from_buffer("int64_t[]", self.offsets), ffi.from_buffer("uint32_t[]", self.lengths),
                       ffi.from_buffer("int64_t[]", self.stamps))
        self.released = True
        self.bursts: dict[int, Burst] = {}

    def burst(self, n: int) -> Burst:
        burst = self.bursts.get(n)
        if burst is None:
            burst = self.bursts[n] = Burst(self.umem, self.offsets[:n], self.lengths[:n], self.stamps[:n],
                                           TimestampSource.TSC, self)
        return burst


def _state_file(ifname: str) -> Path:
    return STATE_DIR / f"xdp-{ifname}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale_program(ifname: str) -> str | None:
    """Detach an XDP program left on ``ifname`` by a netio process that died; returns a warning or None."""
    path = _state_file(ifname)
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid, prog_id = int(state.get("pid", 0)), int(state.get("prog_id", 0))
    owner_is_here = pid == os.getpid() and _owners.get(ifname, 0) > 0
    if owner_is_here or (pid != os.getpid() and _alive(pid)):
        return None
    path.unlink(missing_ok=True)
    if not iface.detach_xdp(ifname, prog_id=prog_id):
        return None  # the program went away with its sockets; only the note was stale
    message = (f"detached XDP program {prog_id} from {ifname}: it was left there by netio process {pid}, "
               "which ended without closing its port")
    log.warning("netio: %s", message)
    return message


def _kernel_drops(k) -> dict[str, int]:
    """The kernel's struct xdp_statistics as drops by reason, each frame counted once.

    rx_dropped is every frame the socket lost; fill-ring-empty and RX-ring-full are
    the two reasons it names, the rest of rx_dropped has no reason given.
    """
    named = {"rx no fill-ring buffer (receiver too slow to release)": k.rx_fill_ring_empty_descs,
             "rx ring full (receiver too slow to poll)": k.rx_ring_full,
             "rx invalid descriptor": k.rx_invalid_descs,
             "tx invalid descriptor": k.tx_invalid_descs}
    named["rx dropped by the kernel, other reasons"] = max(
        0, k.rx_dropped - k.rx_fill_ring_empty_descs - k.rx_ring_full)
    return {reason: int(n) for reason, n in named.items() if n}


def _c_burst(burst: Burst) -> tuple:
    """The buffer, its size, offsets and lengths of ``burst`` as C pointers (converted if need be)."""
    offsets, lengths, buf = burst.offsets, burst.lengths, burst.buffer
    if offsets.dtype != np.int64 or not offsets.flags.c_contiguous:
        offsets = np.ascontiguousarray(offsets, np.int64)
    if lengths.dtype != np.uint32 or not lengths.flags.c_contiguous:
        lengths = np.ascontiguousarray(lengths, np.uint32)
    if buf.dtype != np.uint8 or not buf.flags.c_contiguous:
        buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    return (ffi.from_buffer("uint8_t[]", buf, require_writable=False), buf.nbytes,
            ffi.from_buffer("int64_t[]", offsets, require_writable=False),
            ffi.from_buffer("uint32_t[]", lengths, require_writable=False))


def _check_power_of_two(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1 or value & (value - 1):
        raise PortError(f"{name} must be a power of two (e.g. 2048), not {value!r}")


class XdpPort(Port):
    """One AF_XDP socket on ``queue`` of ``iface``.

    Options: ``xdp_mode`` "auto" | "native" | "generic"; ``zero_copy`` "auto" | True |
    False; ``frame_size`` (2048 or 4096 bytes); ``frames`` in the UMEM (half receive,
    half transmit); ``ring_size`` of the RX and TX rings (a power of two);
    ``busy_poll`` and ``busy_poll_budget``. Received frames are stamped with one TSC
    reading per burst, taken when the burst was found (``TimestampSource.TSC``).

    Release every received burst once: its frames go back to the kernel and the Burst
    object itself (arrays included) is handed out again by a later rx_burst.
    """

    def __init__(self, iface_name: str, queue: int = 0, *, xdp_mode: str = "auto",
                 zero_copy: bool | str = "auto", frame_size: int = 4096, frames: int = 4096,
                 ring_size: int = 2048, busy_poll: bool = True, busy_poll_budget: int = 64,
                 **unknown: Any):
        self._xsk = ffi.NULL
        self._token: int | None = None
        self._prog_id: int | None = None
        if unknown:
            raise PortError(f"the xdp backend does not know option(s) {', '.join(sorted(unknown))}; it takes "
                            "xdp_mode, zero_copy, frame_size, frames, ring_size, busy_poll, busy_poll_budget")
        if xdp_mode not in ("auto", "native", "generic"):
            raise PortError(f"xdp_mode must be 'auto', 'native' or 'generic', not {xdp_mode!r}")
        if zero_copy not in ("auto", True, False):
            raise PortError(f"zero_copy must be 'auto', True or False, not {zero_copy!r}")
        if zero_copy is True and xdp_mode == "generic":
            raise PortError("zero-copy needs native XDP; generic mode always copies")
        _check_power_of_two("ring_size", ring_size)
        if frame_size not in (2048, 4096):
            raise PortError(f"frame_size must be 2048 or 4096 bytes (AF_XDP aligned mode), not {frame_size!r}")
        if not isinstance(frames, int) or frames < 2:
            raise PortError(f"frames must be a whole number of at least 2, not {frames!r}")
        if not isinstance(busy_poll_budget, int) or busy_poll_budget < 1:
            raise PortError(f"busy_poll_budget must be a positive whole number, not {busy_poll_budget!r}")
        if os.geteuid() != 0:
            raise PortUnavailable("AF_XDP needs root (CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF); "
                                  "run as root, or use the socket backend")
        link = iface.link_state(iface_name)       # PortError when there is no such interface
        if not link.admin_up:
            raise PortError(f"{iface_name} is down; bring it up with `ip link set {iface_name} up`")
        queues = iface.queue_count(iface_name)
        if not isinstance(queue, int) or not 0 <= queue < queues:
            raise PortError(f"{iface_name} has {queues} receive queue(s), numbered 0 to {queues - 1}; "
                            f"there is no queue {queue!r}")

        self.frame_size = frame_size
        self._map = mmap.mmap(-1, frames * frame_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.umem = np.frombuffer(self._map, np.uint8)   # page-aligned: mmap'd memory
        self._umem_c = ffi.from_buffer("uint8_t[]", self.umem)
        self.info = PortInfo(backend="xdp", iface=iface_name, queue=queue, ts_source=TimestampSource.TSC,
                             details={"frame_size": frame_size, "frames": frames, "ring_size": ring_size,
                                      "ifindex": link.ifindex})
        stale = clear_stale_program(iface_name)
        if stale:
            self.info.details["stale_program"] = stale
        self._counters = ffi.new("struct nx_counters *")
        self._kstats = ffi.new("struct xdp_statistics *")
        self._stats = PortStats()
        self._empty = Burst.empty(TimestampSource.TSC)
        self._free_slots: list[_Slot] = []
        self._slot_owner = object()   # marks this port's slots without them pointing back at the port
        self._open_socket(iface_name, queue, xdp_mode, zero_copy, frame_size, frames, ring_size)
        if link.kind == "veth" and self.info.xdp_mode == "native":
            self.info.details["note"] = ("native XDP on a veth: frames sent here reach the peer only if "
                                         "the peer has GRO on (`ethtool -K <peer> gro on`)")
        try:
            me = weakref.ref(self)   # the registry must not keep a dropped port alive
            self._token = teardown.register(lambda: (port := me()) and port._on_signal())
            self._adopt_program(iface_name)
            if busy_poll:
                refused = lib.nx_set_busy_poll(self._xsk, BUSY_POLL_USECS, busy_poll_budget)
                self.info.busy_poll = refused == 0
                if refused:
                    self.info.fallbacks.append(f"busy polling refused ({os.strerror(refused)}); "
                                               "polling without it")
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------
    def _open_socket(self, ifname: str, queue: int, xdp_mode: str, zero_copy: bool | str,
                     frame_size: int, frames: int, ring_size: int) -> None:
        """Bind the fastest way this interface allows, writing down why each faster way failed."""
        modes = ["native", "generic"] if xdp_mode == "auto" else [xdp_mode]
        copies = [True, False] if zero_copy == "auto" else [zero_copy]
        for mode, zc in [(m, zc) for m in modes for zc in copies if not (m == "generic" and zc)]:
            stage, err = self._bind(ifname, queue, mode, zc, frame_size, frames, ring_size)
            if self._xsk != ffi.NULL:
                _owners[ifname] = _owners.get(ifname, 0) + 1
                self.info.xdp_mode, self.info.zero_copy = mode, zc
                return
            if stage == 1:
                raise PortUnavailable(f"the kernel refused to register a {frames * frame_size >> 20} MiB UMEM "
                                      f"for {ifname} ({os.strerror(err)}); raise the locked-memory limit "
                                      "(`ulimit -l unlimited`) or use fewer or smaller frames")
            if err in (errno.EPERM, errno.EACCES):
                raise PortUnavailable(f"the kernel refused AF_XDP on {ifname} ({os.strerror(err)}); "
                                      "it needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF")
            if err == errno.EAFNOSUPPORT:
                raise PortUnavailable("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS); "
                                      "use the socket backend")
            what = f"{mode} XDP {'zero-copy' if zc else 'copy mode'}"
            self.info.fallbacks.append(f"{what} refused on {ifname} queue {queue}: "
                                       f"{self._reason(ifname, err, zc, mode)}")
            log.info("netio: %s", self.info.fallbacks[-1])
        raise PortUnavailable(f"no AF_XDP socket could be bound to {ifname} queue {queue}: "
                              + "; ".join(self.info.fallbacks))

    def _bind(self, ifname: str, queue: int, mode: str, zero_copy: bool, frame_size: int, frames: int,
              ring_size: int) -> tuple[int, int]:
        """One attempt (and its EBUSY retries); sets self._xsk, else returns (stage, errno)."""
        stage, err = ffi.new("int *"), ffi.new("int *")
        xdp_flags = lib.XDP_FLAGS_DRV_MODE if mode == "native" else lib.XDP_FLAGS_SKB_MODE
        bind_flags = lib.XDP_ZEROCOPY if zero_copy else lib.XDP_COPY
        deadline = time.monotonic() + REBIND_WAIT_S
        while True:
            xsk = lib.nx_open(ifname.encode(), queue, self._umem_c, frame_size, frames,
                              ring_size, xdp_flags, bind_flags, stage, err)
            if xsk != ffi.NULL:
                self._xsk = xsk
                return 0, 0
            # EBUSY with no program attached is a socket closed a moment ago whose queue
            # binding the kernel has not freed yet; anything else will not go away by waiting.
            if err[0] != errno.EBUSY or time.monotonic() > deadline or iface.xdp_program(ifname):
                return stage[0], err[0]
            time.sleep(0.005)

    @staticmethod
    def _reason(ifname: str, err: int, zero_copy: bool, mode: str) -> str:
        detail = ffi.string(lib.nx_last_log()).decode(errors="replace").removeprefix("libxdp: ")
        if err == errno.EOPNOTSUPP and zero_copy:
            return "the driver has no zero-copy support"
        if err == errno.EOPNOTSUPP and mode == "native":
            return "the driver has no native XDP support"
        if err == errno.EBUSY:
            attached = iface.xdp_program(ifname)
            if attached and not _owners.get(ifname):
                keyword = {"native": "xdpdrv", "generic": "xdpgeneric"}.get(attached.mode, "xdp")
                return (f"XDP program {attached.prog_id} ({attached.mode}) is already attached and is not "
                        f"netio's; detach it first (`ip link set {ifname} {keyword} off`)")
            return "another AF_XDP socket is bound to this queue"
        why = os.strerror(err)
        return f"{why} (libxdp: {detail})" if detail and "Falling back" not in detail else why

    def _adopt_program(self, ifname: str) -> None:
        attached = iface.xdp_program(ifname)
        self._prog_id = attached.prog_id if attached else None
        self.info.details["prog_id"] = self._prog_id
        if self._prog_id is not None:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            _state_file(ifname).write_text(json.dumps({"pid": os.getpid(), "prog_id": self._prog_id}))

    # -- the burst API ----------------------------------------------------------------------
    def rx_burst(self, max_frames: int = 64) -> Burst:
        if self._xsk == ffi.NULL:
            raise PortError(f"the xdp port on {self.info.iface} is closed")
        slot = self._free_slots.pop() if self._free_slots else self._new_slot(max_frames)
        if slot.size < max_frames:
            slot = self._new_slot(max_frames)
        n = lib.nx_rx_burst(self._xsk, max_frames, *slot.c_args)
        if n == 0:
            self._free_slots.append(slot)
            return self._empty
        slot.released = False
        return slot.burst(n)

    def _new_slot(self, max_frames: int) -> _Slot:
        return _Slot(self._slot_owner, self.umem, max(64, max_frames))

    def release(self, burst: Burst) -> None:
        slot = burst.handle
        if type(slot) is not _Slot or slot.released:
            return  # an empty burst, a burst we did not lend, or one already handed back
        if slot.owner is not self._slot_owner:
            raise PortError("this burst was received on another port; release it there")
        lib.nx_release(self._live(), slot.c_args[0], len(burst.offsets))
        slot.released = True
        self._free_slots.append(slot)

    def tx_burst(self, burst: Burst) -> int:
        n = len(burst.lengths)
        if n == 0:
            return 0
        slot = burst.handle
        if type(slot) is _Slot and burst.buffer is self.umem and burst.offsets.base is slot.offsets \
                and burst.lengths.base is slot.lengths:
            # A burst this port received (e.g. echoed back): its arrays are already C-ready.
            buf, buf_len, offsets, lengths = self._umem_c, self.umem.nbytes, slot.c_args[0], slot.c_args[1]
        else:
            buf, buf_len, offsets, lengths = _c_burst(burst)
        taken = lib.nx_tx_burst(self._live(), buf, buf_len, offsets, lengths, n)
        if taken < 0:
            i = -taken - 1
            raise PortError(f"frame {i} of the burst ({int(burst.lengths[i])} bytes at offset "
                            f"{int(burst.offsets[i])}) runs outside its buffer or does not fit a "
                            f"{self.frame_size}-byte UMEM frame; nothing was sent")
        return taken

    def c_api(self) -> tuple[int, int]:
        """Addresses of this port's ``struct nx_xsk`` and of the ``struct nx_burst_api`` table
        (cffi_build/xdp_api.h), for a fused C loop in another native module."""
        return int(ffi.cast("uintptr_t", self._live())), int(ffi.cast("uintptr_t", lib.nx_api()))

    def tx_in_flight(self) -> int:
        """Frames queued for sending that the kernel has not finished with yet."""
        return lib.nx_tx_in_flight(self._live())

    def stats(self) -> PortStats:
        if self._xsk != ffi.NULL:
            lib.nx_counters(self._xsk, self._counters)
            c = self._counters
            s = self._stats
            s.rx_packets, s.rx_bytes = c.rx_packets, c.rx_bytes
            s.tx_packets, s.tx_bytes = c.tx_packets, c.tx_bytes
            s.ring_full, s.wakeups, s.fill_ring_empty = c.ring_full, c.wakeups, c.fill_ring_empty
            if lib.nx_kernel_stats(self._xsk, self._kstats) == 0:
                s.drops = _kernel_drops(self._kstats)
        return self._stats

    def fileno(self) -> int | None:
        return lib.nx_fd(self._xsk) if self._xsk != ffi.NULL else None

    def close(self) -> None:
        if self._xsk == ffi.NULL:
            return
        self.stats()  # keep the last counters readable after close
        if self._token is not None:
            teardown.unregister(self._token)
            self._token = None
        xsk, self._xsk = self._xsk, ffi.NULL
        lib.nx_close(xsk)
        ifname = self.info.iface
        _owners[ifname] -= 1
        if _owners[ifname] == 0:
            # libxdp detaches its program with the last socket; make sure.
            self._detach_program()

    def _detach_program(self) -> None:
        """Detach the program this port was given (never another one) and forget its note."""
        ifname = self.info.iface
        try:
            if self._prog_id is not None:
                iface.detach_xdp(ifname, prog_id=self._prog_id)
        except PortError:
            pass  # the interface went away, and its program with it
        _state_file(ifname).unlink(missing_ok=True)

    def _on_signal(self) -> None:
        # A signal can land between two lines of rx_burst, so the socket and UMEM stay
        # (the process is ending; the kernel frees them) and only the program goes.
        self._token = None
        self._detach_program()

    def _live(self):
        if self._xsk == ffi.NULL:
            raise PortError(f"the xdp port on {self.info.iface} is closed")
        return self._xsk

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
