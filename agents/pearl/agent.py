"""PEARL (Rakelly et al. 2019): off-policy meta-RL with a probabilistic context variable on SAC.

One iteration (the paper's Algorithm 1, oyster's schedule)::

    first iteration: every train task collects initial_steps with z ~ prior   (RL + encoder buffers)
    for tasks_per_iteration random train tasks:
        clear the task's encoder buffer
        prior_steps with z ~ N(0, I)                                         (RL + encoder buffers)
        posterior_steps with z ~ q(z | context from the encoder buffer)      (RL + encoder buffers)
        extra_posterior_steps with z ~ q(z | context)                        (RL buffer only)
    gradient_steps times, on meta_batch train tasks at once (one batched computation):
        context c_i ~ encoder buffer_i, transitions ~ RL buffer_i
        z_i ~ q(z | c_i) = Π_n N(μ(c_in), σ²(c_in))                        (reparameterised)
        critic + encoder:  Σ_j mean (Q_j(s, a, z) − y)² + kl_lambda Σ_i KL(q(z|c_i) || N(0, I))
                           y = scale·r + γ (1 − done)(min_j Q'_j(s', a', z̄) − α log π(a'|s', z̄))
        actor (z̄ = z detached): mean(α log π(a|s, z̄) − min_j Q_j(s, a, z̄)) + mean/std regularisers
        (temperature step if learned), Polyak update of the target critics

The critic is SAC's clipped double-Q with target Q-networks and no separate value network
(SAC v2; oyster uses SAC v1's V-network); the paper's fixed α = 1 with reward scale 5 is the
default, ``entropy="auto"`` tunes α to ``−|A|``. At test time (``policy()``) the first
``exploration_episodes`` episodes act on one z from the prior, every episode's transitions join
the trial's context, and from then on z is drawn from the posterior after each episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl.agent import MetaRLAgent
from metarl.config import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    SEEDS,
    UNIT_INTERVAL,
    between,
    check_settings,
    setting,
)
from metarl.envs_api import MetaEnv
from metarl.memory import REPLAY_NUMBER_BYTES, MemoryNeed, numbers
from metarl.nn.context import ContextEncoder, kl_to_standard_normal, sample_latent
from metarl.nn.sac import TanhGaussianActor, Temperature, TwinQ, polyak_update, soft_q_target
from metarl.random import BatchRNG
from metarl.replay import TaskReplayBuffer
from metarl.sampling import Sampler
from metarl.types import Rollouts, Task, Transition


@dataclass
class PEARLConfig:
    """PEARL's settings: oyster's ``configs/default.py`` with the cheetah-vel values
    (100 train tasks, 600 extra posterior steps, context batch 100, 2 exploration episodes
    at test time). Step counts are environment steps per task, rounded up to episodes."""

    train_tasks: int = setting(100, AT_LEAST_1)
    latent_dim: int = setting(5, AT_LEAST_1)
    # SAC networks: num_layers hidden layers of this width
    hidden_size: int = setting(300, AT_LEAST_1)
    num_layers: int = setting(3, AT_LEAST_1)
    encoder_hidden: int = setting(200, AT_LEAST_1)  # the encoder: 3 hidden layers of this width
    recurrent: bool = False
    bottleneck: bool = True  # False: deterministic z (mean of the factors), no KL
    use_next_obs: bool = False  # put s' into the context too
    meta_batch: int = setting(16, AT_LEAST_1)
    initial_steps: int = setting(2000, AT_LEAST_1)
    tasks_per_iteration: int = setting(5, NON_NEGATIVE)
    prior_steps: int = setting(400, NON_NEGATIVE)
    posterior_steps: int = setting(0, NON_NEGATIVE)
    extra_posterior_steps: int = setting(600, NON_NEGATIVE)
    gradient_steps: int = setting(2000, NON_NEGATIVE)
    batch_size: int = setting(256, AT_LEAST_1)
    context_batch: int = setting(100, AT_LEAST_1)
    discount: float = setting(0.99, UNIT_INTERVAL)
    tau: float = setting(0.005, between(0, 1, low_open=True))
    actor_lr: float = setting(3e-4, POSITIVE)
    critic_lr: float = setting(3e-4, POSITIVE)
    encoder_lr: float = setting(3e-4, POSITIVE)
    reward_scale: float = setting(5.0, POSITIVE)
    kl_lambda: float = setting(0.1, NON_NEGATIVE)
    # "fixed" (alpha) or "auto" (target entropy -|A|)
    entropy: str = setting("fixed", choices=("fixed", "auto"))
    alpha: float = setting(1.0, POSITIVE)  # the temperature (auto: its initial value)
    policy_mean_reg: float = setting(1e-3, NON_NEGATIVE)
    policy_std_reg: float = setting(1e-3, NON_NEGATIVE)
    # evaluation trial length (oyster: 600 steps)
    episodes_per_trial: int = setting(3, AT_LEAST_1)
    # test episodes on the prior z before the posterior
    exploration_episodes: int = setting(2, NON_NEGATIVE)
    deterministic_eval: bool = True  # evaluation acts on the mean action (as the paper)
    replay_capacity: int = setting(1_000_000, AT_LEAST_1)
    checkpoint_buffers: bool = True
    task_seed: int = setting(0, SEEDS)  # seed of the fixed train-task set

    def validate(self) -> None:
        """The declared ranges (:func:`metarl.config.check_settings`), then the checks that
        involve several fields."""
        check_settings(self)
        if self.prior_steps + self.posterior_steps < 1 and self.tasks_per_iteration:
            raise ValueError("prior_steps + posterior_steps must be >= 1: the encoder buffer "
                             "of a task is refilled from them")


# ------------------------------------------------------------------------- the policy
class ActionScale:
    """Maps the actor's ``[-1, 1]`` actions (tensors on ``device``) to a Box action space and
    back (numpy arrays, as the environments give them)."""

    def __init__(self, space: spaces.Box, device: torch.device | str = "cpu"):
        self.low_np = np.asarray(space.low, dtype=np.float32)
        self.high_np = np.asarray(space.high, dtype=np.float32)
        self.low = torch.as_tensor(self.low_np, device=device)
        self.high = torch.as_tensor(self.high_np, device=device)

    def to_env(self, action: Tensor) -> Tensor:
        return self.low + (action + 1.0) * 0.5 * (self.high - self.low)

    def from_env(self, action: np.ndarray) -> np.ndarray:
        low, high = self.low_np, self.high_np
        return (2.0 * (action - low) / (high - low) - 1.0).astype(np.float32)


def context_rows(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                 next_obs: np.ndarray, use_next_obs: bool) -> np.ndarray:
    """Context transitions ``(s, a, r[, s'])`` as rows ``[..., D]`` (``actions`` in [-1, 1])."""
    parts = [obs, actions, rewards[..., None]] + ([next_obs] if use_next_obs else [])
    return np.concatenate([p.astype(np.float32) for p in parts], -1)


@dataclass
class _TrialState:
    rng: BatchRNG
    latent_rng: BatchRNG
    z: Tensor  # [B, L]
    trials: int
    tasks: tuple[Task, ...]  # of the trial (one per task, not per environment)
    episode: int = 0
    context: list[np.ndarray] = field(default_factory=list)  # per episode [B, T, D]
    mask: list[np.ndarray] = field(default_factory=list)  # per episode bool [B, T]


class PEARLPolicy:
    """Acts with the tanh-Gaussian actor on ``[obs, z]``, one z per environment.

    ``contexts`` (task → ``[C, D]`` rows) given: z ~ q(z | the task's context), redrawn each
    episode (training collection). ``adaptive``: the test-time protocol of the module
    docstring. Otherwise z ~ N(0, I), redrawn each episode."""

    def __init__(self, actor: TanhGaussianActor, encoder: ContextEncoder, scale: ActionScale,
                 *, contexts: Mapping[Task, np.ndarray] | None = None, adaptive: bool = False,
                 exploration_episodes: int = 1, deterministic: bool = False,
                 use_next_obs: bool = False):
        self.actor, self.encoder, self.scale = actor, encoder, scale
        self.contexts, self.adaptive = contexts, adaptive
        self.exploration_episodes = exploration_episodes
        self.deterministic, self.use_next_obs = deterministic, use_next_obs
        self.device = next(actor.parameters()).device

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> _TrialState:
        latent_rng = rng.child("latent")
        state = _TrialState(rng, latent_rng, torch.zeros(0, device=self.device), trials,
                            tuple(tasks))
        state.z = self._draw(state)
        return state

    def _noise(self, rng: BatchRNG, dim: int) -> Tensor:
        return torch.as_tensor(rng.standard_normal((rng.size, dim)), dtype=torch.float32,
                               device=self.device)

    def _draw(self, state: _TrialState) -> Tensor:
        """A fresh z for every environment from the current belief."""
        noise = self._noise(state.latent_rng, self.encoder.latent_dim)
        if self.adaptive and state.episode >= max(self.exploration_episodes, 1):
            context = torch.as_tensor(np.concatenate(state.context, 1), device=self.device)
            mask = torch.as_tensor(np.concatenate(state.mask, 1), device=self.device)
            with torch.no_grad():
                mean, var = self.encoder(context, mask)
            return sample_latent(mean, var, noise)
        if self.contexts is not None:
            context = torch.as_tensor(np.stack([self.contexts[t] for t in state.tasks]),
                                      device=self.device)
            with torch.no_grad():
                mean, var = self.encoder(context)
            mean, var = (x.repeat_interleave(state.trials, 0) for x in (mean, var))
            return sample_latent(mean, var, noise)
        return noise  # the prior

    def act(self, obs: Tensor, state: _TrialState) -> tuple[Tensor, _TrialState, dict]:
        x = torch.cat([obs.reshape(obs.shape[0], -1).float(), state.z], -1)
        noise = (torch.zeros(obs.shape[0], self.actor.action_dim, device=self.device)
                 if self.deterministic
                 else self._noise(state.rng, self.actor.action_dim))
        action, _, _ = self.actor.sample(x, noise)
        return self.scale.to_env(action), state, {"z": state.z}

    def observe(self, state: _TrialState, step: Transition) -> _TrialState:
        return state

    def end_episode(self, state: _TrialState, episode: Rollouts) -> _TrialState:
        state.episode += 1
        if self.adaptive:
            b = episode.shape[0] * episode.shape[1]
            rows = context_rows(episode.observations, self.scale.from_env(episode.actions),
                                episode.rewards, episode.next_observations, self.use_next_obs)
            state.context.append(rows.reshape(b, -1, rows.shape[-1]))
            state.mask.append(episode.valid.reshape(b, -1))
            if state.episode < self.exploration_episodes:
                return state  # keep the prior z of the exploration episodes
        state.z = self._draw(state)
        return state


# -------------------------------------------------------------------------- the agent
def fixed_task_set(env: MetaEnv, split: str, n: int, seed: int) -> list[Task]:
    """``n`` tasks of ``split``, distinct where the distribution allows (a finite family such
    as cheetah-dir's two directions gets all its members before any repeats)."""
    draws = env.split_tasks(split, 32 * n, seed=seed)
    distinct: dict[str, Task] = {}
    for task in draws:
        distinct.setdefault(json_params(task), task)
    unique = list(distinct.values())
    chosen = [unique[i % len(unique)] for i in range(n)]
    return [Task(t.env, t.params, id=i) for i, t in enumerate(chosen)]


def json_params(task: Task) -> str:
    return Task(task.env, task.params).to_json()


def _episodes(steps: int, horizon: int) -> int:
    return math.ceil(steps / horizon) if steps > 0 else 0


class PEARLAgent(MetaRLAgent):
    """See the module docstring. Evaluated on trials of ``episodes_per_trial`` episodes; the
    paper's metric is the last one's return."""

    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """The first collection (train_tasks x episodes of initial_steps), an iteration's
        (tasks_per_iteration x episodes of the largest of prior / posterior /
        extra-posterior steps), an evaluation's (eval_tasks x episodes_per_trial), the
        replay buffers (train_tasks x the transitions a task gathers over the run on
        average, at most replay_capacity, plus its encoder buffer's, as float32 rows) and
        the gradient batch (meta_batch x (batch_size + context_batch) rows)."""
        cfg, trainer, one = config.agent_config, config.trainer, ("trials", None, 1)
        horizon = int(env.max_episode_steps)

        def episodes(key: str) -> tuple[str, str, int]:
            return "episodes", key, -(-getattr(cfg, key) // horizon)  # rounded up

        collecting = ("prior_steps", "posterior_steps", "extra_posterior_steps")
        largest = max(collecting, key=lambda key: getattr(cfg, key))
        initial = episodes("initial_steps")[2] * horizon
        per_visit = horizon * sum(episodes(key)[2] for key in collecting)
        visits = -(-trainer.iterations * cfg.tasks_per_iteration // cfg.train_tasks)
        replay = min(cfg.replay_capacity, initial + visits * per_visit)
        encoder = min(cfg.replay_capacity, max(initial, horizon * sum(
            episodes(key)[2] for key in ("prior_steps", "posterior_steps"))))
        width = REPLAY_NUMBER_BYTES * (2 * numbers(env.observation_space)
                                       + numbers(env.action_space) + 2)
        return [cls.rollouts(config, env, "the first collection",
                             ("tasks", "train_tasks", cfg.train_tasks), one,
                             episodes("initial_steps")),
                cls.rollouts(config, env, "an iteration's collection",
                             ("tasks", "tasks_per_iteration", cfg.tasks_per_iteration), one,
                             episodes(largest)),
                cls.rollouts(config, env, "an evaluation's rollouts",
                             ("tasks", "eval_tasks", trainer.eval_tasks), one,
                             ("episodes", "episodes_per_trial", cfg.episodes_per_trial)),
                MemoryNeed("PEARL's replay buffers", (
                    ("tasks", "train_tasks", cfg.train_tasks),
                    ("transitions", "replay_capacity", replay + encoder)), width),
                MemoryNeed("PEARL's gradient batch", (
                    ("tasks", "meta_batch", cfg.meta_batch),
                    ("transitions", "batch_size", cfg.batch_size + cfg.context_batch)), width)]

    def __init__(self, env: MetaEnv, config: PEARLConfig, device: str = "cpu"):
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"PEARL needs a continuous (Box) action space, got "
                             f"{env.action_space}")
        config.validate()
        self.env, self.config = env, config
        self.eval_episodes = config.episodes_per_trial
        self.device = torch.device(device)
        cfg = config
        obs_dim = int(np.prod(env.observation_space.shape))
        action_dim = int(np.prod(env.action_space.shape))
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.scale = ActionScale(env.action_space, self.device)
        context_dim = obs_dim + action_dim + 1 + (obs_dim if cfg.use_next_obs else 0)
        hidden = [cfg.hidden_size] * cfg.num_layers
        self.encoder = ContextEncoder(context_dim, cfg.latent_dim, [cfg.encoder_hidden] * 3,
                                      bottleneck=cfg.bottleneck, recurrent=cfg.recurrent)
        self.actor = TanhGaussianActor(obs_dim + cfg.latent_dim, action_dim, hidden)
        self.critic = TwinQ(obs_dim + action_dim + cfg.latent_dim, hidden)
        self.target_critic = TwinQ(obs_dim + action_dim + cfg.latent_dim, hidden)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.temperature = Temperature(cfg.alpha, -float(action_dim) if cfg.entropy == "auto"
                                       else None)
        for module in (self.encoder, self.actor, self.critic, self.target_critic,
                       self.temperature):
            module.to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.encoder_opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.encoder_lr)
        self.alpha_opt = torch.optim.Adam(self.temperature.parameters(), lr=cfg.actor_lr)
        self.train_tasks = fixed_task_set(env, "train", cfg.train_tasks, cfg.task_seed)
        self.replay = TaskReplayBuffer(cfg.train_tasks, obs_dim, action_dim, cfg.replay_capacity)
        self.encoder_replay = TaskReplayBuffer(cfg.train_tasks, obs_dim, action_dim,
                                               cfg.replay_capacity)
        self.iteration = 0

    # ------------------------------------------------------------------ policies
    def policy(self, deterministic: bool = False) -> PEARLPolicy:
        """The adapting test-time policy (prior z, then posterior from its own context)."""
        return PEARLPolicy(self.actor, self.encoder, self.scale, adaptive=True,
                           exploration_episodes=self.config.exploration_episodes,
                           deterministic=deterministic or self.config.deterministic_eval,
                           use_next_obs=self.config.use_next_obs)

    def _collection_policy(self, contexts: Mapping[Task, np.ndarray] | None = None
                           ) -> PEARLPolicy:
        return PEARLPolicy(self.actor, self.encoder, self.scale, contexts=contexts,
                           use_next_obs=self.config.use_next_obs)

    # ------------------------------------------------------------------ training
    def train_iteration(self, sampler: Sampler, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        metrics: dict[str, float] = {"env_steps": 0.0}
        if len(self.replay) == 0:  # the first iteration (or a resume without buffers)
            everything = np.arange(cfg.train_tasks)
            metrics.update(self._collect(sampler, everything, cfg.initial_steps, rng,
                                         posterior=False, to_encoder=True, tag="initial"))
        chosen = rng.integers(0, cfg.train_tasks, cfg.tasks_per_iteration)  # as oyster: may repeat
        for task in chosen:
            self.encoder_replay.clear(int(task))
        for steps, posterior, to_encoder, tag in (
                (cfg.prior_steps, False, True, "prior"),
                (cfg.posterior_steps, True, True, "posterior"),
                (cfg.extra_posterior_steps, True, False, "extra_posterior")):
            collected = self._collect(sampler, chosen, steps, rng, posterior, to_encoder, tag)
            metrics["env_steps"] += collected.pop("env_steps", 0.0)
            metrics.update(collected)
        metrics.update(self._train(rng))
        self.iteration += 1
        return metrics

    def _collect(self, sampler: Sampler, task_indices: np.ndarray, steps: int,
                 rng: np.random.Generator, posterior: bool, to_encoder: bool, tag: str
                 ) -> dict[str, float]:
        episodes = _episodes(steps, self.env.max_episode_steps)
        if episodes == 0 or len(task_indices) == 0:
            return {}
        tasks = [self.train_tasks[i] for i in task_indices]
        contexts = None
        if posterior:
            rows = self._context_batch(task_indices, rng)
            contexts = {task: rows[i] for i, task in enumerate(tasks)}
        rollouts = sampler.sample(self._collection_policy(contexts), tasks, trials=1,
                                  episodes=episodes, seed=int(rng.integers(2**31)))
        normalised = replace(rollouts, actions=self.scale.from_env(rollouts.actions))
        self.replay.add_rollouts(task_indices, normalised)
        if to_encoder:
            self.encoder_replay.add_rollouts(task_indices, normalised)
        return {"env_steps": float(rollouts.num_steps),
                f"{tag}_return": float(rollouts.episode_returns().mean())}

    def _context_batch(self, task_indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A context of ``context_batch`` transitions per task from the encoder buffers."""
        cfg = self.config
        batch = self.encoder_replay.sample(task_indices, cfg.context_batch, rng,
                                           sequential=cfg.recurrent)
        return context_rows(batch["observations"], batch["actions"], batch["rewards"],
                            batch["next_observations"], cfg.use_next_obs)

    def _train(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        totals: dict[str, Tensor] = {}
        for _ in range(cfg.gradient_steps):
            tasks = rng.integers(0, cfg.train_tasks, cfg.meta_batch)
            for key, value in self.update(tasks, rng).items():
                totals[key] = totals.get(key, 0.0) + value
        return {key: float(value) / max(cfg.gradient_steps, 1) for key, value in totals.items()}

    def update(self, tasks: np.ndarray, rng: np.random.Generator) -> dict[str, Tensor]:
        """One gradient step of critic, encoder, actor (and temperature) on ``tasks``, all
        in one batched computation; returns detached scalar statistics."""
        cfg = self.config
        context = torch.from_numpy(self._context_batch(tasks, rng)).to(self.device)
        batch = {k: torch.from_numpy(v).to(self.device).flatten(0, 1)
                 for k, v in self.replay.sample(tasks, cfg.batch_size, rng).items()}
        mean, var = self.encoder(context)
        z = sample_latent(mean, var) if cfg.bottleneck else mean
        z = z.repeat_interleave(cfg.batch_size, 0)  # [T * B, L]: task-major like the batch
        fixed_z = z.detach()
        obs, actions = batch["observations"], batch["actions"]
        alpha = self.temperature.alpha
        with torch.no_grad():
            next_in = torch.cat([batch["next_observations"], fixed_z], -1)
            next_action, next_log_prob, _ = self.actor.sample(next_in)
            next_q = self.target_critic(torch.cat([next_in, next_action], -1)).min(0).values
            target = soft_q_target(batch["rewards"], batch["terminated"], next_q, next_log_prob,
                                   alpha, cfg.discount, cfg.reward_scale)
        q = self.critic(torch.cat([obs, z, actions], -1))
        critic_loss = (q - target).square().mean(-1).sum()
        kl = (kl_to_standard_normal(mean, var).sum() if cfg.bottleneck
              else torch.zeros((), device=self.device))
        self.critic_opt.zero_grad(set_to_none=True)
        self.encoder_opt.zero_grad(set_to_none=True)
        (critic_loss + cfg.kl_lambda * kl).backward()
        self.critic_opt.step()
        self.encoder_opt.step()

        actor_in = torch.cat([obs, fixed_z], -1)
        new_action, log_prob, stats = self.actor.sample(actor_in)
        q_new = self.critic(torch.cat([actor_in, new_action], -1)).min(0).values
        actor_loss = ((alpha * log_prob - q_new).mean()
                      + cfg.policy_mean_reg * stats["mean"].square().mean()
                      + cfg.policy_std_reg * stats["log_std"].square().mean())
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(self.actor.parameters()))
        self.actor_opt.step()
        if self.temperature.learned:
            self.alpha_opt.zero_grad(set_to_none=True)
            self.temperature.loss(log_prob).backward()
            self.alpha_opt.step()
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "kl": kl.detach() / len(tasks), "q_mean": q.detach().mean(),
                "log_prob": log_prob.detach().mean(), "alpha": alpha,
                "z_variance": var.detach().mean()}

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        state = {name: getattr(self, name).state_dict() for name in (
            "encoder", "actor", "critic", "target_critic", "temperature", "actor_opt",
            "critic_opt", "encoder_opt", "alpha_opt")}
        state["iteration"] = self.iteration
        if self.config.checkpoint_buffers:
            state["replay"] = self.replay.state_dict()
            state["encoder_replay"] = self.encoder_replay.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("encoder", "actor", "critic", "target_critic", "temperature", "actor_opt",
                     "critic_opt", "encoder_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.iteration = int(state["iteration"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
            self.encoder_replay.load_state_dict(state["encoder_replay"])
