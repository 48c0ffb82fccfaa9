"""The venue on AF_XDP: internal latency, round trip beside a C echo, throughput.

One veth pair. The venue (engine.venue.Venue on netio.xdp.XdpPort, native mode, the
fused C pipeline it runs by default there) runs in this process with its memory locked
and its tables on 2 MB pages (engine.fastpath.lock_memory and huge_pages, what ``netio-run
--cpu N --lock-memory`` does: without the lock the first touch of each page of the venue's
tables is a page fault inside some order's walk): the fused loop's thread pinned to CPU 0, the Python thread that collects its
telemetry on CPU 1 with the garbage collector off (the Python-driven pipeline: on CPU 0);
its clients run in the namespace pinned to CPU 1. Figures:

- ``internal_ns_*``: the venue's TOTAL stage at light load: the first RX stamp to TX
  submit (the frames' descriptors published on the TX ring), every frame of every burst
  (engine.telemetry's whole-run histograms), the median over the REPEATS runs of LIGHT_S
  at LIGHT_RATE (a run's p99.9 rests on its 10 slowest orders): on a shared host a burst
  of the neighbours' load during one run would otherwise set the tail of all of them.
  ``internal_pct_over_10us``: the share of a run's orders over 10 us, median over the
  runs (p99.9 <= 10 us means at most 0.1 %). ``internal_pooled_ns_p999``,
  ``internal_pooled_pct_over_10us``: the same over all runs' orders pooled, noisy runs
  and all. ``tx_completion_ns_*``: the kick after TX submit (in copy mode the
  sendto() in which the kernel transmits through the veth into the namespace's stack),
  its own stage. ``stage_p50_ns_*``, ``stage_p99_ns_*``: the p50 and p99 of every stage
  (where a tail comes from).
- ``internal_10k_ns_*``: the same at MODERATE_RATE, for latency against load: orders a
  millisecond apart find the CPU's caches and branch predictors cold (what the machine
  runs on the CPU between them evicts what the walk warmed), orders 100 us apart mostly
  warm. Touching the walk's code and data between orders did not bring that back, and
  running a second venue's walk between orders only a seventh of it (tried).
- ``c_echo_internal_ns_*``, ``c_echo_internal_pct_over_10us``: the same window (the poll
  that found a frame to its descriptor on the TX ring) in the C echo below, in the turns it
  takes with the venue, median over the repeats: the least walk this path allows (read a
  frame, swap its addresses, put it on the TX ring; a few hundred ns), so its tail is what
  the path and the machine add to almost no walk. The machine's interruptions land in a
  walk in proportion to its length: beside ``floor_walk_*`` (a fixed 2 us) and
  ``internal_*``, it shows how much of the venue's tail its walk's length buys.
- ``internal_busy_poll_*``: light load again with the port busy-polled
  (``netio-run --busy-poll``), the venue's loop doing the veth's receive processing in a
  syscall whenever its ring is empty: why that is not the default.
- ``rtt_us_*``: the C load client (tools/bench/c/ouch_client.c: UDP, open loop from
  intended send times, a Poisson process at the rate (evenly spaced orders would lock
  onto the kernel's 4 ms tick, and the phase a run started at would decide how many of
  its ticks the orders met), an Enter Order per datagram, timed to the Accepted that
  carries its token) against the venue at light load (the load behind every venue and
  echo figure but ``loadgen_*``);
  ``c_echo_rtt_us_*``: the same binary on the same veth against a C AF_XDP echo
  (tools/bench/c/fused_echo.c: netio's port driven by a C loop, addresses swapped so the
  datagram goes back to the client's socket).
  Venue and echo take turns, REPEATS times; each figure is the median over the repeats;
  ``rtt_ratio_p50`` is the venue's p50 over the echo's (goal: at most 1.25).
  ``sent_rtt_us_*``, ``c_echo_sent_rtt_us_*``, ``sent_rtt_ratio_p50``: the same from when
  each order actually left: the path alone, without the client's lateness (on a shared
  CPU the client is often descheduled past an intended send time, which the open-loop
  figures rightly count but which says nothing about the venue).
- ``venue_orders_per_s``: orders the venue took in per second of its busy window while
  the C client offers SATURATION_RATE (more than it can take); the burst size grows.
- ``python_internal_ns_*``: the Python-driven reference pipeline (``fused=False``) at the
  same light load with the same client: what the fused path saves.
- ``loadgen_*``: tools/loadgen.py (a Python client: checks every reply and the feed
  against its fills) against the default venue at light load; its round trip includes
  its own Python costs. ``loadgen_xdp_*``: the same on a netio AF_XDP port of its own in
  the namespace (``--backend xdp``, busy-polled), the namespace's end then with GRO on
  (native XDP there needs it on the other end's frames).
- ``cpu_stall_*``: what the machine takes from the venue's CPU, measured before each venue
  run by a C loop that only reads the TSC there (tools/bench/c/cpu_stalls.c), median over
  the repeats: ``pct_over_2us``/``_10us``, the share of time lost in gaps beyond 2/10 us
  (the chance an order arriving at a random instant is held that much longer by
  interrupts, the kernel or the hypervisor, whatever the venue does), ``per_s_over_*``
  those gaps per second, ``longest_us`` the longest. An order's walk (from the poll, which
  stamps it) meets such a gap with a chance of about ``per_s_over_10us`` times its length:
  at a few hundred a second and 2 us, near the 0.1% a p99.9 under 10 us allows.
  ``venue_cpu_timer_irqs_per_s``: the timer ticks the venue's CPU took per second during
  the light runs (median), interruptions the kernel makes whatever the venue does.
  ``venue_loop_stalls_per_s``: the same gaps seen from inside the venue during the light
  runs (median): the fused loop's own count of turns that came over 10 us after the one
  before (engine.fastpath.STALL_S, ``cpu_stalls`` in the venue's counters).
  ``venue_cpu_isolated``, ``_tickless``, ``_device_irqs``: whether that CPU is in isolcpus
  and nohz_full and how many device interrupts land there (netio.isolation): on an
  isolated, tickless CPU without device interrupts only what a hypervisor takes remains.
  ``floor_walk_ns_*``, ``floor_walk_pct_over_10us``: that chance measured rather than
  reckoned: FLOOR_WALK_NS of fixed arithmetic (the p50 goal's length), FLOOR_IDLE_US
  apart, timed on the venue's CPU for STALL_RUN_S each repeat, median over the repeats.
  Uninterrupted every walk takes the same time; the tail is the machine's alone, the
  floor under the venue's.
- ``fused_instructions_per_order`` (``_journaled``): callgrind's count of the fused walk
  up to its frames (fp_burst, what the internal latency pays) per Enter Order, one order
  a burst, alternately buying and selling at one price as the client does, without and
  with a journal (the write() itself is the kernel's): the stable figure beside the noisy
  clocks. ``fused_instructions_per_order_after_send``: what follows the send (fp_settle:
  risk settling, the feed's messages into the re-request server's store).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import ouch
from engine._fastpath import lib as fastpath_lib
from engine.fastpath import huge_pages, lock_memory, unlock_memory
from engine.venue import Venue
from netio import iface
from netio.clock import ClockSync, SystemClock
from netio.isolation import cpu_share, timer_interrupts
from netio.netns import VethNamespace
from netio.port import Burst, PortStats
from netio.stack import Stack
from netio.tsc import frequency
from tools.run import open_venue_port

VENUE_CPU, CLIENT_CPU = 0, 1
LIGHT_RATE, LIGHT_S, WARMUP_S = 1_000, 10.0, 0.5
MODERATE_RATE, MODERATE_S = 10_000, 5.0
REPEATS = 5
STALL_RUN_S, STALL_NS = 2.0, (2_000, 10_000)
FLOOR_WALK_NS, FLOOR_IDLE_US = 2_000, 50
SATURATION_RATE, SATURATION_S = 400_000, 2.0
ORDER_PORT = 15000
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PERCENTILES = (("p50", 50), ("p99", 99), ("p999", 99.9))


def _compile(workdir: Path) -> tuple[str, str, str]:
    client, echo, stalls = str(workdir / "ouch_client"), str(workdir / "fused_echo.so"), str(workdir / "stalls.so")
    cc = ["gcc", "-O2", "-march=x86-64-v2", "-Wall"]
    subprocess.run([*cc, "-o", client, str(HERE / "c/ouch_client.c"), "-lm"], check=True)
    subprocess.run([*cc, "-shared", "-fPIC", "-I", str(ROOT / "cffi_build"), "-o", echo, str(HERE / "c/fused_echo.c")],
                   check=True)
    subprocess.run([*cc, "-shared", "-fPIC", "-o", stalls, str(HERE / "c/cpu_stalls.c")], check=True)
    return client, echo, stalls


def bench_on(v: VethNamespace, workdir: Path, cpu: int = VENUE_CPU, client_cpu: int = CLIENT_CPU) -> Bench:
    """A Bench on ``v`` set up as the benchmark runs it, its C parts built in ``workdir``."""
    # no GRO where the clients receive: it holds each reply for tens of microseconds
    iface.set_offloads(v.ns_if, tx_checksum=False, gro=False, netns=v.ns_name)
    iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
    return Bench(v, *_compile(workdir), cpu=cpu, client_cpu=client_cpu)


class _Pinned:
    """The body on ``cpu`` without the cyclic garbage collector, then as before."""

    def __init__(self, cpu: int):
        self.cpu = cpu

    def __enter__(self):
        self.before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})
        gc.disable()

    def __exit__(self, *exc):
        gc.enable()
        os.sched_setaffinity(0, self.before)


class Bench:
    """The runs on ``v``: the venue (or echo, or probe) on CPU ``cpu``, clients on ``client_cpu``."""

    def __init__(self, v: VethNamespace, client: str, echo: str, stalls: str, cpu: int = VENUE_CPU,
                 client_cpu: int = CLIENT_CPU):
        self.v, self.client, self.cpu, self.client_cpu = v, client, cpu, client_cpu
        self.ip = str(v.subnet.network_address + 10)
        self.echo = ctypes.CDLL(echo).fused_echo
        self.echo.restype = ctypes.c_int64
        u64 = ctypes.POINTER(ctypes.c_uint64)
        self.echo.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_int64, ctypes.c_int64, u64, ctypes.c_uint64, u64]
        stalls_lib = ctypes.CDLL(stalls)
        self.stalls = stalls_lib.cpu_stalls
        self.stalls.restype = None
        self.stalls.argtypes = [ctypes.c_uint64, u64, ctypes.c_uint32, u64, u64, u64]
        self.fixed_walks = stalls_lib.fixed_walks
        self.fixed_walks.restype = ctypes.c_uint64
        self.fixed_walks.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32, u64]
        # the echo cannot answer ARP: both targets are reached through the same static entry
        v.run(["ip", "neigh", "replace", self.ip, "lladdr", v.host_mac, "dev", v.ns_if, "nud", "permanent"],
              check=True)

    def _client(self, rate: float, seconds: float) -> subprocess.Popen:
        return self.v.popen(["taskset", "-c", str(self.client_cpu), self.client, self.v.ns_ip, self.ip, str(ORDER_PORT),
                             str(rate), str(seconds), str(WARMUP_S)], stdout=subprocess.PIPE, text=True)

    def venue(self, rate: float, seconds: float, fused: bool = True, loadgen: str | None = None,
              busy_poll: bool = False) -> dict:
        """One run of the venue against the C client (or tools/loadgen.py on the ``loadgen``
        backend): its figures."""
        port = open_venue_port(self.v.host_if, "xdp", 0, busy_poll=busy_poll)
        try:
            sync = ClockSync(SystemClock())
            venue = Venue(port, self.ip, self.v.host_mac, clock=sync.model, fused=fused)
            huge_pages()
            if loadgen:
                client = self.v.popen(["taskset", "-c", str(self.client_cpu), sys.executable, "-m", "tools.loadgen",
                                       "--venue", self.ip, "--feed-iface", self.v.ns_ip, "--rate", str(rate),
                                       "--duration", str(seconds), "--json", "--backend", loadgen,
                                       "--iface", self.v.ns_if], stdout=subprocess.PIPE, text=True, cwd=ROOT)
            else:
                client = self._client(rate, seconds)
            first = last = None
            ticks, started = timer_interrupts(self.cpu), time.monotonic()
            next_clock = time.monotonic() + 1
            # the fused loop on a thread of its own on the venue's CPU, this one beside the client
            threaded = venue.start(self.cpu)
            with _Pinned(self.client_cpu if threaded else self.cpu):
                while client.poll() is None:
                    if venue.poll():
                        last = time.monotonic()
                        first = first or last
                    elif time.monotonic() > next_clock:
                        venue.set_clock(sync.update())
                        next_clock = time.monotonic() + 1
            out, _ = client.communicate(timeout=30)
            elapsed = time.monotonic() - started
            ticks_per_s = (timer_interrupts(self.cpu) - ticks) / elapsed
            stages = venue.telemetry.summary()
            counters = venue.counters()
            venue.close()
        finally:
            port.close()
        return {"client": json.loads(out), "fused": venue.fused, "total": stages["TOTAL"],
                "orders_per_s": counters.get("commands", 0) / max(last - first, 1e-9) if first else 0.0,
                "ticks_per_s": ticks_per_s, "stalls_per_s": counters.get("cpu_stalls", 0) / elapsed,
                "stages": {tag: {p: h.get_value_at_percentile(q) for p, q in PERCENTILES}
                           for tag, h in stages.items()}}

    def cpu_stalls(self, seconds: float) -> dict:
        """tools/bench/c/cpu_stalls.c on the venue's CPU: per STALL_NS threshold T, the
        percentage of time lost in gaps beyond T (the chance an order is held more than
        T by the machine alone) and the gaps longer than T per second."""
        hz = frequency().hz
        n = len(STALL_NS)
        threshold = (ctypes.c_uint64 * n)(*(round(t * hz / 1e9) for t in STALL_NS))
        stalled, count, longest = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)(), ctypes.c_uint64()
        with _Pinned(self.cpu):
            self.stalls(round(seconds * hz), threshold, n, stalled, count, ctypes.byref(longest))
        out = {}
        for i, t in enumerate(STALL_NS):
            out[f"pct_over_{t // 1000}us"] = 100 * stalled[i] / (seconds * hz)
            out[f"per_s_over_{t // 1000}us"] = count[i] / seconds
        out["longest_us"] = longest.value / hz * 1e6
        return out

    def floor_walks(self, seconds: float) -> np.ndarray:
        """tools/bench/c/cpu_stalls.c's fixed walks of FLOOR_WALK_NS on the venue's CPU,
        FLOOR_IDLE_US apart, for about ``seconds``: each walk's ns."""
        hz = frequency().hz
        probe = np.zeros(200, np.uint64)
        with _Pinned(self.cpu):
            # the steps for FLOOR_WALK_NS from the fastest of a few short walks (uninterrupted)
            self.fixed_walks(1000, 0, len(probe), _u64(probe))
            steps = round(FLOOR_WALK_NS * hz / 1e9 / (probe.min() / 1000))
            took = np.zeros(int(seconds / (FLOOR_IDLE_US + FLOOR_WALK_NS / 1000) * 1e6), np.uint64)
            self.fixed_walks(steps, round(FLOOR_IDLE_US * hz / 1e6), len(took), _u64(took))
        return took * (1e9 / hz)

    def echo_run(self, rate: float, seconds: float) -> dict:
        """The same client against the C echo on netio's AF_XDP port: the client's figures,
        and under ``walks_ns`` each frame's poll to TX submit (the venue's TOTAL)."""
        walks, n_walks = np.zeros(int(rate * (seconds + WARMUP_S) * 2), np.uint64), ctypes.c_uint64()
        with _Pinned(self.cpu), open_venue_port(self.v.host_if, "xdp", 0) as port:
            xsk, api = port.c_api()
            client = self._client(rate, seconds)
            self.echo(xsk, api, port.umem.ctypes.data, port.umem.nbytes, 1_000_000_000,
                      int((seconds + WARMUP_S + 10) * 1e9), _u64(walks), len(walks), ctypes.byref(n_walks))
            out, _ = client.communicate(timeout=30)
        return {**json.loads(out), "walks_ns": walks[:n_walks.value] * (1e9 / frequency().hz)}


def _u64(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))


class _InboxPort:
    """A port that receives the frames given, a burst each, and drops what is sent."""

    def __init__(self, bursts: list[Burst]):
        self.bursts = bursts[::-1]

    def rx_burst(self, max_frames: int = 64) -> Burst:
        return self.bursts.pop() if self.bursts else Burst.of([])

    def release(self, burst: Burst) -> None:
        pass

    def tx_burst(self, burst: Burst) -> int:
        return len(burst)

    def stats(self) -> PortStats:
        return PortStats()

    def close(self) -> None:
        pass


WALK_WARMUP, WALK_ORDERS = 300, 1000


def walk(journal: str | None = None) -> None:
    """WALK_WARMUP then WALK_ORDERS Enter Orders through the fused walk, one a burst, with
    a call to fp_tsc between them (callgrind's cue to start a new part)."""
    venue_ip, venue_mac = "10.99.0.10", "02:00:00:00:00:0a"
    client = Stack("02:00:00:00:00:0b", "10.99.0.20")

    def bursts(first: int, n: int) -> list[Burst]:
        out = []
        for k in range(first, first + n):
            body = ouch.pack("O", "in", order_token=f"C{k:013d}", buy_sell_indicator="BS"[k % 2], shares=100,
                             stock="AAPL", price=1_900_000, time_in_force=99999, firm="LOAD", display="Y",
                             capacity="A", intermarket_sweep_eligibility="N", minimum_quantity=0,
                             cross_type="N", customer_type="R")
            payload = (len(body) + 1).to_bytes(2, "big") + b"U" + body
            out.append(client.build_udp(Burst.of([payload]), venue_ip, ORDER_PORT, 40000, venue_mac))
        return out

    port = _InboxPort(bursts(0, WALK_WARMUP))
    venue = Venue(port, venue_ip, venue_mac, journal=journal, fused=True)
    measured = bursts(WALK_WARMUP, WALK_ORDERS)
    while venue.poll():
        pass
    fastpath_lib.fp_tsc()
    port.bursts = measured[::-1]
    while venue.poll():
        pass
    venue.close()


def _instructions_per_order(workdir: Path, journal: bool) -> tuple[float, float]:
    """callgrind's counts per order after the warm-up (its second part): (fp_burst, the
    walk up to its frames; fp_settle, what follows their sending)."""
    jnl = str(workdir / "walk.jnl") if journal else None
    out = workdir / "walk.cg"
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=fp_burst", "--toggle-collect=fp_settle",
                    "--dump-before=fp_tsc", f"--callgrind-out-file={out}", sys.executable, "-c",
                    f"from tools.bench.venue import walk; walk({jnl!r})"],
                   capture_output=True, text=True, cwd=ROOT, check=True)
    # the dump at fp_tsc holds the warm-up; the final file, what came after
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
                            capture_output=True, text=True, check=True).stdout
    totals = int(re.search(r"^\s*([\d,]+) .*PROGRAM TOTALS", report, re.M).group(1).replace(",", ""))
    burst = int(re.search(r"^\s*([\d,]+) .*fastpath\.c:fp_burst \[", report, re.M).group(1).replace(",", ""))
    return burst / WALK_ORDERS, (totals - burst) / WALK_ORDERS


def _pct_over(hist, ns: int) -> float:
    """The share of a histogram's values over ``ns``, in percent."""
    over = sum(i.count_at_value_iterated_to for i in hist.get_recorded_iterator() if i.value_iterated_to > ns)
    return round(100 * over / hist.total_count, 3)


def _median(values) -> float:
    return float(np.median(np.asarray(list(values), float)))


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        instructions = {journal: _instructions_per_order(Path(tmp), journal) for journal in (False, True)}
    lock_memory()
    try:
        figures = _timed()
    finally:
        unlock_memory()
    figures["fused_instructions_per_order"] = round(instructions[False][0])
    figures["fused_instructions_per_order_after_send"] = round(instructions[False][1])
    figures["fused_instructions_per_order_journaled"] = round(instructions[True][0])
    return figures


def _timed() -> dict:
    """Every figure but the instruction counts."""
    with tempfile.TemporaryDirectory() as tmp, VethNamespace("bvnu") as v:
        bench = bench_on(v, Path(tmp))
        venue_runs, echo_runs, stalls, floor = [], [], [], []
        for _ in range(REPEATS):
            stalls.append(bench.cpu_stalls(STALL_RUN_S))
            floor.append(bench.floor_walks(STALL_RUN_S))
            venue_runs.append(bench.venue(LIGHT_RATE, LIGHT_S))
            echo_runs.append(bench.echo_run(LIGHT_RATE, LIGHT_S))
        moderate = bench.venue(MODERATE_RATE, MODERATE_S)
        busy = bench.venue(LIGHT_RATE, MODERATE_S, busy_poll=True)
        python = bench.venue(LIGHT_RATE, LIGHT_S, fused=False)
        saturated = bench.venue(SATURATION_RATE, SATURATION_S)
        loadgen = bench.venue(LIGHT_RATE, LIGHT_S, loadgen="socket")
        iface.set_offloads(v.ns_if, gro=True, netns=v.ns_name)
        loadgen_xdp = bench.venue(LIGHT_RATE, LIGHT_S, loadgen="xdp")
        if iface.xdp_program(v.host_if) is not None:
            raise RuntimeError("an XDP program was left on the bench interface")
    if not all(r["fused"] for r in venue_runs):
        raise RuntimeError("the venue did not run its fused pipeline on AF_XDP")
    out = {"light_rate_per_s": LIGHT_RATE, "repeats": REPEATS}
    for key in stalls[0]:
        out[f"cpu_stall_{key}"] = round(_median(s[key] for s in stalls), 3)
    for p, q in PERCENTILES:
        out[f"floor_walk_ns_{p}"] = round(_median(np.percentile(f, q) for f in floor))
    out["floor_walk_pct_over_10us"] = round(_median(100 * np.mean(f > 10_000) for f in floor), 3)
    share = cpu_share(bench.cpu)
    out["venue_cpu_isolated"], out["venue_cpu_tickless"] = share.isolated, share.tickless
    out["venue_cpu_device_irqs"] = len(share.irqs)
    out["venue_cpu_timer_irqs_per_s"] = round(_median(r["ticks_per_s"] for r in venue_runs))
    out["venue_loop_stalls_per_s"] = round(_median(r["stalls_per_s"] for r in venue_runs))
    for p, q in PERCENTILES:
        out[f"internal_ns_{p}"] = round(_median(r["total"].get_value_at_percentile(q) for r in venue_runs))
    out["internal_pct_over_10us"] = round(_median(_pct_over(r["total"], 10_000) for r in venue_runs), 3)
    for p, q in PERCENTILES:
        out[f"c_echo_internal_ns_{p}"] = round(_median(np.percentile(r["walks_ns"], q) for r in echo_runs))
    out["c_echo_internal_pct_over_10us"] = round(_median(100 * np.mean(r["walks_ns"] > 10_000) for r in echo_runs), 3)
    pooled = venue_runs[0]["total"]
    for r in venue_runs[1:]:
        pooled.add(r["total"])
    out["internal_orders"] = pooled.total_count
    out["internal_pooled_ns_p999"] = pooled.get_value_at_percentile(99.9)
    out["internal_pooled_pct_over_10us"] = _pct_over(pooled, 10_000)
    for p, q in PERCENTILES:
        out[f"internal_10k_ns_{p}"] = moderate["total"].get_value_at_percentile(q)
    for p, q in PERCENTILES:
        out[f"internal_busy_poll_ns_{p}"] = busy["total"].get_value_at_percentile(q)
    out["internal_busy_poll_pct_over_10us"] = _pct_over(busy["total"], 10_000)
    for p, _ in PERCENTILES:
        out[f"tx_completion_ns_{p}"] = round(_median(r["stages"]["TxCompletion"][p] for r in venue_runs))
    for p in ("p50", "p99"):
        for tag in venue_runs[0]["stages"]:
            out[f"stage_{p}_ns_{tag}"] = round(_median(r["stages"][tag][p] for r in venue_runs if tag in r["stages"]))
    for p, _ in PERCENTILES:
        out[f"rtt_us_{p}"] = round(_median(r["client"][f"rtt_ns_{p}"] for r in venue_runs) / 1000, 2)
    for p, _ in PERCENTILES:
        out[f"c_echo_rtt_us_{p}"] = round(_median(r[f"rtt_ns_{p}"] for r in echo_runs) / 1000, 2)
    out["rtt_ratio_p50"] = round(out["rtt_us_p50"] / out["c_echo_rtt_us_p50"], 3)
    for p, _ in PERCENTILES:
        out[f"sent_rtt_us_{p}"] = round(_median(r["client"][f"sent_rtt_ns_{p}"] for r in venue_runs) / 1000, 2)
    for p, _ in PERCENTILES:
        out[f"c_echo_sent_rtt_us_{p}"] = round(_median(r[f"sent_rtt_ns_{p}"] for r in echo_runs) / 1000, 2)
    out["sent_rtt_ratio_p50"] = round(out["sent_rtt_us_p50"] / out["c_echo_sent_rtt_us_p50"], 3)
    out["rtt_orders_answered"] = sum(r["client"]["answered"] for r in venue_runs)
    out["rtt_orders_lost"] = sum(r["client"]["lost"] for r in venue_runs)
    out["rtt_orders_rejected"] = sum(r["client"]["rejected"] for r in venue_runs)
    out["c_echo_lost"] = sum(r["lost"] for r in echo_runs)
    for p, _ in PERCENTILES:
        out[f"python_internal_ns_{p}"] = round(python["stages"]["TOTAL"][p])
    out["python_rtt_us_p50"] = round(python["client"]["rtt_ns_p50"] / 1000, 2)
    out["saturation_offered_per_s"] = SATURATION_RATE
    out["venue_orders_per_s"] = round(saturated["orders_per_s"])
    out["saturation_answered_per_s"] = round(saturated["client"]["answered_per_s"])
    out["saturation_lost"] = saturated["client"]["lost"]
    for name, run in (("loadgen", loadgen), ("loadgen_xdp", loadgen_xdp)):
        lg = run["client"]
        out.update({f"{name}_rtt_us_p50": round(lg["rtt_ns"]["p50"] / 1000, 1),
                    f"{name}_rtt_us_p99": round(lg["rtt_ns"]["p99"] / 1000, 1),
                    f"{name}_rtt_us_p999": round(lg["rtt_ns"]["p99.9"] / 1000, 1),
                    f"{name}_checks_passed": not lg["failures"]})
    return out
