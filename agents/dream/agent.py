"""DREAM (Liu, Raghunathan, Liang, Finn, ICML 2021): decoupled exploration and exploitation.

The exploitation policy π_task(a | s, z) is trained by recurrent double DQN on
``z = f(μ) + noise`` (the problem ID's embedding under an information bottleneck) and on
``z = g(τ)`` (the decoder's summary of the trial's exploration episode), alternately; the
decoder g learns to predict f(μ) from every prefix of the exploration episode; the
exploration policy π_exp is a second recurrent double DQN rewarded by the information gain
``||f(μ) - g(τ_{:t})||² - ||f(μ) - g(τ_{:t+1})||²`` minus a step penalty, relabelled with
the current decoder whenever it is replayed. At test time only g(τ) is used.

One iteration collects ``envs_per_iteration`` trials (one exploration and one exploitation
episode each, all environments in lockstep), stores each trial in one replay of whole trials
(:class:`~metarl.replay.SequenceReplayBuffer`), then takes the gradient steps the reference
takes for those steps: one per ``update_every`` acting steps of each policy, once its replay
holds ``*_min_replay`` trials, and a target sync every ``target_sync`` acting steps.
Settings: ``configs/default.json`` of the reference (see the presets).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl.agent import MetaRLAgent
from metarl.agents.dream.networks import (
    ExploitationNet,
    bottleneck_loss,
    decoder_loss,
    episode_tensors,
    information_gain_rewards,
    prefix_mask,
    squared_distances,
)
from metarl.agents.dream.policy import DreamPolicy, explorer_inputs
from metarl.config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check_settings, setting
from metarl.envs_api import MetaEnv
from metarl.memory import REPLAY_NUMBER_BYTES, MemoryNeed
from metarl.nn import clipped_step
from metarl.nn.dqn import (
    LinearSchedule,
    RecurrentQNetwork,
    double_dqn_targets,
    hard_update,
    masked_td_loss,
)
from metarl.replay import SequenceReplayBuffer
from metarl.sampling import Sampler
from metarl.types import Rollouts


@dataclass
class DREAMConfig:
    """DREAM's settings; defaults are the reference's ``configs/default.json`` (both
    policies: Adam 1e-4, batch 32 sequences, target sync 5000 steps, a gradient step every 4
    steps, gradient norm 10, ε 1 → 0.01 over 250k steps, replay 16k, γ 0.99; minimum replay
    500 trials for exploitation, 8000 for exploration; embeddings 64, decoder LSTM 128,
    noise 0.1 on f(μ), bottleneck cutoff 10, exploration step penalty 0.1)."""

    envs_per_iteration: int = setting(16, AT_LEAST_1)  # trials collected in lockstep
    discount: float = setting(0.99, UNIT_INTERVAL)
    lr: float = setting(1e-4, POSITIVE)
    batch_size: int = setting(32, AT_LEAST_1)  # trials per gradient step
    update_every: int = setting(4, AT_LEAST_1)  # acting steps per gradient step
    target_sync: int = setting(5000, AT_LEAST_1)  # acting steps per target-network sync
    max_grad_norm: float = setting(10.0, POSITIVE)
    epsilon_start: float = setting(1.0, UNIT_INTERVAL)
    epsilon_end: float = setting(0.01, UNIT_INTERVAL)
    epsilon_steps: int = setting(250_000, AT_LEAST_1)  # acting steps of each policy
    test_epsilon: float = setting(0.0, UNIT_INTERVAL)
    replay_capacity: int = setting(16_000, AT_LEAST_1)  # trials
    exploit_min_replay: int = setting(500, AT_LEAST_1)  # trials before exploitation updates
    explore_min_replay: int = setting(8000, AT_LEAST_1)  # trials before exploration updates
    embed_dim: int = setting(64, AT_LEAST_1)  # z, f(μ), g(τ) and the Q-networks' features
    hidden_size: int = setting(64, AT_LEAST_1)  # the Q-networks' LSTMs
    decoder_hidden: int = setting(128, AT_LEAST_1)  # the decoder's LSTM
    id_noise: float = setting(0.1, NON_NEGATIVE)  # std of the noise on f(μ)
    bottleneck_cutoff: float = setting(10.0, NON_NEGATIVE)  # penalise ||f(μ)||² above this
    step_penalty: float = setting(0.1, NON_NEGATIVE)  # the exploration reward's cost per step

    def validate(self) -> None:
        check_settings(self)


class DREAMAgent(MetaRLAgent):
    """DREAM on an env with exploration episodes and a finite set of problem IDs (module
    docstring). Evaluated on one exploration and one exploitation episode per trial."""

    def __init__(self, env: MetaEnv, config: DREAMConfig, device: torch.device | str = "cpu"):
        check_dream_env(env)
        self.env, self.config = env, config
        self.device = torch.device(device)
        self.num_actions = int(env.action_space.n)
        obs_dim = int(np.prod(env.observation_space.shape))
        self.horizon = int(env.max_episode_steps)
        self.eval_episodes = env.exploration_episodes + 1
        self.explorer = RecurrentQNetwork(
            obs_dim + self.num_actions + 1, self.num_actions, embed_dim=config.embed_dim,
            hidden_size=config.hidden_size).to(self.device)
        self.exploiter = ExploitationNet(
            obs_dim, self.num_actions, int(env.num_problems), embed_dim=config.embed_dim,
            hidden_size=config.hidden_size, decoder_hidden=config.decoder_hidden).to(self.device)
        self.explorer_target = copy.deepcopy(self.explorer)
        self.exploiter_target = copy.deepcopy(self.exploiter)
        for target in (self.explorer_target, self.exploiter_target):
            target.requires_grad_(False)
        self.explorer_opt = torch.optim.Adam(self.explorer.parameters(), lr=config.lr)
        self.exploiter_opt = torch.optim.Adam(self.exploiter.parameters(), lr=config.lr)
        self.epsilon = LinearSchedule(config.epsilon_start, config.epsilon_end,
                                      config.epsilon_steps)
        t = self.horizon
        self.replay = SequenceReplayBuffer(config.replay_capacity, {
            "problem": ((), np.int64),
            "explore_obs": ((t + 1, obs_dim), np.float32),
            "explore_actions": ((t,), np.int64),
            "explore_length": ((), np.int64),
            "exploit_obs": ((t + 1, obs_dim), np.float32),
            "exploit_actions": ((t,), np.int64),
            "exploit_rewards": ((t,), np.float32),
            "exploit_length": ((), np.int64),
        })
        #: acting steps so far and gradient steps so far, per policy
        self.steps = {"explore": 0, "exploit": 0}
        self.updates = {"explore": 0, "exploit": 0}
        self.iteration = 0

    # ------------------------------------------------------------------ protocol
    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """The replay of whole trials (two padded episodes of observations each) and an
        evaluation's rollouts."""
        cfg = config.agent_config
        obs_dim = int(np.prod(env.observation_space.shape))
        row = REPLAY_NUMBER_BYTES * 2 * ((env.max_episode_steps + 1) * obs_dim
                                         + 2 * env.max_episode_steps + 2)
        return [*super().memory_needs(config, env),
                MemoryNeed("DREAM's replay of trials",
                           (("trials", "replay_capacity", cfg.replay_capacity),), row)]

    def policy(self, deterministic: bool = False) -> DreamPolicy:
        """The evaluation policy: z from the decoder, ε = ``test_epsilon`` (0: greedy)."""
        eps = self.config.test_epsilon
        return DreamPolicy(self.explorer, self.exploiter, self.num_actions,
                           exploration_episodes=self.env.exploration_episodes,
                           explore_epsilon=eps, exploit_epsilon=eps)

    def training_policy(self) -> DreamPolicy:
        """ε-greedy on the schedules; half of the environments exploit on the noisy f(μ)."""
        return DreamPolicy(self.explorer, self.exploiter, self.num_actions,
                           exploration_episodes=self.env.exploration_episodes,
                           explore_epsilon=self.epsilon(self.steps["explore"]),
                           exploit_epsilon=self.epsilon(self.steps["exploit"]),
                           id_parity=self.iteration % 2, id_noise=self.config.id_noise)

    def train_iteration(self, sampler: Sampler, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        tasks = self.env.sample_tasks(cfg.envs_per_iteration, rng)
        seed = int(rng.integers(2**31))
        policy = self.training_policy()
        with torch.no_grad():
            rollouts = sampler.sample(policy, tasks, trials=1,
                                      episodes=self.env.exploration_episodes + 1, seed=seed)
        trials = self.trial_entries(rollouts)
        self.replay.add(trials)
        replay_rng = np.random.default_rng(int(rng.integers(2**63)))
        noise = torch.Generator().manual_seed(int(rng.integers(2**63)))
        metrics = {"explore_epsilon": policy.explore_epsilon,
                   "exploit_epsilon": policy.exploit_epsilon}
        for role, new_steps in (("explore", int(trials["explore_length"].sum())),
                                ("exploit", int(trials["exploit_length"].sum()))):
            metrics.update(self._learn(role, new_steps, replay_rng, noise))
        returns = rollouts.episode_returns()[:, 0]  # [N, K]
        metrics.update(
            exploitation_return=float(returns[:, self.env.exploration_episodes:].sum(-1).mean()),
            exploration_length=float(trials["explore_length"].mean()),
            information_gain=self._information_gain(trials),
            replay_trials=float(len(self.replay)), env_steps=float(rollouts.num_steps))
        self.iteration += 1
        return metrics

    # ------------------------------------------------------------------ data
    def trial_entries(self, rollouts: Rollouts) -> dict[str, np.ndarray]:
        """Replay entries of the sampled trials: the (last) exploration episode and the
        first exploitation episode of each."""
        explore = self.env.exploration_episodes - 1
        out: dict[str, np.ndarray] = {"problem": np.array(
            [int(task.params["problem"]) for task in rollouts.tasks], dtype=np.int64)}
        for role, k in (("explore", explore), ("exploit", explore + 1)):
            def take(name: str, k: int = k) -> np.ndarray:
                return getattr(rollouts, name)[:, 0, k]
            obs, actions, lengths = episode_tensors(take("observations"), take("actions"),
                                                    take("next_observations"), take("valid"))
            out[f"{role}_obs"] = obs.numpy()
            out[f"{role}_actions"] = actions.numpy()
            out[f"{role}_length"] = lengths.numpy().astype(np.int64)
            if role == "exploit":
                out["exploit_rewards"] = (take("rewards") * take("valid")).astype(np.float32)
        return out

    def batch_tensors(self, batch: dict[str, np.ndarray]) -> dict[str, Tensor]:
        """The batch on the device, its episodes cut to the longest one in the batch (the
        padding beyond is never read, and skipping it saves most of an update's work once
        the policies act in a few steps)."""
        out = {}
        for key, value in batch.items():
            role = key.split("_")[0]
            if key.endswith(("_obs", "_actions", "_rewards")):
                longest = int(batch[f"{role}_length"].max())
                value = value[:, :longest + 1 if key.endswith("_obs") else longest]
            out[key] = torch.as_tensor(value, device=self.device)
        return out

    # ------------------------------------------------------------------ learning
    def _learn(self, role: str, new_steps: int, rng: np.random.Generator,
               noise: torch.Generator) -> dict[str, float]:
        """The gradient steps and target syncs due for ``new_steps`` acting steps of one
        policy (as the reference's per-step ``update`` calls would take them)."""
        cfg = self.config
        before, self.steps[role] = self.steps[role], self.steps[role] + new_steps
        min_replay = cfg.explore_min_replay if role == "explore" else cfg.exploit_min_replay
        due = self.steps[role] // cfg.update_every - before // cfg.update_every
        losses: list[dict[str, Tensor]] = []
        if len(self.replay) >= min_replay:
            step = self.explore_update if role == "explore" else self.exploit_update
            for _ in range(due):
                losses.append(step(self.batch_tensors(self.replay.sample(cfg.batch_size, rng)),
                                   noise))
                self.updates[role] += 1
        if self.steps[role] // cfg.target_sync > before // cfg.target_sync:
            if role == "explore":
                hard_update(self.explorer_target, self.explorer)
            else:
                hard_update(self.exploiter_target, self.exploiter)
        if not losses:
            return {}
        return {f"{role}_{key}": float(torch.stack([step[key] for step in losses]).mean())
                for key in losses[0]}

    def exploit_update(self, batch: dict[str, Tensor], noise: torch.Generator
                       ) -> dict[str, Tensor]:
        """One step of the exploitation Q-network, the decoder and f: the TD loss on
        ``z = g(τ)`` or ``z = f(μ) + noise`` (alternating steps), plus the decoder's
        regression of f(μ) and the bottleneck."""
        cfg = self.config
        use_ids = self.updates["exploit"] % 2 == 1
        lengths = batch["exploit_length"]
        steps = batch["exploit_actions"].shape[1]

        def q_values(net: ExploitationNet) -> tuple[Tensor, Tensor, Tensor]:
            g = net.decoder(batch["explore_obs"], batch["explore_actions"])
            f = net.problem(batch["problem"])
            if use_ids:
                z = f + cfg.id_noise * torch.randn(f.shape, generator=noise).to(f.device)
            else:
                z = g[torch.arange(len(g)), batch["explore_length"]]
            q, _ = net.q(batch["exploit_obs"], z)
            return q, g, f

        q, g, f = q_values(self.exploiter)
        with torch.no_grad():
            target_q, _, _ = q_values(self.exploiter_target)
        mask = prefix_mask(lengths, steps)
        done = torch.arange(steps, device=self.device)[None] == (lengths - 1)[:, None]
        targets = double_dqn_targets(batch["exploit_rewards"], done, q[:, 1:].detach(),
                                     target_q[:, 1:], cfg.discount)
        td = masked_td_loss(q[:, :-1], batch["exploit_actions"], targets, mask)
        decoding = decoder_loss(g, f, batch["explore_length"])
        bottleneck = bottleneck_loss(f, cfg.bottleneck_cutoff)
        clipped_step(self.exploiter_opt, list(self.exploiter.parameters()),
                     td + decoding + bottleneck, cfg.max_grad_norm)
        return {"td_loss": td.detach(), "decoder_loss": decoding.detach(),
                "f_norm_sq": f.detach().square().sum(-1).mean()}

    def explore_update(self, batch: dict[str, Tensor], noise: torch.Generator
                       ) -> dict[str, Tensor]:
        """One step of the exploration Q-network on information-gain rewards relabelled with
        the current decoder and problem embedding."""
        cfg = self.config
        obs, actions, lengths = (batch["explore_obs"], batch["explore_actions"],
                                 batch["explore_length"])
        steps = actions.shape[1]
        with torch.no_grad():
            rewards = self._explore_rewards(obs, actions, lengths, batch["problem"])
        prev = torch.cat([torch.full_like(actions[:, :1], self.num_actions), actions], 1)
        x = explorer_inputs(obs, prev, self.num_actions)
        q, _ = self.explorer(x)
        with torch.no_grad():
            target_q, _ = self.explorer_target(x)
        mask = prefix_mask(lengths, steps)
        done = torch.arange(steps, device=self.device)[None] == (lengths - 1)[:, None]
        targets = double_dqn_targets(rewards, done, q[:, 1:].detach(), target_q[:, 1:],
                                     cfg.discount)
        td = masked_td_loss(q[:, :-1], actions, targets, mask)
        clipped_step(self.explorer_opt, list(self.explorer.parameters()), td, cfg.max_grad_norm)
        return {"td_loss": td.detach(), "reward": (rewards.sum(1)).mean()}

    def _explore_rewards(self, obs: Tensor, actions: Tensor, lengths: Tensor,
                         problems: Tensor) -> Tensor:
        g = self.exploiter.decoder(obs, actions)
        f = self.exploiter.problem(problems)
        return information_gain_rewards(squared_distances(g, f), lengths,
                                        self.config.step_penalty)

    @torch.no_grad()
    def _information_gain(self, trials: dict[str, np.ndarray]) -> float:
        """Mean information-gain return of this iteration's exploration episodes (under the
        current decoder, without the step penalty)."""
        t = self.batch_tensors({k: trials[k] for k in ("explore_obs", "explore_actions",
                                                  "explore_length", "problem")})
        rewards = self._explore_rewards(t["explore_obs"], t["explore_actions"],
                                        t["explore_length"], t["problem"])
        return float((rewards.sum(1) + self.config.step_penalty * t["explore_length"]).mean())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "steps": dict(self.steps),
                "updates": dict(self.updates), "replay": self.replay.state_dict(),
                **{key: part.state_dict() for key, part in self._parts().items()}}

    def load_state_dict(self, state: dict) -> None:
        for key, part in self._parts().items():
            part.load_state_dict(state[key])
        self.replay.load_state_dict(state["replay"])
        self.iteration = int(state["iteration"])
        self.steps = {k: int(v) for k, v in state["steps"].items()}
        self.updates = {k: int(v) for k, v in state["updates"].items()}

    def _parts(self) -> dict[str, Any]:
        return {"explorer": self.explorer, "exploiter": self.exploiter,
                "explorer_target": self.explorer_target,
                "exploiter_target": self.exploiter_target,
                "explorer_opt": self.explorer_opt, "exploiter_opt": self.exploiter_opt}


def check_dream_env(env: MetaEnv) -> None:
    """DREAM needs discrete actions, flat observations, one exploration episode per trial
    and a finite set of problem IDs (``env.num_problems``, ``task.params["problem"]``)."""
    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(f"DREAM needs a discrete action space, got {env.action_space}")
    if not isinstance(env.observation_space, spaces.Box):
        raise ValueError(f"DREAM needs a Box observation space, got {env.observation_space}")
    if getattr(env, "exploration_episodes", 0) != 1 or not hasattr(env, "num_problems"):
        raise ValueError(f"DREAM needs an env whose trials start with one exploration episode "
                         f"and whose tasks are problem IDs (dream-bus, dream-map), got "
                         f"{env.name!r} with env.exploration_episodes="
                         f"{getattr(env, 'exploration_episodes', 0)}")
