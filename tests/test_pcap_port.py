"""The pcap port: pcap and pcapng read and written, checked against scapy and Wireshark's tools."""
from __future__ import annotations

import shutil
import struct
import subprocess
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter, rdpcap

from netio.pcap import DROP_TRUNCATED, PcapPort
from netio.port import Burst, PortError, TimestampSource, open_port

T0 = 1_700_000_000_123_456_789          # ns since the epoch, not a whole microsecond


def sample_frames(n: int = 12) -> list[bytes]:
    return [bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(dst="10.0.0.1") /
                  UDP(sport=1000 + i, dport=2000) / Raw(bytes([i]) * (i * 7 % 300)))
            for i in range(n)]


def stamped(frames: list[bytes], step_ns: int = 1_234_567) -> Burst:
    b = Burst.of(frames)
    ts = T0 + np.arange(len(frames), dtype=np.int64) * step_ns
    return Burst(b.buffer, b.offsets, b.lengths, ts, TimestampSource.CAPTURE)


def read_all(path, **kw) -> tuple[list[bytes], np.ndarray, PcapPort]:
    frames, stamps = [], []
    port = PcapPort(path, **kw)
    while not port.exhausted:
        b = port.rx_burst(5)
        frames += b.to_bytes()
        stamps.append(b.timestamps.copy())
        assert b.ts_source is TimestampSource.CAPTURE
    port.close()
    return frames, np.concatenate(stamps), port


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_write_then_read_is_byte_exact_with_nanosecond_stamps(tmp_path, fmt):
    frames = sample_frames()
    sent = stamped(frames)
    path = tmp_path / f"out.{fmt}"
    with PcapPort(path, mode="w", format=fmt) as w:
        assert w.tx_burst(sent) == len(frames)
    got, stamps, port = read_all(path)
    assert got == frames
    assert stamps.tolist() == sent.timestamps.tolist()
    assert port.stats().rx_packets == len(frames) and port.stats().drops == {}
    # the file read back and written again is the same file, byte for byte
    again = tmp_path / f"again.{fmt}"
    with PcapPort(path) as r, PcapPort(again, mode="w", format=fmt) as w:
        w.tx_burst(r.rx_burst(100))
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_files_we_write_read_the_same_in_scapy_and_tshark(tmp_path, fmt):
    frames = sample_frames(5)
    path = tmp_path / f"out.{fmt}"
    with PcapPort(path, mode="w", format=fmt) as w:
        w.tx_burst(stamped(frames))
    assert [bytes(p) for p in rdpcap(str(path))] == frames
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch",
                              "-e", "frame.len"], capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.strip().splitlines()]
        assert [int(length) for _, length in rows] == [len(f) for f in frames]
        assert rows[0][0].startswith("1700000000.123456789")


def test_tx_burst_without_capture_stamps_records_the_time_of_writing(tmp_path):
    path = tmp_path / "now.pcap"
    before = time.time_ns()
    with PcapPort(path, mode="w") as w:
        w.tx_burst(Burst.of(sample_frames(2)))     # TimestampSource.NONE: zeros are not times
    _, stamps, _ = read_all(path)
    assert (stamps >= before).all() and (stamps <= time.time_ns()).all()


@pytest.mark.parametrize("endianness,nano", [("<", False), (">", False), ("<", True), (">", True)])
def test_reads_classic_pcap_written_by_scapy_in_either_byte_order_and_resolution(tmp_path, endianness, nano):
    frames = sample_frames(6)
    path = tmp_path / "scapy.pcap"
    w = PcapWriter(str(path), linktype=1, endianness=endianness, nano=nano)
    for i, f in enumerate(frames):
        pkt = Ether(f)
        pkt.time = 1_700_000_000 + i * 0.25
        w.write(pkt)
    w.close()
    got, stamps, port = read_all(path)
    assert got == frames
    assert stamps.tolist() == [1_700_000_000_000_000_000 + i * 250_000_000 for i in range(6)]
    assert port.info.details["nanosecond"] is nano and port.info.details["linktype"] == 1


def test_reads_pcapng_written_by_scapy(tmp_path):
    frames = sample_frames(6)
    path = tmp_path / "scapy.pcapng"
    w = PcapNgWriter(str(path))
    for i, f in enumerate(frames):
        pkt = Ether(f)
        pkt.time = 1_700_000_000 + i * 0.5
        w.write(pkt)
    w.close()
    got, stamps, port = read_all(path)
    assert got == frames
    assert stamps.tolist() == [1_700_000_000_000_000_000 + i * 500_000_000 for i in range(6)]
    assert port.info.details["format"] == "pcapng"


@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap (Wireshark) is not installed")
@pytest.mark.parametrize("target,exact_ns", [("pcapng", True), ("nsecpcap", True), ("pcap", False)])
def test_reads_files_converted_by_editcap(tmp_path, target, exact_ns):
    frames = sample_frames(8)
    ours = tmp_path / "ours.pcap"
    with PcapPort(ours, mode="w") as w:
        w.tx_burst(stamped(frames))
    theirs = tmp_path / f"theirs.{target}"
    subprocess.run(["editcap", "-F", target, str(ours), str(theirs)], check=True, capture_output=True)
    got, stamps, _ = read_all(theirs)
    assert got == frames
    expected = stamped(frames).timestamps
    assert stamps.tolist() == (expected if exact_ns else expected // 1000 * 1000).tolist()


def pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_pcapng_interfaces_keep_their_own_tsresol_and_tsoffset(tmp_path):
    """Two interfaces: one in 2^-10 s units with a 100 s offset, one in microseconds."""
    shb = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb_bin = pcapng_block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 0x80 | 10) +
                           struct.pack("<HHq", 14, 8, 100) + struct.pack("<HH", 0, 0))
    idb_us = pcapng_block(1, struct.pack("<HHI", 1, 0, 0))
    f1, f2 = sample_frames(2)

    def epb(iface, units, frame):
        return pcapng_block(6, struct.pack("<IIIII", iface, units >> 32, units & 0xFFFFFFFF,
                                           len(frame), len(frame)) + frame)
    path = tmp_path / "two.pcapng"
    path.write_bytes(shb + idb_bin + idb_us + epb(0, 3 * 1024 + 512, f1) + epb(1, 2_000_001, f2))
    got, stamps, _ = read_all(path)
    assert got == [f1, f2]
    assert stamps.tolist() == [103_500_000_000, 2_000_001_000]


def test_recorded_pacing_hands_out_frames_no_earlier_than_recorded(tmp_path):
    frames = sample_frames(4)
    path = tmp_path / "paced.pcap"
    with PcapPort(path, mode="w") as w:
        w.tx_burst(stamped(frames, step_ns=60_000_000))          # 0, 60, 120, 180 ms
    port = PcapPort(path, pacing="recorded")
    first = port.rx_burst(64)
    start = time.monotonic()
    assert first.to_bytes() == frames[:1]                       # the rest is not due yet
    got = first.to_bytes()
    while len(got) < 4:
        got += port.rx_burst(64).to_bytes()
        time.sleep(0.002)
    elapsed = time.monotonic() - start
    assert got == frames
    assert elapsed >= 0.17
    port.close()


def test_loop_starts_again_after_the_last_record(tmp_path):
    frames = sample_frames(3)
    path = tmp_path / "loop.pcapng"
    with PcapPort(path, mode="w", format="pcapng") as w:
        w.tx_burst(stamped(frames))
    port = PcapPort(path, loop=True)
    got = []
    for _ in range(10):
        got += port.rx_burst(2).to_bytes()
    assert got[:9] == frames * 3 and not port.exhausted
    port.close()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_truncated_last_record_is_a_counted_drop_not_a_crash(tmp_path, fmt):
    frames = sample_frames(5)
    path = tmp_path / f"cut.{fmt}"
    with PcapPort(path, mode="w", format=fmt) as w:
        w.tx_burst(stamped(frames))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    got, _, port = read_all(path)
    assert got == frames[:4]
    assert port.stats().drops == {DROP_TRUNCATED: 1}
    assert port.info.details["truncated_at"] == len(data) - (16 if fmt == "pcap" else 32) - \
        len(frames[4]) - (-len(frames[4]) % 4 if fmt == "pcapng" else 0)


def test_a_corrupt_record_raises_naming_its_offset_after_the_good_ones(tmp_path):
    frames = sample_frames(4)
    path = tmp_path / "bad.pcap"
    with PcapPort(path, mode="w") as w:
        w.tx_burst(stamped(frames))
    data = bytearray(path.read_bytes())
    third = 24 + sum(16 + len(f) for f in frames[:2])
    data[third + 8:third + 12] = struct.pack("<I", 0x7FFFFFFF)   # absurd captured length
    path.write_bytes(bytes(data))
    port = PcapPort(path)
    assert port.rx_burst(64).to_bytes() == frames[:2]
    with pytest.raises(PortError, match=f"offset {third}.*256 MiB"):
        port.rx_burst(64)
    port.close()


def test_pcapng_with_a_broken_block_length_names_the_offset(tmp_path):
    path = tmp_path / "bad.pcapng"
    with PcapPort(path, mode="w", format="pcapng") as w:
        w.tx_burst(stamped(sample_frames(1)))
    data = bytearray(path.read_bytes())
    data[28 + 32 + 4:28 + 32 + 8] = struct.pack("<I", 13)          # the EPB's length, not a multiple of 4
    path.write_bytes(bytes(data))
    with pytest.raises(PortError, match="offset 60: the block's total length"):
        PcapPort(path).rx_burst()


def test_not_a_capture_or_missing_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello, world, not a capture")
    with pytest.raises(PortError, match="neither pcap nor pcapng: magic 0x68656c6c at offset 0"):
        PcapPort(junk)
    with pytest.raises(PortError, match="no such capture file"):
        PcapPort(tmp_path / "absent.pcap")
    short = tmp_path / "short.pcap"
    short.write_bytes(struct.pack("<I", 0xA1B2C3D4) + b"\0" * 4)
    with pytest.raises(PortError, match="header at offset 0 is cut short"):
        PcapPort(short)


def test_a_large_file_is_indexed_in_chunks_and_bursts_are_views_of_the_mapping(tmp_path):
    n = 150_000                                            # more than two index chunks
    frame = sample_frames(2)[1]
    path = tmp_path / "big.pcap"
    with PcapPort(path, mode="w") as w:
        burst = Burst.of([frame] * 1000)
        stamps = Burst(burst.buffer, burst.offsets, burst.lengths,
                       T0 + np.arange(1000, dtype=np.int64), TimestampSource.CAPTURE)
        for _ in range(n // 1000):
            w.tx_burst(stamps)
    port = open_port(str(path), backend="pcap")
    total, first = 0, None
    while not port.exhausted:
        b = port.rx_burst(4096)
        if first is None:
            first = b
            assert isinstance(b.buffer, np.memmap) and str(b.buffer.filename) == str(path.resolve())
            assert bytes(b.frame(0)) == frame
        total += len(b)
    assert total == n and port.stats().rx_packets == n
    port.close()


def test_a_port_opened_for_reading_refuses_to_send_and_vice_versa(tmp_path):
    path = tmp_path / "x.pcap"
    with PcapPort(path, mode="w") as w:
        with pytest.raises(PortError, match="opened for writing"):
            w.rx_burst()
    with PcapPort(path) as r:
        with pytest.raises(PortError, match="opened for reading"):
            r.tx_burst(Burst.of([b"x"]))
        assert len(r.rx_burst()) == 0 and r.exhausted


def test_a_capture_replays_through_the_stack_straight_from_the_mapping(tmp_path):
    """Bursts of a read-only mapped file go through netio.stack without a copy."""
    from netio.stack import Stack
    frames = [bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") /
                    IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=5, dport=9000) / Raw(b"m%d" % i))
              for i in range(10)]
    path = tmp_path / "replay.pcapng"
    with PcapPort(path, mode="w", format="pcapng") as w:
        w.tx_burst(stamped(frames))
    stack = Stack("02:00:00:00:00:01", "10.0.0.1")
    stack.bind(9000)
    with PcapPort(path) as port:
        burst = port.rx_burst(64)
        result = stack.process(burst)
    assert [bytes(p) for p in result.payloads()] == [b"m%d" % i for i in range(10)]
    assert result.payload(0).base is not None and not result.payload(0).flags.writeable


def _valid_files() -> dict[str, bytes]:
    import tempfile
    files = {}
    with tempfile.TemporaryDirectory() as d:
        for fmt in ("pcap", "pcapng"):
            path = f"{d}/f.{fmt}"
            with PcapPort(path, mode="w", format=fmt) as w:
                w.tx_burst(stamped(sample_frames(4)))
            files[fmt] = open(path, "rb").read()
    return files


VALID_FILES = _valid_files()


@settings(deadline=None, max_examples=150)
@given(fmt=st.sampled_from(["pcap", "pcapng"]),
       edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 2000))
def test_damaged_files_give_frames_or_a_clear_error_never_a_crash(tmp_path_factory, fmt, edits, cut):
    data = bytearray(VALID_FILES[fmt])
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    path = tmp_path_factory.mktemp("fuzz") / f"f.{fmt}"
    data = bytes(data[:max(cut, 4)])
    path.write_bytes(data)
    try:
        port = PcapPort(path)
        for _ in range(10):
            burst = port.rx_burst(64)
            for i in range(len(burst)):
                assert burst.offsets[i] + burst.lengths[i] <= len(data)
        port.close()
    except PortError as e:
        assert "offset" in str(e) or "neither pcap" in str(e)


def test_frames_cut_by_the_snaplen_are_delivered_as_captured_and_counted(tmp_path):
    frames = sample_frames(4)
    path = tmp_path / "snap.pcap"
    with PcapPort(path, mode="w", snaplen=60) as w:
        w.tx_burst(stamped(frames))
    got, _, port = read_all(path)
    assert got == [f[:60] for f in frames]
    assert port.info.details["cut_by_snaplen"] == sum(len(f) > 60 for f in frames) > 0
    assert [len(p) for p in rdpcap(str(path))] == [min(len(f), 60) for f in frames]


def test_kernel_tai_stamps_are_written_as_utc(tmp_path, monkeypatch):
    """The XDP program stamps in CLOCK_TAI; a capture's stamps are UTC, the kernel's TAI offset
    (37 s once ptp4l or chrony has set it) earlier."""
    monkeypatch.setattr("netio.pcap.tai_offset_ns", lambda: 37_000_000_000)
    frames = sample_frames(2)
    b, tai = Burst.of(frames), np.array([T0 + 37_000_000_000, T0 + 37_000_001_000], np.int64)
    path = tmp_path / "tai.pcapng"
    with PcapPort(path, mode="w", format="pcapng") as w:
        w.tx_burst(Burst(b.buffer, b.offsets, b.lengths, tai, TimestampSource.KERNEL_TAI))
    _, stamps, _ = read_all(path)
    assert stamps.tolist() == [T0, T0 + 1000]
