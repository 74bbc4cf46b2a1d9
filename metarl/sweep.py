"""Sweeps over settings × seeds on Ray Tune (``metarl sweep``).

::

    metarl sweep --config rl2/bandit-k5-n10 --seeds 0 1 2 --grid lr=3e-4,1e-3 \\
        --storage /shared/sweeps [--name NAME] [--ray-address auto]

Every combination of the ``--grid`` values and ``--seeds`` is one Tune trial of
:func:`train_trial`, a function trainable around :class:`metarl.training.Trainer`: it reports
each iteration's progress row to Tune (``tune.report``), hands each of our checkpoints to
Tune's checkpointing, and ends with the run's final evaluation. The layout under
``--storage`` (which every node of a cluster must see: Ray >= 2.7 does not copy results to the
head node)::

    STORAGE/NAME/                  Tune's experiment (tuner.pkl, experiment state)
    STORAGE/NAME/tune-LABEL/       Tune's trial dir (result.json, its copies of our checkpoints)
    STORAGE/NAME/sweep.json        the sweep: base settings, grid, seeds, resources, command
    STORAGE/NAME/runs/LABEL/       one ordinary run dir per trial, e.g. ``lr=0.001_seed1``
                                   (``metarl eval``, ``plot``, ``render`` and ``report`` take it)

Faults: a trial whose process or node dies is restarted by Tune (``FailureConfig``, at most
``--max-failures`` times) and resumes from its run dir's last checkpoint, exactly as
``metarl train --resume`` would; a sweep whose driver died continues with
``metarl sweep --resume --storage STORAGE --name NAME`` (``Tuner.restore``: finished trials
stay, errored and unfinished ones resume from their checkpoints). Resources per trial are
``cpus`` (the trainer's process, also its torch threads unless ``--set threads=N``) plus one
CPU per Ray sampler worker (``--sampler ray --workers N``), in one placement group, so the
workers are scheduled with their trial.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metarl.checkpoints import atomic_write_text

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
#: Tune's own trial dirs (its result.json and copies of our checkpoints): tune-LABEL
TUNE_TRIAL_PREFIX = "tune-"
#: the file in a Tune checkpoint naming the run dir and iteration it backs
TUNE_CHECKPOINT_FILE = "metarl_checkpoint.json"


class SweepError(ValueError):
    """A sweep request that cannot run as asked (one line for the user)."""


@dataclass
class SweepSpec:
    """What a sweep runs: ``base`` flat config values, each trial overriding them with one
    combination of ``grid`` values and one of ``seeds``."""

    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    sampler: str = "local"
    workers: int = 2
    cpus: float = 1.0
    max_failures: int = 3
    max_concurrent: int | None = None
    command: list[str] = field(default_factory=list)

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty setting without a grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.grid[k] for k in keys))]

    def trial_values(self, setting: dict[str, Any], seed: int) -> dict[str, Any]:
        values = {**self.base, **setting, "seed": seed}
        if "threads" not in self.base and "threads" not in setting:
            values["threads"] = max(1, int(self.cpus))
        return values


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["lr=3e-4,1e-3", "env.arms=5,10"]`` → ``{"lr": [0.0003, 0.001], "env.arms": [5, 10]}``
    (values typed as ``--set``'s)."""
    from metarl.config import parse_value

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or not all(values):
            raise SweepError(f"--grid {item!r} is not of the form key=value1,value2,...")
        if key in ("seed", "agent", "env"):
            raise SweepError(f"--grid {key}=... is not a setting to sweep"
                             + ("; use --seeds" if key == "seed" else ""))
        if key in grid:
            raise SweepError(f"--grid {key} is given twice")
        grid[key] = [parse_value(v) for v in values]
    return grid


def trial_label(setting: dict[str, Any], seed: int) -> str:
    """The run dir name of one trial, e.g. ``lr=0.001_env.arms=10_seed2``."""
    parts = [f"{key}={value}" for key, value in setting.items()] + [f"seed{seed}"]
    return re.sub(r"[^A-Za-z0-9=._+-]+", "-", "_".join(parts))


def check_spec(spec: SweepSpec) -> None:
    """Validate every trial's config (names, keys, types, ranges, memory) and the resources,
    before anything is written or Ray starts; raises :class:`SweepError` or the config's own
    error (one line each)."""
    from metarl import agents, runs
    from metarl.config import SEEDS
    from metarl.memory import check_memory

    if not spec.seeds:
        raise SweepError("--seeds needs at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SweepError(f"--seeds has a seed twice: {spec.seeds}")
    for seed in spec.seeds:
        if seed not in SEEDS:
            raise SweepError(f"--seeds must be {SEEDS}, got {seed}")
    if spec.cpus <= 0:
        raise SweepError(f"--cpus must be > 0, got {spec.cpus}")
    if spec.max_failures < 0:
        raise SweepError(f"--max-failures must be >= 0, got {spec.max_failures}")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise SweepError(f"--max-concurrent must be >= 1, got {spec.max_concurrent}")
    for setting in spec.settings():  # the env too: some of its values are checked there
        config, env = runs.build_run_config(spec.trial_values(setting, spec.seeds[0]))
        agent_cls, _ = agents.get(config.agent).load()
        check_memory(agent_cls.memory_needs(config, env))  # sizes that cannot fit


def trial_resources(spec: SweepSpec) -> Any:
    """One bundle for the trainer (``cpus``) and one CPU per Ray sampler worker."""
    from ray import tune

    bundles = [{"CPU": spec.cpus}]
    if spec.sampler == "ray":
        bundles += [{"CPU": 1.0}] * spec.workers
    return tune.PlacementGroupFactory(bundles)


# ------------------------------------------------------------------------- the trial
def train_trial(trial: dict[str, Any]) -> None:
    """Tune's function trainable: train one setting × seed into its run dir, resuming from
    the run dir's (or Tune's) last checkpoint after a failure, then evaluate it."""
    import logging

    from ray import tune

    from metarl import agents, runs
    from metarl.run_lock import run_lock
    from metarl.sampling import make_sampler
    from metarl.stopping import TrainingDiverged
    from metarl.training import latest_checkpoint

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # a line per checkpoint

    spec = SweepSpec(**trial["spec"])
    run_dir = Path(trial["runs_dir"]) / trial_label(trial["setting"], trial["seed"])
    config, env = runs.build_run_config(spec.trial_values(trial["setting"], trial["seed"]))
    agent_cls, _ = agents.get(config.agent).load()
    sampler = (make_sampler(env, spec.sampler, spec.workers, None)
               if agent_cls.uses_sampler else None)

    def report(row: dict[str, Any], saved: Path | None) -> None:
        metrics = _reportable(row)
        if saved is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="metarl-ckpt-") as tmp:
            _link_or_copy(saved, Path(tmp) / saved.name)
            (Path(tmp) / TUNE_CHECKPOINT_FILE).write_text(json.dumps(
                {"run_dir": str(run_dir), "checkpoint": saved.name}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    trainer = runs.make_trainer(run_dir, config, env, sampler, on_iteration=report)
    with run_lock(run_dir):
        restore_from_tune(tune.get_checkpoint(), run_dir)
        if latest_checkpoint(run_dir) is not None:
            start = trainer.resume()
            print(f"metarl: {run_dir.name} resumes at iteration {start}", file=sys.stderr)
        try:
            trainer.train(progress=False)
        except TrainingDiverged as exc:  # deterministic: a retry would diverge again
            print(f"metarl: {run_dir.name} {exc}", file=sys.stderr)
            tune.report({"iteration": exc.iteration, "diverged": 1})
            return
        result = runs.final_evaluation(trainer, progress=False)
    tune.report({"iteration": config.trainer.iterations, "final": 1, **_reportable(result)})


def restore_from_tune(checkpoint: Any, run_dir: Path) -> None:
    """Put Tune's copy of our checkpoint back into ``run_dir`` if the run dir lost it (a run
    dir on storage that did not survive); the run dir's own later checkpoints win."""
    if checkpoint is None:
        return
    from metarl.training import CHECKPOINT_DIR

    with checkpoint.as_directory() as folder:
        record = json.loads((Path(folder) / TUNE_CHECKPOINT_FILE).read_text())
        target = run_dir / CHECKPOINT_DIR / record["checkpoint"]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(folder) / record["checkpoint"], target)


def _reportable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool))}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


# ------------------------------------------------------------------------- the driver
def trial_lines() -> Any:
    """A Tune callback printing one line per trial event on stderr."""
    from ray.tune import Callback

    def name(trial: Any) -> str:
        return trial_label(trial.config["setting"], trial.config["seed"])

    class TrialLines(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any):
            print(f"metarl sweep: {name(trial)} started", file=sys.stderr)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any):
            print(f"metarl sweep: {name(trial)} failed; retrying from its last checkpoint",
                  file=sys.stderr)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any):
            result = trial.last_result or {}
            if result.get("diverged"):
                print(f"metarl sweep: {name(trial)} diverged at iteration "
                      f"{result.get('iteration')}; its checkpoints are intact", file=sys.stderr)
                return
            scores = {k: round(v, 4) for k, v in result.items()
                      if k.startswith("eval_") and not k.endswith("stderr")
                      and isinstance(v, float)}
            print(f"metarl sweep: {name(trial)} done {json.dumps(scores)}", file=sys.stderr)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any):
            print(f"metarl sweep: {name(trial)} failed for good (see {trial.path})",
                  file=sys.stderr)

    return TrialLines()


def sweep_dir(storage: str | Path, name: str) -> Path:
    return Path(storage).expanduser().resolve() / name


def run_sweep(spec: SweepSpec, storage: str | Path, name: str, *, resume: bool = False,
              ray_address: str | None = None) -> dict[str, Any]:
    """Run (or with ``resume`` continue) the sweep ``name`` under ``storage``; returns a
    summary: the sweep dir, and per trial its run dir, status and final ``eval_*`` figures."""
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    # the run dirs have progress.csv and TensorBoard: Tune keeps only its result.json
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    root = sweep_dir(storage, name)
    runs_dir = root / RUNS_DIR
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, configure_logging=False,
                 log_to_driver=True, ignore_reinit_error=True)
    need = spec.cpus + (spec.workers if spec.sampler == "ray" else 0)
    have = ray.cluster_resources().get("CPU", 0.0)
    if need > have:
        raise SweepError(f"a trial needs {need:g} CPUs (--cpus {spec.cpus:g}"
                         + (f" + --workers {spec.workers}" if spec.sampler == "ray" else "")
                         + f") but the Ray cluster has {have:g}")
    trainable = tune.with_resources(train_trial, trial_resources(spec))
    run_config = tune.RunConfig(
        name=name, storage_path=str(root.parent), verbose=0,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[JsonLoggerCallback(), trial_lines()])
    if resume:
        tuner = tune.Tuner.restore(str(root), trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / SWEEP_FILE, json.dumps(
            {"name": name, **asdict(spec), "runs_dir": str(runs_dir)}, indent=2) + "\n")
        param_space = {"spec": asdict(spec), "runs_dir": str(runs_dir),
                       "setting": tune.grid_search(spec.settings()),
                       "seed": tune.grid_search(list(spec.seeds))}
        tuner = tune.Tuner(trainable, param_space=param_space, run_config=run_config,
                           tune_config=tune.TuneConfig(
                               max_concurrent_trials=spec.max_concurrent,
                               trial_dirname_creator=lambda t: TUNE_TRIAL_PREFIX + trial_label(
                                   t.config["setting"], t.config["seed"])))
    # Ray may delete a job's working dir (`ray job submit --working-dir`) when the trials
    # end, while the driver still runs in it; Tune then fails on os.getcwd()
    # (ray-project/ray#52343). The sweep uses absolute paths only: run it from its dir.
    try:
        previous = os.getcwd()
    except FileNotFoundError:  # already gone
        previous = None
    os.chdir(root)
    try:
        results = tuner.fit()
    finally:
        if previous is not None and os.path.isdir(previous):
            os.chdir(previous)
    trials = []
    for result in results:
        config = result.config or {}
        label = trial_label(config.get("setting", {}), config.get("seed", 0))
        metrics = result.metrics or {}
        status = ("error" if result.error else
                  "diverged" if (result.metrics or {}).get("diverged") else "done")
        trials.append({"run_dir": str(runs_dir / label), "status": status,
                       **{k: v for k, v in metrics.items() if k.startswith("eval_")}})
    return {"sweep_dir": str(root), "trials": sorted(trials, key=lambda t: t["run_dir"])}


def load_spec(storage: str | Path, name: str) -> SweepSpec:
    """The spec of the sweep ``storage/name`` from its ``sweep.json``."""
    record = json.loads((sweep_dir(storage, name) / SWEEP_FILE).read_text())
    return SweepSpec(**{k: record[k] for k in SweepSpec.__dataclass_fields__ if k in record})


def existing_sweep(storage: str | Path, name: str) -> bool:
    """Whether ``storage/name`` already holds a sweep (Tune's state or our sweep.json)."""
    root = sweep_dir(storage, name)
    return (root / SWEEP_FILE).exists() or (root / "tuner.pkl").exists()
