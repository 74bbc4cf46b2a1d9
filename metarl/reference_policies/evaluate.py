"""Run a policy on tasks and return the reward of every trial (or of every episode)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.sampling import LocalSampler
from metarl.types import Task


def run_policy_episodes(policy: Policy, env: MetaEnv, tasks: Sequence[Task], episodes: int,
                        trials: int = 1, seed: int = 0) -> np.ndarray:
    """Return of each episode, ``[N tasks, M trials, K episodes]`` (float64; one
    :class:`~metarl.sampling.LocalSampler` run; the same seed gives the same result)."""
    rollouts = LocalSampler(env).sample(policy, tasks, trials=trials, episodes=episodes,
                                        seed=seed)
    return rollouts.episode_returns().astype(np.float64)


def run_policy(policy: Policy, env: MetaEnv, tasks: Sequence[Task], episodes: int,
               trials: int = 1, seed: int = 0) -> np.ndarray:
    """Total reward of each trial of ``episodes`` episodes, ``[N tasks, M trials]``."""
    return run_policy_episodes(policy, env, tasks, episodes, trials, seed).sum(axis=-1)
