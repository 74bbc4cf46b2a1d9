"""In-process sampler: all ``N * M`` environments in lockstep, one batched policy call a step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from metarl.envs_api import MetaEnv, SerialVectorEnv, VectorMetaEnv
from metarl.policy import Policy, StatelessPolicy
from metarl.random import BatchRNG
from metarl.thread_limits import limited_threads
from metarl.types import STEP_FIELDS, Rollouts, Task, Transition

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
        horizon = venv.max_episode_steps
        # The loop's own cost is paid once per lockstep step whatever the batch size: a few
        # µs per numpy or torch call (the physics between two steps evicts the caches), so
        # it makes as few calls as it can (see docs/notes/performance.md).
        act, observe, set_grad = policy.act, policy.observe, torch.set_grad_enabled
        on_cpu = torch.device(device).type == "cpu"
        tensor = (torch.from_numpy if on_cpu
                  else lambda array: torch.as_tensor(array, device=device))
        # a policy acting in numpy: no torch <-> numpy conversions (~24 µs a step)
        act_numpy = _numpy_act(policy) if on_cpu else None
        # The policy acts and the environments step without autograd; `on_step` and the
        # policy's `observe` run in the caller's grad mode. A StatelessPolicy's `observe`
        # does nothing: then, without `on_step`, a step needs no Transition and no grad
        # switch (~8 µs a step).
        grad = torch.is_grad_enabled()
        observes = getattr(observe, "__func__", None) is not StatelessPolicy.observe
        store = _Store(buffer, episode)
        # While no episode has ended, masking by `valid` changes nothing: the step keeps the
        # env's arrays and one all-true `valid` (4 numpy calls fewer, ~4 µs a step); `alive`
        # is built at the first end.
        everyone = np.ones(venv.num_envs, dtype=bool)
        alive: np.ndarray | None = None
        set_grad(False)
        try:
            for t in range(horizon):
                if act_numpy is not None:
                    actions, state, extras = act_numpy(np.asarray(obs), state)
                else:
                    action, state, extras = act(tensor(np.asarray(obs)), state)
                    actions = action.cpu().numpy()
                next_obs, rewards, terminated, truncated, infos = venv.step(actions)
                if t == horizon - 1:
                    truncated = truncated | ~terminated
                if alive is None and _maskless(rewards, terminated, truncated):
                    valid = everyone
                    done = terminated | truncated
                    if np.count_nonzero(done):  # ~5x faster than .any() on small arrays
                        alive = ~done
                else:
                    valid = everyone.copy() if alive is None else alive.copy()
                    terminated, truncated = terminated & valid, truncated & valid
                    rewards = np.where(valid, rewards, 0.0)
                    alive = valid & ~(terminated | truncated)
                arrays = (obs, actions, rewards, next_obs, terminated, truncated, valid)
                store(t, arrays, extras, infos)
                if on_step is not None or observes:
                    step = Transition(*arrays, step=t, episode=episode)
                    set_grad(grad)
                    try:
                        if on_step is not None:
                            on_step(step, venv)
                        if observes:
                            state = observe(state, step)
                    finally:
                        set_grad(False)
                obs = next_obs
                if alive is not None and not np.count_nonzero(alive):
                    break
        finally:
            set_grad(grad)
        return state


def _numpy_act(policy: Policy) -> Callable | None:
    """``policy.act_numpy`` (see :mod:`metarl.policy`) if the class whose ``act`` the policy
    uses defines it too: a subclass or an instance that overrides ``act`` alone is called
    through ``act``."""
    if "act" in getattr(policy, "__dict__", {}):
        return None
    for cls in type(policy).__mro__:
        if "act" in vars(cls):
            return policy.act_numpy if "act_numpy" in vars(cls) else None
    return None


def _maskless(rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> bool:
    """Whether masking the step by an all-true ``valid`` would return the same arrays: bool
    flags and float rewards (``np.where(valid, rewards, 0.0)`` keeps a float dtype)."""
    return (isinstance(rewards, np.ndarray) and rewards.dtype.kind == "f"
            and isinstance(terminated, np.ndarray) and terminated.dtype.kind == "b"
            and isinstance(truncated, np.ndarray) and truncated.dtype.kind == "b")


def rendering_vector_env(env: MetaEnv, num_envs: int) -> SerialVectorEnv:
    """``num_envs`` copies of ``env`` built with ``render_mode="rgb_array"``."""
    kwargs = {**env.init_kwargs, "render_mode": "rgb_array"}
    return SerialVectorEnv([lambda: type(env)(**kwargs) for _ in range(num_envs)])


class _Store:
    """Writes each step of one episode into a :class:`_Buffer`: by name on the first step,
    then straight into the arrays found then while the extras' and infos' names stay the
    same (one ``array[k, t] = value`` per field)."""

    def __init__(self, buffer: _Buffer, k: int):
        self.buffer, self.k = buffer, k
        self.names: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.arrays: list[np.ndarray] = []

    def __call__(self, t: int, step: tuple[np.ndarray, ...],
                 extras: dict[str, torch.Tensor | np.ndarray],
                 infos: dict[str, np.ndarray]) -> None:
        """``step``: the :class:`~metarl.types.Transition`'s arrays, in its order."""
        names = (tuple(extras), tuple(infos))
        if names != self.names:
            _store(self.buffer, self.k, t, Transition(*step, step=t, episode=self.k), extras,
                   infos)
            arrays = self.buffer.arrays
            self.names = names
            self.arrays = [arrays[name] for name in (*STEP_FIELDS,
                                                     *[f"extras/{key}" for key in names[0]],
                                                     *[f"infos/{key}" for key in names[1]])]
            return
        values = [*step, *[_numpy(value) for value in extras.values()], *infos.values()]
        k = self.k
        for array, value in zip(self.arrays, values, strict=True):
            array[k, t] = value


def _store(buffer: _Buffer, k: int, t: int, step: Transition, extras: dict[str, torch.Tensor],
           infos: dict[str, np.ndarray]) -> None:
    for name in STEP_FIELDS:
        buffer.put(name, k, t, np.asarray(getattr(step, name)))
    for key, value in extras.items():
        buffer.put(f"extras/{key}", k, t, _numpy(value))
    for key, value in infos.items():
        buffer.put(f"infos/{key}", k, t, np.asarray(value))


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """An extra as a numpy array (``act_numpy``'s already are)."""
    return value if isinstance(value, np.ndarray) else value.numpy(force=True)


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
