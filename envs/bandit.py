"""k-armed Bernoulli bandits (RL² Table 1).

A task is a vector of arm means ``p ~ U[0, 1]^k``. An episode is one pull: the action picks
an arm and the reward is ``1`` with probability ``p[arm]``. A trial is ``n`` episodes on the
same task, so the return of a trial is the total reward of ``n`` pulls. The observation is
a constant (the bandit has no state); a meta-learner sees its previous action and reward.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from metarl.envs._render import canvas, fill_rect
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task


class BanditEnv(MetaEnv):
    """One k-armed Bernoulli bandit; one pull per episode."""

    name = "bandit"
    max_episode_steps = 1
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, arms: int = 5, render_mode: str | None = None):
        if arms < 2:
            raise ValueError(f"arms must be >= 2, got {arms}")
        self._init_kwargs = {"arms": arms}
        self.arms = arms
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(arms)
        self._means = np.full(arms, 0.5)
        self._last_arm: int | None = None
        self._pulls = np.zeros(arms)
        self._wins = np.zeros(arms)
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        means = rng.uniform(0.0, 1.0, size=(n, self.arms))
        return [Task(self.name, {"means": m}, id=i) for i, m in enumerate(means)]

    def set_task(self, task: Task) -> None:
        means = task.array("means")
        if means.shape != (self.arms,):
            raise ValueError(f"task has {means.shape} arm means, env has {self.arms} arms")
        self._task = task
        self._means = means
        self._pulls[:] = 0
        self._wins[:] = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._last_arm = None
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        arm = int(action)
        reward = float(self.np_random.random() < self._means[arm])
        self._last_arm = arm
        self._pulls[arm] += 1
        self._wins[arm] += reward
        return np.zeros(1, dtype=np.float32), reward, True, False, {"arm": arm}

    def render(self) -> np.ndarray:
        return render_bandit(self._means, self._pulls, self._wins, self._last_arm)

    def vector(self, num_envs: int) -> VectorMetaEnv:
        return VectorBanditEnv(num_envs, self.arms)


def render_bandit(means: np.ndarray, pulls: np.ndarray, wins: np.ndarray,
                  last_arm: int | None, size: int = 240) -> np.ndarray:
    """Bars of true arm means (grey), empirical means (blue) and the last pull (red)."""
    image = canvas(size, size)
    k = len(means)
    width = size // k
    for arm in range(k):
        left, right = arm * width + 3, (arm + 1) * width - 3
        fill_rect(image, int(size * (1 - means[arm])), left, size, right, (200, 200, 200))
        if pulls[arm] > 0:
            rate = wins[arm] / pulls[arm]
            mid = (left + right) // 2
            fill_rect(image, int(size * (1 - rate)), mid - 2, size, mid + 2, (40, 80, 220))
        if arm == last_arm:
            fill_rect(image, 0, left, 8, right, (220, 40, 40))
    return image


class VectorBanditEnv(VectorMetaEnv):
    """``num_envs`` bandits stepped in one numpy call."""

    max_episode_steps = 1

    def __init__(self, num_envs: int, arms: int = 5):
        self.num_envs = num_envs
        self.arms = arms
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(arms)
        self._means = np.full((num_envs, arms), 0.5)
        self._rng = as_batch_rng(None, num_envs)
        self._obs = np.zeros((num_envs, 1), dtype=np.float32)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        self._means = np.stack([t.array("means") for t in tasks])

    def reset(self, seed: int | BatchRNG | None = None):
        if seed is not None:
            self._rng = as_batch_rng(seed, self.num_envs)
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        arms = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        p = self._means[np.arange(self.num_envs), arms]
        rewards = (self._rng.random(self.num_envs) < p).astype(np.float64)
        done = np.ones(self.num_envs, dtype=bool)
        return (self._obs.copy(), rewards, done, np.zeros(self.num_envs, dtype=bool),
                {"arm": arms})
