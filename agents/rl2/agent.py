"""RL² agent: GRU policy and value networks, PPO over whole trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from metarl.agent import MetaRLAgent
from metarl.config import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_INTERVAL,
    between,
    check_settings,
    setting,
)
from metarl.envs_api import MetaEnv
from metarl.memory import MemoryNeed
from metarl.nn import (
    CategoricalHead,
    RecurrentNet,
    RunningNorm,
    SideThread,
    clipped_step,
    gae,
    make_gru,
    make_head,
    masked_mean,
    ppo_clip_loss,
)
from metarl.random import BatchRNG
from metarl.sampling import Sampler
from metarl.types import Rollouts, Task, Transition, TrialSequences


@dataclass
class RL2Config:
    """RL² hyperparameters (paper: GRU 256 units, γ=0.99, λ=0.3; PPO in place of TRPO)."""

    #: options of earlier versions, accepted (and ignored) in stored configs at the value
    #: that made them no-ops, so older run directories still load
    RETIRED_OPTIONS: ClassVar[dict[str, Any]] = {
        "previous_observation": False, "head_hidden": 0, "cell": "gru",
        "candidate_activation": "tanh", "input_hidden": 0, "shared_core": False,
        "value_coef": 0.5, "reward_prediction_coef": 0.0}

    episodes_per_trial: int = setting(10, AT_LEAST_1)
    tasks_per_iteration: int = setting(250, AT_LEAST_1)
    hidden_size: int = setting(256, AT_LEAST_1)
    discount: float = setting(0.99, UNIT_INTERVAL)
    gae_lambda: float = setting(0.3, UNIT_INTERVAL)
    lr: float = setting(1e-3, POSITIVE)
    value_lr: float = setting(1e-3, POSITIVE)
    ppo_epochs: int = setting(5, AT_LEAST_1)
    minibatches: int = setting(4, AT_LEAST_1)  # at most tasks_per_iteration
    clip: float = setting(0.2, between(0, 1, low_open=True))
    entropy_coef: float = setting(0.0, NON_NEGATIVE)
    max_grad_norm: float = setting(1.0, POSITIVE)
    reward_scale: float = setting(1.0, POSITIVE)
    normalize_advantages: bool = True
    normalize_values: bool = True  # the value net predicts standardised returns
    # >0: learning rates decay linearly to 10% over this many
    lr_decay_iterations: int = setting(0, NON_NEGATIVE)
    layer_norm: bool = False  # metarl.nn.LayerNormGRU in place of nn.GRU
    chrono_init: bool = False  # layer_norm only: update-gate timescales ~ U[1, trial length]
    # the value net's update and half of each batched forward pass run on a second thread
    # (the same numbers up to float rounding, bit-equal at the presets' sizes)
    second_thread: bool = False
    # the value net (not the policy) also reads the discounted horizon left in the trial,
    # 1 - discount**(steps left), on which a fixed-length trial's return-to-go depends
    # (Pardo et al. 2018)
    value_time_input: bool = False
    # λ of the value targets (None: gae_lambda); 1.0 fits the discounted Monte Carlo return,
    # as rllab's baselines (Duan et al.'s code), and GAE's λ then only shapes the advantages
    value_target_lambda: float | None = setting(None, UNIT_INTERVAL)

    def validate(self) -> None:
        """The declared ranges (:func:`metarl.config.check_settings`), then the checks that
        involve several fields."""
        check_settings(self)
        if self.chrono_init and not self.layer_norm:
            raise ValueError("chrono_init needs layer_norm=true (it initialises LayerNormGRU)")
        if self.minibatches > self.tasks_per_iteration:
            raise ValueError(f"minibatches ({self.minibatches}) must not exceed "
                             f"tasks_per_iteration ({self.tasks_per_iteration})")


def _flat_obs_size(space: spaces.Space) -> int:
    if not isinstance(space, spaces.Box):
        raise ValueError(f"RL² needs a Box observation space, got {space}")
    return int(np.prod(space.shape))


class RL2Inputs:
    """Builds the core's input ``[obs, encode(prev action), prev reward, episode-start]``."""

    def __init__(self, obs_size: int, head: nn.Module, reward_scale: float):
        self.obs_size, self.head, self.reward_scale = obs_size, head, reward_scale
        self.size = obs_size + head.action_features + 2

    def build(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
              episode_start: torch.Tensor, has_prev: torch.Tensor) -> torch.Tensor:
        """All arguments share leading dims; ``has_prev`` zeroes the previous-step features
        at the first step of a trial."""
        a = self.head.encode(prev_action) * has_prev.unsqueeze(-1)
        r = (prev_reward * self.reward_scale * has_prev).unsqueeze(-1)
        return torch.cat([obs.float(), a, r, episode_start.float().unsqueeze(-1)], dim=-1)

    def from_sequences(self, seq: TrialSequences, device: torch.device | str | None = None
                       ) -> torch.Tensor:
        """Inputs ``[R, L, F]`` of packed trials on ``device`` (default: the CPU)."""
        obs = torch.as_tensor(seq.observations, device=device).reshape(*seq.mask.shape,
                                                                       self.obs_size)
        actions = torch.as_tensor(seq.actions, device=device)
        rewards = torch.as_tensor(seq.rewards, dtype=torch.float32, device=device)
        prev_a, prev_r = (torch.roll(v, 1, dims=1) for v in (actions, rewards))
        has_prev = torch.ones(seq.mask.shape, device=device)
        has_prev[:, 0] = 0.0
        return self.build(obs, prev_a, prev_r,
                          torch.as_tensor(seq.episode_start, device=device), has_prev)


@dataclass
class _TrialState:
    hidden: torch.Tensor  # [1, B, H]
    prev_action: torch.Tensor
    prev_reward: torch.Tensor
    episode_start: torch.Tensor  # bool [B]
    has_prev: torch.Tensor  # float [B]: 0 before the first step of the trial
    rng: BatchRNG
    pending_hidden: torch.Tensor | None = None  # computed by act, committed by observe


class RL2Policy:
    """The adapting policy: the hidden state carries over the episodes of a trial."""

    def __init__(self, net: RecurrentNet, inputs: RL2Inputs, deterministic: bool = False,
                 side: SideThread | None = None):
        self.net, self.inputs, self.deterministic = net, inputs, deterministic
        self.side = side  # if given, half of each step's batch runs there
        self.device = next(net.parameters()).device

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> _TrialState:
        b, h = len(tasks) * trials, self.net.hidden_size
        discrete = isinstance(self.net.output, CategoricalHead)
        action_shape = () if discrete else (self.net.output.action_features,)
        dtype = torch.long if discrete else torch.float32
        return _TrialState(
            hidden=torch.zeros(1, b, h, device=self.device),
            prev_action=torch.zeros((b, *action_shape), dtype=dtype, device=self.device),
            prev_reward=torch.zeros(b, device=self.device),
            episode_start=torch.ones(b, dtype=torch.bool, device=self.device),
            has_prev=torch.zeros(b, device=self.device),
            rng=rng,
        )

    def act(self, obs: torch.Tensor, state: _TrialState
            ) -> tuple[torch.Tensor, _TrialState, dict[str, torch.Tensor]]:
        x = self.inputs.build(obs.reshape(obs.shape[0], -1), state.prev_action,
                              state.prev_reward, state.episode_start, state.has_prev)
        if self.side is None:
            params, hidden = self.net(x.unsqueeze(1), state.hidden)
        else:
            params, hidden = self.side.recurrent_forward(self.net, x.unsqueeze(1), state.hidden)
        head = self.net.output
        action = head.sample(params[:, 0], state.rng, self.deterministic)
        state.pending_hidden = hidden  # committed in observe() for valid environments
        return action, state, {"log_prob": head.log_prob(params[:, 0], action)}

    def observe(self, state: _TrialState, step: Transition) -> _TrialState:
        valid = torch.as_tensor(step.valid, device=self.device)
        keep = valid.view(1, -1, 1)
        state.hidden = torch.where(keep, state.pending_hidden, state.hidden)
        action = torch.as_tensor(step.actions, device=self.device).to(state.prev_action.dtype)
        vmask = valid.view(-1, *([1] * (action.dim() - 1)))
        state.prev_action = torch.where(vmask, action, state.prev_action)
        reward = torch.as_tensor(step.rewards, dtype=torch.float32, device=self.device)
        state.prev_reward = torch.where(valid, reward, state.prev_reward)
        state.episode_start = torch.where(valid, torch.zeros_like(valid), state.episode_start)
        state.has_prev = torch.where(valid, torch.ones_like(state.has_prev), state.has_prev)
        return state

    def end_episode(self, state: _TrialState, episode: Rollouts) -> _TrialState:
        state.episode_start = torch.ones_like(state.episode_start)
        return state


class RL2Agent(MetaRLAgent):
    """RL² with a PPO outer loop. One iteration = one batch of trials on fresh tasks."""

    def __init__(self, env: MetaEnv, config: RL2Config, device: torch.device | str = "cpu"):
        self.env, self.config = env, config
        self.eval_episodes = config.episodes_per_trial  # evaluated on its trained trial
        self.device = torch.device(device)
        head = make_head(config.hidden_size, env.action_space)
        self.inputs = RL2Inputs(_flat_obs_size(env.observation_space), head, config.reward_scale)
        trial_steps = config.episodes_per_trial * env.max_episode_steps
        timescale = trial_steps if config.chrono_init else None

        def net(output: nn.Module, input_size: int) -> RecurrentNet:
            core = make_gru(input_size, config.hidden_size, config.layer_norm, timescale)
            return RecurrentNet(core, output).to(self.device)

        self.policy_net = net(head, self.inputs.size)
        self.value_net = net(nn.Linear(config.hidden_size, 1),
                             self.inputs.size + int(config.value_time_input))
        self.policy_opt = torch.optim.Adam(self.policy_net.parameters(), lr=config.lr)
        self.value_opt = torch.optim.Adam(self.value_net.parameters(), lr=config.value_lr)
        self.value_norm = RunningNorm().to(self.device)
        self.iteration = 0
        self._side = SideThread("rl2") if config.second_thread else None

    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """An iteration's and an evaluation's rollouts: tasks_per_iteration (eval_tasks) x
        1 x episodes_per_trial."""
        cfg, one = config.agent_config, ("trials", None, 1)
        episodes = ("episodes", "episodes_per_trial", cfg.episodes_per_trial)
        return [cls.rollouts(config, env, "an iteration's rollouts",
                             ("tasks", "tasks_per_iteration", cfg.tasks_per_iteration), one,
                             episodes),
                cls.rollouts(config, env, "an evaluation's rollouts",
                             ("tasks", "eval_tasks", config.trainer.eval_tasks), one, episodes)]

    def policy(self, deterministic: bool = False) -> RL2Policy:
        return RL2Policy(self.policy_net, self.inputs, deterministic, self._side)

    def train_iteration(self, sampler: Sampler, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        tasks = self.env.sample_tasks(cfg.tasks_per_iteration, rng)
        seed = int(rng.integers(2**31))
        rollouts = sampler.sample(self.policy(), tasks, trials=1,
                                  episodes=cfg.episodes_per_trial, seed=seed)
        metrics = self.update(rollouts.trial_sequences())
        returns = rollouts.episode_returns()
        metrics.update(trial_return=float(returns.sum(-1).mean()),
                       first_episode_return=float(returns[..., 0].mean()),
                       last_episode_return=float(returns[..., -1].mean()),
                       env_steps=float(rollouts.num_steps))
        self.iteration += 1
        return metrics

    def update(self, seq: TrialSequences) -> dict[str, float]:
        """PPO epochs over minibatches of whole trials; returns the mean of each loss."""
        steps = self._ppo(seq)
        return {key: float(np.mean([float(step[key]) for step in steps])) for key in steps[0]}

    def _ppo(self, seq: TrialSequences) -> list[dict[str, torch.Tensor]]:
        """The update; returns each minibatch step's losses (detached, on the device)."""
        cfg = self.config
        self._set_learning_rates()
        x, actions, rewards, mask, old_log_prob = self._tensors(seq)
        with torch.no_grad():
            values = self._values(x, split=True)
            advantages, returns = self._advantages_and_targets(rewards, values, mask)
            if cfg.normalize_values:
                self.value_norm.update(returns, mask)
                returns = self.value_norm.normalize(returns)
        if cfg.normalize_advantages:
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean) ** 2, mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        generator = torch.Generator().manual_seed(self.iteration)  # CPU: the same everywhere
        steps = []
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(len(x), generator=generator).chunk(cfg.minibatches):
                idx = idx.to(self.device)
                steps.append(self._minibatch_step(x[idx], actions[idx], old_log_prob[idx],
                                                  advantages[idx], returns[idx], mask[idx]))
        return steps

    def _tensors(self, seq: TrialSequences) -> tuple[torch.Tensor, ...]:
        """``(inputs, actions, scaled rewards, mask, behaviour log-probs)`` of the trials
        on the device; the log-probs were recorded while sampling."""
        dev = self.device
        rewards = torch.as_tensor(seq.rewards, dtype=torch.float32, device=dev)
        return (self.inputs.from_sequences(seq, dev), torch.as_tensor(seq.actions, device=dev),
                rewards * self.config.reward_scale, torch.as_tensor(seq.mask, device=dev),
                torch.as_tensor(seq.extras["log_prob"], dtype=torch.float32, device=dev))

    def _advantages_and_targets(self, rewards: torch.Tensor, values: torch.Tensor,
                                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages (``gae_lambda``) and the value net's targets in reward units: the
        λ-returns of ``value_target_lambda`` (default ``gae_lambda``; 1.0: Monte Carlo)."""
        cfg = self.config
        advantages, returns = gae(rewards, values, mask, cfg.discount, cfg.gae_lambda)
        if cfg.value_target_lambda not in (None, cfg.gae_lambda):
            _, returns = gae(rewards, values, mask, cfg.discount, cfg.value_target_lambda)
        return advantages, returns

    def _minibatch_step(self, x: torch.Tensor, actions: torch.Tensor,
                        old_log_prob: torch.Tensor, advantages: torch.Tensor,
                        returns: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One PPO step of the policy and one step of the value net (on the second thread if
        any) on a minibatch of trials; returns the losses, the value loss in standardised
        units with ``normalize_values``."""
        cfg = self.config
        value_step = (self._side.submit(self._value_step, x, returns, mask)
                      if self._side is not None else None)
        head = self.policy_net.output
        params, _ = self.policy_net(x)
        loss, info = ppo_clip_loss(head.log_prob(params, actions), old_log_prob, advantages,
                                   cfg.clip, mask)
        entropy = masked_mean(head.entropy(params), mask)
        clipped_step(self.policy_opt, list(self.policy_net.parameters()),
                     loss - cfg.entropy_coef * entropy, cfg.max_grad_norm)
        value_loss = (value_step.result() if value_step is not None
                      else self._value_step(x, returns, mask))
        losses = {"policy_loss": loss, "value_loss": value_loss, "entropy": entropy, **info}
        return {key: value.detach() for key, value in losses.items()}

    def _value_step(self, x: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
        """One step of the value net on a minibatch; returns its loss. It shares nothing
        with the policy's step, so it may run on another thread at the same time."""
        value_loss = masked_mean((self._raw_values(x) - returns) ** 2, mask)
        clipped_step(self.value_opt, list(self.value_net.parameters()), value_loss,
                     self.config.max_grad_norm)
        return value_loss

    def _set_learning_rates(self) -> None:
        cfg = self.config
        scale = 1.0
        if cfg.lr_decay_iterations > 0:
            scale = max(0.1, 1.0 - 0.9 * self.iteration / cfg.lr_decay_iterations)
        for opt, lr in ((self.policy_opt, cfg.lr), (self.value_opt, cfg.value_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _raw_values(self, x: torch.Tensor, split: bool = False) -> torch.Tensor:
        """The value net's output ``[B, L]`` (standardised with ``normalize_values``).
        ``split`` runs the two halves of the rows at once when there is a second thread
        (never from the second thread itself, which would wait on itself)."""
        inputs = self._value_inputs(x)
        if split and self._side is not None:
            return self._side.recurrent_forward(self.value_net, inputs)[0].squeeze(-1)
        return self.value_net(inputs)[0].squeeze(-1)

    def _value_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The value net's inputs: the trials' ``x [B, L, F]``, and with ``value_time_input``
        one more feature, the discounted horizon left ``1 - discount**(L - t)`` at step ``t``
        (``L`` the padded trial length, exact for fixed-length trials)."""
        if not self.config.value_time_input:
            return x
        steps_left = torch.arange(x.shape[1], 0, -1, device=x.device, dtype=x.dtype)
        horizon = 1.0 - self.config.discount ** steps_left
        return torch.cat([x, horizon.expand(x.shape[0], -1).unsqueeze(-1)], dim=-1)

    def _values(self, x: torch.Tensor, split: bool = False) -> torch.Tensor:
        """State values in reward units; ``split`` as in :meth:`_raw_values`."""
        raw = self._raw_values(x, split=split)
        return self.value_norm.denormalize(raw) if self.config.normalize_values else raw

    @torch.no_grad()
    def trial_values(self, seq: TrialSequences) -> torch.Tensor:
        """The critic's state values ``[R, L]``, in reward units, at every step of the trials
        (diagnostics: ``experiments/analysis/critic_bias.py``)."""
        return self._values(self.inputs.from_sequences(seq, self.device))

    def state_dict(self) -> dict:
        return {"iteration": self.iteration,
                **{key: part.state_dict() for key, part in self._stateful_parts().items()}}

    def load_state_dict(self, state: dict) -> None:
        for key, part in self._stateful_parts().items():
            part.load_state_dict(state[key])
        self.iteration = int(state["iteration"])

    def _stateful_parts(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {"policy_net": self.policy_net, "value_net": self.value_net,
                "value_norm": self.value_norm, "policy_opt": self.policy_opt,
                "value_opt": self.value_opt}
