"""The one burst API every backend speaks: open_port(), Port, Burst, PortInfo, PortStats.

A program written against this module runs unchanged on AF_XDP, DPDK, sockets, a
pcap file or the FPGA model. Frames are never copied into Python objects on the
way in: a Burst is a set of (offset, length) pairs into the numpy array the frames
already lie in (UMEM, a TPACKET ring, the mbuf pool, or a private array), so C
code can walk the whole burst in one call.
"""
from __future__ import annotations

import abc
import dataclasses
import enum
import importlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

log = logging.getLogger("netio")


class TimestampSource(enum.Enum):
    """Which clock stamped a frame; values from different sources are never mixed."""

    NONE = "none"            # the backend gives no timestamp: the array holds zeros
    NIC = "nic-hw"           # the NIC's PTP hardware clock, ns
    KERNEL = "kernel-sw"     # the kernel's software stamp (CLOCK_REALTIME), ns
    KERNEL_TAI = "kernel-tai"  # the kernel's CLOCK_TAI (AF_XDP: the XDP program on RX, completion on TX), ns
    TSC = "tsc"              # a TSC reading taken at poll time, in cycles
    CAPTURE = "capture"      # the time recorded in a pcap file, ns since the epoch
    SIMULATION = "sim"       # simulated time of the FPGA model, ns


class PortError(RuntimeError):
    """A port cannot do what was asked; the message says what is missing and what to do."""


class PortUnavailable(PortError):
    """This backend cannot serve this interface here; ``backend="auto"`` tries the next."""


@dataclasses.dataclass(frozen=True, slots=True)
class Burst:
    """Frames that lie in ``buffer`` at ``offsets`` for ``lengths`` bytes.

    Received bursts belong to the port until handed back with ``Port.release``;
    until then their views stay valid. ``Burst.of`` builds one for sending.
    """

    buffer: np.ndarray                      # uint8: where the frames lie
    offsets: np.ndarray                     # int64 [n]: start of each frame in buffer
    lengths: np.ndarray                     # uint32 [n]: bytes of each frame
    timestamps: np.ndarray                  # int64 [n]: per-frame stamp in ts_source's unit
    ts_source: TimestampSource = TimestampSource.NONE
    handle: Any = None                      # the backend's own record, for release()

    def __len__(self) -> int:
        return len(self.lengths)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a uint8 view where it lies (no copy)."""
        start = int(self.offsets[i])
        return self.buffer[start:start + int(self.lengths[i])]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.frame(i) for i in range(len(self)))

    def to_bytes(self) -> list[bytes]:
        """Copies of every frame, for tests and tools (not for hot paths)."""
        return [bytes(f) for f in self]

    @classmethod
    def of(cls, frames: Iterable[bytes | bytearray | memoryview | np.ndarray]) -> Burst:
        """A burst over one private buffer holding copies of ``frames``, e.g. to send."""
        chunks = [np.frombuffer(bytes(f), np.uint8) for f in frames]
        lengths = np.array([len(c) for c in chunks], np.uint32)
        offsets = np.zeros(len(chunks), np.int64)
        if len(chunks) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        buffer = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        return cls(buffer, offsets, lengths, np.zeros(len(chunks), np.int64))

    @classmethod
    def gather(cls, buffer: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> Burst:
        """The ranges ``buffer[offsets[i]:offsets[i] + lengths[i]]`` copied back to back into a
        burst of their own (e.g. payloads out of frames a port only lends), in one numpy gather."""
        lengths = np.asarray(lengths, np.int64)
        starts = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        index = np.repeat(np.asarray(offsets, np.int64) - starts, lengths) + np.arange(int(lengths.sum()))
        return cls(np.asarray(buffer)[index], starts, lengths.astype(np.uint32), np.zeros(len(lengths), np.int64))

    @classmethod
    def empty(cls, ts_source: TimestampSource = TimestampSource.NONE) -> Burst:
        return cls(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.uint32),
                   np.zeros(0, np.int64), ts_source)


@dataclasses.dataclass(slots=True)
class PortInfo:
    """What a port is, and why it is that and not something faster."""

    backend: str
    iface: str
    queue: int = 0
    zero_copy: bool | None = None           # None where the question does not apply
    xdp_mode: str | None = None             # "native" | "generic" | None
    busy_poll: bool = False
    ts_source: TimestampSource = TimestampSource.NONE
    fallbacks: list[str] = dataclasses.field(default_factory=list)  # one sentence per step down
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """One line for logs and status screens."""
        parts = [f"{self.backend} on {self.iface} queue {self.queue}"]
        if self.zero_copy is not None:
            parts.append("zero-copy" if self.zero_copy else "copy mode")
        if self.xdp_mode:
            parts.append(f"{self.xdp_mode} XDP")
        parts.append("busy-poll" if self.busy_poll else "no busy-poll")
        parts.append(f"timestamps: {self.ts_source.value}")
        return ", ".join(parts)


@dataclasses.dataclass(slots=True)
class PortStats:
    """Counters since open. Every frame seen is either delivered or in ``drops``."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    ring_full: int = 0                      # tx frames refused because the TX ring was full
    wakeups: int = 0                        # syscalls made to kick the kernel (need_wakeup)
    fill_ring_empty: int = 0                # polls that found no buffers for the kernel to fill

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Port(abc.ABC):
    """A queue of one interface (or a file, or a model) that frames come in and go out of."""

    info: PortInfo

    @abc.abstractmethod
    def rx_burst(self, max_frames: int = 64) -> Burst:
        """Up to ``max_frames`` received frames, without waiting; an empty burst if none."""

    def release(self, burst: Burst) -> None:
        """Hand a received burst's frames back to the port (its views become invalid)."""

    @abc.abstractmethod
    def tx_burst(self, burst: Burst) -> int:
        """Queue the frames of ``burst`` for sending; returns how many were taken, in order."""

    @abc.abstractmethod
    def stats(self) -> PortStats:
        """Counters since open."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything the port holds (rings, XDP programs, sockets); idempotent."""

    def fileno(self) -> int | None:
        """A descriptor to poll()/select() on for readability, where the backend has one."""
        return None

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.describe()}>"


# backend name -> "module:class"; each class is constructed as cls(iface, queue=..., **options)
# and raises PortUnavailable when it cannot serve the interface here.
BACKENDS: dict[str, str] = {
    "xdp": "netio.xdp:XdpPort",
    "dpdk": "netio.dpdk:DpdkPort",
    "socket": "netio.packet_socket:PacketSocketPort",
    "udp": "netio.udp_socket:UdpSocketPort",
    "pcap": "netio.pcap:PcapPort",
    "fpga-sim": "netio.fpga_sim:FpgaSimPort",
}

# What backend="auto" tries on a network interface, fastest first.
AUTO_ORDER: tuple[str, ...] = ("xdp", "socket")


def _backend_class(name: str) -> type[Port]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise PortError(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PortUnavailable(f"the {name} backend cannot be loaded ({e}); "
                              "run `make native` to build the native modules") from e
    return getattr(module, class_name)


def open_port(iface: str, backend: str = "auto", queue: int = 0, **options: Any) -> Port:
    """Open ``iface`` (an interface name, or a file for ``pcap``) on ``backend``.

    ``backend="auto"`` tries AUTO_ORDER in turn and returns the first that opens;
    every step down is recorded in ``port.info.fallbacks`` and logged. Options a
    backend does not know are rejected by that backend with a clear error.
    """
    if backend != "auto":
        return _backend_class(backend)(iface, queue=queue, **options)
    fallbacks: list[str] = []
    for name in AUTO_ORDER:
        try:
            port = _backend_class(name)(iface, queue=queue, **options)
        except PortUnavailable as e:
            fallbacks.append(f"{name}: {e}")
            log.warning("netio: %s unavailable on %s, trying the next backend: %s", name, iface, e)
            continue
        port.info.fallbacks[:0] = fallbacks
        log.info("netio: auto chose %s", port.info.describe())
        return port
    raise PortError(f"no backend can open {iface}: " + "; ".join(fallbacks))
