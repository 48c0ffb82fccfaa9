"""Where the time goes: per-stage figures, the bottleneck, and the caveats the
data call for, computed from a ``RunLog``. Rendering lives elsewhere.

The rules (thresholds are module constants so the report and its tests agree):

- A percentile with fewer than ``MIN_BEYOND`` samples beyond it is *thin*: it
  is little more than the largest few samples (p99.99 needs 100 000 samples).
- A max more than ``MAX_OUTLIER`` times p99.99 is an outlier worth a look.
- The bottleneck is the pipeline stage with the highest p99.9; its share is of
  TOTAL's p99.9 when TOTAL was logged, else of the sum of the stages' p99.9.
- Pipeline stage *means* should add up to TOTAL's mean (percentiles do not
  add); a gap beyond ``SUM_TOLERANCE`` is reported, as are stages that saw a
  different number of samples than TOTAL.
- An interval whose p99 exceeds ``SPIKE_P99`` times the stage's median
  interval p99 (or whose max exceeds ``SPIKE_MAX`` times the median interval
  max) is a spike; a stage whose median interval p50 moves by more than
  ``DRIFT`` between the first and last quarter of the run drifts.
- A closed-loop source hides stalls (coordinated omission).
"""
import statistics
from dataclasses import dataclass, field

from .histo import COLUMNS, LABELS, PERCENTILES, Summary, fmt_ns, summarize
from .hlog import RunLog, Skipped
from .stages import order_key, stage_for

MIN_BEYOND = 10
MAX_OUTLIER = 10.0
SUM_TOLERANCE = 0.10
COUNT_TOLERANCE = 0.01
SPIKE_P99 = 3.0
SPIKE_MAX = 10.0
SPIKE_MIN_INTERVALS = 4
DRIFT = 1.25
DRIFT_MIN_INTERVALS = 8


@dataclass
class StageRow:
    """One stage's line of the table."""

    tag: str
    name: str
    role: str  # see stages.Stage.role
    summary: Summary
    thin: list[str] = field(default_factory=list)  # percentile labels resting on < MIN_BEYOND samples


@dataclass
class IntervalRow:
    tag: str
    name: str
    start_s: float
    length_s: float
    summary: Summary
    spike: str = ""  # why this interval is a spike, or ""


@dataclass
class Caveat:
    kind: str  # thin-tail, max-outlier, closed-loop, source-unstated, sum-mismatch, count-mismatch,
    #            unknown-tag, spike, drift
    stage: str | None
    text: str


@dataclass
class Bottleneck:
    tag: str
    name: str
    share: float  # of `basis`
    basis: str  # "TOTAL p99.9" or "sum of stage p99.9"


@dataclass
class Breakdown:
    """The report of one run."""

    label: str
    files: list[str]
    unit: str
    source: str | None
    stages: list[StageRow]
    intervals: list[IntervalRow]
    bottleneck: Bottleneck | None
    caveats: list[Caveat]
    skipped: list[Skipped]
    run: RunLog  # the merged histograms, for the plots

    def stage(self, tag: str) -> StageRow | None:
        return next((s for s in self.stages if s.tag == tag), None)


def _thin(count: int) -> list[str]:
    return [label for label, p in zip(LABELS, PERCENTILES) if count * (1 - p / 100) < MIN_BEYOND]


def _thin_caveat(rows: list[StageRow]) -> list[Caveat]:
    thin = [r for r in rows if r.thin]
    if not thin:
        return []
    labels = [label for label in LABELS if any(label in r.thin for r in thin)]
    return [Caveat("thin-tail", None,
                   f"too few samples for the far tail: {', '.join(labels)} of "
                   f"{', '.join(f'{r.name} ({r.summary.count:,})' for r in thin)} rest on fewer than "
                   f"{MIN_BEYOND} samples (p99.99 needs 100,000): starred, read them as 'about the max'")]


def _stage_caveats(row: StageRow) -> list[Caveat]:
    out = []
    s = row.summary
    p9999 = s.values_ns["p99.99"]
    if p9999 and s.values_ns["max"] > MAX_OUTLIER * p9999:
        out.append(Caveat("max-outlier", row.tag,
                          f"{row.name}: max {fmt_ns(s.values_ns['max'])} is "
                          f"{s.values_ns['max'] / p9999:.0f}x p99.99: rare stalls (preemption, page "
                          f"fault, interrupt, GC); --interval shows when"))
    if row.role == "unknown":
        out.append(Caveat("unknown-tag", row.tag,
                          f"tag '{row.tag}' is not in the naming contract (tools/report/stages.py): "
                          f"reported after the known stages"))
    return out


def _bottleneck(rows: list[StageRow]) -> Bottleneck | None:
    candidates = [r for r in rows if r.role == "pipeline" and r.summary.count]
    if not candidates:
        candidates = [r for r in rows if r.role == "unknown" and r.summary.count]
    if len(candidates) < 2:
        return None
    top = max(candidates, key=lambda r: r.summary.values_ns["p99.9"])
    total = next((r for r in rows if r.role == "total" and r.summary.count), None)
    if total and total.summary.values_ns["p99.9"]:
        return Bottleneck(top.tag, top.name, top.summary.values_ns["p99.9"] / total.summary.values_ns["p99.9"],
                          "TOTAL p99.9")
    basis = sum(r.summary.values_ns["p99.9"] for r in candidates)
    return Bottleneck(top.tag, top.name, top.summary.values_ns["p99.9"] / basis if basis else 0.0,
                      "sum of stage p99.9")


def _sum_caveats(rows: list[StageRow]) -> list[Caveat]:
    total = next((r for r in rows if r.role == "total" and r.summary.count), None)
    stages = [r for r in rows if r.role == "pipeline" and r.summary.count]
    if not total or not stages:
        return []
    out = []
    stage_sum = sum(r.summary.mean_ns for r in stages)
    gap = (total.summary.mean_ns - stage_sum) / total.summary.mean_ns if total.summary.mean_ns else 0.0
    if abs(gap) > SUM_TOLERANCE:
        why = ("time between stamps, or a stage not instrumented" if gap > 0
               else "overlapping stamps, or stages and TOTAL measured different messages")
        out.append(Caveat("sum-mismatch", None,
                          f"stage means add up to {fmt_ns(stage_sum)} but TOTAL's mean is "
                          f"{fmt_ns(total.summary.mean_ns)} ({abs(gap):.0%} {'uncovered' if gap > 0 else 'over'}: "
                          f"{why})"))
    for r in stages:
        if abs(r.summary.count - total.summary.count) > COUNT_TOLERANCE * total.summary.count:
            out.append(Caveat("count-mismatch", r.tag,
                              f"{r.name} saw {r.summary.count:,} samples, TOTAL {total.summary.count:,}: "
                              f"shares compare different messages (rejects or drops between stages?)"))
    return out


def _source_caveats(source: str | None, rows: list[StageRow]) -> list[Caveat]:
    if source == "closed-loop":
        return [Caveat("closed-loop", None,
                       "closed-loop source: each request waited for the previous reply, so a stall "
                       "delayed the requests behind it instead of being measured (coordinated "
                       "omission): the tail percentiles understate what an open-loop sender sees")]
    if source is None and any(r.role == "client" for r in rows):
        return [Caveat("source-unstated", None,
                       "the load generator log does not state its loop mode (#[Source: open-loop] or "
                       "#[Source: closed-loop]): if it was closed-loop, the round-trip tail is "
                       "understated (coordinated omission)")]
    return []


def _intervals(run: RunLog) -> tuple[list[IntervalRow], list[Caveat]]:
    rows, caveats = [], []
    by_tag: dict[str, list] = {}
    for iv in run.intervals:
        by_tag.setdefault(iv.tag, []).append(iv)
    for tag in sorted(by_tag, key=order_key):
        name = stage_for(tag).name
        ivs = sorted(by_tag[tag], key=lambda iv: iv.start_s)
        p99s = [iv.summary.values_ns["p99"] for iv in ivs if iv.summary.count]
        maxes = [iv.summary.values_ns["max"] for iv in ivs if iv.summary.count]
        med_p99 = statistics.median(p99s) if len(p99s) >= SPIKE_MIN_INTERVALS else None
        med_max = statistics.median(maxes) if len(maxes) >= SPIKE_MIN_INTERVALS else None
        spikes = 0
        for iv in ivs:
            spike = ""
            v = iv.summary.values_ns
            if iv.summary.count and med_p99 and v["p99"] > SPIKE_P99 * med_p99:
                spike = f"p99 {v['p99'] / med_p99:.1f}x median"
            elif iv.summary.count and med_max and v["max"] > SPIKE_MAX * med_max:
                spike = f"max {v['max'] / med_max:.0f}x median"
            spikes += bool(spike)
            rows.append(IntervalRow(tag, name, iv.start_s, iv.length_s, iv.summary, spike))
        if spikes:
            caveats.append(Caveat("spike", tag, f"{name}: {spikes} of {len(ivs)} intervals spike "
                                                f"(p99 > {SPIKE_P99:g}x or max > {SPIKE_MAX:g}x the "
                                                f"stage's median interval): see --interval"))
        p50s = [iv.summary.values_ns["p50"] for iv in ivs if iv.summary.count]
        if len(p50s) >= DRIFT_MIN_INTERVALS:
            q = len(p50s) // 4
            first, last = statistics.median(p50s[:q]), statistics.median(p50s[-q:])
            if first and (last / first > DRIFT or first / max(last, 1) > DRIFT):
                caveats.append(Caveat("drift", tag, f"{name}: median p50 drifts from {fmt_ns(first)} in the "
                                                    f"first quarter of the run to {fmt_ns(last)} in the last"))
    return rows, caveats


def analyse(run: RunLog, label: str = "") -> Breakdown:
    """The breakdown of one run: stages in pipeline order, unknown tags after."""
    rows = []
    for tag in sorted(run.histograms, key=order_key):
        stage = stage_for(tag)
        summary = summarize(run.histograms[tag], run.scale)
        rows.append(StageRow(tag, stage.name, stage.role, summary, _thin(summary.count)))
    interval_rows, interval_caveats = _intervals(run)
    caveats = _thin_caveat(rows) + [c for r in rows for c in _stage_caveats(r)]
    caveats += _sum_caveats(rows) + _source_caveats(run.source, rows) + interval_caveats
    return Breakdown(label, run.files, run.unit, run.source, rows, interval_rows,
                     _bottleneck(rows), caveats, run.skipped, run)


@dataclass
class CompareRow:
    tag: str
    name: str
    a: StageRow | None
    b: StageRow | None
    ratios: dict[str, float | None]  # B / A for "count" and each column


def compare(a: Breakdown, b: Breakdown) -> list[CompareRow]:
    """Stage by stage, B against A (ratio < 1: B is faster / smaller)."""
    out = []
    for tag in sorted({s.tag for s in a.stages} | {s.tag for s in b.stages}, key=order_key):
        ra, rb = a.stage(tag), b.stage(tag)
        ratios: dict[str, float | None] = {}
        for col in ("count",) + COLUMNS:
            va = None if ra is None else (ra.summary.count if col == "count" else ra.summary.values_ns[col])
            vb = None if rb is None else (rb.summary.count if col == "count" else rb.summary.values_ns[col])
            ratios[col] = vb / va if va and vb is not None else None
        out.append(CompareRow(tag, stage_for(tag).name, ra, rb, ratios))
    return out
