"""Final scores and learning curves of runs aggregated over seeds (``metarl report``).

::

    metarl report PATH... --out report.md [--metric trial_return] [--x env_steps_total]
                  [--y COLUMN] [--reps 2000] [--json]

    run dirs   = PATHs that hold config.yaml and progress.csv, or the run dirs up to 3 levels
                 below a PATH (a sweep: SWEEP/runs/*/), sorted
    settings   = runs grouped by config up to the seed (:func:`metarl.plot.group_runs`),
                 labelled by the config keys that differ between settings (``lr=0.001``)
    final      = eval.json ``summary[METRIC]`` per run, else the last finite progress.csv
                 ``eval_METRIC``; per setting: mean, IQM (mean of the middle 50%), their 95%
                 stratified-bootstrap CIs, min, max
    report.md  = a table of the settings, the runs, a link to report.png
    report.png = per setting, the IQM over seeds of progress.csv's Y against X with a 95%
                 bootstrap CI band, on the x range all of its seeds share

The estimators and intervals are rliable's (Agarwal et al. 2021, *Deep RL at the Edge of the
Statistical Precipice*): ``metrics.aggregate_mean`` / ``aggregate_iqm`` through
``library.get_interval_estimates`` (stratified bootstrap over runs, percentile intervals),
scores shaped (runs, tasks=1, points). rliable 1.2 needs ``arch<8`` and ``pandas<3`` (the
``cluster`` extra pins them). A curve's band uses at most :data:`CURVE_REPS` resamples.

Suggested argparse help texts (the CLI maps :class:`ReportError` to one line and exit 2)::

    PATH      run dirs, or dirs with run dirs below them (e.g. a sweep dir; searched 3
              levels deep)
    --out     the Markdown report to write (.md); the figure goes beside it as .png
    --metric  final score per run: a key of eval.json's summary, else progress.csv's last
              eval_METRIC (default: trial_return)
    --x       progress.csv column of the learning curves' x axis (default: env_steps_total)
    --y       progress.csv column of the learning curves (default: trial_return, else an SB3
              agent's train_return, where every run logs it; else eval_METRIC)
    --reps    bootstrap resamples per confidence interval, >= 100 (default: 2000)
    --json    print the per-setting numbers as JSON on stdout
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl.checkpoints import atomic_path, atomic_write_text
from metarl.plot import SEED_KEYS, Group, RunData, _decorate, aggregate, curve, group_runs, read_run

#: how deep below a PATH to look for run dirs (SWEEP/runs/LABEL/ is 2 levels)
SEARCH_DEPTH = 3
RUN_FILES = ("config.yaml", "progress.csv")
MAX_CURVE_POINTS = 50
#: resamples per point of a curve's band (rliable's estimator is called per point and resample)
CURVE_REPS = 500
MIN_REPS = 100
CI_SIZE = 0.95
#: fewer seeds than this: the bootstrap interval is crude (it cannot reach beyond the seeds)
FEW_SEEDS = 5


class ReportError(ValueError):
    """Bad report request (no run dir, unknown metric or column, bad --out or --reps)."""


@dataclass
class Score:
    """A run's final score and where it came from."""

    run: RunData
    value: float
    source: str  # "eval.json" or "progress.csv"

    @property
    def seed(self) -> Any:
        return self.run.config.get("seed")


# ------------------------------------------------------------------------------ finding runs
def is_run_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in RUN_FILES)


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Each PATH that is a run dir, else the run dirs 1 to :data:`SEARCH_DEPTH` levels below
    it (sorted), in the order of the PATHs, each once."""
    found: dict[Path, Path] = {}
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise ReportError(f"{str(path)!r} is not a directory (give run dirs or dirs "
                              f"holding run dirs)")
        if is_run_dir(path):
            below = [path]
        else:
            below = sorted({d for depth in range(1, SEARCH_DEPTH + 1)
                            for d in path.glob("/".join(["*"] * depth)) if is_run_dir(d)})
            if not below:
                raise ReportError(f"no run dir (a dir with {' and '.join(RUN_FILES)}) in or up "
                                  f"to {SEARCH_DEPTH} levels below {str(path)!r}")
        for run_dir in below:
            found.setdefault(run_dir.resolve(), run_dir)
    return list(found.values())


def read_runs(run_dirs: Sequence[Path]) -> list[RunData]:
    runs = []
    for run_dir in run_dirs:
        try:
            runs.append(read_run(run_dir))
        except ValueError as exc:  # PlotError, ConfigError
            raise ReportError(str(exc)) from None
    return runs


# ------------------------------------------------------------------------------ final scores
def eval_summary(run: RunData) -> dict[str, Any]:
    """``summary`` of the run's eval.json with its adaptation curve as ``episode{k}_return``
    (the held-out mean return of episode ``k`` of a trial: ``episode1_return`` is MAML's and
    ProMP's one-step figure), or ``{}`` without a readable eval.json."""
    try:
        result = json.loads((run.path / "eval.json").read_text())
        summary = dict(result["summary"])
        curve = result.get("returns_per_episode") or []
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    for k, value in enumerate(curve if isinstance(curve, list) else []):
        summary.setdefault(f"episode{k}_return", value)
    return summary


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def valid_metrics(runs: Sequence[RunData]) -> list[str]:
    """Metrics some run has: eval.json summary keys and progress.csv ``eval_*`` columns."""
    names = {key for run in runs for key, value in eval_summary(run).items() if _finite(value)}
    names |= {key[len("eval_"):] for run in runs for key, column in run.progress.items()
              if key.startswith("eval_") and np.isfinite(column).any()}
    return sorted(names)


def final_score(run: RunData, metric: str) -> Score | None:
    """eval.json's ``summary[metric]``, else the last finite progress.csv ``eval_<metric>``."""
    value = eval_summary(run).get(metric)
    if _finite(value):
        return Score(run, float(value), "eval.json")
    column = run.progress.get(f"eval_{metric}", np.zeros(0))
    finite = column[np.isfinite(column)]
    return Score(run, float(finite[-1]), "progress.csv") if len(finite) else None


# ------------------------------------------------------------------------------ statistics
def interval_estimates(scores: np.ndarray, *, reps: int, seed: int = 0, size: float = CI_SIZE,
                       estimators: Sequence[str] = ("mean", "iqm")
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """rliable's point estimates and percentile CIs from ``reps`` stratified-bootstrap
    resamples of the runs, of ``scores`` (runs, points), each point its own task-free score:
    ``{"mean": (estimate (points,), ci (2, points)), "iqm": ...}``. rliable 1.2 draws from
    numpy's global RNG: it is seeded with ``seed`` for the call and restored after it."""
    from rliable import library, metrics

    aggregates = {"mean": metrics.aggregate_mean, "iqm": metrics.aggregate_iqm}
    scores = np.asarray(scores, dtype=float)[:, None, :]  # (runs, tasks=1, points)
    points = scores.shape[-1]
    state = np.random.get_state()
    out = {}
    try:
        for name in estimators:
            def per_point(x: np.ndarray, aggregate=aggregates[name]) -> np.ndarray:
                return np.array([aggregate(x[..., p]) for p in range(points)])

            np.random.seed(seed)
            with warnings.catch_warnings():  # arch 7 on rliable's random_state keyword
                warnings.simplefilter("ignore", FutureWarning)
                estimate, ci = library.get_interval_estimates(
                    {"s": scores}, per_point, reps=reps, confidence_interval_size=size,
                    random_state=np.random.RandomState(seed))
            out[name] = (estimate["s"], ci["s"])
    finally:
        np.random.set_state(state)
    return out


def learning_curve(group: Group, x: str, y: str, *, reps: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x grid, IQM over the group's seeds and its 95% CI (both the IQM for one seed) of
    ``y`` against ``x``, on at most :data:`MAX_CURVE_POINTS` x values of the range all
    seeds share (each seed linearly interpolated, as :func:`metarl.plot.aggregate`)."""
    curves = [curve(run, x, y) for run in group.runs]
    grid = aggregate(curves)[0]
    if len(grid) > MAX_CURVE_POINTS:
        grid = grid[np.unique(np.linspace(0, len(grid) - 1, MAX_CURVE_POINTS).round().astype(int))]
    stacked = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])
    if len(grid) == 0 or len(curves) == 1:
        return grid, stacked.mean(0), stacked.mean(0), stacked.mean(0)
    estimate, (lo, hi) = interval_estimates(stacked, reps=min(reps, CURVE_REPS), seed=seed,
                                            estimators=("iqm",))["iqm"]
    return grid, estimate, lo, hi


# ------------------------------------------------------------------------------ labels
def setting_labels(groups: Sequence[Group]) -> list[str]:
    """Per group the config keys (not :data:`~metarl.plot.SEED_KEYS`) that tell the groups
    apart, e.g. ``lr=0.001, env.arms=5``; one group: its ``agent/env``. Keys are taken in
    config order, each only if it splits groups the keys before it do not (``env.legs`` goes
    with ``env``), and a key a group's config lacks is left out of its label."""
    configs = [{k: json.dumps(v, sort_keys=True, default=str)
                for k, v in g.runs[0].config.items() if k not in SEED_KEYS} for g in groups]
    if len(groups) == 1:
        config = groups[0].runs[0].config
        names = [str(config[k]) for k in ("agent", "env") if k in config]
        return ["/".join(names) or groups[0].runs[0].name]

    def parts(keys: list[str]) -> int:  # how many groups these keys tell apart
        return len({tuple(c.get(k) for k in keys) for c in configs})

    chosen: list[str] = []
    for key in dict.fromkeys(k for c in configs for k in c):
        if parts([*chosen, key]) > parts(chosen):
            chosen.append(key)
    labels = []
    for group in groups:
        config = group.runs[0].config
        label = ", ".join(f"{k}={_value_text(config[k])}" for k in chosen if k in config)
        labels.append(label or ", ".join(f"{k} unset" for k in chosen))
    return labels


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# ------------------------------------------------------------------------------ the report
#: progress.csv columns of a training return, in the order ``build_report`` prefers them:
#: rl2's trial return, the SB3 agents' return of a gymnasium episode
TRAINING_RETURNS = ("trial_return", "train_return")


def build_report(paths: Sequence[str | Path], out: str | Path, *, metric: str = "trial_return",
                 x: str = "env_steps_total", y: str | None = None, reps: int = 2000,
                 seed: int = 0) -> dict[str, Any]:
    """Aggregate the runs under ``paths`` over seeds into the Markdown report ``out`` (.md)
    and its figure (``out`` with .png), both written atomically after every input has been
    checked. ``y=None``: the first of :data:`TRAINING_RETURNS` every run logs, else
    ``eval_<metric>``.
    Returns what was written and the per-setting numbers (JSON-able)."""
    out = Path(out)
    if out.suffix.lower() != ".md":
        raise ReportError(f"--out {str(out)!r} must end in .md (the figure is written beside "
                          f"it as .png)")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < MIN_REPS:
        raise ReportError(f"--reps {reps!r} is not a whole number >= {MIN_REPS}")
    runs = read_runs(find_run_dirs(paths))
    scores = _final_scores(runs, metric)
    if y is None:  # rl2's training trial return, an SB3 agent's, else the evaluations
        logged = [column for column in TRAINING_RETURNS if all(
            np.isfinite(r.progress.get(column, [math.nan])).any() for r in runs)]
        y = logged[0] if logged else f"eval_{metric}"
    groups = group_runs(runs)
    labels = setting_labels(groups)
    try:
        curves = [learning_curve(g, x, y, reps=reps, seed=seed) for g in groups]
    except ValueError as exc:  # PlotError: unknown or empty column
        raise ReportError(str(exc)) from None
    settings = [_setting(label, [scores[id(r)] for r in g.runs], reps=reps, seed=seed)
                for label, g in zip(labels, groups, strict=True)]
    for setting, (grid, *_) in zip(settings, curves, strict=True):
        setting["curve_points"] = len(grid)
    figure_path = out.with_suffix(".png")
    fig = _figure(settings, curves, x, y)
    result = {"out": str(out), "figure": str(figure_path), "metric": metric, "x": x, "y": y,
              "reps": reps, "seed": seed, "ci": ci_note(reps), "settings": settings}
    markdown = render_markdown(result)
    with atomic_path(figure_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    atomic_write_text(out, markdown)
    return result


def _final_scores(runs: Sequence[RunData], metric: str) -> dict[int, Score]:
    valid = valid_metrics(runs)
    if metric not in valid:
        raise ReportError(f"--metric {metric!r} is in no run's eval.json summary or progress.csv "
                          f"eval_{metric}; valid metrics: {', '.join(valid) or 'none'}")
    scores = {}
    for run in runs:
        score = final_score(run, metric)
        if score is None:
            raise ReportError(f"run dir {str(run.path)!r} has no {metric!r}: no eval.json "
                              f"summary[{metric!r}] and no value in progress.csv eval_{metric}")
        scores[id(run)] = score
    return scores


def _setting(label: str, scores: Sequence[Score], *, reps: int, seed: int) -> dict[str, Any]:
    values = np.array([[s.value] for s in scores])
    stats = interval_estimates(values, reps=reps, seed=seed)
    several = len(scores) > 1  # one seed: no interval

    def ci(name: str) -> list[float] | None:
        return [float(v) for v in stats[name][1][:, 0]] if several else None

    return {"label": label, "n": len(scores), "seeds": [s.seed for s in scores],
            "mean": float(stats["mean"][0][0]), "mean_ci": ci("mean"),
            "iqm": float(stats["iqm"][0][0]), "iqm_ci": ci("iqm"),
            "min": float(values.min()), "max": float(values.max()),
            "runs": [{"path": str(s.run.path), "seed": s.seed, "value": s.value,
                      "source": s.source} for s in scores]}


def ci_note(reps: int) -> str:
    return (f"{CI_SIZE:.0%} CIs: rliable's stratified bootstrap over seeds, percentile "
            f"intervals of {reps} resamples (Agarwal et al. 2021); with fewer than "
            f"{FEW_SEEDS} seeds the interval is crude, with 1 seed there is none.")


# ------------------------------------------------------------------------------ rendering
def _figure(settings: Sequence[dict[str, Any]], curves: Sequence[tuple[np.ndarray, ...]],
            x: str, y: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2 + 0.2 * len(settings)), layout="constrained")
    ax = fig.subplots()
    for i, (setting, (xs, mid, lo, hi)) in enumerate(zip(settings, curves, strict=True)):
        if len(xs) == 0:
            continue
        color = f"C{i % 10}"
        n = setting["n"]
        ax.plot(xs, mid, color=color, label=f"{setting['label']} ({n} seed{'s' * (n > 1)})",
                marker="o" if len(xs) < 20 else None, markersize=3)
        if n > 1:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
    _decorate(ax, x, y, f"IQM over seeds, band: {CI_SIZE:.0%} bootstrap CI")
    if ax.get_legend_handles_labels()[0]:  # below the axes: many settings hide no curve
        fig.legend(loc="outside lower center", fontsize=8)
    if x == "iteration":
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def render_markdown(result: dict[str, Any]) -> str:
    """The report: the settings' table, the figure, the CI method, the runs' table."""
    metric = result["metric"]
    lines = [f"# {metric} over seeds", "",
             "| setting | seeds | mean [95% CI] | IQM [95% CI] | min–max | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in result["settings"]:
        seeds = ", ".join(map(str, s["seeds"]))
        lines.append(f"| {_cell(s['label'])} | {s['n']} ({seeds}) | "
                     f"{_estimate(s['mean'], s['mean_ci'])} | {_estimate(s['iqm'], s['iqm_ci'])} "
                     f"| {_num(s['min'])} – {_num(s['max'])} | {_sources(s['runs'], metric)} |")
    figure = Path(result["figure"]).name
    lines += ["", f"![{result['y']} against {result['x']}]({figure})", "",
              f"Learning curves: {result['y']} against {result['x']} (progress.csv), IQM over "
              f"seeds with a {CI_SIZE:.0%} bootstrap CI band, on the x range all of a "
              f"setting's seeds share.", "", result["ci"]]
    missing = [s["label"] for s in result["settings"] if s["curve_points"] == 0]
    if missing:
        lines += ["", f"No curve for {'; '.join(missing)}: its seeds share no x range."]
    for s in result["settings"]:
        repeated = sorted({str(seed) for seed in s["seeds"] if s["seeds"].count(seed) > 1})
        if repeated:
            lines += ["", f"{s['label']}: seed {', '.join(repeated)} appears in more than one "
                          f"run dir with the same config; each run counts as a seed."]
    lines += ["", "## Runs", "", f"| setting | seed | {metric} | source | run dir |",
              "| --- | --- | --- | --- | --- |"]
    for s in result["settings"]:
        for run in s["runs"]:
            lines.append(f"| {_cell(s['label'])} | {run['seed']} | {_num(run['value'])} | "
                         f"{run['source']} | {_cell(run['path'])} |")
    return "\n".join(lines) + "\n"


def _sources(runs: Sequence[dict[str, Any]], metric: str) -> str:
    names = {"eval.json": "eval.json", "progress.csv": f"progress.csv eval_{metric}"}
    counts = {source: sum(r["source"] == source for r in runs) for source in names}
    used = [source for source, count in counts.items() if count]
    if len(used) == 1:
        return names[used[0]]
    return ", ".join(f"{names[source]} ({counts[source]})" for source in used)


def _estimate(value: float, ci: Sequence[float] | None) -> str:
    return _num(value) if ci is None else f"{_num(value)} [{_num(ci[0])}, {_num(ci[1])}]"


def _num(value: float) -> str:
    """4 significant digits, without an exponent between 1e-3 and 1e6."""
    if value == 0 or not math.isfinite(value):
        return str(value) if value else "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -3 <= magnitude < 6:
        return f"{value:.{max(0, 3 - magnitude)}f}"
    return f"{value:.3e}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")
