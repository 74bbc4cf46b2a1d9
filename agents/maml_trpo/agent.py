"""MAML-TRPO agent: a Gaussian MLP meta-trained through its inner policy-gradient step.

One iteration (MAML-RL, Finn et al. 2017)::

    tasks ~ p(T)                                   # meta_batch tasks
    trials: episode 0 with θ, inner step per task (AdaptivePolicy.end_episode),
            episode 1 with θ'_i ...                # rollouts_per_task trials per task
    θ'_i(θ) = θ − α ∇θ L_VPG(θ; episode 0 of task i)           (recomputed with its graph)
    L(θ)    = − mean_i E[π_θ'_i(a|s) / π_θ'_i,old(a|s) · A]     on the last episode
    θ ← TRPO step on L with KL(π_θ'_old || π_θ'_i(θ)) ≤ max_kl  (second order throughout)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl.envs_api import MetaEnv
from metarl.meta import InnerLoop, Params, parameters_of
from metarl.meta.rl import (
    AdaptivePolicy,
    PolicyData,
    adapt_through,
    collect,
    gaussian_fisher_vector_product,
    gaussian_kl,
    per_task_outputs,
    vpg_loss,
)
from metarl.nn import GaussianMLP
from metarl.nn.trpo import trpo_step
from metarl.sampling import Sampler


@dataclass
class MAMLTRPOConfig:
    """MAML-RL's hyperparameters (Finn et al. 2017; pytorch-maml-rl's configs): point-nav
    uses meta-batch 20, HalfCheetah 40; 20 rollouts per task; inner lr 0.1; max KL 0.01."""

    meta_batch: int = 20
    rollouts_per_task: int = 20
    hidden_size: int = 100
    num_layers: int = 2
    activation: str = "relu"
    init_std: float = 1.0
    inner_lr: float = 0.1
    inner_steps: int = 1
    first_order: bool = False
    discount: float = 0.99
    gae_lambda: float = 1.0
    max_kl: float = 0.01
    cg_iterations: int = 10
    cg_damping: float = 1e-5
    line_search_steps: int = 15
    backtrack_ratio: float = 0.8
    # tasks whose data estimate the Fisher matrix in CG (0: all), like rllab's subsampling:
    # each product differentiates through the inner step, the main cost of an update
    fisher_tasks: int = 0

    def validate(self) -> None:
        for name in ("meta_batch", "rollouts_per_task", "hidden_size", "num_layers",
                     "inner_steps", "cg_iterations", "line_search_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.fisher_tasks <= self.meta_batch:
            raise ValueError(f"fisher_tasks must be in [0, meta_batch={self.meta_batch}], "
                             f"got {self.fisher_tasks}")
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"unknown activation {self.activation!r}; valid: relu, tanh")
        if not 0 < self.backtrack_ratio < 1:
            raise ValueError(f"backtrack_ratio must be in (0, 1), got {self.backtrack_ratio}")


class MAMLTRPOAgent:
    """See the module docstring."""

    def __init__(self, env: MetaEnv, config: MAMLTRPOConfig, device: str = "cpu"):
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"MAML-TRPO needs a continuous (Box) action space, got "
                             f"{env.action_space}")
        self.env, self.config = env, config
        self.device = torch.device(device)
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        self.net = GaussianMLP(obs_dim, act_dim, (config.hidden_size,) * config.num_layers,
                               activation=config.activation, init_std=config.init_std)
        self.inner = InnerLoop(vpg_loss(self.net), steps=1, lr=config.inner_lr,
                               first_order=config.first_order)

    def policy(self, deterministic: bool = False) -> AdaptivePolicy:
        return AdaptivePolicy(self.net, self.inner, self.config.discount,
                              self.config.gae_lambda, deterministic)

    def train_iteration(self, sampler: Sampler, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        data, metrics = collect(self.env, self.policy(), sampler, rng, cfg.meta_batch,
                                cfg.rollouts_per_task, cfg.inner_steps, cfg.discount,
                                cfg.gae_lambda)
        return {**self.outer_step(data), **metrics}

    def adapted(self, data: list[PolicyData]) -> Params:
        """θ'_i(θ) after ``inner_steps`` steps, differentiable w.r.t. the meta-parameters."""
        return adapt_through(self.inner, parameters_of(self.net), data[:-1])

    def outer_step(self, data: list[PolicyData]) -> dict[str, float]:
        """One TRPO step on the post-update surrogate (see the module docstring)."""
        post = data[-1]
        obs, actions, advantages, mask = (post.observations, post.actions, post.advantages,
                                          post.mask)
        with torch.no_grad():
            old_outputs = per_task_outputs(self.net, self.adapted(data), obs).detach()
        old_log_prob = self.net.head.log_prob(old_outputs, actions)
        count = mask.sum().clamp_min(1.0)

        def surrogate() -> Tensor:
            outputs = per_task_outputs(self.net, self.adapted(data), obs)
            ratio = (self.net.head.log_prob(outputs, actions) - old_log_prob).exp()
            return -(ratio * advantages * mask).sum() / count

        def kl() -> Tensor:
            outputs = per_task_outputs(self.net, self.adapted(data), obs)
            return (gaussian_kl(old_outputs, outputs) * mask).sum() / count

        cfg = self.config
        some = slice(0, cfg.fisher_tasks or None)  # the Fisher from a subset of the tasks
        fisher_data = [episode.tasks(some) for episode in data]
        fvp = gaussian_fisher_vector_product(
            lambda params: per_task_outputs(
                self.net, adapt_through(self.inner, params, fisher_data[:-1]),
                fisher_data[-1].observations),
            parameters_of(self.net), fisher_data[-1].mask, cfg.cg_damping)
        info = trpo_step(list(self.net.parameters()), surrogate, kl, max_kl=cfg.max_kl,
                         cg_iterations=cfg.cg_iterations, damping=cfg.cg_damping,
                         backtrack_ratio=cfg.backtrack_ratio,
                         max_backtracks=cfg.line_search_steps, fvp=fvp)
        return {k: float(v) for k, v in info.items() if isinstance(v, (int, float, bool))}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
