"""DPDK receive and send rates: netio.dpdk against dpdk-testpmd on the same virtual devices.

What the headline ``dpdk_rx_pps``/``dpdk_tx_pps`` measure: netio's DPDK burst path driven
from C, the way a netio application's fused loop runs a port (the venue's fused path does
the same on AF_XDP): tools/bench/c/dpdk_fused.c calls the port's public C table
(DpdkPort.c_api(), cffi_build/dpdk_api.h) in a loop, bursts of 64, 64-byte frames.
``py_dpdk_*`` is the same loop in Python (port.rx_burst + port.release, port.tx_burst),
which spends about 1 µs of Python per burst on top; ``b256_py_dpdk_*`` is that Python
loop with bursts of 256 (against testpmd with bursts of 256), the same Python spread over
four times the frames. ``*_ratio`` is ours / testpmd for each.

Per frame, ours does at least what testpmd does:

- receive (against ``--forward-mode=rxonly``): both receive from ``net_pcap`` replaying
  one pcap without end (``infinite_rx=1``: the generator is the PMD copying the file's
  frames into fresh mbufs) and free the mbufs; ours also fills the burst's offsets,
  lengths and stamps and counts frames and bytes.
- send (against ``--forward-mode=txonly``): both take fresh mbufs from the pool, write a
  frame into each and send it into ``net_null`` (which frees it). testpmd 22.11 gets the
  mbufs raw (rte_mempool_get_bulk) and copies its 42 bytes of Ethernet/IPv4/UDP headers
  into each (the payload bytes are left as they are); ours gets them raw too but resets
  every mbuf (rte_pktmbuf_reset, as rte_pktmbuf_alloc_bulk does), copies the whole
  64-byte frame from the caller's burst and checks each frame's bounds first
  (DpdkPort.tx_burst's copy path).

Ours and testpmd take turns in the same run (REPEATS times each, alternating), on the
same CPU (RECEIVER_CPU: ours pinned there, testpmd's forwarding lcore mapped there, its
idle main lcore on the other CPU); figures are medians. Rates are read between two
points WINDOW_S apart after WARMUP_S: ours with its own clock, testpmd with ``show port
stats`` (Rx-pps/Tx-pps between two calls, timed by testpmd's TSC).

``*_instr_per_frame``: instructions per frame under callgrind (stable where the rates
are noisy): ours for the C loop of the headline (CALLBURSTS bursts, counted from the
loop's first to last instruction), testpmd for its forwarding lcore's thread over a
run of CALLGRIND_S seconds (its start-up wait is a blocking read: no instructions).

``afpacket_*``: ``net_af_packet`` on the root end of a veth pair, ours from the Python
loop. Receive: the C generator tools/bench/c/gen.c floods from the namespace (pinned to
the other CPU); send: IPv4/UDP frames to the namespace's MAC, which its kernel drops.
The kernel's per-frame work (veth, packet socket rings) is most of the cost here and
shares a 2-core machine with the generator, so these figures are noisy and bound by the
kernel; ``afpacket_gen_pps`` is what the generator sent.
"""
from __future__ import annotations

import ctypes
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netio.dpdk import RUNTIME_DIR, DpdkPort
from netio.netns import VethNamespace
from netio.port import Burst

HERE = Path(__file__).resolve().parent
CFFI_BUILD = HERE.parent.parent / "cffi_build"
RECEIVER_CPU, GENERATOR_CPU = 0, 1
FRAME_SIZE = 64
BURST = 64
WINDOW_S = 1.0
WARMUP_S = 0.4
REPEATS = 5
CALLBURSTS = 5000          # bursts of ours under callgrind
CALLGRIND_S = 4.0          # seconds of testpmd forwarding under callgrind
EAL = {"file_prefix": f"bench-dpdk-{os.getpid()}", "memory_mb": 256}
TESTPMD_EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-telemetry", "--log-level", "lib.eal:warning",
               # lcore 0 (testpmd's main, mostly idle) on the other CPU, lcore 1 forwards on RECEIVER_CPU
               f"--lcores=0@{GENERATOR_CPU},1@{RECEIVER_CPU}"]


class _pinned:
    """The body runs on RECEIVER_CPU without the cyclic garbage collector, as a netio application would."""

    def __enter__(self):
        self.before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {RECEIVER_CPU})
        gc.disable()

    def __exit__(self, *exc):
        gc.enable()
        os.sched_setaffinity(0, self.before)


def _frame(dst: str, src: str) -> bytes:
    # scapy is imported here, not above: the callgrind driver imports this module under valgrind
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    frame = bytes(Ether(dst=dst, src=src) / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=9, dport=9)
                  / Raw(bytes(22)))
    assert len(frame) == FRAME_SIZE
    return frame


# -- ours ------------------------------------------------------------------------------------
def rx_ours(spec: str, burst_size: int = BURST) -> float:
    with _pinned(), DpdkPort(spec, **EAL) as port:
        rx, release, clock = port.rx_burst, port.release, time.perf_counter
        deadline = clock() + 10
        while not len(burst := rx(burst_size)):
            if clock() > deadline:
                raise RuntimeError(f"no frames arrived on {spec}")
        release(burst)
        count_from = clock() + WARMUP_S
        while clock() < count_from:
            release(rx(burst_size))
        start, end, counted = clock(), count_from + WINDOW_S, 0
        while (t := clock()) < end:
            burst = rx(burst_size)
            counted += len(burst)
            release(burst)
        return counted / (t - start)


def tx_ours(spec: str, frame: bytes, burst_size: int = BURST) -> float:
    burst = Burst.of([frame] * burst_size)
    with _pinned(), DpdkPort(spec, **EAL) as port:
        tx, clock = port.tx_burst, time.perf_counter
        count_from = clock() + WARMUP_S
        while clock() < count_from:
            tx(burst)
        start, end, sent = clock(), count_from + WINDOW_S, 0
        while (t := clock()) < end:
            sent += tx(burst)
        return sent / (t - start)


class Fused:
    """The loops in C (tools/bench/c/dpdk_fused.c) through DpdkPort.c_api()."""

    def __init__(self, workdir: Path):
        self.path = str(workdir / "dpdk_fused.so")
        subprocess.run(["gcc", "-O2", "-march=x86-64-v2", "-shared", "-fPIC", "-I", str(CFFI_BUILD), "-o", self.path,
                        str(HERE / "c/dpdk_fused.c")], check=True)
        self.lib = _load_fused(self.path)

    def rx(self, spec: str) -> float:
        with _pinned(), DpdkPort(spec, **EAL) as port:
            return self.lib.fused_rx_pps(*port.c_api(), BURST, int(WARMUP_S * 1e9), int(WINDOW_S * 1e9))

    def tx(self, spec: str, frame: bytes) -> float:
        burst = Burst.of([frame] * BURST)
        with _pinned(), DpdkPort(spec, **EAL) as port:
            return self.lib.fused_tx_pps(*port.c_api(), *_c_frames(burst), BURST, int(WARMUP_S * 1e9),
                                         int(WINDOW_S * 1e9))

    def instr_per_frame(self, rx_spec: str, tx_spec: str, frame: bytes) -> tuple[float, float]:
        """Instructions per frame of the rx and tx loops under callgrind (CALLBURSTS bursts each)."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            # one BLAS thread: numpy's spin-waiting helpers would add their instructions to the loop's
            run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                  "-c", CALLGRIND_DRIVER, self.path, rx_spec, tx_spec, frame.hex()],
                                 check=True, capture_output=True, text=True, cwd=HERE.parent.parent,
                                 env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
            rx_frames, tx_frames = map(int, run.stdout.split())
            dumps = dict(_callgrind_dump(f) for f in Path(tmp).glob("callgrind.out.*"))
        return dumps["fused_rx_count"] / rx_frames, dumps["fused_tx_count"] / tx_frames


def _callgrind_dump(path: Path) -> tuple[str, int]:
    """(what triggered the dump, its instruction count) of one callgrind output file."""
    text = path.read_text()
    trigger = re.search(r"^desc: Trigger: (?:Client Request: )?(.*)$", text, re.MULTILINE).group(1)
    return trigger.strip(), int(re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE).group(1))


def _load_fused(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.fused_rx_pps.restype = lib.fused_tx_pps.restype = ctypes.c_double
    lib.fused_rx_count.restype = lib.fused_tx_count.restype = ctypes.c_int64
    rx = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int64]
    tx = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p,
          ctypes.c_uint32, ctypes.c_int64]
    lib.fused_rx_pps.argtypes, lib.fused_rx_count.argtypes = rx + [ctypes.c_int64], rx
    lib.fused_tx_pps.argtypes, lib.fused_tx_count.argtypes = tx + [ctypes.c_int64], tx
    return lib


def _c_frames(burst: Burst) -> tuple[int, int, int, int]:
    """buffer, its size, offsets, lengths of ``burst`` as C addresses (the burst must outlive their use)."""
    return burst.buffer.ctypes.data, burst.buffer.nbytes, burst.offsets.ctypes.data, burst.lengths.ctypes.data


# Runs under callgrind: the C loops count their own instructions (dpdk_fused.c dumps them).
CALLGRIND_DRIVER = """
import os, sys
from netio.dpdk import DpdkPort
from netio.port import Burst
from tools.bench.dpdk import BURST, CALLBURSTS, _c_frames, _load_fused
lib, rx_spec, tx_spec, frame = sys.argv[1], sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])
lib = _load_fused(lib)
eal = {"file_prefix": f"bench-dpdk-cg-{os.getpid()}", "memory_mb": 256}
with DpdkPort(rx_spec, **eal) as port:
    rx = lib.fused_rx_count(*port.c_api(), BURST, CALLBURSTS)
burst = Burst.of([frame] * BURST)
with DpdkPort(tx_spec, **eal) as port:
    tx = lib.fused_tx_count(*port.c_api(), *_c_frames(burst), BURST, CALLBURSTS)
print(rx, tx)
"""


# -- testpmd ---------------------------------------------------------------------------------
def _show_stats(pmd: subprocess.Popen) -> str:
    """testpmd's port statistics now (its Rx-pps/Tx-pps are the rates since the last call)."""
    pmd.stdin.write("show port stats 0\n")
    pmd.stdin.flush()
    out = []
    for line in pmd.stdout:
        out.append(line)
        if "Tx-pps" in line:
            return "".join(out)
    raise RuntimeError(f"dpdk-testpmd ended: {''.join(out)[-2000:]}")


_serial = iter(range(1_000_000))


def testpmd_rate(spec: str, mode: str, dst_mac: str = "02:00:00:00:00:02", traffic=None,
                 burst_size: int = BURST) -> float:
    """testpmd's own pps (Rx-pps for rxonly, Tx-pps for txonly) over WINDOW_S after WARMUP_S."""
    prefix = f"bench-testpmd-{os.getpid()}-{next(_serial)}"
    # stdbuf: testpmd block-buffers stdout into a pipe, and the stats are read as they come
    pmd = subprocess.Popen(["stdbuf", "-oL", "dpdk-testpmd", *TESTPMD_EAL, f"--file-prefix={prefix}",
                            f"--vdev={spec}", "--", "-i", f"--forward-mode={mode}", f"--burst={burst_size}",
                            "--total-num-mbufs=8192", f"--txpkts={FRAME_SIZE}", f"--eth-peer=0,{dst_mac}"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           bufsize=1)
    source = None
    try:
        pmd.stdin.write("start\n")
        _show_stats(pmd)          # forwarding has started once this answers
        source = traffic() if traffic else None
        time.sleep(WARMUP_S)
        _show_stats(pmd)
        time.sleep(WINDOW_S)
        out = _show_stats(pmd)
        pmd.communicate("stop\nquit\n", timeout=30)
    finally:
        if pmd.poll() is None:
            pmd.kill()
            pmd.wait()
        if source is not None:
            source.communicate(timeout=60)
        shutil.rmtree(os.path.join(RUNTIME_DIR, prefix), ignore_errors=True)
    key = "Rx-pps" if mode == "rxonly" else "Tx-pps"
    return float(re.search(rf"{key}:\s+(\d+)", out).group(1))


def testpmd_instr_per_frame(spec: str, mode: str) -> float:
    """Instructions per frame of testpmd's forwarding lcore (its own thread) under callgrind,
    over CALLGRIND_S seconds of forwarding (fair scheduling, or the busy lcore starves the
    command line and "stop" comes late)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        prefix = f"bench-testpmd-cg-{os.getpid()}"
        pmd = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes", "--fair-sched=yes",
                                f"--callgrind-out-file={out}", "dpdk-testpmd", *TESTPMD_EAL,
                                f"--file-prefix={prefix}", f"--vdev={spec}", "--", "-i", f"--forward-mode={mode}",
                                f"--burst={BURST}", "--total-num-mbufs=8192", f"--txpkts={FRAME_SIZE}"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            pmd.stdin.write("start\n")
            pmd.stdin.flush()
            time.sleep(CALLGRIND_S)
            said, _ = pmd.communicate("stop\nquit\n", timeout=120)
        finally:
            if pmd.poll() is None:
                pmd.kill()
                pmd.wait()
            shutil.rmtree(os.path.join(RUNTIME_DIR, prefix), ignore_errors=True)
        key = "RX-packets" if mode == "rxonly" else "TX-packets"
        frames = max(int(n) for n in re.findall(rf"{key}:\s+(\d+)", said))
        # the forwarding lcore: of the threads besides the main one (-01, start-up and command
        # line), the one that ran the most instructions (the others wait in blocking reads)
        return max(_callgrind_dump(f)[1] for f in Path(tmp).glob("callgrind.out-*")
                   if not f.name.endswith("-01")) / frames


# -- net_af_packet on a veth pair --------------------------------------------------------------
class Veth:
    def __init__(self, veth: VethNamespace, gen: str):
        self.v, self.gen = veth, gen
        self.spec = f"net_af_packet0,iface={veth.host_if}"

    def flood(self) -> subprocess.Popen:
        v = self.v
        return v.popen(["taskset", "-c", str(GENERATOR_CPU), self.gen, "flood", v.ns_if, v.host_mac, v.ns_mac,
                        f"{WARMUP_S + WINDOW_S + 1.5:.1f}", str(FRAME_SIZE)], stdout=subprocess.PIPE, text=True)

    def rx_ours(self) -> tuple[float, float]:
        flood = self.flood()
        try:
            rate = rx_ours(self.v.host_if)
        finally:
            out, _ = flood.communicate(timeout=60)
        sent, ns = map(int, out.split())
        return rate, sent / ns * 1e9

    def rx_testpmd(self) -> float:
        return testpmd_rate(self.spec, "rxonly", traffic=self.flood)

    def tx_ours(self) -> float:
        return tx_ours(self.v.host_if, _frame(self.v.ns_mac, self.v.host_mac))

    def tx_testpmd(self) -> float:
        return testpmd_rate(self.spec, "txonly", dst_mac=self.v.ns_mac)


# (ratio name prefix, ours, testpmd) for every ``*_ratio`` figure
_PAIRS = (("", "dpdk", "testpmd"), ("py_", "py_dpdk", "testpmd"), ("b256_py_", "b256_py_dpdk", "b256_testpmd"),
          ("afpacket_", "afpacket_dpdk", "afpacket_testpmd"))


def _medians(runs: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {name: round(statistics.median(values)) for name, values in runs.items()}
    for prefix, ours, reference in _PAIRS:
        for way in ("rx", "tx"):
            out[f"{prefix}{way}_ratio"] = round(out[f"{ours}_{way}_pps"] / out[f"{reference}_{way}_pps"], 3)
    return out


def run() -> dict:
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    runs: dict[str, list[float]] = {f"{side}_{way}_pps": [] for _, *sides in _PAIRS for side in sides
                                    for way in ("rx", "tx")}
    runs["afpacket_gen_pps"] = []
    frame = _frame("02:00:00:00:00:02", "02:00:00:00:00:01")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "frames.pcap"
        wrpcap(str(pcap), [Ether(frame)] * 256) 
        replay = f"net_pcap0,rx_pcap={pcap},infinite_rx=1"
        gen = str(Path(tmp) / "gen")
        subprocess.run(["gcc", "-O2", "-march=x86-64-v2", "-o", gen, str(HERE / "c/gen.c")], check=True)
        fused = Fused(Path(tmp))
        rx_instr, tx_instr = fused.instr_per_frame(replay, "net_null0", frame)
        instr = {"dpdk_rx_instr_per_frame": round(rx_instr, 1),
                 "testpmd_rx_instr_per_frame": round(testpmd_instr_per_frame(replay, "rxonly"), 1),
                 "dpdk_tx_instr_per_frame": round(tx_instr, 1),
                 "testpmd_tx_instr_per_frame": round(testpmd_instr_per_frame("net_null0", "txonly"), 1)}
        with VethNamespace("bdpdk") as veth_ns:
            veth = Veth(veth_ns, gen)
            for _ in range(REPEATS):
                runs["dpdk_rx_pps"].append(fused.rx(replay))
                runs["testpmd_rx_pps"].append(testpmd_rate(replay, "rxonly"))
                runs["dpdk_tx_pps"].append(fused.tx("net_null0", frame))
                runs["testpmd_tx_pps"].append(testpmd_rate("net_null0", "txonly"))
                runs["py_dpdk_rx_pps"].append(rx_ours(replay))
                runs["py_dpdk_tx_pps"].append(tx_ours("net_null0", frame))
                runs["b256_py_dpdk_rx_pps"].append(rx_ours(replay, 256))
                runs["b256_testpmd_rx_pps"].append(testpmd_rate(replay, "rxonly", burst_size=256))
                runs["b256_py_dpdk_tx_pps"].append(tx_ours("net_null0", frame, 256))
                runs["b256_testpmd_tx_pps"].append(testpmd_rate("net_null0", "txonly", burst_size=256))
                rate, sent = veth.rx_ours()
                runs["afpacket_dpdk_rx_pps"].append(rate)
                runs["afpacket_gen_pps"].append(sent)
                runs["afpacket_testpmd_rx_pps"].append(veth.rx_testpmd())
                runs["afpacket_dpdk_tx_pps"].append(veth.tx_ours())
                runs["afpacket_testpmd_tx_pps"].append(veth.tx_testpmd())
    return {**_medians(runs), **instr, "frame_bytes": FRAME_SIZE, "burst": BURST, "repeats": REPEATS,
            "window_s": WINDOW_S}
