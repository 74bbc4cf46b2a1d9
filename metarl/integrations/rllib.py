"""metarl's task distributions in RLlib (the ``rllib`` extra): the adapters registered with
``tune.register_env``, RLlib's PPO with an LSTM (new API stack) as an RL², and an RLlib
module as a metarl policy for :func:`metarl.evaluation.evaluate_policy`::

    names = register_envs()                     # "metarl/bandit", "metarl/cheetah-vel", ...
    config = rl2_ppo_config("bandit", episodes_per_trial=10, env_kwargs={"arms": 5})
    algo = config.build_algo()
    algo.train()
    policy = RLlibPolicy(algo.get_module(), env, mode="trial")

A registered env takes the :class:`~metarl.integrations.TaskEnv` arguments as its
``env_config``: ``mode``, ``episodes_per_trial`` and ``env_kwargs`` (the env's constructor's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl.envs_api import MetaEnv
from metarl.integrations.adapters import TaskEnv
from metarl.integrations.policy import AdapterPolicy, AdapterState

#: registered names are this prefix and metarl's env name
ENV_PREFIX = "metarl/"


def make_task_env(name: str, env_config: dict[str, Any] | None = None) -> TaskEnv:
    """The :class:`TaskEnv` that ``ENV_PREFIX + name`` builds from an RLlib ``env_config``."""
    config = dict(env_config or {})
    unknown = set(config) - {"mode", "episodes_per_trial", "env_kwargs"}
    if unknown:
        raise ValueError(f"unknown env_config keys {sorted(unknown)}; valid: mode, "
                         f"episodes_per_trial, env_kwargs")
    return TaskEnv(name, config.get("mode", "resample"),
                   episodes_per_trial=int(config.get("episodes_per_trial", 2)),
                   env_kwargs=config.get("env_kwargs"))


def register_envs(names: Sequence[str] | None = None) -> list[str]:
    """Register ``ENV_PREFIX + name`` with Ray Tune (and so RLlib) for each of ``names``
    (default: every registered metarl env); returns the registered names."""
    from ray.tune.registry import register_env

    from metarl import envs

    registered = []
    for name in names if names is not None else sorted(envs.REGISTRY):
        envs.REGISTRY.get(name) or envs.make(name)  # an unknown name: one line, valid names
        register_env(ENV_PREFIX + name, lambda config, name=name: make_task_env(name, config))
        registered.append(ENV_PREFIX + name)
    return registered


def rl2_ppo_config(env: str, *, episodes_per_trial: int, env_kwargs: dict[str, Any] | None = None,
                   lstm_size: int = 256, discount: float = 0.99, gae_lambda: float = 0.3,
                   lr: float = 1e-3, train_batch_size: int = 5000, minibatch_size: int = 1250,
                   num_epochs: int = 5, entropy_coef: float = 0.0, seed: int = 0,
                   num_envs: int = 50) -> Any:
    """RLlib PPO on ``ENV_PREFIX + env`` in ``trial`` mode with an LSTM over the whole trial:
    an independent RL². The defaults are our ``rl2/bandit-k5-n10`` preset's settings where
    they map (256 units, γ 0.99, λ 0.3, lr 1e-3, 5000 steps an iteration in 4 minibatches, 5
    epochs), with ``num_envs`` environments stepped together. The new API stack; sampling and
    learning in the driver (no remote env runners or learners)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from metarl.envs import make

    register_envs([env])
    trial_steps = episodes_per_trial * make(env, **(env_kwargs or {})).max_episode_steps
    return (PPOConfig()
            .environment(ENV_PREFIX + env, env_config={
                "mode": "trial", "episodes_per_trial": episodes_per_trial,
                "env_kwargs": dict(env_kwargs or {})})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
            .learners(num_learners=0)
            .training(lr=lr, gamma=discount, lambda_=gae_lambda,
                      train_batch_size_per_learner=train_batch_size,
                      minibatch_size=minibatch_size, num_epochs=num_epochs,
                      entropy_coeff=entropy_coef)
            .rl_module(model_config=DefaultModelConfig(
                use_lstm=True, lstm_cell_size=lstm_size, max_seq_len=trial_steps,
                # RLlib needs a layer before the LSTM; a linear one adds no expressivity
                fcnet_hiddens=[lstm_size], fcnet_activation="linear", vf_share_layers=False))
            .debugging(seed=seed))


class RLlibPolicy(AdapterPolicy):
    """An RLlib (new API stack) RLModule acting as a metarl policy on ``env``'s tasks,
    seeing the observations of :class:`~metarl.integrations.TaskEnv` in ``mode``; a
    recurrent module's state is carried through the trial."""

    def __init__(self, module: Any, env: MetaEnv, mode: str, deterministic: bool = True):
        super().__init__(env, mode)
        self.module, self.deterministic = module, deterministic

    def _restart(self, hidden: Any, starts: np.ndarray) -> Any:
        """``hidden`` with the module's initial state where ``starts`` (all of it at first)."""
        where = torch.as_tensor(starts)

        def leaf(initial: Any, old: torch.Tensor | None) -> torch.Tensor:
            fresh = torch.as_tensor(initial).expand(len(starts), *np.shape(initial))
            if old is None:
                return fresh.clone()
            return torch.where(where.view(-1, *[1] * (old.dim() - 1)), fresh, old)

        return _zip_map(leaf, self.module.get_initial_state(), hidden)

    def _act_on(self, observation: np.ndarray, state: AdapterState) -> np.ndarray:
        from ray.rllib.core.columns import Columns

        if self.module.is_stateful() and state.starts.any():  # the trials that start now
            state.hidden = self._restart(state.hidden, state.starts)
        batch = {Columns.OBS: torch.as_tensor(observation)[:, None]}  # [B, T=1, ...]
        if state.hidden:
            batch[Columns.STATE_IN] = state.hidden
        with torch.no_grad():
            out = self.module.forward_inference(batch)
        if Columns.STATE_OUT in out:
            state.hidden = out[Columns.STATE_OUT]
        inputs = out[Columns.ACTION_DIST_INPUTS][:, 0]
        dist_cls = self.module.get_inference_action_dist_cls()
        dist = dist_cls.from_logits(inputs)
        if self.deterministic:
            dist = dist.to_deterministic()
        return dist.sample().numpy()


def _zip_map(fn: Any, tree: Any, other: Any) -> Any:
    """``fn(leaf, other's leaf or None)`` over a nested dict ``tree``."""
    if isinstance(tree, dict):
        return {key: _zip_map(fn, value, None if other is None else other[key])
                for key, value in tree.items()}
    return fn(tree, other)
