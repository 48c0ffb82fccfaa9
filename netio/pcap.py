"""A pcap or pcapng file as a port: replay a capture into a program, or record what it sends.

    with PcapPort("in.pcapng", pacing="recorded") as port:   # read: bursts are views of the file
        burst = port.rx_burst(64)
    with PcapPort("out.pcap", mode="w") as port:              # write: tx_burst appends records
        port.tx_burst(burst)

Reading maps the file and indexes its records in C, a chunk at a time, so bursts are
(offset, length) pairs into the mapping and big files cost no per-packet Python.
Both classic pcap (microsecond or nanosecond, either byte order) and pcapng
(section header, interface description with if_tsresol/if_tsoffset, enhanced and
simple packet blocks) are read; timestamps are ns since the epoch
(``TimestampSource.CAPTURE``). A truncated last record is counted in
``stats().drops[DROP_TRUNCATED]``; a corrupt record raises ``PortError`` naming
its offset once the frames before it have been delivered. Writing produces
nanosecond pcap (``format="pcap"``) or pcapng with if_tsresol = 9.
"""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Literal

import numpy as np

from netio._packet import ffi, lib
from netio.clock import tai_offset_ns
from netio.port import Burst, Port, PortError, PortInfo, PortStats, TimestampSource

LINKTYPE_ETHERNET = 1
PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
CHUNK = 65536                   # records indexed per C call
SNAPLEN = 262144
DROP_TRUNCATED = "truncated last record (the file ends inside it)"
EPOCH_SOURCES = (TimestampSource.CAPTURE, TimestampSource.KERNEL, TimestampSource.NIC,
                 TimestampSource.SIMULATION)   # stamps already in ns since the epoch


def _ptr(ctype: str, array: np.ndarray):
    return ffi.from_buffer(ctype, array, require_writable=False)


class PcapPort(Port):
    """Frames from (``mode="r"``) or to (``mode="w"``) the capture file ``path``.

    ``pacing="fast"`` hands out frames as fast as they are asked for; ``"recorded"``
    hands out only frames whose recorded time offset from the first frame has
    elapsed since the first ``rx_burst`` (rx_burst never sleeps). ``loop=True``
    starts again at the first record after the last.
    """

    def __init__(self, path: str | os.PathLike, queue: int = 0, *, mode: Literal["r", "w"] = "r",
                 pacing: Literal["fast", "recorded"] = "fast", loop: bool = False,
                 format: Literal["pcap", "pcapng"] = "pcap", snaplen: int = SNAPLEN,
                 linktype: int = LINKTYPE_ETHERNET):
        if queue != 0:
            raise PortError(f"a pcap file has one queue, 0; queue {queue} was asked for")
        if mode not in ("r", "w"):
            raise PortError(f"mode is 'r' or 'w', not {mode!r}")
        if pacing not in ("fast", "recorded"):
            raise PortError(f"pacing is 'fast' or 'recorded', not {pacing!r}")
        if format not in ("pcap", "pcapng"):
            raise PortError(f"format is 'pcap' or 'pcapng', not {format!r}")
        self.path = Path(path)
        self.mode = mode
        self._stats = PortStats()
        self._map: np.ndarray | None = None
        self._file = None
        self.info = PortInfo(backend="pcap", iface=str(path), ts_source=TimestampSource.CAPTURE,
                             details={"mode": mode})
        if mode == "r":
            self._open_read(pacing, loop)
        else:
            self._open_write(format, snaplen, linktype)

    # -- reading ----------------------------------------------------------------------------
    def _open_read(self, pacing: str, loop: bool) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise PortError(f"no such capture file: {self.path}") from None
        if size < 4:
            raise PortError(f"{self.path} is not a capture file: it has {size} bytes, "
                            "too few for a pcap or pcapng header at offset 0")
        self._map = np.memmap(self.path, np.uint8, mode="r")
        self._cursor = ffi.new("struct pcap_cursor *")
        magic_le, = struct.unpack_from("<I", self._map, 0)
        magic_be, = struct.unpack_from(">I", self._map, 0)
        if magic_le == PCAPNG_SHB:
            self._cursor.format = 1
            self._start = 0
            fmt = "pcapng"
        elif PCAP_MAGIC_US in (magic_le, magic_be) or PCAP_MAGIC_NS in (magic_le, magic_be):
            if size < 24:
                raise PortError(f"{self.path}: the pcap file header at offset 0 is cut short "
                                f"({size} of 24 bytes)")
            swapped = magic_le not in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
            self._cursor.swapped = int(swapped)
            self._cursor.nsec = int(PCAP_MAGIC_NS in (magic_le, magic_be))
            _, _, _, _, snaplen, linktype = struct.unpack_from(">HHiIII" if swapped else "<HHiIII", self._map, 4)
            self.info.details.update(snaplen=snaplen, linktype=linktype & 0xFFFF)
            self._start = 24
            fmt = "pcap"
        else:
            raise PortError(f"{self.path} is neither pcap nor pcapng: magic 0x{magic_be:08x} at offset 0")
        self._cursor.pos = self._start
        self.info.details.update(format=fmt, pacing=pacing, loop=loop)
        if fmt == "pcap":
            self.info.details["nanosecond"] = bool(self._cursor.nsec)
        self._pacing, self._loop = pacing, loop
        self._shift = 0                    # added to recorded times on later passes of a loop
        self._t0: int | None = None        # monotonic ns of the first rx_burst (recorded pacing)
        self._first_ts: int | None = None
        self._last_ts = 0
        self._pass_frames = 0
        self.exhausted = False             # every record handed out and no loop
        self.info.details["cut_by_snaplen"] = 0
        self._index()
        if fmt == "pcapng" and self._cursor.n_ifaces:
            self.info.details["linktype"] = int(self._cursor.linktype[0])

    def _index(self) -> None:
        """Index the next chunk of records into fresh arrays (older bursts keep theirs)."""
        c = self._cursor
        room = min(CHUNK, (len(self._map) - c.pos) // 16 + 1)     # a record takes 16 bytes or more
        self._off = np.empty(room, np.int64)
        self._cap = np.empty(room, np.uint32)
        orig = np.empty(room, np.uint32)
        self._ts = np.empty(room, np.int64)
        self._n = lib.pcap_index(c, _ptr("uint8_t[]", self._map), len(self._map), room,
                                 _ptr("int64_t[]", self._off), _ptr("uint32_t[]", self._cap),
                                 _ptr("uint32_t[]", orig), _ptr("int64_t[]", self._ts))
        self._i = 0
        self._pass_frames += self._n
        if self._n and self._first_ts is None:
            self._first_ts = int(self._ts[0])
        # frames the capture cut short are delivered as captured, and counted here
        self.info.details["cut_by_snaplen"] += int(np.count_nonzero(self._cap[:self._n] < orig[:self._n]))

    def _after_chunk(self) -> None:
        """The chunk is used up: index the next, note how the file ended, or loop."""
        c = self._cursor
        if c.status == lib.PCAP_MORE:
            self._index()
            return
        if c.status == lib.PCAP_CORRUPT:
            raise PortError(f"{self.path}: corrupt record at offset {c.problem_pos}: "
                            f"{ffi.string(lib.pcap_problem_text(c.problem)).decode()}")
        if c.status == lib.PCAP_TRUNCATED:
            self._stats.drops[DROP_TRUNCATED] = self._stats.drops.get(DROP_TRUNCATED, 0) + 1
            self.info.details["truncated_at"] = int(c.problem_pos)
        if not self._loop or self._pass_frames == 0:
            self.exhausted = True
            return
        self._shift += self._last_ts - (self._first_ts or 0)
        c.pos, c.n_ifaces, c.status = self._start, 0, lib.PCAP_MORE
        self._pass_frames = 0
        self._index()

    def rx_burst(self, max_frames: int = 64) -> Burst:
        if self.mode != "r":
            raise PortError(f"{self.path} was opened for writing")
        if self._map is None:
            raise PortError(f"{self.path} is closed")
        while self._i == self._n and not self.exhausted:
            self._after_chunk()
        i, n = self._i, min(self._n, self._i + max_frames)
        if self._pacing == "recorded" and n > i:
            now = time.monotonic_ns()
            if self._t0 is None:
                self._t0 = now
            due = (now - self._t0) + self._first_ts - self._shift
            n = i + int(np.searchsorted(self._ts[i:n], due, side="right"))
        if n == i:
            return Burst.empty(TimestampSource.CAPTURE)
        self._i = n
        self._last_ts = int(self._ts[n - 1])
        lengths = self._cap[i:n]
        self._stats.rx_packets += n - i
        self._stats.rx_bytes += int(lengths.sum())
        return Burst(self._map, self._off[i:n], lengths, self._ts[i:n], TimestampSource.CAPTURE)

    # -- writing ----------------------------------------------------------------------------
    def _open_write(self, fmt: str, snaplen: int, linktype: int) -> None:
        try:
            self._file = open(self.path, "wb")
        except OSError as e:
            raise PortError(f"cannot write the capture file {self.path}: {e.strerror}") from None
        self._format, self._snaplen = fmt, snaplen
        if fmt == "pcap":
            self._file.write(struct.pack("=IHHiIII", PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, linktype))
        else:
            shb = struct.pack("=IIIHHqI", PCAPNG_SHB, 28, 0x1A2B3C4D, 1, 0, -1, 28)
            idb = struct.pack("=IIHHIHHB3xHHI", 1, 32, linktype, 0, snaplen,
                              9, 1, 9,          # if_tsresol = 10^-9: nanoseconds
                              0, 0, 32)         # opt_endofopt, trailing length
            self._file.write(shb + idb)
        self.info.details.update(format=fmt, snaplen=snaplen, linktype=linktype, nanosecond=True)

    def tx_burst(self, burst: Burst) -> int:
        """Append ``burst`` as records; its own stamps are kept when they are epoch ns, else now."""
        if self.mode != "w" or self._file is None:
            raise PortError(f"{self.path} was opened for reading" if self.mode == "r"
                            else f"{self.path} is closed")
        n = len(burst)
        if n == 0:
            return 0
        lengths = np.ascontiguousarray(burst.lengths, np.uint32)
        if burst.ts_source in EPOCH_SOURCES:
            stamps = np.ascontiguousarray(burst.timestamps, np.int64)
        elif burst.ts_source is TimestampSource.KERNEL_TAI:    # pcap stamps are UTC
            stamps = np.asarray(burst.timestamps, np.int64) - tai_offset_ns()
        else:
            stamps = np.full(n, time.time_ns(), np.int64)
        out = np.empty(36 * n + int(lengths.sum()), np.uint8)
        size = lib.pcap_write(1 if self._format == "pcapng" else 0,
                              _ptr("uint8_t[]", np.ascontiguousarray(burst.buffer, np.uint8)),
                              _ptr("int64_t[]", np.ascontiguousarray(burst.offsets, np.int64)),
                              _ptr("uint32_t[]", lengths), n, _ptr("int64_t[]", stamps),
                              self._snaplen, _ptr("uint8_t[]", out))
        self._file.write(memoryview(out)[:size])
        self._stats.tx_packets += n
        self._stats.tx_bytes += int(lengths.sum())
        return n

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    # -- common -----------------------------------------------------------------------------
    def stats(self) -> PortStats:
        return PortStats(**{**self._stats.as_dict(), "drops": dict(self._stats.drops)})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._map = None
