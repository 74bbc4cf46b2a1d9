"""Per-task replay buffers for off-policy meta-RL (PEARL).

All tasks' transitions live in one float32 array ``[tasks, capacity, width]`` (observation,
action, reward, next observation, terminated side by side), each task a FIFO ring of up to
``capacity`` transitions. A batch for a meta-batch of tasks is one fancy-indexing gather::

    buffer = TaskReplayBuffer(num_tasks=100, obs_dim=20, action_dim=6, capacity=1_000_000)
    buffer.add_rollouts(task_indices, rollouts)            # valid steps of Rollouts [N, ...]
    batch = buffer.sample(np.array([3, 7]), 256, rng)      # dict of arrays [2, 256, ...]

Storage starts small and doubles as tasks fill up (never beyond ``capacity``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metarl.types import Rollouts

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated")


class TaskReplayBuffer:
    """``num_tasks`` FIFO buffers of ``capacity`` transitions each."""

    def __init__(self, num_tasks: int, obs_dim: int, action_dim: int, capacity: int,
                 initial_capacity: int = 1024):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.obs_dim, self.action_dim, self.capacity = obs_dim, action_dim, capacity
        widths = (obs_dim, action_dim, 1, obs_dim, 1)
        bounds = np.cumsum((0, *widths))
        self.slices = {name: slice(int(a), int(b))
                       for name, a, b in zip(FIELDS, bounds[:-1], bounds[1:], strict=True)}
        self.data = np.zeros((num_tasks, min(capacity, initial_capacity), int(bounds[-1])),
                             dtype=np.float32)
        self.sizes = np.zeros(num_tasks, dtype=np.int64)
        self.positions = np.zeros(num_tasks, dtype=np.int64)  # next slot to write

    @property
    def num_tasks(self) -> int:
        return self.data.shape[0]

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def add(self, task: int, transitions: dict[str, np.ndarray]) -> None:
        """Append ``S`` transitions (arrays ``[S, ...]``, keys :data:`FIELDS`) to ``task``;
        the oldest are overwritten once the task holds ``capacity``."""
        rows = np.concatenate([np.asarray(transitions[name], dtype=np.float32)
                               .reshape(len(transitions["rewards"]), -1) for name in FIELDS], 1)
        if len(rows) > self.capacity:
            rows = rows[-self.capacity:]
        self._grow(int(self.sizes[task]) + len(rows))
        slots = (self.positions[task] + np.arange(len(rows))) % self.data.shape[1]
        self.data[task, slots] = rows
        self.positions[task] = (self.positions[task] + len(rows)) % self.capacity
        self.sizes[task] = min(self.capacity, self.sizes[task] + len(rows))

    def add_rollouts(self, tasks: Sequence[int], rollouts: Rollouts) -> None:
        """Add the valid steps of ``rollouts`` (task ``i`` of the batch goes to buffer
        ``tasks[i]``)."""
        flat = rollouts.task_transitions()
        for i, task in enumerate(tasks):
            keep = flat["valid"][i]
            self.add(int(task), {name: flat[name][i][keep] for name in FIELDS})

    def clear(self, task: int) -> None:
        self.sizes[task] = 0
        self.positions[task] = 0

    def sample(self, tasks: np.ndarray, batch: int, rng: np.random.Generator,
               sequential: bool = False) -> dict[str, np.ndarray]:
        """``batch`` transitions of each of ``tasks``: arrays ``[len(tasks), batch, ...]``.
        Uniform with replacement, or (``sequential``) ``batch`` consecutive transitions in
        insertion order from a random start (for recurrent encoders)."""
        tasks = np.asarray(tasks)
        sizes = self.sizes[tasks]
        if (sizes == 0).any():
            raise ValueError(f"replay buffers of tasks {tasks[sizes == 0].tolist()} are empty")
        if sequential:
            oldest = np.where(sizes < self.capacity, 0, self.positions[tasks])
            start = rng.integers(0, np.maximum(sizes - batch, 0) + 1)
            index = (oldest[:, None] + start[:, None] + np.arange(batch)[None]) % sizes[:, None]
        else:
            index = (rng.random((len(tasks), batch)) * sizes[:, None]).astype(np.int64)
        rows = self.data[tasks[:, None], index]
        out = {name: rows[..., part] for name, part in self.slices.items()}
        out["rewards"] = out["rewards"][..., 0]
        out["terminated"] = out["terminated"][..., 0]
        return out

    def _grow(self, needed: int) -> None:
        current = self.data.shape[1]
        if needed <= current or current >= self.capacity:
            return
        size = current
        while size < needed:
            size *= 2
        size = min(size, self.capacity)
        grown = np.zeros((self.num_tasks, size, self.data.shape[2]), dtype=np.float32)
        grown[:, :current] = self.data
        self.data = grown

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (checkpoints load with ``weights_only=True``); only filled rows."""
        used = int(self.sizes.max(initial=0))
        return {"data": torch.from_numpy(self.data[:, :used].copy()),
                "sizes": torch.from_numpy(self.sizes.copy()),
                "positions": torch.from_numpy(self.positions.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        data = state["data"].numpy()
        if data.shape[0] != self.num_tasks or data.shape[2] != self.data.shape[2]:
            raise ValueError(f"replay state of shape {tuple(data.shape)} does not fit "
                             f"{self.num_tasks} tasks of width {self.data.shape[2]}")
        self.data = np.zeros_like(self.data)
        self._grow(data.shape[1])
        self.data[:, :data.shape[1]] = data
        self.sizes = state["sizes"].numpy().astype(np.int64).copy()
        self.positions = state["positions"].numpy().astype(np.int64).copy()
