"""How much memory the tabular-MDP task needs: simple heuristics that remember more and more,
on the held-out tasks of the RL² table (``split_tasks("test", N, seed=0)``).

    python experiments/analysis/mdp_memory_ladder.py                # n = 10, 1000 tasks
    python experiments/analysis/mdp_memory_ladder.py --rl2 RUN_DIR  # and RL² runs beside it

Rungs: random; win-stay/lose-shift (remembers the last step only: repeat the last action
if its reward beat the prior mean 1, else act at random); myopic greedy that forgets at
every episode start; myopic greedy over the whole trial (``greedy-myopic`` of
``metarl.reference_policies``); greedy replanned by value iteration on the posterior mean
after every step (``greedy-stepwise``); the oracle that knows the MDP. An RL² policy's trial
return can be read against this ladder; the first- and last-episode columns show how much of it
comes from memory across episodes, and ``--blocks`` adds the mean episode return over blocks of
episodes (where in the trial a policy gains or loses against a rung):

    python experiments/analysis/mdp_memory_ladder.py --episodes 25 --blocks 1 5 10 15 20 25 \
        --rl2 experiments/runs/rl2-mdp-n25-lr1
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np
import torch
from report_table import print_table

import metarl
from metarl import envs
from metarl.random import BatchRNG
from metarl.reference_policies import (
    OracleMDPPolicy,
    RandomPolicy,
    StepwisePosteriorMeanPolicy,
    run_policy_episodes,
)
from metarl.reference_policies.tabular import PlannerState
from metarl.types import Rollouts, Task, Transition


@dataclass(frozen=True)
class LastStep:
    """The last action and reward of every environment (``has_prev`` False at the start)."""

    rng: BatchRNG
    action: np.ndarray
    reward: np.ndarray
    has_prev: np.ndarray


class WinStayLoseShift:
    """Repeat the last action if its reward was above ``threshold``, else act at random."""

    def __init__(self, actions: int, threshold: float = 1.0):
        self.actions, self.threshold = actions, threshold

    def reset(self, tasks: list[Task], trials: int, rng: BatchRNG) -> LastStep:
        zeros = np.zeros(rng.size)
        return LastStep(rng, zeros.astype(np.int64), zeros, zeros.astype(bool))

    def act(self, obs: torch.Tensor, state: LastStep):
        stay = state.has_prev & (state.reward > self.threshold)
        action = np.where(stay, state.action, state.rng.integers(self.actions))
        return torch.as_tensor(action), state, {}

    def observe(self, state: LastStep, step: Transition) -> LastStep:
        valid = np.asarray(step.valid)
        return replace(state, action=np.where(valid, step.actions, state.action),
                       reward=np.where(valid, step.rewards, state.reward),
                       has_prev=state.has_prev | valid)

    def end_episode(self, state: LastStep, episode: Rollouts) -> LastStep:
        return state


class EpisodeMemoryMyopic(StepwisePosteriorMeanPolicy):
    """Myopic greedy whose posterior is reset at every episode start."""

    def end_episode(self, state: PlannerState, episode: Rollouts) -> PlannerState:
        return self.reset([], 1, state.rng)  # the prior again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rl2", nargs="*", default=[], metavar="RUN_DIR",
                        help="trained RL² runs (tabular-mdp) to place on the ladder")
    parser.add_argument("--most-likely", action="store_true",
                        help="each RL² run also acting on its most likely action")
    parser.add_argument("--blocks", type=int, nargs="*", default=[], metavar="LAST",
                        help="ends of episode blocks (1-based, increasing): a column of the "
                             "mean episode return per block, e.g. 1 5 10 25")
    args = parser.parse_args()
    try:
        blocks = episode_blocks(args.blocks, args.episodes)
    except ValueError as error:
        parser.error(str(error))
    env = envs.make("tabular-mdp")
    s, a, h = env.num_states, env.num_actions, env.max_episode_steps
    ladder = {
        "random": RandomPolicy(a),
        "win-stay/lose-shift (last step)": WinStayLoseShift(a),
        "myopic greedy, memory within an episode": EpisodeMemoryMyopic(s, a, h, myopic=True),
        "myopic greedy, memory over the trial": StepwisePosteriorMeanPolicy(s, a, h, myopic=True),
        "greedy replanned every step": StepwisePosteriorMeanPolicy(s, a, h),
        "oracle (knows the MDP)": OracleMDPPolicy(s, a, h),
    }
    for run_dir in args.rl2:
        run = metarl.load(run_dir)
        ladder[f"RL², {run_dir} @ {run.iteration}"] = run.agent.policy()
        if args.most_likely:
            ladder[f"RL², {run_dir} @ {run.iteration}, most likely action"] = (
                run.agent.policy(deterministic=True))
    tasks = env.split_tasks("test", args.tasks, seed=0)
    rows = []
    for name, policy in ladder.items():
        returns = run_policy_episodes(policy, env, tasks, args.episodes, trials=args.trials,
                                      seed=0)
        per_task = returns.sum(axis=-1).mean(axis=1)
        se = per_task.std(ddof=1) / np.sqrt(len(per_task))
        first, last = returns[..., 0].mean(), returns[..., -1].mean()
        per_block = [f"{returns[..., lo:hi].mean():.2f}" for lo, hi in blocks]
        rows.append((name, f"{per_task.mean():.2f} ± {se:.2f}", f"{first:.2f}", f"{last:.2f}",
                     *per_block))
    print_table([f"heuristic (n = {args.episodes})", "trial return ± s.e.", "first episode",
                 "last episode", *(block_name(lo, hi) for lo, hi in blocks)], rows)


def block_name(start: int, stop: int) -> str:
    """Column title of the episode slice ``[start, stop)``, 1-based."""
    return f"episode {stop}" if stop == start + 1 else f"episodes {start + 1}–{stop}"


def episode_blocks(ends: list[int], episodes: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` slices of the episode axis for block ends ``ends`` (1-based)."""
    starts = [0, *ends][:len(ends)]
    if any(b <= a for a, b in zip(starts, ends, strict=True)) or (ends and ends[-1] > episodes):
        raise ValueError(f"--blocks {ends}: block ends must increase within 1..{episodes}")
    return list(zip(starts, ends, strict=True))


if __name__ == "__main__":
    main()
