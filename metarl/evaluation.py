"""Evaluation on held-out tasks: what is asked (:class:`EvalRequest`), and the meta-RL trial loop.

Every agent answers ``agent.evaluate(env, sampler, request)`` (:class:`metarl.agent.Agent`);
meta-RL agents answer with :func:`evaluate_policy`, the adaptation curve of their policy:
the return of episode ``k`` of a trial, per ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.sampling import Sampler

#: evaluations sample with seed ``S + EVAL_SEED_OFFSET`` (their tasks come from seed ``S``)
EVAL_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class EvalRequest:
    """What ``metarl eval`` (or the Trainer) asks of an agent's evaluation. ``None`` fields
    take the agent's defaults."""

    split: str = "test"
    num_tasks: int | None = None
    seed: int = 0
    episodes: int | None = None  # episodes per trial (meta-RL agents)
    deterministic: bool = False  # act on the most likely action (meta-RL agents)



def evaluate_policy(policy: Policy, env: MetaEnv, sampler: Sampler, *, split: str,
                    num_tasks: int, episodes: int, trials: int, seed: int) -> dict[str, Any]:
    """Run ``trials`` trials of ``episodes`` episodes of an adapting policy on each of
    ``num_tasks`` tasks of ``split`` (drawn with ``seed``).

    Returns ``returns_per_episode`` (mean over tasks and trials of the return of episode
    ``k``), ``mean_return`` (mean episode return), ``trial_return`` (mean total return of a
    trial) with its standard error over tasks, sample counts, and the ``summary``. When the
    env's first ``env.exploration_episodes`` episodes of a trial are exploration episodes,
    also ``exploitation_return``: the mean over tasks and trials of the summed return of the
    later episodes, with its standard error over tasks (in the ``summary`` too)."""
    tasks = env.split_tasks(split, num_tasks, seed=seed)
    rollouts = sampler.sample(policy, tasks, trials=trials, episodes=episodes,
                              seed=seed + EVAL_SEED_OFFSET)
    returns = rollouts.episode_returns()  # [N, M, K]
    per_task_trial = returns.sum(-1).mean(1)  # [N]
    curve = [float(x) for x in returns.mean(axis=(0, 1))]
    result = {
        "split": split,
        "num_tasks": num_tasks,
        "trials": trials,
        "episodes": episodes,
        "returns_per_episode": curve,
        "mean_return": float(returns.mean()),
        "trial_return": float(per_task_trial.mean()),
        "trial_return_stderr": float(per_task_trial.std(ddof=1) / np.sqrt(num_tasks))
        if num_tasks > 1 else 0.0,
        "env_steps": rollouts.num_steps,
    }
    result["summary"] = {"trial_return": result["trial_return"],
                         "trial_return_stderr": result["trial_return_stderr"],
                         "mean_return": result["mean_return"],
                         "first_episode_return": curve[0], "last_episode_return": curve[-1]}
    explore = env.exploration_episodes
    if explore > 0:
        per_task = returns[:, :, explore:].sum(-1).mean(1)  # [N]
        result["exploitation_return"] = float(per_task.mean())
        result["exploitation_return_stderr"] = (
            float(per_task.std(ddof=1) / np.sqrt(num_tasks)) if num_tasks > 1 else 0.0)
        result["summary"]["exploitation_return"] = result["exploitation_return"]
        result["summary"]["exploitation_return_stderr"] = result["exploitation_return_stderr"]
    return result


def eval_summary(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's headline figures prefixed ``eval_``, for progress logs."""
    return {f"eval_{key}": value for key, value in result["summary"].items()}
