"""Soft actor-critic pieces (Haarnoja et al. 2018) shared by off-policy agents (PEARL).

* :class:`EnsembleMLP` evaluates several MLPs of the same shape as one batched computation
  (``baddbmm`` over stacked weights); :class:`TwinQ` is the clipped double-Q pair built on it.
* :class:`TanhGaussianActor`: a Gaussian over pre-squash actions with a state-dependent
  standard deviation, squashed by ``tanh``; log-probabilities include the change of variables.
* :func:`soft_q_target` is the soft Bellman target, :func:`polyak_update` the target-network
  average, :class:`Temperature` the entropy weight (fixed, or tuned to a target entropy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_BOUNDS = (-20.0, 2.0)


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied as one ``baddbmm``: ``[E, B, in] ->
    [E, B, out]``. Each member is initialised like :class:`torch.nn.Linear`."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features)
                                   .uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``members`` ReLU MLPs of the same shape, evaluated together.

    ``forward(x)`` takes ``x [B, in]`` (the same input for every member; the first layer is
    then one ``[B, in] @ [in, E * hidden]`` product) or ``[E, B, in]`` and returns
    ``[E, B, out]``."""

    def __init__(self, members: int, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b)
                                    for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        first, *rest = self.layers
        if x.dim() == 2:  # shared input: one wide matmul for all members
            e, i, o = first.weight.shape
            wide = x @ first.weight.permute(1, 0, 2).reshape(i, e * o)
            x = wide.reshape(x.shape[0], e, o).transpose(0, 1) + first.bias
        else:
            x = first(x)
        for layer in rest:
            x = layer(torch.relu(x))
        return x


class TwinQ(nn.Module):
    """Two Q-functions ``Q(inputs)`` (inputs: observation, action and any conditioning,
    concatenated) evaluated in one pass: ``forward -> [2, B]``."""

    def __init__(self, in_features: int, hidden: Sequence[int]):
        super().__init__()
        self.net = EnsembleMLP(2, in_features, hidden, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.net(inputs).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mean(x), std(x))``; ``log_std`` clamped to
    :data:`LOG_STD_BOUNDS`. Actions are in ``[-1, 1]`` (scale them to the action space)."""

    def __init__(self, in_features: int, action_dim: int, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip([in_features, *hidden[:-1]], hidden, strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)
        self.action_dim = action_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of the pre-squash Gaussian."""
        features = self.body(x)
        return self.mean(features), self.log_std(features).clamp(*LOG_STD_BOUNDS)

    def sample(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor, dict]:
        """A reparameterised action and its log-probability. ``noise`` (standard normal,
        shape of the action) defaults to a fresh draw from torch's generator; pass zeros
        for the deterministic (mean) action. Also returns ``mean`` and ``log_std`` (for
        PEARL's regularisers)."""
        mean, log_std = self(x)
        if noise is None:
            noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        log_prob = tanh_gaussian_log_prob(pre_tanh, noise, log_std)
        return torch.tanh(pre_tanh), log_prob, {"mean": mean, "log_std": log_std}


def tanh_gaussian_log_prob(pre_tanh: Tensor, noise: Tensor, log_std: Tensor) -> Tensor:
    """``log p(tanh(u))`` for ``u = mean + std * noise``: the Gaussian density of ``u``
    minus ``sum log(1 - tanh(u)^2)``, computed stably as ``2 (log 2 - u - softplus(-2u))``."""
    gaussian = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    squash = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
    return gaussian - squash


def soft_q_target(rewards: Tensor, terminated: Tensor, next_q: Tensor, next_log_prob: Tensor,
                  alpha: Tensor | float, discount: float, reward_scale: float = 1.0) -> Tensor:
    """``scale * r + γ (1 - terminated) (min_j Q'_j(s', a') - α log π(a'|s'))`` with
    ``next_q`` already the minimum over the target critics and ``a' ~ π(s')``."""
    soft_value = next_q - alpha * next_log_prob
    return reward_scale * rewards + discount * (1.0 - terminated.float()) * soft_value


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``θ' ← (1 - τ) θ' + τ θ`` for every parameter (one fused ``_foreach_lerp_``)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class Temperature(nn.Module):
    """The entropy weight ``α``: fixed at ``initial`` or, with ``target_entropy`` given,
    tuned by gradient descent on ``-log α (log π + target_entropy)`` (SAC v2)."""

    def __init__(self, initial: float = 1.0, target_entropy: float | None = None):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)),
                                      requires_grad=target_entropy is not None)
        self.target_entropy = target_entropy

    @property
    def learned(self) -> bool:
        return self.target_entropy is not None

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp().detach()

    def loss(self, log_prob: Tensor) -> Tensor:
        if self.target_entropy is None:
            raise RuntimeError("a fixed temperature has no loss")
        return -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
