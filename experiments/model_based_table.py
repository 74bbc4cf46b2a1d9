"""The model-based table: GrBAL, ReBAL, MB-MPC (+ dynamic evaluation) on held-out cripplings.

For each run dir, on the same ``--tasks`` held-out tasks (``split_tasks("test")``: the joint
/ leg no training task disables) and the same random streams:

* ``held_out``: the return of a 200-step episode crippled from the start;
* ``break``: the robot is intact until step ``T/2`` and crippled from there on
  (``env.cripple_at``): the return before and after the break, the case where adapting at
  every step matters.

Mean ± standard error over tasks. Each method is evaluated as it was trained (MB-MPC without
adaptation, MB-MPC + dynamic evaluation, GrBAL, ReBAL adapting at every step).

And why: ``prediction``, the model's one-step error on the held-out episodes (MSE of the
normalised state delta, steps ``M..T-1``) as the planner sees it without adaptation (θ; for
ReBAL a fresh hidden state) and adapted (the inner step from θ on the ``M`` transitions
before the step, with the run's ``inner_lr``, also for an MB-MPC model trained without
it; for ReBAL the hidden state run from zero over those ``M`` transitions, as its policy
runs it).

    python experiments/model_based_table.py RUN_DIR... [--tasks 20] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from metarl import runs
from metarl.meta import InnerLoop, adapt_online
from metarl.nn.dynamics import RecurrentDelta
from metarl.sampling import LocalSampler
from metarl.types import Rollouts


def stats(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


@torch.no_grad()
def prediction_errors(agent, rollouts: Rollouts, chunk: int = 256) -> dict[str, float]:
    """One-step errors on ``rollouts`` without and with adaptation (module docstring)."""
    model, window = agent.model, agent.config.adapt_window
    obs, act, nxt = (torch.as_tensor(x[:, 0, 0], dtype=torch.float32) for x in (
        rollouts.observations, rollouts.actions, rollouts.next_observations))  # [N, T, ...]
    target = model.stats.normalised_delta(obs, nxt)[:, window:]

    def error(predicted: torch.Tensor) -> float:
        return float((model.stats.normalised_delta(obs[:, window:], predicted) - target)
                     .square().mean())

    steps = obs.shape[1]
    if isinstance(model, RecurrentDelta):
        fresh = model.step(model.initial_state(obs.shape[:1]), obs[:, window:].transpose(0, 1),
                           act[:, window:].transpose(0, 1))[1].transpose(0, 1)
        # the state run from zero over the M steps before each step, as the policy runs it
        seqs = [torch.stack([x[:, t - window:t + 1] for t in range(window, steps)], 1)
                .flatten(0, 1) for x in (obs, act)]  # [N * (T - M), M + 1, ...]
        _, over_window = model.run(model.initial_state(seqs[0].shape[:1]), *seqs)
        return {"without": error(fresh),
                "adapted": error(over_window[:, -1].reshape(obs[:, window:].shape))}
    theta = dict(model.named_parameters())
    inner = agent.inner or InnerLoop(model.loss, lr=agent.config.inner_lr)
    windows = [torch.stack([x[:, t - window:t] for t in range(window, steps)], 1)
               .flatten(0, 1) for x in (obs, act, nxt)]  # [N * (T - M), M, ...]
    query = [x[:, window:].flatten(0, 1)[:, None] for x in (obs, act)]
    predicted = []
    for start in range(0, len(query[0]), chunk):
        part = slice(start, start + chunk)
        params = adapt_online(model, theta, inner, [w[part] for w in windows])
        predicted.append(model.predict_per_env(params, query[0][part], query[1][part]))
    adapted = torch.cat(predicted)[:, 0].reshape(target.shape)
    return {"without": error(model.predict(obs[:, window:], act[:, window:])),
            "adapted": error(adapted)}


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
        if not overrides:
            result["prediction"] = prediction_errors(loaded.agent, rollouts)
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
    print("| run | agent | adaptation | held-out return | before break | after break | "
          "one-step error without / adapted |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{r[k][0]:.1f} ± {r[k][1]:.1f}" for k in ("held_out", "before_break",
                                                          "after_break")]
        error = f"{r['prediction']['without']:.4f} / {r['prediction']['adapted']:.4f}"
        print(f"| {r['run']} | {r['agent']} | {r['adaptation']} | {' | '.join(cells)} | "
              f"{error} |")


if __name__ == "__main__":
    main()
