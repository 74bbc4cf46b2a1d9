"""MPC planning time per control step (GrBAL / ReBAL's planners, :mod:`metarl.mpc`).

``envs`` environments x ``candidates`` action sequences x ``horizon`` steps scored by the
dynamics model of the ``preset`` (default ``grbal/cheetah-crippled``: a
:class:`~metarl.nn.dynamics.DeltaMLP` of its size, normalisation included, on its env's
observations) and its env's known reward (``env.reward``). Figures, each the median of
``repeats`` plans after one warm-up (the runs take turns, so that a change in a shared
machine's load affects them alike), with ``threads`` torch threads:

* ``rs_ms``: one random-shooting plan (all environments at once, one generator per
  environment), i.e. the planner's time per control step; ``cem_ms`` the same for CEM with
  ``cem_iterations`` rounds of ``candidates``;
* ``model_gflop_per_plan``: the model's matmul FLOPs in one random-shooting plan
  (``2 * rows * in * out`` per Linear, ``rows = envs * candidates * horizon``), and
  ``rs_gflop_per_s`` / ``cem_gflop_per_s`` the rate achieved;
* ``matmul_gflop_per_s``: the machine's dense matmul rate, measured in the same run and
  thread count on ``torch.addmm`` of the model's biggest layer's shape as the planner runs
  it (a block of ``block_rows`` rows, see :func:`metarl.mpc.model_returns`'s blocking), and
  ``fraction`` / ``cem_fraction`` the achieved share of it (bar 0.3, goal 0.5);
  ``full_batch_matmul_gflop_per_s`` is the same layer on all ``envs * candidates`` rows at
  once (slower: its activations leave the cache);
* ``rs_unblocked_ms``: the plan with the rollout in one block of ``envs * candidates`` rows
  (``blocking_speedup`` = unblocked / blocked);
* ``env_loop_ms``: the naive baseline, a Python loop over the environments, each planning its
  ``candidates`` alone with the same model (``speedup_vs_env_loop`` = loop / batched);
* ``grbal_step_ms``: GrBAL's whole control step, the policy's ``act``: one inner step per
  environment on its last M transitions, then random shooting on the ``envs`` adapted models
  (``adapt_ms`` the inner steps alone).

    metarl bench mpc [--threads N] [--json]
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from metarl.benchmarks import median_ms
from metarl.mpc import CEM, CPU_BLOCK_ROWS, RandomShooting, make_score, per_env_generators
from metarl.progress import Progress
from metarl.random import BatchRNG
from metarl.types import Transition


def preset_agent(preset: str, candidates: int, horizon: int) -> tuple:
    """The agent and env of ``preset`` (a model-based one) with the planner's sizes; the
    model's normalisation fitted to a short random episode of the env."""
    from metarl.config import PRESETS_DIR, load_yaml
    from metarl.runs import build_run_config, make_agent

    values = {**load_yaml(PRESETS_DIR / f"{preset}.yaml"), "candidates": candidates,
              "plan_horizon": horizon, "threads": 0}
    config, env = build_run_config(values)
    agent = make_agent(config, env)
    vector = env.vector(1)
    obs, _ = vector.reset(seed=0)
    rows = []
    for _ in range(50):
        action = np.random.default_rng(len(rows)).uniform(-1, 1, (1, *env.action_space.shape))
        next_obs, *_ = vector.step(action)
        rows.append((obs[0], action[0], next_obs[0]))
        obs = next_obs
    agent.model.stats.fit(*(np.stack(x) for x in zip(*rows, strict=True)))
    return agent, env


def linear_flops(model: nn.Module, rows: int) -> int:
    """The matmul FLOPs of one forward pass of ``model`` on ``rows`` rows."""
    return sum(2 * rows * m.in_features * m.out_features for m in model.modules()
               if isinstance(m, nn.Linear))


def matmul_gflop_per_s(rows: int, size_in: int, size_out: int, repeats: int) -> float:
    """``torch.addmm`` (a Linear's forward) of ``[rows, size_in] x [size_in, size_out]``."""
    x, w, b = torch.randn(rows, size_in), torch.randn(size_in, size_out), torch.randn(size_out)
    out = torch.empty(rows, size_out)
    ms = median_ms(lambda: torch.addmm(b, x, w, out=out), repeats)
    return 2 * rows * size_in * size_out / (ms / 1000) / 1e9


def median_ms_in_turns(runs: dict[str, Callable[[], object]], repeats: int,
                       tick: Callable[[], object] | None = None) -> dict[str, float]:
    """The median wall time in ms of each run over ``repeats`` calls after one warm-up; the
    runs take turns, so that a change in a shared machine's load affects them alike."""
    tick = tick or (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
            tick()
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def run(envs: int = 20, candidates: int = 1000, horizon: int = 10,
        preset: str = "grbal/cheetah-crippled", cem_iterations: int = 5, repeats: int = 5,
        threads: int = 1) -> dict:
    """The figures of the module docstring."""
    previous = torch.get_num_threads()
    try:
        torch.manual_seed(0)
        agent, env = preset_agent(preset, candidates, horizon)
        torch.set_num_threads(threads)
        return _run(agent, env, envs, candidates, horizon, preset, cem_iterations, repeats)
    finally:
        torch.set_num_threads(previous)


def _run(agent, env, envs, candidates, horizon, preset, cem_iterations, repeats) -> dict:
    model = agent.model
    obs_dim, act_dim = model.obs_dim, model.act_dim
    tasks = env.split_tasks("train", envs)

    def step(obs: torch.Tensor, act: torch.Tensor, carry):
        return model.predict(obs, act), carry

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return env.reward(obs, act, next_obs, tasks)

    obs = model.stats.obs_mean.float() + torch.randn(envs, obs_dim) * model.stats.obs_std.float()
    low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(env.action_space.high, dtype=torch.float32)
    rs, cem = RandomShooting(candidates, horizon), CEM(candidates, horizon, cem_iterations)
    score = make_score(step, reward, obs)
    unblocked = make_score(step, reward, obs, block_rows=0)
    env_scores = [make_score(step, lambda s, a, s2, b=b: env.reward(s, a, s2, tasks[b:b + 1]),
                             obs[b:b + 1]) for b in range(envs)]
    policy = agent.policy()
    trial = policy.reset(tasks, 1, BatchRNG(0, np.arange(envs)))
    rng = np.random.default_rng(0)
    for t in range(agent.config.adapt_window):  # a full window of real-looking transitions
        o = obs.numpy() + 0.1 * rng.standard_normal((envs, obs_dim))
        trial = policy.observe(trial, Transition(
            o, rng.uniform(-1, 1, (envs, act_dim)), np.zeros(envs), o + 0.01, np.zeros(envs, bool),
            np.zeros(envs, bool), np.ones(envs, bool), t, 0))

    def plan(planner, scorer) -> Callable[[], object]:
        return lambda: planner.plan(scorer, envs, low, high, per_env_generators(range(envs)))

    def env_loop() -> None:
        generators = per_env_generators(range(envs))
        for b in range(envs):
            rs.plan(env_scores[b], 1, low, high, generators[b])

    block = max(1, min(candidates, CPU_BLOCK_ROWS // envs)) * envs
    biggest = max((m for m in model.modules() if isinstance(m, nn.Linear)),
                  key=lambda m: m.in_features * m.out_features)
    timings = {"rs_ms": plan(rs, score), "rs_unblocked_ms": plan(rs, unblocked),
               "env_loop_ms": env_loop, "cem_ms": plan(cem, score),
               "grbal_step_ms": lambda: policy.act(obs, trial),
               "adapt_ms": lambda: policy.adapted_model(trial)}
    hidden = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    result: dict = {"preset": preset, "envs": envs, "candidates": candidates,
                    "horizon": horizon, "obs_dim": obs_dim, "act_dim": act_dim,
                    "hidden": hidden,
                    "cem_iterations": cem_iterations, "threads": torch.get_num_threads(),
                    "block_rows": block, "load_average": round(os.getloadavg()[0], 2)}
    with Progress(total=len(timings) * (repeats + 1), desc="bench mpc", unit="plans") as bar:
        ms = median_ms_in_turns(timings, repeats, tick=bar.update)
    result.update({name: round(value, 1) for name, value in ms.items()})
    shape = (biggest.in_features, biggest.out_features)
    matmul = matmul_gflop_per_s(block, *shape, repeats=max(20, repeats))
    full = matmul_gflop_per_s(envs * candidates, *shape, repeats=max(10, repeats))
    gflop = linear_flops(model, envs * candidates * horizon) / 1e9
    rs_rate = gflop / (ms["rs_ms"] / 1000)
    cem_rate = cem_iterations * gflop / (ms["cem_ms"] / 1000)
    result.update({
        "model_gflop_per_plan": round(gflop, 6),
        "rs_gflop_per_s": round(rs_rate, 1), "cem_gflop_per_s": round(cem_rate, 1),
        "matmul_shape": [block, *shape], "matmul_gflop_per_s": round(matmul, 1),
        "fraction": round(rs_rate / matmul, 3), "cem_fraction": round(cem_rate / matmul, 3),
        "full_batch_matmul_gflop_per_s": round(full, 1),
        "blocking_speedup": round(ms["rs_unblocked_ms"] / ms["rs_ms"], 2),
        "speedup_vs_env_loop": round(ms["env_loop_ms"] / ms["rs_ms"], 2),
        "load_average_after": round(os.getloadavg()[0], 2)})
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
