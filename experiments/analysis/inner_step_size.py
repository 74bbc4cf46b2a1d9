"""How far one inner policy-gradient step moves a freshly initialised policy, per init.

For each (activation, width) x init, samples ``--tasks`` tasks x ``--rollouts`` episodes
with the initial policy, takes MAML-RL's inner VPG step (lr ``--inner-lr``) per task and
prints the mean KL(π_θ || π_θ') over the sampled states, the mean change of the action mean,
and the surrogate gain ``E[π_θ'/π_θ · A]`` (standardised advantages). This is what made
ProMP's (64, 64) tanh policy fail to start adapting on HalfCheetah with PyTorch's default
init (experiments/RESULTS.md, MAML-TRPO and ProMP).

    python experiments/analysis/inner_step_size.py --env cheetah-dir
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from report_table import print_table

from metarl.envs import make
from metarl.meta import InnerLoop, parameters_of
from metarl.meta.rl import adapt_tasks, episode_data, gaussian_kl, per_task_outputs, vpg_loss
from metarl.nn import GaussianMLP, GaussianMLPPolicy
from metarl.sampling import LocalSampler


def inner_step_size(env_name: str, activation: str, width: int, init: str, tasks: int,
                    rollouts: int, inner_lr: float, seed: int = 0) -> dict[str, float]:
    """KL, mean shift and surrogate gain of one inner step from a fresh policy."""
    env = make(env_name)
    torch.manual_seed(seed)
    net = GaussianMLP(int(np.prod(env.observation_space.shape)),
                      int(np.prod(env.action_space.shape)), (width, width),
                      activation=activation, init=init)
    episodes = LocalSampler(env).sample(
        GaussianMLPPolicy(net), env.sample_tasks(tasks, np.random.default_rng(seed)),
        trials=rollouts, episodes=1, seed=seed + 1)
    data = episode_data(episodes, 0, discount=0.99, gae_lambda=1.0)
    adapted = adapt_tasks(InnerLoop(vpg_loss(net), steps=1, lr=inner_lr),
                          parameters_of(net), data, per_task=False)
    with torch.no_grad():
        new = per_task_outputs(net, adapted, data.observations)
        old = net(data.observations).expand_as(new)
        count = data.mask.sum()
        kl = (gaussian_kl(old, new) * data.mask).sum() / count
        act_dim = new.shape[-1] // 2
        shift = ((new - old)[..., :act_dim].abs().mean(-1) * data.mask).sum() / count
        ratio = (net.head.log_prob(new, data.actions) - net.head.log_prob(old, data.actions)).exp()
        gain = (ratio * data.advantages * data.mask).sum() / count
    return {"kl": float(kl), "mean_shift": float(shift), "surrogate_gain": float(gain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="cheetah-dir")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--inner-lr", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for activation, width in (("tanh", 64), ("relu", 100)):
        for init in ("torch", "xavier"):
            r = inner_step_size(args.env, activation, width, init, args.tasks, args.rollouts,
                                args.inner_lr)
            rows.append([f"({width}, {width}) {activation}", init, f"{r['kl']:.4f}",
                         f"{r['mean_shift']:.4f}", f"{r['surrogate_gain']:.4f}"])
    print_table(["policy", "init", "KL(π_θ ‖ π_θ')", "mean abs(Δμ)", "surrogate gain"], rows)

if __name__ == "__main__":
    main()
