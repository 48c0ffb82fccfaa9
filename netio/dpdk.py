"""The DPDK backend: one queue of one DPDK ethdev, frames in the mbufs of a mempool seen as numpy.

    port = DpdkPort("eth0")                               # net_af_packet on a kernel interface
    port = DpdkPort("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")   # any DPDK device spec
    port = DpdkPort("0000:01:00.0", dpdk_args="-l 2")     # a NIC bound to vfio-pci
    burst = port.rx_burst(64)        # frames lie in port.buffer (the mempool's memory), no copy
    ...; port.release(burst)         # the mbufs go back to the pool
    port.tx_burst(Burst.of([frame])) # copied into fresh mbufs; a received burst is sent without a copy
    queue, table = port.c_api()      # the same burst functions for a fused C loop (cffi_build/dpdk_api.h)

What ``iface`` may be:
  * a kernel interface name: opened through ``net_af_packet`` (qpairs = ``queues``), the
    vdev that works on every interface and needs no XDP program. It is a compatibility
    path, not a fast one: the kernel's packet socket copies each frame into its ring and
    the PMD copies it again into an mbuf, which is the socket backend's path plus EAL's
    memory and start-up. So ``backend="auto"`` (netio.port.AUTO_ORDER) leaves DPDK out
    and tries AF_XDP first; DPDK pays off on a NIC bound to vfio-pci, which takes the
    NIC away from the kernel - a decision auto must not make. For AF_XDP under DPDK,
    name the vdev yourself: ``net_af_xdp0,iface=eth0``.
  * a DPDK virtual device spec (``net_pcap0,...``, ``net_ring0``, ``net_null0``...), probed
    with rte_dev_probe;
  * a PCI address (``0000:01:00.0`` or ``01:00.0``): the device must be bound to a
    DPDK-capable driver (vfio-pci) and the first port opened in the process must ask
    for PCI, because EAL decides at start-up whether to scan the PCI bus.

EAL starts once per process, lazily, with the options of the first DpdkPort
(``dpdk_args``, ``memory_mb``, ``file_prefix``, ``cores``, ``hugepages``); it cannot be
restarted, so a later port asking for different EAL options gets a PortError. EAL
stops at interpreter exit (after every device is closed). The thread that opens the
first port becomes EAL's main lcore: poll from it, because other threads have no lcore
and so no mempool cache (every mbuf then comes from and goes back to the pool's shared
ring). Devices stay configured while any DpdkPort on them is open; ``queues`` > 1
configures RSS over that many receive queues, one DpdkPort per queue.

Receive stamps: the NIC's (``TimestampSource.NIC``, via RTE_ETH_RX_OFFLOAD_TIMESTAMP
and the mbuf timestamp dynfield) where the driver offers them (a net_pcap that offered
it would give the pcap record time: ``CAPTURE``), else one TSC reading per burst
(``TSC``; every virtual device of DPDK 22.11 here). Send stamps: ``enable_tx_timestamps``
and ``tx_timestamp`` (rte_eth_timesync_*), on NICs with IEEE 1588 support.

On SIGINT/SIGTERM only EAL's runtime files (/var/run/dpdk/<prefix>) are removed: DPDK
is not safe to call from a signal handler, and the kernel frees the rest with the process.
"""
from __future__ import annotations

import atexit
import collections
import errno
import itertools
import logging
import os
import re
import shlex
import shutil
from typing import Any

import numpy as np

from netio import iface as _iface, teardown
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

try:
    from netio._dpdk import ffi, lib
except ImportError as _e:
    raise ImportError(f"netio._dpdk is not built ({_e}); DPDK 22.11 needs `apt install libdpdk-dev dpdk` "
                      "and then `make native`") from _e

log = logging.getLogger("netio")
_rx, _release = lib.nd_rx_slot, lib.nd_release_slot

RUNTIME_DIR = "/var/run/dpdk"
XSTAT_NAME = 64                       # RTE_ETH_XSTATS_NAME_SIZE
_PCI = re.compile(r"^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_vdev_serial = itertools.count()


# -- EAL: once per process -----------------------------------------------------------------
class _Eal:
    """The EAL of this process: the arguments it was started with and the runtime files it owns."""

    args: list[str] | None = None
    prefix: str = ""
    pci: bool = False

    @classmethod
    def start(cls, args: list[str], prefix: str, pci: bool, allow: list[str]) -> None:
        """Start EAL with ``args`` (plus ``-a`` for each PCI address in ``allow``), or check
        that the running one was started with the same ``args``."""
        if cls.args is not None:
            if pci and not cls.pci:
                raise PortError(f"{allow[0]} is a PCI device but this process's EAL was started without the "
                                "PCI bus (--no-pci); open the PCI port first, or in its own process")
            if args != cls.args:
                raise PortError("DPDK's EAL is already running in this process with "
                                f"`{shlex.join(cls.args)}` and cannot be restarted; open every DPDK port "
                                f"of a process with the same EAL options (this one asked for `{shlex.join(args)}`), "
                                "or use a subprocess")
            return
        argv = [ffi.new("char[]", a.encode()) for a in ["netio", *args, *(f"-a{a}" for a in allow)]]
        err = lib.nd_eal_init(len(argv), ffi.new("char *[]", argv))
        if err:
            raise _eal_error(err, args, prefix)
        cls.args, cls.prefix, cls.pci = args, prefix, pci
        atexit.register(cls.stop)
        # On SIGINT/SIGTERM only the runtime files go: DPDK calls are not safe from a signal
        # handler, and the kernel releases the rest (sockets, memory) with the process.
        teardown.register(cls._remove_runtime_dir)

    @classmethod
    def _remove_runtime_dir(cls) -> None:
        # The files are ours alone (EAL took the prefix's lock) and nothing reads them later.
        shutil.rmtree(os.path.join(RUNTIME_DIR, cls.prefix), ignore_errors=True)

    @classmethod
    def stop(cls) -> None:
        for device in list(_devices.values()):
            device.close()
        lib.nd_eal_cleanup()
        cls._remove_runtime_dir()


def _log_tail(lines: int = 3) -> str:
    text = ffi.string(lib.nd_log()).decode(errors="replace")
    useful = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("EAL: Detected")]
    return " / ".join(useful[-lines:])


def _eal_error(err: int, args: list[str], prefix: str) -> PortError:
    said = _log_tail()
    where = f"(EAL said: {said})" if said else f"({os.strerror(err)})"
    if err == errno.EALREADY:
        return PortUnavailable("DPDK's EAL failed to start earlier in this process and cannot be started "
                               f"again {where}; open DPDK ports in a new process")
    if "Is another primary process running" in said or "Cannot create lock" in said:
        return PortUnavailable(f"DPDK file prefix {prefix!r} is in use by another DPDK process {where}; "
                               "pass another file_prefix or stop that process")
    if err == 0 or "Invalid" in said or "unrecognized" in said or "invalid" in said or err == errno.EINVAL:
        return PortError(f"DPDK's EAL rejected its arguments `{shlex.join(args)}` {where}; "
                         "fix dpdk_args (see `dpdk-testpmd --help` for EAL options)")
    if err == errno.ENOMEM or "memory" in said.lower():
        return PortUnavailable(f"DPDK's EAL could not get its memory {where}; lower memory_mb, or reserve "
                               "hugepages and pass hugepages=True")
    if err in (errno.EPERM, errno.EACCES):
        return PortUnavailable(f"DPDK's EAL was refused permission {where}; run as root")
    return PortUnavailable(f"DPDK's EAL failed to start {where}")


def _has(args: list[str], *flags: str) -> bool:
    return any(a in flags or a.split("=", 1)[0] in flags for a in args)


def _eal_args(dpdk_args: str, memory_mb: int, file_prefix: str | None, cores: str | None,
              hugepages: bool | None, pci: bool) -> tuple[list[str], str]:
    """EAL's arguments and file prefix: the caller's ``dpdk_args`` win over every default here."""
    extra = shlex.split(dpdk_args)
    given = next((a.split("=", 1)[1] if "=" in a else b for a, b in zip(extra, extra[1:] + [""])
                  if a.split("=", 1)[0] == "--file-prefix"), None)
    prefix = given or file_prefix or f"netio-{os.getpid()}"
    args = [] if given else ["--file-prefix", prefix]
    args += ["--no-telemetry", "--log-level", "lib.eal:warning"]
    if hugepages is None:
        hugepages = pci     # a NIC's DMA wants hugepages; virtual devices do not need them
    if not hugepages and not _has(extra, "-m", "--socket-mem", "--no-huge", "--in-memory"):
        args += ["--no-huge", "-m", str(memory_mb)]
    if not pci and not _has(extra, "-a", "--allow", "-b", "--block"):
        args.append("--no-pci")
    if cores is not None:
        args += ["-l", str(cores)]
    elif not _has(extra, "-l", "-c", "--lcores"):
        # EAL pins the thread that starts it to its main lcore's CPUs: keep the ones we have.
        cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        args.append(f"--lcores=0@({cpus})")
    return args + extra, prefix


# -- devices: one per ethdev, shared by the DpdkPorts of its queues ------------------------
class _Device:
    """A probed, configured, started ethdev with its mempool; closed when its last queue is."""

    def __init__(self, spec: str, name: str, queues: int, ring_size: int, mempool_size: int,
                 rx_timestamps: bool | str, promiscuous: bool):
        self.spec, self.name, self.queues, self.users = spec, name, queues, 0
        self.kernel_iface = spec.split(",iface=", 1)[1].split(",", 1)[0] if ",iface=" in spec else None
        self.options = (queues, ring_size, mempool_size, rx_timestamps, promiscuous)
        self.pool = ffi.NULL
        self.port_id: int | None = None
        lib.nd_log_clear()
        err = lib.nd_probe(spec.encode())
        if err and err != errno.EEXIST:   # EEXIST: EAL probed it at start-up (-a)
            said = _log_tail() or os.strerror(err)
            if "PACKET_FANOUT" in said:
                # net_af_packet names its fanout group pid ^ ifindex: another process's group can have it
                raise PortUnavailable(f"DPDK could not probe device `{spec}` ({said}); another process "
                                      "holds a packet fanout group with the id net_af_packet derives from "
                                      "this process's pid and the interface index; try again from another "
                                      "process")
            raise PortError(f"DPDK could not probe device `{spec}` ({said}); check the driver name and its "
                            "arguments")
        self.probed = True
        port = ffi.new("uint16_t *")
        if lib.nd_port_by_name(name.encode(), port):
            self._remove()
            raise PortUnavailable(f"DPDK has no port named {name} (from `{spec}`); is the device bound to a "
                                  "DPDK driver (vfio-pci) and allowed by the EAL options?")
        self.port_id = port[0]
        try:
            self._setup(queues, ring_size, mempool_size, rx_timestamps, promiscuous)
        except BaseException:
            self.close()
            raise

    def _setup(self, queues: int, ring_size: int, mempool_size: int, rx_timestamps: bool | str,
               promiscuous: bool) -> None:
        info = ffi.new("struct nd_dev_info *")
        lib.nd_dev_info(self.port_id, info)
        self.driver = ffi.string(info.driver).decode()
        if queues > info.max_rx_queues or queues > info.max_tx_queues:
            raise PortError(f"{self.name} ({self.driver}) has at most {min(info.max_rx_queues, info.max_tx_queues)} "
                            f"queue pairs; {queues} were asked for")
        has_ts = bool(info.rx_offload_capa & lib.RTE_ETH_RX_OFFLOAD_TIMESTAMP)
        if rx_timestamps is True and not has_ts:
            raise PortError(f"{self.name} ({self.driver}) cannot stamp received frames "
                            "(no RTE_ETH_RX_OFFLOAD_TIMESTAMP); pass rx_timestamps='auto' to use TSC stamps")
        self.ts_offset, self.ts_flag = -1, 0
        offloads = 0
        if has_ts and rx_timestamps:
            offset, flag = ffi.new("int *"), ffi.new("uint64_t *")
            err = lib.nd_rx_timestamp_field(offset, flag)
            if err:
                raise PortUnavailable(f"DPDK could not register the mbuf timestamp field ({os.strerror(err)})")
            self.ts_offset, self.ts_flag = offset[0], flag[0]
            offloads |= lib.RTE_ETH_RX_OFFLOAD_TIMESTAMP
        self.ts_source = (TimestampSource.TSC if self.ts_offset < 0 else
                          TimestampSource.CAPTURE if self.driver == "net_pcap" else TimestampSource.NIC)

        err = ffi.new("int *")
        pool_name = f"netio_mp{self.port_id}_{next(_vdev_serial)}"
        self.pool = lib.nd_pool_create(pool_name.encode(), mempool_size, info.socket_id, err)
        if self.pool == ffi.NULL:
            raise PortUnavailable(f"DPDK could not make a pool of {mempool_size} mbufs for {self.name} "
                                  f"({os.strerror(err[0])}); give EAL more memory (memory_mb, -m) or "
                                  f"lower mempool_size")
        lo, span = ffi.new("uintptr_t *"), ffi.new("uint64_t *")
        self.pool_chunks = lib.nd_pool_span(self.pool, lo, span)
        self.base, self.span = lo[0], span[0]
        # With --no-huge all EAL memory is one anonymous mapping, so the span is all mapped; with
        # hugepages a pool in several chunks may leave unmapped gaps in it, which no frame view covers.
        self.buffer = np.frombuffer(ffi.buffer(ffi.cast("char *", self.base), self.span), np.uint8)

        rss_hf = info.flow_type_rss_offloads & (lib.RTE_ETH_RSS_IP | lib.RTE_ETH_RSS_UDP | lib.RTE_ETH_RSS_TCP)
        stage = ffi.new("int *")
        e = lib.nd_port_setup(self.port_id, queues, queues, ring_size, ring_size, self.pool, offloads,
                              rss_hf if queues > 1 else 0, stage)
        if e:
            step = {1: "configure", 2: "set up its receive queues", 3: "set up its transmit queues",
                    4: "start"}[stage[0]]
            raise PortError(f"{self.name} ({self.driver}) refused to {step} with {queues} queue(s) of "
                            f"{ring_size} descriptors ({os.strerror(e)}; {_log_tail(2)})")
        self.rss = ("none" if queues == 1 else f"rss_hf=0x{rss_hf:x}" if rss_hf else
                    "spread by the driver (no RSS hash functions offered)")
        self.promiscuous = bool(promiscuous) and lib.nd_promiscuous(self.port_id, 1) == 0

    def _remove(self) -> None:
        if self.probed:
            lib.nd_remove(self.name.encode())
            self.probed = False

    def close(self) -> None:
        _devices.pop(self.name, None)
        if self.port_id is not None:    # stop (if started) and close, also when set-up failed half-way
            lib.nd_port_close(self.port_id)
            self.port_id = None
        if self.pool != ffi.NULL:
            lib.nd_pool_free(self.pool)
            self.pool = ffi.NULL
        self._remove()


_devices: dict[str, _Device] = {}


def _resolve(iface_name: str, queues: int) -> tuple[str, str, bool]:
    """(device spec, ethdev name, is PCI) for what the caller called ``iface``."""
    if _PCI.match(iface_name):
        addr = iface_name if iface_name.count(":") == 2 else "0000:" + iface_name
        return addr.lower(), addr.lower(), True
    if iface_name.startswith(("net_", "eth_")):
        return iface_name, iface_name.split(",", 1)[0], False
    _iface.link_state(iface_name)      # PortError naming the interface when there is none
    for device in _devices.values():   # the other queues of a kernel interface already open
        if device.kernel_iface == iface_name:
            return device.spec, device.name, False
    name = f"net_af_packet_netio{next(_vdev_serial)}"
    return f"{name},iface={iface_name},qpairs={queues}", name, False


class _Slot:
    """The arrays (and mbuf pointers) a received burst lives in; reused once released.

    ``n`` is how many frames it lends out now (0 once released). The Burst objects over
    its arrays are made once per burst length and reused: C refills the arrays.
    """

    __slots__ = ("owner", "size", "held", "offsets", "lengths", "stamps", "c_offsets", "c_lengths", "c_stamps",
                 "c", "n", "bursts", "buffer", "ts_source")

    def __init__(self, owner: object, buffer: np.ndarray, size: int, ts_source: TimestampSource):
        self.owner, self.buffer, self.size, self.ts_source = owner, buffer, size, ts_source
        self.held = ffi.new("struct rte_mbuf *[]", size)
        self.offsets = np.empty(size, np.int64)
        self.lengths = np.empty(size, np.uint32)
        self.stamps = np.empty(size, np.int64)
        self.c_offsets = ffi.from_buffer("int64_t[]", self.offsets)
        self.c_lengths = ffi.from_buffer("uint32_t[]", self.lengths)
        self.c_stamps = ffi.from_buffer("int64_t[]", self.stamps)
        self.c = ffi.new("struct nd_slot *", {"held": self.held, "offsets": self.c_offsets,
                                              "lengths": self.c_lengths, "stamps": self.c_stamps, "size": size})
        self.n = 0
        self.bursts: dict[int, Burst] = {}

    def burst(self, n: int) -> Burst:
        burst = self.bursts[n] = Burst(self.buffer, self.offsets[:n], self.lengths[:n], self.stamps[:n],
                                       self.ts_source, self)
        return burst


def _c_burst(burst: Burst) -> tuple[tuple, bool]:
    """(buffer, its size, offsets, lengths) of ``burst`` as C arguments, and whether any had to be
    converted into a copy (then the arguments do not follow later changes to the burst)."""
    offsets, lengths, buf = burst.offsets, burst.lengths, burst.buffer
    copied = False
    if offsets.dtype != np.int64 or not offsets.flags.c_contiguous:
        offsets, copied = np.ascontiguousarray(offsets, np.int64), True
    if lengths.dtype != np.uint32 or not lengths.flags.c_contiguous:
        lengths, copied = np.ascontiguousarray(lengths, np.uint32), True
    if buf.dtype != np.uint8 or not buf.flags.c_contiguous:
        buf, copied = np.ascontiguousarray(buf).view(np.uint8).reshape(-1), True
    return (ffi.from_buffer("uint8_t[]", buf, require_writable=False), buf.nbytes,
            ffi.from_buffer("int64_t[]", offsets, require_writable=False),
            ffi.from_buffer("uint32_t[]", lengths, require_writable=False)), copied


_DROP_REASONS = (
    ("imissed", "rx missed by the device (receiver too slow to poll)"),
    ("ierrors", "rx bad frames (device errors)"),
    ("rx_nombuf", "rx no mbuf (pool empty: release bursts sooner or raise mempool_size)"),
    ("oerrors", "tx failed in the device"),
)


class DpdkPort(Port):
    """Queue ``queue`` of the DPDK device ``iface`` (see the module docstring for what it may be).

    Options: ``dpdk_args`` extra EAL arguments (a string, split like a shell line; they
    win over the defaults below, e.g. ``-l 2`` pins the polling thread to CPU 2);
    ``memory_mb`` of EAL memory without hugepages (-m, default 256); ``hugepages``
    (default: for PCI devices only; otherwise --no-huge); ``file_prefix`` (default
    netio-<pid>); ``cores`` an EAL core list (default: the CPUs the process may use);
    ``mempool_size`` mbufs in the device's pool; ``ring_size`` descriptors per queue;
    ``queues`` receive/transmit queue pairs of the device (RSS when > 1);
    ``rx_timestamps`` "auto" | True | False; ``promiscuous`` (default True).

    ``rx_burst(max_frames)`` polls the queue until it has ``max_frames`` or the queue is
    empty, so bursts may be larger than a PMD gives per poll (often 32). Release every
    received burst once; its Burst object is handed out again later.
    """

    def __init__(self, iface: str, queue: int = 0, *, dpdk_args: str = "", memory_mb: int = 256,
                 hugepages: bool | None = None, file_prefix: str | None = None, cores: str | None = None,
                 mempool_size: int = 8191, ring_size: int = 1024, queues: int = 1,
                 rx_timestamps: bool | str = "auto", promiscuous: bool = True, **unknown: Any):
        self._q = None                      # the C queue; None once closed
        self._device: _Device | None = None
        if unknown:
            raise PortError(f"the dpdk backend does not know option(s) {', '.join(sorted(unknown))}; it takes "
                            "dpdk_args, memory_mb, hugepages, file_prefix, cores, mempool_size, ring_size, "
                            "queues, rx_timestamps, promiscuous")
        for name, value, low in (("memory_mb", memory_mb, 16), ("mempool_size", mempool_size, 64),
                                 ("ring_size", ring_size, 8), ("queues", queues, 1)):
            if not isinstance(value, int) or value < low:
                raise PortError(f"{name} must be a whole number of at least {low}, not {value!r}")
        if rx_timestamps not in ("auto", True, False):
            raise PortError(f"rx_timestamps must be 'auto', True or False, not {rx_timestamps!r}")
        if not isinstance(queue, int) or not 0 <= queue < queues:
            raise PortError(f"queue {queue!r} does not exist: the device is opened with queues={queues} "
                            f"(numbered 0 to {queues - 1})")
        if not isinstance(dpdk_args, str):
            raise PortError(f"dpdk_args must be a string of EAL arguments, not {dpdk_args!r}")

        spec, name, pci = _resolve(iface, queues)
        args, prefix = _eal_args(dpdk_args, memory_mb, file_prefix, cores, hugepages, pci)
        _Eal.start(args, prefix, pci, [spec] if pci else [])
        options = (queues, ring_size, mempool_size, rx_timestamps, promiscuous)
        device = _devices.get(name)
        if device is None:
            device = _devices[name] = _Device(spec, name, queues, ring_size, mempool_size,
                                             rx_timestamps, promiscuous)
        elif device.options != options:
            raise PortError(f"{name} is already open in this process with queues, ring_size, mempool_size, "
                            f"rx_timestamps, promiscuous = {device.options}; open its other queues with the same")
        device.users += 1
        self._device = device
        self.buffer = device.buffer
        self._q = lib.nd_queue_new(device.port_id, queue, device.pool, device.base, device.span,
                                   device.ts_offset, device.ts_flag)
        self._counters = ffi.new("struct nd_counters *")
        self._dstats = ffi.new("struct nd_stats *")
        self._stats = PortStats()
        self._empty = Burst.empty(device.ts_source)
        # a deque: a list going between 0 and 1 items reallocates on every pop and append
        self._free_slots: collections.deque[_Slot] = collections.deque()
        self._slot_owner = object()
        self._tx_last: tuple[Burst, tuple] | None = None
        link = self.link()
        self.info = PortInfo(backend="dpdk", iface=iface, queue=queue, zero_copy=True if pci else False if device.driver == "net_af_packet" else None,
                             busy_poll=True, ts_source=device.ts_source,
                             details={"device": spec, "ethdev": name, "driver": device.driver,
                                      "port_id": device.port_id, "queues": queues, "rss": device.rss,
                                      "ring_size": ring_size, "mempool_size": mempool_size,
                                      "pool_chunks": device.pool_chunks,
                                      "promiscuous": device.promiscuous, "link": link,
                                      "eal_args": shlex.join(_Eal.args or [])})

    # -- the burst API ----------------------------------------------------------------------
    def rx_burst(self, max_frames: int = 64) -> Burst:
        # The per-burst Python here is what this backend costs over testpmd: keep it short.
        q = self._q
        if q is None:
            raise PortError(f"the dpdk port on {self.info.iface} is closed")
        slot = self._free_slots.pop() if self._free_slots else None
        if slot is None or slot.size < max_frames:
            slot = _Slot(self._slot_owner, self.buffer, max(64, max_frames), self._empty.ts_source)
        n = _rx(q, slot.c, max_frames)
        if n == 0:
            self._free_slots.append(slot)
            return self._empty
        slot.n = n
        burst = slot.bursts.get(n)
        return burst if burst is not None else slot.burst(n)

    def release(self, burst: Burst) -> None:
        slot = burst.handle
        if type(slot) is not _Slot or not slot.n:
            return   # an empty burst, one we did not lend, or one already handed back
        if slot.owner is not self._slot_owner:
            raise PortError("this burst was received on another port; release it there")
        _release(slot.c)
        slot.n = 0
        self._free_slots.append(slot)

    def tx_burst(self, burst: Burst) -> int:
        n = len(burst.lengths)
        if n == 0:
            return 0
        q = self._live()
        slot = burst.handle
        if type(slot) is _Slot and slot.owner is self._slot_owner and slot.n and burst.buffer is self.buffer:
            # A burst this port received (an echo): send its mbufs as they are, no copy.
            if burst.offsets.base is slot.offsets and burst.lengths.base is slot.lengths:
                offsets, lengths = slot.c_offsets, slot.c_lengths
            else:
                offsets, lengths = _c_burst(burst)[0][2:]
            taken = lib.nd_tx_held(q, slot.held, offsets, lengths, n)
        else:
            if self._tx_last is not None and self._tx_last[0] is burst:
                args = self._tx_last[1]        # the same burst again: its C view is still valid
            else:
                args, copied = _c_burst(burst)
                self._tx_last = None if copied else (burst, args)
            taken = lib.nd_tx_copy(q, *args, n)
        if taken < 0:
            i = -taken - 1
            raise PortError(f"frame {i} of the burst ({int(burst.lengths[i])} bytes at offset "
                            f"{int(burst.offsets[i])}) runs outside its buffer or does not fit one mbuf; "
                            "nothing was sent")
        return int(taken)

    def c_api(self) -> tuple[int, int]:
        """Addresses of this port's ``struct nd_queue`` and of the ``struct nd_burst_api`` table
        (cffi_build/dpdk_api.h), for a fused C loop in another native module."""
        return int(ffi.cast("uintptr_t", self._live())), int(ffi.cast("uintptr_t", lib.nd_api()))

    # -- what the device says ---------------------------------------------------------------
    def stats(self) -> PortStats:
        """This queue's frames and bytes; drops are the device's (its driver counts them for all
        queues together), each reason once, plus the frames this queue dropped itself."""
        if self._q is not None:
            lib.nd_counters(self._q, self._counters)
            c, s = self._counters, self._stats
            s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes = c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes
            # An empty pool on the way out means every mbuf is queued for sending: a full ring too.
            s.ring_full = c.tx_refused + c.tx_no_mbuf
            drops = {}
            port_id = self._device.port_id    # None once EAL stopped at exit under an open port
            if port_id is not None and lib.nd_stats(port_id, self._dstats) == 0:
                drops = {reason: int(getattr(self._dstats, field)) for field, reason in _DROP_REASONS}
            drops["rx frame larger than one mbuf"] = c.rx_multi_segment
            s.drops = {reason: n for reason, n in drops.items() if n}
        return self._stats

    def device_stats(self) -> dict[str, int]:
        """The device's rte_eth_stats (all queues): ipackets, opackets, ibytes, obytes, imissed, ..."""
        lib.nd_stats(self._port_id(), self._dstats)
        return {f: int(getattr(self._dstats, f)) for f in
                ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf")}

    def xstats(self) -> dict[str, int]:
        """The driver's extended statistics by name (rte_eth_xstats_get)."""
        port = self._port_id()
        total = lib.nd_xstats(port, ffi.NULL, ffi.NULL, 0)
        if total <= 0:
            return {}
        names = ffi.new("char[]", total * XSTAT_NAME)
        values = ffi.new("uint64_t[]", total)
        got = lib.nd_xstats(port, names, values, total)
        raw = ffi.buffer(names)[:]
        return {raw[i * XSTAT_NAME:(i + 1) * XSTAT_NAME].split(b"\0", 1)[0].decode(): int(values[i])
                for i in range(max(0, min(got, total)))}

    def link(self) -> dict[str, Any]:
        """Link status now: up, speed_mbps, full_duplex, autoneg."""
        out = ffi.new("struct nd_link *")
        if lib.nd_link(self._port_id(), out):
            return {"up": None}
        return {"up": bool(out.up), "speed_mbps": int(out.speed_mbps), "full_duplex": bool(out.full_duplex),
                "autoneg": bool(out.autoneg)}

    def nic_clock_ns(self) -> int:
        """The NIC's clock now (rte_eth_read_clock), for relating NIC stamps to TSC and PTP time."""
        ns = ffi.new("uint64_t *")
        err = lib.nd_read_clock(self._port_id(), ns)
        if err:
            raise PortError(f"{self.info.details['driver']} has no readable clock ({os.strerror(err)})")
        return int(ns[0])

    def enable_tx_timestamps(self) -> None:
        """Switch on IEEE 1588 stamping (rte_eth_timesync_enable) so tx_timestamp() can read stamps."""
        err = lib.nd_timesync_enable(self._port_id())
        if err:
            raise PortError(f"{self.info.details['driver']} cannot stamp sent frames "
                            f"(rte_eth_timesync_enable: {os.strerror(err)})")

    def tx_timestamp(self) -> int | None:
        """The NIC's stamp (ns) of the last PTP frame sent, or None if it has none (yet)."""
        ns = ffi.new("int64_t *")
        return int(ns[0]) if lib.nd_tx_timestamp(self._port_id(), ns) == 0 else None

    def in_use(self) -> int:
        """Mbufs of the pool not in it now: held by bursts, queued for sending, or in the RX ring."""
        self._live()
        return int(lib.nd_pool_in_use(self._device.pool))

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop using the queue; the last port of a device stops and closes it (and frees its pool,
        so bursts of it are invalid after this)."""
        if self._q is None:
            return
        self.stats()
        q, self._q = self._q, None
        lib.nd_queue_free(q)
        self._device.users -= 1
        if self._device.users == 0:
            self._device.close()

    def _port_id(self) -> int:
        self._live()
        return self._device.port_id

    def _live(self):
        if self._q is None:
            raise PortError(f"the dpdk port on {self.info.iface} is closed")
        return self._q

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
