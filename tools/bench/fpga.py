"""FPGA feed parser: cycle latency and sustained input rate in simulation (Icarus, cocotb),
resources and Fmax on an ECP5 (yosys synth_ecp5, nextpnr-ecp5 out of context): the best
placement over fpga/synth.py's seeds (``fmax_mhz_ecp5``, the one a build would ship) and
their mean and minimum (the margin: what a change to the RTL is judged by).

Two feeds, each checked record for record against the software reference before any
figure is taken: the worst case (12-byte messages back to back in full 1472-byte payloads,
0.57 messages a beat) and a realistic mixed feed (engine.itch_gen). Cycle figures are
exact, not noisy: the simulation is deterministic.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from netio import fpga_sim as fs

REPO = Path(__file__).resolve().parents[2]


def _worst_case_frames() -> list[bytes]:
    from engine import moldudp64

    msgs = [(b"S" if i % 2 else b"W") + bytes([i % 251]) * 11 for i in range(2400)]
    stream = b"".join(len(m).to_bytes(2, "big") + m for m in msgs)
    packets = moldudp64.pack_stream("WORST", 1, stream, 1472).packets()
    return [fs.frame(p) for p in packets]


def _checked_run(frames: list[bytes]) -> tuple[fs.SimRun, fs.Reference]:
    run, ref = fs.simulate(frames), fs.reference(frames)
    got = run.records.copy()
    for f in ("ptp_sec", "ptp_ns", "ptp_frac_ns"):
        got[f] = 0
    if run.counts != ref.counts() or got.tobytes() != ref.records.tobytes():
        raise AssertionError("the simulated parser disagrees with the software reference")
    return run, ref


def run() -> dict:
    worst, worst_ref = _checked_run(_worst_case_frames())
    mixed, mixed_ref = _checked_run(fs.feed_frames(3000, seed=7))
    lat = np.concatenate([worst.latencies(worst_ref), mixed.latencies(mixed_ref)])
    span = int(worst.beat_cycle[-1] - worst.beat_cycle[0] + 1)
    synth = subprocess.run([sys.executable, str(REPO / "fpga" / "synth.py"), "--out",
                            str(REPO / "build" / "synth")], check=True, capture_output=True, text=True)
    figures = json.loads(synth.stdout)
    return {
        "latency_cycles_max": int(lat.max()),
        "latency_cycles_min": int(lat.min()),
        "latency_ns_max_at_156mhz": float(lat.max() * fs.CLOCK_NS),
        "beats_per_cycle_sustained": round(len(worst.beat_cycle) / span, 4),
        "worst_case_messages_per_beat": round(len(worst.records) / len(worst.beat_cycle), 4),
        "records_checked": int(len(worst.records) + len(mixed.records)),
        "luts": figures["luts"],
        "carry_cells": figures["carry_cells"],
        "ffs": figures["ffs"],
        "brams": figures["brams"],
        "fmax_mhz_ecp5": figures["fmax_mhz_ecp5"],
        "fmax_seed": figures["fmax_seed"],
        "fmax_mhz_ecp5_mean": figures["fmax_mhz_ecp5_mean"],
        "fmax_mhz_ecp5_min": figures["fmax_mhz_ecp5_min"],
        "critical_path_ns": figures["critical_path_ns"],
        "critical_path_from": figures["critical_path_from"],
        "critical_path_to": figures["critical_path_to"],
        "target_mhz": figures["target_mhz"],
        "device": figures["device"],
        **{k: v for k, v in figures.items() if k.startswith("fmax_mhz_ecp5_seed_")},
    }
