"""netio-report: where does the time go? Reads a run's HdrHistogram interval logs."""
import argparse
import sys

from .breakdown import Breakdown, analyse, compare
from .hlog import UNITS_NS, read_run
from .render import csv_compare, csv_intervals, csv_report, json_report, text_compare, text_intervals, text_report
from .stages import STAGES

EXIT_OK, EXIT_NOTHING_READ, EXIT_USAGE = 0, 1, 2

EPILOG = f"""\
stages, in pipeline order (tags as logged): {', '.join(s.tag for s in STAGES)}.
Other tags are reported after these. Values are integer nanoseconds unless --unit says otherwise.

examples:
  netio-report run.hlog                       table per stage, bottleneck and caveats
  netio-report venue.hlog loadgen.hlog        one run from several logs (adds the round trip)
  netio-report --interval run.hlog            p50/p99/p99.9/max per interval, spikes marked
  netio-report --compare before.hlog after.hlog
  netio-report --compare a.hlog,a-lg.hlog b.hlog,b-lg.hlog   several logs per side
  netio-report run.hlog --plot run.png --html run.html
  netio-report run.hlog --json | jq '.runs[0].bottleneck'
  netio-report --unit us foreign.hlog         a log recorded in microseconds

The load generator states its loop mode with a '#[Source: open-loop]' or
'#[Source: closed-loop]' comment line; closed-loop tails are flagged (coordinated omission).

exit status: 0 report written, 1 nothing readable, 2 usage error.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netio-report", description="Latency breakdown per pipeline stage from HdrHistogram "
        "interval logs (.hlog, one 'Tag=' per stage): count, p50 … p99.99, max; the bottleneck; "
        "the caveats the data call for.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="*", metavar="RUN.hlog", help="interval logs of one run (merged)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="compare two runs side by side (B/A ratios); comma-join several logs per run")
    p.add_argument("--interval", action="store_true",
                   help="percentiles per logged interval instead of the whole run (spikes, drift)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (latencies in integer ns)")
    fmt.add_argument("--csv", action="store_true", help="print CSV (latencies in integer ns)")
    p.add_argument("--plot", metavar="OUT.png", help="write percentile-distribution plots (and p99 over time)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML report (tables + plots)")
    p.add_argument("--unit", choices=tuple(UNITS_NS), default="ns",
                   help="unit of the values in the logs (default ns, netio's own logs)")
    return p


def _warn(msg: str) -> None:
    print(f"netio-report: {msg}", file=sys.stderr)


def _write(path: str, write) -> bool:
    try:
        write(path)
    except OSError as exc:
        _warn(f"cannot write {path}: {exc.strerror or exc}")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of netio-report; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.compare and args.logs:
        parser.error("give either RUN.hlog files or --compare A B, not both")
    if not args.compare and not args.logs:
        parser.error("no log given: netio-report RUN.hlog [...] or --compare A B")

    sides = ([("A", args.compare[0].split(",")), ("B", args.compare[1].split(","))] if args.compare
             else [("", args.logs)])
    runs: list[Breakdown] = [analyse(read_run(files, args.unit), label) for label, files in sides]
    rows = compare(*runs) if args.compare else None

    machine = args.json or args.csv
    for bd in runs:
        if machine:  # the text report lists them itself
            for s in bd.skipped:
                _warn(f"skipped {s}")
        if not bd.stages:
            _warn(f"nothing readable in {', '.join(bd.files)}")

    if args.json:
        out = json_report(runs, rows, args.interval)
    elif args.csv:
        out = csv_intervals(runs) if args.interval else csv_compare(rows) if rows is not None else csv_report(runs)
    elif args.interval:
        out = "\n".join(text_intervals(bd) for bd in runs)
    else:
        out = text_compare(*runs, rows) if rows is not None else text_report(runs[0])
    sys.stdout.write(out)

    if any(not bd.stages for bd in runs):
        return EXIT_NOTHING_READ
    written = True
    if args.plot or args.html:
        from . import plot  # matplotlib only when a picture is asked for
        if args.plot:
            written &= _write(args.plot, lambda path: plot.write_png(runs, path))
        if args.html:
            written &= _write(args.html, lambda path: plot.write_html(runs, rows, path))
    return EXIT_OK if written else EXIT_USAGE
