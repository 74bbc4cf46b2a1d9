"""Action distributions for policies: categorical for ``Discrete``, diagonal Gaussian for
``Box``. Sampling draws from a :class:`~metarl.random.BatchRNG` so it is shard-invariant."""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from metarl.random import BatchRNG


class CategoricalHead(nn.Module):
    """Logits over ``n`` actions; actions are integer indices."""

    def __init__(self, in_features: int, n: int):
        super().__init__()
        self.n = n
        self.linear = nn.Linear(in_features, n)
        self.action_features = n  # one-hot width when fed back as an input

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(params, dim=-1)
        return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(params, dim=-1)
        return -(log_p.exp() * log_p).sum(-1)

    def sample(self, params: torch.Tensor, rng: BatchRNG, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return params.argmax(-1)
        probs = torch.softmax(params.double(), dim=-1).cpu().numpy()
        return torch.as_tensor(rng.categorical(probs), device=params.device)

    def sample_with_log_prob(self, params: torch.Tensor, rng: BatchRNG, deterministic: bool
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """An action and its log-probability."""
        action = self.sample(params, rng, deterministic)
        return action, self.log_prob(params, action)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as network inputs (one-hot)."""
        return nn.functional.one_hot(actions.long(), self.n).to(torch.float32)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent learned log standard deviation."""

    def __init__(self, in_features: int, dim: int, init_std: float = 1.0):
        super().__init__()
        self.mean = nn.Linear(in_features, dim)
        self.log_std = nn.Parameter(torch.full((dim,), math.log(init_std)))
        self.action_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean(features)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return params.chunk(2, dim=-1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def sample(self, params: torch.Tensor, rng: BatchRNG, deterministic: bool) -> torch.Tensor:
        mean, log_std = self._split(params)
        if deterministic:
            return mean
        noise = torch.as_tensor(rng.standard_normal(tuple(mean.shape)), dtype=mean.dtype,
                                device=mean.device)
        return mean + log_std.exp() * noise

    def sample_with_log_prob(self, params: torch.Tensor, rng: BatchRNG, deterministic: bool
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """An action and its log-probability. The log-probability comes from the drawn
        noise (no second pass over the action): equal to :meth:`log_prob` up to rounding."""
        mean, log_std = self._split(params)
        if deterministic:
            return mean, self.log_prob(params, mean)
        noise = torch.as_tensor(rng.standard_normal(tuple(mean.shape)), dtype=mean.dtype,
                                device=mean.device)
        log_prob = (-0.5 * noise.square().sum(-1) - log_std.sum(-1)
                    - 0.5 * mean.shape[-1] * math.log(2 * math.pi))
        return mean + log_std.exp() * noise, log_prob

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        return actions.to(torch.float32)


def make_head(in_features: int, action_space: spaces.Space) -> CategoricalHead | GaussianHead:
    """The distribution head for a gymnasium action space."""
    if isinstance(action_space, spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n))
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(in_features, int(np.prod(action_space.shape)))
    raise ValueError(f"unsupported action space {action_space}; valid: Discrete, 1-D Box")
