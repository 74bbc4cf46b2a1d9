"""In-process sampler: all ``N * M`` environments in lockstep, one batched policy call a step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from metarl.envs_api import MetaEnv, SerialVectorEnv, VectorMetaEnv
from metarl.policy import Policy
from metarl.random import BatchRNG
from metarl.thread_limits import limited_threads
from metarl.types import Rollouts, Task, Transition

#: ``on_reset(episode, venv)``: called after the environments were reset for ``episode``
ResetCallback = Callable[[int, VectorMetaEnv], None]
#: ``on_step(transition, venv)``: called after every lockstep step (``transition.valid``
#: marks the environments whose episode was still running)
StepCallback = Callable[[Transition, VectorMetaEnv], None]


def env_keys(num_tasks: int, trials: int, task_offset: int = 0) -> np.ndarray:
    """Global environment keys (task-major): ``(task_offset + i) * trials + j``."""
    return (task_offset + np.arange(num_tasks))[:, None] * trials + np.arange(trials)[None, :]


class _Buffer:
    """Per-step arrays allocated on first write, stored ``[K, T, B, ...]`` so that a step is
    one contiguous write, and read back as ``[B, K, T, ...]``."""

    def __init__(self, batch: int, episodes: int, steps: int):
        self.lead = (episodes, steps, batch)
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, name: str, k: int, t: int, value: np.ndarray) -> None:
        array = self.arrays.get(name)
        if array is None:
            array = self.arrays[name] = np.zeros(self.lead + value.shape[1:], dtype=value.dtype)
        array[k, t] = value

    def view(self, name: str, episodes: slice) -> np.ndarray:
        """``[B, k, T, ...]`` for the episodes in ``episodes`` (a strided view)."""
        return np.moveaxis(self.arrays[name][episodes], 2, 0)


class LocalSampler:
    """Runs ``N`` tasks x ``M`` trials x ``K`` episodes in one process.

    The environments form one :class:`~metarl.envs_api.VectorMetaEnv` (natively batched for
    numpy envs); the policy is called once per step for all of them. Randomness comes from
    per-environment streams keyed by global index, so results for a task do not depend on
    which other tasks share the call (see :mod:`metarl.random`).

    With ``render=True`` the environments are single envs built with
    ``render_mode="rgb_array"`` in a :class:`~metarl.envs_api.SerialVectorEnv` (slower, but
    ``venv.envs[i].render()`` works); pass ``on_reset``/``on_step`` to :meth:`sample` to
    grab frames.

    ``threads`` (e.g. 1) sets torch's intra-op and numpy's BLAS threads while sampling
    (restored after): a small policy's per-step forward is slower with several threads, much
    slower when the cores are busy (RaySampler's workers run with one); ``None`` leaves them
    as they are.
    """

    def __init__(self, env: MetaEnv, render: bool = False, threads: int | None = None):
        self.env = env
        self.render = render
        self.threads = threads
        self._vector: VectorMetaEnv | None = None

    def _vector_env(self, num_envs: int) -> VectorMetaEnv:
        if self._vector is None or self._vector.num_envs != num_envs:
            if self._vector is not None:
                self._vector.close()
            self._vector = (rendering_vector_env(self.env, num_envs) if self.render
                            else self.env.vector(num_envs))
        return self._vector

    def close(self) -> None:
        """Close the environments (rendering MuJoCo envs hold GL contexts)."""
        if self._vector is not None:
            self._vector.close()
            self._vector = None

    def sample(self, policy: Policy, tasks: Sequence[Task], *, trials: int = 1,
               episodes: int = 1, seed: int = 0, task_offset: int = 0,
               on_reset: ResetCallback | None = None,
               on_step: StepCallback | None = None) -> Rollouts:
        """Roll out ``policy`` on every task; returns ``Rollouts [N, trials, episodes, T]``.

        ``task_offset`` is the global index of ``tasks[0]`` (used by sharding samplers so
        that a task's random streams do not depend on the shard it landed in).
        ``on_reset(episode, venv)`` runs after each episode's reset and
        ``on_step(transition, venv)`` after each step (e.g. to render frames); neither may
        change the environments."""
        with limited_threads(self.threads):
            return self._sample(policy, tuple(tasks), trials, episodes, seed, task_offset,
                                on_reset, on_step)

    def _sample(self, policy: Policy, tasks: tuple[Task, ...], trials: int, episodes: int,
                seed: int, task_offset: int, on_reset: ResetCallback | None,
                on_step: StepCallback | None) -> Rollouts:
        n, m, k = len(tasks), trials, episodes
        venv = self._vector_env(n * m)
        venv.set_tasks([task for task in tasks for _ in range(m)])
        keys = env_keys(n, m, task_offset).reshape(-1)
        state = policy.reset(tasks, m, BatchRNG(seed, keys, "policy"))
        buffer = _Buffer(n * m, k, venv.max_episode_steps)
        device = getattr(policy, "device", torch.device("cpu"))
        for episode in range(k):
            env_rng = BatchRNG(seed, keys, "env") if episode == 0 else None
            state = self._run_episode(policy, venv, buffer, episode, state, env_rng, device,
                                      on_reset, on_step)
            last = _to_rollouts(buffer, tasks, (n, m), slice(episode, episode + 1))
            state = policy.end_episode(state, last)
        return _to_rollouts(buffer, tasks, (n, m), slice(None), contiguous=True)

    @staticmethod
    def _run_episode(policy: Policy, venv: VectorMetaEnv, buffer: _Buffer, episode: int,
                     state, env_rng: BatchRNG | None, device, on_reset: ResetCallback | None,
                     on_step: StepCallback | None):
        obs, _ = venv.reset(seed=env_rng)
        if on_reset is not None:
            on_reset(episode, venv)
        alive = np.ones(venv.num_envs, dtype=bool)
        horizon = venv.max_episode_steps
        # The loop's own cost is paid once per lockstep step whatever the batch size: a few
        # µs per numpy or torch call (the physics between two steps evicts the caches), so
        # it makes as few calls as it can (see docs/notes/performance.md).
        act, observe, set_grad = policy.act, policy.observe, torch.set_grad_enabled
        tensor = (torch.from_numpy if torch.device(device).type == "cpu"
                  else lambda array: torch.as_tensor(array, device=device))
        grad = torch.is_grad_enabled()
        store = _Store(buffer, episode)
        for t in range(horizon):
            set_grad(False)
            try:
                action, state, extras = act(tensor(np.asarray(obs)), state)
            finally:
                set_grad(grad)
            actions = action.cpu().numpy()
            next_obs, rewards, terminated, truncated, infos = venv.step(actions)
            if t == horizon - 1:
                truncated = truncated | ~terminated
            valid = alive.copy()
            terminated, truncated = terminated & valid, truncated & valid
            step = Transition(obs, actions, np.where(valid, rewards, 0.0), next_obs,
                              terminated, truncated, valid, step=t, episode=episode)
            store(t, step, extras, infos)
            if on_step is not None:
                on_step(step, venv)
            state = observe(state, step)
            alive &= ~(terminated | truncated)
            obs = next_obs
            if not alive.any():
                break
        return state


def rendering_vector_env(env: MetaEnv, num_envs: int) -> SerialVectorEnv:
    """``num_envs`` copies of ``env`` built with ``render_mode="rgb_array"``."""
    kwargs = {**env.init_kwargs, "render_mode": "rgb_array"}
    return SerialVectorEnv([lambda: type(env)(**kwargs) for _ in range(num_envs)])


_STEP_NAMES = ("observations", "actions", "rewards", "next_observations", "terminated",
               "truncated", "valid")


class _Store:
    """Writes each step of one episode into a :class:`_Buffer`: by name on the first step,
    then straight into the arrays found then while the extras' and infos' names stay the
    same (one ``array[k, t] = value`` per field)."""

    def __init__(self, buffer: _Buffer, k: int):
        self.buffer, self.k = buffer, k
        self.names: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.arrays: list[np.ndarray] = []

    def __call__(self, t: int, step: Transition, extras: dict[str, torch.Tensor],
                 infos: dict[str, np.ndarray]) -> None:
        names = (tuple(extras), tuple(infos))
        if names != self.names:
            _store(self.buffer, self.k, t, step, extras, infos)
            arrays = self.buffer.arrays
            self.names = names
            self.arrays = [arrays[name] for name in (*_STEP_NAMES,
                                                     *[f"extras/{key}" for key in names[0]],
                                                     *[f"infos/{key}" for key in names[1]])]
            return
        values = [step.observations, step.actions, step.rewards, step.next_observations,
                  step.terminated, step.truncated, step.valid,
                  *[value.detach().cpu().numpy() for value in extras.values()],
                  *infos.values()]
        k = self.k
        for array, value in zip(self.arrays, values, strict=True):
            array[k, t] = value


def _store(buffer: _Buffer, k: int, t: int, step: Transition, extras: dict[str, torch.Tensor],
           infos: dict[str, np.ndarray]) -> None:
    for name in _STEP_NAMES:
        buffer.put(name, k, t, np.asarray(getattr(step, name)))
    for key, value in extras.items():
        buffer.put(f"extras/{key}", k, t, value.detach().cpu().numpy())
    for key, value in infos.items():
        buffer.put(f"infos/{key}", k, t, np.asarray(value))


def _to_rollouts(buffer: _Buffer, tasks: tuple[Task, ...], nm: tuple[int, int],
                 episodes: slice, contiguous: bool = False) -> Rollouts:
    """The buffer's ``episodes`` as ``Rollouts [N, M, k, T]``: views of the buffer where the
    dtype allows, or (``contiguous``) C-ordered copies."""
    def view(name: str, dtype=None) -> np.ndarray:
        picked = buffer.view(name, episodes)
        picked = picked.reshape(*nm, *picked.shape[1:])
        if contiguous:
            return np.ascontiguousarray(picked, dtype=dtype)
        return picked if dtype is None else picked.astype(dtype, copy=False)

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {name.split("/", 1)[1]: view(name) for name in buffer.arrays
                if name.startswith(prefix)}

    return Rollouts(
        observations=view("observations", np.float32),
        actions=view("actions"),
        rewards=view("rewards", np.float32),
        next_observations=view("next_observations", np.float32),
        terminated=view("terminated"),
        truncated=view("truncated"),
        valid=view("valid"),
        tasks=tasks,
        extras=group("extras/"),
        infos=group("infos/"),
    )
