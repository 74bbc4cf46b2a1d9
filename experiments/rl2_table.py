"""Reference baselines for RL² Table 1 (bandits) and Table 2 (tabular MDPs).

Prints the mean +- standard error of the trial return over held-out tasks
(``env.split_tasks("test", N, seed=0)``) for every baseline in ``metarl.reference_policies``.
Epsilon-greedy's epsilon and UCB1's c are tuned per setting on the *train* split (as RL²
tuned them), never on test. For n = 10 the exact Bayes-optimal value is added.

    python experiments/rl2_table.py                 # full table (n = 500 included)
    python experiments/rl2_table.py --json          # one JSON object
    python experiments/rl2_table.py --bandit-episodes 10 100 --mdp-episodes 10
    python experiments/rl2_table.py --bandit-episodes 10 --arms 5 --mdp-episodes \
        --rl2 runs/rl2-bandit-k5-n10      # add trained RL² runs on the same test tasks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from metarl import envs
from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.reference_policies import (
    BASELINES,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    UCB1Policy,
    belief_value,
    run_policy,
)

EPSILONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
UCB_CS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: RL² (Duan et al. 2016) values quoted in the issue; the rest of its tables is not copied.
PAPER = {("bandit", 10, 5): {"random": 5.0, "gittins": 6.6},
         ("bandit", 100, 5): {"gittins": 78.3},
         ("tabular-mdp", 10, None): {"random": 100.1, "psrl": 138.1}}
#: RL²'s own figures (Table 1 and 2 of the paper) for the settings we reproduce.
PAPER_RL2 = {("bandit", 10, 5): 6.7, ("bandit", 10, 10): 6.7, ("bandit", 100, 5): 78.7,
             ("bandit", 100, 10): 83.5, ("tabular-mdp", 10, None): 156.2,
             ("tabular-mdp", 25, None): 445.7}
EXACT_MAX_EPISODES = 10


@dataclass
class Row:
    """One baseline in one setting."""

    env: str
    episodes: int
    arms: int | None
    baseline: str
    mean: float
    se: float
    hyper: dict[str, float] = field(default_factory=dict)
    paper: float | None = None
    note: str = ""


def mean_se(returns: np.ndarray) -> tuple[float, float]:
    """Mean and standard error over tasks (trials of a task averaged first)."""
    per_task = returns.mean(axis=1)
    return float(per_task.mean()), float(per_task.std(ddof=1) / np.sqrt(len(per_task)))


def tune(env: MetaEnv, build: Callable[[float], Policy], grid: Sequence[float],
         episodes: int, args: argparse.Namespace) -> float:
    """The grid value with the best mean return on the train split."""
    tasks = env.split_tasks("train", args.tune_tasks, seed=0)
    scores = [run_policy(build(v), env, tasks, episodes, trials=args.tune_trials, seed=1).mean()
              for v in grid]
    return grid[int(np.argmax(scores))]


def bandit_policies(env: MetaEnv, episodes: int, args: argparse.Namespace
                    ) -> dict[str, tuple[Policy, dict[str, float]]]:
    """Every bandit baseline, with epsilon and c tuned on the train split."""
    arms = int(env.action_space.n)
    eps = tune(env, lambda e: EpsilonGreedyPolicy(arms, epsilon=e), EPSILONS, episodes, args)
    c = tune(env, lambda v: UCB1Policy(arms, c=v), UCB_CS, episodes, args)
    factories = BASELINES["bandit"]
    gittins = factories["gittins"](env, episodes)
    return {
        "random": (factories["random"](env, episodes), {}),
        "greedy": (factories["greedy"](env, episodes), {}),
        "greedy-empirical": (GreedyPolicy(arms, prior=None), {}),
        "epsilon-greedy": (factories["epsilon-greedy"](env, episodes, epsilon=eps),
                           {"epsilon": eps}),
        "ucb1": (factories["ucb1"](env, episodes, c=c), {"c": c}),
        "thompson": (factories["thompson"](env, episodes), {}),
        "gittins": (gittins, {"gamma": round(gittins.gamma, 6)}),
    }


def evaluate(name: str, episodes: int, arms: int | None, args: argparse.Namespace) -> list[Row]:
    """All baselines of one setting on the test split."""
    env = envs.make(name, arms=arms) if arms else envs.make(name)
    if name == "bandit":
        policies = bandit_policies(env, episodes, args)
    else:
        policies = {b: (f(env, episodes), {}) for b, f in BASELINES[name].items()}
    tasks = env.split_tasks("test", args.tasks, seed=0)
    paper = PAPER.get((name, episodes, arms), {})
    rows = []
    for baseline, (policy, hyper) in policies.items():
        returns = run_policy(policy, env, tasks, episodes, trials=args.trials, seed=0)
        rows.append(Row(name, episodes, arms, baseline, *mean_se(returns), hyper,
                        paper.get(baseline)))
    if name == "bandit" and episodes <= EXACT_MAX_EPISODES:
        rows.append(Row(name, episodes, arms, "bayes-optimal", belief_value(arms, episodes),
                        0.0, note="exact expectation (dynamic programming)"))
    return rows


def rl2_rows(run_dirs: Sequence[str], args: argparse.Namespace) -> list[Row]:
    """Trained RL² runs evaluated on the same held-out tasks as the baselines."""
    import metarl

    rows = []
    for spec in run_dirs:
        run_dir, episodes = _run_and_episodes(spec)
        run = metarl.load(run_dir)
        name, arms = run.config.env, run.config.env_kwargs.get("arms")
        episodes = episodes or run.config.agent_config.episodes_per_trial
        tasks = run.env.split_tasks("test", args.tasks, seed=0)
        returns = run_policy(run.agent.policy(), run.env, tasks, episodes, trials=args.trials,
                             seed=0)
        rows.append(Row(name, episodes, arms, "rl2 (ours)", *mean_se(returns),
                        paper=PAPER_RL2.get((name, episodes, arms)),
                        note=f"{run_dir} @ iteration {run.iteration}"))
    return rows


def _run_and_episodes(spec: str) -> tuple[str, int | None]:
    """``RUN_DIR`` or ``RUN_DIR:N`` (evaluate with N episodes per trial, not the run's)."""
    run_dir, _, episodes = spec.rpartition(":")
    if run_dir and episodes.isdigit() and int(episodes) > 0:
        return run_dir, int(episodes)
    return spec, None


def format_table(rows: Sequence[Row]) -> str:
    """One line per setting and baseline."""
    lines = [f"{'env':<12}{'n':>5}{'k':>4}  {'baseline':<17}{'mean':>9} {'± se':<8}"
             f"{'RL² paper':>10}  hyperparameters / notes"]
    for r in rows:
        paper = "" if r.paper is None else f"{r.paper:.1f}"
        hyper = ", ".join([f"{k}={v:g}" for k, v in r.hyper.items()] + [r.note] * bool(r.note))
        lines.append(f"{r.env:<12}{r.episodes:>5}{r.arms or '':>4}  {r.baseline:<17}"
                     f"{r.mean:>9.2f} ± {r.se:<6.2f}{paper:>10}  {hyper}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tasks", type=int, default=1000, help="held-out test tasks")
    parser.add_argument("--trials", type=int, default=1, help="trials per test task")
    parser.add_argument("--tune-tasks", type=int, default=1000, help="train tasks for tuning")
    parser.add_argument("--tune-trials", type=int, default=2, help="trials per train task")
    parser.add_argument("--bandit-episodes", type=int, nargs="*", default=[10, 100, 500])
    parser.add_argument("--arms", type=int, nargs="*", default=[5, 10])
    parser.add_argument("--mdp-episodes", type=int, nargs="*", default=[10, 25, 50])
    parser.add_argument("--rl2", nargs="*", default=[], metavar="RUN_DIR",
                        help="trained RL² run directories to evaluate on the same tasks; "
                             "RUN_DIR:N evaluates with N episodes per trial")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = [("bandit", n, k) for n in args.bandit_episodes for k in args.arms]
    settings += [("tabular-mdp", n, None) for n in args.mdp_episodes]
    rows, seconds, start = [], {}, time.perf_counter()
    for name, n, k in settings:
        tic = time.perf_counter()
        rows += evaluate(name, n, k, args)
        seconds[f"{name} n={n}" + (f" k={k}" if k else "")] = round(time.perf_counter() - tic, 2)
        print(f"done {name} n={n} k={k} in {seconds[list(seconds)[-1]]:.1f}s", file=sys.stderr)
    rows += rl2_rows(args.rl2, args)
    total = round(time.perf_counter() - start, 2)
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "seconds": seconds,
                          "total_seconds": total, "test_tasks": args.tasks}, indent=1))
    else:
        print(format_table(rows))
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
        print(f"\nwall time {total:.1f}s: {timing}")


if __name__ == "__main__":
    main()
