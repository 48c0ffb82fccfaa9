"""Percentiles of an HdrHistogram, read with numpy, and how a latency is written.

``HdrHistogram.get_percentile_to_value_dict`` walks every counter in Python,
which is fine once per stage but too slow for one histogram per stage per
interval over a long run. ``value_at_percentiles`` gives the same answers
(same target-count rounding, same bucket-edge values, taken from the
histogram's own methods) with one numpy cumulative sum; the tests hold it to
the package's answers.
"""
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9, 99.99)
LABELS: tuple[str, ...] = ("p50", "p90", "p99", "p99.9", "p99.99")
COLUMNS: tuple[str, ...] = LABELS + ("max",)


@dataclass
class Summary:
    """Count and latency figures of one histogram, in nanoseconds."""

    count: int
    values_ns: dict[str, int]  # "p50" … "p99.99", "max"
    min_ns: int = 0
    mean_ns: float = 0.0


def _cumulative(hist: HdrHistogram) -> np.ndarray:
    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
    return np.cumsum(counts, dtype=np.uint64)


def value_at_percentiles(hist: HdrHistogram, percentiles) -> list[int]:
    """Values (in the histogram's units) at ``percentiles`` (0..100), as the package computes them."""
    total = hist.get_total_count()
    if total == 0:
        return [0] * len(percentiles)
    cum = _cumulative(hist)
    out = []
    for p in percentiles:
        p = min(float(p), 100.0)
        target = max(int((p * total / 100) + 0.5), 1)
        idx = int(np.searchsorted(cum, target, side="left"))
        if idx >= len(cum):
            out.append(0)
            continue
        v = hist.get_value_from_index(idx)
        out.append(hist.get_highest_equivalent_value(v) if p else hist.get_lowest_equivalent_value(v))
    return out


def summarize(hist: HdrHistogram, scale: int = 1, with_mean: bool = True) -> Summary:
    """The report's figures for ``hist``; ``scale`` converts the log's unit to ns."""
    values = value_at_percentiles(hist, PERCENTILES)
    figures = {label: v * scale for label, v in zip(LABELS, values)}
    figures["max"] = hist.get_max_value() * scale
    count = hist.get_total_count()
    if not with_mean or count == 0:
        return Summary(count, figures)
    return Summary(count, figures, hist.get_min_value() * scale, mean(hist) * scale)


def mean(hist: HdrHistogram) -> float:
    """The mean as ``HdrHistogram.get_mean_value`` computes it (each bucket at its median
    equivalent value), visiting only the non-empty buckets."""
    total = hist.get_total_count()
    if total == 0:
        return 0.0
    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
    weighted = 0
    for i in np.flatnonzero(counts):
        low = hist.get_lowest_equivalent_value(hist.get_value_from_index(int(i)))
        high = hist.get_highest_equivalent_value(low)
        weighted += int(counts[i]) * (low + ((high - low + 1) >> 1))
    return weighted / total


def distribution(hist: HdrHistogram, scale: int = 1, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Percentile distribution on the "nines" axis: x = 1/(1-q), y = latency in ns.

    The curve stops where the samples run out (x = count): beyond that a
    percentile is only the max again.
    """
    total = hist.get_total_count()
    if total == 0:
        return np.array([]), np.array([])
    cum = _cumulative(hist)
    nines = np.linspace(0.0, np.log10(max(total, 10)), points)
    q = 1.0 - 10.0 ** -nines
    targets = np.maximum((q * total + 0.5).astype(np.uint64), 1)
    idx = np.minimum(np.searchsorted(cum, targets, side="left"), len(cum) - 1)
    value_of = {i: hist.get_highest_equivalent_value(hist.get_value_from_index(int(i))) for i in np.unique(idx)}
    y = np.array([value_of[i] for i in idx], dtype=np.float64) * scale
    y[-1] = hist.get_max_value() * scale  # the 1-in-count sample is the largest
    return 10.0 ** nines, y


def fmt_ns(ns: float) -> str:
    """A latency with three significant digits in the unit that fits: 850ns, 1.23µs, 12.3ms."""
    for unit, size in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= size:
            v = ns / size
            return f"{v:.0f}{unit}" if v >= 99.95 else f"{v:.1f}{unit}" if v >= 9.995 else f"{v:.2f}{unit}"
    return f"{ns:.0f}ns"
