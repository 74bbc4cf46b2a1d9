"""Recurrent DQN pieces (double DQN with a dueling head over an LSTM), as in DREAM (Liu et
al., ICML 2021).

* :class:`LinearSchedule`: a value interpolated linearly over steps (the exploration epsilon).
* :func:`epsilon_greedy`: batched epsilon-greedy actions, all randomness from a ``BatchRNG``.
* :class:`DuelingHead` and :class:`RecurrentQNetwork`: per-step features -> MLP -> LSTM ->
  (optionally joined with a per-sequence context) -> dueling Q-values. The LSTM state is one
  tensor ``[B, 2 * hidden_size]`` (``h`` and ``c`` side by side), so a sampler can keep the
  state of finished environments with ``torch.where``.
* :func:`double_dqn_targets`, :func:`masked_td_loss` and :func:`hard_update`: the update over
  padded sequences ``[B, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from metarl.random import BatchRNG

#: width of the hidden layer of the per-step embedding MLP (the reference's 256)
EMBED_HIDDEN = 256


@dataclass(frozen=True)
class LinearSchedule:
    """``schedule(t)``: ``begin`` at ``t = 0``, linear to ``end`` at ``t = steps``, ``end``
    after (and ``begin`` before 0). DREAM's epsilon is ``LinearSchedule(1.0, 0.01, 250_000)``
    over acting steps."""

    begin: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"schedule steps must be >= 0, got {self.steps}")

    def __call__(self, t: float) -> float:
        if t >= self.steps:
            return float(self.end)
        if t <= 0:
            return float(self.begin)
        return float(self.begin + (self.end - self.begin) * (t / self.steps))


def epsilon_greedy(q: Tensor, epsilon: float | Tensor, rng: BatchRNG) -> Tensor:
    """Actions ``[B]`` (long, on ``q``'s device) from Q-values ``q [B, A]``: each environment
    takes a uniform action with probability ``epsilon`` (a float or one per environment
    ``[B]``), else its argmax (ties: the first index).

    Every call draws one uniform and one uniform action from each environment's stream of
    ``rng`` whatever ``epsilon`` is, so the streams advance identically and an environment's
    action depends only on its own stream and Q-values."""
    batch, num_actions = q.shape
    if rng.size != batch:
        raise ValueError(f"BatchRNG over {rng.size} environments for {batch} Q-value rows")
    u = rng.random(batch)
    uniform = rng.integers(num_actions, size=batch)
    eps = (epsilon.detach().cpu().double().numpy() if isinstance(epsilon, Tensor)
           else np.asarray(epsilon, dtype=np.float64))
    explore = torch.from_numpy(np.broadcast_to(u < eps, (batch,)).copy()).to(q.device)
    return torch.where(explore, torch.from_numpy(uniform).to(q.device), q.argmax(-1))


class DuelingHead(nn.Module):
    """Dueling Q-values (Wang et al. 2016): ``Q(h, a) = V(h) + A(h, a) - mean_a' A(h, a')``
    over any leading dimensions of ``h [..., in_features]``.

    The mean is taken per state, as in the paper. (DREAM's reference code subtracts the mean
    over the whole batch tensor, which couples the states of a batch.)"""

    def __init__(self, in_features: int, num_actions: int):
        super().__init__()
        self.value = nn.Linear(in_features, 1)
        self.advantage = nn.Linear(in_features, num_actions)

    def forward(self, h: Tensor) -> Tensor:
        advantage = self.advantage(h)
        return self.value(h) + advantage - advantage.mean(-1, keepdim=True)


class RecurrentQNetwork(nn.Module):
    """DREAM's recurrent Q-network.

    Per-step features ``x`` -> Linear(input_dim, 256) -> ReLU -> Linear(256, embed_dim) ->
    ReLU -> LSTM(embed_dim, hidden_size) -> ``h_t``. With ``context_dim > 0`` a per-sequence
    context ``c [B, C]`` (DREAM's ``z``) is joined at every step: Linear(hidden_size + C,
    head_hidden) -> ReLU -> Linear(head_hidden, embed_dim) -> :class:`DuelingHead`;
    otherwise the dueling head reads ``h_t`` directly.

    The recurrent state is one tensor ``[B, 2 * hidden_size]``, ``h`` then ``c``.
    ``forward(x [B, T, F], context, state) -> (q [B, T, A], state_T)``; ``step`` is one step
    of it, and stepping through a sequence gives ``forward``'s Q-values.
    """

    def __init__(self, input_dim: int, num_actions: int, *, embed_dim: int = 64,
                 hidden_size: int = 64, context_dim: int = 0, head_hidden: int = 256):
        super().__init__()
        self.input_dim, self.num_actions = input_dim, num_actions
        self.hidden_size, self.context_dim = hidden_size, context_dim
        self.embed = nn.Sequential(nn.Linear(input_dim, EMBED_HIDDEN), nn.ReLU(),
                                   nn.Linear(EMBED_HIDDEN, embed_dim), nn.ReLU())
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.joint: nn.Module | None = None
        if context_dim > 0:
            self.joint = nn.Sequential(nn.Linear(hidden_size + context_dim, head_hidden),
                                       nn.ReLU(), nn.Linear(head_hidden, embed_dim))
        self.head = DuelingHead(embed_dim if context_dim > 0 else hidden_size, num_actions)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def initial_state(self, batch: int) -> Tensor:
        """Zeros ``[batch, 2 * hidden_size]`` on the network's device."""
        weight = self.lstm.weight_hh_l0
        return weight.new_zeros(batch, self.state_size)

    def forward(self, x: Tensor, context: Tensor | None = None, state: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        batch, length, _ = x.shape
        if (context is None) != (self.context_dim == 0):
            raise ValueError(f"context is required exactly when context_dim > 0 "
                             f"(context_dim={self.context_dim}, context given: "
                             f"{context is not None})")
        if state is None:
            state = self.initial_state(batch)
        h0, c0 = state.split(self.hidden_size, dim=-1)
        features, (h, c) = self.lstm(self.embed(x), (h0.unsqueeze(0).contiguous(),
                                                     c0.unsqueeze(0).contiguous()))
        if self.joint is not None:
            context = context.unsqueeze(1).expand(batch, length, context.shape[-1])
            features = self.joint(torch.cat([features, context], dim=-1))
        return self.head(features), torch.cat([h[0], c[0]], dim=-1)

    def step(self, x: Tensor, context: Tensor | None, state: Tensor | None
             ) -> tuple[Tensor, Tensor]:
        """One step: ``x [B, F] -> (q [B, A], next_state [B, 2 * hidden_size])``."""
        q, state = self(x.unsqueeze(1), context, state)
        return q[:, 0], state


def double_dqn_targets(rewards: Tensor, done: Tensor, next_q_online: Tensor,
                       next_q_target: Tensor, gamma: float) -> Tensor:
    """Double DQN targets ``[B, T]`` (detached): ``r + gamma * (1 - done) * Q_target(s',
    argmax_a Q_online(s', a))`` from the next states' Q-values ``[B, T, A]`` of the online and
    the target network."""
    with torch.no_grad():
        best = next_q_online.argmax(-1, keepdim=True)
        next_value = next_q_target.gather(-1, best).squeeze(-1)
        return rewards + gamma * (~done.bool()).to(next_value.dtype) * next_value


def masked_td_loss(q: Tensor, actions: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``(Q(s, a) - target)^2`` over the steps where ``mask [B, T]`` holds (0 if
    none); ``q [B, T, A]``, ``actions [B, T]``. Masked steps (padding) neither count nor reach
    the gradient, whatever their values (even NaN or out-of-range actions)."""
    mask = mask.bool()
    actions = torch.where(mask, actions.long(), 0)
    q_taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    error = torch.where(mask, q_taken - targets.detach(), 0.0)
    return error.square().sum() / mask.sum().clamp(min=1)


def hard_update(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s parameters and buffers into ``target`` (DQN's target sync)."""
    target.load_state_dict(source.state_dict())
