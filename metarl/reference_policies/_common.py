"""Helpers shared by the baseline policies.

All randomness comes from the :class:`~metarl.random.BatchRNG` the sampler passes to
``reset`` (one stream per environment), so results are reproducible and independent of how
tasks are sharded. Beta and Dirichlet draws use inverse CDFs of its uniforms.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import betaincinv, gammaincinv

from metarl.envs_api import MetaEnv
from metarl.policy import StatelessPolicy
from metarl.random import BatchRNG


def argmax_random_ties(scores: np.ndarray, rng: BatchRNG) -> np.ndarray:
    """Row-wise argmax of ``scores [B, k]``, breaking ties uniformly at random (``inf`` ok)."""
    ties = scores == scores.max(axis=1, keepdims=True)
    return np.argmax(ties * rng.random(scores.shape), axis=1)


def sample_beta(rng: BatchRNG, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Beta(a, b)`` draws of shape ``a.shape`` (first dimension = batch)."""
    return betaincinv(a, b, rng.random(np.shape(a)))


def sample_dirichlet(rng: BatchRNG, alpha: np.ndarray) -> np.ndarray:
    """``Dirichlet(alpha)`` draws over the last axis (normalised Gamma draws)."""
    gammas = np.maximum(gammaincinv(alpha, rng.random(alpha.shape)), 1e-300)
    return gammas / gammas.sum(axis=-1, keepdims=True)


def one_hot_index(obs: np.ndarray) -> np.ndarray:
    """The state index of one-hot observations ``[B, S]``."""
    return np.asarray(obs).argmax(axis=-1)


class RandomPolicy(StatelessPolicy):
    """Uniformly random discrete actions (the lower reference of RL² Tables 1 and 2)."""

    def __init__(self, num_actions: int):
        self.num_actions = num_actions

    @classmethod
    def from_env(cls, env: MetaEnv, episodes: int) -> RandomPolicy:
        return cls(int(env.action_space.n))

    def act(self, obs: torch.Tensor, state: BatchRNG
            ) -> tuple[torch.Tensor, BatchRNG, dict[str, torch.Tensor]]:
        return torch.as_tensor(state.integers(self.num_actions)), state, {}
