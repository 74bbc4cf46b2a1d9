"""Where DREAM's training time goes, against the machine's matmul rate (:mod:`metarl.agents.dream`).

The agent of the ``preset`` (default ``dream/bus``) with its replay holding ``fill`` (4)
samples of its training policy (``envs_per_iteration`` tasks, one exploration and one
exploitation episode each; ε = 1 at the start of training, so the episodes are a random
policy's). Timings, each the
median of ``repeats`` calls after one warm-up (the runs take turns, so that a change in a
shared machine's load affects them alike), with ``threads`` torch threads:

* ``exploit_step_ms``, ``explore_step_ms``: one gradient step of each policy as the agent
  takes it (``exploit_update`` / ``explore_update`` on
  ``batch_tensors(replay.sample(batch_size))``: the exploitation Q-network, the decoder and f
  with their target copies; the exploration Q-network with its target and the decoder's
  relabelling), always on the same replay batch, whose longest episodes
  (``exploit_batch_steps``, ``explore_batch_steps``) set the work, as ``batch_tensors`` cuts
  the padding beyond them;
* ``exploit_gflop_per_step``, ``explore_gflop_per_step``: the matmul FLOPs of one such call,
  forward and backward (:func:`count_flops`: ``torch.utils.flop_counter.FlopCounterMode``,
  plus the LSTMs, which run as oneDNN's ``mkldnn_rnn_layer`` on CPU, a kernel the counter
  does not know: ``2 * rows * 4H * (in + H)`` forward, twice that backward);
  ``exploit_gflop_per_s`` / ``explore_gflop_per_s`` the rate achieved;
* ``matmul_gflop_per_s``: the machine's dense matmul rate, measured in the same run and
  thread count on ``torch.addmm`` of ``matmul_shape`` ``[rows, in, out]``, the single
  largest matmul the two steps run (on ``dream/bus`` the decoder LSTM's input gates, ``[32
  * steps, 64, 512]``, or the exploitation Q-network's joint layer, ``[32 * (steps + 1),
  128, 256]``, whichever the batch's longest episodes make bigger), and ``fraction`` the
  share of it both steps achieve together (``exploit_fraction``, ``explore_fraction`` each
  alone);
* ``sample_ms``: collecting one iteration's trials (``envs`` tasks, the env's episodes per
  trial) with the training policy through ``LocalSampler``; ``env_loop_ms`` the same
  number of lockstep steps (``sample_step_calls``) of the bare vector env with random
  actions (``set_tasks``, ``reset``, ``step``), and ``sampling_overhead`` = sample /
  env loop: what the policy and the sampler add to the env;
* ``updates_per_env_step`` = ``1 / update_every``: every env step is an acting step of one of
  the two policies (the exploration or the exploitation episode), and each policy takes one
  gradient step per ``update_every`` of its own acting steps (``DREAMAgent._learn``), so an
  iteration of ``explore_env_steps + exploit_env_steps`` steps takes ``explore_env_steps /
  update_every`` exploration and ``exploit_env_steps / update_every`` exploitation steps;
* ``train_env_steps_per_s``: the rate of training these figures predict, once both replays
  are past their minimum (:func:`predicted_env_steps_per_s`: per env step, the gradient
  steps' time weighted by each policy's share of the steps, over ``update_every``, plus
  ``sample_ms`` over the sample's steps), and ``update_share`` the gradient steps' share
  of that time;
* ``iteration_ms``, ``measured_train_env_steps_per_s``: the check, ``iterations`` real
  ``train_iteration`` calls (sampling, replay, every due gradient step) with the minimum
  replays lowered to 1, timed as a whole; ``predicted_over_measured`` their ratio.

    metarl bench dream [--threads N] [--json]
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from metarl.benchmarks.mpc import matmul_gflop_per_s, median_ms_in_turns
from metarl.progress import Progress
from metarl.sampling import LocalSampler

aten = torch.ops.aten


def preset_agent(preset: str) -> tuple:
    """The agent and env of ``preset`` (a DREAM one), torch threads left alone."""
    from metarl.config import PRESETS_DIR, load_yaml
    from metarl.runs import build_run_config, make_agent

    config, env = build_run_config({**load_yaml(PRESETS_DIR / f"{preset}.yaml"), "threads": 0})
    return make_agent(config, env), env


def _rnn_flops(input_shape, w_ih_shape, w_hh_shape) -> int:
    """Forward matmul FLOPs of one LSTM layer: ``2 * rows * 4H * (in + H)``."""
    rows = int(np.prod(input_shape[:-1]))
    gates, size_in = w_ih_shape
    return 2 * rows * gates * (size_in + w_hh_shape[1])


def count_flops(fn: Callable[[], object]) -> tuple[int, tuple[int, int, int]]:
    """``(flops, (rows, in, out))`` of one call of ``fn``: its matmul FLOPs (forward and
    backward, as ``FlopCounterMode`` counts them, plus oneDNN's LSTM layers) and the shape of
    its single largest matmul (the first seen of the largest: a forward one)."""
    largest = [0, (0, 0, 0)]

    def note(flops: int, shape: tuple[int, int, int]) -> int:
        if flops > largest[0]:
            largest[:] = [flops, shape]
        return flops

    def matmul(op, a: int, b: int) -> Callable:  # a, b: the positions of the factors
        base = flop_registry[op]

        def formula(*args, out_val=None, **kwargs) -> int:
            x, w = args[a].shape, args[b].shape
            return note(base(*args, out_val=out_val, **kwargs),
                        (int(np.prod(x[:-1])), int(x[-1]), int(w[-1])))
        formula._get_raw = True
        return formula

    def rnn_forward(*args, out_shape=None, **kwargs) -> int:
        x, w_ih, w_hh = args[0], args[1], args[2]
        rows = int(np.prod(x[:-1]))
        note(2 * rows * w_ih[1] * w_ih[0], (rows, int(w_ih[1]), int(w_ih[0])))  # input gates
        return _rnn_flops(x, w_ih, w_hh)

    def rnn_backward(*args, out_shape=None, **kwargs) -> int:
        return 2 * _rnn_flops(args[0], args[1], args[2])

    mapping = {aten.mm: matmul(aten.mm, 0, 1), aten.addmm: matmul(aten.addmm, 1, 2),
               aten.bmm: matmul(aten.bmm, 0, 1), aten.baddbmm: matmul(aten.baddbmm, 1, 2),
               aten.mkldnn_rnn_layer: rnn_forward,
               aten.mkldnn_rnn_layer_backward: rnn_backward}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops(), largest[1]


def predicted_env_steps_per_s(exploit_ms: float, explore_ms: float, sample_ms: float,
                              explore_steps: int, exploit_steps: int,
                              update_every: int) -> float:
    """Env steps per second of training: each policy takes one gradient step per
    ``update_every`` of its own acting steps, and a sample of ``explore_steps +
    exploit_steps`` steps takes ``sample_ms``."""
    steps = explore_steps + exploit_steps
    ms_per_step = ((explore_steps * explore_ms + exploit_steps * exploit_ms)
                   / (steps * update_every) + sample_ms / steps)
    return 1000 / ms_per_step


def run(preset: str = "dream/bus", repeats: int = 5, threads: int = 1, fill: int = 4,
        iterations: int = 2, envs: int | None = None) -> dict:
    """The figures of the module docstring. The replay holds ``fill`` samples of the preset's
    ``envs_per_iteration`` trials; ``envs`` (default: that number) is the tasks of the timed
    sample and of the checked iterations."""
    previous = torch.get_num_threads()
    try:
        torch.manual_seed(0)
        agent, env = preset_agent(preset)
        torch.set_num_threads(threads)
        return _run(agent, env, preset, repeats, fill, iterations,
                    envs or agent.config.envs_per_iteration)
    finally:
        torch.set_num_threads(previous)


def _run(agent, env, preset, repeats, fill, iterations, envs) -> dict:
    cfg = agent.config
    episodes = env.exploration_episodes + 1
    sampler = LocalSampler(env)
    task_rng = np.random.default_rng(0)

    def sample(tasks, seed: int):
        with torch.no_grad():
            return sampler.sample(agent.training_policy(), tasks, trials=1, episodes=episodes,
                                  seed=seed)

    for i in range(fill):  # the replay: trials of the training policy
        agent.replay.add(agent.trial_entries(sample(
            env.sample_tasks(cfg.envs_per_iteration, task_rng), seed=i)))
    batch = agent.replay.sample(cfg.batch_size, np.random.default_rng(0))

    def step(fn) -> Callable[[], object]:  # the same batch every call
        return lambda: fn(agent.batch_tensors(agent.replay.sample(cfg.batch_size,
                                                             np.random.default_rng(0))),
                          torch.Generator().manual_seed(0))

    tasks = env.sample_tasks(envs, task_rng)
    rollouts = sample(tasks, seed=fill)
    valid = rollouts.valid[:, 0]  # [N, K, T]
    step_calls = [int(valid[:, k].sum(-1).max()) for k in range(episodes)]
    explore_steps = int(valid[:, :env.exploration_episodes].sum())
    exploit_steps = int(valid[:, env.exploration_episodes:].sum())
    vector = env.vector(envs)
    actions = np.random.default_rng(0).integers(agent.num_actions, size=(max(step_calls), envs))

    def env_loop() -> None:
        vector.set_tasks(tasks)
        for k, calls in enumerate(step_calls):
            vector.reset(seed=0 if k == 0 else None)
            for t in range(calls):
                vector.step(actions[t])

    timings = {"exploit_step_ms": step(agent.exploit_update),
               "explore_step_ms": step(agent.explore_update),
               "sample_ms": lambda: sample(tasks, seed=fill), "env_loop_ms": env_loop}
    exploit_flops, exploit_shape = count_flops(timings["exploit_step_ms"])
    explore_flops, explore_shape = count_flops(timings["explore_step_ms"])
    shape = max((exploit_shape, explore_shape), key=lambda s: s[0] * s[1] * s[2])
    lengths = {role: int(batch[f"{role}_length"].max()) for role in ("exploit", "explore")}
    result: dict = {
        "preset": preset, "threads": torch.get_num_threads(), "envs": envs,
        "batch_size": cfg.batch_size, "horizon": agent.horizon, "update_every": cfg.update_every,
        "exploit_batch_steps": lengths["exploit"], "explore_batch_steps": lengths["explore"],
        "load_average": round(os.getloadavg()[0], 2)}
    with Progress(total=len(timings) * (repeats + 1) + iterations, desc="bench dream",
                  unit="calls") as bar:
        ms = median_ms_in_turns(timings, repeats, tick=bar.update)
        matmul = matmul_gflop_per_s(*shape, repeats=max(20, repeats))
        iteration_ms, iteration_steps = _iterations(agent, envs, iterations, tick=bar.update)
    result.update({name: round(value, 2) for name, value in ms.items()})
    exploit_rate = exploit_flops / 1e9 / (ms["exploit_step_ms"] / 1000)
    explore_rate = explore_flops / 1e9 / (ms["explore_step_ms"] / 1000)
    both_rate = ((exploit_flops + explore_flops) / 1e9
                 / ((ms["exploit_step_ms"] + ms["explore_step_ms"]) / 1000))
    predicted = predicted_env_steps_per_s(ms["exploit_step_ms"], ms["explore_step_ms"],
                                          ms["sample_ms"], explore_steps, exploit_steps,
                                          cfg.update_every)
    update_ms = ((explore_steps * ms["explore_step_ms"] + exploit_steps * ms["exploit_step_ms"])
                 / cfg.update_every)
    result.update({
        "exploit_gflop_per_step": round(exploit_flops / 1e9, 4),
        "explore_gflop_per_step": round(explore_flops / 1e9, 4),
        "exploit_gflop_per_s": round(exploit_rate, 2),
        "explore_gflop_per_s": round(explore_rate, 2),
        "matmul_shape": list(shape), "matmul_gflop_per_s": round(matmul, 1),
        "fraction": round(both_rate / matmul, 3),
        "exploit_fraction": round(exploit_rate / matmul, 3),
        "explore_fraction": round(explore_rate / matmul, 3),
        "sample_step_calls": step_calls, "explore_env_steps": explore_steps,
        "exploit_env_steps": exploit_steps,
        "sampling_overhead": round(ms["sample_ms"] / ms["env_loop_ms"], 1),
        "updates_per_env_step": 1 / cfg.update_every,
        "train_env_steps_per_s": round(predicted, 1),
        "update_share": round(update_ms / (update_ms + ms["sample_ms"]), 3)})
    if iterations:
        measured = 1000 * iteration_steps / iteration_ms
        result.update({
            "iterations": iterations, "iteration_ms": round(iteration_ms / iterations, 1),
            "iteration_env_steps": round(iteration_steps / iterations, 1),
            "measured_train_env_steps_per_s": round(measured, 1),
            "predicted_over_measured": round(predicted / measured, 2)})
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    return result


def _iterations(agent, envs: int, iterations: int, tick: Callable[[], object]
                ) -> tuple[float, int]:
    """The total ms and env steps of ``iterations`` real training iterations of ``envs``
    trials, every due gradient step taken (the minimum replays lowered to 1)."""
    agent.config = dataclasses.replace(agent.config, envs_per_iteration=envs,
                                       exploit_min_replay=1, explore_min_replay=1)
    sampler, total_ms, total_steps = LocalSampler(agent.env), 0.0, 0
    for i in range(iterations):
        start = time.perf_counter()
        metrics = agent.train_iteration(sampler, np.random.default_rng(1000 + i))
        total_ms += 1000 * (time.perf_counter() - start)
        total_steps += int(metrics["env_steps"])
        tick()
    return total_ms, total_steps


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
