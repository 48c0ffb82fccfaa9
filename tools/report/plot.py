"""The report as pictures (PNG) and as one self-contained HTML page.

The percentile plot draws what HdrHistogram's plotters draw: latency against
the "nines" axis x = 1/(1-q), log-scaled, labelled 90%, 99%, 99.9%, … so the
tail gets as much room as the body. Below it, when the logs hold more than
one interval, each stage's p99 per interval over the run, spikes marked.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no display).
"""
import base64
import html
import io

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .breakdown import Breakdown, CompareRow
from .histo import COLUMNS, distribution, fmt_ns
from .render import BOTTLENECK_MARK, SPIKE_MARK

NINES = ((1, "0%"), (10, "90%"), (100, "99%"), (1e3, "99.9%"), (1e4, "99.99%"),
         (1e5, "99.999%"), (1e6, "99.9999%"), (1e7, "99.99999%"))
_UNITS = (("ms", 1e6), ("µs", 1e3), ("ns", 1.0))
_LINESTYLES = ("-", "--", ":", "-.")


def _unit_for(largest_ns: float) -> tuple[str, float]:
    """The plot's y unit: the largest unit in which the largest value is at least 10."""
    return next(((u, s) for u, s in _UNITS if largest_ns >= 10 * s), ("ns", 1.0))


def _plain_log_ticks(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def report_figure(runs: list[Breakdown]) -> Figure:
    """Percentile distribution per stage (every run overlaid; A solid, B dashed), and
    p99 per interval over time when the logs hold more than one interval."""
    tags = list(dict.fromkeys(r.tag for bd in runs for r in bd.stages))
    colours = {tag: f"C{i % 10}" for i, tag in enumerate(tags)}
    largest = max((r.summary.values_ns["max"] for bd in runs for r in bd.stages), default=1)
    unit, size = _unit_for(largest)
    over_time = any(sum(1 for iv in bd.intervals if iv.tag == t) > 1 for bd in runs for t in tags)

    fig = Figure(figsize=(10, 9 if over_time else 5.5), dpi=100, layout="constrained")
    axes = fig.subplots(2 if over_time else 1, 1, squeeze=False)[:, 0]
    ax = axes[0]
    for i, bd in enumerate(runs):
        for row in bd.stages:
            x, y = distribution(bd.run.histograms[row.tag], bd.run.scale)
            label = row.name if len(runs) == 1 else f"{row.name} ({bd.label})"
            ax.plot(x, y / size, _LINESTYLES[i % len(_LINESTYLES)], color=colours[row.tag], label=label,
                    linewidth=2.2 if bd.bottleneck and bd.bottleneck.tag == row.tag else 1.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = max((bd.run.histograms[r.tag].get_total_count() for bd in runs for r in bd.stages), default=10)
    ticks = [(x, lbl) for x, lbl in NINES if x <= max(top, 10)]
    ax.xaxis.set_major_locator(FixedLocator([x for x, _ in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: dict(ticks).get(v, "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, max(top, 10))
    _plain_log_ticks(ax)
    ax.set_xlabel("percentile")
    ax.set_ylabel(f"latency ({unit})")
    ax.grid(True, which="major", alpha=0.35)
    ax.set_title("Latency by percentile" + "".join(
        f" — {bd.label + ': ' if len(runs) > 1 else ''}bottleneck {bd.bottleneck.name}"
        for bd in runs if bd.bottleneck))
    ax.legend(loc="upper left", fontsize="small", ncol=2 if len(runs) > 1 else 1)

    if over_time:
        ax = axes[1]
        for i, bd in enumerate(runs):
            for tag in tags:
                ivs = [iv for iv in bd.intervals if iv.tag == tag and iv.summary.count]
                if not ivs:
                    continue
                t = [iv.start_s + iv.length_s / 2 for iv in ivs]
                p99 = [iv.summary.values_ns["p99"] / size for iv in ivs]
                label = ivs[0].name if len(runs) == 1 else f"{ivs[0].name} ({bd.label})"
                ax.plot(t, p99, _LINESTYLES[i % len(_LINESTYLES)], color=colours[tag], label=label, linewidth=1.2)
                spikes = [(tt, v) for tt, v, iv in zip(t, p99, ivs) if iv.spike]
                if spikes:
                    ax.plot(*zip(*spikes), "v", color=colours[tag], markersize=7, markeredgecolor="black")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("time since start of run (s)")
        ax.set_ylabel(f"p99 per interval ({unit})")
        ax.set_title("p99 per interval (triangles: spikes)")
        ax.grid(True, which="major", alpha=0.35)
    return fig


def write_png(runs: list[Breakdown], path: str) -> None:
    report_figure(runs).savefig(path, format="png")


def write_html(runs: list[Breakdown], compare: list[CompareRow] | None, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(html_report(runs, compare))


def _png_base64(runs: list[Breakdown]) -> str:
    buf = io.BytesIO()
    report_figure(runs).savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(headers: list[str], rows: list[list[str]], cls: str, ident: str = "") -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{e(ident)}"' if ident else ""
    return f'<table class="{cls}"{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _notes(bd: Breakdown) -> str:
    e = html.escape
    parts = []
    if bd.bottleneck:
        b = bd.bottleneck
        p999 = bd.stage(b.tag).summary.values_ns["p99.9"]
        parts.append(f'<p class="bottleneck">Bottleneck: <b>{e(b.name)}</b>, p99.9 {e(fmt_ns(p999))} = '
                     f"{b.share:.0%} of {e(b.basis)}</p>")
    if bd.caveats:
        parts.append("<h3>Caveats</h3><ul>" + "".join(f"<li>{e(c.text)}</li>" for c in bd.caveats) + "</ul>")
    if bd.skipped:
        parts.append(f"<h3>Skipped ({len(bd.skipped)})</h3><ul>"
                     + "".join(f"<li><code>{e(str(s))}</code></li>" for s in bd.skipped) + "</ul>")
    return "".join(parts)


def _stage_rows(bd: Breakdown) -> list[list[str]]:
    return [[r.name, f"{r.summary.count:,}",
             *(fmt_ns(r.summary.values_ns[c]) + ("*" if c in r.thin else "") for c in COLUMNS),
             BOTTLENECK_MARK if bd.bottleneck and bd.bottleneck.tag == r.tag else ""] for r in bd.stages]


def _interval_tables(bd: Breakdown) -> str:
    out = []
    for tag in dict.fromkeys(r.tag for r in bd.intervals):
        ivs = [r for r in bd.intervals if r.tag == tag]
        rows = [[f"{r.start_s:.3f}", f"{r.length_s:.3f}", f"{r.summary.count:,}",
                 *(fmt_ns(r.summary.values_ns[c]) for c in ("p50", "p99", "p99.9", "max")),
                 f"{SPIKE_MARK}: {r.spike}" if r.spike else ""] for r in ivs]
        out.append(f"<h3>{html.escape(ivs[0].name)}</h3>" + _html_table(
            ["start s", "length s", "count", "p50", "p99", "p99.9", "max", ""], rows, "intervals",
            f"intervals-{bd.label}-{tag}" if bd.label else f"intervals-{tag}"))
    return "".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{padding:.25em .7em;text-align:right;
border-bottom:1px solid #ddd}th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3}img{max-width:100%}code{font-size:90%}.bottleneck{font-size:110%}
details{margin:.5em 0}"""


def html_report(runs: list[Breakdown], compare: list[CompareRow] | None = None) -> str:
    """One self-contained page: the tables, the notes, the plot inlined as a base64 PNG,
    and each stage's table per interval."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>netio latency breakdown</title>"
             f"<style>{_STYLE}</style></head><body><h1>Latency breakdown</h1>"]
    for bd in runs:
        parts.append(f"<p>{e(bd.label + ': ' if bd.label else '')}{e(', '.join(bd.files))}"
                     f"{e(', ' + bd.source) if bd.source else ''}</p>")
    headers = ["stage", "count", *COLUMNS, ""]
    if compare is None:
        parts.append("<h2>Stages</h2>" + _html_table(headers, _stage_rows(runs[0]), "stages"))
    else:
        rows = []
        for row in compare:
            for label, side in (("A", row.a), ("B", row.b)):
                cells = (["-"] * (len(COLUMNS) + 1) if side is None else
                         [f"{side.summary.count:,}", *(fmt_ns(side.summary.values_ns[c]) for c in COLUMNS)])
                rows.append([row.name if label == "A" else "", label, *cells])
            rows.append(["", "B/A", *("-" if row.ratios[c] is None else f"x{row.ratios[c]:.2f}"
                                      for c in ("count",) + COLUMNS)])
        parts.append("<h2>Stages, B against A</h2>"
                     + _html_table(["stage", "run", "count", *COLUMNS], rows, "stages compare"))
    for bd in runs:
        notes = _notes(bd)
        if notes:
            parts.append(f"<h2>Notes{' on ' + e(bd.label) if bd.label else ''}</h2>{notes}")
    parts.append(f"<h2>Percentile distribution</h2><img alt='latency by percentile per stage' "
                 f"src='data:image/png;base64,{_png_base64(runs)}'>")
    for bd in runs:
        if bd.intervals:
            parts.append(f"<h2>Per interval{' — ' + e(bd.label) if bd.label else ''}</h2>"
                         f"<details><summary>one table per stage</summary>{_interval_tables(bd)}</details>")
    parts.append("</body></html>\n")
    return "".join(parts)
