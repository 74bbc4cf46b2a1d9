"""The task API every environment implements.

A **task distribution** is a gymnasium environment that can also sample tasks and switch
between them::

    env = metarl.envs.make("bandit", arms=5)
    tasks = env.sample_tasks(10, np.random.default_rng(0))   # or env.split_tasks("test", 10)
    env.set_task(tasks[0])
    obs, info = env.reset(seed=0)          # a new episode of the same task
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

A **vector** environment steps ``B`` environments (each on its own task) in lockstep; the
samplers only talk to this interface. Numpy environments implement it natively (one numpy
call per step for all environments); :class:`SerialVectorEnv` wraps any single ``MetaEnv``.
There is no auto-reset: the sampler calls ``reset`` at the start of every episode and masks
environments whose episode ended early.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task

SPLITS = {"train": 0, "test": 1, "val": 2}


def split_rng(split: str, seed: int) -> np.random.Generator:
    """The generator for a named task split; train and test streams never coincide."""
    if split not in SPLITS:
        raise ValueError(f"unknown task split {split!r}; valid splits: {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS[split], 0x7A5C])


class MetaEnv(gym.Env, ABC):
    """A gymnasium environment over a distribution of tasks."""

    #: registry name, set by subclasses
    name: str = ""
    #: maximum steps per episode (the sampler's ``T``)
    max_episode_steps: int = 1
    #: the first ``k`` episodes of a trial are exploration episodes: their reward is 0 and
    #: does not count; evaluators report the return of the later ones
    #: (``exploitation_return`` of :func:`metarl.evaluation.evaluate_policy`)
    exploration_episodes: int = 0

    _task: Task | None = None

    @abstractmethod
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draw ``n`` tasks from the distribution."""

    @abstractmethod
    def set_task(self, task: Task) -> None:
        """Switch to ``task``; takes effect at the next ``reset``."""

    @property
    def task(self) -> Task:
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__}: no task set; call set_task first")
        return self._task

    def split_tasks(self, split: str, n: int, seed: int = 0) -> list[Task]:
        """``n`` tasks of a seeded split (``train``/``test``/``val``): the same ``seed``
        always gives the same tasks, and splits are drawn from disjoint random streams."""
        tasks = self.sample_tasks(n, split_rng(split, seed))
        return [Task(t.env, t.params, id=i) for i, t in enumerate(tasks)]

    def vector(self, num_envs: int) -> VectorMetaEnv:
        """A vector version with ``num_envs`` copies; natively batched where available."""
        return SerialVectorEnv([self._clone for _ in range(num_envs)])

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor arguments, to rebuild this env elsewhere (clones, Ray workers)."""
        return dict(getattr(self, "_init_kwargs", {}))

    def _clone(self) -> MetaEnv:
        return type(self)(**self.init_kwargs)


class VectorMetaEnv(ABC):
    """``num_envs`` environments stepped together, each on its own task."""

    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space
    max_episode_steps: int

    @abstractmethod
    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One task per environment (``len(tasks) == num_envs``)."""

    @abstractmethod
    def reset(self, seed: int | BatchRNG | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start a new episode in every environment; returns ``obs [B, *obs_shape]``.

        ``seed`` (an int or a :class:`~metarl.random.BatchRNG` keyed by environment) reseeds
        the environments' random streams; ``None`` continues them (later episodes of a
        trial). Use :func:`metarl.random.as_batch_rng` so that each environment's randomness
        depends only on its own key."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, np.ndarray]]:
        """Step every environment: ``(obs, reward, terminated, truncated, infos)``, each
        batched over environments. Environments whose episode already ended may be stepped
        (their results are ignored) but must not fail."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class SerialVectorEnv(VectorMetaEnv):
    """A vector env over a list of single ``MetaEnv`` instances (a Python loop)."""

    def __init__(self, env_fns: Sequence[Callable[[], MetaEnv]]):
        self.envs = [fn() for fn in env_fns]
        first = self.envs[0]
        self.num_envs = len(self.envs)
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.max_episode_steps = first.max_episode_steps
        self._done = np.zeros(self.num_envs, dtype=bool)
        self._last_obs: list[Any] = [None] * self.num_envs
        self._last_info: list[dict[str, Any]] = [{}] * self.num_envs

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        for env, task in zip(self.envs, tasks, strict=True):
            env.set_task(task)

    def reset(self, seed: int | BatchRNG | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        seeds: list[int | None] = [None] * self.num_envs
        if seed is not None:
            seeds = [int(s) for s in as_batch_rng(seed, self.num_envs).seeds()]
        results = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        self._done[:] = False
        self._last_obs = [obs for obs, _ in results]
        self._last_info = [info for _, info in results]
        return np.stack(self._last_obs), _stack_infos([info for _, info in results])

    def step(self, actions: np.ndarray):
        obs, rewards, terms, truncs, infos = [], [], [], [], []
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            if self._done[i]:
                o, r, te, tr, info = self._last_obs[i], 0.0, True, False, self._last_info[i]
            else:
                o, r, te, tr, info = env.step(action)
                self._done[i] = te or tr
                self._last_obs[i], self._last_info[i] = o, info
            obs.append(o)
            rewards.append(r)
            terms.append(te)
            truncs.append(tr)
            infos.append(info)
        return (np.stack(obs), np.asarray(rewards, dtype=np.float64), np.asarray(terms, bool),
                np.asarray(truncs, bool), _stack_infos(infos))

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _stack_infos(infos: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Stack the numeric per-env info entries that every environment reported."""
    if not infos:
        return {}
    keys = set.intersection(*(set(i) for i in infos)) if all(infos) else set()
    out = {}
    for key in sorted(keys):
        values = [info[key] for info in infos]
        if all(np.isscalar(v) or isinstance(v, np.ndarray) for v in values):
            try:
                out[key] = np.asarray(values)
            except ValueError:
                continue
    return out
