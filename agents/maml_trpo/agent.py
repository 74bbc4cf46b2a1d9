"""MAML-TRPO agent: a Gaussian MLP meta-trained through its inner policy-gradient step.

One iteration (MAML-RL, Finn et al. 2017)::

    tasks ~ p(T)                                   # meta_batch tasks
    trials: episode 0 with θ, inner step per task (AdaptivePolicy.end_episode),
            episode 1 with θ'_i ...                # rollouts_per_task trials per task
    θ'_i(θ) = θ − α ∇θ L_VPG(θ; episode 0 of task i)           (recomputed with its graph)
    L(θ)    = − mean_i E[π_θ'_i(a|s) / π_θ'_i,old(a|s) · A]     on the last episode
    θ ← TRPO step on L with KL(π_θ'_old || π_θ'_i(θ)) ≤ max_kl  (second order throughout)

``inner_estimator="lvc"`` (or ``"dice"``) swaps L_VPG for ProMP's LVC (or DiCE) inner loss,
whose curvature also credits the pre-update policy for the samples it collects (the term
L_VPG's Hessian lacks); the default is MAML-RL's VPG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metarl.config import AT_LEAST_1, NON_NEGATIVE, OPEN_UNIT_INTERVAL, POSITIVE, setting
from metarl.meta import parameters_of
from metarl.meta.rl import (
    AdaptationConfig,
    GradientMetaAgent,
    PolicyData,
    adapt_through,
    gaussian_fisher_vector_product,
    gaussian_kl,
    per_task_outputs,
)
from metarl.nn.trpo import trpo_step


@dataclass
class MAMLTRPOConfig(AdaptationConfig):
    """MAML-RL's hyperparameters (Finn et al. 2017; pytorch-maml-rl's configs): point-nav
    uses meta-batch 20, HalfCheetah 40; 20 rollouts per task; (100, 100) ReLU policy; inner
    lr 0.1; max KL 0.01."""

    first_order: bool = False
    max_kl: float = setting(0.01, POSITIVE)
    cg_iterations: int = setting(10, AT_LEAST_1)
    cg_damping: float = setting(1e-5, NON_NEGATIVE)
    line_search_steps: int = setting(15, AT_LEAST_1)
    backtrack_ratio: float = setting(0.8, OPEN_UNIT_INTERVAL)
    # tasks whose data estimate the Fisher matrix in CG (0: all; at most meta_batch), like
    # rllab's subsampling: each product differentiates through the inner step, the main cost
    # of an update
    fisher_tasks: int = setting(0, NON_NEGATIVE)

    def validate(self) -> None:
        super().validate()
        if self.fisher_tasks > self.meta_batch:
            raise ValueError(f"fisher_tasks must be in [0, meta_batch={self.meta_batch}], "
                             f"got {self.fisher_tasks}")


class MAMLTRPOAgent(GradientMetaAgent):
    """See the module docstring."""

    title = "MAML-TRPO"

    def update(self, data: list[PolicyData]) -> dict[str, float]:
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
