"""The journal: round trip, torn tails, corruption, flush policies, replay into the
matching core, and a venue killed with SIGKILL mid-stream.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import journal
from engine.journal import FlushPolicy, Journal, JournalCorrupt, JournalError

# Any fixed-size record will do for the format rules; padding included on purpose.
PAYLOAD = np.dtype([("kind", "u1"), ("qty", "<u4"), ("price", "<i8"), ("token", "S14")], align=True)


def payloads(n: int, start: int = 0) -> np.ndarray:
    p = np.zeros(n, PAYLOAD)
    p["kind"] = np.arange(start, start + n) % 7
    p["qty"] = np.arange(start, start + n) * 3 + 1
    p["price"] = 10_000 + np.arange(start, start + n)
    p["token"] = [f"T{i}".encode() for i in range(start, start + n)]
    return p


def crc32c_python(data: bytes) -> int:
    """Bitwise CRC-32C, written from the polynomial, to check the C code independently."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.fixture
def path(tmp_path):
    return tmp_path / "venue.jnl"


def write(path, batches, **kw):
    with Journal.open(path, PAYLOAD, **kw) as j:
        for b in batches:
            j.append(b, ts=123)
    return path


def test_crc32c_is_castagnoli():
    assert journal.crc32c(b"123456789") == 0xE3069283 == crc32c_python(b"123456789")


def test_round_trip_keeps_every_record_in_order_with_sequence_numbers(path):
    batches = [payloads(1000), payloads(1, 1000), payloads(37, 1001)]
    write(path, batches)
    c = journal.read(path, PAYLOAD)
    assert c.torn_offset is None
    assert np.array_equal(c.records["payload"], np.concatenate(batches))
    assert list(c.records["seq"]) == list(range(1, 1039))
    assert (c.records["ts"] == 123).all()
    assert c.header.payload_dtype == PAYLOAD


def test_each_record_carries_the_crc32c_of_its_seq_ts_and_payload(path):
    write(path, [payloads(5)])
    recs = journal.read(path).records
    for r in recs:
        raw = r.tobytes()
        assert int(r["crc"]) == crc32c_python(raw[:-4])


def test_header_describes_the_record_dtype_so_a_reader_needs_no_schema(path):
    write(path, [payloads(3)])
    c = journal.read(path)       # no dtype given
    assert c.header.payload_dtype == PAYLOAD
    assert c.records["payload"]["token"][2] == b"T2"


def test_a_batch_is_one_write(path, monkeypatch):
    calls = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: calls.append(len(data)) or real(fd, data))
    write(path, [payloads(5000)])
    assert calls == [5000 * journal.record_dtype(PAYLOAD).itemsize]


def test_reopening_continues_the_sequence(path):
    write(path, [payloads(10)])
    with Journal.open(path, PAYLOAD) as j:
        assert j.next_seq == 11
        assert j.append(payloads(5, 10)) == 15
    assert list(journal.read(path).records["seq"]) == list(range(1, 16))


def test_records_another_writer_puts_on_its_descriptor_are_read_and_appending_carries_on(path):
    """A writer outside the Journal (the venue's fused C walk) appends sealed records to
    fileno() and reports them with wrote(): readers see one sequence, appends follow it."""
    rec = journal.record_dtype(PAYLOAD)
    with Journal.open(path, PAYLOAD) as j:
        j.append(payloads(3), ts=5)
        outside = np.zeros(4, rec)
        outside["seq"] = np.arange(j.next_seq, j.next_seq + 4)
        outside["ts"] = 6
        outside["payload"] = payloads(4, 3)
        outside["crc"] = [journal.crc32c(r.tobytes()[:-4]) for r in outside]
        os.write(j.fileno(), outside.tobytes())
        j.wrote(j.next_seq + 4)
        assert j.written_seq == 7 and j.append(payloads(2, 7), ts=7) == 9
    c = journal.read(path, PAYLOAD)
    assert c.torn_offset is None and list(c.records["seq"]) == list(range(1, 10))
    assert np.array_equal(c.records["payload"], payloads(9))
    assert list(c.records["ts"]) == [5] * 3 + [6] * 4 + [7] * 2


def test_appending_records_of_another_dtype_is_refused(path):
    with Journal.open(path, PAYLOAD) as j, pytest.raises(TypeError, match="journals"):
        j.append(np.zeros(3, np.dtype([("x", "<u8")])))


def test_reopening_with_another_record_dtype_is_refused(path):
    write(path, [payloads(2)])
    with pytest.raises(JournalError, match="records are"):
        Journal.open(path, np.dtype([("x", "<u8")]))


def test_a_file_that_is_not_a_journal_is_refused(path):
    path.write_bytes(b"hello world, not a journal" * 10)
    with pytest.raises(JournalError, match="not a journal"):
        journal.read(path)


def test_a_damaged_header_is_refused(path):
    write(path, [payloads(2)])
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalError, match="header"):
        journal.read(path)


def test_torn_last_record_is_reported_and_truncated_on_reopen(path, caplog):
    write(path, [payloads(20)])
    size = path.stat().st_size
    rec = journal.record_dtype(PAYLOAD).itemsize
    with open(path, "r+b") as f:                 # the last write got only half its bytes out
        f.truncate(size - rec // 2)
    c = journal.read(path)
    assert len(c.records) == 19
    assert c.torn_offset == size - rec and c.torn_bytes == rec - rec // 2
    assert path.stat().st_size == size - rec // 2, "read() must not change the file"

    with Journal.open(path, PAYLOAD) as j:
        assert j.recovered.torn_offset == size - rec
        assert j.next_seq == 20
        j.append(payloads(1, 19))
    assert "torn tail" in caplog.text
    c = journal.read(path)
    assert c.torn_offset is None
    assert np.array_equal(c.records["payload"], payloads(20))


def test_torn_tail_of_garbage_whole_records_is_truncated(path):
    """A write that extended the file but whose data never landed (zeros) is a torn tail."""
    write(path, [payloads(10)])
    rec = journal.record_dtype(PAYLOAD).itemsize
    with open(path, "ab") as f:
        f.write(bytes(3 * rec + 5))
    c = journal.read(path)
    assert len(c.records) == 10 and c.torn_bytes == 3 * rec + 5


def test_corrupt_record_in_the_middle_stops_with_its_offset_and_sequence(path):
    write(path, [payloads(50)])
    header_len = journal.read(path).header.header_len
    rec = journal.record_dtype(PAYLOAD).itemsize
    offset = header_len + 17 * rec
    raw = bytearray(path.read_bytes())
    raw[offset + 20] ^= 0x01                     # one bit flipped in record seq 18's payload
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalCorrupt) as e:
        journal.read(path)
    assert (e.value.offset, e.value.seq) == (offset, 18)
    assert f"offset {offset}" in str(e.value) and "sequence 18" in str(e.value)
    with pytest.raises(JournalCorrupt):          # never truncated away on reopen either
        Journal.open(path, PAYLOAD)
    assert path.stat().st_size == len(raw)


def test_a_record_out_of_sequence_is_corruption(path):
    write(path, [payloads(4)])
    header_len = journal.read(path).header.header_len
    rec = journal.record_dtype(PAYLOAD).itemsize
    raw = bytearray(path.read_bytes())
    second = raw[header_len + rec:header_len + 2 * rec]
    raw[header_len + 2 * rec:header_len + 3 * rec] = second     # a duplicated block
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalCorrupt, match="sequence 2 out of order") as e:
        journal.read(path)
    assert e.value.seq == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), data=st.data())
def test_any_damage_is_either_a_torn_tail_or_corruption_at_its_record(path, n, data):
    """One flipped byte anywhere in record i: corruption at i's offset if a good record
    follows, else a torn tail from i. A cut anywhere: the whole records before it survive."""
    path.unlink(missing_ok=True)
    write(path, [payloads(n)])
    pristine = path.read_bytes()
    header_len = journal.read(path).header.header_len
    rec = journal.record_dtype(PAYLOAD).itemsize

    at = data.draw(st.integers(header_len, len(pristine) - 1), label="flipped byte")
    i = (at - header_len) // rec
    damaged = bytearray(pristine)
    damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(damaged))
    if i < n - 1:
        with pytest.raises(JournalCorrupt) as e:
            journal.read(path)
        assert (e.value.offset, e.value.seq) == (header_len + i * rec, i + 1)
    else:
        c = journal.read(path)
        assert len(c.records) == n - 1 and c.torn_offset == header_len + i * rec

    cut = data.draw(st.integers(header_len, len(pristine)), label="cut at")
    path.write_bytes(pristine[:cut])
    c = journal.read(path)
    assert len(c.records) == (cut - header_len) // rec
    assert c.torn_bytes == (cut - header_len) % rec


def test_replay_feeds_every_payload_in_order_in_batches(path):
    write(path, [payloads(25)])
    seen = []
    journal.replay(path, seen.append, PAYLOAD, batch=10)
    assert [len(b) for b in seen] == [10, 10, 5]
    assert np.array_equal(np.concatenate(seen), payloads(25))


class TestFlushPolicies:
    def test_none_keeps_batches_in_the_process_until_flush(self, path):
        with Journal.open(path, PAYLOAD, flush=FlushPolicy.NONE) as j:
            header_only = path.stat().st_size
            j.append(payloads(10))
            assert path.stat().st_size == header_only and j.written_seq == 0
            j.flush()
            assert len(journal.read(path).records) == 10 and j.written_seq == 10

    def test_none_writes_out_once_a_mebibyte_collects(self, path):
        with Journal.open(path, PAYLOAD, flush=FlushPolicy.NONE) as j:
            j.append(payloads(40_000))               # > 1 MiB of records
            assert j.written_seq == 40_000

    def test_batch_hands_every_batch_to_the_os_without_fsync(self, path, monkeypatch):
        syncs = []
        monkeypatch.setattr(os, "fdatasync", syncs.append)
        with Journal.open(path, PAYLOAD, flush=FlushPolicy.BATCH) as j:
            j.append(payloads(10))
            assert len(journal.read(path).records) == 10    # visible to another reader now
            assert (j.written_seq, j.synced_seq) == (10, 0)
        assert syncs == []

    def test_fsync_syncs_every_batch_before_append_returns(self, path, monkeypatch):
        syncs = []
        real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd) or real(fd))
        with Journal.open(path, PAYLOAD, flush=FlushPolicy.FSYNC) as j:
            for i in range(3):
                last = j.append(payloads(5, 5 * i))
                assert j.synced_seq == last
        assert len(syncs) == 3

    def test_fsync_interval_syncs_in_the_background(self, path):
        with Journal.open(path, PAYLOAD, flush=FlushPolicy.FSYNC_INTERVAL, fsync_interval_ms=5) as j:
            last = j.append(payloads(10))
            assert j.written_seq == last
            deadline = time.monotonic() + 10
            while j.synced_seq < last and time.monotonic() < deadline:
                time.sleep(0.005)
            assert j.synced_seq == last
            last = j.append(payloads(3, 10))
        assert j.synced_seq == last, "close() syncs what the interval had not yet"

    def test_fsync_interval_needs_an_interval(self, path):
        with pytest.raises(ValueError):
            Journal.open(path, PAYLOAD, flush=FlushPolicy.FSYNC_INTERVAL)


def test_cli_prints_a_summary(path, capsys):
    write(path, [payloads(7)])
    assert journal.main([str(path)]) == 0
    assert "7 records, sequence 1..7" in capsys.readouterr().out


# ---- replay through the matching core ---------------------------------------------------

def run_stream(venue, seed: int, batches: int, journal_: Journal | None = None) -> np.ndarray:
    """Check, journal, match ``batches`` batches of the stream; return the checked commands."""
    from journal_crash_driver import stream_batch
    done = []
    for k in range(batches):
        cmds = stream_batch(seed, k)
        venue.check(cmds)
        if journal_ is not None:
            journal_.append(cmds)
        venue.match(cmds)
        done.append(cmds)
    return np.concatenate(done)


def test_replay_rebuilds_the_same_books_and_risk_state(path):
    from journal_crash_driver import Venue
    from engine.commands import COMMAND_DTYPE
    live = Venue()
    with Journal.open(path, COMMAND_DTYPE) as j:
        checked = run_stream(live, seed=3, batches=120, journal_=j)
    assert live.book.live > 0 and (checked["risk"] != 0).any(), "the stream rests orders and trips risk"

    replica = Venue()
    contents = journal.replay(path, replica.replay, COMMAND_DTYPE, batch=1000)
    assert np.array_equal(contents.records["payload"], checked)
    assert replica.book.state_hash() == live.book.state_hash()
    for name in ("position", "open_buy", "open_sell", "last_trade"):
        assert np.array_equal(getattr(replica.risk, name), getattr(live.risk, name)), name
    assert replica.risk.orders() == live.risk.orders()


def test_a_venue_killed_mid_stream_loses_no_acknowledged_command(path):
    """SIGKILL a journaling venue mid-stream. Every command it acknowledged is in the
    journal; the journal is exactly a prefix of what it checked; restarting recovers
    the state of applying exactly that prefix and carries on from there."""
    from journal_crash_driver import Venue, stream_batch
    from engine.commands import COMMAND_DTYPE
    seed = 11
    driver = [sys.executable, str(Path(__file__).parent / "journal_crash_driver.py"), str(path), str(seed)]

    # A stream far longer than the test waits for: the kill always lands mid-stream.
    child = subprocess.Popen(driver + ["1000000", "--pause-ms", "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().startswith("recovered 0 ")
        acked = []
        while len(acked) < 25:
            line = child.stdout.readline()
            assert line.startswith("ack "), f"driver said {line!r}"
            acked.append(int(line.split()[1]))
        child.send_signal(signal.SIGKILL)
        acked += [int(line.split()[1]) for line in child.stdout if line.startswith("ack ")]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    survived = journal.read(path, COMMAND_DTYPE)
    n = len(survived.records)
    assert n >= max(acked), f"acknowledged up to sequence {max(acked)}, journal holds {n}"

    ends = np.cumsum([len(stream_batch(seed, k)) for k in range(n + 30)])
    batches = int(np.searchsorted(ends, n, side="right")) + 20    # the restart goes 20 batches further
    uninterrupted = Venue()
    checked = run_stream(uninterrupted, seed, batches)
    assert np.array_equal(survived.records["payload"], checked[:n]), "the journal is a prefix of the stream"
    prefix = Venue()
    prefix.replay(np.ascontiguousarray(checked[:n]))

    restarted = subprocess.run(driver + [str(batches)], capture_output=True, text=True, timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    lines = restarted.stdout.splitlines()
    assert lines[0] == f"recovered {n} {prefix.book.state_hash()}"
    assert lines[-1].startswith("done ")
    final_hash = lines[-1].split()[1]

    replica = Venue()
    total = journal.replay(path, replica.replay, COMMAND_DTYPE)
    assert len(total.records) == ends[batches - 1] and total.torn_offset is None
    assert replica.book.state_hash() == final_hash, "the continued journal replays to the final state"
    if n in set(ends.tolist()):    # killed between batches: the crash leaves no trace at all
        assert final_hash == uninterrupted.book.state_hash()
        assert np.array_equal(total.records["payload"], checked)


def test_a_restart_after_a_torn_write_recovers_the_whole_records_before_it(path):
    """A write cut inside a batch (and inside a record): the restart truncates the torn
    record, recovers the commands before it and resubmits the rest of that batch."""
    from journal_crash_driver import Venue, stream_batch
    from engine.commands import COMMAND_DTYPE
    seed = 5
    driver = [sys.executable, str(Path(__file__).parent / "journal_crash_driver.py"), str(path), str(seed)]
    subprocess.run(driver + ["30"], check=True, capture_output=True, timeout=120)
    ends = np.cumsum([len(stream_batch(seed, k)) for k in range(30)])
    n = int(ends[20]) - 1                                  # one command short of batch 21's end
    rec = journal.record_dtype(COMMAND_DTYPE).itemsize
    header_len = journal.read(path).header.header_len
    os.truncate(path, header_len + n * rec + rec // 3)

    checked = run_stream(Venue(), seed, 30)
    prefix = Venue()
    prefix.replay(np.ascontiguousarray(checked[:n]))
    restarted = subprocess.run(driver + ["30"], capture_output=True, text=True, timeout=120, check=True)
    assert restarted.stdout.splitlines()[0] == f"recovered {n} {prefix.book.state_hash()}"
    c = journal.read(path, COMMAND_DTYPE)
    assert len(c.records) == ends[-1] and c.torn_offset is None
    assert list(c.records["seq"]) == list(range(1, int(ends[-1]) + 1))
