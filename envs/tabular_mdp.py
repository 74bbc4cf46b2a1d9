"""Random tabular MDPs (RL² Table 2).

A task is an MDP with ``|S|`` states and ``|A|`` actions: reward means ``R[s, a] ~ N(1, 1)``
(rewards are Gaussian with unit variance around them) and transitions
``P[s, a] ~ Dirichlet(1, ..., 1)``. Every episode starts in state 0 and lasts ``horizon``
steps (truncated). The observation is the one-hot current state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from metarl.envs._render import canvas, fill_rect, heat_color
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task


def sample_mdp_tasks(n: int, rng: np.random.Generator, states: int, actions: int,
                     env_name: str = "tabular-mdp") -> list[Task]:
    rewards = rng.normal(1.0, 1.0, size=(n, states, actions))
    transitions = rng.dirichlet(np.ones(states), size=(n, states, actions))
    return [Task(env_name, {"reward_means": r, "transitions": p}, id=i)
            for i, (r, p) in enumerate(zip(rewards, transitions, strict=True))]


class TabularMDPEnv(MetaEnv):
    """One random tabular MDP; episodes of ``horizon`` steps from state 0."""

    name = "tabular-mdp"
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, states: int = 10, actions: int = 5, horizon: int = 10,
                 render_mode: str | None = None):
        if states < 1 or actions < 1 or horizon < 1:
            raise ValueError(f"states, actions and horizon must be >= 1, got "
                             f"{states}, {actions}, {horizon}")
        self._init_kwargs = {"states": states, "actions": actions, "horizon": horizon}
        self.num_states, self.num_actions = states, actions
        self.max_episode_steps = horizon
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(states,), dtype=np.float32)
        self.action_space = spaces.Discrete(actions)
        self._state = 0
        self._t = 0
        self._last_action: int | None = None
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_mdp_tasks(n, rng, self.num_states, self.num_actions, self.name)

    def set_task(self, task: Task) -> None:
        r, p = task.array("reward_means"), task.array("transitions")
        if r.shape != (self.num_states, self.num_actions) or p.shape != r.shape + r.shape[:1]:
            raise ValueError(f"task shapes {r.shape}/{p.shape} do not match "
                             f"{self.num_states} states x {self.num_actions} actions")
        self._task, self._reward_means, self._transitions = task, r, p

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_states, dtype=np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state, self._t, self._last_action = 0, 0, None
        return self._obs(), {"state": 0}

    def step(self, action):
        a = int(action)
        s = self._state
        reward = float(self._reward_means[s, a] + self.np_random.normal())
        self._state = int(self.np_random.choice(self.num_states, p=self._transitions[s, a]))
        self._t += 1
        self._last_action = a
        truncated = self._t >= self.max_episode_steps
        return self._obs(), reward, False, truncated, {"state": self._state}

    def render(self) -> np.ndarray:
        return render_mdp(self._reward_means, self._state, self._last_action)

    def vector(self, num_envs: int) -> VectorMetaEnv:
        return VectorTabularMDPEnv(num_envs, self.num_states, self.num_actions,
                                   self.max_episode_steps)


def render_mdp(reward_means: np.ndarray, state: int, last_action: int | None,
               cell: int = 24) -> np.ndarray:
    """The reward-mean table (rows = states, columns = actions), current state outlined."""
    s, a = reward_means.shape
    image = canvas(s * cell, a * cell)
    lo, hi = reward_means.min(), reward_means.max()
    scaled = (reward_means - lo) / max(hi - lo, 1e-8)
    for i in range(s):
        for j in range(a):
            fill_rect(image, i * cell + 1, j * cell + 1, (i + 1) * cell - 1, (j + 1) * cell - 1,
                      heat_color(scaled[i, j]))
    fill_rect(image, state * cell, 0, state * cell + 3, a * cell, (220, 40, 40))
    if last_action is not None:
        fill_rect(image, 0, last_action * cell, 3, (last_action + 1) * cell, (40, 160, 40))
    return image


class VectorTabularMDPEnv(VectorMetaEnv):
    """``num_envs`` tabular MDPs stepped in one numpy call (inverse-CDF transition sampling)."""

    def __init__(self, num_envs: int, states: int = 10, actions: int = 5, horizon: int = 10):
        self.num_envs, self.num_states, self.num_actions = num_envs, states, actions
        self.max_episode_steps = horizon
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(states,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(actions)
        self._reward_means = np.zeros(num_envs * states * actions)  # flat, see set_tasks
        self._cdf = np.ones((num_envs * states * actions, states))
        self._state = np.zeros(num_envs, dtype=np.int64)
        self._t = 0
        self._rng = as_batch_rng(None, num_envs)
        self._rows = np.arange(num_envs)
        self._row_base = self._rows * (states * actions)
        self._eye = np.eye(states, dtype=np.float32)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        s, a = self.num_states, self.num_actions
        self._reward_means = np.stack([t.array("reward_means") for t in tasks]).reshape(-1)
        cdf = np.cumsum(np.stack([t.array("transitions") for t in tasks]), axis=-1)
        self._cdf = cdf.reshape(-1, s)  # row (env * S + state) * A + action
        self._row_base = self._rows * (s * a)

    def _obs(self) -> np.ndarray:
        return self._eye.take(self._state, axis=0)

    def reset(self, seed: int | BatchRNG | None = None):
        if seed is not None:
            self._rng = as_batch_rng(seed, self.num_envs)
        self._state[:] = 0
        self._t = 0
        return self._obs(), {"state": self._state.copy()}

    def step(self, actions: np.ndarray):
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        s = self._state
        flat = self._row_base + s * self.num_actions + a
        rewards = self._reward_means.take(flat) + self._rng.standard_normal(self.num_envs)
        cdf = self._cdf.take(flat, axis=0)
        u = self._rng.random(self.num_envs) * cdf[:, -1]
        # next state = how many cdf entries are <= u; counted over a [S, B] array (summing
        # along a short contiguous axis is 3x slower)
        below = np.greater_equal(u, cdf.T, order="C")
        self._state = np.minimum(below.sum(axis=0), self.num_states - 1)
        self._t += 1
        truncated = np.full(self.num_envs, self._t >= self.max_episode_steps)
        return (self._obs(), rewards, np.zeros(self.num_envs, dtype=bool), truncated,
                {"state": self._state.copy()})
