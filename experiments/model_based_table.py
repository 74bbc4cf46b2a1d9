"""The model-based table: GrBAL, ReBAL, MB-MPC (+ dynamic evaluation) on held-out cripplings.

For each run dir, on the same ``--tasks`` held-out tasks (``split_tasks("test")``: the joint
/ leg no training task disables) and the same random streams:

* ``held_out``: the return of a 200-step episode crippled from the start;
* ``break``: the robot is intact until step ``T/2`` and crippled from there on
  (``env.cripple_at``): the return before and after the break, the case where adapting at
  every step matters.

Mean ± standard error over tasks. Each method is evaluated as it was trained (MB-MPC without
adaptation, MB-MPC + dynamic evaluation, GrBAL, ReBAL adapting at every step).

    python experiments/model_based_table.py RUN_DIR... [--tasks 20] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from metarl import runs
from metarl.sampling import LocalSampler


def stats(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def evaluate(run_dir: str, tasks: int, seed: int) -> dict:
    """The held-out and the break figures of one run."""
    loaded = runs.load(run_dir)
    horizon = int(loaded.env.max_episode_steps)
    result = {"run": run_dir, "agent": loaded.config.agent, "iteration": loaded.iteration,
              "adaptation": loaded.config.agent_config.adaptation}
    for case, overrides in (("held_out", {}), ("break", {"env.cripple_at": horizon // 2})):
        if overrides:
            loaded = runs.load(run_dir, overrides=overrides)
        env = loaded.env
        start = time.time()
        rollouts = LocalSampler(env).sample(loaded.agent.policy(),
                                            env.split_tasks("test", tasks, seed=seed),
                                            episodes=1, seed=seed + 1)
        rewards = rollouts.rewards[:, 0, 0]  # [N, T]
        result[case] = stats(rewards.sum(-1))
        result[f"{case}_seconds"] = round(time.time() - start, 1)
        if overrides:
            result["before_break"] = stats(rewards[:, :horizon // 2].sum(-1))
            result["after_break"] = stats(rewards[:, horizon // 2:].sum(-1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [evaluate(run, args.tasks, args.seed) for run in args.runs]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| run | agent | adaptation | held-out return | before break | after break |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{r[k][0]:.1f} ± {r[k][1]:.1f}" for k in ("held_out", "before_break",
                                                          "after_break")]
        print(f"| {r['run']} | {r['agent']} | {r['adaptation']} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
