"""Any task distribution as a plain single-agent ``gymnasium.Env``, for standard RL libraries
(Stable-Baselines3, RLlib) and gymnasium's vector API.

Three modes (:data:`MODES`):

* ``task-in-obs``: the oracle. A new task at every ``reset``; the task's parameters
  (``Task.params``, flattened in their order) are appended to every observation.
* ``resample``: the multi-task baseline. A new task at every ``reset``, nothing about it in
  the observation.
* ``trial``: RL²'s meta-episode. ``episodes_per_trial`` episodes of one task chained into one
  gymnasium episode; each observation carries the previous action (one-hot for a discrete
  space), the previous reward and a flag that the previous step ended an inner episode. The
  gymnasium episode terminates after the last inner episode.

Tasks come from the distribution (``sample_tasks`` with the env's ``np_random``), or
uniformly from ``tasks`` when given (e.g. ``env.split_tasks("test", 100)``). ``info`` gains
``task_id`` and ``inner_episode`` (``episode`` is SB3's Monitor's). Everything
random follows ``reset(seed=...)``, so the adapters pass
``gymnasium.utils.env_checker.check_env``::

    env = TaskEnv("cheetah-vel", mode="task-in-obs")
    vec = gymnasium.vector.SyncVectorEnv([lambda: TaskEnv("bandit", mode="trial",
                                                          episodes_per_trial=10)] * 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl.envs_api import MetaEnv
from metarl.types import Task

MODES = ("task-in-obs", "resample", "trial")


def task_vector(task: Task) -> np.ndarray:
    """The task's parameters, each flattened, concatenated in their order (float64)."""
    return np.concatenate([np.asarray(value, dtype=np.float64).ravel()
                           for value in task.params.values()])


def previous_step_features(space: gym.Space, actions: np.ndarray | None, rewards: np.ndarray,
                           ended: np.ndarray) -> np.ndarray:
    """What ``trial`` mode appends to each of ``B`` observations, ``[B, A + 2]``: the previous
    action (one-hot for a Discrete space, clipped to the box for a Box; zeros before the
    first), the previous reward and whether the previous step ended an inner episode."""
    batch = len(rewards)
    if isinstance(space, spaces.Discrete):
        features = np.zeros((batch, space.n))
        if actions is not None:
            features[np.arange(batch), np.asarray(actions, dtype=np.int64).ravel()] = 1.0
    elif actions is None:
        features = np.zeros((batch, int(np.prod(space.shape))))
    else:
        features = np.clip(np.asarray(actions, dtype=np.float64).reshape(batch, -1),
                           space.low.ravel(), space.high.ravel())
    return np.concatenate([features, np.asarray(rewards, dtype=np.float64)[:, None],
                           np.asarray(ended, dtype=np.float64)[:, None]], axis=1)


def adapter_observations(mode: str, action_space: gym.Space, obs: np.ndarray,
                         task_vectors: np.ndarray, actions: np.ndarray | None,
                         rewards: np.ndarray, ended: np.ndarray, dtype: Any) -> np.ndarray:
    """What :class:`TaskEnv` in ``mode`` shows ``B`` environments, ``[B, D]``: each inner
    observation (flattened), then the task vector (``task-in-obs``) or
    :func:`previous_step_features` (``trial``)."""
    parts = [np.asarray(obs, dtype=np.float64).reshape(len(rewards), -1)]
    if mode == "task-in-obs":
        parts.append(task_vectors)
    elif mode == "trial":
        parts.append(previous_step_features(action_space, actions, rewards, ended))
    return np.concatenate(parts, axis=1).astype(dtype)


class TaskEnv(gym.Env):
    """A task distribution as one single-agent gymnasium env (see the module docstring).

    ``env``: a registered env name (built with ``env_kwargs``) or a :class:`MetaEnv`."""

    metadata = {"render_modes": []}

    def __init__(self, env: str | MetaEnv, mode: str = "resample", *,
                 episodes_per_trial: int = 2, tasks: Sequence[Task] | None = None,
                 env_kwargs: dict[str, Any] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        if tasks is not None and not tasks:
            raise ValueError("tasks must not be empty")
        if isinstance(env, str):
            from metarl.envs import make

            env = make(env, **(env_kwargs or {}))
        self.env, self.mode = env, mode
        self.episodes_per_trial = episodes_per_trial if mode == "trial" else 1
        self.tasks = list(tasks) if tasks is not None else None
        self.action_space = env.action_space
        inner = env.observation_space
        if not isinstance(inner, spaces.Box) or len(inner.shape) != 1:
            raise ValueError(f"env {env.name!r}: only flat Box observations can be extended, "
                             f"got {inner}")
        self._dtype = inner.dtype
        low, high = [inner.low], [inner.high]
        if mode == "task-in-obs":
            size = len(task_vector(self._draw_task(np.random.default_rng(0))))
            low.append(np.full(size, -np.inf))
            high.append(np.full(size, np.inf))
        elif mode == "trial":
            act = self.action_space
            if isinstance(act, spaces.Discrete):
                low.append(np.zeros(act.n))
                high.append(np.ones(act.n))
            elif isinstance(act, spaces.Box):
                low.append(act.low.ravel())
                high.append(act.high.ravel())
            else:
                raise ValueError(f"env {env.name!r}: trial mode needs a Discrete or Box action "
                                 f"space, got {act}")
            low += [np.array([-np.inf]), np.zeros(1)]  # previous reward, inner episode ended
            high += [np.array([np.inf]), np.ones(1)]
        self.observation_space = spaces.Box(np.concatenate(low).astype(self._dtype),
                                            np.concatenate(high).astype(self._dtype),
                                            dtype=self._dtype)
        self.task: Task | None = None
        self._episode = 0
        self._task_vector = np.zeros(0)

    # ------------------------------------------------------------------ gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.task = self._draw_task(self.np_random)
        self.env.set_task(self.task)
        self._task_vector = task_vector(self.task)
        self._episode = 0
        obs, info = self._inner_reset()
        return self._observation(obs, None, 0.0, False), self._info(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = float(reward)
        if self.mode != "trial":
            return (self._observation(obs, action, reward, False), reward, bool(terminated),
                    bool(truncated), self._info(info))
        ended = bool(terminated or truncated)
        if ended:
            self._episode += 1
            if self._episode < self.episodes_per_trial:  # the next episode of the same task
                obs, info = self._inner_reset()
        done = ended and self._episode == self.episodes_per_trial
        return self._observation(obs, action, reward, ended), reward, done, False, \
            self._info(info)

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ pieces
    def _draw_task(self, rng: np.random.Generator) -> Task:
        if self.tasks is not None:
            return self.tasks[int(rng.integers(len(self.tasks)))]
        return self.env.sample_tasks(1, rng)[0]

    def _inner_reset(self) -> tuple[np.ndarray, dict[str, Any]]:
        return self.env.reset(seed=int(self.np_random.integers(2**31)))

    def _observation(self, obs: np.ndarray, action: Any, reward: float, ended: bool
                     ) -> np.ndarray:
        actions = None if action is None else np.asarray(action)[None]
        return adapter_observations(self.mode, self.action_space, np.asarray(obs)[None],
                                    self._task_vector[None], actions, np.array([reward]),
                                    np.array([ended]), self._dtype)[0]

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        assert self.task is not None
        return {**info, "task_id": int(self.task.id), "inner_episode": self._episode}
