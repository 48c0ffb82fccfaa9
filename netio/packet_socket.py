"""The AF_PACKET fallback port: a TPACKET_V3 (or V2) memory-mapped receive ring, sendmmsg() to send.

Used where AF_XDP cannot run (no driver support, old kernel, no BPF rights). Frames
are read in place: a received Burst's ``buffer`` is the mmap'd ring as a numpy
array and its offsets point at the frame data; a ring block (a frame slot with V2)
goes back to the kernel when every burst reaching into it has been released
(``release`` hands back the blocks of that burst and of every earlier one, so
release in order).

The kernel stamps each frame in software (CLOCK_REALTIME, ``TimestampSource.KERNEL``)
and strips 802.1Q tags into the ring's metadata; the port writes the tag back in
front of the EtherType so frames arrive as they were on the wire. Frames that local
stacks send over veth may carry unfinished checksums (the kernel leaves them to a
NIC that is not there): switch off TX checksum offload on the sending side.
A TPACKET_V3 block becomes visible when it is full or ``retire_ms`` after its first
frame (rounded up to the kernel's timer tick), so sparse traffic waits up to that
long: about a millisecond on a 250 Hz kernel. ``ring="v2"`` trades V3's packing for
per-frame visibility (fixed ``frame_size`` slots, frames longer than a slot dropped
and counted) and answers in tens of microseconds; AF_XDP has neither cost.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import socket
import struct

import numpy as np

from netio._packet import ffi, lib
from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 1, 1
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION = 5, 6, 10
PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING = 20, 23
TPACKET_VERSIONS = {"v2": 1, "v3": 2}
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_RX_SOFTWARE, SOF_TIMESTAMPING_SOFTWARE = 1 << 3, 1 << 4
SIOCGIFFLAGS, IFF_UP = 0x8913, 0x1
TRANSIENT_TX_ERRORS = (errno.EAGAIN, errno.ENOBUFS)
DROP_RING_FULL = "rx ring full (receiver too slow to release)"
DROP_TOO_LONG = "rx frame longer than the ring's room for one"


def _ptr(ctype: str, array: np.ndarray):
    return ffi.from_buffer(ctype, array, require_writable=False)


class PacketSocketPort(Port):
    """All traffic of ``iface`` through one AF_PACKET socket (queue 0 stands for the whole interface).

    ``block_size`` x ``block_nr`` is the ring; ``retire_ms`` bounds how long a partly
    filled V3 block waits; ``ring="v2"`` uses per-frame slots of ``frame_size`` instead;
    ``qdisc_bypass`` sends straight to the driver queue; ``promiscuous`` also takes
    frames for other MACs.
    """

    def __init__(self, iface: str, queue: int = 0, *, ring: str = "v3", block_size: int = 1 << 18,
                 block_nr: int = 16, frame_size: int = 2048, retire_ms: int = 1, qdisc_bypass: bool = True,
                 promiscuous: bool = False):
        if queue != 0:
            raise PortUnavailable(f"the socket backend reads every queue of {iface} together; "
                                  f"it cannot serve queue {queue} alone")
        if ring not in TPACKET_VERSIONS:
            raise PortError(f"ring is 'v3' or 'v2', not {ring!r}")
        if block_size % mmap.PAGESIZE or block_size % frame_size:
            raise PortError(f"block_size {block_size} must be a multiple of the page size "
                            f"({mmap.PAGESIZE}) and of frame_size ({frame_size})")
        self.iface = iface
        self._sock: socket.socket | None = None
        self._mm: mmap.mmap | None = None
        self._ring_base = None
        self._too_long = 0
        try:
            # protocol 0 receives nothing until bind(), so no other interface's frames reach the ring
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PortUnavailable("opening an AF_PACKET socket needs root (CAP_NET_RAW); run as root, "
                                  "or use the udp backend for unprivileged UDP") from None
        try:
            self._setup(ring, block_size, block_nr, frame_size, retire_ms, qdisc_bypass, promiscuous)
        except BaseException:
            self.close()
            raise

    def _setup(self, ring: str, block_size: int, block_nr: int, frame_size: int, retire_ms: int,
               qdisc_bypass: bool, promiscuous: bool) -> None:
        sock, iface = self._sock, self.iface
        try:
            ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise PortError(f"there is no network interface called {iface!r} here") from None
        flags, = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16s16x", iface.encode())), 16)
        if not flags & IFF_UP:
            raise PortError(f"interface {iface} is down; bring it up with `ip link set {iface} up`")
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_VERSIONS[ring])
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)   # our own sends are not input
        except OSError:
            raise PortUnavailable("this kernel lacks PACKET_IGNORE_OUTGOING (Linux 4.20+), so the "
                                  "socket port would read back its own frames") from None
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING,
                        SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE)
        frame_nr = block_size // frame_size * block_nr
        req = struct.pack("4I", block_size, block_nr, frame_size, frame_nr)
        if ring == "v3":
            req += struct.pack("3I", retire_ms, 0, 0)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._mm = mmap.mmap(sock.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise PortUnavailable(f"cannot set up a {block_nr} x {block_size} byte TPACKET_{ring.upper()} "
                                  f"ring on {iface}: {e.strerror}") from None
        bypass = False
        if qdisc_bypass:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
                bypass = True
            except OSError:
                pass  # older kernels: frames go through the qdisc, which only costs time
        if promiscuous:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
        sock.bind((iface, ETH_P_ALL))
        sock.setblocking(False)

        self._ring_array = np.frombuffer(self._mm, np.uint8)
        self._ring_base = ffi.from_buffer(self._mm)
        self._ring = ffi.new("struct pkt_ring *")
        self._ring.base = ffi.cast("uint8_t *", self._ring_base)
        self._ring.block_size, self._ring.block_nr = block_size, block_nr
        self._ring.frame_size, self._ring.frame_nr = frame_size, frame_nr
        # what the ring hands out and takes back: V3 blocks or V2 frames
        self._rx, self._give_back = ((lib.pkt_ring_rx, lib.pkt_ring_release) if ring == "v3"
                                     else (lib.pkt_ring2_rx, lib.pkt_ring2_release))
        self._units = block_nr if ring == "v3" else frame_nr
        self._err = ffi.new("int *")
        self._stats = PortStats()
        self._kernel_drops = 0
        self.info = PortInfo(backend="socket", iface=iface, queue=0, zero_copy=False,
                             ts_source=TimestampSource.KERNEL,
                             details={"rx": f"TPACKET_{ring.upper()} ring", "tx": "sendmmsg",
                                      "block_size": block_size, "block_nr": block_nr,
                                      "frame_size": frame_size, "retire_ms": retire_ms if ring == "v3" else None,
                                      "qdisc_bypass": bypass, "promiscuous": promiscuous})

    def rx_burst(self, max_frames: int = 64) -> Burst:
        if self._sock is None:
            raise PortError(f"the socket port on {self.iface} is closed")
        off = np.empty(max_frames, np.int64)
        lengths = np.empty(max_frames, np.uint32)
        ts = np.empty(max_frames, np.int64)
        n = self._rx(self._ring, max_frames, _ptr("int64_t[]", off), _ptr("uint32_t[]", lengths),
                     _ptr("int64_t[]", ts))
        if n:
            self._stats.rx_packets += n
            self._stats.rx_bytes += int(lengths[:n].sum())
        elif self._ring.consumed - self._ring.released >= self._units:
            self._stats.fill_ring_empty += 1    # the whole ring is held by unreleased bursts
        return Burst(self._ring_array, off[:n], lengths[:n], ts[:n], TimestampSource.KERNEL,
                     handle=int(self._ring.consumed))

    def release(self, burst: Burst) -> None:
        if self._sock is not None and isinstance(burst.handle, int) and burst.buffer is self._ring_array:
            self._give_back(self._ring, burst.handle)

    def tx_burst(self, burst: Burst) -> int:
        if self._sock is None:
            raise PortError(f"the socket port on {self.iface} is closed")
        n = len(burst)
        if n == 0:
            return 0
        lengths = np.ascontiguousarray(burst.lengths, np.uint32)
        sent = lib.pkt_send(self._sock.fileno(), _ptr("uint8_t[]", np.ascontiguousarray(burst.buffer, np.uint8)),
                            _ptr("int64_t[]", np.ascontiguousarray(burst.offsets, np.int64)),
                            _ptr("uint32_t[]", lengths), n, self._err)
        self._stats.tx_packets += sent
        self._stats.tx_bytes += int(lengths[:sent].sum())
        if sent < n:
            err = self._err[0]
            if err not in TRANSIENT_TX_ERRORS:
                raise PortError(f"sending frame {sent} of a burst of {n} ({int(lengths[sent])} bytes) "
                                f"on {self.iface} failed: {os.strerror(err)}")
            self._stats.ring_full += n - sent
        return sent

    def stats(self) -> PortStats:
        if self._sock is not None:
            # the kernel's counters reset on every read
            # (tp_packets, tp_drops, and with V3 tp_freeze_q_cnt)
            _, dropped = struct.unpack_from("2I", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
            self._kernel_drops += dropped
        drops = {}
        if self._kernel_drops:
            drops[DROP_RING_FULL] = self._kernel_drops
        if self._sock is not None:
            self._too_long = int(self._ring.too_long)
        if self._too_long:
            drops[DROP_TOO_LONG] = self._too_long
        return PortStats(**{**self._stats.as_dict(), "drops": drops})

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def close(self) -> None:
        if self._sock is None:
            return
        if self._ring_base is not None:
            self.stats()                # keep the last counters readable after close
            self._ring_array = None
            ffi.release(self._ring_base)
            self._ring_base = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # bursts still hold views; the mapping goes with the last of them
            self._mm = None
        self._sock.close()
        self._sock = None
