"""Stable-Baselines3 models as metarl policies, so that :func:`metarl.evaluation.evaluate_policy`
(and any sampler) runs them on held-out tasks exactly as it runs metarl's own agents.

A model trained on a :class:`~metarl.integrations.TaskEnv` sees that adapter's observations;
:class:`SB3Policy` builds the same ones (:class:`~metarl.integrations.policy.AdapterPolicy`)
and carries a recurrent model's (sb3-contrib ``RecurrentPPO``) hidden state through the
trial::

    model = PPO("MlpPolicy", TaskEnv("bandit", mode="trial", episodes_per_trial=10)).learn(...)
    policy = SB3Policy(model, env, mode="trial")
    evaluate_policy(policy, env, LocalSampler(env), split="test", num_tasks=100, episodes=10,
                    trials=1, seed=0)

The ``sb3-sac``, ``sb3-ppo`` and ``sb3-recurrent-ppo`` agents (``metarl train``) train such
models and evaluate them through this class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.integrations.policy import AdapterPolicy, AdapterState


class SB3Policy(AdapterPolicy):
    """An SB3 model (``predict``) acting as a metarl policy on ``env``'s tasks, seeing the
    observations of :class:`~metarl.integrations.TaskEnv` in ``mode``."""

    def __init__(self, model: Any, env: MetaEnv, mode: str, deterministic: bool = True):
        super().__init__(env, mode)
        self.model, self.deterministic = model, deterministic

    def _act_on(self, observation: np.ndarray, state: AdapterState) -> np.ndarray:
        actions, state.hidden = self.model.predict(observation, state=state.hidden,
                                                   episode_start=state.starts,
                                                   deterministic=self.deterministic)
        return actions
