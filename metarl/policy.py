"""The Policy protocol that samplers drive (the Agent protocol is in :mod:`metarl.agent`).

A sampler runs ``N`` tasks x ``M`` trials x ``K`` episodes x ``T`` steps in lockstep over
``B = N * M`` environments (task-major: environment ``b`` runs task ``b // M``)::

    state = policy.reset(tasks, trials=M, rng=batch_rng)     # rng: one stream per env
    for k in range(K):
        obs = envs.reset()
        for t in range(T):
            action, state, extras = policy.act(obs, state)        # one batched call
            next_obs, reward, terminated, truncated = envs.step(action)
            state = policy.observe(state, Transition(...))          # masked by `valid`
            obs = next_obs
        state = policy.end_episode(state, episode_k_rollouts)        # [N, M, 1, T]

Adaptation lives in ``state``: a recurrent policy keeps its hidden state across episodes,
a gradient-based one takes its inner step in ``end_episode``, and so on. ``act`` receives
and returns torch tensors on the policy's device; ``extras`` are per-step outputs the
agent needs later (log-probabilities, values) and end up in ``Rollouts.extras``.

A policy that acts in numpy may also define ``act_numpy(obs, state) -> (action, state,
extras)``, ``act`` on numpy arrays (returning numpy arrays): the same results, without the
torch <-> numpy conversions of every step. :class:`~metarl.sampling.LocalSampler` calls it
for a CPU policy whose class defines it next to ``act``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition

State = Any


@runtime_checkable
class Policy(Protocol):
    """What a sampler drives. See the module docstring for the loop."""

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> State:
        """Start a trial on ``len(tasks) * trials`` environments. Draw all randomness from
        ``rng`` (one stream per environment) so results do not depend on sharding."""

    def act(self, obs: torch.Tensor, state: State
            ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]: ...

    def observe(self, state: State, step: Transition) -> State: ...

    def end_episode(self, state: State, episode: Rollouts) -> State: ...


class StatelessPolicy:
    """Base class for policies whose hooks other than ``act`` do nothing."""

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> State:
        return rng

    def observe(self, state: State, step: Transition) -> State:
        return state

    def end_episode(self, state: State, episode: Rollouts) -> State:
        return state
