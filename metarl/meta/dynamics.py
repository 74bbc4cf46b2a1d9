"""GrBAL's meta-objective and online adaptation on the functional MAML core (Nagabandi,
Clavera et al., "Learning to Adapt in Dynamic, Real-World Environments through
Meta-Reinforcement Learning", ICLR 2019).

A training window is ``M + K`` consecutive transitions of one episode: θ takes an inner
step on the first ``M`` (the recent past) and is scored on the next ``K`` (the future the
planner will predict)::

    θ'_w = θ − α ∇ L(θ; window_w[:M]);   loss = mean_w L(θ'_w; window_w[M:])

At run time each environment adapts θ on its own last ``M`` transitions
(:func:`adapt_online`) and plans with its adapted parameters
(:meth:`metarl.nn.dynamics.DeltaMLP.predict_per_env`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from metarl.meta.adapt import InnerLoop, Params, adapt_batch, maml_losses
from metarl.nn.dynamics import DeltaMLP


def grbal_loss(model: DeltaMLP, params: Params, windows: Sequence[Tensor], inner: InnerLoop,
               support_steps: int, step_sizes: Params | None = None) -> tuple[Tensor, Tensor]:
    """GrBAL's meta-loss on ``windows = (obs, act, next_obs)``, each ``[..., M + K, ...]``
    (task and window dims are flattened): ``(outer, pre)``, the mean over windows of the
    loss on the last ``K`` transitions after ``inner`` adapted θ on the first
    ``M = support_steps`` (differentiable in θ and ``step_sizes``, second order unless
    ``inner.first_order``), and the mean loss of θ itself on the first ``M`` (for logging).

    Both losses are ``model.loss``: ``inner`` gives the steps, step size, ``first_order``
    and the names to adapt (its own ``loss`` is not used)."""
    length = windows[0].shape[-2]
    if not 0 < support_steps < length:
        raise ValueError(f"support_steps must be in [1, {length - 1}], got {support_steps}")
    flat = [x.reshape(-1, length, x.shape[-1]) for x in windows]
    support = tuple(x[:, :support_steps] for x in flat)
    query = tuple(x[:, support_steps:] for x in flat)
    outer = maml_losses(replace(inner, loss=model.loss), params, support, query,
                        step_sizes=step_sizes, batched=True).mean()
    return outer, model.loss(params, support)


@torch.no_grad()
def adapt_online(model: DeltaMLP, params: Params, inner: InnerLoop,
                 recent: Sequence[Tensor], valid: Tensor | None = None,
                 step_sizes: Params | None = None) -> Params:
    """Parameters adapted per environment for planning: ``inner`` from θ on each
    environment's recent transitions ``recent = (obs [B, M, d], act, next_obs)``.
    Returns every parameter with a leading ``B`` (detached: run time only).

    ``valid [B, M]`` (bool) marks the transitions to use: the inner loss is the mean over
    the valid ones, so an environment with ``n < M`` transitions so far (the start of an
    episode, or a reset inside the buffer) adapts on those ``n``, and one with none keeps
    θ exactly. Invalid entries may hold anything. The loss is ``model.loss`` (``inner``
    gives the rest, as in :func:`grbal_loss`)."""
    data = tuple(recent) if valid is None else (*recent, valid)
    return adapt_batch(replace(inner, loss=model.loss), params, data, step_sizes=step_sizes,
                       batched=True)
