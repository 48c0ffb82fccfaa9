"""The journal: an append-only binary log of every inbound command, written before
anything is acknowledged.

A venue journals each batch after the risk check (so every command carries its
verdict in ``risk``) and before replies leave; replaying the journal through the
matching core (``RiskEngine.follow`` for the risk state) rebuilds the same books, so
it is both the venue's recovery log and its audit trail. The format is generic: any
fixed-size numpy record dtype can be journaled.

File layout (all integers little-endian)::

    header  magic "NETIOJNL", version u16, checksum kind u16 (1 = CRC-32C),
            header_len u32, rec_size u32, crc_offset u32, first_seq u64,
            descr_len u32, descr (the payload dtype as numpy's .npy descr text),
            header CRC-32C u32, zero padding to a multiple of 8 bytes
    records rec_size bytes each: seq u64, ts i64 (ns, CLOCK_REALTIME when appended),
            payload (one command record), CRC-32C u32 of seq+ts+payload

Records are fixed-size, so record ``i`` lies at ``header_len + i * rec_size`` and a
whole batch is one numpy record array, checksummed in one C call
(``engine._journal``, hardware CRC-32C) and written with one ``write``.

Recovery rules:

- a partial record at the end of the file, or a run of records failing their
  checksum that reaches the end of the file, is a *torn tail* (the last write did
  not complete): it is reported and, when the journal is reopened for appending,
  truncated away;
- a record failing its checksum (or out of sequence) with a good record after it
  is *corruption*: reading stops with :class:`JournalCorrupt` naming its offset
  and sequence number, and nothing is truncated.

Flush policies (:class:`FlushPolicy`), from cheapest to safest:

- ``NONE``: batches collect in the process and reach the OS per MiB, on
  ``flush()`` or ``close()``; a process crash loses what was not yet written;
- ``BATCH``: every batch is handed to the OS before ``append`` returns; survives a
  process crash, not a power loss;
- ``FSYNC``: every batch is written and ``fdatasync``-ed before ``append`` returns;
- ``FSYNC_INTERVAL``: every batch is handed to the OS, and a background thread
  ``fdatasync``-s every ``fsync_interval_ms``, bounding what a power loss can take.

``written_seq`` and ``synced_seq`` say what has reached the OS and the disk, so a
venue acknowledges a command only once it is as durable as its policy promises.

The venue's fused C walk (engine/fastpath.py) writes records in this format itself, to
``fileno()``, and says how far it got with ``wrote()``; ``read`` and ``replay`` cannot
tell its records from ``append``'s.

``python -m engine.journal FILE`` prints what a journal holds.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from engine._journal import ffi, lib

log = logging.getLogger("engine.journal")

MAGIC = b"NETIOJNL"
VERSION = 1
CHECKSUM_CRC32C = 1
_FIXED = struct.Struct("<8sHHIIIQI")   # magic .. descr_len; the descr text follows
_BUFFER_LIMIT = 1 << 20               # FlushPolicy.NONE writes out once this much collects


class JournalError(RuntimeError):
    """The file is not a journal this code can use (bad header, other record dtype)."""


class JournalCorrupt(JournalError):
    """A record in the middle of the journal fails its checksum or sequence check."""

    def __init__(self, path: Path, offset: int, seq: int, why: str):
        super().__init__(f"{path}: corrupt record at byte offset {offset} (sequence {seq}): {why}")
        self.path, self.offset, self.seq = path, offset, seq


class FlushPolicy(enum.Enum):
    """How far a batch gets towards the disk before ``append`` returns (see module doc)."""

    NONE = "none"
    BATCH = "batch"
    FSYNC = "fsync"
    FSYNC_INTERVAL = "fsync-interval"


def record_dtype(payload: np.dtype) -> np.dtype:
    """The on-disk record for a payload dtype: seq, ts, payload, crc, packed."""
    return np.dtype([("seq", "<u8"), ("ts", "<i8"), ("payload", payload), ("crc", "<u4")])


@dataclasses.dataclass(frozen=True)
class Header:
    """What a journal's header says."""

    payload_dtype: np.dtype
    first_seq: int
    header_len: int

    @property
    def record_dtype(self) -> np.dtype:
        return record_dtype(self.payload_dtype)

    def encode(self) -> bytes:
        rec = self.record_dtype
        descr = repr(npformat.dtype_to_descr(self.payload_dtype)).encode()
        body = _FIXED.pack(MAGIC, VERSION, CHECKSUM_CRC32C, self.header_len, rec.itemsize,
                           rec.fields["crc"][1], self.first_seq, len(descr)) + descr
        body += struct.pack("<I", crc32c(body))
        return body + bytes(self.header_len - len(body))

    @classmethod
    def for_payload(cls, payload_dtype: np.dtype, first_seq: int) -> Header:
        descr_len = len(repr(npformat.dtype_to_descr(payload_dtype)).encode())
        unpadded = _FIXED.size + descr_len + 4
        return cls(np.dtype(payload_dtype), first_seq, (unpadded + 7) // 8 * 8)

    @classmethod
    def decode(cls, path: Path, raw: bytes) -> Header:
        if len(raw) < _FIXED.size or raw[:8] != MAGIC:
            raise JournalError(f"{path}: not a journal (no {MAGIC!r} header)")
        magic, version, checksum, header_len, rec_size, crc_offset, first_seq, descr_len = \
            _FIXED.unpack_from(raw)
        if version != VERSION or checksum != CHECKSUM_CRC32C:
            raise JournalError(f"{path}: journal version {version}, checksum kind {checksum}; "
                               f"this code reads version {VERSION}, CRC-32C")
        end = _FIXED.size + descr_len
        if len(raw) < end + 4 or struct.unpack_from("<I", raw, end)[0] != crc32c(raw[:end]):
            raise JournalError(f"{path}: journal header fails its checksum")
        payload = npformat.descr_to_dtype(ast.literal_eval(raw[_FIXED.size:end].decode()))
        header = cls(payload, first_seq, header_len)
        rec = header.record_dtype
        if (rec.itemsize, rec.fields["crc"][1]) != (rec_size, crc_offset):
            raise JournalError(f"{path}: header record size {rec_size} does not match its dtype")
        return header


@dataclasses.dataclass(frozen=True)
class Contents:
    """A journal as read: its header, its good records, and any torn tail after them."""

    header: Header
    records: np.ndarray          # record_dtype: seq, ts, payload, crc (read-only, file-mapped)
    torn_offset: int | None      # where the torn tail starts, None if the file ends cleanly
    torn_bytes: int

    @property
    def next_seq(self) -> int:
        return self.header.first_seq + len(self.records)


def crc32c(data: bytes | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of a byte string, as the journal computes it."""
    buf = np.ascontiguousarray(np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray)
                               else data).view(np.uint8)
    return int(lib.jnl_crc32c(ffi.from_buffer(buf), buf.nbytes))


def _seal(recs: np.ndarray) -> None:
    lib.jnl_seal(ffi.from_buffer(recs), len(recs), recs.dtype.itemsize, recs.dtype.fields["crc"][1])


def read(path: str | os.PathLike, payload_dtype: np.dtype | None = None) -> Contents:
    """Read and verify a whole journal; the file is not changed.

    Raises :class:`JournalCorrupt` for a bad record in the middle and
    :class:`JournalError` for a bad header or a payload dtype other than the one given.
    A torn tail is reported in the result, not raised.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise JournalError(f"{path}: empty file, not a journal")
    raw = np.memmap(path, np.uint8, mode="r")     # a day's journal need not fit in memory twice
    header = Header.decode(path, raw[:1 << 16].tobytes())
    if payload_dtype is not None and (npformat.dtype_to_descr(np.dtype(payload_dtype))
                                      != npformat.dtype_to_descr(header.payload_dtype)):
        raise JournalError(f"{path}: records are {header.payload_dtype}, not {np.dtype(payload_dtype)}")
    if len(raw) < header.header_len:
        raise JournalError(f"{path}: file ends inside the journal header")
    rec = header.record_dtype
    n = (len(raw) - header.header_len) // rec.itemsize
    records = raw[header.header_len:header.header_len + n * rec.itemsize].view(rec)
    ok = np.zeros(n, np.uint8)
    if n:
        lib.jnl_check(ffi.from_buffer(records), n, rec.itemsize, rec.fields["crc"][1], ffi.from_buffer(ok))
    valid = ok.astype(bool)
    in_sequence = records["seq"] == header.first_seq + np.arange(n, dtype=np.uint64)
    good = valid & in_sequence
    bad = np.flatnonzero(~good)
    if len(bad) and good[bad[0]:].any():
        i = int(bad[0])
        why = "checksum mismatch" if not valid[i] else f"sequence {int(records['seq'][i])} out of order"
        raise JournalCorrupt(path, header.header_len + i * rec.itemsize, header.first_seq + i, why)
    kept = int(bad[0]) if len(bad) else n
    end = header.header_len + kept * rec.itemsize
    torn = len(raw) - end
    return Contents(header, records[:kept], end if torn else None, torn)


def replay(path: str | os.PathLike, apply: Callable[[np.ndarray], object],
           payload_dtype: np.dtype | None = None, batch: int = 65536) -> Contents:
    """Feed every journaled payload, in order, to ``apply`` in batches; return what was read."""
    contents = read(path, payload_dtype)
    payloads = contents.records["payload"]
    for start in range(0, len(payloads), batch):
        apply(np.ascontiguousarray(payloads[start:start + batch]))
    return contents


class Journal:
    """An open journal, appended a batch at a time. Use ``Journal.open``."""

    def __init__(self, path: Path, fd: int, header: Header, next_seq: int, recovered: Contents | None,
                 flush: FlushPolicy, fsync_interval_ms: float):
        self.path, self.header = path, header
        self.recovered = recovered
        self.flush_policy = flush
        self._fd = fd
        self._next_seq = next_seq
        self._pending = bytearray()
        self._pending_last = next_seq - 1
        self.written_seq = next_seq - 1      # last sequence number handed to the OS
        self.synced_seq = next_seq - 1       # last sequence number known to be on disk
        self._stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._syncer = None
        if flush is FlushPolicy.FSYNC_INTERVAL:
            self._syncer = threading.Thread(target=self._sync_every, args=(fsync_interval_ms / 1000,),
                                            name=f"journal-fsync {path.name}", daemon=True)
            self._syncer.start()

    @classmethod
    def open(cls, path: str | os.PathLike, payload_dtype: np.dtype, *,
             flush: FlushPolicy = FlushPolicy.BATCH, fsync_interval_ms: float = 0,
             first_seq: int = 1) -> Journal:
        """Open ``path`` for appending, creating it if missing.

        An existing journal is verified first (see :func:`read`): a torn tail is
        truncated and logged, and the result kept in ``.recovered``; appending
        carries on from the next sequence number.
        """
        if flush is FlushPolicy.FSYNC_INTERVAL and fsync_interval_ms <= 0:
            raise ValueError("FlushPolicy.FSYNC_INTERVAL needs fsync_interval_ms > 0")
        path = Path(path)
        payload_dtype = np.dtype(payload_dtype)
        recovered = None
        if path.exists():
            recovered = read(path, payload_dtype)
            header, next_seq = recovered.header, recovered.next_seq
            if recovered.torn_offset is not None:
                log.warning("%s: torn tail of %d bytes at offset %d truncated (next sequence %d)",
                            path, recovered.torn_bytes, recovered.torn_offset, next_seq)
                os.truncate(path, recovered.torn_offset)
                _fsync(path)
        else:
            header, next_seq = Header.for_payload(payload_dtype, first_seq), first_seq
            _create(path, header.encode())
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return cls(path, fd, header, next_seq, recovered, flush, fsync_interval_ms)

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended command gets."""
        return self._next_seq

    def fileno(self) -> int:
        """The descriptor records are appended to, for a writer in C (see ``wrote``)."""
        return self._fd

    def wrote(self, next_seq: int) -> None:
        """Records up to ``next_seq - 1`` were written to ``fileno()`` by other code, in
        this format and handed to the OS (engine/fastpath.py's C path): carry on from there."""
        if self._pending:
            raise RuntimeError(f"{self.path}: records of another writer would land before pending ones")
        self._next_seq = next_seq
        self._pending_last = self.written_seq = next_seq - 1

    def append(self, payloads: np.ndarray, ts: int | None = None) -> int:
        """Journal a batch of commands; return the sequence number of the last one.

        The batch is one record array, sealed in one C call and written with one
        ``write``; ``ts`` (ns) defaults to the wall clock now.
        """
        payload_dtype = self.header.payload_dtype
        if payloads.dtype != payload_dtype:
            raise TypeError(f"{self.path}: journals {payload_dtype} records, not {payloads.dtype}")
        n = len(payloads)
        if n == 0:
            return self._next_seq - 1
        rec = self.header.record_dtype
        recs = np.empty(n, rec)
        recs["seq"] = np.arange(self._next_seq, self._next_seq + n, dtype=np.uint64)
        recs["ts"] = time.time_ns() if ts is None else ts
        # A byte copy: numpy's field-by-field structured assignment is ~15x slower.
        at = rec.fields["payload"][1]
        recs.view(np.uint8).reshape(n, rec.itemsize)[:, at:at + payload_dtype.itemsize] = \
            np.ascontiguousarray(payloads).view(np.uint8).reshape(n, payload_dtype.itemsize)
        _seal(recs)
        self._next_seq += n
        last = self._next_seq - 1
        if self.flush_policy is FlushPolicy.NONE:
            self._pending += recs.tobytes()
            self._pending_last = last
            if len(self._pending) >= _BUFFER_LIMIT:
                self.flush()
        else:
            _write_all(self._fd, memoryview(recs).cast("B"))
            self.written_seq = last
            if self.flush_policy is FlushPolicy.FSYNC:
                self.sync()
        return last

    def flush(self) -> None:
        """Hand everything appended so far to the OS."""
        if self._pending:
            _write_all(self._fd, memoryview(self._pending))
            self._pending = bytearray()
            self.written_seq = self._pending_last

    def sync(self) -> None:
        """Flush and ``fdatasync``: everything appended so far is on disk afterwards."""
        self.flush()
        self.sync_written()

    def _sync_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sync_written()

    def sync_written(self) -> None:
        """``fdatasync`` what the OS already has (the interval policy's background step)."""
        with self._sync_lock:        # the interval thread and the caller may both sync
            written = self.written_seq
            if written > self.synced_seq:
                os.fdatasync(self._fd)
                self.synced_seq = written

    def close(self) -> None:
        """Flush, sync (unless the policy is NONE or BATCH) and close."""
        if self._fd < 0:
            return
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        self.flush()
        if self.flush_policy in (FlushPolicy.FSYNC, FlushPolicy.FSYNC_INTERVAL):
            self.sync()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _create(path: Path, header: bytes) -> None:
    """Write the header to a temporary file and rename it in place: never a torn header."""
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        f.write(header)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Make a file's (or a directory's) metadata durable: a truncation, a new entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """Print what a journal holds: header, record count, sequence range, torn tail."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m engine.journal", description=main.__doc__)
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        c = read(args.path)
    except JournalError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.path}: {len(c.records)} records, sequence {c.header.first_seq}..{c.next_seq - 1}, "
          f"{c.header.record_dtype.itemsize} bytes each")
    print(f"payload: {c.header.payload_dtype}")
    if c.torn_offset is not None:
        print(f"torn tail: {c.torn_bytes} bytes at offset {c.torn_offset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
