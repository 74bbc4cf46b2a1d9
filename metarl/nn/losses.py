"""Shared losses and return estimators (GAE, PPO's clipped surrogate)."""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
        discount: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over padded sequences ``[R, L]``.

    Each row is one sequence whose real steps (``mask``) form a prefix and whose last real
    step is terminal (no bootstrap beyond it). Returns ``(advantages, returns)`` with zeros
    at padding; ``returns = advantages + values`` are the λ-returns used as value targets.
    """
    mask = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        # the step after a real step is either real (mask 1) or the end of the sequence (0)
        delta = rewards[:, t] + discount * next_value - values[:, t]
        advantage = delta + discount * gae_lambda * next_advantage
        advantages[:, t] = advantage * m
        next_value = values[:, t] * m
        next_advantage = advantages[:, t]
    return advantages, (advantages + values) * mask


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, discount: float
                       ) -> torch.Tensor:
    """Reward-to-go ``sum_k discount^k r_{t+k}`` over padded sequences ``[R, L]``."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + discount * running) * mask[:, t]
        out[:, t] = running
    return out


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor,
                  advantages: torch.Tensor, clip: float, mask: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate ``-E[min(ρA, clip(ρ, 1±ε)A)]`` over masked steps.

    Returns the loss and diagnostics: ``clip_fraction`` and ``approx_kl`` (the
    ``E[(ρ-1) - log ρ]`` estimator of KL(old || new))."""
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * advantages,
                              ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    loss = -masked_mean(surrogate, mask)
    with torch.no_grad():
        info = {
            "clip_fraction": masked_mean(((ratio - 1.0).abs() > clip).float(), mask),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
        }
    return loss, info


class RunningNorm(torch.nn.Module):
    """Running mean and variance of a scalar target (e.g. value-function returns).

    Value networks predict normalised targets; ``denormalize`` maps predictions back. The
    statistics are buffers, so they are saved and restored with the module's state dict.
    """

    def __init__(self, momentum: float = 0.0):
        super().__init__()
        self.momentum = momentum  # 0: exact running statistics over all updates
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        values = x[mask.bool()].double()
        n = values.numel()
        if n == 0:
            return
        batch_mean, batch_var = values.mean(), values.var(unbiased=False)
        if self.momentum > 0 and self.count > 0:
            m = self.momentum
            new_mean = (1 - m) * self.mean + m * batch_mean
            new_var = (1 - m) * (self.var + (self.mean - new_mean) ** 2) + m * (
                batch_var + (batch_mean - new_mean) ** 2)
            self.mean.copy_(new_mean)
            self.var.copy_(new_var)
            self.count += n
            return
        total = self.count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).to(x.dtype)

    @property
    def std(self) -> torch.Tensor:
        return self.var.clamp_min(1e-8).sqrt()
