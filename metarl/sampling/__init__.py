"""Samplers: run a policy on a batch of tasks and return dense ``Rollouts``.

``LocalSampler`` runs everything in-process; ``RaySampler`` shards tasks over Ray actors.
Both return identical rollouts for the same seed (randomness is keyed per environment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from metarl.policy import Policy
from metarl.sampling.local import LocalSampler, env_keys
from metarl.types import Rollouts, Task


class Sampler(Protocol):
    def sample(self, policy: Policy, tasks: Sequence[Task], *, trials: int = 1,
               episodes: int = 1, seed: int = 0) -> Rollouts: ...


__all__ = ["LocalSampler", "Sampler", "env_keys"]
