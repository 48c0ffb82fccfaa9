"""Run benchmarks and write one JSON file each under bench-results/."""
import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = Path("bench-results")


def available() -> list[str]:
    """Every benchmark module in this package (files not starting with an underscore)."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def machine() -> dict:
    """What the figures were measured on: they are only comparable on the same machine."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_one(name: str) -> dict:
    module = importlib.import_module(f"tools.bench.{name}")
    print(f"bench {name}: running", flush=True)
    start = time.monotonic()
    figures = module.run()
    bad = {k: v for k, v in figures.items() if not isinstance(v, (int, float, bool, str))}
    if bad:
        raise TypeError(f"bench {name}: figures must be flat numbers, got {bad}")
    result = {**figures, "machine": machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"bench {name}: {time.monotonic() - start:.1f} s -> {RESULTS / f'{name}.json'}")
    for key, value in figures.items():
        print(f"  {key:<32} {value}")
    return result


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     epilog="benchmarks: " + ", ".join(names))
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    failed = []
    for name in args.names or names:
        try:
            run_one(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
