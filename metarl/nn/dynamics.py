"""Learned dynamics models for model-based (meta-)RL: GrBAL's MLP and ReBAL's recurrent model
(Nagabandi, Clavera et al., ICLR 2019).

Both predict the state change ``s' - s`` from normalised inputs, in normalised units
(:class:`TransitionStats`), and return ``s + Δ``. Computation runs in the model's dtype;
inputs of another floating dtype (float64 observations for a float32 model) are normalised
in their own precision and then cast, and predicted observations come back in the dtype of
the ``obs`` passed in (``obs + Δ`` keeps the observation's precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.nn.mlp import MLP, initialize_linears

Params = dict[str, Tensor]
ArrayLike = np.ndarray | Tensor


class TransitionStats(nn.Module):
    """Per-dimension mean and std of observations, actions and state deltas ``s' - s``,
    kept as buffers (saved in the ``state_dict``). Before :meth:`fit` they are 0 and 1.

    A dimension whose std is below ``eps`` (constant in the data) gets std 1: it is centred
    but not scaled, so a constant input or delta dimension cannot blow up by ``1/eps``
    (the reference divides by ``std + 1e-10``)."""

    def __init__(self, obs_dim: int, act_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        for name, dim in (("obs", obs_dim), ("act", act_dim), ("delta", obs_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, obs: ArrayLike, act: ArrayLike, next_obs: ArrayLike) -> None:
        """Set the statistics from all the data given (any leading dims), in float64."""
        obs64, act64, next64 = (_float64(x) for x in (obs, act, next_obs))
        for name, data in (("obs", obs64), ("act", act64), ("delta", next64 - obs64)):
            flat = data.reshape(-1, data.shape[-1])
            if len(flat) == 0:
                raise ValueError("TransitionStats.fit needs at least one transition")
            std = flat.std(0, correction=0)
            getattr(self, f"{name}_mean").copy_(flat.mean(0))
            getattr(self, f"{name}_std").copy_(torch.where(std < self.eps, 1.0, std))

    def normalise_inputs(self, obs: Tensor, act: Tensor) -> Tensor:
        """``[(s - μ_s) / σ_s, (a - μ_a) / σ_a]`` concatenated on the last dim (computed in
        the promoted dtype of the inputs and the buffers)."""
        return torch.cat([_normalise(obs, self.obs_mean, self.obs_std),
                          _normalise(act, self.act_mean, self.act_std)], dim=-1)

    def normalised_delta(self, obs: Tensor, next_obs: Tensor) -> Tensor:
        """``(s' - s - μ_Δ) / σ_Δ`` (the difference is taken in the inputs' precision)."""
        return _normalise(next_obs - obs, self.delta_mean, self.delta_std)

    def delta_from_normalised(self, d: Tensor) -> Tensor:
        """``d σ_Δ + μ_Δ`` in ``d``'s dtype."""
        return d * self.delta_std.to(d.dtype) + self.delta_mean.to(d.dtype)


class DeltaMLP(nn.Module):
    """GrBAL's dynamics model: an MLP from the normalised ``(s, a)`` to the normalised
    ``s' - s``. ``params`` arguments are dicts ``name -> tensor`` as
    :func:`metarl.meta.adapt.parameters_of` gives (evaluated with ``functional_call``);
    ``None`` uses the module's own. ``init`` is as :func:`initialize_linears` (the reference
    uses Xavier weights and zero biases)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (512, 512, 512),
                 activation: str = "relu", init: str = "xavier"):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.stats = TransitionStats(obs_dim, act_dim)
        self.net = MLP(obs_dim + act_dim, hidden, obs_dim, activation)
        initialize_linears(self.net, init)

    def forward(self, x: Tensor) -> Tensor:
        """Normalised inputs ``[..., obs_dim + act_dim]`` -> normalised deltas."""
        return self.net(x)

    def predict_normalised(self, obs: Tensor, act: Tensor, params: Params | None = None
                           ) -> Tensor:
        """The predicted normalised delta ``[..., obs_dim]`` in the model's dtype."""
        dtype = (next(iter(params.values())) if params else self.net.layers[0].weight).dtype
        x = self.stats.normalise_inputs(obs, act).to(dtype)
        return self(x) if params is None else functional_call(self, params, (x,))

    def predict(self, obs: Tensor, act: Tensor, params: Params | None = None) -> Tensor:
        """The predicted next observation ``obs + Δ`` (any leading dims, ``obs``'s dtype)."""
        delta = self.stats.delta_from_normalised(self.predict_normalised(obs, act, params))
        return obs + delta.to(obs.dtype)

    def predict_per_env(self, params: Params, obs: Tensor, act: Tensor) -> Tensor:
        """Next observations ``[B, ...]`` with environment ``i``'s own parameters: every
        leaf of ``params`` has a leading dim ``B`` (e.g. from ``adapt_online``), ``obs``
        and ``act`` too (``[B, C, d]`` for ``C`` candidates each). Vmapped: one batched
        matmul a layer."""
        return vmap(lambda p, o, a: self.predict(o, a, p))(params, obs, act)

    def loss(self, params: Params | None, data: Sequence[Tensor]) -> Tensor:
        """MSE of the normalised delta predictions, the per-task loss ``InnerLoop`` takes.

        ``data`` is ``(obs, act, next_obs)`` or ``(obs, act, next_obs, valid)`` with a
        boolean ``valid`` over the leading dims: then the mean runs over the valid
        transitions only (0 with none, so a gradient step leaves θ unchanged), and invalid
        entries may hold anything (NaN included)."""
        obs, act, next_obs, *valid = data
        if valid:
            mask = valid[0].to(torch.bool)
            obs, act, next_obs = (torch.where(mask[..., None], x, 0.0)
                                  for x in (obs, act, next_obs))
        pred = self.predict_normalised(obs, act, params)
        error = (pred - self.stats.normalised_delta(obs, next_obs).to(pred.dtype)).square()
        if not valid:
            return error.mean()
        error = torch.where(mask, error.mean(-1), 0.0)
        return error.sum() / mask.sum().clamp_min(1)


class RecurrentDelta(nn.Module):
    """ReBAL's dynamics model: a one-layer GRU (or LSTM) reads the normalised ``(s_t, a_t)``
    and a linear head on its output predicts the normalised ``s_{t+1} - s_t``, as the
    reference's RNN model (its hidden state is the adaptation).

    A state is one tensor ``[..., state_size]`` (the LSTM's ``(h, c)`` concatenated), so
    planners index, expand and reset it like any tensor."""

    CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 256, cell: str = "gru"):
        super().__init__()
        if cell not in self.CELLS:
            raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(self.CELLS)}")
        self.obs_dim, self.act_dim, self.hidden_size, self.cell = (obs_dim, act_dim,
                                                                   hidden_size, cell)
        self.stats = TransitionStats(obs_dim, act_dim)
        self.rnn = self.CELLS[cell](obs_dim + act_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, obs_dim)
        self.state_size = hidden_size * (2 if cell == "lstm" else 1)

    def initial_state(self, batch_shape: Sequence[int] | int = ()) -> Tensor:
        """The zero state ``[*batch_shape, state_size]`` (the reference's initial state)."""
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        return self.head.weight.new_zeros(*shape, self.state_size)

    def _forward(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(state_T, normalised delta predictions [..., T, obs_dim])`` for normalised
        inputs ``x [..., T, F]`` from ``state [..., state_size]``."""
        lead, length = x.shape[:-2], x.shape[-2]
        dtype = self.head.weight.dtype
        x = x.to(dtype).reshape(-1, length, x.shape[-1])
        h = state.to(dtype).expand(*lead, self.state_size).reshape(1, -1, self.state_size)
        if self.cell == "lstm":
            h_0, c_0 = h.chunk(2, dim=-1)
            out, (h_n, c_n) = self.rnn(x, (h_0.contiguous(), c_0.contiguous()))
            h = torch.cat([h_n, c_n], dim=-1)
        else:
            out, h = self.rnn(x, h.contiguous())
        pred = self.head(out).reshape(*lead, length, self.obs_dim)
        return h[0].reshape(*lead, self.state_size), pred

    def run(self, state: Tensor, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """Run over ``obs [..., T, d]``, ``act [..., T, a]`` from ``state [..., S]`` (which
        broadcasts against the leading dims, e.g. ``[B, 1, S]`` over ``C`` candidates):
        ``(state after step T, predicted next observations [..., T, d])``."""
        state, pred = self._forward(state, self.stats.normalise_inputs(obs, act))
        return state, obs + self.stats.delta_from_normalised(pred).to(obs.dtype)

    def step(self, state: Tensor, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """One step for ``obs [..., d]``, ``act [..., a]``: ``(next state, next obs)``."""
        state, next_obs = self.run(state, obs.unsqueeze(-2), act.unsqueeze(-2))
        return state, next_obs.squeeze(-2)

    def window_state(self, obs: Tensor, act: Tensor, valid: Tensor) -> Tensor:
        """The state after running from the zero state over the valid steps of windows
        ``obs [B, M, d]``, ``act [B, M, a]`` (``valid`` bool ``[B, M]``; invalid steps leave
        the state as it is): how the training windows condition the state, so the planner
        sees the model as it was trained (the last ``M`` transitions, not the whole episode)."""
        state = self.initial_state((obs.shape[0],))
        for t in range(obs.shape[1]):
            advanced, _ = self.step(state, obs[:, t], act[:, t])
            state = torch.where(valid[:, t, None], advanced, state)
        return state

    def loss(self, obs: Tensor, act: Tensor, next_obs: Tensor, condition_steps: int = 0
             ) -> Tensor:
        """MSE of the normalised delta predictions over windows ``[W, T, ...]`` run from the
        zero state (backpropagation through the window), on steps ``condition_steps..T-1``:
        the earlier steps only condition the state.

        Default 0 scores every step, as the reference code (which trains on whole
        sequences): the planner uses the model from an episode's first step, when the state
        has seen fewer than M transitions. ``condition_steps=M`` is the paper's eq. 3 split
        (the loss on K steps after M)."""
        length = obs.shape[-2]
        if not 0 <= condition_steps < length:
            raise ValueError(f"condition_steps must be in [0, {length}), got {condition_steps}")
        _, pred = self._forward(self.initial_state(obs.shape[:-2]),
                                self.stats.normalise_inputs(obs, act))
        target = self.stats.normalised_delta(obs, next_obs).to(pred.dtype)
        return (pred - target)[..., condition_steps:, :].square().mean()


def _float64(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    dtype = torch.promote_types(x.dtype, mean.dtype)
    return (x.to(dtype) - mean.to(dtype)) / std.to(dtype)
