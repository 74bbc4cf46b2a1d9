"""`metarl bench NAME --compare FILE`: the comparison of ratios with recorded ones (fake
numbers; no benchmark is timed here)."""

from __future__ import annotations

import importlib
import inspect
import io
import json
from pathlib import Path

import pytest

from metarl.benchmarks.compare import checks, load_reference, lookup, report

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "bench-reference.json"


def _entry(**extra) -> dict:
    return {"ratios": {"envs/tabular-mdp/speedup": 100.0, "envs/maze/speedup": 50.0},
            "tolerance": 0.3, **extra}


def _envs_result(tabular: float, maze: float | None) -> dict:
    return {"num_envs": 1024, "envs": {"tabular-mdp": {"speedup": tabular},
                                      "maze": {"speedup": maze}}}


def test_a_40_percent_drop_is_flagged_and_a_20_percent_drop_is_not():
    done = {c.path: c for c in checks("envs", _envs_result(60.0, 40.0), _entry())}
    assert done["envs/tabular-mdp/speedup"].regressed  # 100 -> 60: -40%
    assert not done["envs/maze/speedup"].regressed  # 50 -> 40: -20%
    assert done["envs/tabular-mdp/speedup"].threshold == pytest.approx(70.0)


def test_a_rise_is_never_flagged():
    assert not any(c.regressed for c in checks("envs", _envs_result(500.0, 51.0), _entry()))


def test_cost_ratios_are_flagged_when_the_speed_they_stand_for_drops():
    """``sac-update``'s ratio is PEARL's time over SB3's: lower is better. A 40% drop in
    relative speed is 1 / 0.6 = 1.67x the recorded ratio; a 20% drop 1.25x."""
    entry = {"ratios": {"ratio": 1.0}, "lower_is_better": ["ratio"], "tolerance": 0.3}
    assert checks("sac-update", {"ratio": 1 / 0.6}, entry)[0].regressed
    assert not checks("sac-update", {"ratio": 1.25}, entry)[0].regressed
    assert not checks("sac-update", {"ratio": 0.5}, entry)[0].regressed


def test_report_prints_one_line_per_regression_and_returns_1():
    out = io.StringIO()
    assert report("envs", _envs_result(60.0, 40.0), _entry(), "ref.json", out) == 1
    lines = out.getvalue().splitlines()
    flagged = [line for line in lines if "REGRESSION" in line]
    assert len(flagged) == 1
    assert "envs" in flagged[0] and "tabular-mdp" in flagged[0]
    assert "= 60" in flagged[0] and "recorded 100" in flagged[0] and "-40%" in flagged[0]
    assert lines[-1] == "metarl bench envs: 1 of 2 ratios more than 30% worse than ref.json"


def test_report_returns_0_within_tolerance_and_notes_a_missing_ratio():
    out = io.StringIO()
    assert report("envs", _envs_result(80.0, None), _entry(), "ref.json", out) == 0
    text = out.getvalue()
    assert "REGRESSION" not in text
    assert "envs/maze/speedup not measured" in text and "0 of 1 ratios" in text


def test_lookup_follows_slash_separated_keys():
    result = {"a": {"b-c": {"d": 2}}, "n": None, "flag": True}
    assert lookup(result, "a/b-c/d") == 2.0
    assert lookup(result, "a/x") is None and lookup(result, "n") is None
    assert lookup(result, "flag") is None


def _write(tmp_path, data) -> str:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(("data", "message"), [
    ({"benchmarks": {"sampler": {"ratios": {"local_vs_gym": 1.3}}}},
     "records no ratios for benchmark 'envs' (it has: sampler)"),
    ({"benchmarks": {"envs": {"ratios": {"x": 0}}}}, "must be a positive number"),
    ({"tolerance": 1.5, "benchmarks": {"envs": {"ratios": {"x": 1}}}},
     "tolerance must be in (0, 1)"),
    ([1, 2], "has no \"benchmarks\" object"),
])
def test_unusable_reference_files_are_rejected(tmp_path, data, message):
    with pytest.raises(ValueError, match="^--compare file") as caught:
        load_reference(_write(tmp_path, data), "envs")
    assert message in str(caught.value)


def test_cli_compares_and_exits_1_on_a_regression(tmp_path, monkeypatch, capsys):
    """The CLI plumbing, with the benchmark's ``run`` replaced by fake figures: the
    recorded options are passed to it, the JSON printed, the regression flagged."""
    from metarl.cli import main

    calls = []

    def fake_run(tasks: int = 20, episodes: int = 2):
        calls.append((tasks, episodes))
        return {"local_vs_gym": 0.7, "ray_vs_local": 1.8}

    monkeypatch.setattr(importlib.import_module("metarl.benchmarks.sampler"), "run", fake_run)
    path = _write(tmp_path, {"benchmarks": {"sampler": {
        "options": {"tasks": 80}, "ratios": {"local_vs_gym": 1.3, "ray_vs_local": 1.9}}}})
    assert main(["bench", "sampler", "--episodes", "3", "--compare", path, "--json"]) == 1
    captured = capsys.readouterr()
    assert calls == [(80, 3)] and json.loads(captured.out)["local_vs_gym"] == 0.7
    errors = captured.err.splitlines()
    assert [e for e in errors if "REGRESSION" in e] == [
        "metarl bench sampler: REGRESSION local_vs_gym = 0.7, recorded 1.3 (-46%; higher is "
        "better, limit 0.91)"]
    assert main(["bench", "sampler", "--compare", _write(tmp_path, {"benchmarks": {
        "sampler": {"ratios": {"ray_vs_local": 2.0}}}})]) == 0  # 1.8: -10%


def test_cli_rejects_a_missing_reference_file(tmp_path, capsys):
    from metarl.cli import main

    assert main(["bench", "envs", "--compare", str(tmp_path / "nope.json")]) == 2
    assert "cannot read --compare file" in capsys.readouterr().err


def test_committed_reference_is_usable():
    """experiments/bench-reference.json: every benchmark it records exists, takes the
    recorded options, and its ratios are positive numbers."""
    from metarl.cli import BENCHMARKS

    data = json.loads(REFERENCE.read_text())
    assert set(data["benchmarks"]) <= set(BENCHMARKS)
    for name in data["benchmarks"]:
        entry = load_reference(str(REFERENCE), name)
        run = importlib.import_module(BENCHMARKS[name]).run
        assert set(entry["options"]) <= set(inspect.signature(run).parameters)
        assert set(entry.get("lower_is_better", ())) <= set(entry["ratios"])
