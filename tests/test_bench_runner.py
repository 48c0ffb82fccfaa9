"""The benchmark runner's contract: one JSON file per benchmark, flat figures plus `machine`."""
import json
import sys
import types

import pytest

from tools.bench import __main__ as runner


def test_every_benchmark_module_is_discovered():
    assert all(not name.startswith("_") for name in runner.available())


def test_result_is_flat_numbers_plus_machine(tmp_path, monkeypatch):
    fake = types.ModuleType("tools.bench.fake")
    fake.run = lambda: {"widgets_per_s": 1.5e6, "ratio": 3}
    monkeypatch.setitem(sys.modules, "tools.bench.fake", fake)
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    runner.run_one("fake")
    result = json.loads((tmp_path / "fake.json").read_text())
    assert result["widgets_per_s"] == 1.5e6 and result["ratio"] == 3
    assert set(result["machine"]) >= {"cpu", "cores", "kernel", "python", "date"}


def test_nested_figures_are_refused(monkeypatch, tmp_path):
    fake = types.ModuleType("tools.bench.nested")
    fake.run = lambda: {"bad": {"nested": 1}}
    monkeypatch.setitem(sys.modules, "tools.bench.nested", fake)
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    with pytest.raises(TypeError, match="flat numbers"):
        runner.run_one("nested")
