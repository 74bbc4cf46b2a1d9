"""Environment-step throughput of the numpy task distributions.

For every numpy env, compare its natively batched vector env with a plain Python loop over
``num_envs`` single gymnasium envs on the same tasks. Both step through the same random
actions, drawn in one batch per step before the timings (the draw, ~10 µs for 1024 envs, was
inside them until 2026-12-04: about half of a maze's vector step, which held its ratio near
50×), and reset on episode end (the vector env resets all environments every
``max_episode_steps`` steps, as the sampler does), so the figures compare stepping only. Rates
are environment steps per second (``num_envs * steps / seconds``), the best of 5
timings (the machine may be shared); the loop is timed over ``loop_steps`` (default
``steps // 10``) steps to keep the benchmark short. The vector and loop timings take turns,
so a change in the machine's load affects both alike (``load_average`` is reported with
them); the ratio ``speedup`` is the figure to compare between runs. ``speedup_cpu`` is the
same ratio from the thread's CPU time (best of another ``repeats`` turns): on a shared
machine the wall-clock ratio favours the shorter vector timing, which more often runs
undisturbed, while CPU time does not count the time the benchmark waited for a core.

    python -m metarl.benchmarks.envs [num_envs] [steps]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from gymnasium import spaces

from metarl.envs import REGISTRY, make
from metarl.progress import Progress


def action_sampler(space: spaces.Space, n: int,
                   rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """A function drawing ``n`` random actions of ``space`` in one numpy call."""
    if isinstance(space, spaces.Discrete):
        return lambda: space.start + rng.integers(space.n, size=n)
    if isinstance(space, spaces.Box):
        low, width = space.low, space.high - space.low
        return lambda: low + width * rng.random((n, *space.shape), dtype=space.dtype)
    raise TypeError(f"unsupported action space {space}")


def vector_run(name: str, num_envs: int, steps: int,
               seed: int = 0) -> Callable[[], None]:
    """``steps`` steps of the batched vector env (warmed up), resetting every episode."""
    env = make(name)
    vec = env.vector(num_envs)
    vec.set_tasks(env.sample_tasks(num_envs, np.random.default_rng(seed)))
    sample = action_sampler(vec.single_action_space, num_envs, np.random.default_rng(seed))
    actions = [sample() for _ in range(steps)]
    vec.reset(seed=seed)
    vec.step(actions[0])  # warm-up

    def episode_loop() -> None:
        vec.reset()
        for t, action in enumerate(actions, 1):
            vec.step(action)
            if t % vec.max_episode_steps == 0:
                vec.reset()

    return episode_loop


def loop_run(name: str, num_envs: int, steps: int, seed: int = 0) -> Callable[[], None]:
    """``steps`` steps of a Python loop over ``num_envs`` single gymnasium envs."""
    envs = [make(name) for _ in range(num_envs)]
    tasks = envs[0].sample_tasks(num_envs, np.random.default_rng(seed))
    for i, (env, task) in enumerate(zip(envs, tasks, strict=True)):
        env.set_task(task)
        env.reset(seed=seed + i)
    sample = action_sampler(envs[0].action_space, num_envs, np.random.default_rng(seed))
    actions = [sample() for _ in range(steps)]

    def python_loop() -> None:
        for batch in actions:
            for env, action in zip(envs, batch, strict=True):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()

    return python_loop


def vector_rate(name: str, num_envs: int, steps: int, seed: int = 0,
                repeats: int = 5) -> float:
    """Environment steps per second of the batched vector env."""
    fn = vector_run(name, num_envs, steps, seed)
    return num_envs * steps / best_times({"vector": fn}, repeats)["vector"]


def loop_rate(name: str, num_envs: int, steps: int, seed: int = 0, repeats: int = 5) -> float:
    """Environment steps per second of a Python loop over single gymnasium envs."""
    fn = loop_run(name, num_envs, steps, seed)
    return num_envs * steps / best_times({"loop": fn}, repeats)["loop"]


def best_times(runs: dict[str, Callable[[], None]], repeats: int,
               clock: Callable[[], float] = time.perf_counter,
               tick: Callable[[], object] | None = None) -> dict[str, float]:
    """The best of ``repeats`` timings of each run by ``clock``; the runs take turns.
    ``tick()`` after each timing (progress)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, fn in runs.items():
            start = clock()
            fn()
            best[key] = min(best[key], clock() - start)
            if tick is not None:
                tick()
    return best


def run(num_envs: int = 1024, steps: int = 200, envs: list[str] | None = None, *,
        loop_steps: int | None = None, repeats: int = 5) -> dict:
    """Vector vs loop throughput for each numpy env (default: all registered ones)."""
    names = envs or [name for name, spec in REGISTRY.items() if spec.family == "numpy"]
    loop_steps = max(1, steps // 10) if loop_steps is None else loop_steps
    results = {}
    with Progress(total=len(names) * 4 * repeats, desc="bench envs", unit="timings") as bar:
        for name in names:
            runs = {"vector": vector_run(name, num_envs, steps),
                    "loop": loop_run(name, num_envs, loop_steps)}
            seconds = best_times(runs, repeats, tick=bar.update)
            cpu = best_times(runs, repeats, time.thread_time, tick=bar.update)
            vec = num_envs * steps / seconds["vector"]
            loop = num_envs * loop_steps / seconds["loop"]
            results[name] = {"vector_steps_per_s": vec, "loop_steps_per_s": loop,
                             "speedup": vec / loop,
                             "speedup_cpu": cpu["loop"] / loop_steps / (cpu["vector"] / steps)}
    return {"num_envs": num_envs, "steps": steps, "loop_steps": loop_steps, "envs": results,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> None:
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    print(json.dumps(run(*args), indent=2))


if __name__ == "__main__":
    main()
