"""Adaptation curves on held-out tasks: the return of episode k of a trial, per k."""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Agent
from metarl.sampling import Sampler

#: ``evaluate(seed=S)`` samples with seed ``S + EVAL_SEED_OFFSET`` (tasks come from seed S)
EVAL_SEED_OFFSET = 10_000


def default_episodes(agent: Agent) -> int:
    """Episodes per evaluation trial: the agent's own trial length where it has one."""
    return int(getattr(agent.config, "episodes_per_trial", 0) or 3)


def default_trials(agent: Agent) -> int:
    """Trials per task: gradient-based agents adapt on all trials of a task together, so
    they are evaluated with as many as they train with (MAML-RL's protocol)."""
    return int(getattr(getattr(agent, "config", None), "rollouts_per_task", 0) or 1)


def evaluate(agent: Agent, env: MetaEnv, sampler: Sampler, *, split: str = "test",
             num_tasks: int = 100, episodes: int | None = None, trials: int | None = None,
             seed: int = 0, deterministic: bool = False) -> dict[str, Any]:
    """Run trials of the agent's adapting policy on ``num_tasks`` tasks of ``split``.

    Returns ``returns_per_episode`` (mean over tasks and trials of the return of episode
    ``k``; ``trials`` defaults to the agent's trials per task), ``mean_return`` (mean
    episode return), ``trial_return`` (mean total return of a
    trial) with its standard error over tasks, and sample counts. Few-shot agents (which
    have their own ``evaluate``) report accuracy or MSE instead (no sampler needed)."""
    if hasattr(agent, "evaluate"):  # a few-shot learner: accuracy or MSE over held-out tasks
        return agent.evaluate(split=split, num_tasks=num_tasks, seed=seed)
    episodes = episodes or default_episodes(agent)
    trials = trials or default_trials(agent)
    tasks = env.split_tasks(split, num_tasks, seed=seed)
    rollouts = sampler.sample(agent.policy(deterministic), tasks, trials=trials,
                              episodes=episodes, seed=seed + EVAL_SEED_OFFSET)
    returns = rollouts.episode_returns()  # [N, M, K]
    per_task_trial = returns.sum(-1).mean(1)  # [N]
    return {
        "split": split,
        "num_tasks": num_tasks,
        "trials": trials,
        "episodes": episodes,
        "returns_per_episode": [float(x) for x in returns.mean(axis=(0, 1))],
        "mean_return": float(returns.mean()),
        "trial_return": float(per_task_trial.mean()),
        "trial_return_stderr": float(per_task_trial.std(ddof=1) / np.sqrt(num_tasks))
        if num_tasks > 1 else 0.0,
        "env_steps": rollouts.num_steps,
    }


def eval_summary(result: dict[str, Any]) -> dict[str, float]:
    """The headline figures of an evaluation, prefixed ``eval_`` for progress logs (for RL:
    the trial return, the mean episode return, and the first and last episodes' returns,
    i.e. before and after adaptation)."""
    if "metric" in result:  # few-shot
        metric = result["metric"]
        return {f"eval_{metric}": result[metric], f"eval_{metric}_ci95": result["ci95"]}
    return {"eval_trial_return": result["trial_return"], "eval_mean_return": result["mean_return"],
            "eval_first_episode_return": result["returns_per_episode"][0],
            "eval_last_episode_return": result["returns_per_episode"][-1]}
