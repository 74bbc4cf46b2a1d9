"""RL² in three libraries side by side, in one run: one training iteration (sample the
iteration's trials, then PPO's update) of metarl's ``rl2`` (preset ``rl2/bandit-k5-n10``),
sb3-contrib's RecurrentPPO (preset ``sb3-recurrent-ppo/bandit-k5-n10``) and RLlib's PPO with an
LSTM (new API stack, :func:`metarl.integrations.rllib.rl2_ppo_config`, whose defaults are the
same settings), each at ``tasks`` trials of ``episodes`` pulls an iteration and ``epochs``
epochs, one torch thread. Medians of ``repeats`` iterations after one warm-up; the env steps
each library's iteration sampled, its env steps per second of training, and the bare batched
bandit's steps per second (``tasks`` environments in one numpy call) as the ceiling of
sampling. A library that is not installed is reported as such.

    metarl bench rl2-libraries [--tasks 500] [--episodes 10] [--epochs 5] [--threads 1] [--json]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch

from metarl.benchmarks import median_ms
from metarl.envs import make
from metarl.progress import Progress
from metarl.sampling import LocalSampler

ARMS = 5
LIBRARIES = ("metarl", "sb3_contrib", "rllib")
#: the learning runs' presets of the metarl agents timed here
PRESETS = {"metarl": "rl2/bandit-k5-n10", "sb3_contrib": "sb3-recurrent-ppo/bandit-k5-n10"}

#: one training iteration; returns the env steps it sampled
Iteration = Callable[[], int]


def _preset_agent(name: str, overrides: dict) -> Iteration:
    """An iteration of the agent of ``PRESETS[name]`` with ``overrides``."""
    from metarl import runs
    from metarl.config import PRESETS_DIR, load_yaml

    values = {**load_yaml(PRESETS_DIR / f"{PRESETS[name]}.yaml"), **overrides}
    config, env = runs.build_run_config(values)
    agent = runs.make_agent(config, env)
    sampler = LocalSampler(env) if agent.uses_sampler else None
    rng = np.random.default_rng(0)
    return lambda: int(agent.train_iteration(sampler, rng)["env_steps"])


def _metarl(tasks: int, episodes: int, epochs: int, threads: int) -> Iteration:
    return _preset_agent("metarl", {"tasks_per_iteration": tasks, "episodes_per_trial": episodes,
                                    "ppo_epochs": epochs, "threads": threads})


def _sb3(tasks: int, episodes: int, epochs: int, threads: int) -> Iteration:
    import sb3_contrib  # noqa: F401 - not installed: reported as such

    return _preset_agent("sb3_contrib", {
        "steps_per_iteration": tasks * episodes, "episodes_per_trial": episodes,
        "ppo_epochs": epochs, "threads": threads})


def _rllib(tasks: int, episodes: int, epochs: int, threads: int) -> Iteration:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from metarl.integrations.rllib import rl2_ppo_config

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    steps = tasks * episodes
    algo = rl2_ppo_config("bandit", episodes_per_trial=episodes, env_kwargs={"arms": ARMS},
                          train_batch_size=steps, minibatch_size=steps // 4,
                          num_epochs=epochs).build_algo()
    return lambda: int(algo.train()["env_runners"]["num_env_steps_sampled"])


def _bare_env_steps_per_s(tasks: int, episodes: int) -> float:
    env = make("bandit", arms=ARMS).vector(tasks)
    env.set_tasks(make("bandit", arms=ARMS).sample_tasks(tasks, np.random.default_rng(0)))
    env.reset(seed=0)
    actions = np.zeros(tasks, dtype=np.int64)
    calls = 200
    start = time.perf_counter()
    for _ in range(calls):
        env.step(actions)
    return tasks * calls / (time.perf_counter() - start)


def _timed(iteration: Iteration, repeats: int, tick: Callable[[], object]) -> tuple[float, int]:
    """The median milliseconds of an iteration and the env steps the last one sampled."""
    sampled: list[int] = []
    ms = median_ms(lambda: sampled.append(iteration()), repeats, warmup=1, tick=tick)
    return ms, sampled[-1]


def run(tasks: int = 500, episodes: int = 10, repeats: int = 3, threads: int = 1,
        epochs: int = 5) -> dict:
    if tasks * episodes % 50 or tasks % 4:
        raise ValueError(f"--tasks x --episodes must split over 50 environments and --tasks "
                         f"into 4 minibatches, got --tasks {tasks} --episodes {episodes}")
    builders = {"metarl": _metarl, "sb3_contrib": _sb3, "rllib": _rllib}
    previous = torch.get_num_threads()
    result: dict = {}
    try:
        with Progress(total=len(LIBRARIES) * (repeats + 1), desc="bench rl2-libraries",
                      unit="iterations") as bar:
            for name in LIBRARIES:
                try:
                    iteration = builders[name](tasks, episodes, epochs, threads)
                except ImportError as exc:
                    result[name] = f"not installed: {exc}"
                    bar.update(repeats + 1)
                    continue
                torch.set_num_threads(threads)
                ms, steps = _timed(iteration, repeats, bar.update)
                result[name] = {"iteration_ms": round(ms, 1), "env_steps": steps,
                                "env_steps_per_s": round(steps / ms * 1000)}
        result["bare_env_steps_per_s"] = round(_bare_env_steps_per_s(tasks, episodes))
    finally:
        torch.set_num_threads(previous)
    ours = result["metarl"]["iteration_ms"]
    for name in LIBRARIES[1:]:
        if isinstance(result[name], dict):
            result[f"speedup_over_{name}"] = round(result[name]["iteration_ms"] / ours, 2)
    result.update(tasks=tasks, episodes=episodes, env_steps_per_iteration=tasks * episodes,
                  threads=threads, epochs=epochs)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
