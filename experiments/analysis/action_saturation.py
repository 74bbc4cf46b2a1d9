"""How saturated a gradient-based meta-RL policy's pre-update actions are, per checkpoint.

For every checkpoint of each run, samples pre-update episodes on ``--tasks`` held-out tasks
with the meta-parameters and prints the policy's σ, the mean |μ| of its action means on the
visited states in units of the action bound, and the fraction of action coordinates whose
mean lies beyond the bound by more than 2σ (the env clips there, so the exploration noise
of those coordinates no longer changes the reward and carries no policy-gradient signal).

    python experiments/analysis/action_saturation.py runs/maml-trpo-point-nav-xavier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from report_table import print_table

from metarl.nn import GaussianMLPPolicy
from metarl.runs import load
from metarl.sampling import LocalSampler


def saturation(run_dir: Path, checkpoint: Path, tasks: int, trials: int) -> dict[str, float]:
    """σ, mean |μ| / bound and the saturated fraction for one checkpoint."""
    run = load(run_dir, checkpoint)
    net, env = run.agent.net, run.env
    rollouts = LocalSampler(env).sample(GaussianMLPPolicy(net), env.split_tasks("test", tasks),
                                        trials=trials, episodes=1, seed=0)
    valid = rollouts.valid.reshape(-1)
    obs = torch.as_tensor(rollouts.observations.reshape(valid.size, -1)[valid])
    with torch.no_grad():
        mean, log_std = net(obs).chunk(2, -1)
    bound = torch.as_tensor(env.action_space.high, dtype=mean.dtype)
    sigma = log_std.exp()
    return {"iteration": run.iteration,
            "sigma": float(sigma.mean()),
            "mean_abs_mu_over_bound": float((mean.abs() / bound).mean()),
            "saturated_fraction": float((mean.abs() > bound + 2 * sigma).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_table(
        ["run", "iteration", "σ", "mean abs(μ) / bound", "saturated fraction"],
        ([run_dir.name, r["iteration"], f"{r['sigma']:.3f}", f"{r['mean_abs_mu_over_bound']:.2f}",
          f"{r['saturated_fraction']:.3f}"]
         for run_dir in args.runs
         for r in (saturation(run_dir, checkpoint, args.tasks, args.trials)
                   for checkpoint in sorted((run_dir / "checkpoints").glob("*.pt")))))

if __name__ == "__main__":
    main()
