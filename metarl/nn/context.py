"""Probabilistic context encoders (PEARL, Rakelly et al. 2019).

Each context transition ``c_n = (s, a, r[, s'])`` of a task is mapped to a Gaussian factor
``N(μ_n, σ_n²)``; the posterior over the latent task variable ``z`` is their normalised
product, which does not depend on the order of the transitions::

    σ² = 1 / Σ_n σ_n⁻²,     μ = σ² Σ_n μ_n / σ_n²

Without the information bottleneck ``z`` is the mean of the per-transition means. The
recurrent variant reads the context in order with a GRU and outputs one Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.nn.mlp import MLP

MIN_VARIANCE = 1e-7


def product_of_gaussians(mean: Tensor, variance: Tensor, mask: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """Normalised product of Gaussian factors ``[..., C, L]`` over the context axis ``C``;
    ``mask [..., C]`` (optional) leaves padding factors out. Returns ``(mean, variance)``
    ``[..., L]``; with no factor at all it is the unit prior ``N(0, 1)``."""
    precision = 1.0 / variance.clamp(min=MIN_VARIANCE)
    if mask is not None:
        precision = precision * mask.unsqueeze(-1).to(precision.dtype)
    # the prior's unit precision is only used where there are no factors at all
    total = precision.sum(-2)
    empty = total == 0
    total = torch.where(empty, torch.ones_like(total), total)
    post_var = 1.0 / total
    post_mean = torch.where(empty, torch.zeros_like(total), post_var * (precision * mean).sum(-2))
    return post_mean, post_var


def kl_to_standard_normal(mean: Tensor, variance: Tensor) -> Tensor:
    """``KL(N(mean, diag variance) || N(0, I))`` summed over the last axis."""
    return 0.5 * (variance + mean.square() - 1.0 - variance.log()).sum(-1)


class ContextEncoder(nn.Module):
    """Maps a task's context ``[..., C, D]`` to the posterior ``(mean, variance) [..., L]``.

    ``recurrent=False``: a ReLU MLP per transition, product of Gaussians (permutation
    invariant; ``bottleneck=False`` averages the means and returns zero variance).
    ``recurrent=True``: an MLP then a GRU over the ``C`` transitions in order; the last
    valid output gives one Gaussian."""

    def __init__(self, context_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200, 200),
                 bottleneck: bool = True, recurrent: bool = False):
        super().__init__()
        self.latent_dim, self.bottleneck, self.recurrent = latent_dim, bottleneck, recurrent
        if recurrent:
            self.embed = MLP(context_dim, hidden[:-1] or hidden, activation="relu")
            self.gru = nn.GRU(self.embed.out_features, hidden[-1], batch_first=True)
            self.out = nn.Linear(hidden[-1], 2 * latent_dim)
        else:
            self.net = MLP(context_dim, hidden, 2 * latent_dim, activation="relu")

    def forward(self, context: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.recurrent:
            return self._recurrent(context, mask)
        params = self.net(context)
        mean, raw_var = params.split(self.latent_dim, dim=-1)
        if not self.bottleneck:
            if mask is None:
                return mean.mean(-2), torch.zeros_like(mean[..., 0, :])
            weights = mask.unsqueeze(-1).to(mean.dtype)
            return (mean * weights).sum(-2) / weights.sum(-2).clamp(min=1.0), \
                torch.zeros_like(mean[..., 0, :])
        return product_of_gaussians(mean, F.softplus(raw_var), mask)

    def _recurrent(self, context: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        lead, (c, d) = context.shape[:-2], context.shape[-2:]
        flat = context.reshape(-1, c, d)
        outputs, _ = self.gru(self.embed(flat))
        if mask is None:
            last = outputs[:, -1]
        else:
            lengths = mask.reshape(-1, c).sum(-1).clamp(min=1).long()
            last = outputs[torch.arange(flat.shape[0], device=flat.device), lengths - 1]
        mean, raw_var = self.out(last).split(self.latent_dim, dim=-1)
        variance = F.softplus(raw_var) if self.bottleneck else torch.zeros_like(mean)
        return mean.reshape(*lead, -1), variance.reshape(*lead, -1)


def sample_latent(mean: Tensor, variance: Tensor, noise: Tensor | None = None) -> Tensor:
    """``z = mean + sqrt(variance) * noise`` (reparameterised; ``noise`` defaults to a draw
    from torch's generator)."""
    if noise is None:
        noise = torch.randn_like(mean)
    return mean + variance.sqrt() * noise
