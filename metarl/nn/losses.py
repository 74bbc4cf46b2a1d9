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
