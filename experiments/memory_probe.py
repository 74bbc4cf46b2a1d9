"""How fast can an RL² core learn the tabular-MDP memory, with supervision instead of RL?

A uniformly random policy plays trials of random tabular MDPs (the RL² n = 10 setting); the
RL² policy network (any core the config names) is trained by regression alone to predict, at
every step, the reward of each action in the current state, and is scored on the reward of
the action taken. Known answers bound the loss: a predictor without memory can do no better
than the prior's 2.0 (reward noise 1 + prior variance of the mean 1), and the exact posterior
mean after ``c`` earlier pulls of the same (state, action) in the trial has expected squared
error ``1 + 1 / (1 + c)`` (the "Bayes" column, from the same batches). The gap the network
closes between the two is memory across steps and episodes that gradient descent found.

    python experiments/memory_probe.py --steps 200 --variants base previous_observation=true
    python experiments/memory_probe.py --from-run runs/rl2-mdp-screen-I-iter875 --freeze-core

``--from-run`` starts from a trained RL² run's policy network (its config; ``--variants``
is ignored); with ``--freeze-core`` only the linear reward read-out is trained, which
measures how much of the reward memory RL² itself has stored in its state.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from metarl.agents.rl2 import RL2Agent, RL2Config
from metarl.agents.rl2.agent import reward_prediction_error
from metarl.baselines import RandomPolicy
from metarl.config import parse_overrides
from metarl.envs import make
from metarl.nn import clipped_step
from metarl.sampling import LocalSampler
from metarl.types import TrialSequences

BASE = dict(layer_norm=True, hidden_size=256)


def bayes_squared_error(seq: TrialSequences, num_actions: int) -> float:
    """Mean of ``1 + 1 / (1 + c)`` over valid steps, ``c`` = earlier pulls of the same pair."""
    observations = seq.observations.reshape(*seq.mask.shape, -1)  # one-hot states
    pairs = observations.argmax(-1) * num_actions + seq.actions
    pulls = np.eye(observations.shape[-1] * num_actions)[pairs] * seq.mask[..., None]
    earlier = np.take_along_axis(np.cumsum(pulls, axis=1) - pulls, pairs[..., None], -1)[..., 0]
    return float(np.mean(1.0 + 1.0 / (1.0 + earlier[seq.mask])))


def probe(agent: RL2Agent, steps: int, trials: int, lr: float, seed: int, report: int,
          freeze_core: bool = False) -> None:
    env = agent.env
    net = agent.policy_net
    actions_n = int(env.action_space.n)
    reward_head = nn.Linear(net.output.linear.in_features, actions_n)
    params = [*([] if freeze_core else net.parameters()), *reward_head.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    sampler, rng = LocalSampler(env), np.random.default_rng(seed)
    losses, bayes, tic = [], [], time.perf_counter()
    for step in range(steps):
        tasks = env.sample_tasks(trials, rng)
        seq = sampler.sample(RandomPolicy(actions_n), tasks, episodes=10,
                             seed=int(rng.integers(2**31))).trial_sequences()
        x = agent.inputs.from_sequences(seq)
        loss = reward_prediction_error(reward_head(net.features(x)[0]),
                                       torch.as_tensor(seq.actions),
                                       torch.as_tensor(seq.rewards).float(),
                                       torch.as_tensor(seq.mask))
        clipped_step(optimizer, params, loss, max_grad_norm=1.0)
        losses.append(float(loss.detach()))
        bayes.append(bayes_squared_error(seq, actions_n))
        if (step + 1) % report == 0:
            window = slice(step + 1 - report, step + 1)
            print(f"  steps {step + 1 - report}-{step}: loss {np.mean(losses[window]):.3f}"
                  f"  (Bayes {np.mean(bayes[window]):.3f}, no memory 2.0)"
                  f"  {time.perf_counter() - tic:.0f} s", flush=True)


def variant_overrides(spec: str) -> dict:
    """``base`` or ``key=value[,key=value]`` over the layer-norm GRU of run I."""
    return {} if spec == "base" else parse_overrides(spec.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["base"],
                        help="'base' or comma-separated RL2Config overrides, e.g. "
                             "previous_observation=true,input_hidden=256")
    parser.add_argument("--steps", type=int, default=200, help="gradient steps per variant")
    parser.add_argument("--trials", type=int, default=312, help="trials per batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=int, default=25, help="steps per printed window")
    parser.add_argument("--states", type=int, default=10, help="MDP states (sanity checks: "
                        "fewer pairs to remember)")
    parser.add_argument("--actions", type=int, default=5, help="MDP actions")
    parser.add_argument("--from-run", help="start from this RL² run's policy network")
    parser.add_argument("--freeze-core", action="store_true",
                        help="train only the reward read-out (with --from-run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.from_run:
        import metarl

        torch.manual_seed(args.seed)
        run = metarl.load(args.from_run)
        print(f"{args.from_run} @ iteration {run.iteration}", flush=True)
        probe(run.agent, args.steps, args.trials, args.lr, args.seed, args.report,
              args.freeze_core)
        return
    for spec in args.variants:
        print(spec, flush=True)
        torch.manual_seed(args.seed)
        env = make("tabular-mdp", states=args.states, actions=args.actions)
        agent = RL2Agent(env, RL2Config(**{**BASE, **variant_overrides(spec)}))
        probe(agent, args.steps, args.trials, args.lr, args.seed, args.report,
              args.freeze_core)


if __name__ == "__main__":
    main()
