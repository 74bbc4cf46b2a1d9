"""Environment-step throughput of the numpy task distributions.

For every numpy env, compare its natively batched vector env with a plain Python loop over
``num_envs`` single gymnasium envs on the same tasks. Both draw random actions in one batch per
step and reset on episode end (the vector env resets all environments every
``max_episode_steps`` steps, as the sampler does), so the figures compare stepping only. Rates
are environment steps per second (``num_envs * steps / seconds``), the best of 5
timings (the machine may be shared); the loop is timed over ``loop_steps`` (default
``steps // 10``) steps to keep the benchmark short.

    python -m metarl.benchmarks.envs [num_envs] [steps]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
from gymnasium import spaces

from metarl.envs import REGISTRY, make


def action_sampler(space: spaces.Space, n: int,
                   rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """A function drawing ``n`` random actions of ``space`` in one numpy call."""
    if isinstance(space, spaces.Discrete):
        return lambda: space.start + rng.integers(space.n, size=n)
    if isinstance(space, spaces.Box):
        low, width = space.low, space.high - space.low
        return lambda: low + width * rng.random((n, *space.shape), dtype=space.dtype)
    raise TypeError(f"unsupported action space {space}")


def vector_rate(name: str, num_envs: int, steps: int, seed: int = 0,
                repeats: int = 5) -> float:
    """Environment steps per second of the batched vector env."""
    env = make(name)
    vec = env.vector(num_envs)
    vec.set_tasks(env.sample_tasks(num_envs, np.random.default_rng(seed)))
    sample = action_sampler(vec.single_action_space, num_envs, np.random.default_rng(seed))
    vec.reset(seed=seed)
    vec.step(sample())  # warm-up

    def episode_loop() -> None:
        vec.reset()
        for t in range(1, steps + 1):
            vec.step(sample())
            if t % vec.max_episode_steps == 0:
                vec.reset()

    return num_envs * steps / _best_time(episode_loop, repeats)


def loop_rate(name: str, num_envs: int, steps: int, seed: int = 0, repeats: int = 5) -> float:
    """Environment steps per second of a Python loop over single gymnasium envs."""
    envs = [make(name) for _ in range(num_envs)]
    tasks = envs[0].sample_tasks(num_envs, np.random.default_rng(seed))
    for i, (env, task) in enumerate(zip(envs, tasks, strict=True)):
        env.set_task(task)
        env.reset(seed=seed + i)
    sample = action_sampler(envs[0].action_space, num_envs, np.random.default_rng(seed))

    def python_loop() -> None:
        for _ in range(steps):
            for env, action in zip(envs, sample(), strict=True):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()

    return num_envs * steps / _best_time(python_loop, repeats)


def _best_time(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(num_envs: int = 1024, steps: int = 200, envs: list[str] | None = None, *,
        loop_steps: int | None = None) -> dict:
    """Vector vs loop throughput for each numpy env (default: all registered ones)."""
    names = envs or [name for name, spec in REGISTRY.items() if spec.family == "numpy"]
    loop_steps = max(1, steps // 10) if loop_steps is None else loop_steps
    results = {}
    for name in names:
        vec = vector_rate(name, num_envs, steps)
        loop = loop_rate(name, num_envs, loop_steps)
        results[name] = {"vector_steps_per_s": vec, "loop_steps_per_s": loop,
                         "speedup": vec / loop}
    return {"num_envs": num_envs, "steps": steps, "loop_steps": loop_steps, "envs": results}


def main(argv: list[str] | None = None) -> None:
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    print(json.dumps(run(*args), indent=2))


if __name__ == "__main__":
    main()
