"""Building, loading and resuming runs (shared by the CLI and notebooks).

``metarl.load(run_dir)`` gives back the trained agent with its env and config.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metarl import agents, envs
from metarl.checkpoints import CheckpointError, atomic_write_text, load_checkpoint
from metarl.config import ConfigError, RunConfig, build_config, load_yaml
from metarl.envs_api import MetaEnv
from metarl.thread_limits import set_threads
from metarl.training import Trainer, latest_checkpoint


def build_run_config(values: dict[str, Any]) -> tuple[RunConfig, Any]:
    """Validate flat config values; returns the config and the agent's "env" (a task
    distribution, or a few-shot learner's dataset), built as the agent says."""
    agent_cls, config_cls = agents.get(values["agent"]).load()
    try:
        env_factory = agent_cls.env_factory(values["env"])
    except ValueError as exc:
        if isinstance(exc, envs.UnknownEnvError):
            raise
        raise ConfigError(f"agent {values['agent']!r} {exc}") from None
    config = build_config(values, config_cls, env_factory,
                          agent_cls.config_defaults(values["env"], config_cls))
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


def make_trainer(run_dir: Path, config: RunConfig, env: MetaEnv, sampler) -> Trainer:
    return Trainer(run_dir, config, make_agent(config, env), env, sampler)


def resume_values(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The saved config of a run; only ``--iterations`` may change when resuming."""
    values = load_yaml(run_dir / "config.yaml")
    if args.iterations is not None:
        values["iterations"] = args.iterations
    return values


def final_evaluation(trainer: Trainer) -> dict[str, Any]:
    from metarl.evaluation import EvalRequest, eval_summary

    cfg = trainer.config.trainer
    result = trainer.agent.evaluate(trainer.env, trainer.eval_sampler,
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
