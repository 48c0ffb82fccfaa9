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
_KERNEL_DROPS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                 "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
_owners: dict[str, int] = {}    # interface -> XdpPorts this process has open on it


class _Lent:
    """The handle of a received burst: its frames go back to the fill ring exactly once."""

    __slots__ = ("port", "released")

    def __init__(self, port: XdpPort):
        self.port = port
        self.released = False


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
    if pid == os.getpid() and _owners.get(ifname) or pid != os.getpid() and _alive(pid):
        return None
    path.unlink(missing_ok=True)
    if iface.xdp_program(ifname) is None or not iface.detach_xdp(ifname, prog_id=prog_id):
        return None
    message = (f"detached XDP program {prog_id} from {ifname}: it was left there by netio process {pid}, "
               "which ended without closing its port")
    log.warning("netio: %s", message)
    return message


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
        self.info = PortInfo(backend="xdp", iface=iface_name, queue=queue, ts_source=TimestampSource.TSC,
                             details={"frame_size": frame_size, "frames": frames, "ring_size": ring_size,
                                      "ifindex": link.ifindex})
        stale = clear_stale_program(iface_name)
        if stale:
            self.info.details["stale_program"] = stale
        self._counters = ffi.new("struct nx_counters *")
        self._kstats = ffi.new("struct xdp_statistics *")
        self._stats = PortStats()
        self._open_socket(iface_name, queue, xdp_mode, zero_copy, frame_size, frames, ring_size)
        try:
            self._token = teardown.register(self.close)
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
        modes = ["native", "generic"] if xdp_mode == "auto" else [xdp_mode]
        copies = [True, False] if zero_copy == "auto" else [zero_copy]
        steps = [(m, zc) for m in modes for zc in copies if not (m == "generic" and zc)]
        stage, err = ffi.new("int *"), ffi.new("int *")
        area = ffi.from_buffer(self.umem)
        for mode, zc in steps:
            xdp_flags = lib.XDP_FLAGS_DRV_MODE if mode == "native" else lib.XDP_FLAGS_SKB_MODE
            bind_flags = lib.XDP_ZEROCOPY if zc else lib.XDP_COPY
            deadline = time.monotonic() + REBIND_WAIT_S
            while True:
                xsk = lib.nx_open(ifname.encode(), queue, area, frame_size, frames, ring_size,
                                  xdp_flags, bind_flags, stage, err)
                if xsk != ffi.NULL or err[0] != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            if xsk != ffi.NULL:
                self._xsk = xsk
                _owners[ifname] = _owners.get(ifname, 0) + 1
                self.info.xdp_mode, self.info.zero_copy = mode, zc
                return
            what = f"{mode} XDP{' zero-copy' if zc else ' copy mode'}"
            if stage[0] == 1:
                raise PortUnavailable(self._umem_error(ifname, err[0], frames * frame_size))
            if err[0] in (errno.EPERM, errno.EACCES):
                raise PortUnavailable(f"the kernel refused AF_XDP on {ifname} ({os.strerror(err[0])}); "
                                      "it needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF")
            if err[0] == errno.EAFNOSUPPORT:
                raise PortUnavailable("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS); "
                                      "use the socket backend")
            self.info.fallbacks.append(f"{what} refused on {ifname} queue {queue}: "
                                       f"{self._reason(err[0], zc, mode)}")
            log.info("netio: %s", self.info.fallbacks[-1])
        raise PortUnavailable(f"no AF_XDP socket could be bound to {ifname} queue {queue}: "
                              + "; ".join(self.info.fallbacks))

    @staticmethod
    def _reason(err: int, zero_copy: bool, mode: str) -> str:
        detail = ffi.string(lib.nx_last_log()).decode(errors="replace")
        if err == errno.EOPNOTSUPP and zero_copy:
            why = "the driver has no zero-copy support"
        elif err == errno.EOPNOTSUPP and mode == "native":
            why = "the driver has no native XDP support"
        elif err == errno.EBUSY:
            why = "the queue or interface is busy (another AF_XDP socket or XDP program holds it)"
        else:
            why = os.strerror(err)
        return f"{why}{f' (libxdp: {detail})' if detail and 'Falling back' not in detail else ''}"

    @staticmethod
    def _umem_error(ifname: str, err: int, size: int) -> str:
        return (f"the kernel refused to register a {size >> 20} MiB UMEM for {ifname} ({os.strerror(err)}); "
                "raise the locked-memory limit (`ulimit -l unlimited`) or use fewer/smaller frames")

    def _adopt_program(self, ifname: str) -> None:
        attached = iface.xdp_program(ifname)
        self._prog_id = attached.prog_id if attached else None
        self.info.details["prog_id"] = self._prog_id
        if self._prog_id is not None:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            _state_file(ifname).write_text(json.dumps({"pid": os.getpid(), "prog_id": self._prog_id}))

    # -- the burst API ----------------------------------------------------------------------
    def rx_burst(self, max_frames: int = 64) -> Burst:
        offsets = np.empty(max_frames, np.int64)
        lengths = np.empty(max_frames, np.uint32)
        stamps = np.empty(max_frames, np.int64)
        n = lib.nx_rx_burst(self._live(), max_frames, ffi.from_buffer(offsets),
                            ffi.from_buffer(lengths), ffi.from_buffer(stamps))
        if n == 0:
            return Burst.empty(TimestampSource.TSC)
        return Burst(self.umem, offsets[:n], lengths[:n], stamps[:n], TimestampSource.TSC, _Lent(self))

    def release(self, burst: Burst) -> None:
        lent = burst.handle
        if not isinstance(lent, _Lent) or lent.released or len(burst) == 0:
            return  # an empty burst, a burst we did not lend, or one already handed back
        if lent.port is not self:
            raise PortError("this burst was received on another port; release it there")
        lent.released = True
        offsets = np.ascontiguousarray(burst.offsets, np.int64)
        lib.nx_release(self._live(), ffi.from_buffer(offsets), len(offsets))

    def tx_burst(self, burst: Burst) -> int:
        n = len(burst)
        if n == 0:
            return 0
        offsets = np.ascontiguousarray(burst.offsets, np.int64)
        lengths = np.ascontiguousarray(burst.lengths, np.uint32)
        buf = np.ascontiguousarray(burst.buffer).view(np.uint8)
        taken = lib.nx_tx_burst(self._live(), ffi.from_buffer(buf), buf.nbytes, ffi.from_buffer(offsets),
                                ffi.from_buffer(lengths), n)
        if taken < 0:
            i = -taken - 1
            raise PortError(f"frame {i} of the burst ({int(lengths[i])} bytes at offset {int(offsets[i])}) "
                            f"runs outside its buffer or does not fit a {self.frame_size}-byte UMEM frame; "
                            "nothing was sent")
        return taken

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
                s.drops = {name: getattr(self._kstats, name) for name in _KERNEL_DROPS
                           if getattr(self._kstats, name)}
        return self._stats

    def fileno(self) -> int | None:
        return lib.nx_fd(self._xsk) if self._xsk != ffi.NULL else None

    def close(self) -> None:
        if self._xsk == ffi.NULL:
            return
        self.stats()  # keep the last counters readable after close
        if self._token is not None:
            teardown.unregister(self._token)
        xsk, self._xsk = self._xsk, ffi.NULL
        lib.nx_close(xsk)
        ifname = self.info.iface
        _owners[ifname] -= 1
        if _owners[ifname] == 0:
            # libxdp detaches its program with the last socket; make sure, but never
            # touch a program that is not the one this port was given.
            try:
                if self._prog_id is not None:
                    iface.detach_xdp(ifname, prog_id=self._prog_id)
            except PortError:
                pass  # the interface went away, and its program with it
            _state_file(ifname).unlink(missing_ok=True)

    def _live(self):
        if self._xsk == ffi.NULL:
            raise PortError(f"the xdp port on {self.info.iface} is closed")
        return self._xsk

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
