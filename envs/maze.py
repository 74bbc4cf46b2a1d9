"""Random grid mazes with a hidden goal (RL²'s maze) and DREAM's sign variant.

A task is a ``size x size`` grid (odd ``size``, border included; ``1`` = wall) carved by a
seeded randomised depth-first search (recursive backtracker), so every free cell is reachable.
Every episode starts at ``start`` (``(1, 1)``); the goal cell is hidden.

- ``maze``: the goal is a free cell in the far half of the maze (BFS distance from the start
  at least half the largest one).
- ``maze-sign``: the goal is one of the three corners other than the start (``goal_index``);
  a *sign* cell in the far half of the maze shows which one: while the agent stands on it
  the observation's last three entries are the one-hot of ``goal_index`` (zeros elsewhere).

Actions: ``0`` up, ``1`` down, ``2`` left, ``3`` right. Rewards (RL²): ``-0.04`` every step,
``-0.001`` more when the move bumps into a wall (the agent stays put) and ``+1`` more on
reaching the goal, which terminates the episode (so the goal step pays ``0.96``). Episodes are
truncated after ``horizon`` steps (default ``50`` for 7x7, scaled with the number of rooms).
The goal is absorbing: stepping a finished episode stays there with reward ``0``.
Observation (float32): the 3x3 wall bits around the agent (row-major), its position
``(row, col) / (size - 1)`` and, for ``maze-sign``, the sign one-hot.

Observations and moves are precomputed per task as tables over cells, so a step of the
vector env is a few gathers for all environments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from metarl.envs._render import canvas, fill_circle
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task

STEP_REWARD = -0.04
WALL_PENALTY = -0.001
GOAL_REWARD = 1.0
START = (1, 1)
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # up, down, left, right
NUM_SIGN_GOALS = 3
VIEW_SIZE = 9 + 2  # 3x3 wall bits + normalised (row, col)


# ------------------------------------------------------------------------------ generation
def default_horizon(size: int) -> int:
    """50 steps for a 7x7 maze (9 rooms), proportional to the number of rooms."""
    return max(1, round(50 * ((size - 1) // 2) ** 2 / 9))


def generate_maze(size: int, rng: np.random.Generator) -> np.ndarray:
    """A perfect maze (``int8``, ``1`` = wall): rooms at odd cells joined by a random DFS."""
    walls = np.ones((size, size), dtype=np.int8)
    rooms = (size - 1) // 2
    visited = np.zeros((rooms, rooms), dtype=bool)
    visited[0, 0], walls[1, 1] = True, 0
    stack = [(0, 0)]
    while stack:
        i, j = stack[-1]
        options = [(i + di, j + dj) for di, dj in MOVES.tolist()
                   if 0 <= i + di < rooms and 0 <= j + dj < rooms and not visited[i + di, j + dj]]
        if not options:
            stack.pop()
            continue
        ni, nj = options[int(rng.integers(len(options)))]
        visited[ni, nj] = True
        walls[2 * ni + 1, 2 * nj + 1] = 0
        walls[i + ni + 1, j + nj + 1] = 0  # the wall between the two rooms
        stack.append((ni, nj))
    return walls


def bfs_distances(walls: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Steps from ``start`` to every cell (``-1`` for walls and unreachable cells)."""
    dist = np.full(walls.shape, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.tolist():
            nr, nc = r + dr, c + dc
            if (0 <= nr < walls.shape[0] and 0 <= nc < walls.shape[1]
                    and not walls[nr, nc] and dist[nr, nc] < 0):
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def goal_candidates(size: int) -> np.ndarray:
    """The sign variant's goals: the three corners other than the start, ``[3, 2]``."""
    return np.array([[1, size - 2], [size - 2, 1], [size - 2, size - 2]])


def pick_far_cell(dist: np.ndarray, exclude: Sequence[Sequence[int]],
                  rng: np.random.Generator) -> np.ndarray:
    """A random reachable cell, not excluded, at least half the largest distance away."""
    eligible = dist > 0
    for r, c in exclude:
        eligible[r, c] = False
    far = eligible & (dist >= np.ceil(dist[eligible].max() / 2))
    cells = np.argwhere(far)
    return cells[int(rng.integers(len(cells)))]


def sample_maze_params(size: int, rng: np.random.Generator, sign: bool) -> dict[str, Any]:
    """The parameters of one random task (see the module docstring)."""
    walls = generate_maze(size, rng)
    dist = bfs_distances(walls, START)
    params: dict[str, Any] = {"walls": walls, "start": np.array(START)}
    if not sign:
        params["goal"] = pick_far_cell(dist, [START], rng)
        return params
    candidates = goal_candidates(size)
    index = int(rng.integers(len(candidates)))
    params["goal"] = candidates[index]
    params["goal_index"] = index
    params["sign"] = pick_far_cell(dist, [START, *candidates.tolist()], rng)
    return params


# ---------------------------------------------------------------------------------- tasks
def parse_maze_task(task: Task, size: int, sign: bool) -> dict[str, np.ndarray]:
    """Validated task arrays; cells as flat indices ``row * size + col``."""
    walls = task.array("walls", dtype=np.int8)
    if walls.shape != (size, size) or not np.isin(walls, (0, 1)).all():
        raise ValueError(f"task walls must be a {size}x{size} grid of 0/1, got {walls.shape}")
    border = np.ones_like(walls, dtype=bool)
    border[1:-1, 1:-1] = False
    if not walls[border].all():
        raise ValueError("task walls must enclose the maze (the border must be all walls)")
    out = {"walls": walls}
    for key in ("start", "goal", *(("sign",) if sign else ())):
        r, c = task.array(key, dtype=np.int64)
        if not (0 <= r < size and 0 <= c < size) or walls[r, c]:
            raise ValueError(f"task {key} {(int(r), int(c))} is not a free cell of the maze")
        out[key] = np.int64(r * size + c)
    if out["start"] == out["goal"]:
        raise ValueError("task start and goal must differ")
    if sign:
        index = int(task.params["goal_index"])
        if not 0 <= index < NUM_SIGN_GOALS:
            raise ValueError(f"goal_index must be in [0, {NUM_SIGN_GOALS}), got {index}")
        out["goal_index"] = np.int64(index)
    return out


def maze_reward(hit_wall, success):
    """Per-step reward; works on bools and on boolean arrays alike."""
    return STEP_REWARD + WALL_PENALTY * hit_wall + GOAL_REWARD * success


def transition_tables(walls: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(next cell, reward)``, each ``[..., cell, action]`` (flat cells), for ``walls
    [..., H, W]`` and goal cells ``[...]``. Bumps stay put; the goal is absorbing with reward
    0, so stepping a finished episode is harmless."""
    h, w = walls.shape[-2:]
    cells = np.arange(h * w)
    r, c = np.divmod(cells, w)
    target = (np.clip(r[:, None] + MOVES[:, 0], 0, h - 1) * w
              + np.clip(c[:, None] + MOVES[:, 1], 0, w - 1))
    blocked = walls.reshape(*walls.shape[:-2], h * w)[..., target].astype(bool)
    nxt = np.where(blocked, cells[:, None], target)
    goal = np.asarray(goal)[..., None, None]
    at_goal = cells[:, None] == goal
    reward = np.where(at_goal, 0.0, maze_reward(blocked, nxt == goal))
    return np.where(at_goal, cells[:, None], nxt), reward


def observation_table(walls: np.ndarray, sign: np.ndarray | None = None,
                      goal_index: np.ndarray | None = None) -> np.ndarray:
    """``obs[..., cell, :]`` for ``walls [..., H, W]`` (and sign cells / goal indices)."""
    h, w = walls.shape[-2:]
    lead = walls.shape[:-2]
    padded = np.pad(walls, [(0, 0)] * len(lead) + [(1, 1), (1, 1)], constant_values=1)
    view = np.stack([padded[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=-1)
    r, c = np.divmod(np.arange(h * w), w)
    extra = 0 if sign is None else NUM_SIGN_GOALS
    table = np.zeros((*lead, h * w, VIEW_SIZE + extra), dtype=np.float32)
    table[..., :9] = view.reshape(*lead, h * w, 9)
    table[..., 9] = r / (h - 1)
    table[..., 10] = c / (w - 1)
    if sign is not None:
        flat = table.reshape(-1, h * w, VIEW_SIZE + extra)
        flat[np.arange(len(flat)), np.ravel(sign), VIEW_SIZE + np.ravel(goal_index)] = 1.0
    return table


def maze_spaces(sign: bool) -> tuple[spaces.Box, spaces.Discrete]:
    dim = VIEW_SIZE + (NUM_SIGN_GOALS if sign else 0)
    return spaces.Box(0.0, 1.0, shape=(dim,), dtype=np.float32), spaces.Discrete(len(MOVES))


def _check_size(size: int, horizon: int | None) -> int:
    if size < 5 or size % 2 == 0:
        raise ValueError(f"maze size must be odd and >= 5, got {size}")
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return default_horizon(size) if horizon is None else horizon


# ------------------------------------------------------------------------------ envs
class MazeEnv(MetaEnv):
    """One random maze with a hidden goal; ``MazeSignEnv`` adds the goal-revealing sign."""

    name = "maze"
    sign = False
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, size: int = 7, horizon: int | None = None,
                 render_mode: str | None = None):
        self.max_episode_steps = _check_size(size, horizon)
        self._init_kwargs = {"size": size, "horizon": horizon}
        self.size = size
        self.render_mode = render_mode
        self.observation_space, self.action_space = maze_spaces(self.sign)
        self._cell = self._t = 0
        self._visited = np.zeros(size * size, dtype=bool)
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task(self.name, sample_maze_params(self.size, rng, self.sign), id=i)
                for i in range(n)]

    def set_task(self, task: Task) -> None:
        p = parse_maze_task(task, self.size, self.sign)
        self._task, self._walls = task, p["walls"]
        self._start, self._goal, self._sign = int(p["start"]), int(p["goal"]), p.get("sign")
        self._next, self._reward = transition_tables(self._walls, p["goal"])
        self._obs_table = observation_table(self._walls, self._sign, p.get("goal_index"))
        self._cell = self._start

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cell, self._t = self._start, 0
        self._visited[:] = False
        self._visited[self._cell] = True
        return self._obs_table[self._cell].copy(), {}

    def step(self, action):
        cell, a = self._cell, int(action)
        nxt = int(self._next[cell, a])
        self._cell, self._t = nxt, self._t + 1
        self._visited[nxt] = True
        return (self._obs_table[nxt].copy(), float(self._reward[cell, a]), nxt == self._goal,
                self._t >= self.max_episode_steps, {"hit_wall": nxt == cell})

    def render(self) -> np.ndarray:
        return render_maze(self._walls, self._cell, self._goal, self._visited, self._sign)

    def vector(self, num_envs: int) -> VectorMetaEnv:
        return VectorMazeEnv(num_envs, self.size, self.max_episode_steps, self.sign)


class MazeSignEnv(MazeEnv):
    """DREAM's sign maze: the goal is a corner, shown only at the sign cell."""

    name = "maze-sign"
    sign = True


def render_maze(walls: np.ndarray, cell: int, goal: int, visited: np.ndarray,
                sign: int | None = None, px: int = 24) -> np.ndarray:
    """Walls dark, visited cells light blue, goal green, sign yellow, agent red."""
    size = walls.shape[0]
    colors = np.full((size * size, 3), 255, dtype=np.uint8)
    colors[visited] = (200, 220, 255)
    colors[walls.ravel().astype(bool)] = (40, 40, 40)
    if sign is not None:
        colors[goal_candidates(size) @ np.array([size, 1])] = (200, 235, 200)
        colors[sign] = (240, 200, 40)
    colors[goal] = (40, 170, 40)
    image = canvas(size * px, size * px)
    image[:] = np.repeat(np.repeat(colors.reshape(size, size, 3), px, 0), px, 1)
    r, c = divmod(int(cell), size)
    fill_circle(image, (r + 0.5) * px - 0.5, (c + 0.5) * px - 0.5, px * 0.35, (220, 40, 40))
    return image


class VectorMazeEnv(VectorMetaEnv):
    """``num_envs`` mazes stepped in one numpy call.

    The per-task cell tables are stacked and flattened, cells are numbered globally
    (``env * cells + cell``), and a step is three ``take``s: next cell, reward, observation.
    """

    def __init__(self, num_envs: int, size: int = 7, horizon: int | None = None,
                 sign: bool = False):
        self.max_episode_steps = _check_size(size, horizon)
        self.num_envs, self.size, self.sign = num_envs, size, sign
        self.single_observation_space, self.single_action_space = maze_spaces(sign)
        self._rng = as_batch_rng(None, num_envs)  # unused: the dynamics are deterministic
        self._next: np.ndarray | None = None
        self._t = 0

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        parsed = [parse_maze_task(t, self.size, self.sign) for t in tasks]
        stack = {k: np.stack([p[k] for p in parsed]) for k in parsed[0]}
        cells = self.size * self.size
        offset = np.arange(self.num_envs) * cells
        nxt, reward = transition_tables(stack["walls"], stack["goal"])
        self._next = (nxt + offset[:, None, None]).ravel()
        self._reward = reward.ravel()
        obs = observation_table(stack["walls"], stack.get("sign"), stack.get("goal_index"))
        self._obs = obs.reshape(self.num_envs * cells, -1)
        self._start, self._goal = stack["start"] + offset, stack["goal"] + offset
        self._cell = self._start.copy()

    def reset(self, seed: int | BatchRNG | None = None):
        if self._next is None:
            raise RuntimeError("VectorMazeEnv: no tasks set; call set_tasks first")
        if seed is not None:
            self._rng = as_batch_rng(seed, self.num_envs)
        self._cell = self._start.copy()
        self._t = 0
        return self._obs.take(self._cell, axis=0), {}

    def step(self, actions: np.ndarray):
        index = self._cell * len(MOVES) + np.asarray(actions, dtype=np.intp).reshape(-1)
        cell, self._cell = self._cell, self._next.take(index)
        self._t += 1
        truncated = np.full(self.num_envs, self._t >= self.max_episode_steps)
        return (self._obs.take(self._cell, axis=0), self._reward.take(index),
                self._cell == self._goal, truncated, {"hit_wall": self._cell == cell})
