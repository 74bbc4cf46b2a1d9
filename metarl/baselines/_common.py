"""Helpers shared by the baseline policies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarl.envs_api import MetaEnv
from metarl.policy import State, StatelessPolicy
from metarl.types import Task

Seed = int | np.random.Generator | None


def as_generator(seed: Seed) -> np.random.Generator:
    """A generator from a seed, or ``seed`` itself if it already is one."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def argmax_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``scores [B, k]``, breaking ties uniformly at random (``inf`` ok)."""
    ties = scores == scores.max(axis=1, keepdims=True)
    return np.argmax(ties * rng.random(scores.shape), axis=1)


def num_envs(tasks: Sequence[Task], trials: int) -> int:
    return len(tasks) * trials


def one_hot_index(obs: np.ndarray) -> np.ndarray:
    """The state index of one-hot observations ``[B, S]``."""
    return np.asarray(obs).argmax(axis=-1)


class RandomPolicy(StatelessPolicy):
    """Uniformly random discrete actions (the lower reference of RL² Tables 1 and 2)."""

    def __init__(self, num_actions: int, seed: Seed = None):
        self.num_actions = num_actions
        self.rng = as_generator(seed)

    @classmethod
    def from_env(cls, env: MetaEnv, episodes: int, seed: Seed = None) -> RandomPolicy:
        return cls(int(env.action_space.n), seed=seed)

    def act(self, obs: torch.Tensor, state: State
            ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        actions = self.rng.integers(self.num_actions, size=obs.shape[0])
        return torch.as_tensor(actions), state, {}
