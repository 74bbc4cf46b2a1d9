"""The ``metarl`` / ``train-agent`` command line.

``metarl list [envs|datasets|agents|presets]``, ``metarl train AGENT ENV ...``,
``metarl eval RUN_DIR ...``, ``metarl render RUN_DIR --out FILE.gif``,
``metarl plot RUN_DIR... --out FILE.png``, ``metarl sweep ...`` (settings x seeds on Ray
Tune), ``metarl report RUNS_OR_SWEEP... --out FILE.md``, ``metarl bench NAME ...``. Bad input
prints one line ``metarl: error: ...`` on stderr and exits with code 2; nothing already
written is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from metarl.stopping import (
    NO_SPACE,
    DiskFull,
    SamplerError,
    TrainingDiverged,
    TrainingStopped,
)


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2."""


def _usage_errors() -> tuple[type[BaseException], ...]:
    from metarl.agents import UnknownAgentError
    from metarl.checkpoints import CheckpointError
    from metarl.config import ConfigError
    from metarl.envs import UnknownEnvError
    from metarl.run_lock import RunDirError
    from metarl.sweep import SweepError

    return (UsageError, ConfigError, UnknownAgentError, UnknownEnvError, CheckpointError,
            RunDirError, SweepError)


# --------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from metarl.agents import REGISTRY as AGENTS
    from metarl.config import preset_names
    from metarl.envs import REGISTRY as ENVS
    from metarl.fewshot.datasets import DATASET_DESCRIPTIONS

    if args.what in ("envs", "all"):
        print("envs:")
        for spec in ENVS.values():
            print(f"  {spec.name:<18} [{spec.family}] {spec.description}")
    if args.what in ("datasets", "all"):
        print("datasets (few-shot learners):")
        for name, description in DATASET_DESCRIPTIONS.items():
            print(f"  {name:<18} {description}")
    if args.what in ("agents", "all"):
        print("agents:")
        for spec in AGENTS.values():
            print(f"  {spec.name:<18} [{spec.kind}] {spec.description}")
    if args.what in ("presets", "all"):
        print("presets (--config NAME):")
        for name in preset_names():
            print(f"  {name}")
    return 0


# -------------------------------------------------------------------------- train
def _resolve_config_file(value: str) -> Path:
    """A YAML path, or a preset name like ``rl2/bandit-k5-n10`` (package data in
    ``metarl/presets``; ``metarl list presets`` shows them)."""
    from metarl.config import PRESETS_DIR, preset_names

    path = Path(value)
    if path.is_file():
        return path
    preset = PRESETS_DIR / (value if value.endswith(".yaml") else f"{value}.yaml")
    if preset.is_file():
        return preset
    raise UsageError(f"config {value!r} is neither a file nor a preset; presets: "
                     f"{', '.join(preset_names())}")


def gather_config_values(args: argparse.Namespace, resume: bool = False) -> dict[str, Any]:
    """The flat config values typed on the command line: ``--config``'s, the positional
    agent and env, ``--set`` and the flags, later ones winning. A new run needs the agent
    and the env; a resume (``resume=True``) takes the rest from the stored run, against
    which :func:`metarl.runs.resume_values` compares these."""
    from metarl.config import load_yaml, parse_overrides

    values: dict[str, Any] = {}
    if args.config:
        values.update(load_yaml(_resolve_config_file(args.config)))
    for key in ("agent", "env"):
        given = getattr(args, key, None)
        if given:
            if key in values and values[key] != given:
                raise UsageError(f"{key} {given!r} on the command line but {values[key]!r} in "
                                 f"{args.config}")
            values[key] = given
    for key in ("agent", "env"):
        if key not in values and not resume:
            raise UsageError(f"no {key} given (positional or in --config)")
    values.update(parse_overrides(args.set or []))
    for flag in ("seed", "iterations", "device"):
        if getattr(args, flag, None) is not None:
            values[flag] = getattr(args, flag)
    return values


def check_train_arguments(args: argparse.Namespace, ray: bool = False) -> None:
    """The sampler options and, when Ray is used (``--sampler ray``, or ``ray``: a sweep),
    that ``--ray-address`` answers; before anything else (the config keys' own ranges are
    checked by :func:`metarl.config.build_config`)."""
    from metarl.sampling import SAMPLERS

    if args.sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {args.sampler!r}; valid samplers: "
                         f"{', '.join(SAMPLERS)}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if ray or args.sampler == "ray":
        check_ray_address(args.ray_address)


def check_ray_address(address: str | None) -> None:
    """A ``--ray-address`` where nothing answers is one line (Ray's own attempt waits
    minutes); ``None`` and ``auto`` are left to Ray."""
    from metarl.sampling.ray_sampler import unreachable_ray_head

    why = unreachable_ray_head(address)
    if why is not None:
        raise UsageError(f"cannot reach a Ray head at --ray-address {address!r}: {why}; start "
                         f"one with `ray start --head` or pass its address")


def check_output(value: str, flag: str = "--out") -> Path:
    """``value`` as a path a command can write once its work is done: not a directory, and
    its nearest existing ancestor a writable directory (missing directories are created when
    the file is written). Checked up front, so bad output fails before the work, in one line
    naming the path."""
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"cannot write {flag} {value!r}: it is a directory")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"cannot write {flag} {value!r}: {str(ancestor)!r} is not a "
                         f"directory")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.exists()
                                                      and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {flag} {value!r}: permission denied")
    return path


def check_seed(seed: int, flag: str = "--seed") -> None:
    from metarl.config import SEEDS

    if seed not in SEEDS:
        raise UsageError(f"{flag} must be {SEEDS}, got {seed}")


def cmd_train(args: argparse.Namespace) -> int:
    from metarl import agents, runs
    from metarl.memory import check_memory
    from metarl.run_lock import run_lock
    from metarl.sampling import make_sampler
    from metarl.training import latest_checkpoint

    check_train_arguments(args)
    run_dir = Path(args.run_dir) if args.run_dir else None
    if args.resume:
        if run_dir is None:
            raise UsageError("--resume needs --run-dir DIR of the run to continue")
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"cannot resume: {str(run_dir)!r} has no config.yaml")
    values = (runs.resume_values(run_dir, gather_config_values(args, resume=True))
              if args.resume else gather_config_values(args))
    config, env = runs.build_run_config(values)
    agent_cls, _ = agents.get(config.agent).load()
    check_memory(agent_cls.memory_needs(config, env))  # sizes that cannot fit, before any file
    if run_dir is None:
        run_dir = runs.default_run_dir(config)
    if not args.resume and latest_checkpoint(run_dir) is not None:  # checked again locked
        raise UsageError(f"run dir {str(run_dir)!r} already holds checkpoints; "
                         f"use --resume to continue it or choose another --run-dir")
    sampler = make_sampler(env, args.sampler, args.workers, args.ray_address) \
        if agent_cls.uses_sampler else None
    trainer = runs.make_trainer(run_dir, config, env, sampler)
    with run_lock(run_dir):  # before anything is written there, until the process ends
        if args.resume:
            start = trainer.resume()
            print(f"resuming {run_dir} at iteration {start}", file=sys.stderr)
        summary = trainer.train()
        result = runs.final_evaluation(trainer)
    print(json.dumps({"run_dir": str(run_dir), **summary, **result}))
    return 0


# -------------------------------------------------------------------------- sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    from metarl.sweep import (
        SweepSpec,
        check_spec,
        existing_sweep,
        load_spec,
        parse_grid,
        run_sweep,
        sweep_dir,
    )

    check_train_arguments(args, ray=True)
    storage = Path(args.storage)
    if storage.exists() and not storage.is_dir():
        raise UsageError(f"--storage {args.storage!r} is not a directory")
    if args.resume:
        if not args.name:
            raise UsageError("--resume needs --name NAME of the sweep under --storage")
        if not existing_sweep(storage, args.name):
            raise UsageError(f"no sweep {args.name!r} under --storage {args.storage!r} "
                             f"to resume")
        spec, name = load_spec(storage, args.name), args.name
    else:
        values = gather_config_values(args)
        spec = SweepSpec(base=values, grid=parse_grid(args.grid or []),
                         seeds=args.seeds or [int(values.get("seed", 0))],
                         sampler=args.sampler, workers=args.workers, cpus=args.cpus,
                         max_failures=args.max_failures, max_concurrent=args.max_concurrent,
                         command=sys.argv[1:])
        check_spec(spec)
        name = args.name or f"{values['agent']}-{values['env']}"
        if existing_sweep(storage, name):
            raise UsageError(f"{str(sweep_dir(storage, name))!r} already holds a sweep; "
                             f"continue it with --resume --name {name} or choose another "
                             f"--name")
        check_output(str(sweep_dir(storage, name) / "sweep.json"), "--storage")
    summary = run_sweep(spec, storage, name, resume=args.resume, ray_address=args.ray_address)
    failed = [t["run_dir"] for t in summary["trials"] if t["status"] == "error"]
    diverged = [t["run_dir"] for t in summary["trials"] if t["status"] == "diverged"]
    if args.json:
        print(json.dumps(summary))
    else:
        done = len(summary["trials"]) - len(failed) - len(diverged)
        print(f"sweep {summary['sweep_dir']}: {done} of {len(summary['trials'])} trials done")
        for trial in summary["trials"]:
            scores = ", ".join(f"{k} {v:.4g}" for k, v in trial.items()
                               if k.startswith("eval_") and not k.endswith("_stderr")
                               and isinstance(v, float))
            print(f"  {trial['run_dir']}: {trial['status']}{'; ' + scores if scores else ''}")
    if diverged:
        print(f"metarl: {len(diverged)} trial(s) diverged (their last good checkpoints are "
              f"kept): {', '.join(diverged)}", file=sys.stderr)
    if failed:
        print(f"metarl: error: {len(failed)} trial(s) failed for good; continue the sweep "
              f"with --resume --name {name}", file=sys.stderr)
    return 1 if failed or diverged else 0


# --------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from metarl import runs
    from metarl.config import parse_overrides
    from metarl.evaluation import EvalRequest
    from metarl.memory import check_memory, rollout_need
    from metarl.sampling import LocalSampler

    if args.num_tasks is not None and args.num_tasks < 1:
        raise UsageError(f"--num-tasks must be >= 1, got {args.num_tasks}")
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    check_seed(args.seed)
    out = check_output(args.out) if args.out else None
    overrides = parse_overrides(args.set or [])
    if bad := [key for key in overrides if not key.startswith("env.")]:
        raise UsageError(f"eval --set takes env keys only (e.g. env.data_dir=DIR), got {bad[0]!r}")
    loaded = runs.load(args.run_dir, overrides=overrides)
    sampler = LocalSampler(loaded.env) if loaded.agent.uses_sampler else None
    if sampler is not None:
        check_memory([rollout_need(
            "the evaluation's rollouts", loaded.env, None,
            ("tasks", "--num-tasks", args.num_tasks or loaded.agent.default_eval_tasks),
            ("trials", None, loaded.agent.eval_trials()),
            ("episodes", "--episodes", args.episodes or loaded.agent.eval_episodes))])
    request = EvalRequest(split=args.split, num_tasks=args.num_tasks, seed=args.seed,
                          episodes=args.episodes, deterministic=args.deterministic)
    from metarl.progress import Progress, reports_steps, sampler_with_progress

    try:
        with Progress(desc="eval", unit="steps", enabled=None if reports_steps(sampler)
                      else False) as bar:
            result = loaded.agent.evaluate(loaded.env, sampler_with_progress(sampler, bar),
                                           request)
    except ValueError as exc:  # a request the agent cannot answer (e.g. --episodes)
        raise UsageError(f"agent {loaded.config.agent!r}: {exc}") from None
    result = {"agent": loaded.config.agent, "env": loaded.config.env,
              "iteration": loaded.iteration, **result}
    if out is not None:
        from metarl.checkpoints import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['agent']} on {result['env']} ({args.split} split, {result['num_tasks']} "
          f"tasks, checkpoint iteration {loaded.iteration})")
    for k, value in enumerate(result.get("returns_per_episode", [])):  # adaptation curve
        print(f"  episode {k:>3}: {value:10.3f}")
    for key, value in result["summary"].items():
        print(f"  {key}: {value:.4f}")
    return 0


# ------------------------------------------------------------------------- render
def cmd_render(args: argparse.Namespace) -> int:
    from metarl.render import RenderError, render_run

    check_output(args.out)
    check_seed(args.seed)
    try:
        result = render_run(args.run_dir, args.out, tasks=args.tasks, episodes=args.episodes,
                            split=args.split, seed=args.seed, fps=args.fps)
    except RenderError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {result['out']}: {result['frames']} frames of {result['frame_size'][1]}x"
          f"{result['frame_size'][0]} at {result['fps']:g} fps ({result['tasks']} tasks x "
          f"{result['episodes']} episodes)", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- plot
def cmd_plot(args: argparse.Namespace) -> int:
    from metarl.plot import PlotError, plot_runs

    check_output(args.out)
    try:
        result = plot_runs(args.run_dirs, args.out, x=args.x, y=args.y,
                           references=args.ref)
    except PlotError as exc:
        raise UsageError(str(exc)) from None
    labels = ", ".join(g["label"] for g in result["groups"])
    print(f"wrote {result['out']}: {labels}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from metarl.report import ReportError, build_report

    check_output(args.out)
    if args.reps < 100:
        raise UsageError(f"--reps must be >= 100, got {args.reps}")
    try:
        result = build_report(args.paths, args.out, metric=args.metric, x=args.x, y=args.y,
                              reps=args.reps)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
    else:
        print(Path(args.out).read_text(), end="")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


# -------------------------------------------------------------------------- bench
BENCHMARKS = {"envs": "metarl.benchmarks.envs", "sampler": "metarl.benchmarks.sampler",
              "inner-loop": "metarl.benchmarks.inner_loop",
              "sac-update": "metarl.benchmarks.sac_update",
              "rl2-update": "metarl.benchmarks.rl2_update",
              "rl2-libraries": "metarl.benchmarks.rl2_libraries", "mpc": "metarl.benchmarks.mpc",
              "dream": "metarl.benchmarks.dream"}
#: bench options passed to a benchmark's ``run`` as keywords (when given)
BENCH_OPTIONS = ("env", "workers", "tasks", "episodes", "threads", "epochs", "cores",
                 "ray_address", "spread")


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib
    import inspect

    if args.name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {args.name!r}; valid benchmarks: "
                         f"{', '.join(sorted(BENCHMARKS))}")
    run = importlib.import_module(BENCHMARKS[args.name]).run
    accepted = inspect.signature(run).parameters
    options = {key: getattr(args, key) for key in BENCH_OPTIONS if getattr(args, key) is not None}
    if args.compare:  # the recorded run's options, unless given here
        from metarl.benchmarks.compare import load_reference

        try:
            reference = load_reference(args.compare, args.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        options = {**reference["options"], **options}
    if unknown := [f"--{key}" for key in options if key not in accepted]:
        raise UsageError(f"benchmark {args.name!r} does not take {', '.join(unknown)}")
    for key in ("workers", "tasks", "episodes", "threads", "epochs"):
        if options.get(key, 1) < 1:
            raise UsageError(f"--{key} must be >= 1, got {options[key]}")
    check_ray_address(options.get("ray_address"))
    try:
        result = run(**options)
    except ValueError as exc:  # a bad option value, e.g. an env the benchmark cannot run
        raise UsageError(str(exc)) from None
    print(json.dumps(result, indent=None if args.json else 2))
    if args.compare:
        from metarl.benchmarks.compare import report

        return report(args.name, result, reference, args.compare)
    return 0


# --------------------------------------------------------------------------- main
def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    """What to train and how to sample: shared by ``train`` and ``sweep``."""
    p.add_argument("agent", nargs="?", help="agent name (see `metarl list agents`)")
    p.add_argument("env", nargs="?", help="env name (see `metarl list envs`)")
    p.add_argument("--config", help="YAML file or preset name (e.g. rl2/bandit-k5-n10)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", action="extend",
                   help="override config keys, e.g. --set lr=1e-3 env.arms=10")
    p.add_argument("--iterations", type=int)
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--sampler", default="local", help="local (default) or ray")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (--sampler ray)")
    p.add_argument("--ray-address", help="address of a running Ray cluster (default: local)")


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    _add_config_arguments(p)
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", help="run directory (default runs/AGENT-ENV-seedN)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.set_defaults(func=cmd_train)


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    _add_config_arguments(p)
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of every setting (default: "
                   "the config's seed)")
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", action="extend",
                   help="values to sweep, e.g. --grid lr=3e-4,1e-3 env.arms=5,10 (all "
                   "combinations)")
    p.add_argument("--storage", default="runs/sweeps", help="directory for the sweep, shared "
                   "by every node of a cluster (default runs/sweeps)")
    p.add_argument("--name", help="sweep name (default AGENT-ENV); its run dirs are "
                   "STORAGE/NAME/runs/SETTING_seedN")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial, besides its Ray "
                   "sampler workers (default 1; also its torch threads)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as "
                   "the cluster's CPUs allow)")
    p.add_argument("--max-failures", type=int, default=3, help="restarts of a failed trial, "
                   "each from its last checkpoint (default 3)")
    p.add_argument("--resume", action="store_true", help="continue the sweep STORAGE/NAME "
                   "(Tuner.restore)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=cmd_sweep)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metarl", description="Meta-reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("list", help="list envs, datasets, agents and presets")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "envs", "datasets", "agents", "presets"])
    p.set_defaults(func=cmd_list)
    _add_train_arguments(sub.add_parser("train", help="train an agent"))
    _add_sweep_arguments(sub.add_parser("sweep", help="train a grid of settings x seeds on "
                                        "Ray Tune (a local Ray or --ray-address)"))
    p = sub.add_parser("eval", help="adaptation curve of a trained run on held-out tasks")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--num-tasks", type=int, default=None,
                   help="held-out tasks (default: the agent's, 100 for meta-RL agents and "
                   "600 for few-shot learners)")
    p.add_argument("--episodes", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="act on the policy's most likely action (mean) instead of sampling")
    p.add_argument("--set", nargs="+", metavar="env.KEY=VALUE", action="extend",
                   help="override the run's env keys, e.g. --set env.data_dir=DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", metavar="FILE", help="also write the result as JSON to FILE")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("render", help="animate trials of a trained run on held-out tasks")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output file, .gif or .mp4")
    p.add_argument("--tasks", type=int, default=2, help="tasks shown side by side (default 2)")
    p.add_argument("--episodes", type=int, help="episodes per trial (default: the agent's)")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--seed", type=int, default=0, help="as `metarl eval --seed`")
    p.add_argument("--fps", type=float, help="frames per second (default: the env's)")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("plot", help="learning and adaptation curves of runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output file, .png (or .pdf, .svg)")
    p.add_argument("--x", default="iteration", help="progress.csv column: iteration (default) "
                   "or env_steps_total")
    p.add_argument("--y", nargs="+", default=["trial_return"], help="progress.csv "
                   "column(s) (default trial_return); several share the axes, each run "
                   "drawing those it logs")
    p.add_argument("--ref", action="append", default=[], metavar="[LABEL=]VALUE",
                   help="a dashed horizontal reference line, e.g. MAML-TRPO=-139 (repeatable)")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("report", help="aggregate runs across seeds: mean, IQM and bootstrap "
                       "CIs per setting, learning curves with CI bands")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run dirs, or dirs holding them "
                   "(a sweep: STORAGE/NAME)")
    p.add_argument("--out", required=True, help="Markdown file; the curves go beside it "
                   "(.png)")
    p.add_argument("--metric", default="trial_return", help="final figure, from eval.json's "
                   "summary (default trial_return)")
    p.add_argument("--x", default="env_steps_total", help="progress.csv column for the "
                   "curves' x axis (default env_steps_total)")
    p.add_argument("--y", help="progress.csv column for the curves (default trial_return, "
                   "else train_return (SB3 agents), where every run logs it; else eval_METRIC)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("bench", help="run a benchmark and print its figures")
    p.add_argument("name", help=f"one of: {', '.join(sorted(BENCHMARKS))}")
    p.add_argument("--env", help="env to benchmark (sampler; default cheetah-vel)")
    p.add_argument("--workers", type=int, help="Ray workers (sampler; default 2)")
    p.add_argument("--tasks", type=int, help="tasks in the workload (sampler; default 20)")
    p.add_argument("--episodes", type=int, help="episodes per task (sampler; default 2)")
    p.add_argument("--threads", type=int,
                   help="torch threads (rl2-update, rl2-libraries, mpc, dream; default 1)")
    p.add_argument("--epochs", type=int,
                   help="PPO epochs per update (rl2-update, rl2-libraries; default 5)")
    p.add_argument("--cores", nargs="+", metavar="NAME",
                   help="recurrent cores to time (rl2-update; default all)")
    p.add_argument("--ray-address", help="an existing Ray cluster for the workers (sampler; "
                   "default: a local Ray started by the benchmark)")
    p.add_argument("--spread", action="store_true", default=None,
                   help="place the workers with Ray's SPREAD strategy, one per node (sampler)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--compare", metavar="FILE", help="run with FILE's recorded options and "
                   "flag (exit 1) each ratio more than 30%% worse than recorded there, e.g. "
                   "experiments/bench-reference.json (see metarl/benchmarks/compare.py)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    errors = _usage_errors()
    try:
        return args.func(args)
    except errors as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"metarl: error: {message}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        print(f"metarl: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except TrainingDiverged as exc:  # a non-finite loss, gradient or parameter
        print(f"metarl: {exc}", file=sys.stderr)
        return 3
    except SamplerError as exc:  # the iteration in flight is lost, the checkpoints are not
        print(f"metarl: error: {exc}; the last checkpoint is intact: continue with --resume",
              file=sys.stderr)
        return 4
    except DiskFull as exc:  # the checkpoints are intact
        print(f"metarl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk outside the training loop (e.g. eval.json)
        if exc.errno not in NO_SPACE:
            raise
        where = f" writing {os.fspath(exc.filename)!r}" if exc.filename else ""
        print(f"metarl: error: {os.strerror(exc.errno).lower()}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metarl: interrupted; resume with --resume", file=sys.stderr)
        return 130


def train_agent_main(argv: list[str] | None = None) -> int:
    """``train-agent AGENT ENV ...`` is ``metarl train AGENT ENV ...``."""
    argv = sys.argv[1:] if argv is None else argv
    return main(["train", *argv])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
