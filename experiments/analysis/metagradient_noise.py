"""Signal and noise of the meta-gradient's second-order part, per inner estimator.

At a checkpoint, samples ``--tasks`` tasks x the run's rollouts per task with the adapting
policy (pre- and post-update episodes), then for every task computes the gradient of the
post-update surrogate ``mean(log π_θ'(a|s) · A)`` w.r.t. θ through the inner step θ'(θ) of
each inner estimator, once first-order (θ' treated as θ + const) and once second-order. The
second-order part is their difference. Per estimator the table gives the norm of its mean
over tasks, the norm of its standard error (per-coordinate std over tasks / √tasks) and the
signal left after removing the noise's expected contribution, ``sqrt(max(0, |mean|² −
|se|²))``: an estimator whose signal is ~0 adds only noise to the meta-gradient.

    python experiments/analysis/metagradient_noise.py runs/promp-cheetah-vel-relu100 --tasks 40
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from report_table import print_table
from run_arguments import add_run_arguments, parse_run_arguments
from torch import Tensor
from torch.func import grad, vmap

from metarl.meta import parameters_of
from metarl.meta.rl import (
    INNER_ESTIMATORS,
    PolicyData,
    episode_data,
    inner_estimator_loss,
    log_probs,
)
from metarl.runs import load
from metarl.sampling import LocalSampler


def task_gradients(agent, data: list[PolicyData], estimator: str, first_order: bool
                   ) -> Tensor:
    """``[tasks, parameters]``: each task's post-update surrogate gradient w.r.t. θ (one
    vmapped ``grad`` over the task dimension)."""
    net, cfg = agent.net, agent.config
    inner = dataclasses.replace(agent.inner, first_order=first_order,
                                loss=inner_estimator_loss(estimator, net, cfg.discount))

    def surrogate(params, pre: tuple[tuple[Tensor, ...], ...], post: tuple[Tensor, ...]
                  ) -> Tensor:
        for episode in pre:  # one inner step per pre-update episode
            params = inner(params, episode)
        obs, actions, advantages, mask = post[:4]
        log_prob = log_probs(net, params, obs, actions)
        return (log_prob * advantages * mask).sum() / mask.sum()

    params = {n: p.detach() for n, p in parameters_of(net).items()}
    pre = tuple(d.as_tuple() for d in data[:-1])
    grads = vmap(grad(surrogate), in_dims=(None, 0, 0), randomness="same")(
        params, pre, data[-1].as_tuple())
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], 1)


def signal_and_noise(grads: Tensor) -> tuple[float, float, float]:
    """``(|mean|, |standard error|, signal)`` over the task dimension."""
    mean = grads.mean(0).norm().item()
    stderr = (grads.std(0) / grads.shape[0] ** 0.5).norm().item()
    return mean, stderr, max(0.0, mean**2 - stderr**2) ** 0.5


def measure(run_dir: Path, checkpoint: Path | None, tasks: int, seed: int
            ) -> list[list[str]]:
    run = load(run_dir, checkpoint)
    agent, env, cfg = run.agent, run.env, run.agent.config
    rollouts = LocalSampler(env).sample(
        agent.policy(), env.sample_tasks(tasks, np.random.default_rng(seed)),
        trials=cfg.rollouts_per_task, episodes=cfg.inner_steps + 1, seed=seed + 1)
    data = [episode_data(rollouts, k, cfg.discount, cfg.gae_lambda)
            for k in range(cfg.inner_steps + 1)]
    rows, first_order = [], {}
    for estimator in INNER_ESTIMATORS:
        if estimator == "lvc":  # LVC's first-order step is VPG's (same gradient at θ_old)
            first = first_order["vpg"]
        else:
            first = first_order[estimator] = task_gradients(agent, data, estimator, True)
            rows.append([run_dir.name, run.iteration, f"first-order part, {estimator}",
                         *(f"{x:.3f}" for x in signal_and_noise(first))])
        second = task_gradients(agent, data, estimator, first_order=False) - first
        rows.append([run_dir.name, run.iteration, f"second-order part, {estimator}",
                     *(f"{x:.3f}" for x in signal_and_noise(second))])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_run_arguments(parser)
    torch.set_num_threads(1)
    print_table(["run", "iteration", "meta-gradient", "norm of mean", "norm of std. error",
                 "signal"],
                (row for run_dir in args.runs
                 for row in measure(run_dir, args.checkpoint, args.tasks, args.seed)))


if __name__ == "__main__":
    main()
