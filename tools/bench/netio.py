"""netio receive rate and echo round trip: AF_XDP (ours) against a C libxdp reference.

One veth pair, one traffic generator (tools/bench/c/gen.c: AF_PACKET sendmmsg with
PACKET_QDISC_BYPASS, in the namespace, pinned to CPU 1); the receivers are pinned to
CPU 0 and take turns in the same run:

- ``xdp``: netio.xdp.XdpPort driven from Python (rx_burst(64) + release per loop);
- ``c_ref``: tools/bench/c/xdp_ref.c, libxdp used directly with the same set-up;
- ``xdp_generic``, ``c_ref_generic``: the same two in generic (SKB) XDP mode;
- ``socket``: netio.packet_socket.PacketSocketPort (AF_PACKET TPACKET_V3), when present.

Receive rate: each receiver counts frames for WINDOW_S after a 0.3 s warm-up while the
generator floods 64-byte frames; medians over REPEATS alternating runs. Echo: the same
generator binary ping-pongs one frame at a time off an echo server (swap the MACs,
send back) and times each round trip; percentiles over every sample of every run.
The echo servers are ``xdp`` (the Python loop: rx_burst, numpy MAC swap, tx_burst,
release), ``c_ref``, and ``xdp_fused`` (netio's port driven by a C loop through
XdpPort.c_api(), tools/bench/c/fused_echo.c). ``xdp_python_*_us`` are what single
Python-side calls cost, to read the gap between the Python loop and C.
``*_rx_of_generated`` is the share of the generator's frames a receiver took in; on a
shared 2-core machine receivers fall behind when other work takes their CPU for a few
milliseconds (2048 receive frames last ~10 ms at these rates), and the kernel counts
those frames as fill-ring drops (``xdp_rx_drops_total``).
"""
from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from netio import iface
from netio.netns import VethNamespace
from netio.port import Burst
from netio.xdp import XdpPort

HERE = Path(__file__).resolve().parent
CFFI_BUILD = HERE.parent.parent / "cffi_build"
RECEIVER_CPU, GENERATOR_CPU = "0", "1"
MODE = "native"
FRAME_SIZE = 64
WINDOW_S = 1.0
WARMUP_S = 0.3
REPEATS = 5
ECHO_REPEATS = 3
ECHO_PROBES = 20000
BURST = 64


def _compile(workdir: Path) -> tuple[str, str, str]:
    gen, ref, fused = str(workdir / "gen"), str(workdir / "xdp_ref"), str(workdir / "fused_echo.so")
    cc = ["gcc", "-O2", "-march=x86-64-v2", "-Wall"]
    subprocess.run([*cc, "-o", gen, str(HERE / "c/gen.c")], check=True)
    subprocess.run([*cc, "-o", ref, str(HERE / "c/xdp_ref.c"), "-lxdp", "-lbpf"], check=True)
    subprocess.run([*cc, "-shared", "-fPIC", "-I", str(CFFI_BUILD), "-o", fused, str(HERE / "c/fused_echo.c")],
                   check=True)
    return gen, ref, fused


class Bench:
    def __init__(self, veth: VethNamespace, gen: str, ref: str, fused: str):
        self.veth, self.gen, self.ref = veth, gen, ref
        self.fused = ctypes.CDLL(fused).fused_echo
        self.fused.restype = ctypes.c_int64
        u64 = ctypes.POINTER(ctypes.c_uint64)
        self.fused.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_int64, ctypes.c_int64, u64, ctypes.c_uint64, u64]

    # -- the generator ----------------------------------------------------------------------
    def _flood(self) -> subprocess.Popen:
        v = self.veth
        return v.popen(["taskset", "-c", GENERATOR_CPU, self.gen, "flood", v.ns_if, v.host_mac, v.ns_mac,
                        f"{WARMUP_S + WINDOW_S + 0.7:.1f}", str(FRAME_SIZE)],
                       stdout=subprocess.PIPE, text=True)

    @staticmethod
    def _sent_pps(flood: subprocess.Popen) -> float:
        out, _ = flood.communicate(timeout=30)
        sent, ns = map(int, out.split())
        return sent / ns * 1e9

    # -- receive rate -----------------------------------------------------------------------
    def rx_port(self, open_port) -> tuple[float, float, int]:
        """Frames/s that a Port received in the window, the generator's rate, and drops."""
        with _pinned(RECEIVER_CPU), open_port() as port:
            flood = self._flood()
            try:
                rate = _count_window(port)
            finally:
                sent = self._sent_pps(flood)
            drops = sum(port.stats().drops.values())
        return rate, sent, drops

    def rx_ref(self, mode: str = MODE) -> tuple[float, float, int]:
        v = self.veth
        ref = subprocess.Popen(["taskset", "-c", RECEIVER_CPU, self.ref, "rx", v.host_if, mode, str(WINDOW_S)],
                               stdout=subprocess.PIPE, text=True)
        try:
            if ref.stdout.readline().strip() != "ready":
                raise RuntimeError(f"xdp_ref did not start: {ref.communicate()}")
            flood = self._flood()
            out, _ = ref.communicate(timeout=30)
            sent = self._sent_pps(flood)
        finally:
            ref.kill()
            ref.wait()
        counted, ns = map(int, out.split())
        return counted / ns * 1e9, sent, -1

    # -- echo round trip --------------------------------------------------------------------
    def _client(self, out_file) -> subprocess.Popen:
        v = self.veth
        return v.popen(["taskset", "-c", GENERATOR_CPU, self.gen, "rtt", v.ns_if, v.host_mac, v.ns_mac,
                        str(ECHO_PROBES), str(FRAME_SIZE)], stdout=out_file, stderr=subprocess.DEVNULL)

    def echo_ours(self) -> np.ndarray:
        with _pinned(RECEIVER_CPU), XdpPort(self.veth.host_if, xdp_mode=MODE) as port, \
                tempfile.TemporaryFile("w+") as out:
            client = self._client(out)
            _echo_loop(port, client)
            out.seek(0)
            return np.loadtxt(out, dtype=np.int64, ndmin=1)

    def echo_fused(self) -> np.ndarray:
        """netio's port driven by a C loop through XdpPort.c_api() (tools/bench/c/fused_echo.c)."""
        with _pinned(RECEIVER_CPU), XdpPort(self.veth.host_if, xdp_mode=MODE) as port, \
                tempfile.TemporaryFile("w+") as out:
            port_addr, api_addr = port.c_api()
            client = self._client(out)
            self.fused(port_addr, api_addr, port.umem.ctypes.data, port.umem.nbytes, 500_000_000, 120_000_000_000,
                       None, 0, ctypes.byref(ctypes.c_uint64()))     # no walks kept: the client times it
            client.wait(timeout=30)
            out.seek(0)
            return np.loadtxt(out, dtype=np.int64, ndmin=1)

    def echo_ref(self) -> np.ndarray:
        v = self.veth
        ref = subprocess.Popen(["taskset", "-c", RECEIVER_CPU, self.ref, "echo", v.host_if, MODE, "60"],
                               stdout=subprocess.PIPE, text=True)
        try:
            if ref.stdout.readline().strip() != "ready":
                raise RuntimeError(f"xdp_ref did not start: {ref.communicate()}")
            with tempfile.TemporaryFile("w+") as out:
                self._client(out).wait(timeout=120)
                out.seek(0)
                return np.loadtxt(out, dtype=np.int64, ndmin=1)
        finally:
            ref.terminate()
            ref.wait(timeout=10)


class _pinned:
    """Run the body on one CPU (the receiver's) without the cyclic garbage collector,
    as a latency-minded netio application would, then go back to how things were."""

    def __init__(self, cpu: str):
        self.cpu = {int(cpu)}

    def __enter__(self):
        self.before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpu)
        gc.disable()

    def __exit__(self, *exc):
        gc.enable()
        os.sched_setaffinity(0, self.before)


def _python_costs(host_if: str) -> dict[str, float]:
    """What the Python side of one echo costs, in microseconds, on an idle port."""
    with _pinned(RECEIVER_CPU), XdpPort(host_if, xdp_mode=MODE) as port:
        frame = np.zeros(FRAME_SIZE, np.uint8)
        frame[:6], frame[6:12] = 2, 4      # to a MAC nobody has: the echo goes nowhere
        burst = Burst.of([frame])
        calls = 20000
        costs = {
            "empty_rx_burst": timeit.timeit(lambda: port.rx_burst(BURST), number=calls),
            "mac_swap_numpy": timeit.timeit(lambda: _swap_macs(burst), number=calls),
            "tx_burst_1_frame": timeit.timeit(lambda: port.tx_burst(burst), number=calls),
        }
    return {f"xdp_python_{name}_us": round(total / calls * 1e6, 2) for name, total in costs.items()}


def _count_window(port) -> float:
    """The loop a netio application runs: poll a burst, hand it back; frames/s over the window."""
    rx, release, clock = port.rx_burst, port.release, time.perf_counter
    deadline = clock() + 10
    while not len(burst := rx(BURST)):
        if clock() > deadline:
            raise RuntimeError("no frames arrived from the generator")
    release(burst)
    count_from = clock() + WARMUP_S
    end = count_from + WINDOW_S
    counted = 0
    while True:
        burst = rx(BURST)
        n = len(burst)
        if n:
            release(burst)
        t = clock()
        if t >= count_from:
            counted += n
            if t > end:
                return counted / (t - count_from)


_MAC_BYTES = np.arange(12)
_SWAPPED = np.array([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5])


def _swap_macs(burst: Burst) -> None:
    """Swap destination and source MAC of every frame of the burst in place (one numpy pass)."""
    offsets = burst.offsets[:, None]
    burst.buffer[offsets + _MAC_BYTES] = burst.buffer[offsets + _SWAPPED]


def _echo_loop(port, client: subprocess.Popen) -> None:
    """Swap the MACs of every received frame in place and send it back."""
    rx, tx, release = port.rx_burst, port.tx_burst, port.release
    idle = 0
    while True:
        burst = rx(BURST)
        if len(burst):
            _swap_macs(burst)
            tx(burst)
            release(burst)
        else:
            idle += 1
            if idle % 4096 == 0 and client.poll() is not None:
                return


def _percentiles(samples: list[np.ndarray], prefix: str) -> dict[str, float]:
    rtt_us = np.concatenate(samples) / 1000.0
    p50, p99, p999 = np.percentile(rtt_us, [50, 99, 99.9])
    return {f"{prefix}_rtt_p50_us": round(float(p50), 2), f"{prefix}_rtt_p99_us": round(float(p99), 2),
            f"{prefix}_rtt_p999_us": round(float(p999), 2), f"{prefix}_rtt_samples": int(rtt_us.size)}


def run() -> dict:
    try:
        from netio.packet_socket import PacketSocketPort
    except ImportError:
        PacketSocketPort = None
    with tempfile.TemporaryDirectory() as tmp, VethNamespace("bnx") as veth:
        gen, ref, fused = _compile(Path(tmp))
        # Frames from the namespace arrive at an AF_XDP socket: no partial checksums,
        # and GRO on both ends so native-mode transmit reaches the peer.
        iface.set_offloads(veth.ns_if, tx_checksum=False, gro=True, netns=veth.ns_name)
        iface.set_offloads(veth.host_if, tx_checksum=False, gro=True)
        bench = Bench(veth, gen, ref, fused)
        receivers = {
            "xdp": lambda: bench.rx_port(lambda: XdpPort(veth.host_if, xdp_mode=MODE)),
            "c_ref": bench.rx_ref,
            "xdp_generic": lambda: bench.rx_port(lambda: XdpPort(veth.host_if, xdp_mode="generic")),
            "c_ref_generic": lambda: bench.rx_ref("generic"),
        }
        if PacketSocketPort is not None:
            receivers["socket"] = lambda: bench.rx_port(lambda: PacketSocketPort(veth.host_if))
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in receivers}
        names = list(receivers)
        for repeat in range(REPEATS):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                runs[name].append(receivers[name]())
        servers = {"xdp_echo": bench.echo_ours, "c_ref_echo": bench.echo_ref, "xdp_fused_echo": bench.echo_fused}
        rtts: dict[str, list[np.ndarray]] = {name: [] for name in servers}
        names = list(servers)
        for repeat in range(ECHO_REPEATS):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                rtts[name].append(servers[name]())
        costs = _python_costs(veth.host_if)
        leftover = iface.xdp_program(veth.host_if)
    if leftover is not None:
        raise RuntimeError(f"an XDP program ({leftover}) was left on the bench interface")

    figures: dict[str, float | int | str] = {"xdp_mode": MODE, "frame_bytes": FRAME_SIZE, "burst": BURST,
                                             "repeats": REPEATS}
    for name, results in runs.items():
        figures[f"{name}_rx_pps"] = round(float(np.median([rate for rate, _, _ in results])))
        # how much of what the generator sent in the same run this receiver took in
        figures[f"{name}_rx_of_generated"] = round(float(np.median([rate / sent for rate, sent, _ in results])), 3)
    figures["generator_pps"] = round(float(np.median([sent for results in runs.values() for _, sent, _ in results])))
    figures["xdp_rx_drops_total"] = int(sum(drops for _, _, drops in runs["xdp"]))
    for ours, ref in (("xdp", "c_ref"), ("xdp_generic", "c_ref_generic"), ("socket", "c_ref")):
        if ours in runs:
            figures[f"{ours}_vs_{ref}_rx"] = round(figures[f"{ours}_rx_pps"] / figures[f"{ref}_rx_pps"], 3)
    figures.update(_percentiles(rtts["xdp_echo"], "xdp_echo"))
    figures.update(_percentiles(rtts["c_ref_echo"], "c_ref_echo"))
    figures.update(_percentiles(rtts["xdp_fused_echo"], "xdp_fused_echo"))
    for name in ("xdp_echo", "xdp_fused_echo"):
        figures[f"{name}_vs_c_ref_p50"] = round(figures[f"{name}_rtt_p50_us"] / figures["c_ref_echo_rtt_p50_us"], 3)
    figures.update(costs)
    return figures

