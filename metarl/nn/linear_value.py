"""The linear value function of rllab / garage / MAML-RL (their "linear feature baseline"),
batched over tasks.

Per time step the features are ``[o, o**2, a, a**2, a**3, 1]`` with ``o`` the observation
clipped to ``[-10, 10]`` and ``a = t / 100`` (``t`` the step index within the episode). Each
task gets its own ridge-regression fit of the discounted returns on its valid steps; all
tasks are solved in one batched ``torch.linalg.solve_ex`` (in float64). As in rllab, the
ridge coefficient starts at ``reg_coeff`` and is multiplied by 10 (at most ``attempts - 1``
times) for the tasks whose solution is not finite.

Shapes: observations ``[B, *E, T, obs_dim]`` (B tasks, any number of episode dims, T steps),
returns and mask ``[B, *E, T]``. Pure functions; inputs are detached (no autograd).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fit_linear_value", "linear_value_features", "linear_value_estimates",
           "num_linear_value_features", "predict_linear_value"]


def num_linear_value_features(obs_dim: int) -> int:
    """Number of features per step for ``obs_dim``-dimensional observations."""
    return 2 * obs_dim + 4


def linear_value_features(obs: Tensor) -> Tensor:
    """Features ``[..., T, 2 * obs_dim + 4]`` of observations ``[..., T, obs_dim]``
    (time runs along dim ``-2``), in float64."""
    if obs.dim() < 2:
        raise ValueError(f"observations must be [..., T, obs_dim], got {tuple(obs.shape)}")
    o = obs.detach().to(torch.float64).clamp(-10.0, 10.0)
    steps = obs.shape[-2]
    al = torch.arange(steps, dtype=torch.float64, device=obs.device) / 100.0
    al = al.unsqueeze(-1).expand(*o.shape[:-1], 1)
    return torch.cat([o, o * o, al, al**2, al**3, torch.ones_like(al)], dim=-1)


def _check_shapes(obs: Tensor, returns: Tensor | None, mask: Tensor | None) -> None:
    if obs.dim() < 3:
        raise ValueError(f"observations must be [B, *E, T, obs_dim], got {tuple(obs.shape)}")
    for name, x in (("returns", returns), ("mask", mask)):
        if x is not None and tuple(x.shape) != tuple(obs.shape[:-1]):
            raise ValueError(f"{name} must have shape {tuple(obs.shape[:-1])} (observations "
                             f"without obs_dim), got {tuple(x.shape)}")


def fit_linear_value(obs: Tensor, returns: Tensor, mask: Tensor | None = None,
                        reg_coeff: float = 1e-5, attempts: int = 5) -> Tensor:
    """Per-task ridge fit of ``returns`` on the features of ``obs``; weights ``[B, F]`` (float64).

    Steps where ``mask`` is False (past an episode's end) are left out of the fit. The
    regulariser of a task grows ``reg_coeff * 10**k`` (``k < attempts``) until its solution is
    finite; raises ``RuntimeError`` if some task never gets a finite one (e.g. NaN returns).
    """
    _check_shapes(obs, returns, mask)
    batch = obs.shape[0]
    feats = linear_value_features(obs).reshape(batch, -1, num_linear_value_features(
        obs.shape[-1]))                                                   # [B, N, F]
    y = returns.detach().to(torch.float64).reshape(batch, -1)             # [B, N]
    if mask is not None:
        m = mask.detach().reshape(batch, -1).bool()
        # where, not a product: padded garbage (even NaN) never enters the fit
        feats = torch.where(m.unsqueeze(-1), feats, torch.zeros_like(feats))
        y = torch.where(m, y, torch.zeros_like(y))
    xtx = feats.transpose(1, 2) @ feats                                   # [B, F, F]
    xty = (feats.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1)           # [B, F]
    eye = torch.eye(xtx.shape[-1], dtype=torch.float64, device=xtx.device)
    reg = torch.full((batch,), float(reg_coeff), dtype=torch.float64, device=xtx.device)
    weights = torch.full_like(xty, float("nan"))
    todo = torch.ones(batch, dtype=torch.bool, device=xtx.device)
    for _ in range(attempts):
        solution, info = torch.linalg.solve_ex(xtx + reg[:, None, None] * eye, xty)
        ok = (info == 0) & torch.isfinite(solution).all(dim=-1)
        weights = torch.where((todo & ok).unsqueeze(-1), solution, weights)
        todo = todo & ~ok
        if not bool(todo.any()):
            return weights
        reg = torch.where(todo, reg * 10.0, reg)
    bad = todo.nonzero().flatten().tolist()
    raise FloatingPointError(f"the linear value function has no finite fit for tasks {bad} "
                             f"(even with reg_coeff={reg_coeff * 10 ** (attempts - 1):g}; "
                             f"non-finite returns?)")


def predict_linear_value(obs: Tensor, weights: Tensor, mask: Tensor | None = None,
                            dtype: torch.dtype | None = None) -> Tensor:
    """Per-task predictions ``[B, *E, T]`` from weights ``[B, F]``; zero where ``mask`` is False.

    ``dtype`` defaults to the observations' floating dtype (float32 for integer inputs)."""
    _check_shapes(obs, None, mask)
    batch = obs.shape[0]
    feats = linear_value_features(obs)
    if weights.shape != (batch, feats.shape[-1]):
        raise ValueError(f"weights must be [B={batch}, F={feats.shape[-1]}], "
                         f"got {tuple(weights.shape)}")
    w = weights.to(torch.float64).reshape(batch, *([1] * (feats.dim() - 2)), feats.shape[-1])
    values = (feats * w).sum(-1)
    if mask is not None:
        values = torch.where(mask.bool(), values, torch.zeros_like(values))
    if dtype is None:
        dtype = obs.dtype if obs.is_floating_point() else torch.get_default_dtype()
    return values.to(dtype)


def linear_value_estimates(obs: Tensor, returns: Tensor, mask: Tensor | None = None,
                           reg_coeff: float = 1e-5) -> Tensor:
    """Fit per task on ``(obs, returns, mask)`` and predict on the same steps (what MAML-RL
    does); values ``[B, *E, T]`` in ``returns``' dtype, zero at masked steps."""
    weights = fit_linear_value(obs, returns, mask, reg_coeff)
    dtype = returns.dtype if returns.is_floating_point() else None
    return predict_linear_value(obs, weights, mask, dtype=dtype)
