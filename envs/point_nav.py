"""2-D point navigation (MAML / ProMP).

A task is a goal ``g ~ U[-0.5, 0.5]^2``. Every episode starts at the origin; an action
``a in R^2`` is clipped to ``[-0.1, 0.1]`` per coordinate and moves the point,
``x' = x + clip(a)``; the reward is ``-||x' - g||``. Episodes are truncated after ``horizon``
(100) steps and never terminate. The observation is the position (float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from metarl.envs._render import canvas, draw_polyline, fill_circle, fill_rect
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task

MAX_ACTION = 0.1


def point_nav_spaces(horizon: int) -> tuple[spaces.Box, spaces.Box]:
    """Observation (every reachable position) and action spaces."""
    reach = horizon * MAX_ACTION
    return (spaces.Box(-reach, reach, shape=(2,), dtype=np.float32),
            spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32))


def move(pos: np.ndarray, action: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(next position, distance to goal)``, for one point ``[2]`` or a batch ``[B, 2]``."""
    nxt = pos + np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
    delta = nxt - goal
    return nxt, np.hypot(delta[..., 0], delta[..., 1])


def _check_horizon(horizon: int, goal_range: float) -> None:
    if horizon < 1 or goal_range <= 0:
        raise ValueError(f"horizon must be >= 1 and goal_range > 0, got {horizon}, {goal_range}")


class PointNavEnv(MetaEnv):
    """A point moving towards a hidden goal in the plane."""

    name = "point-nav"
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, horizon: int = 100, goal_range: float = 0.5,
                 render_mode: str | None = None):
        _check_horizon(horizon, goal_range)
        self._init_kwargs = {"horizon": horizon, "goal_range": goal_range}
        self.max_episode_steps, self.goal_range = horizon, goal_range
        self.render_mode = render_mode
        self.observation_space, self.action_space = point_nav_spaces(horizon)
        self._pos = np.zeros(2)
        self._trail = [self._pos]
        self._t = 0
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        goals = rng.uniform(-self.goal_range, self.goal_range, size=(n, 2))
        return [Task(self.name, {"goal": g}, id=i) for i, g in enumerate(goals)]

    def set_task(self, task: Task) -> None:
        goal = task.array("goal")
        if goal.shape != (2,):
            raise ValueError(f"task goal must have shape (2,), got {goal.shape}")
        self._task, self._goal = task, goal

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos, self._t = np.zeros(2), 0
        self._trail = [self._pos]
        return self._pos.astype(np.float32), {}

    def step(self, action):
        self._pos, dist = move(self._pos, action, self._goal)
        self._t += 1
        self._trail.append(self._pos)
        return (self._pos.astype(np.float32), -float(dist), False,
                self._t >= self.max_episode_steps, {"distance": float(dist)})

    def render(self) -> np.ndarray:
        return render_point_nav(self._goal, np.array(self._trail), self.goal_range)

    def vector(self, num_envs: int) -> VectorMetaEnv:
        return VectorPointNavEnv(num_envs, self.max_episode_steps)


def render_point_nav(goal: np.ndarray, trail: np.ndarray, goal_range: float = 0.5,
                     size: int = 240) -> np.ndarray:
    """Top-down view of ``[-2r, 2r]^2`` (widened to fit the trail): goal square grey, goal
    green, trail blue, agent red."""
    extent = max(2 * goal_range, 1.1 * float(np.abs(trail).max()))
    scale = (size - 1) / (2 * extent)

    def px(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # world (x, y) -> (row, col)
        return (extent - xy[..., 1]) * scale, (xy[..., 0] + extent) * scale

    image = canvas(size, size)
    lo, hi = px(np.array([-goal_range, goal_range])), px(np.array([goal_range, -goal_range]))
    fill_rect(image, int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1, (235, 235, 235))
    fill_rect(image, size // 2, 0, size // 2 + 1, size, (190, 190, 190))
    fill_rect(image, 0, size // 2, size, size // 2 + 1, (190, 190, 190))
    fill_circle(image, *px(goal), 6, (40, 170, 40))
    draw_polyline(image, *px(trail), (40, 80, 220), radius=1)
    fill_circle(image, *px(trail[-1]), 5, (220, 40, 40))
    return image


class VectorPointNavEnv(VectorMetaEnv):
    """``num_envs`` point-navigation tasks stepped in one numpy call."""

    def __init__(self, num_envs: int, horizon: int = 100):
        _check_horizon(horizon, 1.0)
        self.num_envs, self.max_episode_steps = num_envs, horizon
        self.single_observation_space, self.single_action_space = point_nav_spaces(horizon)
        self._goal = np.zeros((num_envs, 2))
        self._pos = np.zeros((num_envs, 2))
        self._t = 0
        self._rng = as_batch_rng(None, num_envs)  # unused: the dynamics are deterministic

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        goals = np.stack([t.array("goal") for t in tasks])
        if goals.shape != (self.num_envs, 2):
            raise ValueError(f"task goals must have shape (2,), got {goals.shape[1:]}")
        self._goal = goals

    def reset(self, seed: int | BatchRNG | None = None):
        if seed is not None:
            self._rng = as_batch_rng(seed, self.num_envs)
        self._pos = np.zeros((self.num_envs, 2))
        self._t = 0
        return self._pos.astype(np.float32), {}

    def step(self, actions: np.ndarray):
        self._pos, dist = move(self._pos, np.reshape(actions, (self.num_envs, 2)), self._goal)
        self._t += 1
        truncated = np.full(self.num_envs, self._t >= self.max_episode_steps)
        return (self._pos.astype(np.float32), -dist, np.zeros(self.num_envs, dtype=bool),
                truncated, {"distance": dist})
