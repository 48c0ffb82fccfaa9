"""netio-report: the latency breakdown of a run, stage by stage, from HdrHistogram interval logs.

Modules: ``stages`` (the tag naming contract), ``hlog`` (reading logs),
``histo`` (percentiles), ``breakdown`` (bottleneck and caveats), ``render``
(text, JSON, CSV), ``plot`` (PNG and HTML), ``cli`` (the command).
"""
from .cli import main

__all__ = ["main"]
