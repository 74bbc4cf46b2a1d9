"""Run a policy on tasks and return the total reward of every trial."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.sampling import LocalSampler
from metarl.types import Task


def run_policy(policy: Policy, env: MetaEnv, tasks: Sequence[Task], episodes: int,
               trials: int = 1, seed: int = 0) -> np.ndarray:
    """Total reward of each trial of ``episodes`` episodes, ``[N tasks, M trials]``
    (one :class:`~metarl.sampling.LocalSampler` run; the same seed gives the same result)."""
    rollouts = LocalSampler(env).sample(policy, tasks, trials=trials, episodes=episodes,
                                        seed=seed)
    return rollouts.episode_returns().sum(axis=-1, dtype=np.float64)
