"""`metarl bench dream`: its FLOP counter against known answers, its schedule against the
agent's, and (marked bench) a short run of the benchmark."""

import numpy as np
import pytest
import torch
from torch import nn

from metarl.benchmarks.dream import count_flops, predicted_env_steps_per_s, preset_agent
from metarl.sampling import LocalSampler


def test_count_flops_of_a_linear_and_an_lstm_forward_backward():
    rows, size_in, size_out = 12, 5, 7
    layer, x = nn.Linear(size_in, size_out), torch.randn(rows, size_in, requires_grad=True)
    flops, largest = count_flops(lambda: layer(x).sum().backward())
    assert flops == 6 * rows * size_in * size_out  # forward, grad of input, grad of weight
    assert largest == (rows, size_in, size_out)
    # oneDNN's LSTM kernel on CPU, or the native one: 2 * rows * 4H * (in + H) forward,
    # twice that backward (h0 needs its gradient too, so both paths count every step)
    batch, steps, size_in, hidden = 3, 4, 5, 6
    lstm = nn.LSTM(size_in, hidden, batch_first=True)
    x = torch.randn(batch, steps, size_in, requires_grad=True)
    h0, c0 = (torch.zeros(1, batch, hidden, requires_grad=True) for _ in range(2))
    flops, largest = count_flops(lambda: lstm(x, (h0, c0))[0].sum().backward())
    assert flops == 6 * batch * steps * 4 * hidden * (size_in + hidden)
    assert largest == (batch * steps, size_in, 4 * hidden)


def test_the_predicted_rate_follows_the_agents_schedule():
    # 10 exploration + 30 exploitation steps: 10 / 4 and 30 / 4 gradient steps of 8 and 20 ms
    ms_per_step = (10 * 8 + 30 * 20) / (40 * 4) + 40 / 40
    assert predicted_env_steps_per_s(20, 8, 40, 10, 30, 4) == pytest.approx(1000 / ms_per_step)
    # the agent: one gradient step per `update_every` acting steps of each policy, and every
    # env step is an acting step of one of them, so 1 / update_every per env step in all
    agent, env = preset_agent("dream/bus")
    agent.config.envs_per_iteration, agent.config.batch_size = 2, 2
    agent.config.exploit_min_replay = agent.config.explore_min_replay = 1
    metrics = agent.train_iteration(LocalSampler(env), np.random.default_rng(0))
    every = agent.config.update_every
    assert agent.steps["explore"] + agent.steps["exploit"] == metrics["env_steps"]
    assert agent.updates == {role: agent.steps[role] // every for role in agent.steps}


def test_the_benchmark_is_registered(capsys):
    from metarl.cli import BENCHMARKS, main

    assert BENCHMARKS["dream"] == "metarl.benchmarks.dream"
    assert main(["bench", "dream", "--tasks", "3"]) == 2
    assert "benchmark 'dream' does not take --tasks" in capsys.readouterr().err


@pytest.mark.bench
def test_the_benchmark_runs_and_counts_plausible_flops():
    from metarl.benchmarks.dream import run

    result = run(repeats=1, iterations=1, envs=4)
    for key in ("exploit_step_ms", "explore_step_ms", "sample_ms", "env_loop_ms",
                "exploit_gflop_per_step", "explore_gflop_per_step", "exploit_gflop_per_s",
                "explore_gflop_per_s", "matmul_gflop_per_s", "fraction", "exploit_fraction",
                "explore_fraction", "sampling_overhead", "train_env_steps_per_s",
                "iteration_ms", "measured_train_env_steps_per_s", "predicted_over_measured"):
        assert result[key] > 0, key
    assert result["threads"] == 1 and result["updates_per_env_step"] == 0.25
    # the exploitation step runs the decoder, f and two Q-networks (online and target); the
    # exploration step one Q-network pair and the decoder's forward pass
    assert 0 < result["explore_gflop_per_step"] < result["exploit_gflop_per_step"] < 10
    # at least the online exploitation Q-network's joint layer, forward and backward
    rows = result["batch_size"] * (result["exploit_batch_steps"] + 1)
    assert result["exploit_gflop_per_step"] * 1e9 > 6 * rows * (64 + 64) * 256
    rows, size_in, size_out = result["matmul_shape"]
    assert rows >= result["batch_size"] and size_in * size_out >= 128 * 256
    assert result["fraction"] < 2  # not above the machine's matmul rate (some noise allowed)
