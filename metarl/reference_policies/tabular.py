"""Baselines for random tabular MDPs (RL² Table 2): PSRL and a task-reading oracle.

Both act greedily with respect to a time-dependent action-value table ``q [B, T, S, A]``
of a finite-horizon MDP (``T`` steps per episode), computed by backward value iteration
vectorised over the ``B`` environments. They read the state from the one-hot observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from metarl.envs_api import MetaEnv
from metarl.random import BatchRNG
from metarl.reference_policies._common import one_hot_index, sample_dirichlet
from metarl.types import Rollouts, Task, Transition


def finite_horizon_q(rewards: np.ndarray, transitions: np.ndarray, horizon: int) -> np.ndarray:
    """Optimal ``q[b, t, s, a]`` with ``horizon - t`` steps to go, for reward means
    ``[B, S, A]`` and transition probabilities ``[B, S, A, S']``."""
    q = np.empty((rewards.shape[0], horizon, *rewards.shape[1:]))
    value = np.zeros(rewards.shape[:2])
    for t in range(horizon - 1, -1, -1):
        q[:, t] = rewards + np.einsum("bsan,bn->bsa", transitions, value)
        value = q[:, t].max(axis=-1)
    return q


@dataclass(frozen=True)
class TabularPosterior:
    """Conjugate posterior over an MDP, per environment.

    Reward means ``N(prior_mean, prior_var)`` observed with known noise ``noise_var``
    (Normal-Normal), transitions ``Dirichlet(dirichlet + counts)``.
    """

    visits: np.ndarray  # [B, S, A]
    reward_sums: np.ndarray  # [B, S, A]
    transition_counts: np.ndarray  # [B, S, A, S]
    prior_mean: float = 1.0
    prior_var: float = 1.0
    noise_var: float = 1.0
    dirichlet: float = 1.0

    @classmethod
    def empty(cls, envs: int, states: int, actions: int, **prior: float) -> TabularPosterior:
        shape = (envs, states, actions)
        return cls(np.zeros(shape), np.zeros(shape), np.zeros((*shape, states)), **prior)

    def reward_precision(self) -> np.ndarray:
        return 1.0 / self.prior_var + self.visits / self.noise_var

    def reward_mean(self) -> np.ndarray:
        evidence = self.prior_mean / self.prior_var + self.reward_sums / self.noise_var
        return evidence / self.reward_precision()

    def transition_alpha(self) -> np.ndarray:
        return self.dirichlet + self.transition_counts

    def update(self, step: Transition) -> TabularPosterior:
        """Posterior after ``step`` (environments with ``valid == False`` are ignored)."""
        rows = np.flatnonzero(step.valid)
        s = one_hot_index(step.observations)[rows]
        a = np.asarray(step.actions, dtype=np.int64).reshape(-1)[rows]
        s_next = one_hot_index(step.next_observations)[rows]
        visits, sums = self.visits.copy(), self.reward_sums.copy()
        counts = self.transition_counts.copy()
        visits[rows, s, a] += 1.0
        sums[rows, s, a] += np.asarray(step.rewards, dtype=np.float64)[rows]
        counts[rows, s, a, s_next] += 1.0
        return replace(self, visits=visits, reward_sums=sums, transition_counts=counts)

    def mean_mdp(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior-mean reward means and transition probabilities."""
        alpha = self.transition_alpha()
        return self.reward_mean(), alpha / alpha.sum(axis=-1, keepdims=True)

    def sample(self, rng: BatchRNG) -> tuple[np.ndarray, np.ndarray]:
        """One MDP per environment: ``(reward means [B, S, A], transitions [B, S, A, S])``."""
        mean = self.reward_mean()
        rewards = mean + rng.standard_normal(mean.shape) / np.sqrt(self.reward_precision())
        return rewards, sample_dirichlet(rng, self.transition_alpha())


@dataclass(frozen=True)
class PlannerState:
    """``q [B, T, S, A]`` of the MDP being followed, the step within the episode and, for
    PSRL, the posterior and the random streams."""

    q: np.ndarray
    step: int = 0
    posterior: TabularPosterior | None = None
    rng: BatchRNG | None = None


class _GreedyPlanner:
    """Acts greedily on ``state.q`` at the current step; subclasses decide what ``q`` is."""

    def __init__(self, states: int, actions: int, horizon: int):
        self.states, self.actions, self.horizon = states, actions, horizon

    @classmethod
    def from_env(cls, env: MetaEnv, episodes: int, **kwargs: float) -> _GreedyPlanner:
        """Build for ``env`` (a tabular MDP); ``episodes`` is not needed."""
        return cls(env.num_states, env.num_actions, env.max_episode_steps, **kwargs)

    def act(self, obs: torch.Tensor, state: PlannerState
            ) -> tuple[torch.Tensor, PlannerState, dict[str, torch.Tensor]]:
        s = one_hot_index(obs.cpu().numpy())
        t = min(state.step, self.horizon - 1)
        q = state.q[np.arange(len(s)), t, s]
        return torch.as_tensor(q.argmax(axis=-1)), replace(state, step=state.step + 1), {}

    def observe(self, state: PlannerState, step: Transition) -> PlannerState:
        return state


class PSRLPolicy(_GreedyPlanner):
    """Posterior sampling for RL (Osband, Russo & Van Roy 2013).

    At the start of every episode, sample an MDP from the posterior
    (:class:`TabularPosterior`, prior matching the task distribution: reward means N(1, 1),
    unit reward noise, Dirichlet(1) transitions) and follow its finite-horizon optimal,
    time-dependent policy for the whole episode.
    """

    def __init__(self, states: int, actions: int, horizon: int, prior_mean: float = 1.0,
                 prior_var: float = 1.0, noise_var: float = 1.0, dirichlet: float = 1.0):
        super().__init__(states, actions, horizon)
        self.prior = {"prior_mean": prior_mean, "prior_var": prior_var,
                      "noise_var": noise_var, "dirichlet": dirichlet}

    def draw(self, posterior: TabularPosterior, rng: BatchRNG) -> tuple[np.ndarray, np.ndarray]:
        """The MDP to follow in the next episode."""
        return posterior.sample(rng)

    def plan(self, rewards: np.ndarray, transitions: np.ndarray) -> np.ndarray:
        """``q [B, T, S, A]`` to follow in the MDP ``(rewards, transitions)``."""
        return finite_horizon_q(rewards, transitions, self.horizon)

    def _plan(self, posterior: TabularPosterior, rng: BatchRNG) -> PlannerState:
        q = self.plan(*self.draw(posterior, rng))
        return PlannerState(q=q, step=0, posterior=posterior, rng=rng)

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> PlannerState:
        empty = TabularPosterior.empty(rng.size, self.states, self.actions, **self.prior)
        return self._plan(empty, rng)

    def observe(self, state: PlannerState, step: Transition) -> PlannerState:
        return replace(state, posterior=state.posterior.update(step))

    def end_episode(self, state: PlannerState, episode: Rollouts) -> PlannerState:
        return self._plan(state.posterior, state.rng)


class PosteriorMeanMDPPolicy(PSRLPolicy):
    """Certainty equivalence ("greedy"): like PSRL, but each episode follows the optimal
    policy of the posterior-mean MDP instead of a posterior sample."""

    def draw(self, posterior: TabularPosterior, rng: BatchRNG) -> tuple[np.ndarray, np.ndarray]:
        return posterior.mean_mdp()


class StepwisePosteriorMeanPolicy(PosteriorMeanMDPPolicy):
    """Certainty equivalence replanned after every step, so that a reward is used as soon
    as it is seen (:class:`PosteriorMeanMDPPolicy` keeps its plan for the whole episode).

    ``myopic=True`` ignores the transitions and maximises the posterior-mean immediate
    reward: in each state, the action with the best observed mean, untried actions counting
    as the prior mean.
    """

    def __init__(self, states: int, actions: int, horizon: int, myopic: bool = False,
                 **prior: float):
        super().__init__(states, actions, horizon, **prior)
        self.myopic = myopic

    def plan(self, rewards: np.ndarray, transitions: np.ndarray) -> np.ndarray:
        if self.myopic:  # the same immediate rewards at every step to go (a view)
            return np.broadcast_to(rewards[:, None], (len(rewards), self.horizon,
                                                      *rewards.shape[1:]))
        return super().plan(rewards, transitions)

    def observe(self, state: PlannerState, step: Transition) -> PlannerState:
        replanned = self._plan(state.posterior.update(step), state.rng)
        return replace(replanned, step=state.step)


class OracleMDPPolicy(_GreedyPlanner):
    """ORACLE, not a learner: reads each task's true reward means and transitions in
    ``reset`` and follows the finite-horizon optimal policy. An upper reference for the
    MDP table (no method that does not know the task can beat it in expectation)."""

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> PlannerState:
        rewards = np.stack([t.array("reward_means") for t in tasks]).repeat(trials, axis=0)
        transitions = np.stack([t.array("transitions") for t in tasks]).repeat(trials, axis=0)
        return PlannerState(q=finite_horizon_q(rewards, transitions, self.horizon))

    def end_episode(self, state: PlannerState, episode: Rollouts) -> PlannerState:
        return replace(state, step=0)
