"""Building, loading and resuming runs (shared by the CLI and notebooks).

``metarl.load(run_dir)`` gives back the trained agent with its env and config.
"""

from __future__ import annotations

import argparse
import inspect
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


def build_run_config(values: dict[str, Any]) -> tuple[RunConfig, MetaEnv]:
    """Validate flat config values; returns the config and the constructed env (for a
    few-shot learner: the :class:`~metarl.fewshot.agent.FewShotProblem`)."""
    if agents.get(values["agent"]).kind == "few-shot":
        return _build_few_shot_config(values)
    spec = envs.REGISTRY.get(values["env"])
    if spec is None:
        envs.make(values["env"])  # raises UnknownEnvError with the valid names
    _, config_cls = agents.get(values["agent"]).load()
    config = build_config(values, config_cls, spec.load())
    try:
        env = envs.make(config.env, **config.env_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env {config.env!r}: {exc}") from None
    return config, env


def _build_few_shot_config(values: dict[str, Any]) -> tuple[RunConfig, Any]:
    from metarl.fewshot import DATASETS, is_classification
    from metarl.fewshot.agent import FewShotProblem, dataset_parameters

    if values["env"] not in DATASETS:
        raise ConfigError(f"unknown dataset {values['env']!r} for few-shot agent "
                          f"{values['agent']!r}; valid datasets: {', '.join(DATASETS)}")
    agent_cls, config_cls = agents.get(values["agent"]).load()
    kind = "classification" if is_classification(values["env"]) else "regression"
    if kind not in agent_cls.learner_class.supports:
        raise ConfigError(f"agent {values['agent']!r} does not learn {kind} datasets such as "
                          f"{values['env']!r}; valid datasets: " + ", ".join(
                              d for d in DATASETS if ("classification" if is_classification(d)
                                                      else "regression")
                              in agent_cls.learner_class.supports))

    def dataset_signature(**kwargs):  # the dataset's arguments, for checking env. keys
        return kwargs

    dataset_signature.__signature__ = inspect.Signature(
        list(dataset_parameters(values["env"]).values()))
    config = build_config(values, config_cls, dataset_signature)
    problem = FewShotProblem(config.env, dict(config.env_kwargs))
    try:
        problem.source("train", config.agent_config)  # fails early on missing data
    except (FileNotFoundError, TypeError, ValueError) as exc:
        raise ConfigError(f"dataset {config.env!r}: {str(exc).splitlines()[0]}") from None
    return config, problem


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
    from metarl.evaluation import eval_summary, evaluate

    cfg = trainer.config.trainer
    result = evaluate(trainer.agent, trainer.env, trainer.eval_sampler, num_tasks=cfg.eval_tasks,
                      seed=cfg.seed)
    atomic_write_text(trainer.run_dir / "eval.json", json.dumps(result, indent=2))
    return eval_summary(result)


@dataclass
class LoadedRun:
    agent: Any
    env: MetaEnv
    config: RunConfig
    iteration: int
    run_dir: Path


def load(run_dir: str | Path, checkpoint: str | Path | None = None) -> LoadedRun:
    """A trained run: its agent (weights from the latest checkpoint), env and config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run dir {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run dir (no config.yaml)")
    config, env = build_run_config(load_yaml(run_dir / "config.yaml"))
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
