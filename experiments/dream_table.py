"""The DREAM table: held-out exploitation return of trained runs beside the exact references.

For every env of the given run dirs (``dream-bus``, ``dream-map``), on the same ``--tasks``
held-out tasks (``split_tasks("test")``, seed 0) and random streams as ``metarl eval``, one
trial each of one exploration and one exploitation episode:

* the reference policies of :mod:`metarl.reference_policies.dream`: ``oracle`` (shortest
  paths under the true bus routes, exactly optimal: 0.8), ``explore-exploit`` (rides the buses
  or reads the map, then the same shortest paths: the optimal trial) and ``random``;
* each run's policy at its last checkpoint (DREAM: z from the decoder, greedy; RL²: its
  stochastic policy, as ``metarl eval``), with its env steps, wall-clock (the sum of
  ``progress.csv``'s iteration times) and its best periodic evaluation on the way.

Mean ± standard error over tasks of the exploitation return (the exploration episode pays
nothing).

    python experiments/dream_table.py RUN_DIR... [--tasks 200] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from metarl import envs, runs
from metarl.evaluation import evaluate_policy
from metarl.reference_policies import BASELINES
from metarl.sampling import LocalSampler


def exploitation(policy, env, tasks: int) -> tuple[float, float]:
    result = evaluate_policy(policy, env, LocalSampler(env), split="test", num_tasks=tasks,
                             episodes=env.exploration_episodes + 1, trials=1, seed=0)
    return result["exploitation_return"], result["exploitation_return_stderr"]


def run_row(run_dir: str, tasks: int) -> dict:
    loaded = runs.load(run_dir)
    with (Path(run_dir) / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    evals = [float(r["eval_exploitation_return"]) for r in rows
             if r.get("eval_exploitation_return")]
    mean, stderr = exploitation(loaded.agent.policy(), loaded.env, tasks)
    return {"run": run_dir, "agent": loaded.config.agent, "env": loaded.config.env,
            "iteration": loaded.iteration, "env_steps": int(float(rows[-1]["env_steps_total"])),
            "minutes": sum(float(r["time_s"]) for r in rows) / 60,
            "best_periodic_eval": max(evals) if evals else None,
            "exploitation_return": mean, "stderr": stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run_row(run, args.tasks) for run in args.runs]
    for name in sorted({row["env"] for row in rows}):
        env = envs.make(name)
        for baseline in ("oracle", "explore-exploit", "random"):
            policy = BASELINES[name][baseline](env, episodes=env.exploration_episodes + 1)
            mean, stderr = exploitation(policy, env, args.tasks)
            rows.append({"run": None, "agent": baseline, "env": name,
                         "exploitation_return": mean, "stderr": stderr})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| env | policy | held-out exploitation return | best periodic eval | env steps "
          "| wall-clock |")
    print("|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: (r["env"], r["run"] is None)):
        best = row.get("best_periodic_eval")
        best_text = "" if best is None else f"{best:.3f}"
        minutes = "" if row["run"] is None else f"{row['minutes']:.0f} min"
        print(f"| {row['env']} | {row['agent']} | {row['exploitation_return']:.3f} ± "
              f"{row['stderr']:.3f} | {best_text} | {row.get('env_steps', '')} | {minutes} |")


if __name__ == "__main__":
    main()
