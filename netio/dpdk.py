"""The DPDK backend: one queue of one DPDK ethdev, frames in the mbufs of a mempool seen as numpy.

    port = DpdkPort("eth0")                               # net_af_packet on a kernel interface
    port = DpdkPort("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap")   # any DPDK device spec
    port = DpdkPort("0000:01:00.0", dpdk_args="-l 2")     # a NIC bound to vfio-pci
    burst = port.rx_burst(64)        # frames lie in port.buffer (the mempool's memory), no copy
    ...; port.release(burst)         # the mbufs go back to the pool
    port.tx_burst(Burst.of([frame])) # copied into fresh mbufs; a received burst is sent without a copy

What ``iface`` may be:
  * a kernel interface name: opened through ``net_af_packet`` (qpairs = ``queues``). That
    is the vdev that works on every interface without an XDP program; it is a
    compatibility path, not a fast one (the kernel still copies every frame), which is
    why ``backend="auto"`` never picks DPDK and prefers AF_XDP. For AF_XDP under DPDK
    name it yourself: ``net_af_xdp0,iface=eth0``.
  * a DPDK virtual device spec (``net_pcap0,...``, ``net_ring0``, ``net_null0``...), probed
    with rte_dev_probe;
  * a PCI address (``0000:01:00.0`` or ``01:00.0``): the device must be bound to a
    DPDK-capable driver (vfio-pci) and the first port opened in the process must ask
    for PCI, because EAL decides at start-up whether to scan the PCI bus.

EAL starts once per process, lazily, with the options of the first DpdkPort
(``dpdk_args``, ``memory_mb``, ``file_prefix``, ``cores``, ``hugepages``); it cannot be
restarted, so a later port asking for different EAL options gets a PortError. EAL
stops at interpreter exit (after every device is closed). Devices stay configured
while any DpdkPort on them is open; ``queues`` > 1 configures RSS over that many
receive queues, one DpdkPort per queue.

Receive stamps: the NIC's (``TimestampSource.NIC``, via RTE_ETH_RX_OFFLOAD_TIMESTAMP
and the mbuf timestamp dynfield) where the driver offers them, the pcap record time
(``CAPTURE``) for net_pcap, else one TSC reading per burst (``TSC``).
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import re
import shlex
import shutil
from typing import Any

import numpy as np

from netio import iface as _iface
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

try:
    from netio._dpdk import ffi, lib
except ImportError as _e:
    raise ImportError(f"netio._dpdk is not built ({_e}); DPDK 22.11 needs `apt install libdpdk-dev dpdk` "
                      "and then `make native`") from _e

log = logging.getLogger("netio")

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
    def start(cls, args: list[str], prefix: str, pci: bool) -> None:
        if cls.args is not None:
            if args != cls.args:
                raise PortError("DPDK's EAL is already running in this process with "
                                f"`{shlex.join(cls.args)}` and cannot be restarted; open every DPDK port "
                                f"of a process with the same EAL options (this one asked for `{shlex.join(args)}`), "
                                "or use a subprocess")
            return
        argv = [ffi.new("char[]", a.encode()) for a in ["netio", *args]]
        err = lib.nd_eal_init(len(argv), ffi.new("char *[]", argv))
        if err:
            raise _eal_error(err, args, prefix)
        cls.args, cls.prefix, cls.pci = args, prefix, pci
        atexit.register(cls.stop)

    @classmethod
    def stop(cls) -> None:
        for device in list(_devices.values()):
            device.close()
        lib.nd_eal_cleanup()
        # The runtime files are ours alone (EAL took the prefix's lock) and nothing reads them later.
        shutil.rmtree(os.path.join(RUNTIME_DIR, cls.prefix), ignore_errors=True)


def _log_tail(lines: int = 3) -> str:
    text = ffi.string(lib.nd_log()).decode(errors="replace")
    useful = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("EAL: Detected")]
    return " / ".join(useful[-lines:])


def _eal_error(err: int, args: list[str], prefix: str) -> PortError:
    said = _log_tail()
    where = f"(EAL said: {said})" if said else f"({os.strerror(err)})"
    if "Is another primary process running" in said or "Cannot create lock" in said:
        return PortUnavailable(f"DPDK file prefix {prefix!r} is in use by another DPDK process {where}; "
                               "pass another file_prefix or stop that process")
    if err == 0 or "Invalid" in said or "unrecognized" in said or "invalid" in said or err == 22:
        return PortError(f"DPDK's EAL rejected its arguments `{shlex.join(args)}` {where}; "
                         "fix dpdk_args (see `dpdk-testpmd --help` for EAL options)")
    if err == 12 or "memory" in said.lower():
        return PortUnavailable(f"DPDK's EAL could not get its memory {where}; lower memory_mb, or reserve "
                               "hugepages and pass hugepages=True")
    if err in (1, 13):
        return PortUnavailable(f"DPDK's EAL was refused permission {where}; run as root")
    return PortUnavailable(f"DPDK's EAL failed to start {where}")


def _eal_args(dpdk_args: str, memory_mb: int, file_prefix: str, cores: str | None, hugepages: bool,
              pci: bool) -> list[str]:
    extra = shlex.split(dpdk_args)
    args = ["--file-prefix", file_prefix, "--no-telemetry", "--log-level", "lib.eal:warning"]
    if not hugepages:
        args += ["--no-huge", "-m", str(memory_mb)]
    if not pci and not any(a in ("-a", "--allow", "-b", "--block") or a.startswith("--allow=") for a in extra):
        args.append("--no-pci")
    if cores is not None:
        args += ["-l", str(cores)]
    elif not any(a in ("-l", "-c", "--lcores") or a.startswith("--lcores=") for a in extra):
        # EAL pins the thread that starts it to its main lcore's CPUs: keep the ones we have.
        cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        args.append(f"--lcores=0@({cpus})")
    return args + extra


# -- devices: one per ethdev, shared by the DpdkPorts of its queues ------------------------
class _Device:
    """A probed, configured, started ethdev with its mempool; closed when its last queue is."""

    def __init__(self, spec: str, name: str, probe: bool, queues: int, ring_size: int, mempool_size: int,
                 rx_timestamps: bool | str, promiscuous: bool):
        self.spec, self.name, self.queues, self.users = spec, name, queues, 0
        self.kernel_iface = spec.split(",iface=", 1)[1].split(",", 1)[0] if ",iface=" in spec else None
        self.options = (queues, ring_size, mempool_size, rx_timestamps, promiscuous)
        self.pool = ffi.NULL
        self.port_id: int | None = None
        if probe:
            lib.nd_log_clear()
            err = lib.nd_probe(spec.encode())
            if err and err != 17:   # EEXIST: EAL probed it at start-up (-a)
                raise PortError(f"DPDK could not probe device `{spec}` ({_log_tail() or os.strerror(err)}); "
                                "check the driver name and its arguments")
        self.probed = probe
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
        lib.nd_pool_span(self.pool, lo, span)
        self.base, self.span = lo[0], span[0]
        # With --no-huge all EAL memory is one anonymous mapping, so the pool is one range.
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
        self.started = True
        self.rss = ("none" if queues == 1 else f"rss_hf=0x{rss_hf:x}" if rss_hf else
                    "spread by the driver (no RSS hash functions offered)")
        self.promiscuous = bool(promiscuous) and lib.nd_promiscuous(self.port_id, 1) == 0

    def _remove(self) -> None:
        if self.probed:
            lib.nd_remove(self.name.encode())
            self.probed = False

    def close(self) -> None:
        _devices.pop(self.name, None)
        if getattr(self, "started", False):
            lib.nd_port_close(self.port_id)
            self.started = False
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
    """The arrays (and mbuf pointers) a received burst lives in; reused once released."""

    __slots__ = ("owner", "size", "held", "offsets", "lengths", "stamps", "c_args", "released", "bursts", "buffer",
                 "ts_source")

    def __init__(self, owner: object, buffer: np.ndarray, size: int, ts_source: TimestampSource):
        self.owner, self.buffer, self.size, self.ts_source = owner, buffer, size, ts_source
        self.held = ffi.new("struct rte_mbuf *[]", size)
        self.offsets = np.empty(size, np.int64)
        self.lengths = np.empty(size, np.uint32)
        self.stamps = np.empty(size, np.int64)
        self.c_args = (self.held, ffi.from_buffer("int64_t[]", self.offsets),
                       ffi.from_buffer("uint32_t[]", self.lengths), ffi.from_buffer("int64_t[]", self.stamps))
        self.released = True
        self.bursts: dict[int, Burst] = {}

    def burst(self, n: int) -> Burst:
        burst = self.bursts.get(n)
        if burst is None:
            burst = self.bursts[n] = Burst(self.buffer, self.offsets[:n], self.lengths[:n], self.stamps[:n],
                                           self.ts_source, self)
        return burst


def _c_burst(burst: Burst) -> tuple:
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


_DROP_REASONS = (
    ("imissed", "rx missed by the device (receiver too slow to poll)"),
    ("ierrors", "rx bad frames (device errors)"),
    ("rx_nombuf", "rx no mbuf (pool empty: release bursts sooner or raise mempool_size)"),
    ("oerrors", "tx failed in the device"),
)


class DpdkPort(Port):
    """Queue ``queue`` of the DPDK device ``iface`` (see the module docstring for what it may be).

    Options: ``dpdk_args`` extra EAL arguments (a string, split like a shell line);
    ``memory_mb`` of EAL memory (-m, default 256) and ``hugepages`` (default False:
    --no-huge); ``file_prefix`` (default netio-<pid>); ``cores`` an EAL core list;
    ``mempool_size`` mbufs in the device's pool; ``ring_size`` descriptors per queue;
    ``queues`` receive/transmit queue pairs of the device (RSS when > 1);
    ``rx_timestamps`` "auto" | True | False; ``promiscuous`` (default True).

    Release every received burst once; its Burst object is handed out again later.
    """

    def __init__(self, iface: str, queue: int = 0, *, dpdk_args: str = "", memory_mb: int = 256,
                 hugepages: bool = False, file_prefix: str | None = None, cores: str | None = None,
                 mempool_size: int = 8191, ring_size: int = 1024, queues: int = 1,
                 rx_timestamps: bool | str = "auto", promiscuous: bool = True, **unknown: Any):
        self._q = ffi.NULL
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
        prefix = file_prefix or f"netio-{os.getpid()}"
        _Eal.start(_eal_args(dpdk_args, memory_mb, prefix, cores, hugepages, pci) + (["-a", spec] if pci else []),
                   prefix, pci)
        if pci and not _Eal.pci:
            raise PortError(f"{iface} is a PCI device but this process's EAL was started without the PCI bus "
                            "(--no-pci); open the PCI port first, or in its own process")
        options = (queues, ring_size, mempool_size, rx_timestamps, promiscuous)
        device = _devices.get(name)
        if device is None:
            device = _devices[name] = _Device(spec, name, not pci, queues, ring_size, mempool_size,
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
        self._free_slots: list[_Slot] = []
        self._slot_owner = object()
        link = self.link()
        self.info = PortInfo(backend="dpdk", iface=iface, queue=queue, zero_copy=True if pci else False if device.driver == "net_af_packet" else None,
                             busy_poll=True, ts_source=device.ts_source,
                             details={"device": spec, "ethdev": name, "driver": device.driver,
                                      "port_id": device.port_id, "queues": queues, "rss": device.rss,
                                      "ring_size": ring_size, "mempool_size": mempool_size,
                                      "promiscuous": device.promiscuous, "link": link,
                                      "eal_args": shlex.join(_Eal.args or [])})

    # -- the burst API ----------------------------------------------------------------------
    def rx_burst(self, max_frames: int = 64) -> Burst:
        q = self._live()
        slot = self._free_slots.pop() if self._free_slots else None
        if slot is None or slot.size < max_frames:
            slot = _Slot(self._slot_owner, self.buffer, max(64, max_frames), self._empty.ts_source)
        n = lib.nd_rx_burst(q, max_frames, *slot.c_args)
        if n == 0:
            self._free_slots.append(slot)
            return self._empty
        slot.released = False
        return slot.burst(n)

    def release(self, burst: Burst) -> None:
        slot = burst.handle
        if type(slot) is not _Slot or slot.released:
            return
        if slot.owner is not self._slot_owner:
            raise PortError("this burst was received on another port; release it there")
        lib.nd_release(slot.held, len(burst.lengths))
        slot.released = True
        self._free_slots.append(slot)

    def tx_burst(self, burst: Burst) -> int:
        n = len(burst.lengths)
        if n == 0:
            return 0
        q = self._live()
        slot = burst.handle
        if type(slot) is _Slot and slot.owner is self._slot_owner and not slot.released \
                and burst.buffer is self.buffer:
            # A burst this port received (an echo): send its mbufs as they are, no copy.
            taken = lib.nd_tx_held(q, slot.held, *_c_burst(burst)[2:], n)
        else:
            taken = lib.nd_tx_copy(q, *_c_burst(burst), n)
        if taken < 0:
            i = -taken - 1
            raise PortError(f"frame {i} of the burst ({int(burst.lengths[i])} bytes at offset "
                            f"{int(burst.offsets[i])}) runs outside its buffer or does not fit one mbuf; "
                            "nothing was sent")
        return int(taken)

    # -- what the device says ---------------------------------------------------------------
    def stats(self) -> PortStats:
        if self._q != ffi.NULL:
            lib.nd_counters(self._q, self._counters)
            c, s = self._counters, self._stats
            s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes = c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes
            # An empty pool on the way out means every mbuf is queued for sending: a full ring too.
            s.ring_full = c.tx_refused + c.tx_no_mbuf
            drops = {}
            if lib.nd_stats(self._device.port_id, self._dstats) == 0:
                drops = {reason: int(getattr(self._dstats, field)) for field, reason in _DROP_REASONS}
            drops["rx frame larger than one mbuf"] = c.rx_multi_segment
            s.drops = {reason: n for reason, n in drops.items() if n}
        return self._stats

    def device_stats(self) -> dict[str, int]:
        """The device's rte_eth_stats (all queues): ipackets, opackets, ibytes, obytes, imissed, ..."""
        self._live()
        lib.nd_stats(self._device.port_id, self._dstats)
        return {f: int(getattr(self._dstats, f)) for f in
                ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf")}

    def xstats(self) -> dict[str, int]:
        """The driver's extended statistics by name (rte_eth_xstats_get)."""
        port = self._device.port_id if self._live() else 0
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
        if lib.nd_link(self._device.port_id, out):
            return {"up": None}
        return {"up": bool(out.up), "speed_mbps": int(out.speed_mbps), "full_duplex": bool(out.full_duplex),
                "autoneg": bool(out.autoneg)}

    def nic_clock_ns(self) -> int:
        """The NIC's clock now (rte_eth_read_clock), for relating NIC stamps to TSC and PTP time."""
        ns = ffi.new("uint64_t *")
        err = lib.nd_read_clock(self._device.port_id, ns) if self._live() else 0
        if err:
            raise PortError(f"{self.info.details['driver']} has no readable clock ({os.strerror(err)})")
        return int(ns[0])

    def enable_tx_timestamps(self) -> None:
        """Switch on IEEE 1588 stamping (rte_eth_timesync_enable) so tx_timestamp() can read stamps."""
        err = lib.nd_timesync_enable(self._device.port_id) if self._live() else 0
        if err:
            raise PortError(f"{self.info.details['driver']} cannot stamp sent frames "
                            f"(rte_eth_timesync_enable: {os.strerror(err)})")

    def tx_timestamp(self) -> int | None:
        """The NIC's stamp (ns) of the last PTP frame sent, or None if it has none (yet)."""
        ns = ffi.new("int64_t *")
        return int(ns[0]) if lib.nd_tx_timestamp(self._device.port_id, ns) == 0 else None

    def in_use(self) -> int:
        """Mbufs of the pool not in it now: held by bursts, queued for sending, or in the RX ring."""
        return int(lib.nd_pool_in_use(self._device.pool)) if self._live() else 0

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop using the queue; the last port of a device stops and closes it (and frees its pool,
        so bursts of it are invalid after this)."""
        if self._q == ffi.NULL:
            return
        self.stats()
        q, self._q = self._q, ffi.NULL
        lib.nd_queue_free(q)
        self._device.users -= 1
        if self._device.users == 0:
            self._device.close()

    def _live(self):
        if self._q == ffi.NULL:
            raise PortError(f"the dpdk port on {self.info.iface} is closed")
        return self._q

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
