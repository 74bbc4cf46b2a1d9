"""DREAM's "distracting bus" and "map" grid worlds (Liu et al., ICML 2021, code ezliu/dream).

A 9x9 grid of positions ``(x, y)``, ``x, y`` in ``0..8``; every episode starts at ``(4, 4)``
and lasts at most ``horizon`` steps (20). Actions (``Discrete(7)``, the reference's order):
``0`` left (x-1), ``1`` up (y+1), ``2`` right (x+1), ``3`` down (y-1), ``4`` noop,
``5`` ride_bus, ``6`` end_episode. Moves are clipped to the grid.

Buses: the four coloured stops next to the start, :data:`BUS_SOURCES` ``(4,5) (5,4) (3,4)
(4,3)``, ride to a permutation of the near-corner stops :data:`BUS_DESTINATIONS` ``(0,1)
(0,7) (8,1) (8,7)`` (``itertools.permutations`` order), and a return bus at each destination
rides back to its source. ``ride_bus`` on a stop teleports to its destination; elsewhere it
does nothing.

- ``dream-bus`` (the reference's ``DistractionGridEnv``): four more, useless (olive) buses at
  ``(5,5) (3,3) (3,5) (5,3)`` ride to a permutation of the edge midpoints ``(0,4) (4,0) (8,4)
  (4,8)`` and back. Problem ``p`` in ``0..575``: coloured permutation ``p % 24``, useless one
  ``p // 24``. Train problems ``range(0, 576, 11)`` (53), test problems the other 523.
- ``dream-map`` (the reference's ``MapGridEnv``, on the plain city grid: no useless buses):
  24 problems, the coloured permutation; standing on the map tile ``(7, 3)`` the observation
  reveals the problem. As in the reference, its train and test problems are the same 24.

Trials (DREAM's protocol): the env counts the episodes since the last ``set_task`` (or a
``reset`` with a seed, which starts a new trial; ``reset()`` without one starts the next
episode of the trial). The first ``exploration_episodes`` (default 1) are **exploration**
episodes: no goal, reward 0 at every step, ``end_episode`` terminates. The later ones are
**exploitation** episodes: at ``reset`` a goal corner is drawn uniformly from :data:`GOALS`
``(0,0) (8,8) (0,8) (8,0)``; every step pays ``-0.1``, except that reaching the goal (after
the move) pays ``+1`` instead and terminates, and ``end_episode`` pays ``-0.1 - 0.1 *
steps_remaining`` (``horizon`` minus the steps taken, this one included) and terminates.
Both kinds are truncated at the horizon. The best exploitation return from the start is
``0.8`` for every goal and problem (step onto the right stop, ride, step to the corner);
walking takes 8 steps, ``0.3``.

Observation (``Box(0, 1)``, float32), concatenated one-hots: x (9), y (9), standing on any
bus stop (2), goal (5: the corners of :data:`GOALS`, then "none" in exploration episodes),
exploring (2), and for ``dream-map`` the map reading (25: 0 off the tile, ``k + 1`` for
problem ``k``); 27 dims for the bus, 52 for the map (slices ``OBS_*``;
:func:`decode_observation` inverts it). ``infos["exploring"]`` flags exploration episodes.

Goals come from a counter-based stream (:class:`~metarl.random.BatchRNG`) keyed by the
reset seed, so the native vector env equals a loop over single envs seeded as
:class:`~metarl.envs_api.SerialVectorEnv` seeds them, episode for episode.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from metarl.envs._render import canvas, fill_circle, fill_rect
from metarl.envs_api import MetaEnv, VectorMetaEnv, split_rng
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task

SIZE = 9
NUM_CELLS = SIZE * SIZE
START = (4, 4)
DEFAULT_HORIZON = 20

LEFT, UP, RIGHT, DOWN, NOOP, RIDE_BUS, END_EPISODE = range(7)
NUM_ACTIONS = 7
ACTION_NAMES = ("left", "up", "right", "down", "noop", "ride_bus", "end_episode")
#: (dx, dy) of actions 0..4 (left, up, right, down, noop)
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1], [0, 0]])

BUS_SOURCES = np.array([[4, 5], [5, 4], [3, 4], [4, 3]])
BUS_COLORS = ((0, 0, 255), (255, 0, 255), (230, 200, 0), (0, 200, 220))
BUS_DESTINATIONS = np.array([[0, 1], [0, 7], [8, 1], [8, 7]])
#: row ``k``: the destination index of each source under permutation ``k``
BUS_PERMUTATIONS = np.array(list(itertools.permutations(range(4))))
NUM_PERMUTATIONS = len(BUS_PERMUTATIONS)  # 24
DISTRACTOR_SOURCES = np.array([[5, 5], [3, 3], [3, 5], [5, 3]])
DISTRACTOR_DESTINATIONS = np.array([[0, 4], [4, 0], [8, 4], [4, 8]])
DISTRACTOR_COLOR = (128, 128, 0)
GOALS = np.array([[0, 0], [8, 8], [0, 8], [8, 0]])
NO_GOAL = len(GOALS)  # the goal one-hot's "none" entry
MAP_TILE = (7, 3)

STEP_REWARD = -0.1
GOAL_REWARD = 1.0
END_PENALTY = 0.1  # per step remaining when ending an exploitation episode early

# observation layout
OBS_X = slice(0, 9)
OBS_Y = slice(9, 18)
OBS_STOP = slice(18, 20)
OBS_GOAL = slice(20, 25)
OBS_EXPLORING = slice(25, 27)
OBS_MAP = slice(27, 52)
BUS_OBS_DIM = 27
MAP_OBS_DIM = 52

BUS_TRAIN_PROBLEMS = np.arange(0, NUM_PERMUTATIONS**2, 11)
BUS_TEST_PROBLEMS = np.setdiff1d(np.arange(NUM_PERMUTATIONS**2), BUS_TRAIN_PROBLEMS)
MAP_PROBLEMS = np.arange(NUM_PERMUTATIONS)

#: tag of the goal streams (a BatchRNG keyed by the reset seed)
GOAL_STREAM = "dream-grid/goal"
_KEY_MASK = (1 << 63) - 1


# ------------------------------------------------------------------------------ layout
def cell_index(x, y):
    """Flat cell ``x * SIZE + y`` (works on arrays)."""
    return np.asarray(x) * SIZE + np.asarray(y)


def cell_position(cell) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of flat cells (works on arrays)."""
    return np.divmod(np.asarray(cell), SIZE)


def bus_routes(problem: int, distractors: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every bus of a problem as ``(sources [n, 2], destinations [n, 2])``, return buses
    included: the coloured buses (permutation ``problem % 24``), then, with
    ``distractors``, the useless ones (permutation ``problem // 24``)."""
    dest = BUS_DESTINATIONS[BUS_PERMUTATIONS[problem % NUM_PERMUTATIONS]]
    sources, targets = [BUS_SOURCES, dest], [dest, BUS_SOURCES]
    if distractors:
        useless = DISTRACTOR_DESTINATIONS[BUS_PERMUTATIONS[problem // NUM_PERMUTATIONS]]
        sources += [DISTRACTOR_SOURCES, useless]
        targets += [useless, DISTRACTOR_SOURCES]
    return np.concatenate(sources), np.concatenate(targets)


def walking_table() -> np.ndarray:
    """``next cell [cell, action]`` without buses (``ride_bus`` and ``end_episode`` stay)."""
    x, y = cell_position(np.arange(NUM_CELLS))
    table = np.repeat(np.arange(NUM_CELLS)[:, None], NUM_ACTIONS, axis=1)
    for a, (dx, dy) in enumerate(MOVES.tolist()):
        table[:, a] = cell_index(np.clip(x + dx, 0, SIZE - 1), np.clip(y + dy, 0, SIZE - 1))
    return table


def next_cell_table(sources: np.ndarray, destinations: np.ndarray) -> np.ndarray:
    """``next cell [cell, action]`` (int64) with buses from ``sources`` to ``destinations``
    (``[n, 2]`` positions each)."""
    table = walking_table()
    table[cell_index(*np.asarray(sources).T), RIDE_BUS] = cell_index(*np.asarray(destinations).T)
    return table


@dataclass(frozen=True, eq=False)
class GridLayout:
    """What distinguishes ``dream-bus`` from ``dream-map``."""

    name: str
    distractors: bool
    has_map: bool
    train_problems: np.ndarray
    test_problems: np.ndarray

    @property
    def num_problems(self) -> int:
        return NUM_PERMUTATIONS * (NUM_PERMUTATIONS if self.distractors else 1)

    @property
    def obs_dim(self) -> int:
        return MAP_OBS_DIM if self.has_map else BUS_OBS_DIM

    @functools.cached_property
    def next_tables(self) -> np.ndarray:
        """``next cell [problem, cell, action]`` of every problem (int64)."""
        return np.stack([next_cell_table(*bus_routes(p, self.distractors))
                         for p in range(self.num_problems)])

    @functools.cached_property
    def stops(self) -> np.ndarray:
        """``[cell]`` bool: a bus stop (of any bus) is there; the same in every problem."""
        sources, _ = bus_routes(0, self.distractors)
        out = np.zeros(NUM_CELLS, dtype=bool)
        out[cell_index(*sources.T)] = True
        return out

    @functools.cached_property
    def cell_features(self) -> np.ndarray:
        """``[cell, 20]`` float32: the x, y and on-stop one-hots of every cell."""
        x, y = cell_position(np.arange(NUM_CELLS))
        table = np.zeros((NUM_CELLS, OBS_STOP.stop), dtype=np.float32)
        rows = np.arange(NUM_CELLS)
        table[rows, OBS_X.start + x] = 1.0
        table[rows, OBS_Y.start + y] = 1.0
        table[rows, OBS_STOP.start + self.stops.astype(int)] = 1.0
        return table

    def check_problem(self, task: Task) -> int:
        if "problem" not in task.params:
            raise ValueError(f"{self.name} task needs params['problem'] (an integer in "
                             f"[0, {self.num_problems}))")
        value = task.params["problem"]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not 0 <= value < self.num_problems:
            raise ValueError(f"{self.name}: problem must be an integer in "
                             f"[0, {self.num_problems}), got {value!r}")
        return int(value)


LAYOUTS = {
    "dream-bus": GridLayout("dream-bus", True, False, BUS_TRAIN_PROBLEMS, BUS_TEST_PROBLEMS),
    "dream-map": GridLayout("dream-map", False, True, MAP_PROBLEMS, MAP_PROBLEMS),
}
MAP_CELL = int(cell_index(*MAP_TILE))


def observations(layout: GridLayout, cells: np.ndarray, goals: np.ndarray, exploring: bool,
                 problems: np.ndarray) -> np.ndarray:
    """Observations ``[B, dim]`` (float32) for cells, goal indices (``NO_GOAL`` while
    exploring) and problems, each ``[B]``."""
    rows = np.arange(len(cells))
    obs = np.zeros((len(cells), layout.obs_dim), dtype=np.float32)
    obs[:, :OBS_STOP.stop] = layout.cell_features.take(cells, axis=0)
    obs[rows, OBS_GOAL.start + goals] = 1.0
    obs[:, OBS_EXPLORING.start + int(exploring)] = 1.0
    if layout.has_map:
        obs[rows, OBS_MAP.start + np.where(cells == MAP_CELL, problems + 1, 0)] = 1.0
    return obs


def decode_observation(obs) -> dict[str, np.ndarray]:
    """The integer fields of observations ``[..., 27 or 52]``: ``x``, ``y``, ``on_stop``
    (0/1), ``goal`` (index into :data:`GOALS`, ``NO_GOAL`` = none), ``exploring`` (0/1) and
    ``map`` (0 off the map tile, else problem + 1; always 0 for ``dream-bus``)."""
    obs = np.asarray(obs)
    out = {key: obs[..., part].argmax(axis=-1)
           for key, part in (("x", OBS_X), ("y", OBS_Y), ("on_stop", OBS_STOP),
                             ("goal", OBS_GOAL), ("exploring", OBS_EXPLORING))}
    out["map"] = (obs[..., OBS_MAP].argmax(axis=-1) if obs.shape[-1] >= MAP_OBS_DIM
                  else np.zeros(obs.shape[:-1], dtype=np.int64))
    return out


def step_outcome(cells: np.ndarray, goal_cells: np.ndarray, actions: np.ndarray,
                 next_cells: np.ndarray, t: int, horizon: int, exploring: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reward, terminated, truncated)`` of a step ``t`` (1-based) from ``cells`` with
    ``actions`` landing on ``next_cells``; ``goal_cells`` is ``-1`` while exploring."""
    ended = actions == END_EPISODE
    reached = (next_cells == goal_cells) & ~ended
    if exploring:
        reward = np.zeros(len(cells))
    else:
        reward = np.where(reached, GOAL_REWARD, STEP_REWARD)
        reward = np.where(ended, STEP_REWARD - END_PENALTY * (horizon - t), reward)
    return reward, ended | reached, np.full(len(cells), t >= horizon)


def _check_settings(horizon: int, exploration_episodes: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if exploration_episodes < 0:
        raise ValueError(f"exploration_episodes must be >= 0, got {exploration_episodes}")


def grid_spaces(layout: GridLayout) -> tuple[spaces.Box, spaces.Discrete]:
    return (spaces.Box(0.0, 1.0, shape=(layout.obs_dim,), dtype=np.float32),
            spaces.Discrete(NUM_ACTIONS))


def goal_stream(keys: Sequence[int] | np.ndarray) -> BatchRNG:
    """The goal streams of environments reset with integer seeds ``keys``."""
    return BatchRNG(0, np.asarray(keys, dtype=np.int64) & _KEY_MASK, GOAL_STREAM)


# ------------------------------------------------------------------------------ envs
class DreamGridEnv(MetaEnv):
    """Base of :class:`DreamBusEnv` and :class:`DreamMapEnv` (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    layout: GridLayout

    def __init__(self, horizon: int = DEFAULT_HORIZON, exploration_episodes: int = 1,
                 render_mode: str | None = None):
        _check_settings(horizon, exploration_episodes)
        self._init_kwargs = {"horizon": horizon, "exploration_episodes": exploration_episodes}
        self.max_episode_steps = horizon
        self.exploration_episodes = exploration_episodes
        self.render_mode = render_mode
        self.observation_space, self.action_space = grid_spaces(self.layout)
        self._goal_rng: BatchRNG | None = None
        self._visited = np.zeros(NUM_CELLS, dtype=bool)
        self.set_task(Task(self.name, {"problem": int(self.layout.train_problems[0])}))

    # the task distribution
    @property
    def num_problems(self) -> int:
        return self.layout.num_problems

    @property
    def train_problems(self) -> np.ndarray:
        return self.layout.train_problems.copy()

    @property
    def test_problems(self) -> np.ndarray:
        return self.layout.test_problems.copy()

    def _draw(self, pool: np.ndarray, n: int, rng: np.random.Generator) -> list[Task]:
        problems = pool[rng.integers(len(pool), size=n)]
        return [Task(self.name, {"problem": int(p)}, id=i) for i, p in enumerate(problems)]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks drawn uniformly from the train problems."""
        return self._draw(self.layout.train_problems, n, rng)

    def split_tasks(self, split: str, n: int, seed: int = 0) -> list[Task]:
        """``train`` draws from the train problems, ``test`` and ``val`` from the held-out
        ones (for ``dream-map`` all 24, as in the reference)."""
        rng = split_rng(split, seed)
        pool = self.layout.train_problems if split == "train" else self.layout.test_problems
        return self._draw(pool, n, rng)

    def set_task(self, task: Task) -> None:
        self._problem = self.layout.check_problem(task)
        self._task = task
        self._next = self.layout.next_tables[self._problem]
        self._episode = -1  # the next reset starts the trial's first episode
        self._cell, self._t, self._goal = int(cell_index(*START)), 0, NO_GOAL

    # episodes
    @property
    def exploring(self) -> bool:
        """Whether the current episode is an exploration episode."""
        return max(self._episode, 0) < self.exploration_episodes

    @property
    def goal(self) -> int:
        """Index of the current goal in :data:`GOALS` (``NO_GOAL`` while exploring)."""
        return self._goal

    def _observation(self) -> np.ndarray:
        return observations(self.layout, np.array([self._cell]), np.array([self._goal]),
                            self.exploring, np.array([self._problem]))[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._goal_rng is None:
            key = seed if seed is not None else int(self.np_random.integers(2**31))
            self._goal_rng = goal_stream([key])
        self._episode = 0 if seed is not None or self._episode < 0 else self._episode + 1
        self._goal = NO_GOAL if self.exploring else int(self._goal_rng.integers(len(GOALS))[0])
        self._cell, self._t = int(cell_index(*START)), 0
        self._visited[:] = False
        self._visited[self._cell] = True
        return self._observation(), {"exploring": self.exploring}

    def step(self, action):
        a = int(action)
        nxt = int(self._next[self._cell, a])
        self._t += 1
        goal_cell = -1 if self.exploring else int(cell_index(*GOALS[self._goal]))
        reward, terminated, truncated = step_outcome(
            np.array([self._cell]), np.array([goal_cell]), np.array([a]), np.array([nxt]),
            self._t, self.max_episode_steps, self.exploring)
        self._cell = nxt
        self._visited[nxt] = True
        return (self._observation(), float(reward[0]), bool(terminated[0]),
                bool(truncated[0]), {"exploring": self.exploring})

    def render(self) -> np.ndarray:
        return render_grid(self.layout, self._problem, self._cell, self._goal, self._visited)

    def vector(self, num_envs: int) -> VectorMetaEnv:
        return VectorDreamGridEnv(num_envs, self.name, self.max_episode_steps,
                                  self.exploration_episodes)


class DreamBusEnv(DreamGridEnv):
    """DREAM's distracting bus grid (the reference's ``DistractionGridEnv``): 576
    problems, 53 for training, 523 held out."""

    name = "dream-bus"
    layout = LAYOUTS["dream-bus"]


class DreamMapEnv(DreamGridEnv):
    """DREAM's map grid (the reference's ``MapGridEnv``): 24 problems, the map tile at
    ``(7, 3)`` shows the problem; train and test problems are the same 24, as in the
    reference."""

    name = "dream-map"
    layout = LAYOUTS["dream-map"]


# ------------------------------------------------------------------------------ render
def render_grid(layout: GridLayout, problem: int, cell: int, goal: int, visited: np.ndarray,
                px: int = 24) -> np.ndarray:
    """y grows upwards. Visited cells light blue, each coloured stop and its destination in
    the same colour, useless buses olive, the goal corner green, the map tile black, the
    agent red."""
    image = canvas(SIZE * px, SIZE * px)

    def box(position, color, inset: float = 0.0) -> None:
        x, y = (int(v) for v in position)
        top, left, pad = (SIZE - 1 - y) * px, x * px, int(round(inset * px))
        fill_rect(image, top + pad, left + pad, top + px - pad, left + px - pad, color)

    for c in np.flatnonzero(visited):
        box(cell_position(c), (200, 220, 255))
    if goal != NO_GOAL:
        box(GOALS[goal], (40, 170, 40))
    sources, targets = bus_routes(problem, layout.distractors)  # coloured ones first
    colors = list(BUS_COLORS) + [DISTRACTOR_COLOR] * 4 * layout.distractors
    for i, color in enumerate(colors):  # a route's two stops in its colour
        k = i if i < len(BUS_SOURCES) else i + len(BUS_SOURCES)  # skip the return buses
        box(sources[k], color, 0.2)
        box(targets[k], color, 0.2)
    if layout.has_map:
        box(MAP_TILE, (0, 0, 0), 0.2)
    for i in range(SIZE + 1):  # grid lines
        line = min(i * px, SIZE * px - 1)
        image[line, :] = image[:, line] = (180, 180, 180)
    x, y = cell_position(cell)
    fill_circle(image, (SIZE - 1 - y + 0.5) * px - 0.5, (x + 0.5) * px - 0.5, px * 0.3,
                (220, 40, 40))
    return image


# ------------------------------------------------------------------------------ vector
class VectorDreamGridEnv(VectorMetaEnv):
    """``num_envs`` bus or map grids stepped in one numpy call.

    The problems' next-cell tables ``[cell, action]`` are stacked and flattened, so a step
    is one ``take``; observations are gathered from a per-cell table. The episode counter is
    shared (all environments start their trial at ``set_tasks`` or a seeded ``reset``);
    each environment's goals come from its own stream, keyed by the seed its
    :class:`~metarl.random.BatchRNG` gives it, as a single env reset with that seed would
    draw them.
    """

    def __init__(self, num_envs: int, env: str = "dream-bus", horizon: int = DEFAULT_HORIZON,
                 exploration_episodes: int = 1):
        if env not in LAYOUTS:
            raise ValueError(f"unknown dream grid {env!r}; valid: {', '.join(LAYOUTS)}")
        _check_settings(horizon, exploration_episodes)
        self.layout = LAYOUTS[env]
        self.num_envs, self.max_episode_steps = num_envs, horizon
        self.exploration_episodes = exploration_episodes
        self.single_observation_space, self.single_action_space = grid_spaces(self.layout)
        self._goal_rng: BatchRNG | None = None
        self._problems: np.ndarray | None = None
        self._episode, self._t = -1, 0

    @property
    def exploring(self) -> bool:
        """Whether the current episodes are exploration episodes."""
        return max(self._episode, 0) < self.exploration_episodes

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        self._problems = np.array([self.layout.check_problem(t) for t in tasks], dtype=np.int64)
        self._next = self.layout.next_tables[self._problems].ravel()
        self._base = np.arange(self.num_envs) * NUM_CELLS * NUM_ACTIONS
        self._episode = -1
        self._start = np.full(self.num_envs, int(cell_index(*START)))
        self._cell = self._start.copy()
        self._goals = np.full(self.num_envs, NO_GOAL)
        self._goal_cells = np.full(self.num_envs, -1)

    def _infos(self) -> dict[str, np.ndarray]:
        return {"exploring": np.full(self.num_envs, self.exploring)}

    def reset(self, seed: int | BatchRNG | None = None):
        if self._problems is None:
            raise RuntimeError("VectorDreamGridEnv: no tasks set; call set_tasks first")
        if seed is not None or self._goal_rng is None:
            self._goal_rng = goal_stream(as_batch_rng(seed, self.num_envs).seeds())
        self._episode = 0 if seed is not None or self._episode < 0 else self._episode + 1
        if self.exploring:
            self._goals = np.full(self.num_envs, NO_GOAL)
            self._goal_cells = np.full(self.num_envs, -1)
        else:
            self._goals = self._goal_rng.integers(len(GOALS))
            self._goal_cells = cell_index(*GOALS[self._goals].T)
        self._cell, self._t = self._start.copy(), 0
        obs = observations(self.layout, self._cell, self._goals, self.exploring, self._problems)
        return obs, self._infos()

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, dtype=np.intp).reshape(-1)
        nxt = self._next.take(self._base + self._cell * NUM_ACTIONS + actions)
        self._t += 1
        reward, terminated, truncated = step_outcome(
            self._cell, self._goal_cells, actions, nxt, self._t, self.max_episode_steps,
            self.exploring)
        self._cell = nxt
        obs = observations(self.layout, nxt, self._goals, self.exploring, self._problems)
        return obs, reward, terminated, truncated, self._infos()


__all__ = [
    "ACTION_NAMES", "BUS_DESTINATIONS", "BUS_OBS_DIM", "BUS_PERMUTATIONS", "BUS_SOURCES",
    "DISTRACTOR_DESTINATIONS", "DISTRACTOR_SOURCES", "DOWN", "END_EPISODE", "GOALS", "LAYOUTS",
    "LEFT", "MAP_OBS_DIM", "MAP_TILE", "NOOP", "NO_GOAL", "OBS_EXPLORING", "OBS_GOAL",
    "OBS_MAP", "OBS_STOP", "OBS_X", "OBS_Y", "RIDE_BUS", "RIGHT", "START", "UP",
    "DreamBusEnv", "DreamGridEnv", "DreamMapEnv", "GridLayout", "VectorDreamGridEnv",
    "bus_routes", "cell_index", "cell_position", "decode_observation", "next_cell_table",
    "observations", "render_grid", "step_outcome", "walking_table",
]
