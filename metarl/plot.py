"""Learning and adaptation curves of one or more runs (``metarl plot``).

::

    runs   = [read_run(d) for d in run_dirs]            # progress.csv, config.yaml, eval.json
    groups = group_runs(runs)                            # same config up to the seed
    left:  learning curve per group and y column (mean over seeds, min-max band; a
           group of one seed: its curve, no band) against x,
           from progress.csv, with optional horizontal reference lines (published figures)
    right: adaptation curve per group from eval.json's returns_per_episode (if any run has
    one of two or more episodes)

Runs whose configs differ only in bookkeeping keys (seed, device, threads,
checkpoint_every) form one group; every other difference gives a separate line.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl.checkpoints import atomic_path

#: config keys that do not change what a run learns: runs differing only here are seeds
SEED_KEYS = frozenset({"seed", "device", "threads", "checkpoint_every"})
FORMATS = (".png", ".pdf", ".svg")
LINE_STYLES = ("-", "--", ":", "-.")


class PlotError(ValueError):
    """Bad plot request (missing run dir or progress.csv, unknown column, bad extension)."""


@dataclass
class RunData:
    """What one run directory contributes to the plot."""

    path: Path
    config: dict[str, Any]
    progress: dict[str, np.ndarray]  # numeric columns of progress.csv (NaN where empty)
    adaptation: np.ndarray | None = None  # eval.json returns_per_episode

    @property
    def name(self) -> str:
        return self.path.resolve().name


@dataclass
class Group:
    """Runs with the same config up to the seed."""

    runs: list[RunData] = field(default_factory=list)

    @property
    def label(self) -> str:
        names = [run.name for run in self.runs]
        if len(names) == 1:
            return f"{names[0]} (1 seed)"
        stripped = {re.sub(r"[-_]?seed\d+", "", name) for name in names}
        base = stripped.pop() if len(stripped) == 1 else f"{names[0]} +{len(names) - 1}"
        return f"{base} ({len(names)} seeds)"


# ------------------------------------------------------------------------------ reading
def read_progress(path: Path) -> dict[str, np.ndarray]:
    """Columns of ``progress.csv`` as float arrays; empty or non-numeric cells are NaN."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PlotError(f"{str(path)!r} has no rows yet")
    return {key: np.array([_float(row.get(key)) for row in rows]) for key in rows[0]}


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_run(run_dir: str | Path) -> RunData:
    """Load the curves of a run directory (config.yaml optional, eval.json optional)."""
    from metarl.config import load_yaml

    path = Path(run_dir)
    if not path.is_dir():
        raise PlotError(f"run dir {str(path)!r} does not exist")
    if not (path / "progress.csv").is_file():
        raise PlotError(f"run dir {str(path)!r} has no progress.csv")
    config = load_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {
        "run_dir": str(path.resolve())}
    return RunData(path, config, read_progress(path / "progress.csv"), read_adaptation(path))


def read_adaptation(run_dir: Path) -> np.ndarray | None:
    """``returns_per_episode`` from the run's ``eval.json``, or ``None``."""
    try:
        data = json.loads((run_dir / "eval.json").read_text())
        return np.asarray(data["returns_per_episode"], dtype=float)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def group_runs(runs: Sequence[RunData]) -> list[Group]:
    """Group runs whose configs are equal apart from :data:`SEED_KEYS`, in input order."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.config.items() if k not in SEED_KEYS},
                         sort_keys=True, default=str)
        groups.setdefault(key, Group()).runs.append(run)
    return list(groups.values())


# ------------------------------------------------------------------------------ statistics
def missing_column(run: RunData, column: str) -> PlotError:
    """The one-line error for a ``column`` that ``run``'s progress.csv lacks."""
    numeric = [k for k, v in run.progress.items() if np.isfinite(v).any()]
    return PlotError(f"column {column!r} is not in {str(run.path / 'progress.csv')!r}; "
                     f"valid columns: {', '.join(numeric)}")


def curve(run: RunData, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a run's finite points, sorted by ``x``."""
    for column in (x, y):
        if column not in run.progress:
            raise missing_column(run, column)
    xs, ys = run.progress[x], run.progress[y]
    keep = np.isfinite(xs) & np.isfinite(ys)
    if not keep.any():
        raise PlotError(f"column {y!r} of {str(run.path / 'progress.csv')!r} has no values")
    order = np.argsort(xs[keep], kind="stable")
    return xs[keep][order], ys[keep][order]


def aggregate(curves: Sequence[tuple[np.ndarray, np.ndarray]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of several curves on the x values where all of them have data
    (each is linearly interpolated onto the x values of the others in the common range)."""
    curves = [c for c in curves if len(c[0])]
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    stacked = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])
    return grid, stacked.mean(0), stacked.min(0), stacked.max(0)


def adaptation_stats(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Episode index (1-based), mean, min and max of the group's adaptation curves."""
    curves = [run.adaptation for run in group.runs if run.adaptation is not None]
    if not curves:
        return aggregate([])
    k = min(len(c) for c in curves)
    stacked = np.stack([c[:k] for c in curves])
    return np.arange(1, k + 1), stacked.mean(0), stacked.min(0), stacked.max(0)


# ------------------------------------------------------------------------------ drawing
def _draw(ax, stats, label: str, color, style: str = "-") -> None:
    xs, mean, lo, hi = stats
    if len(xs) == 0:
        return
    ax.plot(xs, mean, color=color, label=label, linestyle=style,
            marker="o" if len(xs) < 20 else None, markersize=3)
    if np.any(hi > lo):
        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)


def parse_reference(text: str) -> tuple[float, str]:
    """``"VALUE"`` or ``"LABEL=VALUE"`` (e.g. ``"MAML-TRPO (published)=-139"``)."""
    label, _, value = text.rpartition("=")
    try:
        return float(value), label or value
    except ValueError:
        raise PlotError(f"--ref {text!r} is not VALUE or LABEL=VALUE with a number VALUE, "
                        f"e.g. MAML-TRPO=-139") from None


def spread_note(seeds: Sequence[int]) -> str:
    """What a panel's lines and bands are, given the number of seeds of each line's group:
    one seed per group has no band to show."""
    if max(seeds, default=1) <= 1:
        return "1 seed" if len(seeds) <= 1 else "1 seed each"
    if min(seeds) >= 2:
        return "mean over seeds, band: min-max"
    return "mean over seeds, band: min-max where 2+ seeds"


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, *, x: str = "iteration",
              y: str | Sequence[str] = "trial_return", references: Sequence[str] = ()
              ) -> dict[str, Any]:
    """Draw learning curves of the ``y`` column(s) (and adaptation curves where
    ``eval.json`` exists) to ``out`` (.png, .pdf or .svg), written atomically, with a dashed
    horizontal line per reference ``"[LABEL=]VALUE"``. Returns the groups, the labels of
    the learning-curve panel's lines and the panels' titles."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(f"--out {str(out)!r} has an unsupported extension; valid extensions: "
                        f"{', '.join(FORMATS)}")
    fig, groups = build_figure(run_dirs, x=x, y=y, references=references)
    axes = fig.axes
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=120)
    return {"out": str(out), "groups": [{"label": g.label, "runs": [str(r.path) for r in g.runs]}
                                        for g in groups], "panels": len(axes),
            "lines": axes[0].get_legend_handles_labels()[1],
            "titles": [ax.get_title() for ax in axes]}


def build_figure(run_dirs: Sequence[str | Path], *, x: str = "iteration",
                 y: str | Sequence[str] = "trial_return", references: Sequence[str] = ()):
    """The figure of :func:`plot_runs` (a matplotlib ``Figure``, one or two axes) and the
    groups of runs it draws."""
    from matplotlib.figure import Figure

    columns = [y] if isinstance(y, str) else list(y)
    lines = [parse_reference(text) for text in references]
    groups = group_runs([read_run(d) for d in run_dirs])

    def has(group: Group, column: str) -> bool:
        return all(column in run.progress for run in group.runs)

    for column in columns:  # each column drawn somewhere, each group drawing something
        if not any(has(g, column) for g in groups):
            raise missing_column(next(r for g in groups for r in g.runs
                                      if column not in r.progress), column)
    for g in groups:
        if not any(has(g, column) for column in columns):
            raise missing_column(g.runs[0], columns[0])
    learning = [[aggregate([curve(run, x, column) for run in g.runs]) if has(g, column)
                 else None for column in columns] for g in groups]
    adaptation = [adaptation_stats(g) for g in groups]
    panels = 2 if any(len(a[0]) > 1 for a in adaptation) else 1  # a curve, not a point
    fig = Figure(figsize=(6.4 * panels, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for i, group in enumerate(groups):
        color = f"C{i % 10}"
        for j, column in enumerate(columns):
            if learning[i][j] is None:  # the runs of this group lack the column
                continue
            label = group.label if len(columns) == 1 else f"{group.label}: {column}"
            _draw(axes[0], learning[i][j], label, color, LINE_STYLES[j % len(LINE_STYLES)])
        if panels == 2:
            _draw(axes[1], adaptation[i], group.label, color)
    for k, (value, label) in enumerate(lines):
        axes[0].axhline(value, color=f"C{(len(groups) + k) % 10}", linestyle="--",
                        linewidth=1, label=label)
    ylabel = columns[0] if len(columns) == 1 else "value"
    seeds = [len(g.runs) for g in groups]
    _decorate(axes[0], x, ylabel, f"learning curve ({spread_note(seeds)})", legend=True)
    if x == "iteration":
        axes[0].xaxis.get_major_locator().set_params(integer=True)
    if panels == 2:
        evaluated = [sum(r.adaptation is not None for r in g.runs) for g in groups]
        note = spread_note([n for n in evaluated if n])
        _decorate(axes[1], "episode within trial", "return (mean over held-out tasks)",
                  f"adaptation curve (eval.json, {note})")
        axes[1].xaxis.get_major_locator().set_params(integer=True)
    return fig, groups


def _decorate(ax, xlabel: str, ylabel: str, title: str, legend: bool = False) -> None:
    ax.set_xlabel(xlabel.replace("_", " "))
    ax.set_ylabel(ylabel.replace("_", " "))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
