"""ProMP agent: MAML's structure with a clipped outer objective and the LVC inner estimator.

One iteration (Rothfuss et al. 2019)::

    sample trials as MAML-TRPO does (episode 0 with θ, inner step per task, episode 1 ...)
    repeat ppo_epochs times (no re-sampling):
        θ'_i(θ) = θ − α ∇θ L_LVC(θ; episode 0 of task i)        (second order)
        J(θ) = mean_i E[min(r A, clip(r, 1 ± ε) A)],  r = π_θ'_i(a|s) / π_old(a|s)   (last episode)
        loss = −J(θ) + η · KL(π_old || π_θ) on the pre-update episodes
        Adam step on θ

``inner_estimator="dice"`` replaces LVC by the (unbiased, higher-variance) DiCE objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metarl.config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, between, setting
from metarl.envs_api import MetaEnv
from metarl.meta.rl import (
    AdaptationConfig,
    GradientMetaAgent,
    PolicyData,
    gaussian_kl,
    per_task_outputs,
)


@dataclass
class ProMPConfig(AdaptationConfig):
    """ProMP's settings (its reference run script for MuJoCo): meta-batch 40, 20 rollouts
    per task, (64, 64) tanh policy, inner lr 0.1, Adam 1e-3, 5 ProMP steps, clip 0.3, fixed
    inner KL penalty 5e-4 (adaptive towards 0.01 as an option). The fields redefined here
    only change AdaptationConfig's defaults and keep its declared ranges."""

    meta_batch: int = 40
    hidden_size: int = 64
    activation: str = "tanh"
    inner_estimator: str = "lvc"
    lr: float = setting(1e-3, POSITIVE)
    ppo_epochs: int = setting(5, AT_LEAST_1)
    clip: float = setting(0.3, between(0, 1, low_open=True))
    kl_penalty: float = setting(5e-4, NON_NEGATIVE)
    adaptive_kl_penalty: bool = False
    target_inner_kl: float = setting(0.01, POSITIVE)


class ProMPAgent(GradientMetaAgent):
    """See the module docstring."""

    title = "ProMP"

    def __init__(self, env: MetaEnv, config: ProMPConfig, device: str = "cpu"):
        super().__init__(env, config, device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.kl_penalty = config.kl_penalty

    def update(self, data: list[PolicyData]) -> dict[str, float]:
        """``ppo_epochs`` Adam steps on the clipped meta-objective with the KL penalty."""
        cfg = self.config
        post, pre = data[-1], data[0]
        with torch.no_grad():
            old_post = per_task_outputs(self.net, self.adapted(data), post.observations)
            old_pre = self.net(pre.observations)
        old_log_prob = self.net.head.log_prob(old_post, post.actions)
        count = post.mask.sum().clamp_min(1.0)
        for _ in range(cfg.ppo_epochs):
            outputs = per_task_outputs(self.net, self.adapted(data), post.observations)
            ratio = (self.net.head.log_prob(outputs, post.actions) - old_log_prob).exp()
            clipped = ratio.clamp(1 - cfg.clip, 1 + cfg.clip)
            objective = (torch.minimum(ratio * post.advantages, clipped * post.advantages)
                         * post.mask).sum() / count
            inner_kl = self._masked_mean(gaussian_kl(old_pre,
                                                     self.net(pre.observations)), pre.mask)
            loss = -objective + self.kl_penalty * inner_kl
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if cfg.adaptive_kl_penalty:  # ProMP's rule, towards target_inner_kl
            if inner_kl.item() < cfg.target_inner_kl / 1.5:
                self.kl_penalty /= 2
            elif inner_kl.item() > cfg.target_inner_kl * 1.5:
                self.kl_penalty *= 2
        return {"surrogate": float(objective.detach()), "inner_kl": float(inner_kl.detach()),
                "kl_penalty": self.kl_penalty,
                "clip_fraction": float(self._masked_mean(
                    ((ratio - 1).abs() > cfg.clip).float(), post.mask))}

    @staticmethod
    def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
        return (x * mask).sum() / mask.sum().clamp_min(1.0)

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "kl_penalty": self.kl_penalty}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_penalty = float(state["kl_penalty"])
