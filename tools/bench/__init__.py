"""Benchmarks: one module per benchmark, each with ``run() -> dict`` of flat figures.

``python -m tools.bench [NAME ...]`` (``make bench [BENCH=NAME]``) runs them and
writes ``bench-results/NAME.json``: the figures plus a ``machine`` object.
"""
