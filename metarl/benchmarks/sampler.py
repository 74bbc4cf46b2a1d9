"""Sampler throughput on a MuJoCo task distribution: gymnasium loop vs LocalSampler vs Ray.

One workload, ``tasks`` tasks x 1 trial x ``episodes`` episodes x ``steps`` steps (default: the
env's horizon), timed three ways (and the local sampler once more on one worker's shard), in
environment steps per second. Each figure is the best of ``repeats`` timings after a warm-up,
and the runs take turns so that a shared machine's load affects them alike (``load_average``
is reported with them):

* ``gym_loop_steps_per_s``: a plain loop over the workload's episodes with one gymnasium
  single env (the reference backend) and uniform random actions;
* ``local_steps_per_s``: :class:`~metarl.sampling.LocalSampler` on the natively batched vector
  env with a (64, 64) tanh Gaussian MLP policy (acting through its numpy snapshot, see
  :mod:`metarl.nn.mlp`), one policy call per step for all envs (one
  MuJoCo and one torch thread);
* ``ray_steps_per_s``: :class:`~metarl.sampling.RaySampler` with ``workers`` actors (one MuJoCo
  and one torch thread each), timed after the workers are up and have sampled once; on a
  local Ray started here, or on the cluster at ``ray_address`` (``spread``: the actors
  placed with Ray's ``"SPREAD"`` strategy, one per node where it can);
* ``local_shard_steps_per_s``: the LocalSampler on one worker's shard (the first
  ``ceil(tasks / workers)`` tasks), what each Ray worker runs.

Where the time goes, next to the figures:

* ``per_step_us``: the local sampler's cost per lockstep step, ``fixed`` (paid once per step
  whatever the batch: the policy call's overhead, the sampler's bookkeeping, the vector env's
  numpy) plus ``per_env`` times the environments, fitted through the two local runs;
  ``ideal_ray_vs_local`` is the ratio of their times, what ``workers`` processes reach at
  best (the fixed cost is paid by every worker);
* ``local_step_us``: one more (untimed) local call of each size with the policy's ``act``
  and the vector env's ``reset``/``step`` timed: ``policy``, ``env`` and the rest,
  ``sampler`` (the loop itself), in µs per lockstep step;
* ``ray_breakdown``: the fastest Ray call's :class:`~metarl.sampling.ray_sampler.SampleTiming`:
  ``put_policy_s`` (pickling the policy, and ``ray.put`` if it is large), ``worker_start_s``
  (submission to each worker sampling: dispatch, fetching and unpickling the policy),
  ``worker_busy_s`` (each worker's time in ``LocalSampler.sample``), ``transfer_s`` (each
  worker's end to its rollouts in the driver), ``concatenate_s``, ``wall_s`` and
  ``idle_fraction`` (the workers' share of the call not spent sampling; ``busy <= wall``).

Ray's figure cannot beat the local one unless ``workers`` cores are free: with Linux's
autogroup scheduling, all processes started from one session share one CPU share.

    metarl bench sampler --env cheetah-vel --workers 2 [--json]
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from gymnasium import spaces

from metarl.envs import MetaEnv, make
from metarl.envs_api import VectorMetaEnv
from metarl.nn import GaussianMLP, GaussianMLPPolicy
from metarl.policy import Policy
from metarl.progress import Progress
from metarl.sampling import LocalSampler, Sampler
from metarl.types import Task

if TYPE_CHECKING:
    from metarl.sampling.ray_sampler import SampleTiming


def benchmark_policy(obs_dim: int, act_dim: int, seed: int = 0) -> GaussianMLPPolicy:
    """The (64, 64) tanh Gaussian MLP policy the sampler figures are measured with."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GaussianMLPPolicy(GaussianMLP(obs_dim, act_dim, (64, 64)))


def gym_loop(env: MetaEnv, tasks: Sequence[Task], episodes: int) -> Callable[[], None]:
    """Every episode of the workload with one gymnasium single env and random actions."""
    rng = np.random.default_rng(0)
    space, steps = env.action_space, env.max_episode_steps

    def loop() -> None:
        for task in tasks:
            env.set_task(task)
            for _ in range(episodes):
                env.reset(seed=int(rng.integers(2**31)))
                for action in rng.uniform(space.low, space.high, (steps, *space.shape)):
                    env.step(action)

    return loop


def sampling(sampler: Sampler, policy: Policy, tasks: Sequence[Task],
             episodes: int) -> Callable[[], None]:
    """The workload as one ``sampler.sample`` call."""
    return lambda: sampler.sample(policy, tasks, trials=1, episodes=episodes, seed=0)


def best_times(runs: dict[str, Callable[[], object]], repeats: int,
               tick: Callable[[], object] | None = None,
               records: dict[str, object] | None = None) -> dict[str, float]:
    """The best of ``repeats`` timings of each run after a warm-up call; the runs take turns,
    so a change in the machine's load affects them alike. ``tick()`` after each call
    (progress); ``records[name]``: what the fastest call of each run returned."""
    tick = tick or (lambda: None)
    for fn in runs.values():
        fn()
        tick()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            value = fn()
            seconds = time.perf_counter() - start
            if seconds < best[name]:
                best[name] = seconds
                if records is not None:
                    records[name] = value
            tick()
    return best


def timed_policy(policy: Policy) -> Any:
    """A shallow copy of ``policy`` whose ``act`` (and ``act_numpy``, if its class has one)
    add up their seconds in ``.seconds``: a subclass of the policy's own class, so the
    sampler takes the same path for it (numpy acting, a stateless policy's skipped
    ``observe``) as for the policy."""
    base = type(policy)

    class Timed(base):  # type: ignore[valid-type, misc]
        def act(self, obs, state):
            start = time.perf_counter()
            out = super().act(obs, state)
            self.seconds += time.perf_counter() - start
            return out

        if hasattr(base, "act_numpy"):
            def act_numpy(self, obs, state):
                start = time.perf_counter()
                out = super().act_numpy(obs, state)
                self.seconds += time.perf_counter() - start
                return out

    timed = copy.copy(policy)
    timed.__class__ = Timed
    timed.seconds = 0.0
    return timed


class _TimedVector:
    """Delegates to a vector env, adding up the seconds spent in ``reset`` and ``step``."""

    def __init__(self, venv: VectorMetaEnv):
        self.venv, self.seconds = venv, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.venv, name)

    def reset(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.venv.reset(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return out

    def step(self, actions):
        start = time.perf_counter()
        out = self.venv.step(actions)
        self.seconds += time.perf_counter() - start
        return out


class _TimedEnv:
    """Delegates to ``env``; its vector envs time themselves (:class:`_TimedVector`)."""

    def __init__(self, env: MetaEnv):
        self.env, self.vectors = env, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def vector(self, num_envs: int) -> _TimedVector:
        self.vectors.append(_TimedVector(self.env.vector(num_envs)))
        return self.vectors[-1]


def step_breakdown(env: MetaEnv, policy: Policy, tasks: Sequence[Task], episodes: int,
                   threads: int | None = 1) -> dict[str, float]:
    """One LocalSampler call (after a warm-up) with the policy's ``act`` and the vector
    env's ``reset``/``step`` timed: µs per lockstep step in ``policy``, ``env`` and the rest
    (``sampler``: the loop's own work, and the timers' few µs)."""
    timed_env = _TimedEnv(env)
    sampler = LocalSampler(timed_env, threads=threads)  # type: ignore[arg-type]
    timed = timed_policy(policy)
    try:
        for _ in range(2):  # the second call is measured
            timed.seconds = 0.0
            for vector in timed_env.vectors:
                vector.seconds = 0.0
            start = time.perf_counter()
            rollouts = sampler.sample(timed, tasks, trials=1, episodes=episodes, seed=0)
            wall = time.perf_counter() - start
    finally:
        sampler.close()
    lockstep = int(rollouts.valid.any(axis=(0, 1)).sum())  # steps with any env running
    env_s = sum(vector.seconds for vector in timed_env.vectors)
    per_step = {"policy": timed.seconds, "env": env_s, "sampler": wall - timed.seconds - env_s}
    return {"envs": len(tasks), **{k: round(v / lockstep * 1e6, 1) for k, v in per_step.items()}}


def run(env: str = "cheetah-vel", workers: int = 2, tasks: int = 20, episodes: int = 2,
        steps: int | None = None, *, repeats: int = 3, ray_address: str | None = None,
        spread: bool = False) -> dict:
    """The throughputs, their ratios and where the time goes (see the module docstring).
    ``ray_address``: an existing Ray cluster to run the workers on (default: a local Ray
    started here); ``spread``: place them with Ray's ``"SPREAD"`` strategy."""
    import ray

    from metarl.sampling.ray_sampler import RaySampler

    kwargs = {} if steps is None else {"horizon": steps}
    is_mujoco = _is_mujoco(env)
    gym_env = make(env, **kwargs, **({"backend": "gym"} if is_mujoco else {}))
    if not isinstance(gym_env.action_space, spaces.Box):
        raise ValueError(f"the sampler benchmark needs a continuous-action env, {env!r} has "
                         f"{gym_env.action_space}")
    task_list = gym_env.split_tasks("train", tasks)
    shard = task_list[:math.ceil(tasks / workers)]
    policy = benchmark_policy(int(np.prod(gym_env.observation_space.shape)),
                              int(np.prod(gym_env.action_space.shape)))
    local = LocalSampler(make(env, **kwargs), threads=1)  # as each Ray worker
    # its own sampler: one that changes its number of envs builds a new vector env
    local_shard = LocalSampler(make(env, **kwargs), threads=1)
    started_ray = not ray.is_initialized()
    if started_ray:  # room for every worker, even beyond the cores
        ray.init(**({"address": ray_address} if ray_address else
                    {"num_cpus": max(workers, os.cpu_count() or 1)}),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = RaySampler(make(env, **kwargs, **({"nthread": 1} if is_mujoco else {})),
                        workers=workers, scheduling_strategy="SPREAD" if spread else None)
    records: dict[str, object] = {}
    try:
        nodes = len(set(remote.worker_nodes()))
        runs = {"gym_loop": gym_loop(gym_env, task_list, episodes),
                "local": sampling(local, policy, task_list, episodes),
                "local_shard": sampling(local_shard, policy, shard, episodes),
                "ray": lambda: (remote.sample(policy, task_list, trials=1, episodes=episodes,
                                              seed=0), remote.last_timing)[1]}
        with Progress(total=len(runs) * (repeats + 1), desc="bench sampler",
                      unit="runs") as bar:
            seconds = best_times(runs, repeats, tick=bar.update, records=records)
        breakdown = [step_breakdown(make(env, **kwargs), policy, batch, episodes)
                     for batch in (task_list, shard)]
    finally:
        local.close()
        local_shard.close()
        remote.close()
        if started_ray:
            ray.shutdown()
    timing = cast("SampleTiming", records["ray"])
    total = tasks * episodes * gym_env.max_episode_steps
    lockstep = episodes * gym_env.max_episode_steps
    per_env = (seconds["local"] - seconds["local_shard"]) / (tasks - len(shard)) \
        if tasks > len(shard) else float("nan")
    fixed = seconds["local_shard"] - len(shard) * per_env
    return {"env": env, "workers": workers, "tasks": tasks, "episodes": episodes,
            "steps": gym_env.max_episode_steps, "env_steps": total,
            "gym_loop_steps_per_s": total / seconds["gym_loop"],
            "local_steps_per_s": total / seconds["local"],
            "ray_steps_per_s": total / seconds["ray"],
            "local_shard_steps_per_s": len(shard) * lockstep / seconds["local_shard"],
            "local_vs_gym": seconds["gym_loop"] / seconds["local"],
            "ray_vs_local": seconds["local"] / seconds["ray"],
            "ideal_ray_vs_local": seconds["local"] / seconds["local_shard"],
            "per_step_us": {"fixed": round(fixed / lockstep * 1e6, 1),
                            "per_env": round(per_env / lockstep * 1e6, 2)},
            "local_step_us": breakdown,
            "ray_breakdown": _ray_breakdown(timing),
            "ray_nodes": nodes,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _ray_breakdown(timing: SampleTiming) -> dict[str, Any]:
    """A :class:`~metarl.sampling.ray_sampler.SampleTiming` for the JSON (ms-rounded s)."""
    def r(x: float) -> float:
        return round(x, 4)

    return {"put_policy_s": r(timing.put_policy_s),
            "worker_start_s": [r(x) for x in timing.start_s],
            "worker_busy_s": [r(x) for x in timing.busy_s],
            "transfer_s": [r(x) for x in timing.return_s],
            "concatenate_s": r(timing.concatenate_s),
            "wall_s": r(timing.wall_s),
            "idle_fraction": round(timing.idle_fraction, 3),
            "result_bytes": list(timing.result_bytes)}


def _is_mujoco(name: str) -> bool:
    from metarl.envs import REGISTRY

    return name in REGISTRY and REGISTRY[name].family == "mujoco"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(*args[:1], *(int(a) for a in args[1:])), indent=2))


if __name__ == "__main__":
    main()
