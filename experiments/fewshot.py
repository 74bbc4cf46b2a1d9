"""Few-shot result tables: train each learner per setting, then evaluate on held-out tasks.

Trains with ``metarl train`` (resuming runs that exist), evaluates each run on 600 held-out
tasks (95% confidence intervals) and writes the results as JSON lines and a Markdown table::

    python experiments/fewshot.py sinusoid --learners maml fomaml meta-sgd anil reptile cnp \\
        --shots 5 10 20 --iterations 30000 --eval-steps 1 10
    python experiments/fewshot.py omniglot --learners protonet --ways 5 20 --shots 1 \\
        --eval-shots 1 5 --iterations 800 --set queries=5 hidden=32 meta_batch=8
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import metarl
from metarl.evaluation import EvalRequest


def train(learner: str, dataset: str, run_dir: Path, iterations: int, sets: list[str]) -> float:
    """Train (or resume) one run; returns its total training seconds (from progress.csv)."""
    command = [sys.executable, "-m", "metarl.cli", "train", learner, dataset,
               "--run-dir", str(run_dir), "--iterations", str(iterations),
               "--set", "eval_tasks=600", "threads=1", *sets]
    if (run_dir / "checkpoints").is_dir():
        command.append("--resume")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with (run_dir / "progress.csv").open() as handle:
        return sum(float(row["time_s"]) for row in csv.DictReader(handle))


def evaluate(run_dir: Path, steps: int | None, num_tasks: int, shots: int | None) -> dict:
    run = metarl.load(run_dir)
    config = getattr(run.agent.learner, "config", None)
    if steps is not None and hasattr(config, "eval_inner_steps"):
        config.eval_inner_steps = steps
    request = EvalRequest(num_tasks=num_tasks, seed=run.config.trainer.seed)
    result = run.agent.evaluate(run.env, None, request, shots=shots)
    return {**result, "eval_inner_steps": getattr(config, "eval_inner_steps", None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--learners", nargs="+", required=True)
    parser.add_argument("--shots", nargs="+", type=int, default=[1])
    parser.add_argument("--ways", nargs="+", type=int, default=[None])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-steps", nargs="+", type=int, default=[None],
                        help="inner steps at evaluation (gradient-based learners)")
    parser.add_argument("--num-tasks", type=int, default=600)
    parser.add_argument("--eval-shots", nargs="+", type=int, default=[None],
                        help="support shots at evaluation (default: as trained)")
    parser.add_argument("--runs", default="runs/fewshot")
    parser.add_argument("--out", default=None, help="JSON lines file (default: stdout)")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value for training")
    args = parser.parse_args()
    out = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115
    for learner in args.learners:
        for ways in args.ways:
            for shots in args.shots:
                name = f"{learner}-{args.dataset}" + (f"-{ways}way" if ways else "") + \
                    f"-{shots}shot"
                run_dir = Path(args.runs) / name
                sets = [f"shots={shots}", *([f"ways={ways}"] if ways else []), *args.set]
                seconds = train(learner, args.dataset, run_dir, args.iterations, sets)
                steps_list = args.eval_steps if learner not in ("protonet", "matchingnet",
                                                                "cnp") else [None]
                for steps in steps_list:
                    for eval_shots in args.eval_shots:
                        result = evaluate(run_dir, steps, args.num_tasks, eval_shots)
                        row = {"learner": learner, "dataset": args.dataset, "ways": ways,
                               "train_shots": shots, "iterations": args.iterations,
                               "train_seconds": round(seconds, 1), **result}
                        print(json.dumps(row), file=out, flush=True)


if __name__ == "__main__":
    main()
