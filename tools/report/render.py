"""The report as text for a terminal, as JSON, and as CSV.

JSON and CSV carry integer nanoseconds (``*_ns``); the terminal table writes
each latency in the unit that fits (``fmt_ns``).
"""
import csv
import io
import json

from .breakdown import MIN_BEYOND, Breakdown, CompareRow, StageRow
from .histo import COLUMNS, fmt_ns

BOTTLENECK_MARK = "<- bottleneck"
SPIKE_MARK = "^ spike"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns padded to width: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers)] + [line(r) for r in rows]


def _cells(row: StageRow) -> list[str]:
    return [f"{fmt_ns(row.summary.values_ns[c])}{'*' if c in row.thin else ''}" for c in COLUMNS]


def _footer(bd: Breakdown) -> list[str]:
    out = []
    if any(r.thin for r in bd.stages):
        out.append(f"* fewer than {MIN_BEYOND} samples beyond this percentile: about the max, not a percentile")
    if bd.bottleneck:
        b = bd.bottleneck
        p999 = bd.stage(b.tag).summary.values_ns["p99.9"]
        out.append(f"Bottleneck: {b.name}, p99.9 {fmt_ns(p999)} = {b.share:.0%} of {b.basis}")
    if bd.caveats:
        out.append("Caveats:")
        out += [f"  - {c.text}" for c in bd.caveats]
    if bd.skipped:
        out.append(f"Skipped ({len(bd.skipped)}):")
        out += [f"  - {s}" for s in bd.skipped]
    return out


def _title(bd: Breakdown) -> str:
    label = f"{bd.label}: " if bd.label else ""
    source = f", {bd.source}" if bd.source else ""
    unit = f", log unit {bd.unit}" if bd.unit != "ns" else ""
    return f"{label}{', '.join(bd.files)}{source}{unit}"


def text_report(bd: Breakdown) -> str:
    """The latency breakdown table of one run, with its bottleneck, caveats and skips."""
    rows = []
    for r in bd.stages:
        mark = BOTTLENECK_MARK if bd.bottleneck and bd.bottleneck.tag == r.tag else ""
        rows.append([r.name, f"{r.summary.count:,}"] + _cells(r) + [mark])
    lines = [_title(bd), ""]
    if rows:
        lines += _table(["stage", "count", *COLUMNS, ""], rows)
    else:
        lines.append("(no histograms read)")
    return "\n".join(lines + [""] + _footer(bd)).rstrip() + "\n"


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"x{r:.2f}"


def text_compare(a: Breakdown, b: Breakdown, rows: list[CompareRow]) -> str:
    """Before/after: for each stage a line per run and a line of ratios B/A."""
    table = []
    for row in rows:
        for label, side in (("A", row.a), ("B", row.b)):
            if side is None:
                table.append([row.name if label == "A" else "", label, "-"] + ["-"] * len(COLUMNS))
            else:
                table.append([row.name if label == "A" else "", label, f"{side.summary.count:,}"] + _cells(side))
        table.append(["", "B/A", _ratio(row.ratios["count"])] + [_ratio(row.ratios[c]) for c in COLUMNS])
    lines = [_title(a), _title(b), ""]
    lines += _table(["stage", "run", "count", *COLUMNS], table, left=2)
    lines.append("B/A < 1: B is faster")
    for label, bd in (("A", a), ("B", b)):
        footer = _footer(bd)
        if footer:
            lines += ["", f"{label}:"] + footer
    return "\n".join(lines).rstrip() + "\n"


def text_intervals(bd: Breakdown) -> str:
    """Percentiles over time: a block per stage, a row per interval, spikes marked."""
    lines = [_title(bd)]
    for tag in dict.fromkeys(r.tag for r in bd.intervals):
        ivs = [r for r in bd.intervals if r.tag == tag]
        rows = [[f"{r.start_s:.3f}", f"{r.length_s:.3f}", f"{r.summary.count:,}",
                 *(fmt_ns(r.summary.values_ns[c]) for c in ("p50", "p99", "p99.9", "max")),
                 f"{SPIKE_MARK}: {r.spike}" if r.spike else ""] for r in ivs]
        lines += ["", ivs[0].name]
        lines += ["  " + ln for ln in _table(["start s", "length s", "count", "p50", "p99", "p99.9", "max", ""],
                                             rows, left=0)]
    if not bd.intervals:
        lines.append("(no intervals read)")
    return "\n".join(lines + [""] + _footer(bd)).rstrip() + "\n"


def _stage_dict(r: StageRow, bd: Breakdown) -> dict:
    s = r.summary
    return {"tag": r.tag, "name": r.name, "role": r.role, "count": s.count,
            "min_ns": s.min_ns, "mean_ns": round(s.mean_ns, 1),
            **{f"{c}_ns": s.values_ns[c] for c in COLUMNS},
            "thin": r.thin, "bottleneck": bool(bd.bottleneck and bd.bottleneck.tag == r.tag)}


def breakdown_dict(bd: Breakdown, intervals: bool = False) -> dict:
    """Everything in the report of one run, latencies in integer ns."""
    out = {"label": bd.label, "files": bd.files, "unit": bd.unit, "source": bd.source,
           "stages": [_stage_dict(r, bd) for r in bd.stages],
           "bottleneck": None if bd.bottleneck is None else vars(bd.bottleneck),
           "caveats": [vars(c) for c in bd.caveats],
           "skipped": [vars(s) for s in bd.skipped]}
    if intervals:
        out["intervals"] = [{"tag": r.tag, "name": r.name, "start_s": r.start_s, "length_s": r.length_s,
                             "count": r.summary.count, **{f"{c}_ns": r.summary.values_ns[c] for c in COLUMNS},
                             "spike": r.spike} for r in bd.intervals]
    return out


def json_report(runs: list[Breakdown], compare: list[CompareRow] | None = None, intervals: bool = False) -> str:
    doc: dict = {"runs": [breakdown_dict(bd, intervals) for bd in runs]}
    if compare is not None:
        doc["compare"] = [{"tag": r.tag, "name": r.name, "ratios": r.ratios} for r in compare]
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def csv_report(runs: list[Breakdown]) -> str:
    """One row per run and stage."""
    header = ["run", "tag", "stage", "role", "count", "min_ns", "mean_ns", *(f"{c}_ns" for c in COLUMNS), "bottleneck"]
    rows = []
    for bd in runs:
        for r in bd.stages:
            d = {**_stage_dict(r, bd), "stage": r.name}
            rows.append([bd.label] + [d[k] for k in header[1:]])
    return _csv(header, rows)


def csv_compare(rows: list[CompareRow]) -> str:
    """One row per stage: each figure for A, for B, and B/A."""
    header = ["tag", "stage"]
    for col in ("count",) + tuple(f"{c}_ns" for c in COLUMNS):
        header += [f"{col}_a", f"{col}_b", f"{col.removesuffix('_ns')}_ratio"]
    out = []
    for row in rows:
        line = [row.tag, row.name]
        for col in ("count",) + COLUMNS:
            for side in (row.a, row.b):
                line.append("" if side is None else
                            side.summary.count if col == "count" else side.summary.values_ns[col])
            ratio = row.ratios[col]
            line.append("" if ratio is None else f"{ratio:.4f}")
        out.append(line)
    return _csv(header, out)


def csv_intervals(runs: list[Breakdown]) -> str:
    """One row per run, stage and interval."""
    header = ["run", "tag", "stage", "start_s", "length_s", "count", *(f"{c}_ns" for c in COLUMNS), "spike"]
    rows = [[bd.label, r.tag, r.name, r.start_s, r.length_s, r.summary.count,
             *(r.summary.values_ns[c] for c in COLUMNS), r.spike]
            for bd in runs for r in bd.intervals]
    return _csv(header, rows)
