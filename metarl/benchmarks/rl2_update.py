"""Where an RL² iteration's time goes, with nn.GRU and the layer-normalised GRU.

On tabular-mdp (``tasks`` trials of ``episodes`` × 10 steps, GRU of 256 units, one torch
thread): the time to sample one iteration's trials, the time of one PPO update (``epochs``
× 4 minibatches, policy and value nets), the share of sampling in the iteration, and one
forward-backward pass of the bare recurrent core over a minibatch (a quarter of the
trials). Medians of ``repeats`` calls after one warm-up. The layer-normalised GRU is timed
twice: as is, and with ``second_thread`` (the value net's step and half of each batched
forward pass on a second thread), whose speed-up needs a second free core.

    metarl bench rl2-update [--tasks 250] [--episodes 10] [--epochs 5] [--cores NAME ...] [--json]

The n = 10 MDP preset's update is ``--tasks 625 --epochs 1`` (1250 before 2026-12-01).
``--cores`` times only the named cores (of ``CORES``); a ratio is reported when both of its
cores were timed, e.g. ``--cores layer_norm_gru layer_norm_gru_second_thread`` for the
second thread's speed-ups alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from metarl.agents.rl2 import RL2Agent, RL2Config
from metarl.benchmarks import median_ms
from metarl.envs import make
from metarl.progress import Progress
from metarl.sampling import LocalSampler

CORES = {"gru": {}, "layer_norm_gru": {"layer_norm": True},
         # the same core with a second thread (a second core)
         "layer_norm_gru_second_thread": {"layer_norm": True, "second_thread": True}}


def core_timings(core: dict, tasks: int, episodes: int, repeats: int, epochs: int,
                 tick: Callable[[], object] | None = None) -> dict:
    """The timings of one core; ``tick()`` after each timed call (``3 * (repeats + 1) + 1``
    calls, for progress)."""
    env = make("tabular-mdp")
    torch.manual_seed(0)
    agent = RL2Agent(env, RL2Config(episodes_per_trial=episodes, tasks_per_iteration=tasks,
                                    ppo_epochs=epochs, **core))
    sampler, task_list = LocalSampler(env), env.sample_tasks(tasks, np.random.default_rng(0))

    def sample():
        return sampler.sample(agent.policy(), task_list, episodes=episodes, seed=0)

    sequences = sample().trial_sequences()
    if tick is not None:
        tick()
    inputs = agent.inputs.from_sequences(sequences)[: max(1, tasks // 4)]

    def core_pass():
        outputs, _ = agent.policy_net.core(inputs)
        outputs.sum().backward()

    sample_ms = median_ms(sample, repeats, warmup=1, tick=tick)
    update_ms = median_ms(lambda: agent.update(sequences), repeats, warmup=1, tick=tick)
    return {"sample_ms": round(sample_ms, 1), "update_ms": round(update_ms, 1),
            "sample_share": round(sample_ms / (sample_ms + update_ms), 3),
            "core_forward_backward_ms": round(median_ms(core_pass, repeats, warmup=1,
                                                        tick=tick), 1)}


def run(tasks: int = 250, episodes: int = 10, repeats: int = 3, threads: int = 1,
        epochs: int = 5, cores: list[str] | None = None) -> dict:
    names = list(CORES) if not cores else list(dict.fromkeys(cores))
    if unknown := [name for name in names if name not in CORES]:
        raise ValueError(f"unknown core {unknown[0]!r}; valid cores: {', '.join(CORES)}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with Progress(total=len(names) * (3 * (repeats + 1) + 1), desc="bench rl2-update",
                      unit="calls") as bar:
            result = {name: core_timings(CORES[name], tasks, episodes, repeats, epochs,
                                         tick=bar.update) for name in names}
    finally:
        torch.set_num_threads(previous)
    result.update(_ratios(result))
    result.update(tasks=tasks, episodes=episodes, threads=threads, epochs=epochs)
    return result


RATIOS = {  # name: (numerator core, denominator core, timing)
    "core_ratio": ("layer_norm_gru", "gru", "core_forward_backward_ms"),
    "second_thread_sample_speedup": ("layer_norm_gru", "layer_norm_gru_second_thread",
                                     "sample_ms"),
    "second_thread_update_speedup": ("layer_norm_gru", "layer_norm_gru_second_thread",
                                     "update_ms"),
}


def _ratios(timings: dict) -> dict:
    """The ratios of ``RATIOS`` whose two cores were both timed."""
    return {name: round(timings[top][key] / timings[bottom][key], 2)
            for name, (top, bottom, key) in RATIOS.items()
            if top in timings and bottom in timings}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
