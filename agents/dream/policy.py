"""DREAM's adapting policy: explore, decode, exploit, in the Policy hooks.

One trial is ``exploration_episodes`` (1) exploration episode(s) followed by exploitation
episodes (the env's :attr:`~metarl.envs_api.MetaEnv.exploration_episodes` says which is which)::

    act:          exploration episode: ε-greedy on the exploration Q-network, recurrent over
                  (s_t, a_{t-1}); exploitation: ε-greedy on Q(s_t, z), recurrent over its episode
    observe:      commit the recurrent state and the previous action (valid environments)
    end_episode:  after the exploration episode z = g(τ), the decoder's summary of it; every
                  new episode restarts the recurrent state

While training, half of the environments (alternating with the iteration, as the reference
alternates between its trials) exploit with ``z = f(μ) + noise`` instead, the noisy problem
embedding. Randomness (ε-greedy draws, the noise) comes from the sampler's per-environment
streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metarl.agents.dream.networks import ExploitationNet, episode_tensors
from metarl.nn.dqn import RecurrentQNetwork, epsilon_greedy
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition


def explorer_inputs(obs: Tensor, prev_action: Tensor, num_actions: int) -> Tensor:
    """The exploration Q-network's input ``[..., d + A + 1]``: the observation and the
    one-hot previous action (index ``A`` = none, at an episode's first step)."""
    return torch.cat([obs.float(), F.one_hot(prev_action, num_actions + 1).float()], -1)


@dataclass
class _Trial:
    problems: Tensor  # long [B]
    use_ids: Tensor  # bool [B]: exploit on f(μ) + noise (training only)
    rng: BatchRNG
    episode: int
    recurrent: Tensor  # [B, 2H] of the network acting in this episode
    prev_action: Tensor  # long [B]
    z: Tensor | None = None  # [B, D], from the end of the exploration episodes
    pending: Tensor | None = None  # computed by act, committed by observe


class DreamPolicy:
    """DREAM's policy over a trial (module docstring). ``id_parity=None`` exploits on the
    decoder's z everywhere (evaluation); an int ``p`` makes environment ``b`` exploit on
    ``f(μ) + id_noise * N(0, I)`` when ``(b + p)`` is odd (training)."""

    def __init__(self, explorer: RecurrentQNetwork, exploiter: ExploitationNet, num_actions: int,
                 *, exploration_episodes: int = 1, explore_epsilon: float = 0.0,
                 exploit_epsilon: float = 0.0, id_parity: int | None = None,
                 id_noise: float = 0.1):
        self.explorer, self.exploiter, self.num_actions = explorer, exploiter, num_actions
        self.exploration_episodes = exploration_episodes
        self.explore_epsilon, self.exploit_epsilon = explore_epsilon, exploit_epsilon
        self.id_parity, self.id_noise = id_parity, id_noise
        self.device = next(explorer.parameters()).device

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> _Trial:
        problems = torch.tensor([int(task.params["problem"]) for task in tasks for _ in
                                 range(trials)], device=self.device)
        b = len(problems)
        use_ids = torch.zeros(b, dtype=torch.bool, device=self.device)
        if self.id_parity is not None:
            use_ids = (torch.arange(b, device=self.device) + self.id_parity) % 2 == 1
        return _Trial(problems, use_ids, rng, 0, self._net().initial_state(b).to(self.device),
                      self._no_action(b))

    def _exploring(self, state: _Trial) -> bool:
        return state.episode < self.exploration_episodes

    def _net(self, state: _Trial | None = None) -> RecurrentQNetwork:
        return self.explorer if state is None or self._exploring(state) else self.exploiter.q

    def _no_action(self, batch: int) -> Tensor:
        return torch.full((batch,), self.num_actions, dtype=torch.long, device=self.device)

    def act(self, obs: Tensor, state: _Trial) -> tuple[Tensor, _Trial, dict[str, Tensor]]:
        obs = obs.to(self.device).reshape(obs.shape[0], -1).float()
        if self._exploring(state):
            x = explorer_inputs(obs, state.prev_action, self.num_actions)
            q, state.pending = self.explorer.step(x, None, state.recurrent)
            epsilon = self.explore_epsilon
        else:
            q, state.pending = self.exploiter.q.step(obs, state.z, state.recurrent)
            epsilon = self.exploit_epsilon
        action = epsilon_greedy(q, epsilon, state.rng)
        return action, state, {}

    def observe(self, state: _Trial, step: Transition) -> _Trial:
        valid = torch.as_tensor(step.valid, device=self.device)
        state.recurrent = torch.where(valid[:, None], state.pending, state.recurrent)
        action = torch.as_tensor(step.actions, device=self.device).long().reshape(-1)
        state.prev_action = torch.where(valid, action, state.prev_action)
        return state

    @torch.no_grad()
    def end_episode(self, state: _Trial, episode: Rollouts) -> _Trial:
        """After the (last) exploration episode z = g(τ) (or the noisy f(μ)); every episode
        then starts from a fresh recurrent state."""
        if state.episode == self.exploration_episodes - 1:
            state.z = self._z(state, episode)
        state.episode += 1
        b = len(state.problems)
        state.recurrent = self._net(state).initial_state(b).to(self.device)
        state.prev_action = self._no_action(b)
        return state

    def _z(self, state: _Trial, episode: Rollouts) -> Tensor:
        b = len(state.problems)
        flat = [getattr(episode, name).reshape(b, episode.shape[-1], *getattr(
            episode, name).shape[4:]) for name in ("observations", "actions",
                                                   "next_observations", "valid")]
        obs, actions, lengths = (x.to(self.device) for x in episode_tensors(*flat))
        z = self.exploiter.decoder.final(obs, actions, lengths)
        if bool(state.use_ids.any()):
            noise = torch.as_tensor(state.rng.child("id-noise").standard_normal(
                (b, z.shape[-1])), dtype=z.dtype, device=self.device)
            noisy = self.exploiter.problem(state.problems) + self.id_noise * noise
            z = torch.where(state.use_ids[:, None], noisy, z)
        return z
