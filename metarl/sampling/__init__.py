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


#: the ``--sampler`` choices
SAMPLERS = ("local", "ray")


def make_sampler(env, kind: str, workers: int = 2, address: str | None = None) -> Sampler:
    """A ``kind`` sampler (:data:`SAMPLERS`) for ``env``: ``ray`` with ``workers`` actors on
    the Ray cluster at ``address`` (or the running / a new local Ray)."""
    if kind == "local":
        return LocalSampler(env)
    if kind == "ray":
        from metarl.sampling.ray_sampler import RaySampler

        return RaySampler(env, workers=workers, address=address)
    raise ValueError(f"unknown sampler {kind!r}; valid samplers: {', '.join(SAMPLERS)}")


__all__ = ["SAMPLERS", "LocalSampler", "Sampler", "env_keys", "make_sampler"]
