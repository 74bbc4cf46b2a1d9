"""Sampler throughput on a MuJoCo task distribution: gymnasium loop vs LocalSampler vs Ray.

One workload, ``tasks`` tasks x 1 trial x ``episodes`` episodes x ``steps`` steps (default: the
env's horizon), timed three ways, in environment steps per second. Each figure is the best of
``repeats`` timings after a warm-up, and the three take turns so that a shared machine's load
affects them alike (``load_average`` is reported with them):

* ``gym_loop_steps_per_s``: a plain loop over the workload's episodes with one gymnasium
  single env (the reference backend) and uniform random actions;
* ``local_steps_per_s``: :class:`~metarl.sampling.LocalSampler` on the natively batched vector
  env with a (64, 64) tanh Gaussian MLP policy (acting through its numpy snapshot, see
  :mod:`metarl.nn.mlp`), one policy call per step for all envs (one
  MuJoCo and one torch thread);
* ``ray_steps_per_s``: :class:`~metarl.sampling.RaySampler` with ``workers`` actors (one MuJoCo
  and one torch thread each), timed after the workers are up and have sampled once.

Ray's figure cannot beat the local one unless ``workers`` cores are free: with Linux's
autogroup scheduling, all processes started from one session share one CPU share.

    metarl bench sampler --env cheetah-vel --workers 2 [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces

from metarl.envs import MetaEnv, make
from metarl.nn import GaussianMLP, GaussianMLPPolicy
from metarl.progress import Progress
from metarl.sampling import LocalSampler, Sampler
from metarl.types import Task


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


def sampling(sampler: Sampler, policy: GaussianMLPPolicy, tasks: Sequence[Task],
             episodes: int) -> Callable[[], None]:
    """The workload as one ``sampler.sample`` call."""
    return lambda: sampler.sample(policy, tasks, trials=1, episodes=episodes, seed=0)


def best_times(runs: dict[str, Callable[[], None]], repeats: int,
               tick: Callable[[], object] | None = None) -> dict[str, float]:
    """The best of ``repeats`` timings of each run after a warm-up call; the runs take turns,
    so a change in the machine's load affects them alike. ``tick()`` after each call
    (progress)."""
    tick = tick or (lambda: None)
    for fn in runs.values():
        fn()
        tick()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
            tick()
    return best


def run(env: str = "cheetah-vel", workers: int = 2, tasks: int = 20, episodes: int = 2,
        steps: int | None = None, *, repeats: int = 3) -> dict:
    """The three throughputs and their ratios (see the module docstring)."""
    import ray

    from metarl.sampling.ray_sampler import RaySampler

    kwargs = {} if steps is None else {"horizon": steps}
    is_mujoco = _is_mujoco(env)
    gym_env = make(env, **kwargs, **({"backend": "gym"} if is_mujoco else {}))
    if not isinstance(gym_env.action_space, spaces.Box):
        raise ValueError(f"the sampler benchmark needs a continuous-action env, {env!r} has "
                         f"{gym_env.action_space}")
    task_list = gym_env.split_tasks("train", tasks)
    policy = benchmark_policy(int(np.prod(gym_env.observation_space.shape)),
                              int(np.prod(gym_env.action_space.shape)))
    local = LocalSampler(make(env, **kwargs), threads=1)  # as each Ray worker
    started_ray = not ray.is_initialized()
    if started_ray:  # room for every worker, even beyond the cores
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    remote = RaySampler(make(env, **kwargs, **({"nthread": 1} if is_mujoco else {})),
                        workers=workers)
    try:
        with Progress(total=3 * (repeats + 1), desc="bench sampler", unit="runs") as bar:
            seconds = best_times({"gym_loop": gym_loop(gym_env, task_list, episodes),
                                  "local": sampling(local, policy, task_list, episodes),
                                  "ray": sampling(remote, policy, task_list, episodes)},
                                 repeats, tick=bar.update)
    finally:
        local.close()
        remote.close()
        if started_ray:
            ray.shutdown()
    total = tasks * episodes * gym_env.max_episode_steps
    rates = {f"{name}_steps_per_s": total / value for name, value in seconds.items()}
    return {"env": env, "workers": workers, "tasks": tasks, "episodes": episodes,
            "steps": gym_env.max_episode_steps, "env_steps": total, **rates,
            "local_vs_gym": seconds["gym_loop"] / seconds["local"],
            "ray_vs_local": seconds["local"] / seconds["ray"],
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _is_mujoco(name: str) -> bool:
    from metarl.envs import REGISTRY

    return name in REGISTRY and REGISTRY[name].family == "mujoco"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(*args[:1], *(int(a) for a in args[1:])), indent=2))


if __name__ == "__main__":
    main()
