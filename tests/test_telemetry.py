"""Stage telemetry: C-recorded histograms equal hdrh's own, and .hlog files in the standard format."""
import numpy as np
from hdrh.histogram import HdrHistogram

from engine.telemetry import HOPS, STAGES, TAGS, TOTAL, HlogWriter, StageHistogram, Telemetry


def reference(values):
    hist = HdrHistogram(1, 100_000_000_000, 3)
    for v in values:
        hist.record_value(int(v))
    return hist


def test_values_recorded_in_c_land_in_the_same_buckets_as_hdrh_records_them():
    values = np.random.default_rng(1).lognormal(8, 2, 20_000).astype(np.int64) + 1
    stage = StageHistogram("Matching")
    stage.record(values)
    ours, theirs = stage.synced(), reference(values)
    assert ours.get_total_count() == theirs.get_total_count() == 20_000
    for p in (50, 90, 99, 99.9, 99.99, 100):
        assert ours.get_value_at_percentile(p) == theirs.get_value_at_percentile(p)
    assert ours.get_max_value() == theirs.get_max_value() and ours.get_min_value() == theirs.get_min_value()
    assert ours.encode() == theirs.encode()


def test_percentiles_are_hdrhs_and_a_reset_clears_every_count_recorded():
    """StageHistogram.percentiles (one numpy pass, for the status line each interval)
    gives what hdrh's get_value_at_percentile gives, from p0 to p100, on wide and narrow
    distributions; reset (which clears only up to the largest value) leaves no count."""
    rng = np.random.default_rng(3)
    h = StageHistogram("x")
    for trial in range(20):
        values = rng.lognormal(6 + trial % 6, 1.5, int(rng.integers(1, 3000))).astype(np.int64) + 1
        h.record(values, int(rng.integers(1, 4)))
        ps = (0, 1, 50, 90, 99, 99.9, 99.99, 100)
        assert h.percentiles(*ps) == tuple(h.synced().get_value_at_percentile(p) for p in ps)
        h.reset()
        assert not np.ctypeslib.as_array(h.hist.counts).any() and h.synced().total_count == 0
    assert h.percentiles(50, 99) == (0, 0)


def test_out_of_range_values_are_counted_not_recorded():
    stage = StageHistogram("x")
    stage.record(np.array([-5, 10, 10**13]))
    assert stage.synced().get_total_count() == 1 and stage.dropped == 2


def test_a_burst_charges_every_packet_with_each_stage_interval_and_total_ends_at_tx_submit():
    # 1 ns per cycle: stamps are ns apart as written
    telemetry = Telemetry(ns_per_cycle=1.0)
    stamps = np.array([1000, 1100, 1300, 1600, 2000, 2050, 2550, 9550], np.uint64)    # at HOPS
    assert len(stamps) == len(HOPS)
    telemetry.record_burst(stamps, packets=4, rx_wait_ns=np.array([50, 60, 70, 80]))
    run = telemetry.summary()
    assert list(run) == list(TAGS)
    expected = {"NetworkRX": 50, "Deserialize": 100, "Validation": 200, "Matching": 300, "Serialize": 400,
                "Journal": 50, "NetworkTX": 500, "TxCompletion": 7000}
    for stage, ns in expected.items():
        assert run[stage].get_total_count() == 4
        assert run[stage].get_min_value() == ns
    # the first RX stamp to TX submit: the kick that follows is TxCompletion's, not TOTAL's
    assert run[TOTAL].get_total_count() == 4 and run[TOTAL].get_min_value() == 1600
    assert run[TOTAL].get_max_value() == run[TOTAL].get_highest_equivalent_value(1630)


def test_a_port_without_a_separate_kick_stops_at_tx_submit():
    telemetry = Telemetry(ns_per_cycle=1.0)
    telemetry.record_burst(np.array([0, 10, 20, 30, 40, 40, 100], np.uint64), packets=1)
    run = telemetry.summary()
    assert "TxCompletion" not in run and run["NetworkTX"].get_min_value() == 60
    assert run[TOTAL].get_min_value() == 100


def test_without_rx_stamps_network_rx_is_absent_and_total_is_in_process_time():
    telemetry = Telemetry(ns_per_cycle=0.5)
    telemetry.record_burst(np.array([0, 10, 20, 30, 40, 50, 100, 300], np.uint64), packets=2)
    run = telemetry.summary()
    assert "NetworkRX" not in run and run[TOTAL].get_min_value() == 50


def test_interval_log_is_standard_and_tagged(tmp_path):
    path = tmp_path / "run.hlog"
    telemetry = Telemetry(ns_per_cycle=1.0, hlog_path=path, interval_s=1.0)
    start = telemetry._interval_start
    for second in range(3):
        for _ in range(10):
            telemetry.record_burst(np.array([0, 100, 200, 300, 400, 400, 500 + 1000 * second, 600 + 1000 * second],
                                            np.uint64), packets=2)
        assert telemetry.tick(start + second + 1.0)
        assert telemetry.live()["NetworkTX"][2] == 20
    telemetry.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "#[Histogram log format version 1.3]"
    assert lines[1].startswith("#[StartTime: ") and lines[2].startswith("#[BaseTime: ")
    tagged = [line for line in lines if line.startswith("Tag=")]
    assert {line.split(",")[0][4:] for line in tagged} == set(STAGES[1:]) | {TOTAL}
    tx = [line for line in tagged if line.startswith("Tag=NetworkTX,")]
    assert [float(line.split(",")[1]) for line in tx] == [0.0, 1.0, 2.0]
    decoded = [HdrHistogram.decode(line.split(",", 4)[4]) for line in tx]
    assert [h.get_total_count() for h in decoded] == [20, 20, 20]
    assert [h.get_max_value() for h in decoded] == [h.get_highest_equivalent_value(v) for h, v in
                                                   zip(decoded, (100, 1100, 2100))]


def test_hlog_writer_keeps_untagged_lines_for_plain_readers(tmp_path):
    path = tmp_path / "rtt.hlog"
    writer = HlogWriter(path, start_time_s=1000.0, comments=("[Source: open-loop]",))
    writer.write(reference([1500, 2500]), 1000.0, 1001.0)
    writer.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "#[Source: open-loop]"
    assert lines[-1].startswith("0.000,1.000,0.003,")


def test_many_bursts_recorded_at_once_match_the_same_bursts_recorded_one_by_one():
    """record_bursts (the fused path's rows: hops, frames, commands, TSC RX stamp) charges
    the stages and TOTAL exactly as record_burst does with each RX wait."""
    rng = np.random.default_rng(3)
    rows = np.zeros((50, len(HOPS) + 3), np.uint64)
    rows[:, :len(HOPS)] = 10_000 + np.cumsum(rng.integers(0, 5_000, (50, len(HOPS))), axis=1)
    rows[:, len(HOPS)] = rng.integers(1, 9, 50)                   # frames
    rows[:, len(HOPS) + 2] = rows[:, 0] - rng.integers(0, 3_000, 50)   # RX stamp, before the poll
    at_once, one_by_one = Telemetry(ns_per_cycle=0.37), Telemetry(ns_per_cycle=0.37)
    at_once.record_bursts(rows, rows[:, len(HOPS)], len(HOPS) + 2)
    for r in rows:
        wait = np.full(int(r[len(HOPS)]), ((int(r[0]) - int(r[-1])) * at_once.mult) >> 32)
        one_by_one.record_burst(r[:len(HOPS)], int(r[len(HOPS)]), wait)
    a, b = at_once.summary(), one_by_one.summary()
    assert list(a) == list(b) == list(TAGS)
    for tag in TAGS:
        assert a[tag].get_total_count() == b[tag].get_total_count() == int(rows[:, len(HOPS)].sum())
        for q in (0, 50, 99, 100):
            assert a[tag].get_value_at_percentile(q) == b[tag].get_value_at_percentile(q), (tag, q)
