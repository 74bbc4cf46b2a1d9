"""RL² in three libraries side by side, in one run: one training iteration (sample the
iteration's trials, then PPO's update) of metarl's ``rl2``, sb3-contrib's RecurrentPPO (the
``sb3-recurrent-ppo`` agent) and RLlib's PPO with an LSTM (new API stack,
:func:`metarl.integrations.rllib.rl2_ppo_config`), each with the settings of its
bandit-k5-n10 learning run (256 recurrent units, ``tasks`` trials of ``episodes`` pulls an
iteration, ``epochs`` epochs of 4 minibatches, lr 1e-3), one torch thread. Medians of
``repeats`` iterations after one warm-up; env steps per second of training, and the bare
batched bandit's steps per second (``tasks`` environments in one numpy call) as the ceiling
of sampling. A library that is not installed is reported as such.

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


def _metarl(tasks: int, episodes: int, epochs: int) -> Callable[[], object]:
    from metarl.agents.rl2 import RL2Agent, RL2Config

    env = make("bandit", arms=ARMS)
    torch.manual_seed(0)
    agent = RL2Agent(env, RL2Config(episodes_per_trial=episodes, tasks_per_iteration=tasks,
                                    ppo_epochs=epochs))
    sampler, rng = LocalSampler(env), np.random.default_rng(0)
    return lambda: agent.train_iteration(sampler, rng)


def _sb3(tasks: int, episodes: int, epochs: int) -> Callable[[], object]:
    from metarl.agents.sb3 import SB3Agent, SB3RecurrentPPOConfig

    env = make("bandit", arms=ARMS)
    torch.manual_seed(0)
    agent = SB3Agent(env, SB3RecurrentPPOConfig(
        mode="trial", episodes_per_trial=episodes, n_envs=50,
        steps_per_iteration=tasks * episodes, lstm_size=256, num_layers=0, gae_lambda=0.3,
        lr=1e-3, ppo_epochs=epochs, minibatches=4))
    rng = np.random.default_rng(0)
    return lambda: agent.train_iteration(None, rng)


def _rllib(tasks: int, episodes: int, epochs: int) -> Callable[[], object]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from metarl.integrations.rllib import rl2_ppo_config

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    steps = tasks * episodes
    algo = rl2_ppo_config("bandit", episodes_per_trial=episodes, env_kwargs={"arms": ARMS},
                          train_batch_size=steps, minibatch_size=steps // 4,
                          num_epochs=epochs, num_envs=50).build_algo()
    return algo.train


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


def run(tasks: int = 500, episodes: int = 10, repeats: int = 3, threads: int = 1,
        epochs: int = 5) -> dict:
    if tasks * episodes % 50 or tasks % 4:
        raise ValueError(f"--tasks x --episodes must split over 50 environments and --tasks "
                         f"into 4 minibatches, got --tasks {tasks} --episodes {episodes}")
    builders = {"metarl": _metarl, "sb3_contrib": _sb3, "rllib": _rllib}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    result: dict = {}
    steps = tasks * episodes
    try:
        with Progress(total=len(LIBRARIES) * (repeats + 1), desc="bench rl2-libraries",
                      unit="iterations") as bar:
            for name in LIBRARIES:
                try:
                    iteration = builders[name](tasks, episodes, epochs)
                except ImportError as exc:
                    result[name] = f"not installed: {exc}"
                    bar.update(repeats + 1)
                    continue
                ms = median_ms(iteration, repeats, warmup=1, tick=bar.update)
                result[name] = {"iteration_ms": round(ms, 1),
                                "env_steps_per_s": round(steps / ms * 1000)}
        result["bare_env_steps_per_s"] = round(_bare_env_steps_per_s(tasks, episodes))
    finally:
        torch.set_num_threads(previous)
    ours = result["metarl"]["iteration_ms"]
    for name in LIBRARIES[1:]:
        if isinstance(result[name], dict):
            result[f"speedup_over_{name}"] = round(result[name]["iteration_ms"] / ours, 2)
    result.update(tasks=tasks, episodes=episodes, env_steps_per_iteration=steps,
                  threads=threads, epochs=epochs)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
