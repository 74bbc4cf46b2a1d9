"""Reference policies for DREAM's bus and map grids (``dream-bus``, ``dream-map``).

Exploitation is exact: shortest paths by breadth-first search over positions, with moves and
bus rides, under the routes the policy knows. From the start the best path to any goal
corner takes 3 steps (step onto the right stop, ride, step to the corner): return ``0.8``;
walking takes 8 steps: ``0.3``.

- ``oracle`` (:class:`DreamOraclePolicy`) reads the task's problem, ends every exploration
  episode at once and follows a shortest path under the true routes. Not a learner.
- ``explore-exploit`` (:class:`DreamExploreExploitPolicy`) learns the routes in its
  exploration episodes from observations only: on the bus grid it rides three of the four
  coloured buses and back (the fourth destination is implied; 11 steps), on the map grid it
  walks to the map tile (4 steps) and reads the problem, then ends the episode. In
  exploitation episodes it follows a shortest path under the routes it learnt, so its
  exploitation return equals the oracle's on every task.
- ``random``: uniform actions (:class:`~metarl.reference_policies._common.RandomPolicy`).

The policies read the observation with :func:`metarl.envs.dream_grid.decode_observation`:
position, goal corner and whether the episode explores.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from metarl.envs.dream_grid import (
    BUS_DESTINATIONS,
    BUS_PERMUTATIONS,
    BUS_SOURCES,
    DOWN,
    END_EPISODE,
    GOALS,
    LAYOUTS,
    LEFT,
    NO_GOAL,
    NUM_CELLS,
    RIDE_BUS,
    RIGHT,
    UP,
    GridLayout,
    cell_index,
    decode_observation,
    walking_table,
)
from metarl.envs_api import MetaEnv
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition

#: actions a path may use: the four moves, noop and ride_bus (not end_episode)
PATH_ACTIONS = 6
UNREACHABLE = np.iinfo(np.int64).max // 2
#: the explorer's scripts: bus, ride the first three coloured buses and back (from the start,
#: (4,4) -> (4,5) ride ride -> (4,4) -> (5,4) ride ride -> (4,4) -> (3,4) ride), then end
BUS_PROBE_SCRIPT = (UP, RIDE_BUS, RIDE_BUS, DOWN, RIGHT, RIDE_BUS, RIDE_BUS, LEFT, LEFT,
                    RIDE_BUS, END_EPISODE)
#: map: walk to the map tile (7, 3), then end
MAP_PROBE_SCRIPT = (RIGHT, RIGHT, RIGHT, DOWN, END_EPISODE)

_SOURCE_CELLS = cell_index(*BUS_SOURCES.T)
_DESTINATION_CELLS = cell_index(*BUS_DESTINATIONS.T)
_GOAL_CELLS = cell_index(*GOALS.T)


def _layout(env: MetaEnv | str) -> GridLayout:
    name = env if isinstance(env, str) else env.name
    if name not in LAYOUTS:
        raise ValueError(f"not a DREAM grid env: {name!r}; valid: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def shortest_path_steps(problem: int, start: Sequence[int], goal: Sequence[int],
                        env: MetaEnv | str = "dream-bus") -> int:
    """Fewest steps from ``start`` to ``goal`` (``(x, y)`` each) by moves and bus rides
    under the true routes of ``problem``: a breadth-first search (``-1`` if unreachable)."""
    table = _layout(env).next_tables[problem]
    source, target = int(cell_index(*start)), int(cell_index(*goal))
    dist = np.full(NUM_CELLS, -1)
    dist[source] = 0
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        if cell == target:
            return int(dist[cell])
        for nxt in table[cell, :PATH_ACTIONS].tolist():
            if dist[nxt] < 0:
                dist[nxt] = dist[cell] + 1
                queue.append(nxt)
    return -1


def optimal_exploitation_return(steps: int) -> float:
    """Return of an exploitation episode reaching its goal in ``steps`` steps."""
    return -0.1 * (steps - 1) + 1.0


def distances_to_goals(tables: np.ndarray) -> np.ndarray:
    """``dist [..., goal, cell]``: fewest steps to each corner of :data:`GOALS`, for
    next-cell tables ``[..., cell, action]`` (a backward breadth-first search, vectorised:
    one sweep over all cells per distance)."""
    lead = tables.shape[:-2]
    moves = tables.reshape(-1, NUM_CELLS, tables.shape[-1])[..., :PATH_ACTIONS]  # [B, C, A]
    rows = np.arange(len(moves))[:, None, None, None]
    goals = np.arange(len(GOALS))[None, :, None, None]
    dist = np.full((len(moves), len(GOALS), NUM_CELLS), UNREACHABLE, dtype=np.int64)
    dist[:, np.arange(len(GOALS)), _GOAL_CELLS] = 0
    for _ in range(NUM_CELLS):
        best = dist[rows, goals, moves[:, None]].min(axis=-1) + 1  # [B, G, C]
        new = np.minimum(dist, best)
        if np.array_equal(new, dist):
            break
        dist = new
    return dist.reshape(*lead, len(GOALS), NUM_CELLS)


def greedy_actions(tables: np.ndarray, dist: np.ndarray, cells: np.ndarray,
                   goals: np.ndarray) -> np.ndarray:
    """The first action on a shortest path, per environment: ``tables [B, C, A]``,
    ``dist [B, goal, C]``, ``cells [B]``, ``goals [B]`` (``NO_GOAL`` treated as goal 0)."""
    rows = np.arange(len(cells))
    goals = np.where(goals == NO_GOAL, 0, goals)
    after = tables[rows, cells, :PATH_ACTIONS]  # [B, A]
    return dist[rows[:, None], goals[:, None], after].argmin(axis=1)


def known_tables(destinations: np.ndarray) -> np.ndarray:
    """Next-cell tables ``[B, C, A]`` with only the coloured buses whose destination index
    is known (``destinations [B, 4]``, ``-1`` unknown), return buses included."""
    tables = np.repeat(walking_table()[None], len(destinations), axis=0)
    rows, sources = np.nonzero(destinations >= 0)
    dest_cells = _DESTINATION_CELLS[destinations[rows, sources]]
    tables[rows, _SOURCE_CELLS[sources], RIDE_BUS] = dest_cells
    tables[rows, dest_cells, RIDE_BUS] = _SOURCE_CELLS[sources]
    return tables


@dataclass(frozen=True)
class DreamState:
    """Per-environment routes (``tables [B, C, A]``, their ``dist [B, goal, C]``), the
    coloured destinations known (``known [B, 4]``, ``-1`` unknown; the explorer), the step
    within the episode and the random streams."""

    tables: np.ndarray
    dist: np.ndarray
    known: np.ndarray
    rng: BatchRNG
    step: int = 0


def _cells(obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    fields = decode_observation(obs)
    return cell_index(fields["x"], fields["y"]), fields


class DreamOraclePolicy:
    """ORACLE, not a learner: reads each task's problem in ``reset``, ends exploration
    episodes at once and follows a shortest path under the true routes."""

    def __init__(self, env: str = "dream-bus"):
        self.layout = _layout(env)

    @classmethod
    def from_env(cls, env: MetaEnv, episodes: int) -> DreamOraclePolicy:
        return cls(env.name)

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> DreamState:
        problems = np.repeat([self.layout.check_problem(t) for t in tasks], trials)
        tables = self.layout.next_tables[problems]
        known = BUS_PERMUTATIONS[problems % len(BUS_PERMUTATIONS)]
        return DreamState(tables, distances_to_goals(tables), known, rng)

    def act(self, obs: torch.Tensor, state: DreamState
            ) -> tuple[torch.Tensor, DreamState, dict[str, torch.Tensor]]:
        cells, fields = _cells(obs.cpu().numpy())
        action = greedy_actions(state.tables, state.dist, cells, fields["goal"])
        action = np.where(fields["exploring"] == 1, END_EPISODE, action)
        return torch.as_tensor(action), replace(state, step=state.step + 1), {}

    def observe(self, state: DreamState, step: Transition) -> DreamState:
        return state

    def end_episode(self, state: DreamState, episode: Rollouts) -> DreamState:
        return replace(state, step=0)


class DreamExploreExploitPolicy(DreamOraclePolicy):
    """Probes the routes in exploration episodes (three bus rides and back, or the map),
    then follows shortest paths under what it learnt. Never reads the task."""

    def __init__(self, env: str = "dream-bus"):
        super().__init__(env)
        self.script = np.array(MAP_PROBE_SCRIPT if self.layout.has_map else BUS_PROBE_SCRIPT)

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> DreamState:
        known = np.full((rng.size, len(BUS_SOURCES)), -1)
        tables = known_tables(known)
        return DreamState(tables, distances_to_goals(tables[:1]).repeat(rng.size, 0), known,
                          rng)

    def act(self, obs: torch.Tensor, state: DreamState
            ) -> tuple[torch.Tensor, DreamState, dict[str, torch.Tensor]]:
        cells, fields = _cells(obs.cpu().numpy())
        exploit = greedy_actions(state.tables, state.dist, cells, fields["goal"])
        complete = (state.known >= 0).all(axis=1)
        probe = self.script[min(state.step, len(self.script) - 1)]
        explore = np.where(complete, END_EPISODE, probe)
        action = np.where(fields["exploring"] == 1, explore, exploit)
        return torch.as_tensor(action), replace(state, step=state.step + 1), {}

    def observe(self, state: DreamState, step: Transition) -> DreamState:
        """Note every coloured route seen: a ride from a source stop (or back from a
        destination), or the map tile's reading."""
        before, _ = _cells(np.asarray(step.observations))
        after, fields = _cells(np.asarray(step.next_observations))
        valid = np.asarray(step.valid, dtype=bool).reshape(-1)
        rode = valid & (np.asarray(step.actions).reshape(-1) == RIDE_BUS) & (before != after)
        known = state.known.copy()
        for ends, other in ((before, after), (after, before)):  # source -> dest, dest -> source
            is_source = ends[:, None] == _SOURCE_CELLS[None, :]  # [B, 4]
            is_dest = other[:, None] == _DESTINATION_CELLS[None, :]
            rows = np.flatnonzero(rode & is_source.any(1) & is_dest.any(1))
            known[rows, is_source[rows].argmax(1)] = is_dest[rows].argmax(1)
        read = valid & (fields["map"] > 0)
        known[read] = BUS_PERMUTATIONS[fields["map"][read] - 1]
        missing = known < 0
        rows = np.flatnonzero(missing.sum(axis=1) == 1)  # the fourth is the one not seen
        if len(rows):
            seen = np.zeros((len(rows), len(BUS_DESTINATIONS)), dtype=bool)
            r, c = np.nonzero(~missing[rows])
            seen[r, known[rows[r], c]] = True
            known[rows, missing[rows].argmax(axis=1)] = (~seen).argmax(axis=1)
        if np.array_equal(known, state.known):
            return state
        return replace(state, known=known)

    def end_episode(self, state: DreamState, episode: Rollouts) -> DreamState:
        tables = known_tables(state.known)
        return replace(state, tables=tables, dist=distances_to_goals(tables), step=0)
