"""netio-report: the latency breakdown CLI (tools/report).

Logs with known content go in; the figures that come out are held to the
hdrhistogram package's own answers (and, for a log written by HdrHistogram's
Java HistogramLogWriter, to Java's); every output format is parsed back;
every kind of bad input gets its message while the rest is still reported.
"""
import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from tools.report import main
from tools.report.breakdown import MAX_OUTLIER, analyse, compare
from tools.report.example import write_example
from tools.report.histo import LABELS, PERCENTILES, mean, value_at_percentiles
from tools.report.hlog import read_run
from tools.report.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
PIPELINE = ["NetworkRX", "Deserialize", "Validation", "Matching", "Serialize", "Journal", "NetworkTX"]


# ---------------------------------------------------------------- log makers

def histogram(values) -> HdrHistogram:
    h = HdrHistogram(1, 10_000_000_000, 3)
    for v, c in zip(*np.unique(np.asarray(values, dtype=np.int64), return_counts=True)):
        h.record_value(int(v), int(c))
    return h


def lognormal(rng, median, sigma, n):
    return np.maximum(rng.lognormal(np.log(median), sigma, n).astype(np.int64), 1)


def write_tagged(path, intervals: list[dict], source=None, header=True) -> None:
    """A log in the reference writers' format: one 'Tag=' line per tag per interval."""
    lines = []
    if source:
        lines.append(f"#[Source: {source}]")
    if header:
        lines += ["#[Histogram log format version 1.3]",
                  "#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]",
                  "#[BaseTime: 1700000000.000 (seconds since epoch)]",
                  '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"']
    for i, tags in enumerate(intervals):
        for tag, values in tags.items():
            h = histogram(values)
            lines.append(f"Tag={tag},{i:.3f},1.000,{h.get_max_value() / 1e6:.3f},{h.encode().decode()}")
    Path(path).write_text("\n".join(lines) + "\n")


def package_answers(hists) -> dict:
    """The hdrhistogram package's own figures for the merge of ``hists``."""
    total = HdrHistogram(1, 10_000_000_000, 3)
    for h in hists:
        total.add(h)
    return {"count": total.get_total_count(), "max": total.get_max_value(),
            **{label: total.get_value_at_percentile(p) for label, p in zip(LABELS, PERCENTILES)}}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """Seven stages, TOTAL, TX completion and a round trip over 6 intervals; Matching is the slow tail."""
    rng = np.random.default_rng(11)
    medians = {"NetworkRX": 900, "Deserialize": 160, "Validation": 110, "Matching": 1500,
               "Serialize": 190, "Journal": 400, "NetworkTX": 1000}
    intervals = []
    for _ in range(6):
        stages = {t: lognormal(rng, m, 0.6 if t == "Matching" else 0.2, 3000) for t, m in medians.items()}
        stages["TOTAL"] = sum(stages.values())
        stages["TxCompletion"] = lognormal(rng, 5000, 0.3, 3000)
        stages["RoundTrip"] = stages["TOTAL"] + 8000
        intervals.append(stages)
    path = tmp_path_factory.mktemp("run") / "run.hlog"
    write_tagged(path, intervals, source="open-loop")
    return path, intervals


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- percentiles

@pytest.mark.parametrize("seed", range(6))
def test_percentiles_and_mean_are_the_hdrhistogram_packages_answers(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20_000))
    values = lognormal(rng, rng.uniform(50, 50_000), rng.uniform(0.05, 1.5), n)
    h = histogram(values)
    ps = [0.0, 1.0, 25.0, *PERCENTILES, 99.999, 100.0]
    assert value_at_percentiles(h, ps) == [h.get_value_at_percentile(p) for p in ps]
    assert value_at_percentiles(h, ps) == [h.get_percentile_to_value_dict(ps)[p] for p in ps]
    assert mean(h) == pytest.approx(h.get_mean_value())


def test_stage_table_figures_are_the_packages_answers_for_the_merged_intervals(pipeline_run):
    path, intervals = pipeline_run
    bd = analyse(read_run([path]))
    assert [r.tag for r in bd.stages] == PIPELINE + ["TOTAL", "TxCompletion", "RoundTrip"]
    for row in bd.stages:
        want = package_answers(histogram(iv[row.tag]) for iv in intervals)
        got = {"count": row.summary.count, **row.summary.values_ns}
        assert got == want, row.tag
    assert len(bd.intervals) == 6 * 10


def test_stages_are_shown_in_pipeline_order_with_their_display_names(pipeline_run, capsys):
    code, out, _ = run_cli(capsys, pipeline_run[0])
    assert code == 0
    names = [s.name for s in STAGES]
    assert names == ["Network RX", "Deserialize", "Validation", "Matching", "Serialize", "Journal", "Network TX",
                     "TOTAL", "TX completion", "round trip"]
    positions = [out.index(f"\n{name} ") for name in names]
    assert positions == sorted(positions)
    for col in ("count", "p50", "p90", "p99", "p99.9", "p99.99", "max"):
        assert col in out.splitlines()[2]


def test_the_stage_with_the_highest_p999_is_the_bottleneck_as_a_share_of_total(pipeline_run, capsys):
    bd = analyse(read_run([pipeline_run[0]]))
    p999 = {r.tag: r.summary.values_ns["p99.9"] for r in bd.stages}
    assert bd.bottleneck.tag == "Matching" == max(PIPELINE, key=p999.get)
    assert bd.bottleneck.basis == "TOTAL p99.9"
    assert bd.bottleneck.share == pytest.approx(p999["Matching"] / p999["TOTAL"])
    _, out, _ = run_cli(capsys, pipeline_run[0])
    matching = next(ln for ln in out.splitlines() if ln.startswith("Matching "))
    assert matching.endswith("<- bottleneck")
    assert "Bottleneck: Matching, p99.9" in out and f"{bd.bottleneck.share:.0%} of TOTAL p99.9" in out


def test_without_total_the_bottleneck_share_is_of_the_sum_of_stage_p999(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "no-total.hlog"
    write_tagged(path, [{"Deserialize": lognormal(rng, 200, 0.2, 5000), "Matching": lognormal(rng, 900, 0.2, 5000)}])
    bd = analyse(read_run([path]))
    p = {r.tag: r.summary.values_ns["p99.9"] for r in bd.stages}
    assert bd.bottleneck.tag == "Matching" and bd.bottleneck.basis == "sum of stage p99.9"
    assert bd.bottleneck.share == pytest.approx(p["Matching"] / (p["Matching"] + p["Deserialize"]))


# ---------------------------------------------------------------- foreign writers

def test_reads_a_log_written_by_the_pypi_packages_writer_untagged_named_by_file(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "Matching.hlog"  # the PyPI writer cannot write tags: the file names the stage
    hists = [histogram(lognormal(rng, 1500, 0.3, 2000)) for _ in range(3)]
    with open(path, "w") as f:
        w = HistogramLogWriter(f)
        w.output_comment("[Source: closed-loop]")
        w.output_log_format_version()
        w.output_base_time(1_700_000_000_000)
        w.output_legend()
        for i, h in enumerate(hists):
            w.output_interval_histogram(h, start_time_stamp_sec=float(i) or 1e-9, end_time_stamp_sec=i + 1.0)
    run = read_run([path])
    assert run.skipped == [] and run.source == "closed-loop"
    bd = analyse(run)
    assert [r.tag for r in bd.stages] == ["Matching"]
    row = bd.stages[0]
    assert {"count": row.summary.count, **row.summary.values_ns} == package_answers(hists)
    assert [round(iv.start_s) for iv in bd.intervals] == [0, 1, 2]


# Written verbatim by HdrHistogram 2.2.2's Java HistogramLogWriter (Debian 12, OpenJDK 17):
# 2 intervals x 4 tags x 1000 log-normal values (Random(42)), one 400 us outlier in Matching;
# JAVA_FIGURES are Java's own getTotalCount/getValueAtPercentile/getMaxValue of each merged tag.
JAVA_LOG = """\
#[Source: open-loop]
#[Histogram log format version 1.3]
#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
#[BaseTime: 1700000000.000 (seconds since epoch)]
"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
Tag=NetworkRX,0.000,1.000,0.002,HISTFAAAAb142j1TO04DMRR0xs9vnQ1RCoRoQFRUiAJxAGpqkHIQrsAFEGfiJhyAjpaZsUPWsb3vM2/eZ6/eP89LqR9l/Oo8N/zjdfddnn6G4KvhDhX3WND4FDzwbQeuypdKkU5f46AbavDRwX2LJQq2QQUNA1FCDnualbB1IbD+VPGkEBb3DJnQhaoRgQYKwsfbGqEgSJHgNe2PSG1guDU6RCUJR/RMwnVqk+reiUQyIUrWe6WWZNFpJnUOma5MMVLxUpEHzVXeKxRVVVEOKRcZVBMJhkVNW4ubAApl4VQahbrRapCUI++9iERYFkQ0a6LTmNxMVE7aexvgaUqTwBZZ9ZqulZBS9WJgkV9ZnQlJDEbo4aoY0qTN2jl02tfRzBqjzbTo5Bily0NhXDK1eBFI1tnZ0UAm4ISVkooSo9+jZpJCkj1ma5QK3dqZAKK5e3NW3CwOFNkqAYJ0s6k4DcjegzZIymGZ8yne8PxoVsaklNjacmg83wsHVoqKkw3m4DVrZHNQEprZGm1OQXNco++1Sc91gev/j4QfAQ4qY+GYmM0lgXcD0ZEPtG+Y2oY3vHikbvGIZxzxu8ENv8Qj/gDqthP8
Tag=Matching,0.000,1.000,0.004,HISTFAAAAhJ42kVUwY0UQQz0Vld3z95wOqHVaYVAQjx4IsQD8UQIkQFxEAUSAVwIPImHDAiAEKiye46dac2sXW2Xy+558f3hEsFvUb+2nictfN3/xMe/Zfh9xhdc0bUmAjs+AM9wxjvcE7d6iVwhxJRXCIIdeGoj57BrIXgrK/d8RxrZGWjQ3fTX5qYoXkGMifty2VB4YAjeEcMhGmtXy5AZKZ8m6ls0Mlw7rKIWjIxjKAs2D3AnE+qHfOSWmORIR4+VrAvqgqhK7+R+UmxIR94qATN68rQTxY7aq2VgM39pxS6QbEqGkZlSLClSOTofSWT+oagJE01dmSBQOduNQWNDulWIzA1jwBWbn3IOmmtzaQZl0MFsCodNQou3TGPtP7oVuBmHbm4FS9ZuZpuIbY1LWyZZ903i7llSKVCVeBerScrt9KoeCsH5v5Wbx2iqwlVK7uuDcykEnmtiLO/YazSYFmtUGoq+NkglzV0vBiWJ90vEVrG2Gp5sRwppaM9CjnF1uVnW4ujujctqiqhGxY+cN+QM1jx2O8y/SYm0PA4csNDNA+XRiBozHZUlUunecOVLHy+rO1nkTSf5dfcoUmQuYpm3SkoiDs3jnHg7e46BSew4uLJ4H3WsoxQS2ofjuuZGp9h9yUNZzCvoOUt1ldd16CZf44JXuu7xRr4L7vDJ34/3+Ax/DZ7jLX6c8OuEB+DnCf8AlaMXCw==
Tag=TOTAL,0.000,1.000,0.007,HISTFAAAAiF42k1Uy40UMRR8U35299AajUYttEKwQhwQ4rBHzojzXkmBIyIAhLiQAUEQA0EQBQRACFTV86zo3l7bz+9TVX6eZ9++7xH5Neppczzww/vtT7z9W4afO+7x64AFb/DjgA/Y+eId1wu2PAJn4IjHeIKGG85e4sSdAHDBXV5A8xm33MBzdNob385IMKLbIu+Nbx9cnhgmU8MlO5CdKRowvxf6tym7fOiewQgl4ZtYocR0HQMswMdIOpqsbSw2XlD5Hmk7DUlA5LFG5RZ82TNbKnM4JA1CEZ2WPr1YN1g4hhYZ60zAoRFF5LAXidjkQrQ1G4nHeBltGHTnoAyZGZ4yr2oZqFOLOL1pTmmZk7uSqSBdY02MpmlUnLlUeYPxl6uCmksXltUDS3vURIRMls9QJRe28FZBKsegJEKUWWJgIkdxjXnocUUjsMP7mkrUPlE9YKupzyZZZvAE1iKQeTJNx5ZuykhFhe8o7BqHdMxeh9EEWYUSExhrFqmwAjWoVxbRriWRD8+M1TTGTOJjnLpb2D5MBakcR3ao/qqzW2myiqWZK7OR+1ybO8znq+5cCiHVr7tCw+hXsaBmN6POO6hk8yK0aotWPps73ureWkne0sTs8Zza6gJWg7hM/i/4lrNPqmclif12XVyIW6SBYnC5DN5Qrtcm0/7A4awrbSRXzZ9q7476nDme9JNQ4PW+VrobvMJH7nzhz8xn/D7gE/4BnuIZdA==
Tag=GcPause,0.000,1.000,0.059,HISTFAAAAih42j1UO45TQRAc1/T02PvWslbWyrIgQStESEBEBBIhERJHIicg4xIcgctwAG4AVdWztvzeTPf0VFf/3stvP86txc9Wv77WHR983f60D39L8e8jfu3Q8BlXHBCfuL3iHY444cL9BYPyhk75BfcDmFRwbesVk++JcxzRoken1LST6Qll1Ig3icG/rEMGeKS/CeHJGQ95MrQOnGvp1k7rUW6oyOkDqoJGIXzKdPhgfSNbi1H4nRabiOIQ3No2FI442ie1PbSjitR6tBVDSDdRcmzEGwQZApZ+0OBkj+WAFoZrhcXcdZmh5UqB/s1hVHRih3bX495ZC5BJFo+DEpkiMElNtEgjzKin8SuPB1+LwWvptGdIkagky5suK7w9UplijVppMHJAuaDRvipJrdAtRSVZyBJ8I4wZ486SMunAdamSmemTLtw9HGeobLHICDdvRPY92wqr8NLhIF2/uUAF76DoOQtFupXmUKSo0jN/Ck/EjuUMbsqhVFuvsmG7z7FSiGdWemcFKc1mPqv0rMNQbcY6ZHWK5/R5RvbqxVZ9W1Ydte+3Rx2VXqudq3E1dmrmLTxSeRutmhzY7KTdkS56AY1c9z0ZojfjKVb7HdcwHMvzgYK0atu+TK7kPjHdnm5TV4l73dvUypsbdbjpH9cwn9Tv6osHg1w8CM90D6hxeWNWjZcK8ezPx6rDmR+aV/yS+Ow9OcnbGU/4wuctMTa8xvcdfgf+A/eiGaY=
Tag=NetworkRX,1.000,1.000,0.003,HISTFAAAAct42kVTy41UQQz0VLv9+r1htVqtVgiBhBDisOK4B44cSYAsCIILGaCNggCIhAwIgBCoKs/CaKbH33LZ7n717fttxHiM/ozL/4k/fD7/jo9/2vAz8RUv8Bo7Jm7xHEFt4j3uUhLVDcCeURSlDNoSDJFvtiDLljmQMsndUUFXOtDJsvGskfQxWJD0R8VCIZUmv2zTJ1FKgReAoi3/wc7OJjMdDBacQLr0amdWkljWETgo05XZ/qwydKpmkDyTBVFmkM8wxWlWNAhzGS/QRSJCNX2YwHDZRmAvPOhnXh7Z/WgmdAq9PBPFuUWS1CjC5EOc/VWCNBaplbuq0FC5cIRHSnKL2SK/Znnkao30qieunqQfbkIWeziKuszKy6NNtKJJuqBIsEF4T5pPTZRZGVMD79ZNOno7+WSyUD0OmzAWhaE1JG+SsrS9/ekGBdZQLY5Xs47/9k03L52yeWqqxc2GL9jIMyXtxIn8CVQ6ptZJRWr0rcwr1XbZcFrtDQe8hIOFQ0TbJeAdcJNvWIVp0/dt4Opyta+Jd8PMjecH3NG307f76TBd7+iaJ6P1nB6INxirqHtadj61e3xi7pnWt/iCxxPBHvDrhB+JvyD1FhY=
Tag=Matching,1.000,1.000,0.400,HISTFAAAAhZ42j1UQY4UMQzMVhyH3lZrhEZoNQK0Z848AHHgAUhcOe8bOHBAWu0HeApP4cSdB/AEqsqZnZnOxI5dtstOv3n8eW4tnlp9+vq/4YMv+9/24V8pfmz4fYML3uGEHgcOTAx+31saoLhFQ7MysEnRud25NopdigaElPSxAU+lbKE9TV5KQM9Oq15Y4Q2VOHMN7YK2Puz+79hDDi2GkPpy0JFPO9MKLXqYgPdTG8es+I5GAInTgUIpjWhETn5Bp8zp4hS3h3R8kuIMW1JB/+BHsTuPnQKcF3FVVRgJtptIJUh7JawAUyvd0pmiZQgju5HjOX8T2cqtvahShSCDFsmjVFAUEearUigAwtPAMAvEHBUPqsi8FYEunwd7Ecu+sTohTkManb1smS4NawaYRLHEWAolfrMKS6PnSKxewcWw7bSMURlby1TMRDU03MJVBX+3ylFBhjKxYQuzTcExxpqBqIiQTb8dxbWIdH2ZInozy1ACQx3pbhjtDpyY6Z4mSzOt/oS7vQJMOTma5ygqq+fZG55Mbw5UMf06Zr4bZsoAa3YZhnSnLloB+4JVuRrcmiQBhEvuNprryhRsVNvawl3xrpOy5n0dtut1GmUf5TV8tbgcKtCqzXTOQuiw0duFeTF58ij5fgVnFkSKkxX7msk7vkh2vNZbA/dxkepM5R0+4hW9PvMtM4l84Bs+4Tt+Bb7izwP+A2yPGDw=
Tag=TOTAL,1.000,1.000,0.008,HISTFAAAAjN42k1US6oUQRCsicyq7qYZhmF4i0EHcS1vJeJKxKXLB27FI3gJb+DaK7j3CC68hVvBIxgRWYrddH3yE5UZmdWPP32+tJZfWz0x5wM/vNt/tte/S/DrhC+BC654hbd4gQd8O+CEQMezvOGe6ws2zjtecr1Ts/A94cyx2fGOskabzvHK+RHnRpneM7axo2WjtNujY88AzXLhcON+o/xIJC6t4HYHNBn4iEgj0ypBLMNvBlMw4ZniSD7wLsEzxpKy5EZAgpPSQ69FTGvF1w3S12a19A3CxJbCWAQTOUSMVuipI2VALeVJSU4vAVC3piMTbGJshGZ8LR1BrFoMLod44oAYMRyr3TAYFRNqKwxRafMd6XOmgM/RWQ8Z0y3rxGaicqZPPtLEGWs1a8PO9WgZY+qLNeG1vxQJQ3LGORyKbVIVMuPMb1HWvXibR09/8crX8KuRZih2NJJJUUSjiZKsQJygkpL5apkoqeqY/H99po5IVLrh+oR5nPkXmGhY5E4cdY7T5FxxTz6zOfUqszqoOqypgRRsV9+mrbupWQqJbqIhioPcFHeoGFUQFWjMCyArtYgpC5oWS4uqVGxRoVbT6jiP79UVsM4XTCd0+DzuSB4vVgVQN2l1ade8g7LhnVKI4X4uZgR4nBRqPM06LGlChd/WqlefVNT9LW9Xqf934a+zGFH55M5fw7n4uPmvscn+CZyT5t1uHc/n/b5Qcq9fwFPI9wPe8I/0Hh/x40Dhd+APiJ4bTQ==
Tag=GcPause,1.000,1.000,0.059,HISTFAAAAit42k1TMY4UQQz0Vrs9MxpGq9XqdDoJQgKeQHQBQgQEJHyBdxBARsh7eAIRX+ABPIGq8h7ibnen7bHL5Wr7+dfv14j8HP03bs8Tv/i4/47HP+349YgvJ/w44cAnBD7gigvPgVe4x4LXGDyDvokdZ1r8z52+oH0Bf3a8oXPDHfbUaywVzGQCmDB9WPIKZOizA0aKOhwMbEmghYA0zznSFc8MG86ZTjnggMhIxg7M3JgVrswHKW1lVqNdPhMi+zTWqAuSpw25yD3qvnQiGz5cSxxYvWLdzX4iZ4rCIgpiMpOWJXEbTcaV5MtJflNQcrHyLPW3pM1web4zpUGRBFasm2RDqKmQFOPRoeLA1yRkk1QqGB+0DcQAIhfKqQosa4Gaqr7KqcCsVNhgncW54UYyVr5ItOBJ2GeON9caQGcj+3c09WRuKSrFUgor2T115xti/WdV4zumoUVNXTCxumdCEdSXdq7yHRSeEGQMsbSAazz1xCZWy8qerPvtFrD2xZe1yZW1NDW+pnzi2dpVuoVUB61wlKXx6DF3GGJoLnJaEHWnSbESW4+sB2VyADkT6mPpbN3eWNmtqOVi5fLBorRy0RUV4XnsnVH3klqYwikVXPLGa/4/bsuNUEcq6UBvpkMO70nPSN/cyF7gnG6Ddb2Cm3biwsW3KjZ3vrmDo/r7otdMJZfswVP7V8/OkLwXRabcBx6QRtuZe1YmPy+99Vr0nye8x1u8w7fCX41WGTc=
"""
JAVA_FIGURES = {  # tag: count, p50, p90, p99, p99.9, p99.99, max
    "NetworkRX": (2000, 914, 1332, 1814, 2161, 2935, 2935),
    "Matching": (2001, 1492, 2199, 3039, 4089, 400127, 400127),
    "TOTAL": (2000, 2995, 4391, 5911, 7371, 8059, 8059),
    "GcPause": (2000, 20063, 29823, 40543, 49279, 58623, 58623),
}


def _figures(row):
    return (row.summary.count, *(row.summary.values_ns[c] for c in LABELS), row.summary.values_ns["max"])


def test_reads_a_log_written_by_hdrhistograms_java_writer(tmp_path):
    path = tmp_path / "java.hlog"
    path.write_text(JAVA_LOG)
    run = read_run([path])
    assert run.skipped == [] and run.source == "open-loop"
    bd = analyse(run)
    assert [r.tag for r in bd.stages] == ["NetworkRX", "Matching", "TOTAL", "GcPause"]  # unknown tag last
    assert {r.tag: _figures(r) for r in bd.stages} == JAVA_FIGURES
    assert sorted({iv.start_s for iv in bd.intervals}) == [0.0, 1.0]
    assert any(c.kind == "unknown-tag" and c.stage == "GcPause" for c in bd.caveats)


JAVA_WRITER = """\
import org.HdrHistogram.*;
import java.io.*;
import java.util.*;
public class WriteLog {
    public static void main(String[] a) throws Exception {
        PrintStream out = new PrintStream(new FileOutputStream(a[0]));
        HistogramLogWriter w = new HistogramLogWriter(out);
        w.outputLogFormatVersion();
        long t0 = 1700000000000L;
        w.outputStartTime(t0);
        w.setBaseTime(t0);
        w.outputBaseTime(t0);
        w.outputLegend();
        Random r = new Random(Long.parseLong(a[1]));
        Histogram all = new Histogram(1, 10_000_000_000L, 3);
        for (int i = 0; i < 4; i++) {
            Histogram h = new Histogram(1, 10_000_000_000L, 3);
            for (int k = 0; k < 3001; k++) h.recordValue((long) (2000 * Math.exp(0.8 * r.nextGaussian())));
            h.setTag("Matching");
            h.setStartTimeStamp(t0 + i * 1000);
            h.setEndTimeStamp(t0 + (i + 1) * 1000);
            w.outputIntervalHistogram(h);
            all.add(h);
        }
        out.close();
        System.out.print(all.getTotalCount() + " " + all.getMaxValue());
        for (double p : new double[] {50, 90, 99, 99.9, 99.99}) System.out.print(" " + all.getValueAtPercentile(p));
    }
}
"""
JAVA_JAR = Path.home() / ".m2/repository/org/hdrhistogram/HdrHistogram/2.2.2/HdrHistogram-2.2.2.jar"


@pytest.mark.skipif(not (shutil.which("javac") and JAVA_JAR.exists()),
                    reason="needs javac and HdrHistogram 2.2.2 in ~/.m2 (the Java reference writer)")
def test_a_fresh_log_from_the_java_writer_agrees_with_java_where_the_rank_rules_agree(tmp_path):
    """Java ranks a percentile with ceil(p/100*n), the Python package with round(p/100*n);
    we follow the package, so compare with Java where both rules pick the same sample."""
    (tmp_path / "WriteLog.java").write_text(JAVA_WRITER)
    subprocess.run(["javac", "-cp", str(JAVA_JAR), "WriteLog.java"], cwd=tmp_path, check=True)
    java = subprocess.run(["java", "-cp", f"{JAVA_JAR}:.", "WriteLog", "fresh.hlog", "99"], cwd=tmp_path,
                          check=True, capture_output=True, text=True).stdout.split()
    count, max_ns, *java_pcts = map(int, java)
    row = analyse(read_run([tmp_path / "fresh.hlog"])).stage("Matching")
    assert row.summary.count == count and row.summary.values_ns["max"] == max_ns
    compared = 0
    for label, p, java_value in zip(LABELS, PERCENTILES, java_pcts):
        java_rank = max(math.ceil(math.nextafter(p, -math.inf) / 100 * count), 1)
        if java_rank == max(int(p * count / 100 + 0.5), 1):
            assert row.summary.values_ns[label] == java_value, label
            compared += 1
    assert compared >= 3


def test_reads_c_writer_style_logs_with_absolute_timestamps_and_no_base_time(tmp_path):
    h1, h2 = histogram([1000, 2000, 3000]), histogram([5000])
    path = tmp_path / "c.hlog"
    path.write_text("#[netio venue]\n#[Histogram log format version 1.3]\n"
                    "#[StartTime: 1700000000.500 (seconds since epoch), Tue Nov 14 22:13:20 2023]\n"
                    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
                    f"Tag=Serialize,1700000000.500,1.000,0.000,{h1.encode().decode()}\n"
                    f"Tag=Serialize,1700000001.500,1.000,0.000,{h2.encode().decode()}\n")
    bd = analyse(read_run([path]))
    assert bd.skipped == []
    assert [iv.start_s for iv in bd.intervals] == [0.0, 1.0]
    assert bd.stage("Serialize").summary.count == 4


def test_unit_option_scales_a_microsecond_log_to_nanoseconds(tmp_path, capsys):
    path = tmp_path / "us.hlog"
    write_tagged(path, [{"Matching": [3, 4, 5, 1000]}])
    code, out, _ = run_cli(capsys, "--unit", "us", "--json", path)
    stage = json.loads(out)["runs"][0]["stages"][0]
    h = histogram([3, 4, 5, 1000])
    assert stage["max_ns"] == h.get_max_value() * 1000 and stage["p50_ns"] == h.get_value_at_percentile(50) * 1000
    assert json.loads(out)["runs"][0]["unit"] == "us"


# ---------------------------------------------------------------- caveats

def kinds(bd):
    return {c.kind for c in bd.caveats}


def test_too_few_samples_for_the_far_tail_marks_those_percentiles(tmp_path, capsys):
    path = tmp_path / "small.hlog"
    write_tagged(path, [{"Matching": np.arange(1, 5001)}])  # 5000 samples: p99.9 has 5 beyond it
    bd = analyse(read_run([path]))
    assert bd.stage("Matching").thin == ["p99.9", "p99.99"]
    assert "thin-tail" in kinds(bd)
    _, out, _ = run_cli(capsys, path)
    assert "5.00µs*" in out and "fewer than 10 samples beyond" in out


def test_a_max_far_above_p9999_is_flagged(tmp_path):
    rng = np.random.default_rng(2)
    values = np.append(lognormal(rng, 1000, 0.1, 200_000), 5_000_000)
    path = tmp_path / "outlier.hlog"
    write_tagged(path, [{"Matching": values}])
    bd = analyse(read_run([path]))
    s = bd.stage("Matching").summary.values_ns
    assert s["max"] > MAX_OUTLIER * s["p99.99"]
    assert any(c.kind == "max-outlier" and c.stage == "Matching" for c in bd.caveats)
    assert bd.stage("Matching").thin == []


def test_closed_loop_source_warns_of_coordinated_omission_and_unstated_source_too(tmp_path):
    data = [{"RoundTrip": np.arange(100, 200)}]
    write_tagged(tmp_path / "closed.hlog", data, source="closed-loop")
    write_tagged(tmp_path / "open.hlog", data, source="open-loop")
    write_tagged(tmp_path / "unstated.hlog", data)
    closed = analyse(read_run([tmp_path / "closed.hlog"]))
    assert closed.source == "closed-loop" and "closed-loop" in kinds(closed)
    assert "coordinated omission" in next(c.text for c in closed.caveats if c.kind == "closed-loop")
    assert not {"closed-loop", "source-unstated"} & kinds(analyse(read_run([tmp_path / "open.hlog"])))
    assert "source-unstated" in kinds(analyse(read_run([tmp_path / "unstated.hlog"])))


def test_stage_means_that_do_not_add_up_to_total_and_differing_counts_are_reported(tmp_path):
    rng = np.random.default_rng(4)
    a, b = lognormal(rng, 1000, 0.1, 4000), lognormal(rng, 500, 0.1, 4000)
    write_tagged(tmp_path / "sums.hlog", [{"Deserialize": a, "Matching": b, "TOTAL": a + b}])
    assert not {"sum-mismatch", "count-mismatch"} & kinds(analyse(read_run([tmp_path / "sums.hlog"])))
    write_tagged(tmp_path / "gap.hlog", [{"Deserialize": a, "Matching": b[:3000], "TOTAL": a + b + 2000}])
    bd = analyse(read_run([tmp_path / "gap.hlog"]))
    gap = next(c for c in bd.caveats if c.kind == "sum-mismatch")
    assert "uncovered" in gap.text
    assert [c.stage for c in bd.caveats if c.kind == "count-mismatch"] == ["Matching"]


def test_unknown_tags_are_reported_after_the_known_stages_with_a_note(tmp_path, capsys):
    write_tagged(tmp_path / "u.hlog", [{"Zeta": [5, 6], "TOTAL": [9, 10], "Alpha": [1, 2], "NetworkRX": [3, 4]}])
    code, out, _ = run_cli(capsys, tmp_path / "u.hlog")
    assert code == 0
    order = [ln.split()[0] for ln in out.splitlines()[3:7]]
    assert order == ["Network", "TOTAL", "Alpha", "Zeta"]
    assert "tag 'Alpha' is not in the naming contract" in out and "tag 'Zeta' is not" in out


# ---------------------------------------------------------------- compare

def test_compare_shows_both_runs_side_by_side_with_ratios(tmp_path, capsys):
    rng = np.random.default_rng(8)
    before = {"Matching": lognormal(rng, 2000, 0.3, 5000), "Serialize": lognormal(rng, 200, 0.2, 5000)}
    after = {"Matching": before["Matching"] // 2, "Serialize": before["Serialize"]}
    write_tagged(tmp_path / "before.hlog", [before])
    write_tagged(tmp_path / "after.hlog", [after])
    a, b = (analyse(read_run([tmp_path / f]), lbl) for f, lbl in (("before.hlog", "A"), ("after.hlog", "B")))
    rows = {r.tag: r for r in compare(a, b)}
    for col in ("p50", "p99", "max"):
        want = b.stage("Matching").summary.values_ns[col] / a.stage("Matching").summary.values_ns[col]
        assert rows["Matching"].ratios[col] == pytest.approx(want)
        assert want == pytest.approx(0.5, rel=0.01)
    assert rows["Serialize"].ratios["p99"] == 1.0 and rows["Serialize"].ratios["count"] == 1.0

    code, out, _ = run_cli(capsys, "--compare", tmp_path / "before.hlog", tmp_path / "after.hlog")
    assert code == 0
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("Matching"))
    assert lines[i].split()[1] == "A" and lines[i + 1].split()[0] == "B" and lines[i + 2].split()[0] == "B/A"
    assert "x0.50" in lines[i + 2] and "x1.00" in lines[i + 2]  # p-ratios halve, count unchanged

    code, out, _ = run_cli(capsys, "--compare", tmp_path / "before.hlog", tmp_path / "after.hlog", "--csv")
    table = {r["tag"]: r for r in csv.DictReader(io.StringIO(out))}
    assert float(table["Matching"]["p50_ratio"]) == pytest.approx(rows["Matching"].ratios["p50"], abs=1e-4)
    assert int(table["Matching"]["p50_ns_a"]) == a.stage("Matching").summary.values_ns["p50"]

    code, out, _ = run_cli(capsys, "--compare", tmp_path / "before.hlog", tmp_path / "after.hlog", "--json")
    doc = json.loads(out)
    assert [r["label"] for r in doc["runs"]] == ["A", "B"]
    assert {r["tag"]: r["ratios"]["max"] for r in doc["compare"]}["Matching"] == pytest.approx(
        rows["Matching"].ratios["max"])


def test_compare_takes_several_logs_per_side_and_a_stage_missing_on_one_side(tmp_path, capsys):
    write_tagged(tmp_path / "a.hlog", [{"TOTAL": [100, 200]}])
    write_tagged(tmp_path / "a-lg.hlog", [{"RoundTrip": [900, 1000]}])
    write_tagged(tmp_path / "b.hlog", [{"TOTAL": [100, 100]}])
    code, out, _ = run_cli(capsys, "--compare", f"{tmp_path / 'a.hlog'},{tmp_path / 'a-lg.hlog'}", tmp_path / "b.hlog")
    assert code == 0
    rt = out[out.index("round trip"):].splitlines()
    assert rt[1].split()[:3] == ["B", "-", "-"] and rt[2].split()[1:3] == ["-", "-"]


# ---------------------------------------------------------------- intervals

@pytest.fixture(scope="module")
def spiky_run(tmp_path_factory):
    """10 one-second intervals; interval 7 of Matching stalls; Serialize's p50 creeps up."""
    rng = np.random.default_rng(21)
    intervals = []
    for i in range(10):
        m = lognormal(rng, 1500, 0.2, 2000)
        if i == 7:
            m[:100] += 60_000
        intervals.append({"Matching": m, "Serialize": lognormal(rng, 200 * (1 + 0.1 * i), 0.1, 2000)})
    path = tmp_path_factory.mktemp("spiky") / "spiky.hlog"
    write_tagged(path, intervals)
    return path, intervals


def test_interval_mode_gives_one_row_per_interval_per_stage_with_the_spike_marked(spiky_run, capsys):
    path, intervals = spiky_run
    bd = analyse(read_run([path]))
    rows = [r for r in bd.intervals if r.tag == "Matching"]
    assert [r.start_s for r in rows] == [float(i) for i in range(10)]
    for r, iv in zip(rows, intervals):
        h = histogram(iv["Matching"])
        assert r.summary.values_ns["p99"] == h.get_value_at_percentile(99)
        assert r.summary.values_ns["max"] == h.get_max_value() and r.summary.count == 2000
    assert [i for i, r in enumerate(rows) if r.spike] == [7]
    assert any(c.kind == "spike" and c.stage == "Matching" for c in bd.caveats)
    assert any(c.kind == "drift" and c.stage == "Serialize" for c in bd.caveats)
    assert not any(c.kind == "drift" and c.stage == "Matching" for c in bd.caveats)

    code, out, _ = run_cli(capsys, "--interval", path)
    assert code == 0
    block = out[out.index("\nMatching\n"):out.index("\nSerialize\n")].splitlines()
    data = [ln for ln in block if ln.strip() and ln.split()[0][0].isdigit()]
    assert len(data) == 10 and "^ spike" in data[7] and "^ spike" not in "".join(data[:7])

    code, out, _ = run_cli(capsys, "--interval", "--csv", path)
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 20
    spikes = [r for r in table if r["spike"]]
    assert [(r["tag"], float(r["start_s"])) for r in spikes] == [("Matching", 7.0)]

    code, out, _ = run_cli(capsys, "--interval", "--json", path)
    ivs = json.loads(out)["runs"][0]["intervals"]
    assert len(ivs) == 20 and {k for k in ivs[0]} >= {"start_s", "p50_ns", "p99_ns", "max_ns", "spike"}


# ---------------------------------------------------------------- output formats

def test_json_output_carries_every_figure_in_integer_ns(pipeline_run, capsys):
    path, intervals = pipeline_run
    code, out, _ = run_cli(capsys, "--json", path)
    assert code == 0
    run = json.loads(out)["runs"][0]
    assert run["source"] == "open-loop" and run["bottleneck"]["tag"] == "Matching"
    for stage in run["stages"]:
        want = package_answers(histogram(iv[stage["tag"]]) for iv in intervals)
        assert stage["count"] == want["count"]
        assert {c: stage[f"{c}_ns"] for c in (*LABELS, "max")} == {c: want[c] for c in (*LABELS, "max")}
        assert all(isinstance(stage[f"{c}_ns"], int) for c in LABELS)
    assert [s["bottleneck"] for s in run["stages"]].count(True) == 1
    assert "intervals" not in run


def test_csv_output_has_a_row_per_stage(pipeline_run, capsys):
    code, out, _ = run_cli(capsys, "--csv", pipeline_run[0])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["tag"] for r in rows] == PIPELINE + ["TOTAL", "TxCompletion", "RoundTrip"]
    bd = analyse(read_run([pipeline_run[0]]))
    for r in rows:
        assert int(r["p99.9_ns"]) == bd.stage(r["tag"]).summary.values_ns["p99.9"]
    assert [r["stage"] for r in rows if r["bottleneck"] == "True"] == ["Matching"]


def test_the_plot_has_a_nines_axis_a_latency_axis_and_every_stage(spiky_run, pipeline_run):
    from tools.report.plot import report_figure
    fig = report_figure([analyse(read_run([pipeline_run[0]]))])
    dist = fig.axes[0]
    assert dist.get_xscale() == "log" and dist.get_yscale() == "log"
    assert dist.get_xlabel() == "percentile" and dist.get_ylabel().startswith("latency (")
    fig.canvas.draw()
    ticks = [t.get_text() for t in dist.get_xticklabels()]
    assert ticks[:4] == ["0%", "90%", "99%", "99.9%"]
    assert [t.get_text() for t in dist.get_legend().get_texts()] == [s.name for s in STAGES]
    assert "bottleneck Matching" in dist.get_title()
    over_time = fig.axes[1]
    assert over_time.get_xlabel().startswith("time") and over_time.get_ylabel().startswith("p99 per interval")

    single = report_figure([analyse(read_run([spiky_run[0]]))])
    spikes = [ln for ln in single.axes[1].get_lines() if ln.get_marker() == "v"]
    assert len(spikes) == 1 and list(spikes[0].get_xdata()) == [7.5]


def test_png_output_is_a_picture(pipeline_run, tmp_path, capsys):
    from matplotlib.image import imread
    out = tmp_path / "run.png"
    code, _, _ = run_cli(capsys, pipeline_run[0], "--plot", out)
    assert code == 0
    img = imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # not a blank canvas


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self._cell, self._row = [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"id": attrs.get("id"), "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.imgs.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.tables[-1]["rows"].append(self._row)


def test_html_output_is_one_page_with_each_stages_tables_and_the_plot_inline(spiky_run, pipeline_run, tmp_path,
                                                                           capsys):
    import base64
    out = tmp_path / "run.html"
    code, _, _ = run_cli(capsys, pipeline_run[0], "--html", out)
    assert code == 0
    page = _Page()
    page.feed(out.read_text())
    summary = page.tables[0]
    assert summary["rows"][0][:3] == ["stage", "count", "p50"]
    assert [r[0] for r in summary["rows"][1:]] == [s.name for s in STAGES]
    matching = next(r for r in summary["rows"] if r[0] == "Matching")
    assert matching[-1] == "<- bottleneck"
    interval_tables = {t["id"]: t for t in page.tables[1:]}
    assert set(interval_tables) == {f"intervals-{s.tag}" for s in STAGES}
    assert all(len(t["rows"]) == 1 + 6 for t in interval_tables.values())
    assert len(page.imgs) == 1 and page.imgs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(page.imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_compare_has_the_side_by_side_table(spiky_run, tmp_path, capsys):
    out = tmp_path / "cmp.html"
    code, _, _ = run_cli(capsys, "--compare", spiky_run[0], spiky_run[0], "--html", out)
    assert code == 0
    page = _Page()
    page.feed(out.read_text())
    rows = page.tables[0]["rows"]
    assert rows[0][:3] == ["stage", "run", "count"]
    assert [r[1] for r in rows[1:4]] == ["A", "B", "B/A"] and set(rows[3][2:]) == {"x1.00"}


# ---------------------------------------------------------------- bad input

def _flip_one_payload_char(line: str) -> str:
    head, payload = line.rsplit(",", 1)
    return f"{head},{payload[:20]}{'B' if payload[20] == 'A' else 'A'}{payload[21:]}"


BAD_LINES = {  # what happens to the second interval line: (how, the message that names it)
    "cut off mid-write": (lambda line: line[: len(line) * 2 // 3], "corrupt or truncated histogram payload"),
    "cut inside the fields": (lambda line: "Tag=Matching,1.000,1.0", "expected 4 comma-separated fields"),
    "corrupt payload": (_flip_one_payload_char, "corrupt or truncated histogram payload"),
    "not a number": (lambda line: "Tag=Matching,one,1.000,0.0,HISTFAAAAA==", "not a number"),
    "tag without name": (lambda line: "Tag=,1.000,1.000,0.0,HISTFAAAAA==", "'Tag=' without a valid name"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_line_is_reported_and_the_rest_is_still_read(tmp_path, capsys, case):
    spoil, message = BAD_LINES[case]
    path = tmp_path / "mixed.hlog"
    write_tagged(path, [{"Matching": [1000, 2000]}, {"Matching": [3000]}, {"Matching": [4000]}])
    lines = path.read_text().splitlines()
    i = [n for n, ln in enumerate(lines) if ln.startswith("Tag=")][1]
    lines[i] = spoil(lines[i])
    path.write_text("\n".join(lines) + "\n")

    code, out, _ = run_cli(capsys, path)
    assert code == 0
    assert f"{path}:{i + 1}: " in out and message in out
    matching = next(ln for ln in out.splitlines() if ln.startswith("Matching"))
    assert matching.split()[1] == "3"  # intervals 1 and 3: three samples
    code, out, err = run_cli(capsys, "--json", path)
    run = json.loads(out)["runs"][0]
    assert [(s["file"], s["line"]) for s in run["skipped"]] == [(str(path), i + 1)]
    assert message in run["skipped"][0]["reason"] and message in err
    assert run["stages"][0]["count"] == 3


def test_a_missing_file_is_named_and_the_other_files_still_reported(pipeline_run, tmp_path, capsys):
    missing = tmp_path / "nope.hlog"
    code, out, _ = run_cli(capsys, pipeline_run[0], missing)
    assert code == 0
    assert f"{missing}: cannot read: No such file or directory" in out
    assert "Matching" in out and "<- bottleneck" in out


@pytest.mark.parametrize("content, message", [
    ("time,latency\n1,2\n3,4\n", "not an HdrHistogram interval log (first line: 'time,latency')"),
    ("", "not an HdrHistogram interval log (empty file)"),
    (b"\x89PNG\r\n\x1a\n\0\0\0", "binary file"),
])
def test_a_file_of_another_format_is_named_and_the_other_files_still_reported(tmp_path, capsys, content, message):
    other = tmp_path / "other.log"
    other.write_bytes(content if isinstance(content, bytes) else content.encode())
    good = tmp_path / "good.hlog"
    write_tagged(good, [{"TOTAL": [100, 200, 300]}])
    code, out, _ = run_cli(capsys, good, other)
    assert code == 0 and message in out and "TOTAL" in out
    code, out, err = run_cli(capsys, other)
    assert code == 1 and message in out and "nothing readable" in err


def test_an_unknown_source_value_is_reported(tmp_path):
    path = tmp_path / "s.hlog"
    write_tagged(path, [{"TOTAL": [1, 2]}], source="half-open")
    run = read_run([path])
    assert run.source is None and "unknown Source 'half-open'" in run.skipped[0].reason


def test_usage_errors_exit_2_and_help_teaches_with_examples(tmp_path, capsys):
    for argv in ([], ["--compare", "a.hlog", "b.hlog", "c.hlog"], ["--unit", "parsecs", "x.hlog"],
                 ["--json", "--csv", "x.hlog"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "netio-report --compare before.hlog after.hlog" in out
    assert "#[Source: open-loop]" in out and "exit status" in out


def test_an_unwritable_plot_path_is_a_usage_error_after_the_report(tmp_path, capsys):
    good = tmp_path / "good.hlog"
    write_tagged(good, [{"TOTAL": [100, 200, 300]}])
    code, out, err = run_cli(capsys, good, "--plot", tmp_path / "no" / "such" / "dir.png")
    assert code == 2 and "TOTAL" in out and "cannot write" in err


def test_the_console_script_runs_as_a_module(tmp_path):
    path = tmp_path / "run.hlog"
    write_example(str(path), intervals=3, per_interval=2000)
    proc = subprocess.run([sys.executable, "-m", "tools.report", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "Bottleneck: Matching" in proc.stdout and "round trip" in proc.stdout


def test_the_example_run_has_the_shapes_the_docs_describe(tmp_path):
    path = tmp_path / "example.hlog"
    write_example(str(path), intervals=8, per_interval=5000, stall_at=5)
    bd = analyse(read_run([path]))
    assert [r.tag for r in bd.stages] == [s.tag for s in STAGES]
    assert bd.bottleneck.tag == "Matching" and bd.source == "open-loop"
    assert [r.start_s for r in bd.intervals if r.tag == "Matching" and r.spike] == [5.0]
    total = bd.stage("TOTAL").summary
    assert total.mean_ns == pytest.approx(sum(bd.stage(t).summary.mean_ns for t in PIPELINE) + 5 * 40, rel=0.01)
