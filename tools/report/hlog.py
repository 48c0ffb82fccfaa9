"""Read HdrHistogram interval logs (.hlog) into one run: merged histograms per tag
plus per-interval figures.

The format is the one HdrHistogram's Java and C log writers and the
``hdrhistogram`` PyPI package write::

    #[Histogram log format version 1.3]
    #[StartTime: 1700000000.000 (seconds since epoch), ...]
    #[BaseTime: 1700000000.000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    Tag=Matching,0.000,1.000,0.002,HISTFAAAADR42pNp...

Lines without ``Tag=`` are allowed (the PyPI writer cannot write tags): they
take the file's stem as tag when it names a contract stage, else "untagged".
Interval_Max is ignored: writers scale it by different unit ratios, and the
histogram itself carries the max.

netio's own convention, read here: the load generator states how it sent
with a comment ``#[Source: open-loop]`` or ``#[Source: closed-loop]``
(``#Source: ...`` without brackets is accepted too). Closed-loop sources
suffer coordinated omission; the report says so.

The reader never gives up on a file because of one bad line: each line it
cannot use is recorded in ``RunLog.skipped`` with its reason, and the rest is
read. A file it cannot read at all is one ``Skipped`` with ``line=None``.
"""
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from .histo import Summary, summarize
from .stages import UNTAGGED, is_known

UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}

_START_TIME = re.compile(r"#\[StartTime:\s*([\d.]+)")
_BASE_TIME = re.compile(r"#\[BaseTime:\s*([\d.]+)")
_SOURCE = re.compile(r"#\s*\[?\s*Source:\s*([\w-]+)", re.IGNORECASE)
_FORMAT_VERSION = re.compile(r"#\[Histogram log format version")
_LEGEND = '"StartTimestamp"'
_TAG_NAME = re.compile(r"^[^\s,]+$")
SOURCES = ("open-loop", "closed-loop")
_YEAR_S = 365 * 24 * 3600.0


@dataclass
class Skipped:
    """Something the reader could not use, and why."""

    file: str
    line: int | None  # None: the whole file
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class Interval:
    """One logged interval of one tag: when, and its figures in ns."""

    tag: str
    start_s: float  # seconds since the file's StartTime (or first interval)
    length_s: float
    summary: Summary


@dataclass
class RunLog:
    """Everything read from the files of one run."""

    files: list[str]
    unit: str = "ns"
    histograms: dict[str, HdrHistogram] = field(default_factory=dict)  # merged per tag, log units
    intervals: list[Interval] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # file -> "open-loop" | "closed-loop"
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def scale(self) -> int:
        """ns per unit of the values in the log."""
        return UNITS_NS[self.unit]

    @property
    def source(self) -> str | None:
        """The load generator's loop mode, if a file stated it (closed-loop wins if files disagree)."""
        modes = set(self.sources.values())
        return "closed-loop" if "closed-loop" in modes else next(iter(modes), None)

    def add(self, tag: str, hist: HdrHistogram) -> None:
        """Merge one interval histogram into its tag's total (IndexError if it does not fit)."""
        merged = self.histograms.get(tag)
        if merged is None:
            # A decoded histogram owns its counters: it can be the accumulator.
            self.histograms[tag] = hist
        else:
            merged.add(hist)


class _Clock:
    """Turns a line's StartTimestamp into seconds since the log's start: stamps are
    relative to BaseTime when given, else absolute unless more than a year before
    StartTime (the reference readers' rule); without StartTime the first interval
    starts the clock."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.base: float | None = None

    def offset(self, stamp: float) -> float:
        if self.base is None:
            far_before = self.start is not None and stamp < self.start - _YEAR_S
            self.base = self.start if far_before else 0.0
        absolute = stamp + self.base
        if self.start is None:
            self.start = absolute
        return absolute - self.start


def _decode_line(line: str) -> tuple[str | None, float, float, HdrHistogram]:
    """(tag, start, length, histogram) of one interval line; ValueError says what is wrong."""
    tag = None
    if line.startswith("Tag="):
        tag, sep, line = line[4:].partition(",")
        if not sep or not _TAG_NAME.match(tag):
            raise ValueError("'Tag=' without a valid name followed by a comma")
    fields = line.split(",")
    if len(fields) != 4:
        raise ValueError(f"expected 4 comma-separated fields (start,length,max,histogram), "
                         f"found {len(fields)}: truncated or not an interval line")
    try:
        start, length = float(fields[0]), float(fields[1])
        float(fields[2])
    except ValueError:
        raise ValueError("start, length or max is not a number") from None
    if not (math.isfinite(start) and math.isfinite(length)):
        raise ValueError("start or length is not finite")
    payload = fields[3].strip()
    if not payload:
        raise ValueError("empty histogram field: truncated line")
    try:
        hist = HdrHistogram.decode(payload)
    except Exception as exc:  # the package raises base64, zlib, ctypes and its own errors
        raise ValueError(f"corrupt or truncated histogram payload "
                         f"({type(exc).__name__}: {exc or 'no detail'})") from None
    return tag, start, length, hist


def read_file(path: str, run: RunLog) -> int:
    """Read one .hlog file into ``run``; returns the number of intervals taken."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        run.skipped.append(Skipped(name, None, f"cannot read: {exc.strerror or exc}"))
        return 0
    if b"\0" in raw[:4096]:
        run.skipped.append(Skipped(name, None, "binary file, not an HdrHistogram interval log"))
        return 0
    lines = raw.decode("utf-8", errors="replace").splitlines()
    stem_tag = Path(name).stem if is_known(Path(name).stem) else UNTAGGED
    clock = _Clock()
    looks_like_hlog = False
    taken = 0
    bad: list[Skipped] = []
    for no, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if m := _START_TIME.match(line):
                clock.start = float(m.group(1))
                looks_like_hlog = True
            elif m := _BASE_TIME.match(line):
                clock.base = float(m.group(1))
                looks_like_hlog = True
            elif m := _SOURCE.match(line):
                mode = m.group(1).lower()
                if mode in SOURCES:
                    run.sources[name] = mode
                else:
                    bad.append(Skipped(name, no, f"unknown Source '{m.group(1)}' "
                                                 f"(expected one of {', '.join(SOURCES)})"))
            elif _FORMAT_VERSION.match(line):
                looks_like_hlog = True
            continue
        if line.startswith(_LEGEND):
            looks_like_hlog = True
            continue
        try:
            tag, start, length, hist = _decode_line(line)
        except ValueError as exc:
            bad.append(Skipped(name, no, str(exc)))
            continue
        tag = tag or stem_tag
        summary = summarize(hist, run.scale, with_mean=False)
        try:
            run.add(tag, hist)
        except IndexError as exc:  # values beyond the first histogram's trackable range
            bad.append(Skipped(name, no, f"cannot merge into '{tag}': {exc}"))
            continue
        looks_like_hlog = True
        taken += 1
        run.intervals.append(Interval(tag, clock.offset(start), length, summary))
    if not looks_like_hlog:
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        hint = f" (first line: {first[:60]!r})" if first else " (empty file)"
        run.skipped.append(Skipped(name, None, "not an HdrHistogram interval log" + hint))
    else:
        run.skipped.extend(bad)
    return taken


def read_run(paths, unit: str = "ns") -> RunLog:
    """Read the .hlog files of one run (venue and load generator logs together)."""
    if unit not in UNITS_NS:
        raise ValueError(f"unit must be one of {', '.join(UNITS_NS)}")
    run = RunLog([str(p) for p in paths], unit)
    for p in paths:
        read_file(p, run)
    return run
