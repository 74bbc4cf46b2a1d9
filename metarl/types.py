"""Shared data types: tasks, transitions and the dense ``Rollouts`` batch.

Every array in :class:`Rollouts` is indexed ``[task, trial, episode, step, ...]``:
``N`` tasks, ``M`` parallel trials per task, ``K`` consecutive episodes per trial and
``T`` steps per episode. Steps after an episode ended early are padding, marked
``valid == False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a task distribution.

    ``env`` names the distribution (e.g. ``"bandit"``), ``params`` holds what defines the
    task (arrays allowed; they serialise to nested lists) and ``id`` is a stable identifier
    within its split.
    """

    env: str
    params: Mapping[str, Any]
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "id": int(self.id), "params": _to_jsonable(self.params)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        return cls(env=str(data["env"]), params=dict(data["params"]), id=int(data.get("id", 0)))

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls.from_dict(json.loads(text))

    def array(self, key: str, dtype: Any = np.float64) -> np.ndarray:
        """``params[key]`` as a numpy array (whether stored as an array or a list)."""
        return np.asarray(self.params[key], dtype=dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        text = json.dumps(_to_jsonable(self.params))
        if len(text) > 60:
            text = text[:57] + "..."
        return f"Task({self.env!r}, id={self.id}, {text})"


@dataclass(frozen=True)
class Transition:
    """One lockstep step of all ``B = N * M`` environments (task-major), as numpy arrays."""

    observations: np.ndarray  # [B, *obs_shape]
    actions: np.ndarray  # [B, *act_shape]
    rewards: np.ndarray  # [B]
    next_observations: np.ndarray  # [B, *obs_shape]
    terminated: np.ndarray  # bool [B]
    truncated: np.ndarray  # bool [B]
    valid: np.ndarray  # bool [B]: False for environments whose episode already ended
    step: int  # index of the step within the episode
    episode: int  # index of the episode within the trial

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


#: the per-step arrays of a Transition and of Rollouts, in order
STEP_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated",
                "truncated", "valid")


@dataclass(frozen=True)
class Rollouts:
    """A dense batch of trials, every array indexed ``[N, M, K, T, ...]``."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    tasks: tuple[Task, ...]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    infos: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lead = self.rewards.shape
        if len(lead) != 4:
            raise ValueError(f"rewards must be [N, M, K, T], got shape {lead}")
        named = {name: getattr(self, name) for name in STEP_FIELDS}
        named.update({f"extras[{k!r}]": v for k, v in self.extras.items()})
        named.update({f"infos[{k!r}]": v for k, v in self.infos.items()})
        for name, array in named.items():
            if array.shape[:4] != lead:
                raise ValueError(f"{name} has leading shape {array.shape[:4]}, expected {lead}")
        if len(self.tasks) != lead[0]:
            raise ValueError(f"{len(self.tasks)} tasks for a batch of {lead[0]} tasks")
        for name in ("terminated", "truncated", "valid"):
            if getattr(self, name).dtype != np.bool_:
                raise ValueError(f"{name} must be boolean, got {getattr(self, name).dtype}")

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N tasks, M trials, K episodes, T steps)``."""
        return tuple(self.rewards.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Bytes of all the batch's arrays (steps, extras, infos)."""
        return sum(a.nbytes for a in [*(getattr(self, name) for name in STEP_FIELDS),
                                      *self.extras.values(), *self.infos.values()])

    @property
    def num_steps(self) -> int:
        """Number of real (valid) environment steps in the batch."""
        return int(self.valid.sum())

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, ``[N, M, K]``."""
        return np.where(self.valid, self.rewards, 0.0).sum(axis=-1)

    def episode_lengths(self) -> np.ndarray:
        return self.valid.sum(axis=-1)

    def map_arrays(self, fn, tasks: tuple[Task, ...] | None = None) -> Rollouts:
        """Apply ``fn`` to every per-step array (including extras and infos)."""
        return replace(
            self,
            **{name: fn(getattr(self, name)) for name in STEP_FIELDS},
            extras={k: fn(v) for k, v in self.extras.items()},
            infos={k: fn(v) for k, v in self.infos.items()},
            tasks=self.tasks if tasks is None else tasks,
        )

    def select_tasks(self, index: slice | Sequence[int]) -> Rollouts:
        tasks = self.tasks[index] if isinstance(index, slice) else tuple(
            self.tasks[i] for i in index)
        return self.map_arrays(lambda a: a[index], tasks=tuple(tasks))

    def select_episodes(self, index: slice | Sequence[int]) -> Rollouts:
        return self.map_arrays(lambda a: a[:, :, index])

    @staticmethod
    def concatenate(parts: Sequence[Rollouts], axis: str = "task") -> Rollouts:
        """Join batches along ``"task"`` (tasks of each part are appended) or ``"episode"``."""
        dim = {"task": 0, "trial": 1, "episode": 2}[axis]
        first = parts[0]

        def cat(get):
            return np.concatenate([get(p) for p in parts], axis=dim)

        tasks = sum((p.tasks for p in parts), ()) if axis == "task" else first.tasks
        return Rollouts(
            **{name: cat(lambda p, n=name: getattr(p, n)) for name in STEP_FIELDS},
            tasks=tuple(tasks),
            extras={k: cat(lambda p, k=k: p.extras[k]) for k in first.extras},
            infos={k: cat(lambda p, k=k: p.infos[k]) for k in first.infos},
        )

    # ------------------------------------------------------------ flattening
    def trial_sequences(self) -> TrialSequences:
        """Each trial as one sequence of its valid steps (RL²).

        Trials become rows ``[N * M]``; the valid steps of episodes ``0..K-1`` are packed in
        order to the front of each row and the rest is padding (``mask == False``). Padding
        only ever follows real steps, so a recurrent network run over a row sees exactly
        the steps the policy saw while sampling.
        """
        n, m, k, t = self.shape
        valid = self.valid.reshape(n * m, k * t)
        order = np.argsort(~valid, axis=1, kind="stable")  # valid steps first, in order
        rows = np.arange(n * m)[:, None]
        lengths = valid.sum(axis=1)
        mask = np.arange(k * t)[None, :] < lengths[:, None]

        def pack(a: np.ndarray) -> np.ndarray:
            flat = a.reshape(n * m, k * t, *a.shape[4:])
            return flat[rows, order]

        episode_index = np.broadcast_to(np.repeat(np.arange(k), t), (n * m, k * t))
        first_step = np.broadcast_to(np.tile(np.arange(t) == 0, k), (n * m, k * t))
        return TrialSequences(
            observations=pack(self.observations),
            actions=pack(self.actions),
            rewards=pack(self.rewards) * mask,
            terminated=pack(self.terminated) & mask,
            truncated=pack(self.truncated) & mask,
            episode=pack(episode_index[:, :, None, None].reshape(n, m, k, t)),
            episode_start=pack(first_step.reshape(n, m, k, t)) & mask,
            mask=mask,
            extras={key: pack(v) for key, v in self.extras.items()},
            order=order,
        )

    def task_transitions(self) -> dict[str, np.ndarray]:
        """All valid transitions of each task: arrays ``[N, S, ...]`` with ``S = M*K*T`` slots
        per task plus a ``valid`` mask (for per-task replay buffers, PEARL)."""
        n = self.shape[0]
        out = {name: getattr(self, name).reshape(n, -1, *getattr(self, name).shape[4:])
               for name in STEP_FIELDS}
        return out


@dataclass(frozen=True)
class TrialSequences:
    """Trials flattened into packed sequences ``[N * M, K * T, ...]``; see
    :meth:`Rollouts.trial_sequences`."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray  # episode index of each step
    episode_start: np.ndarray  # True at the first step of each episode
    mask: np.ndarray  # True for real steps
    extras: dict[str, np.ndarray]
    order: np.ndarray  # permutation used to pack each row (to unpack per-step results)

    @property
    def episode_end(self) -> np.ndarray:
        """True at the last real step of each episode."""
        return self.terminated | self.truncated

    def unpack(self, values: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
        """Scatter per-step ``values [N*M, K*T, ...]`` back to ``[N, M, K, T, ...]``
        (padding slots receive zeros)."""
        out = np.zeros_like(values)
        rows = np.arange(values.shape[0])[:, None]
        out[rows, self.order] = np.where(
            self.mask.reshape(self.mask.shape + (1,) * (values.ndim - 2)), values, 0)
        return out.reshape(*shape, *values.shape[2:])
