"""`metarl report`: final scores and learning curves over seeds, known answers, errors."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from metarl.plot import group_runs, read_run
from metarl.report import (
    MAX_CURVE_POINTS,
    ReportError,
    build_report,
    find_run_dirs,
    interval_estimates,
    learning_curve,
    setting_labels,
)

pytest.importorskip("rliable", reason="rliable comes with the cluster extra")

HEADER = "| setting | seeds | mean [95% CI] | IQM [95% CI] | min–max | source |"


def _run(path, seed, final=None, config=None, xs=(0, 100, 200, 300), ys=None,
         evals=None):
    """A run dir as `metarl train` leaves it: config.yaml, progress.csv (eval_* columns
    filled on evaluation rows only) and, given ``final``, eval.json."""
    path.mkdir(parents=True)
    values = {"agent": "rl2", "env": "bandit", "iterations": len(xs), "seed": seed,
              "lr": 0.001, **(config or {})}
    (path / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    ys = ys if ys is not None else [float(seed)] * len(xs)
    evals = evals if evals is not None else [None] * len(xs)
    rows = ["iteration,env_steps_total,trial_return,eval_trial_return,eval_mean_return"]
    rows += [f"{i},{x},{y},{'' if e is None else e},{'' if e is None else e / 2}"
             for i, (x, y, e) in enumerate(zip(xs, ys, evals, strict=True))]
    (path / "progress.csv").write_text("\n".join(rows) + "\n")
    if final is not None:
        summary = {"trial_return": final, "trial_return_stderr": 0.01, "mean_return": final / 2,
                   "first_episode_return": 0.0, "last_episode_return": final}
        (path / "eval.json").write_text(json.dumps(
            {"split": "test", "num_tasks": 4, "trials": 1, "episodes": 2,
             "returns_per_episode": [0.0, final], **summary, "env_steps": 40,
             "summary": summary}, indent=2))
    return path


def _sweep(root, finals):
    """SWEEP/runs/lr=LR_seedS for {lr: [final per seed]}."""
    for lr, values in finals.items():
        for seed, final in enumerate(values):
            _run(root / "runs" / f"lr={lr}_seed{seed}", seed, final, {"lr": lr},
                 ys=[0.0, final / 2, final, final])
    return root


def _written(directory):
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------ statistics
def test_mean_iqm_and_bootstrap_cis_by_hand():
    scores = np.array([1, 2, 3, 4, 5, 6, 7, 100.0])[:, None]
    stats = interval_estimates(scores, reps=2000, seed=0)
    (mean, mean_ci), (iqm, iqm_ci) = stats["mean"], stats["iqm"]
    assert mean == pytest.approx([16.0])  # 128 / 8
    assert iqm == pytest.approx([4.5])  # mean of 3, 4, 5, 6: the outlier does not count
    for estimate, ci in [(mean, mean_ci), (iqm, iqm_ci)]:
        assert ci.shape == (2, 1)
        assert 1.0 <= ci[0, 0] < estimate[0] < ci[1, 0] <= 100.0
    assert iqm_ci[1, 0] < mean_ci[1, 0]  # the outlier widens the mean's interval more
    # rliable 1.2.0 (arch 7.2, pandas 2.3) after np.random.seed(0) gives exactly these
    assert mean_ci[:, 0] == pytest.approx([2.996875, 40.25], rel=1e-12)
    assert iqm_ci[:, 0] == pytest.approx([2.5, 29.25], rel=1e-12)
    again = interval_estimates(scores, reps=2000, seed=0)
    other = interval_estimates(scores, reps=2000, seed=1)
    assert np.array_equal(again["mean"][1], mean_ci) and np.array_equal(again["iqm"][1], iqm_ci)
    assert not np.array_equal(other["mean"][1], mean_ci)
    # 1..8: mean 4.5, IQM the mean of 3..6, also 4.5; n=2 {1, 3}: the resampled means are 1,
    # 2 and 3 (each end with probability 1/4), so the 95% interval is exactly [1, 3]
    stats = interval_estimates(np.arange(1, 9.0)[:, None], reps=500, seed=0)
    assert stats["mean"][0] == pytest.approx([4.5]) and stats["iqm"][0] == pytest.approx([4.5])
    stats = interval_estimates(np.array([[1.0], [3.0]]), reps=2000, seed=0)
    assert np.array_equal(stats["mean"][1], [[1.0], [3.0]])
    assert np.array_equal(stats["iqm"][1], [[1.0], [3.0]])
    # curves: each point is resampled on its own; rliable 1.2.0 gives these for scores shaped
    # (runs, 1, points) after np.random.seed(0)
    curves = np.array([[1.0, 3, 0], [2, 1, 5], [4, 4, 2], [6, 2, 9], [7, 8, 1], [9, 6, 3],
                       [10, 5, 7], [12, 7, 4]])
    iqm, ci = interval_estimates(curves, reps=300, seed=0)["iqm"]
    assert iqm.tolist() == [6.5, 4.5, 3.5]
    assert np.allclose(ci, [[2.7375, 2.75, 1.25], [9.25, 6.5, 6.5]], rtol=1e-12, atol=0)


def test_learning_curve_interpolates_onto_the_shared_x_range(tmp_path):
    a = _run(tmp_path / "a", 0, 1.0, xs=(0, 10, 20, 30), ys=[0.0, 1.0, 2.0, 3.0])
    b = _run(tmp_path / "b", 1, 1.0, xs=(5, 15, 25, 35), ys=[1.0, 2.0, 3.0, 4.0])
    (group,) = group_runs([read_run(a), read_run(b)])
    xs, mid, lo, hi = learning_curve(group, "env_steps_total", "trial_return", reps=500)
    assert np.array_equal(xs, [5, 10, 15, 20, 25, 30])  # where both seeds have data
    # a is x/10, b is (x+5)/10 there: two seeds, so the IQM is their mean
    assert np.allclose(mid, (2 * xs + 5) / 20)
    assert np.all(lo <= mid) and np.all(mid <= hi)
    assert np.allclose(lo, xs / 10) and np.allclose(hi, (xs + 5) / 10)  # a seed at each end
    long = _run(tmp_path / "long", 0, 1.0, xs=range(0, 3000, 10), ys=list(range(300)))
    (group,) = group_runs([read_run(long)])
    xs, mid, lo, hi = learning_curve(group, "env_steps_total", "trial_return", reps=500)
    assert len(xs) == MAX_CURVE_POINTS and xs[0] == 0 and xs[-1] == 2990  # ends kept
    assert np.array_equal(mid, xs / 10) and np.array_equal(lo, hi)  # one seed: no band


# ------------------------------------------------------------------------------ the report
def test_report_of_a_sweep_groups_seeds_by_setting(tmp_path):
    sweep = _sweep(tmp_path / "sweep", {0.001: [1.0, 3.0], 0.01: [5.0, 9.0]})
    (sweep / "tune-lr=0.001_seed0").mkdir()  # Tune's trial dir: its own progress.csv only
    (sweep / "tune-lr=0.001_seed0" / "progress.csv").write_text("training_iteration\n1\n")
    out = tmp_path / "out" / "report.md"
    result = build_report([sweep], out, reps=2000)
    json.dumps(result)  # --json prints it
    assert [s["label"] for s in result["settings"]] == ["lr=0.001", "lr=0.01"]
    low, high = result["settings"]
    assert (low["n"], low["seeds"], low["mean"], low["iqm"]) == (2, [0, 1], 2.0, 2.0)
    assert (low["min"], low["max"], low["mean_ci"], low["iqm_ci"]) == (1.0, 3.0, [1, 3], [1, 3])
    assert (high["mean"], high["mean_ci"], high["min"], high["max"]) == (7.0, [5, 9], 5.0, 9.0)
    assert [r["source"] for r in low["runs"] + high["runs"]] == ["eval.json"] * 4
    assert result["y"] == "trial_return" and low["curve_points"] == 4
    text = out.read_text()
    lines = text.splitlines()
    assert lines[2:6] == [
        HEADER, "| --- | --- | --- | --- | --- | --- |",
        "| lr=0.001 | 2 (0, 1) | 2.000 [1.000, 3.000] | 2.000 [1.000, 3.000] | 1.000 – 3.000 "
        "| eval.json |",
        "| lr=0.01 | 2 (0, 1) | 7.000 [5.000, 9.000] | 7.000 [5.000, 9.000] | 5.000 – 9.000 "
        "| eval.json |"]
    assert "![trial_return against env_steps_total](report.png)" in lines
    assert "stratified bootstrap over seeds, percentile intervals of 2000 resamples" in text
    assert "rliable" in text and "fewer than 5 seeds the interval is crude" in text
    assert f"| lr=0.01 | 1 | 9.000 | eval.json | {sweep / 'runs' / 'lr=0.01_seed1'} |" in lines
    assert _written(out.parent) == ["report.md", "report.png"]  # no temporary files left
    with Image.open(out.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.width > 100
    # the same seed, the same report
    again = build_report([sweep], out, reps=2000)
    assert again == result and out.read_text() == text


def test_one_setting_is_labelled_by_agent_and_env_and_one_seed_has_no_ci(tmp_path):
    run = _run(tmp_path / "rl2-bandit", 3, 0.5)
    result = build_report([run], tmp_path / "r.md", reps=200)
    (setting,) = result["settings"]
    assert setting["label"] == "rl2/bandit" and setting["seeds"] == [3]
    assert setting["mean_ci"] is None and setting["iqm_ci"] is None
    assert ("| rl2/bandit | 1 (3) | 0.5000 | 0.5000 | 0.5000 – 0.5000 | eval.json |"
            in (tmp_path / "r.md").read_text().splitlines())
    # the same run given twice, and its parent: counted once
    assert find_run_dirs([run, run, tmp_path]) == [run]


def test_settings_are_labelled_by_the_keys_that_tell_them_apart(tmp_path):
    runs = [_run(tmp_path / name, seed, 1.0, config) for name, seed, config in [
        ("bandit", 0, {"env.arms": 5}), ("maze", 0, {"env": "maze"}),
        ("bandit-lr", 0, {"lr": 0.01, "env.arms": 5}), ("bandit-lr-again", 0, {"lr": 0.01,
                                                                               "env.arms": 5})]]
    groups = group_runs([read_run(r) for r in runs])
    # env.arms comes with env (the maze has none): left out; lr tells the bandits apart
    assert setting_labels(groups) == ["env=bandit, lr=0.001", "env=maze, lr=0.001",
                                      "env=bandit, lr=0.01"]
    plain = _run(tmp_path / "plain", 0, 1.0)
    extra = _run(tmp_path / "extra", 0, 1.0, {"foo": [1, 2]})
    groups = group_runs([read_run(plain), read_run(extra)])
    assert setting_labels(groups) == ["foo unset", "foo=[1, 2]"]
    # two run dirs of one config and seed count twice, and the report says so
    result = build_report(runs[2:], tmp_path / "r.md", reps=200)
    assert result["settings"][0]["seeds"] == [0, 0]
    assert "rl2/bandit: seed 0 appears in more than one run dir" in (tmp_path / "r.md").read_text()


def test_an_episode_of_the_adaptation_curve_is_a_metric(tmp_path):
    """``episode{k}_return``: eval.json's returns_per_episode[k] (MAML's one-step figure)."""
    runs = [_run(tmp_path / f"s{seed}", seed, final) for seed, final in enumerate([2.0, 6.0])]
    result = build_report(runs, tmp_path / "r.md", metric="episode1_return", reps=100)
    (setting,) = result["settings"]
    assert [r["value"] for r in setting["runs"]] == [2.0, 6.0] and setting["mean"] == 4.0
    result = build_report(runs, tmp_path / "r.md", metric="episode0_return", reps=100)
    assert result["settings"][0]["mean"] == 0.0


def test_runs_without_eval_json_use_the_last_eval_column_value(tmp_path):
    evals = [None, 0.5, None, 0.7, None]  # evaluated every other iteration; last row none
    xs = (0, 1, 2, 3, 4)
    a = _run(tmp_path / "a", 0, None, xs=xs, evals=evals)
    b = _run(tmp_path / "b", 1, 0.9, xs=xs, evals=evals)
    result = build_report([a, b], tmp_path / "r.md", reps=200)
    (setting,) = result["settings"]
    assert [(r["value"], r["source"]) for r in setting["runs"]] == [
        (0.7, "progress.csv"), (0.9, "eval.json")]
    assert setting["mean"] == pytest.approx(0.8)
    assert ("| rl2/bandit | 2 (0, 1) | 0.8000 [0.7000, 0.9000] | 0.8000 [0.7000, 0.9000] | "
            "0.7000 – 0.9000 | eval.json (1), progress.csv eval_trial_return (1) |"
            in (tmp_path / "r.md").read_text().splitlines())
    # another metric from the eval_ columns alone
    (setting,) = build_report([a], tmp_path / "m.md", metric="mean_return",
                              reps=200)["settings"]
    assert setting["runs"][0]["value"] == 0.35 and setting["runs"][0]["source"] == "progress.csv"


def test_runs_without_trial_return_curves_plot_the_eval_column(tmp_path):
    """DREAM's and the model-based agents' progress.csv has no trial_return column."""
    run = _run(tmp_path / "dream", 0, 0.8, xs=(0, 1, 2), evals=[None, 0.2, 0.8])
    (run / "progress.csv").write_text(
        "iteration,env_steps_total,eval_trial_return\n0,10,\n1,20,0.2\n2,30,0.8\n")
    result = build_report([run], tmp_path / "r.md", reps=200)
    assert result["y"] == "eval_trial_return" and result["settings"][0]["curve_points"] == 2


def test_sb3_runs_plot_their_training_return(tmp_path):
    """The SB3 agents log train_return (a gymnasium episode's return), not trial_return."""
    run = _run(tmp_path / "sb3", 0, 0.8, xs=(0, 1, 2))
    (run / "progress.csv").write_text(
        "iteration,env_steps_total,train_return\n0,10,0.1\n1,20,0.2\n2,30,0.8\n")
    result = build_report([run], tmp_path / "r.md", reps=200)
    assert result["y"] == "train_return" and result["settings"][0]["curve_points"] == 3


@pytest.mark.parametrize("case, message", [
    ("empty dir", "no run dir (a dir with config.yaml and progress.csv) in or up to 3 levels "
                  "below"),
    ("too deep", "no run dir"),
    ("missing path", "is not a directory"),
    ("metric", "--metric 'success' is in no run's eval.json summary or progress.csv "
               "eval_success; valid metrics: episode0_return, episode1_return, "
               "first_episode_return, last_episode_return, mean_return, trial_return, "
               "trial_return_stderr"),
    ("run without the metric", "has no 'trial_return': no eval.json summary['trial_return'] "
                               "and no value in progress.csv eval_trial_return"),
    ("y", "column 'nope' is not in"),
    ("x", "column 'wall_time' is not in"),
    ("out", "--out"),
    ("reps", "--reps 10 is not a whole number >= 100"),
])
def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path, case, message):
    runs = tmp_path / "runs"
    _sweep(runs, {0.001: [1.0, 2.0]})
    paths, kwargs = [runs], {}
    if case == "empty dir":
        paths = [tmp_path / "empty"]
        paths[0].mkdir()
        (paths[0] / "progress.csv").write_text("iteration\n0\n")  # no config.yaml: not a run
    elif case == "too deep":
        paths = [tmp_path / "deep"]
        _run(tmp_path / "deep" / "a" / "b" / "c" / "run", 0, 1.0)
    elif case == "missing path":
        paths = [runs, tmp_path / "nope"]
    elif case == "metric":
        kwargs = {"metric": "success"}
    elif case == "run without the metric":
        _run(runs / "runs" / "unevaluated", 2, None, {"lr": 0.001})
    elif case == "y":
        kwargs = {"y": "nope"}
    elif case == "x":
        kwargs = {"x": "wall_time"}
    elif case == "reps":
        kwargs = {"reps": 10}
    out = tmp_path / "out" / ("report.txt" if case == "out" else "report.md")
    with pytest.raises(ReportError) as info:
        build_report(paths, out, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    if case == "y":  # the valid columns are listed
        assert "valid columns: iteration, env_steps_total, trial_return" in str(info.value)
    assert not out.parent.exists()  # nothing written, not even the directory
