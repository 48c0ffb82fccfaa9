"""Per-stage latency telemetry: TSC stamps at every hop into HdrHistograms and .hlog files.

The venue stamps each burst with the TSC at its hops (poll, parsed, validated, matched,
serialized, journaled, tx_submitted and, where the port lets the kick be stamped apart,
tx_completed); every packet of the burst spent those intervals in those stages. TX
submit is the frames' descriptors published on the TX ring; TX completion is the kick
that has the kernel send them (AF_XDP copy mode transmits inside that sendto()), its own
stage after TOTAL. TOTAL is the first RX stamp (NetworkRX: the port's RX stamp to the
poll) to TX submit. Recording goes straight into the counts arrays of `hdrh` histograms from C, so a
burst costs a few C calls and no allocation. Each interval (1 s by default) is written to
an `.hlog` in HdrHistogram's standard interval-log format, one `Tag=` per stage, values
in nanoseconds — what `netio-report` and HdrHistogram's own tools read.
"""
from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import TextIO

import numpy as np
from hdrh.histogram import HdrHistogram

from engine._telemetry import ffi, lib

HOPS = ("poll", "parsed", "validated", "matched", "serialized", "journaled", "tx_submitted", "tx_completed")
STAGES = ("NetworkRX", "Deserialize", "Validation", "Matching", "Serialize", "Journal", "NetworkTX",
          "TxCompletion")    # stage i: hop i - 1 to hop i (NetworkRX: RX stamp to poll)
TX_SUBMITTED = HOPS.index("tx_submitted")
TOTAL = "TOTAL"
TAGS = STAGES + (TOTAL,)
LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES = 1, 100_000_000_000, 3
SHIFT = 32


class StageHistogram:
    """An hdrh HdrHistogram whose counts C code writes directly."""

    def __init__(self, tag: str):
        self.tag = tag
        self.hist = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)
        self.hist.set_tag(tag)
        h = self.hist
        self._layout = ffi.new("struct hdr_layout *", (h.counts_len, h.unit_magnitude,
                                                       h.sub_bucket_half_count_magnitude,
                                                       h.sub_bucket_mask, h.sub_bucket_half_count))
        self._counts = ffi.cast("int64_t *", ctypes.addressof(h.counts))
        self._totals = ffi.new("struct hdr_totals *")
        self.reset()

    def record(self, values_ns: np.ndarray, times: int = 1) -> None:
        """Record each value (int64 ns) ``times`` times."""
        values = np.ascontiguousarray(values_ns, np.int64)
        lib.hdr_record_values(self._layout, self._counts, ffi.from_buffer("int64_t[]", values),
                              len(values), times, self._totals)

    def record_cycles(self, start: int, end: int, mult: int, times: int) -> None:
        """Record the TSC interval ``end - start`` as ns, ``times`` times."""
        lib.hdr_record_cycles(self._layout, self._counts, start, end, mult, SHIFT, times, self._totals)

    def record_intervals(self, stamps: np.ndarray, start: int, end: int, mult: int, times: np.ndarray) -> None:
        """For each row of ``stamps`` (uint64, C order), the TSC interval from column ``start``
        to column ``end`` as ns, ``times[row]`` times; one C call for every row."""
        lib.hdr_record_intervals(self._layout, self._counts, ffi.from_buffer("uint64_t[]", stamps), len(stamps),
                                 stamps.shape[1], start, end, mult, SHIFT, ffi.from_buffer("int64_t[]", times),
                                 self._totals)

    @property
    def dropped(self) -> int:
        """Values outside 0..100 s, which no histogram can hold."""
        return self._totals.dropped

    def synced(self) -> HdrHistogram:
        """The histogram with its totals brought up to date (for percentiles and encoding)."""
        t = self._totals
        self.hist.total_count = t.count
        self.hist.min_value = t.min if t.count else 0
        self.hist.max_value = t.max
        return self.hist

    def percentiles(self, *percentiles: float) -> tuple[int, ...]:
        """What hdrh's get_value_at_percentile gives for each, from one numpy pass over the
        counts up to the largest value (hdrh steps through them in Python, a millisecond a
        call, which would keep the venue from its port and leave its caches cold)."""
        h = self.synced()
        if not h.total_count:
            return (0,) * len(percentiles)
        top = h.get_counts_array_index(h.max_value) + 1
        counts = np.ctypeslib.as_array(h.counts)[:top]
        cumulative = np.cumsum(counts)
        out = []
        for p in percentiles:
            index = int(np.searchsorted(cumulative, h.get_target_count_at_percentile(p)))
            if index == top:            # more counted than recorded: hdrh finds no such value
                out.append(0)
                continue
            value = h.get_value_from_index(index)
            out.append(h.get_highest_equivalent_value(value) if p else h.get_lowest_equivalent_value(value))
        return tuple(out)

    def reset(self) -> None:
        # only the counts up to the largest value recorded can be set: clearing all of them
        # (224 KiB a stage, every interval) would sweep the venue's tables out of the cache
        if self._totals.count:
            top = self.hist.get_counts_array_index(self._totals.max) + 1
            ctypes.memset(ctypes.addressof(self.hist.counts), 0, top * ctypes.sizeof(self.hist.counts._type_))
        self._totals.count, self._totals.min, self._totals.max, self._totals.dropped = 0, 2**63 - 1, 0, 0
        self.hist.total_count, self.hist.min_value, self.hist.max_value = 0, 0, 0


class HlogWriter:
    """Writes HdrHistogram interval logs (format 1.3: tagged lines, times relative to BaseTime)."""

    def __init__(self, path: str | Path, *, start_time_s: float | None = None,
                 comments: tuple[str, ...] = ()):
        self.start_time_s = time.time() if start_time_s is None else start_time_s
        self.file: TextIO = open(path, "w")
        stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(self.start_time_s))
        for comment in comments:
            self.file.write(f"#{comment}\n")
        self.file.write("#[Histogram log format version 1.3]\n")
        self.file.write(f"#[StartTime: {self.start_time_s:.3f} (seconds since epoch), {stamp}]\n")
        self.file.write(f"#[BaseTime: {self.start_time_s:.3f} (seconds since epoch)]\n")
        self.file.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def write(self, hist: HdrHistogram, start_s: float, end_s: float, tag: str | None = None) -> None:
        """One interval line; ``start_s``/``end_s`` are seconds since the epoch; max in ms as Java writes it."""
        prefix = f"Tag={tag}," if tag else ""
        payload = hist.encode().decode("ascii")
        self.file.write(f"{prefix}{start_s - self.start_time_s:.3f},{end_s - start_s:.3f},"
                        f"{hist.get_max_value() / 1e6:.3f},{payload}\n")

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Telemetry:
    """Stage histograms for a running venue: interval ones (logged, then reset) and whole-run ones."""

    def __init__(self, ns_per_cycle: float, hlog_path: str | Path | None = None, interval_s: float = 1.0,
                 *, max_burst: int = 4096):
        self.mult = round(ns_per_cycle * (1 << SHIFT))
        self.interval_s = interval_s
        self.interval = {tag: StageHistogram(tag) for tag in TAGS}
        self.run = {tag: StageHistogram(tag) for tag in TAGS}
        self.last_interval: dict[str, tuple[int, int, int]] = {}
        self._scratch = np.zeros(max_burst, np.int64)
        self._one = np.zeros(1, np.int64)
        self._interval_start = time.time()
        self.writer = HlogWriter(hlog_path, start_time_s=self._interval_start) if hlog_path else None

    def record_burst(self, stamps: np.ndarray, packets: int, rx_wait_ns: np.ndarray | None = None) -> None:
        """Record one burst: ``stamps`` are the TSC readings at HOPS up to tx_submitted at
        least (a port that cannot stamp its TX completion apart stops there); every one of
        ``packets`` spent each interval in its stage. ``rx_wait_ns`` per packet (RX stamp to
        poll, on one timeline) fills NetworkRX and adds to TOTAL; without it NetworkRX is
        not recorded."""
        if packets <= 0:
            return
        s = [int(v) for v in stamps]
        for histograms in (self.interval, self.run):
            for i in range(1, len(s)):
                histograms[STAGES[i]].record_cycles(s[i - 1], s[i], self.mult, packets)
        in_process = (((s[TX_SUBMITTED] - s[0]) * self.mult) >> SHIFT)
        if rx_wait_ns is None:
            self._one[0] = in_process
            for histograms in (self.interval, self.run):
                histograms[TOTAL].record(self._one, packets)
            return
        wait = np.asarray(rx_wait_ns, np.int64)[:packets]
        total = self._scratch[:len(wait)] if len(wait) <= len(self._scratch) else np.empty(len(wait), np.int64)
        np.add(wait, in_process, out=total)
        for histograms in (self.interval, self.run):
            histograms["NetworkRX"].record(wait)
            histograms[TOTAL].record(total)

    def record_bursts(self, stamps: np.ndarray, packets: np.ndarray, rx_column: int) -> None:
        """Record many bursts at once: rows of ``stamps`` hold the TSC at HOPS, then other
        columns; ``stamps[:, rx_column]`` is each burst's RX stamp (a TSC reading, so the
        wait needs no clock model); every one of ``packets[row]`` frames spent each
        interval in its stage. One C call per stage, whatever the number of bursts."""
        stamps = np.ascontiguousarray(stamps, np.uint64)
        times = np.ascontiguousarray(packets, np.int64)
        for histograms in (self.interval, self.run):
            histograms["NetworkRX"].record_intervals(stamps, rx_column, 0, self.mult, times)
            for i in range(1, len(HOPS)):
                histograms[STAGES[i]].record_intervals(stamps, i - 1, i, self.mult, times)
            histograms[TOTAL].record_intervals(stamps, rx_column, TX_SUBMITTED, self.mult, times)

    def tick(self, now: float | None = None) -> bool:
        """Close the interval if it is due: log it and reset. True when an interval closed."""
        now = time.time() if now is None else now
        if now - self._interval_start < self.interval_s:
            return False
        self.close_interval(now)
        return True

    def close_interval(self, now: float) -> None:
        self.last_interval = {}
        for tag, stage in self.interval.items():
            hist = stage.synced()
            if hist.total_count:
                self.last_interval[tag] = (*stage.percentiles(50, 99), hist.total_count)
                if self.writer:
                    self.writer.write(hist, self._interval_start, now, tag)
            stage.reset()
        if self.writer:
            self.writer.flush()
        self._interval_start = now

    def live(self) -> dict[str, tuple[int, int, int]]:
        """Per stage, (p50 ns, p99 ns, count) of the last closed interval."""
        return dict(self.last_interval)

    def summary(self) -> dict[str, HdrHistogram]:
        """Whole-run histograms of every stage that saw data, in pipeline order."""
        synced = {tag: stage.synced() for tag, stage in self.run.items()}
        return {tag: hist for tag, hist in synced.items() if hist.total_count}

    def close(self) -> None:
        """Log the last partial interval and close the log."""
        self.close_interval(time.time())
        if self.writer:
            self.writer.close()
            self.writer = None
