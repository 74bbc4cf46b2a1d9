"""Replay buffers for off-policy meta-RL: per-task transitions (PEARL) and whole sequences
(recurrent DQN, DREAM).

:class:`TaskReplayBuffer`: all tasks' transitions live in one float32 array ``[tasks,
capacity, width]`` (observation, action, reward, next observation, terminated side by side),
each task a FIFO ring of up to ``capacity`` transitions. A batch for a meta-batch of tasks is
one fancy-indexing gather::

    buffer = TaskReplayBuffer(num_tasks=100, obs_dim=20, action_dim=6, capacity=1_000_000)
    buffer.add_rollouts(task_indices, rollouts)            # valid steps of Rollouts [N, ...]
    batch = buffer.sample(np.array([3, 7]), 256, rng)      # dict of arrays [2, 256, ...]

:class:`SequenceReplayBuffer`: one FIFO ring of up to ``capacity`` entries (e.g. padded
episodes), each a dict of named fields of fixed shapes and dtypes, one numpy array per field::

    buffer = SequenceReplayBuffer(16_000, {"obs": ((50, 7), np.float32),
                                           "actions": ((50,), np.int64),
                                           "valid": ((50,), bool)})
    buffer.add({"obs": obs, "actions": actions, "valid": valid_mask(lengths, 50)})  # [n, ...]
    batch = buffer.sample(32, rng)                         # dict of arrays [32, ...]

Storage of both starts small and doubles as they fill up (never beyond ``capacity``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from metarl.types import Rollouts

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated")


def grown_rows(current: int, needed: int, capacity: int) -> int:
    """Rows for a buffer of ``current`` rows to hold ``needed``: doubled until they do, never
    beyond ``capacity`` (``current`` when it already holds them or is full)."""
    size = current
    while size < min(needed, capacity):
        size *= 2
    return min(size, capacity) if size != current else current


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
        size = grown_rows(current, needed, self.capacity)
        if size == current:
            return
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


def valid_mask(lengths: np.ndarray | Sequence[int], max_len: int) -> np.ndarray:
    """``[n, max_len]`` bool: step ``t`` of entry ``i`` is real iff ``t < lengths[i]``."""
    return np.arange(max_len)[None, :] < np.asarray(lengths, dtype=np.int64)[:, None]


class SequenceReplayBuffer:
    """A FIFO ring of up to ``capacity`` entries, each a dict of named numpy fields whose
    per-entry shapes and dtypes (numeric or bool) are fixed by ``fields``: ``{name: (shape,
    dtype)}``. Field ``name`` is stored as one array ``[rows, *shape]``; ``rows`` starts at
    ``initial_capacity`` and doubles as needed, up to ``capacity``."""

    def __init__(self, capacity: int, fields: Mapping[str, tuple[tuple[int, ...], np.dtype | str]],
                 initial_capacity: int = 1024):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if initial_capacity < 1:
            raise ValueError(f"initial replay capacity must be >= 1, got {initial_capacity}")
        if not fields:
            raise ValueError("a sequence replay buffer needs at least one field")
        self.capacity, self.initial_capacity = capacity, initial_capacity
        self.fields: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, (shape, dtype) in fields.items():
            dtype = np.dtype(dtype)
            if dtype.kind not in "biuf":
                raise ValueError(f"replay field {name!r}: dtype {dtype} is not numeric or bool")
            self.fields[name] = (tuple(int(d) for d in shape), dtype)
        self._reset()

    def _reset(self) -> None:
        rows = min(self.capacity, self.initial_capacity)
        self.data = {name: np.zeros((rows, *shape), dtype=dtype)
                     for name, (shape, dtype) in self.fields.items()}
        self.size = 0
        self.position = 0  # next slot to write

    @property
    def rows(self) -> int:
        """Rows allocated per field (grows by doubling up to ``capacity``)."""
        return len(next(iter(self.data.values())))

    def __len__(self) -> int:
        return self.size

    def _check(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch`` as arrays of the declared fields with one common length, or ValueError."""
        missing = [name for name in self.fields if name not in batch]
        unknown = [name for name in batch if name not in self.fields]
        if missing or unknown:
            raise ValueError(f"replay batch: missing fields {missing}, unknown fields "
                             f"{unknown} (fields are {list(self.fields)})")
        arrays, count = {}, None
        for name, (shape, dtype) in self.fields.items():
            array = np.asarray(batch[name])
            if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
                raise ValueError(f"replay field {name!r}: shape {array.shape}, expected "
                                 f"(n, *{shape})")
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise ValueError(f"replay field {name!r}: dtype {array.dtype} does not cast "
                                 f"to {dtype}")
            if count is None:
                count = len(array)
            elif len(array) != count:
                raise ValueError(f"replay field {name!r}: {len(array)} entries, other fields "
                                 f"have {count}")
            arrays[name] = array
        return arrays

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append ``n`` entries: every field, as an array ``[n, *shape]``. Once the buffer
        holds ``capacity`` entries the oldest are overwritten."""
        arrays = self._check(batch)
        count = len(next(iter(arrays.values())))
        if count == 0:
            return
        skip = max(0, count - self.capacity)  # only the newest ``capacity`` can stay
        if skip:
            self.position = (self.position + skip) % self.capacity
            count -= skip
        self._grow(self.size + count)
        slots = (self.position + np.arange(count)) % self.rows
        for name, array in arrays.items():
            self.data[name][slots] = array[skip:]
        self.position = (self.position + count) % self.capacity
        self.size = min(self.capacity, self.size + count)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` entries uniformly with replacement: ``{name: [batch_size, *shape]}``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = rng.integers(self.size, size=batch_size)
        return {name: array[index] for name, array in self.data.items()}

    def _grow(self, needed: int) -> None:
        current = self.rows
        size = grown_rows(current, needed, self.capacity)
        if size == current:
            return
        for name, array in self.data.items():
            grown = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
            grown[:current] = array
            self.data[name] = grown

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Tensors only (checkpoints load with ``weights_only=True``); only filled rows."""
        return {"data": {name: torch.from_numpy(array[:self.size].copy())
                         for name, array in self.data.items()},
                "size": torch.tensor(self.size, dtype=torch.int64),
                "position": torch.tensor(self.position, dtype=torch.int64)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | Mapping[str, torch.Tensor]]
                        ) -> None:
        data, size = state["data"], int(state["size"])
        if set(data) != set(self.fields):
            raise ValueError(f"replay state has fields {sorted(data)}, this buffer "
                             f"{sorted(self.fields)}")
        if not 0 <= size <= self.capacity or not 0 <= int(state["position"]) < self.capacity:
            raise ValueError(f"replay state of {size} entries (position "
                             f"{int(state['position'])}) does not fit capacity {self.capacity}")
        for name, (shape, _) in self.fields.items():
            if tuple(data[name].shape) != (size, *shape):
                raise ValueError(f"replay state field {name!r} of shape "
                                 f"{tuple(data[name].shape)}, expected {(size, *shape)}")
        self._reset()
        self._grow(size)
        for name, array in self.data.items():
            array[:size] = data[name].numpy()
        self.size, self.position = size, int(state["position"])
