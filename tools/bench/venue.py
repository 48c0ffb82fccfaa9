"""The venue on AF_XDP: internal latency, throughput, and round trip beside a C echo.

One veth pair. The venue (engine.venue.Venue on netio.xdp.XdpPort, native mode) runs in
this process pinned to CPU 0 with the garbage collector off; the load generator
(tools/loadgen.py, open loop, checks every reply and the feed) runs in the namespace
pinned to CPU 1.

- ``internal_ns_*``: the venue's TOTAL stage (first RX stamp to TX submit, every frame of
  every burst) at light load, from engine.telemetry's whole-run histogram.
- ``rtt_us_*``: the load generator's round trip at that light load (from each request's
  intended send time; a Python client in a namespace: includes its own costs).
- ``venue_orders_per_s``: orders the venue took in per second of its busy window while the
  load generator offers far more than it can take (saturation); the burst size grows.
- ``fused_*``: the same three with ``Venue(..., fused=True)``: the whole walk in C
  (engine/fastpath.py), polling the AF_XDP port through its C table.
- ``c_echo_rtt_us_*``: the same veth, a C libxdp echo server (tools/bench/c/xdp_ref.c)
  ping-ponged by the C generator (tools/bench/c/gen.c): the floor a venue's round trip
  stands on here.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.venue import Venue
from netio import iface
from netio.clock import ClockSync, SystemClock
from netio.netns import VethNamespace
from tools.bench.netio import Bench, _compile
from tools.run import open_venue_port

VENUE_CPU, LOADGEN_CPU = 0, "1"
LIGHT_RATE, LIGHT_S = 1_000, 4.0
SATURATION_RATE, SATURATION_S = 50_000, 3.0
ROOT = Path(__file__).resolve().parents[2]


def _venue_run(v: VethNamespace, rate: float, duration: float, fused: bool = False) -> tuple[dict, dict, float]:
    """(venue telemetry TOTAL percentiles, load generator summary, orders/s in the busy window)."""
    ip = str(v.subnet.network_address + 10)
    before = os.sched_getaffinity(0)
    port = open_venue_port(v.host_if, "xdp", 0)
    try:
        sync = ClockSync(SystemClock())
        venue = Venue(port, ip, v.host_mac, clock=sync.model, fused=fused)
        loadgen = v.popen(["taskset", "-c", LOADGEN_CPU, sys.executable, "-m", "tools.loadgen", "--venue", ip,
                           "--feed-iface", v.ns_ip, "--rate", str(rate), "--duration", str(duration), "--json"],
                          stdout=subprocess.PIPE, text=True, cwd=ROOT)
        os.sched_setaffinity(0, {VENUE_CPU})
        gc.disable()
        first = last = None
        next_clock = time.monotonic() + 1
        try:
            while loadgen.poll() is None:
                if venue.poll():
                    last = time.monotonic()
                    first = first or last
                elif last and time.monotonic() > next_clock:
                    venue.set_clock(sync.update())
                    next_clock = time.monotonic() + 1
        finally:
            gc.enable()
            os.sched_setaffinity(0, before)
        out, _ = loadgen.communicate(timeout=30)
        total = venue.telemetry.summary()["TOTAL"]
        commands = venue.counters().get("commands", 0)
        venue.close()
    finally:
        port.close()
    internal = {p: total.get_value_at_percentile(q) for p, q in (("p50", 50), ("p99", 99), ("p999", 99.9))}
    return internal, json.loads(out), commands / max(last - first, 1e-9) if first else 0.0


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp, VethNamespace("bvnu") as v:
        iface.set_offloads(v.ns_if, tx_checksum=False, gro=True, netns=v.ns_name)
        iface.set_offloads(v.host_if, tx_checksum=False, gro=True)
        internal, light, _ = _venue_run(v, LIGHT_RATE, LIGHT_S)
        _, saturated, orders_per_s = _venue_run(v, SATURATION_RATE, SATURATION_S)
        f_internal, f_light, _ = _venue_run(v, LIGHT_RATE, LIGHT_S, fused=True)
        _, f_saturated, f_orders_per_s = _venue_run(v, SATURATION_RATE, SATURATION_S, fused=True)
        bench = Bench(v, *_compile(Path(tmp)))
        c_rtt_us = np.concatenate([bench.echo_ref() for _ in range(2)]) / 1000.0
        if iface.xdp_program(v.host_if) is not None:
            raise RuntimeError("an XDP program was left on the bench interface")
    rtt, f_rtt = light["rtt_ns"], f_light["rtt_ns"]
    c50, c99, c999 = np.percentile(c_rtt_us, [50, 99, 99.9])
    return {
        "light_rate_per_s": LIGHT_RATE,
        "internal_ns_p50": int(internal["p50"]), "internal_ns_p99": int(internal["p99"]),
        "internal_ns_p999": int(internal["p999"]),
        "rtt_us_p50": round(rtt["p50"] / 1000, 1), "rtt_us_p99": round(rtt["p99"] / 1000, 1),
        "rtt_us_p999": round(rtt["p99.9"] / 1000, 1),
        "light_checks_passed": not light["failures"],
        "saturation_offered_per_s": SATURATION_RATE,
        "venue_orders_per_s": round(orders_per_s),
        "saturation_answered": saturated["answered"],
        "saturation_lost": sum(saturated["lost"].values()),
        "fused_internal_ns_p50": int(f_internal["p50"]), "fused_internal_ns_p99": int(f_internal["p99"]),
        "fused_internal_ns_p999": int(f_internal["p999"]),
        "fused_rtt_us_p50": round(f_rtt["p50"] / 1000, 1), "fused_rtt_us_p99": round(f_rtt["p99"] / 1000, 1),
        "fused_rtt_us_p999": round(f_rtt["p99.9"] / 1000, 1),
        "fused_light_checks_passed": not f_light["failures"],
        "fused_venue_orders_per_s": round(f_orders_per_s),
        "fused_saturation_answered": f_saturated["answered"],
        "fused_saturation_lost": sum(f_saturated["lost"].values()),
        "c_echo_rtt_us_p50": round(float(c50), 2), "c_echo_rtt_us_p99": round(float(c99), 2),
        "c_echo_rtt_us_p999": round(float(c999), 2),
    }
