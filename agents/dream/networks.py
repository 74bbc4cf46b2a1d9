"""DREAM's networks and losses (Liu et al. 2021; reference code ezliu/dream, ``embed.py``).

- :class:`ProblemEmbedding` f(μ): the problem ID's embedding the exploitation policy is
  trained on, kept small by an information bottleneck (:func:`bottleneck_loss`, Gaussian noise
  on f(μ) when it conditions the policy).
- :class:`TrajectoryDecoder` g(τ_{:t}): an LSTM over the exploration episode's transitions
  ``(s_t, a_t, s_{t+1})``, trained to predict f(μ) after every prefix (:func:`decoder_loss`).
- :class:`ExploitationNet`: the exploitation Q-network (recurrent over the exploitation
  episode) conditioned on z, with the decoder and the problem embedding it trains.
- :func:`information_gain_rewards`: the exploration policy's reward, the per-step decrease of
  ``||f(μ) - g(τ_{:t})||²`` minus a step penalty.

Episodes are padded tensors: observations ``[B, T+1, d]`` (``s_0 .. s_L``, where ``L`` is
the episode's length and ``s_L`` its last next observation), actions ``[B, T]`` and lengths
``[B]`` (:func:`episode_tensors` builds them from the sampler's arrays).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.nn.dqn import RecurrentQNetwork


def episode_tensors(obs: np.ndarray | Tensor, actions: np.ndarray | Tensor,
                    next_obs: np.ndarray | Tensor, valid: np.ndarray | Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """``(observations [B, T+1, d], actions [B, T], lengths [B])`` of episodes given as the
    sampler's per-step arrays ``[B, T, ...]`` (``valid`` marks the steps taken; every episode
    has at least one). Padding is zero."""
    obs, next_obs = (torch.as_tensor(x, dtype=torch.float32) for x in (obs, next_obs))
    valid = torch.as_tensor(valid, dtype=torch.bool)
    lengths = valid.sum(1)
    batch, steps = valid.shape
    seq = torch.zeros(batch, steps + 1, obs.shape[-1])
    seq[:, :steps] = obs * valid[..., None]
    rows = torch.arange(batch)
    seq[rows, lengths] = next_obs[rows, lengths - 1]
    acts = torch.as_tensor(actions).long().reshape(batch, steps) * valid
    return seq, acts, lengths


def prefix_mask(lengths: Tensor, steps: int) -> Tensor:
    """``bool [B, steps]``: ``True`` at ``t < lengths[b]``."""
    return torch.arange(steps, device=lengths.device)[None] < lengths[:, None]


class ProblemEmbedding(nn.Module):
    """f(μ): an embedding table over problem IDs and a linear layer (the reference's
    ``IDEmbedder``: 32-dimensional table, then ``embed_dim``)."""

    def __init__(self, num_problems: int, embed_dim: int = 64, table_dim: int = 32):
        super().__init__()
        self.table = nn.Embedding(num_problems, table_dim)
        self.linear = nn.Linear(table_dim, embed_dim)

    def forward(self, problems: Tensor) -> Tensor:
        return self.linear(self.table(problems))


class TrajectoryDecoder(nn.Module):
    """g(τ_{:t}) for every prefix of an exploration episode (the reference's
    ``TrajectoryEmbedder``): each transition ``(s, a, s')`` is embedded (states by an MLP
    256-``state_dim``, the action by a table), an LSTM of ``hidden_size`` runs over them, and
    ``g_t = W2 relu(W1 h_t)``; ``g_0`` comes from the zero state (nothing explored yet)."""

    def __init__(self, obs_dim: int, num_actions: int, embed_dim: int = 64, *,
                 state_dim: int = 64, action_dim: int = 32, transition_dim: int = 64,
                 hidden_size: int = 128):
        super().__init__()
        self.state = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, state_dim))
        self.action = nn.Embedding(num_actions, action_dim)
        self.transition = nn.Sequential(nn.Linear(2 * state_dim + action_dim, 128), nn.ReLU(),
                                        nn.Linear(128, transition_dim))
        self.lstm = nn.LSTM(transition_dim, hidden_size, batch_first=True)
        self.hidden = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, embed_dim)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``g [B, T+1, embed_dim]`` for ``obs [B, T+1, d]``, ``actions [B, T]``: ``g[:, t]``
        summarises the first ``t`` transitions (entries past an episode's length are
        padding: the LSTM is causal, so the valid ones do not depend on it)."""
        states = self.state(obs)
        x = self.transition(torch.cat([states[:, :-1], states[:, 1:], self.action(actions)], -1))
        h, _ = self.lstm(x)
        h = torch.cat([h.new_zeros(h.shape[0], 1, h.shape[-1]), h], 1)
        return self.output(F.relu(self.hidden(h)))

    def final(self, obs: Tensor, actions: Tensor, lengths: Tensor) -> Tensor:
        """g of each whole episode ``[B, embed_dim]`` (the prefix of length ``lengths``)."""
        g = self(obs, actions)
        return g[torch.arange(len(g)), lengths]


class ExploitationNet(nn.Module):
    """The exploitation side of DREAM: the Q-network π_task(a | s, z), recurrent over its
    episode, the decoder g and the problem embedding f (one module, so the target network is
    a copy of all three, as in the reference)."""

    def __init__(self, obs_dim: int, num_actions: int, num_problems: int, *,
                 embed_dim: int = 64, hidden_size: int = 64, decoder_hidden: int = 128):
        super().__init__()
        self.q = RecurrentQNetwork(obs_dim, num_actions, embed_dim=embed_dim,
                                   hidden_size=hidden_size, context_dim=embed_dim)
        self.decoder = TrajectoryDecoder(obs_dim, num_actions, embed_dim,
                                         hidden_size=decoder_hidden)
        self.problem = ProblemEmbedding(num_problems, embed_dim)


def information_gain_rewards(distances: Tensor, lengths: Tensor, penalty: float) -> Tensor:
    """The exploration reward ``r_t = d_t - d_{t+1} - penalty`` for ``t < L`` (zero after),
    from ``d_t = ||f(μ) - g(τ_{:t})||²`` of shape ``[B, T+1]``. Summed over an episode it
    telescopes to ``d_0 - d_L - penalty * L``."""
    rewards = distances[:, :-1] - distances[:, 1:] - penalty
    return rewards * prefix_mask(lengths, rewards.shape[1])


def squared_distances(g: Tensor, f: Tensor) -> Tensor:
    """``||g_t - f||² [B, T+1]`` for prefixes ``g [B, T+1, D]`` and targets ``f [B, D]``."""
    return (g - f[:, None]).square().sum(-1)


def decoder_loss(g: Tensor, f: Tensor, lengths: Tensor) -> Tensor:
    """The decoder's regression of f(μ) (detached) from every prefix ``t = 0..L`` of the
    exploration episode, mean over the valid prefixes (the reference's
    ``transition_context_loss``)."""
    distances = squared_distances(g, f.detach())
    mask = prefix_mask(lengths + 1, distances.shape[1])
    return (distances * mask).sum() / mask.sum()


def bottleneck_loss(f: Tensor, cutoff: float) -> Tensor:
    """The information bottleneck on f(μ): ``mean(max(||f||², cutoff))``, which pushes the
    norm down only above ``cutoff``; with the Gaussian noise on f(μ) this bounds the
    information z carries about the problem (the reference's ``id_context_loss``, cutoff
    10)."""
    return torch.clamp(f.square().sum(-1), min=cutoff).mean()
