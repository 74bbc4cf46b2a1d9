"""Building, loading and resuming runs (shared by the CLI and notebooks).

``metarl.load(run_dir)`` gives back the trained agent with its env and config.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metarl import agents, envs
from metarl.checkpoints import CheckpointError, atomic_write_text, load_checkpoint
from metarl.config import (
    ConfigError,
    RunConfig,
    build_config,
    env_parameters,
    load_yaml,
    resumable_keys,
)
from metarl.envs_api import MetaEnv
from metarl.thread_limits import set_threads
from metarl.training import Trainer, latest_checkpoint


def _agent_and_env_factory(values: dict[str, Any]) -> tuple[type, type, Any]:
    """The agent class, its config class and its env's constructor for flat ``values``."""
    for key in ("agent", "env"):
        if not isinstance(values.get(key), str):
            raise ConfigError(f"the config names no {key} (got {key}: {values.get(key)!r})")
    agent_cls, config_cls = agents.get(values["agent"]).load()
    try:
        env_factory = agent_cls.env_factory(values["env"])
    except ValueError as exc:
        if isinstance(exc, envs.UnknownEnvError):
            raise
        raise ConfigError(f"agent {values['agent']!r} {exc}") from None
    return agent_cls, config_cls, env_factory


def check_config(values: dict[str, Any]) -> RunConfig:
    """Validate flat config values (names, keys, types, declared ranges) without building
    the env."""
    agent_cls, config_cls, env_factory = _agent_and_env_factory(values)
    return build_config(values, config_cls, env_factory,
                        agent_cls.config_defaults(values["env"], config_cls))


def build_run_config(values: dict[str, Any]) -> tuple[RunConfig, Any]:
    """Validate flat config values; returns the config and the agent's "env" (a task
    distribution, or a few-shot learner's dataset), built as the agent says."""
    config = check_config(values)
    agent_cls, _ = agents.get(config.agent).load()
    try:
        env = agent_cls.make_env(config.env, config.env_kwargs, config.agent_config)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        raise ConfigError(f"env {config.env!r}: {str(exc).splitlines()[0]}") from None
    return config, env


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{config.agent}-{config.env}-seed{config.trainer.seed}"


def make_agent(config: RunConfig, env: MetaEnv):
    if config.trainer.threads:
        set_threads(config.trainer.threads)
    torch.manual_seed(config.trainer.seed)
    try:
        return agents.build(config.agent, env, config.agent_config, device=config.trainer.device)
    except ValueError as exc:  # the agent cannot take this env (e.g. discrete actions)
        raise ConfigError(str(exc).splitlines()[0]) from None


def make_trainer(run_dir: Path, config: RunConfig, env: MetaEnv, sampler,
                 on_iteration: Callable[[dict[str, Any], Path | None], None] | None = None
                 ) -> Trainer:
    return Trainer(run_dir, config, make_agent(config, env), env, sampler,
                   on_iteration=on_iteration)


def checkpoint_iteration(run_dir: Path) -> int:
    """The iteration of the run's latest checkpoint (0 without one), from its file name."""
    path = latest_checkpoint(run_dir)
    try:
        return int(path.stem.removeprefix("iter_")) if path is not None else 0
    except ValueError:
        return 0


def resume_values(run_dir: Path, typed: dict[str, Any]) -> dict[str, Any]:
    """The flat values to resume the run in ``run_dir`` with: its stored ``config.yaml``
    with the ``typed`` values (the command line's, :func:`metarl.cli.gather_config_values`)
    applied. A typed value that differs from the stored one is a :class:`ConfigError`
    naming both, unless its key is resumable (:func:`metarl.config.resumable_keys`); so is
    ``iterations`` below the latest checkpoint's, and a stored config this version of the
    code no longer accepts. Reads only; nothing on disk changes."""
    run = str(run_dir)
    try:
        stored_values = load_yaml(run_dir / "config.yaml")
        stored = check_config(stored_values)
    except ValueError as exc:  # ConfigError, an unknown agent or env
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ConfigError(f"cannot resume {run!r}: its config.yaml does not fit this version "
                          f"of metarl: {reason}") from None
    for key in ("agent", "env"):
        if key in typed and typed[key] != stored_values[key]:
            raise ConfigError(f"cannot resume {run!r} with {key}={typed[key]!r}: the run has "
                              f"{key}={stored_values[key]!r}")
    values = {**stored_values, **typed}
    merged = check_config(values)
    before, after = stored.to_flat(), merged.to_flat()
    _, config_cls, env_factory = _agent_and_env_factory(stored_values)
    env_defaults = {f"env.{k}": p.default for k, p in env_parameters(env_factory).items()}
    resumable = resumable_keys(config_cls)
    for key in typed:
        name = key.removeprefix("agent.")
        if name in ("agent", "env") or name not in after:
            continue  # the names are compared above; a retired option is ignored
        old = before.get(name, env_defaults.get(name))
        if after[name] != old and name not in resumable:
            raise ConfigError(f"cannot resume {run!r} with {name}={after[name]!r}: the run has "
                              f"{name}={old!r} (a resume may change only "
                              f"{', '.join(resumable)}; to change others, fork the run with "
                              f"experiments/fork_run.py)")
    done = checkpoint_iteration(run_dir)
    if merged.trainer.iterations < done:
        raise ConfigError(f"cannot resume {run!r} with iterations={merged.trainer.iterations}: "
                          f"the run is already at iteration {done}")
    return values


def final_evaluation(trainer: Trainer, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate the trained agent on ``eval_tasks`` test tasks into ``eval.json``; returns
    the summary as ``eval_*``. ``progress``: report the evaluation's steps on stderr
    (``None``/``True``: a bar on a terminal, else a line every ~10 s; :mod:`metarl.progress`);
    the results are the same either way."""
    from metarl.evaluation import EvalRequest, eval_summary
    from metarl.progress import Progress, reports_steps, sampler_with_progress

    cfg = trainer.config.trainer
    sampler = trainer.eval_sampler
    with Progress(desc="final evaluation", unit="steps",
                  enabled=progress if reports_steps(sampler) else False) as bar:
        result = trainer.agent.evaluate(trainer.env, sampler_with_progress(sampler, bar),
                                        EvalRequest(num_tasks=cfg.eval_tasks, seed=cfg.seed))
    atomic_write_text(trainer.run_dir / "eval.json", json.dumps(result, indent=2))
    return eval_summary(result)


@dataclass
class LoadedRun:
    agent: Any
    env: MetaEnv
    config: RunConfig
    iteration: int
    run_dir: Path


def load(run_dir: str | Path, checkpoint: str | Path | None = None,
         overrides: dict[str, Any] | None = None) -> LoadedRun:
    """A trained run: its agent (weights from the latest checkpoint), env and config;
    ``overrides`` replace stored settings (e.g. ``{"env.data_dir": DIR}`` for data that
    moved)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run dir {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run dir (no config.yaml)")
    config, env = build_run_config({**load_yaml(run_dir / "config.yaml"), **(overrides or {})})
    path = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"run dir {str(run_dir)!r} has no checkpoints")
    state = load_checkpoint(path)
    agent = make_agent(config, env)
    load_agent_state(agent, state["agent"], path, config.agent)
    return LoadedRun(agent, env, config, int(state["iteration"]), run_dir)


def load_agent_state(agent: Any, state: dict, path: str | Path, agent_name: str) -> None:
    """Load a checkpoint's agent ``state`` (read from ``path``); a misfit (another
    architecture or config) is one :class:`CheckpointError` line."""
    try:
        agent.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit agent {agent_name!r}: "
                              f"{str(exc).splitlines()[0][:120]}") from None
