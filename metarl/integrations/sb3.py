"""Stable-Baselines3 models as metarl policies, so that :func:`metarl.evaluation.evaluate_policy`
(and any sampler) runs them on held-out tasks exactly as it runs metarl's own agents.

A model trained on a :class:`~metarl.integrations.TaskEnv` sees that adapter's observations;
:class:`SB3Policy` builds the same ones for a whole batch of environments from the sampler's
steps: the task's parameters (``task-in-obs``), nothing (``resample``), or the previous action,
reward and end-of-episode flag carried through the trial (``trial``), and a recurrent model's
(sb3-contrib ``RecurrentPPO``) hidden state, reset at the start of each trial::

    model = PPO("MlpPolicy", TaskEnv("bandit", mode="trial", episodes_per_trial=10)).learn(...)
    policy = SB3Policy(model, env, mode="trial")
    evaluate_policy(policy, env, LocalSampler(env), split="test", num_tasks=100, episodes=10,
                    trials=1, seed=0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metarl.envs_api import MetaEnv
from metarl.integrations.adapters import MODES, previous_step_features, task_vector
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition


@dataclass
class SB3State:
    """Per environment: the task vector, the previous step's action, reward and end flag,
    and a recurrent model's hidden state with its episode-start flags."""

    task_vectors: np.ndarray
    actions: np.ndarray | None
    rewards: np.ndarray
    ended: np.ndarray
    hidden: Any = None
    starts: np.ndarray | None = None


class SB3Policy:
    """An SB3 model (``predict``) acting as a metarl policy on ``env``'s tasks, seeing the
    observations of :class:`~metarl.integrations.TaskEnv` in ``mode``."""

    device = torch.device("cpu")

    def __init__(self, model: Any, env: MetaEnv, mode: str, deterministic: bool = True):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.model, self.mode, self.deterministic = model, mode, deterministic
        self.action_space = env.action_space
        self._dtype = env.observation_space.dtype

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> SB3State:
        vectors = np.repeat(np.stack([task_vector(t) for t in tasks]), trials, axis=0)
        batch = len(vectors)
        return SB3State(vectors, None, np.zeros(batch), np.zeros(batch, dtype=bool),
                        starts=np.ones(batch, dtype=bool))

    def act(self, obs: torch.Tensor, state: SB3State
            ) -> tuple[torch.Tensor, SB3State, dict[str, torch.Tensor]]:
        parts = [obs.numpy().astype(np.float64).reshape(len(state.rewards), -1)]
        if self.mode == "task-in-obs":
            parts.append(state.task_vectors)
        elif self.mode == "trial":
            parts.append(previous_step_features(self.action_space, state.actions,
                                                state.rewards, state.ended))
        observation = np.concatenate(parts, axis=1).astype(self._dtype)
        actions, hidden = self.model.predict(observation, state=state.hidden,
                                             episode_start=state.starts,
                                             deterministic=self.deterministic)
        state.hidden, state.starts = hidden, np.zeros_like(state.starts)
        return torch.as_tensor(np.asarray(actions)), state, {}

    def observe(self, state: SB3State, step: Transition) -> SB3State:
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

    def end_episode(self, state: SB3State, episode: Rollouts) -> SB3State:
        if self.mode != "trial":  # a new gymnasium episode: a recurrent model starts afresh
            state.starts = np.ones_like(state.starts)
        return state
