"""DPDK receive and send rates: netio.dpdk (ours, driven from Python) against dpdk-testpmd.

Ours and testpmd use the same virtual device with the same traffic, take turns in the
same run (REPEATS times each, alternating), and run on the same CPU (RECEIVER_CPU:
ours pinned there, testpmd's forwarding lcore mapped there, its idle main lcore on
the other CPU); figures are medians. Both use bursts of 64 and 64-byte frames.
Rates are read between two points WINDOW_S apart after WARMUP_S: ours with its own
clock, testpmd with ``show port stats`` (Rx-pps/Tx-pps between two calls, timed by
testpmd's TSC). Two device set-ups:

- ``dpdk_*``/``testpmd_*`` (the headline): where DPDK alone is the work. Receive
  from ``net_pcap`` replaying one pcap without end (``infinite_rx=1``: the generator
  is the PMD copying the file's frames into mbufs), ours as the loop a netio
  application runs (rx_burst(64) + release) against ``--forward-mode=rxonly``;
  send into ``net_null``, ours looping tx_burst over one 64-frame burst (copied into
  fresh mbufs per call, as every tx_burst of a burst not received on the port is)
  against ``--forward-mode=txonly``.
- ``afpacket_*``: ``net_af_packet`` on the root end of a veth pair. Receive: the
  C generator tools/bench/c/gen.c floods from the namespace (pinned to the other
  CPU); send: IPv4/UDP frames to the namespace's MAC, which its kernel drops. The
  kernel's per-frame work (veth, packet socket rings) is most of the cost here
  and shares a 2-core machine with the generator, so these figures are noisy and
  bound by the kernel; ``afpacket_gen_pps`` is what the generator sent.

``fused_dpdk_*``: the burst-64 replay/null loops in C (tools/bench/c/dpdk_fused.c)
through DpdkPort.c_api(), netio's own burst code without Python per burst; its ratios
are against the burst-64 testpmd figures.
``b256_*``: the replay/null pair again with bursts of 256 on both sides, where ours
spends the same Python per call on four times the frames. ``*_ratio`` is ours / testpmd.
"""
from __future__ import annotations

import ctypes
import gc
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

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
    """The same loops in C (tools/bench/c/dpdk_fused.c) through DpdkPort.c_api()."""

    def __init__(self, workdir: Path):
        lib = str(workdir / "dpdk_fused.so")
        subprocess.run(["gcc", "-O2", "-march=x86-64-v2", "-shared", "-fPIC", "-I", str(CFFI_BUILD), "-o", lib,
                        str(HERE / "c/dpdk_fused.c")], check=True)
        self.lib = ctypes.CDLL(lib)
        self.lib.fused_rx_pps.restype = self.lib.fused_tx_pps.restype = ctypes.c_double
        self.lib.fused_rx_pps.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int64,
                                          ctypes.c_int64]
        self.lib.fused_tx_pps.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int64,
                                          ctypes.c_int64]

    def rx(self, spec: str) -> float:
        with _pinned(), DpdkPort(spec, **EAL) as port:
            return self.lib.fused_rx_pps(*port.c_api(), BURST, int(WARMUP_S * 1e9), int(WINDOW_S * 1e9))

    def tx(self, spec: str, frame: bytes) -> float:
        burst = Burst.of([frame] * BURST)
        with _pinned(), DpdkPort(spec, **EAL) as port:
            return self.lib.fused_tx_pps(*port.c_api(), burst.buffer.ctypes.data, burst.buffer.nbytes,
                                         burst.offsets.ctypes.data, burst.lengths.ctypes.data, BURST,
                                         int(WARMUP_S * 1e9), int(WINDOW_S * 1e9))


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


def _medians(runs: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in runs.items():
        out[name] = round(statistics.median(values))
    for prefix, reference in (("", ""), ("b256_", "b256_"), ("afpacket_", "afpacket_"), ("fused_", "")):
        for way in ("rx", "tx"):
            out[f"{prefix}{way}_ratio"] = round(out[f"{prefix}dpdk_{way}_pps"] / out[f"{reference}testpmd_{way}_pps"],
                                                3)
    return out


def run() -> dict:
    runs: dict[str, list[float]] = {k: [] for k in (
        "dpdk_rx_pps", "testpmd_rx_pps", "dpdk_tx_pps", "testpmd_tx_pps", "afpacket_dpdk_rx_pps",
        "afpacket_testpmd_rx_pps", "afpacket_dpdk_tx_pps", "afpacket_testpmd_tx_pps", "afpacket_gen_pps",
        "b256_dpdk_rx_pps", "b256_testpmd_rx_pps", "b256_dpdk_tx_pps", "b256_testpmd_tx_pps",
        "fused_dpdk_rx_pps", "fused_dpdk_tx_pps")}
    frame = _frame("02:00:00:00:00:02", "02:00:00:00:00:01")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "frames.pcap"
        wrpcap(str(pcap), [Ether(frame)] * 256)
        replay = f"net_pcap0,rx_pcap={pcap},infinite_rx=1"
        gen = str(Path(tmp) / "gen")
        subprocess.run(["gcc", "-O2", "-march=x86-64-v2", "-o", gen, str(HERE / "c/gen.c")], check=True)
        fused = Fused(Path(tmp))
        with VethNamespace("bdpdk") as veth_ns:
            veth = Veth(veth_ns, gen)
            for _ in range(REPEATS):
                runs["dpdk_rx_pps"].append(rx_ours(replay))
                runs["testpmd_rx_pps"].append(testpmd_rate(replay, "rxonly"))
                runs["dpdk_tx_pps"].append(tx_ours("net_null0", frame))
                runs["testpmd_tx_pps"].append(testpmd_rate("net_null0", "txonly"))
                runs["fused_dpdk_rx_pps"].append(fused.rx(replay))
                runs["fused_dpdk_tx_pps"].append(fused.tx("net_null0", frame))
                runs["b256_dpdk_rx_pps"].append(rx_ours(replay, 256))
                runs["b256_testpmd_rx_pps"].append(testpmd_rate(replay, "rxonly", burst_size=256))
                runs["b256_dpdk_tx_pps"].append(tx_ours("net_null0", frame, 256))
                runs["b256_testpmd_tx_pps"].append(testpmd_rate("net_null0", "txonly", burst_size=256))
                rate, sent = veth.rx_ours()
                runs["afpacket_dpdk_rx_pps"].append(rate)
                runs["afpacket_gen_pps"].append(sent)
                runs["afpacket_testpmd_rx_pps"].append(veth.rx_testpmd())
                runs["afpacket_dpdk_tx_pps"].append(veth.tx_ours())
                runs["afpacket_testpmd_tx_pps"].append(veth.tx_testpmd())
    return {**_medians(runs), "frame_bytes": FRAME_SIZE, "burst": BURST, "repeats": REPEATS,
            "window_s": WINDOW_S}
