"""How far RL²'s critic is from the returns it should predict, episode by episode of a trial.

Samples fresh training-distribution trials with a run's policy and prints, for each episode
of the trial, the mean of the critic's value, of the discounted Monte Carlo return it
should predict, of the λ-return it is trained on (GAE's value target) and of the GAE
advantage the policy is trained on:

    python experiments/analysis/critic_bias.py runs/rl2-mdp-n10 --tasks 250

With raw advantages (the MDP presets), a critic that overestimates late in the trial makes
every late action look bad: no bias in expectation over the policy's actions, but noise
in its gradient.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import metarl
from metarl.nn.losses import discounted_returns, gae
from metarl.runs import LoadedRun
from metarl.sampling import LocalSampler


def episode_means(run: LoadedRun, tasks: int = 250, seed: int = 1
                  ) -> dict[str, np.ndarray]:
    """Per-episode means ``[episodes]`` of value, MC return, λ-return and advantage."""
    agent, cfg = run.agent, run.agent.config
    task_list = run.env.sample_tasks(tasks, np.random.default_rng(seed))
    rollouts = LocalSampler(run.env).sample(agent.policy(), task_list, trials=1,
                                            episodes=cfg.episodes_per_trial, seed=seed)
    seq = rollouts.trial_sequences()
    rewards = torch.as_tensor(seq.rewards, dtype=torch.float32) * cfg.reward_scale
    mask = torch.as_tensor(seq.mask)
    values = agent.trial_values(seq)
    advantages, lambda_returns = gae(rewards, values, mask, cfg.discount, cfg.gae_lambda)
    columns = {"value": values, "mc_return": discounted_returns(rewards, mask, cfg.discount),
               "lambda_return": lambda_returns, "advantage": advantages}
    episodes = cfg.episodes_per_trial  # fixed-length episodes: the trial splits evenly
    return {name: col.mean(0).reshape(episodes, -1).mean(1).numpy()
            for name, col in columns.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tasks", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run = metarl.load(args.run_dir)
    means = episode_means(run, args.tasks, args.seed)
    print(f"{args.run_dir} @ {run.iteration}: means per episode")
    print("episode  " + "  ".join(f"{name:>13}" for name in means))
    for e in range(len(means["value"])):
        print(f"{e + 1:7d}  " + "  ".join(f"{means[name][e]:13.2f}" for name in means))
    print("mean     " + "  ".join(f"{col.mean():13.2f}" for col in means.values()))


if __name__ == "__main__":
    main()
