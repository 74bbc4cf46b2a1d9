"""The base of the policies that run another library's model (SB3, RLlib) as a metarl
:class:`~metarl.policy.Policy`: they build, for a whole batch of environments, the
observations :class:`~metarl.integrations.TaskEnv` gives in each mode, from the sampler's
steps: the task's parameters (``task-in-obs``), nothing (``resample``), or the previous action,
reward and end-of-episode flag carried through the trial (``trial``). A recurrent model's
state starts afresh where a gymnasium episode of the adapter would: at a trial's start, and
at every episode's outside ``trial`` mode (``AdapterState.starts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metarl.envs_api import MetaEnv
from metarl.integrations.adapters import MODES, adapter_observations, task_vector
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition


@dataclass
class AdapterState:
    """Per environment: the task vector, the previous step's action, reward and end flag,
    and a recurrent model's state with the flags of where a gymnasium episode starts."""

    task_vectors: np.ndarray
    actions: np.ndarray | None
    rewards: np.ndarray
    ended: np.ndarray
    starts: np.ndarray
    hidden: Any = None


class AdapterPolicy:
    """A model trained on :class:`~metarl.integrations.TaskEnv` in ``mode`` as a metarl
    policy on ``env``'s tasks. Subclasses implement :meth:`_act_on`."""

    device = torch.device("cpu")

    def __init__(self, env: MetaEnv, mode: str):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.mode = mode
        self.action_space = env.action_space
        self._dtype = env.observation_space.dtype

    def _act_on(self, observation: np.ndarray, state: AdapterState) -> np.ndarray:
        """The model's actions for the adapter's observations ``[B, D]``; a recurrent model
        keeps its state in ``state.hidden`` and starts afresh where ``state.starts``."""
        raise NotImplementedError

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> AdapterState:
        vectors = np.repeat(np.stack([task_vector(t) for t in tasks]), trials, axis=0)
        batch = len(vectors)
        return AdapterState(vectors, None, np.zeros(batch), np.zeros(batch, dtype=bool),
                            starts=np.ones(batch, dtype=bool))

    def observations(self, obs: torch.Tensor, state: AdapterState) -> np.ndarray:
        """What the adapter would show each environment now, ``[B, D]``."""
        return adapter_observations(self.mode, self.action_space, obs.numpy(),
                                    state.task_vectors, state.actions, state.rewards,
                                    state.ended, self._dtype)

    def act(self, obs: torch.Tensor, state: AdapterState
            ) -> tuple[torch.Tensor, AdapterState, dict[str, torch.Tensor]]:
        actions = self._act_on(self.observations(obs, state), state)
        state.starts = np.zeros_like(state.starts)
        return torch.as_tensor(np.asarray(actions)), state, {}

    def observe(self, state: AdapterState, step: Transition) -> AdapterState:
        if self.mode == "trial":
            valid = np.asarray(step.valid)
            actions = np.asarray(step.actions)
            if state.actions is None:
                state.actions = np.zeros_like(actions)
            state.actions = np.where(valid.reshape(-1, *[1] * (actions.ndim - 1)), actions,
                                     state.actions)
            state.rewards = np.where(valid, step.rewards, state.rewards)
            state.ended = np.where(valid, step.terminated | step.truncated, state.ended)
        return state

    def end_episode(self, state: AdapterState, episode: Rollouts) -> AdapterState:
        if self.mode != "trial":  # a new gymnasium episode: a recurrent model starts afresh
            state.starts = np.ones_like(state.starts)
        return state
