"""The AF_XDP backend: one XDP socket on one queue of one interface, frames in a numpy UMEM.

    port = XdpPort("eth0", queue=0)            # or open_port("eth0", backend="xdp")
    burst = port.rx_burst(64)                  # frames lie in port.umem, no copy
    ...; port.release(burst)                   # frames go back to the fill ring
    port.tx_burst(Burst.of([frame]))           # copied into free UMEM transmit frames

The socket and libxdp's redirect program come from libxdp (``netio._xdp``, built from
cffi_build/xdp.c). Opening tries zero-copy before copy mode and native XDP before
generic, and writes down why each faster step was refused in ``info.fallbacks``.

With ``rx_metadata=True`` netio's own program (cffi_build/xdp_meta_kern.c) redirects
instead and writes, in front of each frame, the NIC's hardware RX stamp (through the
bpf_xdp_metadata_rx_timestamp kfunc, native XDP only) and the kernel's CLOCK_TAI at the
moment XDP saw the frame. Each burst is stamped with the best clock all its frames have
(``Burst.ts_source``: NIC, else KERNEL_TAI, else TSC at poll time); ``rx_stamps()`` gives
all of them, and ``info.details["rx_timestamps"]`` says why the NIC's are not used.

With ``tx_timestamps=True`` every sent frame gets a completion stamp (``tx_stamps()``):
through AF_XDP TX metadata where the kernel has it and the port runs netio's program
(``rx_metadata=True``) - the NIC's in zero-copy mode, the kernel's CLOCK_TAI at completion
in copy mode - else the TSC when the completion was reaped; ``info.details["tx_timestamps"]``
says which and why.
The XDP program is detached on close, on SIGINT/SIGTERM, and - when the process
died without either - by the next open on that interface, which finds the owner's
pid in /run/netio/.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netio import hwstamp, iface, pages, teardown
from netio.teardown import STATE_DIR
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

try:
    from netio._xdp import ffi, lib
except ImportError as _e:  # pragma: no cover - the module is built by `make native`
    raise ImportError(f"netio._xdp is not built ({_e}); run `make native`") from _e

log = logging.getLogger("netio")

BUSY_POLL_USECS = 20
REBIND_WAIT_S = 1.0      # the kernel frees a closed socket's queue binding a few ms late
_owners: dict[str, int] = {}    # interface -> XdpPorts this process has open on it
BPF_OBJECT = Path(__file__).resolve().parent / "_xdp_meta.bpf.o"
# Mirrors struct netio_xdp_meta in cffi_build/xdp_meta.h field for field.
META_DTYPE = np.dtype([("nic_ns", "<u8"), ("xdp_ns", "<u8"), ("nic_rc", "<i4"), ("magic", "<u4")])
_SOURCES = {lib.NX_TS_TSC: TimestampSource.TSC, lib.NX_TS_XDP: TimestampSource.KERNEL_TAI,
            lib.NX_TS_NIC: TimestampSource.NIC}
TX_LOG = 4096            # completion stamps kept until tx_stamps() reads them
XSKMAP_MIN_SLOTS = 256   # queues the metadata program's XSKMAP serves, even if more are switched on later
# Mirrors struct nx_tx_stamp in cffi_build/xdp.c.
TX_STAMP_DTYPE = np.dtype([("seq", "<u8"), ("ns", "<i8"), ("source", "<u4"), ("pad", "<u4")])


@dataclasses.dataclass(frozen=True)
class RxStamps:
    """Every clock's stamps of one received burst, on a port opened with ``rx_metadata=True``."""

    poll_tsc: int               # the TSC when the burst was polled
    xdp_tai_ns: np.ndarray      # int64 [n]: CLOCK_TAI when the XDP program saw each frame; 0: no metadata
    nic_ns: np.ndarray          # int64 [n]: the NIC's hardware stamp (its PHC, ns); 0: none
    nic_rc: np.ndarray          # int32 [n]: what the kfunc returned (0, or -errno: -95 = not offered)


@dataclasses.dataclass(frozen=True)
class TxStamps:
    """Completion stamps of sent frames, oldest first (``tx_timestamps=True`` ports)."""

    seq: np.ndarray             # uint64: each frame's number among those this port sent, from 0
    ns: np.ndarray              # int64: its stamp, in ``source``'s unit
    source: TimestampSource     # one clock per port
    lost: int                   # stamps overwritten unread since the last call (read more often)


class _MetaProgram:
    """netio's metadata program loaded and attached to one interface, shared by this
    process's ports on it (one per queue); detached and unloaded with the last of them."""

    def __init__(self, ifname: str, mode: str, nic: bool, obj, prog_fd: int, map_fd: int, prog_id: int):
        self.ifname, self.mode, self.nic = ifname, mode, nic
        self.obj, self.prog_fd, self.map_fd, self.prog_id = obj, prog_fd, map_fd, prog_id
        self.users = 0

    @classmethod
    def attach(cls, ifname: str, mode: str, *, nic: bool) -> _MetaProgram:
        """Load (bound to the device when ``nic``) and attach in ``mode``; PortError with the kernel's reason."""
        if not BPF_OBJECT.exists():
            raise PortError(f"netio's XDP metadata program {BPF_OBJECT} is not built; run `make native`")
        prog_fd, map_fd, err = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
        obj = lib.nx_meta_load(str(BPF_OBJECT).encode(), iface.ifindex(ifname), int(nic),
                               max(iface.queue_count(ifname), XSKMAP_MIN_SLOTS), prog_fd, map_fd, err)
        if obj == ffi.NULL:
            detail = ffi.string(lib.nx_last_log()).decode(errors="replace").strip()
            raise PortError(f"the kernel refused netio's XDP metadata program{' bound to ' + ifname if nic else ''} "
                            f"({os.strerror(err[0])}{': ' + detail[-200:] if detail else ''})")
        try:
            attached = iface.attach_xdp(ifname, prog_fd[0], mode=mode)
        except BaseException:
            lib.nx_meta_unload(obj)
            raise
        return cls(ifname, mode, nic, obj, prog_fd[0], map_fd[0], attached.prog_id)

    def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        _meta_programs.pop(self.ifname, None)
        try:
            iface.detach_xdp(self.ifname, prog_id=self.prog_id)
        except PortError:
            pass  # the interface went away, and its program with it
        lib.nx_meta_unload(self.obj)


_meta_programs: dict[str, _MetaProgram] = {}   # interface -> this process's metadata program on it


class _Slot:
    """The arrays a received burst lives in; lent out with the burst, reused once it is released.

    The Burst objects over a slot's arrays are made once per burst length and then
    reused: C refills the arrays, so the same views show each new burst.
    """

    __slots__ = ("owner", "umem", "size", "offsets", "lengths", "stamps", "c_args", "released", "bursts",
                 "meta", "meta_args")

    def __init__(self, owner: object, umem: np.ndarray, size: int, meta: bool = False):
        self.owner, self.umem, self.size = owner, umem, size
        self.offsets = np.empty(size, np.int64)
        self.lengths = np.empty(size, np.uint32)
        self.stamps = np.empty(size, np.int64)
        self.c_args = (ffi.from_buffer("int64_t[]", self.offsets), ffi.from_buffer("uint32_t[]", self.lengths),
                       ffi.from_buffer("int64_t[]", self.stamps))
        self.released = True
        self.bursts: dict[tuple[int, TimestampSource], Burst] = {}
        # rx_metadata ports: each frame's struct netio_xdp_meta, the burst's clock and its poll TSC
        self.meta = np.zeros(size, META_DTYPE) if meta else None
        self.meta_args = (ffi.from_buffer("struct netio_xdp_meta[]", self.meta), ffi.new("uint32_t *"),
                          ffi.new("int64_t *")) if meta else None

    def burst(self, n: int, source: TimestampSource = TimestampSource.TSC) -> Burst:
        burst = self.bursts.get((n, source))
        if burst is None:
            burst = self.bursts[n, source] = Burst(self.umem, self.offsets[:n], self.lengths[:n],
                                                   self.stamps[:n], source, self)
        return burst


def clear_stale_program(ifname: str) -> str | None:
    """Detach an XDP program left on ``ifname`` by a netio process that died; returns a warning or None."""
    path = teardown.note_path("xdp", ifname)
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid, prog_id = int(state.get("pid", 0)), int(state.get("prog_id", 0))
    owner_is_here = pid == os.getpid() and _owners.get(ifname, 0) > 0
    if owner_is_here or (pid != os.getpid() and teardown.alive(pid)):
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
    reading per burst, taken when the burst was found (``TimestampSource.TSC``), unless
    ``rx_metadata=True``: then netio's XDP program stamps each frame (see the module
    docstring) and ``info.details["rx_timestamps"]`` says which clock is used and why.

    Release every received burst once: its frames go back to the kernel and the Burst
    object itself (arrays included) is handed out again by a later rx_burst.
    """

    def __init__(self, iface_name: str, queue: int = 0, *, xdp_mode: str = "auto",
                 zero_copy: bool | str = "auto", frame_size: int = 4096, frames: int = 4096,
                 ring_size: int = 2048, busy_poll: bool = True, busy_poll_budget: int = 64,
                 rx_metadata: bool = False, tx_timestamps: bool = False, **unknown: Any):
        self._xsk = ffi.NULL
        self._before_close: list[Callable[[], None]] = []
        self._token: int | None = None
        self._prog_id: int | None = None
        self._meta: _MetaProgram | None = None
        if unknown:
            raise PortError(f"the xdp backend does not know option(s) {', '.join(sorted(unknown))}; it takes "
                            "xdp_mode, zero_copy, frame_size, frames, ring_size, busy_poll, busy_poll_budget, "
                            "rx_metadata, tx_timestamps")
        for name, value in (("rx_metadata", rx_metadata), ("tx_timestamps", tx_timestamps)):
            if value not in (True, False):
                raise PortError(f"{name} must be True or False, not {value!r}")
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
        if _owners.get(iface_name) and (iface_name in _meta_programs) != rx_metadata:
            raise PortError(f"this process has ports on {iface_name} {'with' if not rx_metadata else 'without'} "
                            "rx_metadata: one XDP program serves every queue, so open them all alike")
        self.rx_metadata, self.tx_timestamps = rx_metadata, tx_timestamps
        self._tx_meta = False     # TX completion stamps come from AF_XDP TX metadata

        self.frame_size = frame_size
        self._map, self.umem = pages.huge_page_area(frames * frame_size)
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
        try:
            self._open_socket(iface_name, queue, xdp_mode, zero_copy, frame_size, frames, ring_size)
        except BaseException:
            if self._meta is not None and self._xsk == ffi.NULL:   # a bind attempt that did not finish
                self._meta.release()
            raise
        self._describe_umem_pages()
        if rx_metadata:
            self._describe_rx_timestamps(iface_name)
        if tx_timestamps:
            self._describe_tx_timestamps(iface_name)
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
            if self.rx_metadata and not self._use_meta_program(ifname, mode):
                continue
            stage, err = self._bind(ifname, queue, mode, zc, frame_size, frames, ring_size)
            if self._xsk != ffi.NULL:
                _owners[ifname] = _owners.get(ifname, 0) + 1
                self.info.xdp_mode, self.info.zero_copy = mode, zc
                return
            if self._meta is not None:
                self._meta.release()
                self._meta = None
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

    def _use_meta_program(self, ifname: str, mode: str) -> bool:
        """Have netio's metadata program attached in ``mode`` (this process's, or a new one:
        in native mode bound to the device so it can ask the NIC); False with a sentence
        in ``info.fallbacks`` when it cannot be."""
        program = _meta_programs.get(ifname)
        if program is None:
            tries = [True, False] if mode == "native" else [False]
            for nic in tries:
                try:
                    program = _MetaProgram.attach(ifname, mode, nic=nic)
                    break
                except PortError as e:
                    what = " bound to the device (to read NIC stamps)" if nic else ""
                    self.info.fallbacks.append(f"netio's XDP metadata program{what} refused in {mode} mode on "
                                               f"{ifname}: {e}")
                    log.info("netio: %s", self.info.fallbacks[-1])
            if program is None:
                return False
            _meta_programs[ifname] = program
        elif program.mode != mode:
            self.info.fallbacks.append(f"{mode} XDP skipped on {ifname}: this process's metadata program "
                                       f"is attached in {program.mode} mode")
            return False
        program.users += 1
        self._meta = program
        return True

    def _tx_metadata_refusal(self, ifname: str, zero_copy: bool) -> str | None:
        """Why this bind attempt cannot stamp sent frames through AF_XDP TX metadata, or None."""
        if not self.rx_metadata:
            return ("AF_XDP TX metadata needs netio's own socket set-up and XDP program (rx_metadata=True): "
                    "libxdp 1.3.1 cannot register tx_metadata_len")
        try:
            why = hwstamp.xdp_tx_timestamp_support(ifname, zero_copy)
            # the NIC stamps only once hardware stamping is switched on
            return hwstamp.enable_hardware_stamping(ifname) if why is None and zero_copy else why
        except OSError as e:
            return f"{ifname} does not report its AF_XDP features ({e.strerror})"

    def _describe_tx_timestamps(self, ifname: str) -> None:
        """Say which clock completion stamps are in and, where it is the TSC, why."""
        why = None if self._tx_meta else self._tx_metadata_refusal(ifname, bool(self.info.zero_copy))
        if why is None:
            self.info.details["tx_timestamps"] = (
                f"NIC hardware stamps ({ifname}'s PHC) from AF_XDP TX metadata" if self.info.zero_copy else
                "the kernel's CLOCK_TAI when it completes each frame (AF_XDP TX metadata in copy mode: software)")
        else:
            self.info.details["tx_timestamps"] = (f"no AF_XDP TX metadata stamps: {why}; "
                                                  "TSC when the completion is reaped")

    def _describe_rx_timestamps(self, ifname: str) -> None:
        """Say which clock frames will carry and, where it is not the NIC's, why not."""
        if not self._meta.nic:
            why = ("the NIC RX timestamp kfunc needs native XDP: the kernel attaches no device-bound program in "
                   "generic (SKB) mode" if self._meta.mode == "generic" else
                   "the kernel would not load the NIC RX timestamp kfunc for this device")
        else:
            try:
                why = hwstamp.xdp_rx_timestamp_support(ifname) or hwstamp.enable_hardware_stamping(ifname)
            except OSError as e:
                why = f"{ifname} does not report its timestamping capabilities ({e.strerror})"
        self.info.ts_source = TimestampSource.KERNEL_TAI if why else TimestampSource.NIC
        self.info.details["rx_timestamps"] = (
            f"NIC hardware stamps ({ifname}'s PHC) from the XDP program" if why is None else
            f"no NIC RX stamps: {why}; frames carry the kernel's CLOCK_TAI from the XDP program")

    def _describe_umem_pages(self) -> None:
        """How much of the UMEM the kernel put on 2 MB pages; a sentence in fallbacks when not all."""
        huge = min(pages.huge_page_bytes(self.umem), self.umem.nbytes)
        self.info.details["umem_huge_page_bytes"] = huge
        if huge < self.umem.nbytes:
            self.info.fallbacks.append(f"{(self.umem.nbytes - huge) / 2**20:g} of the UMEM's "
                                       f"{self.umem.nbytes / 2**20:g} MiB on 4 kB pages, a TLB miss a frame more "
                                       f"often: {pages.why_not_huge()}")
            log.info("netio: %s", self.info.fallbacks[-1])

    def _bind(self, ifname: str, queue: int, mode: str, zero_copy: bool, frame_size: int, frames: int,
              ring_size: int) -> tuple[int, int]:
        """One attempt (and its EBUSY retries); sets self._xsk, else returns (stage, errno)."""
        stage, err = ffi.new("int *"), ffi.new("int *")
        xdp_flags = lib.XDP_FLAGS_DRV_MODE if mode == "native" else lib.XDP_FLAGS_SKB_MODE
        bind_flags = lib.XDP_ZEROCOPY if zero_copy else lib.XDP_COPY
        deadline = time.monotonic() + REBIND_WAIT_S
        tx_meta = self.tx_timestamps and self._tx_metadata_refusal(ifname, zero_copy) is None
        while True:
            xsk = lib.nx_open(ifname.encode(), queue, self._umem_c, frame_size, frames, ring_size, xdp_flags,
                              bind_flags, self._meta.map_fd if self._meta else -1,
                              lib.NX_TX_META_LEN if tx_meta else 0, TX_LOG if self.tx_timestamps else 0, stage, err)
            if xsk != ffi.NULL:
                self._xsk, self._tx_meta = xsk, tx_meta
                return 0, 0
            # EBUSY with no program attached (but ours) is a socket closed a moment ago whose queue
            # binding the kernel has not freed yet; anything else will not go away by waiting.
            attached = iface.xdp_program(ifname)
            if err[0] != errno.EBUSY or time.monotonic() > deadline or \
                    (attached and not (self._meta and attached.prog_id == self._meta.prog_id)):
                return stage[0], err[0]
            time.sleep(0.005)

    def _reason(self, ifname: str, err: int, zero_copy: bool, mode: str) -> str:
        detail = ffi.string(lib.nx_last_log()).decode(errors="replace").removeprefix("libxdp: ")
        if err == errno.EOPNOTSUPP and zero_copy:
            return "the driver has no zero-copy support"
        if err == errno.EOPNOTSUPP and mode == "native":
            return "the driver has no native XDP support"
        if err == errno.EBUSY:
            attached = iface.xdp_program(ifname)
            ours = self._meta is not None and attached is not None and attached.prog_id == self._meta.prog_id
            if attached and not _owners.get(ifname) and not ours:
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
            teardown.note_path("xdp", ifname).write_text(json.dumps({"pid": os.getpid(), "prog_id": self._prog_id}))

    # -- the burst API ----------------------------------------------------------------------
    def rx_burst(self, max_frames: int = 64) -> Burst:
        if self._xsk == ffi.NULL:
            raise PortError(f"the xdp port on {self.info.iface} is closed")
        slot = self._free_slots.pop() if self._free_slots else self._new_slot(max_frames)
        if slot.size < max_frames:
            slot = self._new_slot(max_frames)
        if slot.meta is None:
            n = lib.nx_rx_burst(self._xsk, max_frames, *slot.c_args)
            source = TimestampSource.TSC
        else:
            n = lib.nx_rx_burst_meta(self._xsk, max_frames, *slot.c_args, *slot.meta_args)
            source = _SOURCES[slot.meta_args[1][0]]
        if n == 0:
            self._free_slots.append(slot)
            return self._empty
        slot.released = False
        return slot.burst(n, source)

    def _new_slot(self, max_frames: int) -> _Slot:
        return _Slot(self._slot_owner, self.umem, max(64, max_frames), meta=self._meta is not None)

    def rx_stamps(self, burst: Burst) -> RxStamps:
        """All the stamps of a burst this port received and has not released yet (rx_metadata ports)."""
        slot = burst.handle
        if type(slot) is not _Slot or slot.owner is not self._slot_owner or slot.released:
            raise PortError("rx_stamps() takes a burst this port received and has not released yet")
        if slot.meta is None:
            raise PortError(f"the xdp port on {self.info.iface} was opened without rx_metadata=True: "
                            "its frames carry only the TSC at poll time")
        meta = slot.meta[:len(burst)]
        return RxStamps(int(slot.meta_args[2][0]), meta["xdp_ns"].astype(np.int64),
                        meta["nic_ns"].astype(np.int64), meta["nic_rc"].copy())

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
                            f"{self.frame_size}-byte UMEM frame"
                            f"{' after its TX metadata' if self._tx_meta else ''}; nothing was sent")
        return taken

    def c_api(self) -> tuple[int, int]:
        """Addresses of this port's ``struct nx_xsk`` and of the ``struct nx_burst_api`` table
        (cffi_build/xdp_api.h), for a fused C loop in another native module."""
        return int(ffi.cast("uintptr_t", self._live())), int(ffi.cast("uintptr_t", lib.nx_api()))

    def tx_stamps(self, max_stamps: int = TX_LOG) -> TxStamps:
        """Completion stamps of frames sent since the last call, oldest first (tx_timestamps=True ports)."""
        if not self.tx_timestamps:
            raise PortError(f"the xdp port on {self.info.iface} was opened without tx_timestamps=True")
        out = np.zeros(max_stamps, TX_STAMP_DTYPE)
        lost = ffi.new("uint64_t *")
        n = lib.nx_tx_stamps(self._live(), ffi.from_buffer("struct nx_tx_stamp[]", out), max_stamps, lost)
        source = _SOURCES[int(out["source"][0])] if n else self._tx_source()
        return TxStamps(out["seq"][:n].copy(), out["ns"][:n].copy(), source, int(lost[0]))

    def _tx_source(self) -> TimestampSource:
        if not self._tx_meta:
            return TimestampSource.TSC
        return TimestampSource.NIC if self.info.zero_copy else TimestampSource.KERNEL_TAI

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

    def before_close(self, action: Callable[[], None]) -> None:
        """Run ``action`` when close() begins, while the socket still works: a C loop
        driving ``c_api()`` on another thread stops there."""
        self._before_close.append(action)

    def close(self) -> None:
        if self._xsk == ffi.NULL:
            return
        actions, self._before_close = self._before_close, []
        for action in actions:
            action()
        self.stats()  # keep the last counters readable after close
        if self._token is not None:
            teardown.unregister(self._token)
            self._token = None
        xsk, self._xsk = self._xsk, ffi.NULL
        lib.nx_close(xsk)
        if self._meta is not None:
            self._meta.release()
            self._meta = None
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
        teardown.note_path("xdp", ifname).unlink(missing_ok=True)

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
