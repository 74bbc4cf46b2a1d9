"""How much a trained gradient-based meta-RL policy gains from one inner step, per inner lr.

For each run (its latest checkpoint, or ``--checkpoint``), evaluates the adapting policy on
``--tasks`` held-out tasks with the run's rollouts per task, once per inner learning rate,
and prints the pre-update return, the return after one step and the gain. A policy whose
gain keeps growing past the trained lr is under-stepping (its meta-learned sensitivity is
low); one whose gain peaks at the trained lr has learned to adapt with that step.

    python experiments/analysis/inner_lr_sweep.py runs/promp-cheetah-vel-relu100 \
        --lrs 0.05 0.1 0.2 0.4
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from report_table import print_table
from run_arguments import add_run_arguments, parse_run_arguments

from metarl.evaluation import EvalRequest
from metarl.runs import load
from metarl.sampling import LocalSampler


def sweep(run_dir: Path, checkpoint: Path | None, lrs: list[float], tasks: int
          ) -> list[dict[str, float]]:
    """Pre-update return and one-step return of ``run_dir``'s agent for every inner lr."""
    run = load(run_dir, checkpoint)
    agent, trained = run.agent, run.agent.inner
    rows = []
    for lr in lrs:
        agent.inner = dataclasses.replace(trained, lr=lr)
        result = agent.evaluate(run.env, LocalSampler(run.env),
                                EvalRequest(num_tasks=tasks, episodes=2))
        pre, post = result["returns_per_episode"]
        rows.append({"iteration": run.iteration, "lr": lr, "pre": pre, "post": post})
    agent.inner = trained
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--tasks", type=int, default=20)
    args = parse_run_arguments(parser)
    torch.set_num_threads(1)
    print_table(
        ["run", "iteration", "inner lr", "pre-update", "after 1 step", "gain"],
        ([run_dir.name, r["iteration"], r["lr"], f"{r['pre']:.1f}", f"{r['post']:.1f}",
          f"{r['post'] - r['pre']:+.1f}"]
         for run_dir in args.runs
         for r in sweep(run_dir, args.checkpoint, args.lrs, args.tasks)))


if __name__ == "__main__":
    main()
