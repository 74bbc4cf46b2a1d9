"""RL² agent: GRU policy and value networks, PPO over whole trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from metarl.envs_api import MetaEnv
from metarl.nn import (
    MLP,
    CategoricalHead,
    LayerNormGRU,
    LayerNormLSTM,
    RunningNorm,
    SideThread,
    activation_by_name,
    clipped_step,
    gae,
    make_head,
    masked_mean,
    ppo_clip_loss,
)
from metarl.random import BatchRNG
from metarl.sampling import Sampler
from metarl.types import Task, Transition, TrialSequences


@dataclass
class RL2Config:
    """RL² hyperparameters (paper: GRU 256 units, γ=0.99, λ=0.3; PPO in place of TRPO)."""

    episodes_per_trial: int = 10
    tasks_per_iteration: int = 250
    hidden_size: int = 256
    discount: float = 0.99
    gae_lambda: float = 0.3
    lr: float = 1e-3
    value_lr: float = 1e-3
    ppo_epochs: int = 5
    minibatches: int = 4
    clip: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    reward_scale: float = 1.0
    normalize_advantages: bool = True
    normalize_values: bool = True  # value net predicts standardised returns
    lr_decay_iterations: int = 0  # >0: learning rates decay linearly to 10% over this many
    layer_norm: bool = False  # layer-normalised GRU (metarl.nn.LayerNormGRU) instead of nn.GRU
    previous_observation: bool = False  # also feed the observation the last action was taken in
    chrono_init: bool = False  # layer_norm only: update-gate timescales ~ U[1, trial length]
    head_hidden: int = 0  # >0: a ReLU layer over [GRU state, GRU input] before the outputs
    cell: str = "gru"  # recurrent core: gru, or lstm (metarl.nn.LayerNormLSTM; layer_norm only)
    candidate_activation: str = "tanh"  # layer_norm only: tanh or relu for the written values
    input_hidden: int = 0  # >0: a ReLU layer embeds the inputs before the recurrent core
    shared_core: bool = False  # one recurrent core under both the policy and the value head
    value_coef: float = 0.5  # shared_core only: weight of the value loss (value_lr unused)
    # >0: an auxiliary loss (not in the paper) trains the policy's core to predict each
    # step's reward from the history and the state, for every action (discrete actions only)
    reward_prediction_coef: float = 0.0
    # a second thread runs the value net's update beside the policy's and half of each
    # batched forward pass (the same numbers up to float rounding, bit-equal at the
    # presets' sizes; with threads=1 it uses a second core)
    second_thread: bool = False
    # the value net (not the policy) also reads the discounted horizon left in the trial,
    # 1 - discount**(steps left): a fixed-length trial's return-to-go depends on it
    # (Pardo et al. 2018), and a critic must otherwise count the steps in its memory
    value_time_input: bool = False
    # λ of the value net's targets (None: gae_lambda). 1.0 fits the discounted Monte Carlo
    # return, as rllab's baselines do (Duan et al.'s TRPO code); GAE's λ then only shapes the
    # advantages. Bootstrapped λ = 0.3 targets let a critic sit near the infinite-horizon
    # value r / (1 - discount) for hundreds of iterations (experiments/critic_bias.py)
    value_target_lambda: float | None = None

    def validate(self) -> None:
        for name in ("episodes_per_trial", "tasks_per_iteration", "hidden_size", "ppo_epochs",
                     "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("head_hidden", "input_hidden"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: no such layer), got "
                                 f"{getattr(self, name)}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"unknown cell {self.cell!r}; valid: gru, lstm")
        activation_by_name(self.candidate_activation)  # raises for an unknown name
        for name, plain in (("cell", "gru"), ("candidate_activation", "tanh")):
            if not self.layer_norm and getattr(self, name) != plain:
                raise ValueError(f"{name}={getattr(self, name)} needs layer_norm=true (without "
                                 f"it the core is nn.GRU, a tanh GRU)")
        if self.chrono_init and (not self.layer_norm or self.cell != "gru"):
            raise ValueError("chrono_init needs layer_norm=true and cell=gru (it initialises "
                             "LayerNormGRU)")
        for name in ("gae_lambda", "value_target_lambda"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("value_coef", "reward_prediction_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("second_thread", "value_time_input"):
            if getattr(self, name) and self.shared_core:
                raise ValueError(f"{name} needs a separate value net (shared_core=false)")
        if self.minibatches > self.tasks_per_iteration:
            raise ValueError(f"minibatches ({self.minibatches}) must not exceed "
                             f"tasks_per_iteration ({self.tasks_per_iteration})")


def recurrent_core(input_size: int, config: RL2Config, max_timescale: int | None) -> nn.Module:
    """The recurrent core ``config`` names, with the ``nn.GRU`` calling convention."""
    size, candidate = config.hidden_size, config.candidate_activation
    if not config.layer_norm:
        return nn.GRU(input_size, size, batch_first=True)
    if config.cell == "lstm":
        return LayerNormLSTM(input_size, size, candidate_activation=candidate)
    return LayerNormGRU(input_size, size, max_timescale=max_timescale,
                        candidate_activation=candidate)


class RecurrentNet(nn.Module):
    """A recurrent core over the RL² input features, then a linear output (or action head).

    With ``input_hidden`` > 0 a ReLU layer embeds the ``input_size`` features before the
    core: its units can fire for conjunctions (this action in that state, with this
    reward), which the core's additive input projection cannot form in one step.
    With ``head_hidden`` > 0 a ReLU layer over ``[core output, inputs]`` comes before the
    output: the outputs can then depend jointly on the memory and the current input (e.g.
    look up what was learnt about the current state), which a linear read-out cannot.
    """

    def __init__(self, input_size: int, core: nn.Module, output: nn.Module,
                 head_hidden: int = 0, input_hidden: int = 0):
        super().__init__()
        self.input_layer = (MLP(input_size, [input_hidden], activation="relu")
                            if input_hidden else None)
        self.core = core
        self.state_size = getattr(core, "state_size", core.hidden_size)
        self.head_layer = (MLP(core.hidden_size + input_size, [head_hidden],
                               activation="relu") if head_hidden else None)
        self.output = output
        self.register_load_state_dict_pre_hook(_rename_legacy_core)

    def features(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs [B, L, F]`` → ``(features [B, L, D], state [1, B, state_size])``: what
        the output reads (a shared-core value head reads them too)."""
        embedded = inputs if self.input_layer is None else self.input_layer(inputs)
        features, hidden = self.core(embedded, hidden)
        if self.head_layer is not None:
            features = self.head_layer(torch.cat([features, inputs], dim=-1))
        return features, hidden

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs [B, L, F]`` → ``(outputs [B, L, ...], state [1, B, state_size])``."""
        features, hidden = self.features(inputs, hidden)
        return self.output(features), hidden


def _rename_legacy_core(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the core was renamed call it ``gru``."""
    for key in [k for k in state_dict if k.startswith(prefix + "gru.")]:
        state_dict[prefix + "core." + key[len(prefix) + 4:]] = state_dict.pop(key)


def _flat_obs_size(space: spaces.Space) -> int:
    if not isinstance(space, spaces.Box):
        raise ValueError(f"RL² needs a Box observation space, got {space}")
    return int(np.prod(space.shape))


class RL2Inputs:
    """Builds the GRU input ``[obs, encode(prev action), prev reward, episode-start]``.

    With ``previous_observation`` the observation the previous action was taken in is
    appended, so that the whole last transition ``(s, a, r, s')`` arrives in one input
    (the paper's input has only ``s'``: the network must remember ``s`` itself).
    """

    def __init__(self, obs_size: int, head: nn.Module, reward_scale: float,
                 previous_observation: bool = False):
        self.obs_size, self.head, self.reward_scale = obs_size, head, reward_scale
        self.previous_observation = previous_observation
        self.size = obs_size * (2 if previous_observation else 1) + head.action_features + 2

    def build(self, obs: torch.Tensor, prev_obs: torch.Tensor, prev_action: torch.Tensor,
              prev_reward: torch.Tensor, episode_start: torch.Tensor, has_prev: torch.Tensor
              ) -> torch.Tensor:
        """All arguments share leading dims; ``has_prev`` zeroes the previous-step features
        at the first step of a trial."""
        a = self.head.encode(prev_action) * has_prev.unsqueeze(-1)
        r = (prev_reward * self.reward_scale * has_prev).unsqueeze(-1)
        parts = [obs.float(), a, r, episode_start.float().unsqueeze(-1)]
        if self.previous_observation:
            parts.append(prev_obs.float() * has_prev.unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def from_sequences(self, seq: TrialSequences) -> torch.Tensor:
        """Inputs for packed trials ``[R, L, F]`` (previous action/reward shifted by one)."""
        obs = torch.as_tensor(seq.observations).reshape(*seq.mask.shape, self.obs_size)
        actions = torch.as_tensor(seq.actions)
        rewards = torch.as_tensor(seq.rewards, dtype=torch.float32)
        prev_o, prev_a, prev_r = (torch.roll(v, 1, dims=1) for v in (obs, actions, rewards))
        has_prev = torch.ones(seq.mask.shape)
        has_prev[:, 0] = 0.0
        return self.build(obs, prev_o, prev_a, prev_r, torch.as_tensor(seq.episode_start),
                          has_prev)


@dataclass
class _TrialState:
    hidden: torch.Tensor  # [1, B, H]
    prev_obs: torch.Tensor  # [B, obs_size]: where prev_action was taken
    prev_action: torch.Tensor
    prev_reward: torch.Tensor
    episode_start: torch.Tensor  # bool [B]
    has_prev: torch.Tensor  # float [B]: 0 before the first step of the trial
    rng: BatchRNG
    pending_hidden: torch.Tensor | None = None  # computed by act, committed by observe


class RL2Policy:
    """The adapting policy: hidden state carried across the episodes of a trial."""

    def __init__(self, net: RecurrentNet, inputs: RL2Inputs, deterministic: bool = False,
                 side: SideThread | None = None):
        self.net, self.inputs, self.deterministic = net, inputs, deterministic
        self.side = side  # if given, half of each step's batch runs there
        self.device = next(net.parameters()).device

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> _TrialState:
        b = len(tasks) * trials
        h = self.net.state_size
        discrete = isinstance(self.net.output, CategoricalHead)
        action_shape = () if discrete else (self.net.output.action_features,)
        dtype = torch.long if discrete else torch.float32
        return _TrialState(
            hidden=torch.zeros(1, b, h, device=self.device),
            prev_obs=torch.zeros(b, self.inputs.obs_size, device=self.device),
            prev_action=torch.zeros((b, *action_shape), dtype=dtype, device=self.device),
            prev_reward=torch.zeros(b, device=self.device),
            episode_start=torch.ones(b, dtype=torch.bool, device=self.device),
            has_prev=torch.zeros(b, device=self.device),
            rng=rng,
        )

    def act(self, obs: torch.Tensor, state: _TrialState):
        x = self.inputs.build(obs.reshape(obs.shape[0], -1), state.prev_obs, state.prev_action,
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
        if self.inputs.previous_observation:  # else the input never reads it
            obs = torch.as_tensor(step.observations, dtype=torch.float32, device=self.device)
            state.prev_obs = torch.where(valid.view(-1, 1), obs.reshape(len(obs), -1),
                                         state.prev_obs)
        reward = torch.as_tensor(step.rewards, dtype=torch.float32, device=self.device)
        state.prev_reward = torch.where(valid, reward, state.prev_reward)
        state.episode_start = torch.where(valid, torch.zeros_like(valid), state.episode_start)
        state.has_prev = torch.where(valid, torch.ones_like(state.has_prev), state.has_prev)
        return state

    def end_episode(self, state: _TrialState, episode) -> _TrialState:
        state.episode_start = torch.ones_like(state.episode_start)
        return state


class RL2Agent:
    """RL² with a PPO outer loop. One iteration = one batch of trials on fresh tasks."""

    def __init__(self, env: MetaEnv, config: RL2Config, device: str = "cpu"):
        self.env, self.config = env, config
        self.device = torch.device(device)
        obs_size = _flat_obs_size(env.observation_space)
        features = config.head_hidden or config.hidden_size
        head = make_head(features, env.action_space)
        self.inputs = RL2Inputs(obs_size, head, config.reward_scale,
                                config.previous_observation)
        trial_steps = config.episodes_per_trial * env.max_episode_steps
        timescale = trial_steps if config.chrono_init else None

        def net(output: nn.Module, extra_inputs: int = 0) -> RecurrentNet:
            size = self.inputs.size + extra_inputs
            core = recurrent_core(config.input_hidden or size, config, timescale)
            return RecurrentNet(size, core, output, config.head_hidden,
                                config.input_hidden).to(self.device)

        self.policy_net = net(head)
        self.value_net: RecurrentNet | None = None  # a second core, unless shared_core
        self.value_head: nn.Linear | None = None  # reads the policy's features if shared_core
        self.value_opt: torch.optim.Optimizer | None = None
        if config.shared_core:
            self.value_head = nn.Linear(features, 1).to(self.device)
        else:
            self.value_net = net(nn.Linear(features, 1), int(config.value_time_input))
            self.value_opt = torch.optim.Adam(self.value_net.parameters(), lr=config.value_lr)
        self.reward_head: nn.Linear | None = None  # one predicted reward per action
        if config.reward_prediction_coef > 0:
            if not isinstance(env.action_space, spaces.Discrete):
                raise ValueError(f"reward_prediction_coef needs a Discrete action space, got "
                                 f"{env.action_space}")
            self.reward_head = nn.Linear(features, int(env.action_space.n)).to(self.device)
        self.policy_opt = torch.optim.Adam(self._policy_parameters(), lr=config.lr)
        self.value_norm = RunningNorm().to(self.device)
        self.iteration = 0
        self._side = SideThread("rl2") if config.second_thread else None

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
        """PPO epochs over minibatches of whole trials."""
        cfg = self.config
        dev = self.device
        self._set_learning_rates()
        x = self.inputs.from_sequences(seq).to(dev)
        actions = torch.as_tensor(seq.actions, device=dev)
        rewards = torch.as_tensor(seq.rewards, dtype=torch.float32, device=dev) * cfg.reward_scale
        mask = torch.as_tensor(seq.mask, device=dev)
        with torch.no_grad():
            # the behaviour policy's, recorded while sampling (no forward pass over the batch)
            old_log_prob = torch.as_tensor(seq.extras["log_prob"], dtype=torch.float32,
                                           device=dev)
            values = self._values(x, split=True)
            advantages, returns = self._advantages_and_targets(rewards, values, mask)
            if cfg.normalize_values:
                self.value_norm.update(returns, mask)
                returns = self.value_norm.normalize(returns)
        if cfg.normalize_advantages:
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean) ** 2, mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        rows = x.shape[0]
        stats: dict[str, list[float]] = {}
        perm_gen = torch.Generator().manual_seed(self.iteration)
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(rows, generator=perm_gen).chunk(cfg.minibatches):
                losses = self._minibatch_step(x[idx], actions[idx], rewards[idx],
                                              old_log_prob[idx], advantages[idx],
                                              returns[idx], mask[idx])
                for key, value in losses.items():
                    stats.setdefault(key, []).append(float(value.detach()))
        return {key: float(np.mean(v)) for key, v in stats.items()}

    def _advantages_and_targets(self, rewards: torch.Tensor, values: torch.Tensor,
                                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages (``gae_lambda``) and the value net's targets in reward units: the
        λ-returns of ``value_target_lambda`` (default ``gae_lambda``; 1.0: Monte Carlo)."""
        cfg = self.config
        advantages, returns = gae(rewards, values, mask, cfg.discount, cfg.gae_lambda)
        if cfg.value_target_lambda not in (None, cfg.gae_lambda):
            _, returns = gae(rewards, values, mask, cfg.discount, cfg.value_target_lambda)
        return advantages, returns

    def _minibatch_step(self, x: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                        old_log_prob: torch.Tensor, advantages: torch.Tensor,
                        returns: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One PPO step of the policy and one of the value function on a minibatch of
        trials (a single step of both when they share the core); returns the losses."""
        cfg = self.config
        value_step = None  # the separate value net's step, on the second thread if any
        if self._side is not None:
            value_step = self._side.submit(self._value_step, x, returns, mask)
        features, _ = self.policy_net.features(x)
        head = self.policy_net.output
        params = head(features)
        loss, info = ppo_clip_loss(head.log_prob(params, actions), old_log_prob, advantages,
                                   cfg.clip, mask)
        entropy = masked_mean(head.entropy(params), mask)
        policy_loss = loss - cfg.entropy_coef * entropy
        extra = {}
        if self.reward_head is not None:
            prediction_loss = reward_prediction_error(self.reward_head(features), actions,
                                                      rewards, mask)
            policy_loss = policy_loss + cfg.reward_prediction_coef * prediction_loss
            extra["reward_prediction_loss"] = prediction_loss
        if cfg.shared_core:
            value_loss = masked_mean((self._raw_values(x, features) - returns) ** 2, mask)
            clipped_step(self.policy_opt, self._policy_parameters(),
                  policy_loss + cfg.value_coef * value_loss, cfg.max_grad_norm)
        else:
            clipped_step(self.policy_opt, self._policy_parameters(), policy_loss,
                         cfg.max_grad_norm)
            value_loss = (value_step.result() if value_step is not None
                          else self._value_step(x, returns, mask))
        # value loss in normalised units when normalize_values
        return {"policy_loss": loss, "value_loss": value_loss, "entropy": entropy, **info,
                **extra}

    def _value_step(self, x: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
        """One step of the separate value net on a minibatch; returns its loss. It shares
        nothing with the policy's step, so it may run on another thread at the same time."""
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
            if opt is None:  # shared core: no value optimiser
                continue
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _policy_parameters(self) -> list[nn.Parameter]:
        """What the policy optimiser steps: the policy net, the value head if shared, the
        reward-prediction head if any."""
        heads = [h for h in (self.value_head, self.reward_head) if h is not None]
        return [*self.policy_net.parameters(), *(p for h in heads for p in h.parameters())]

    def _raw_values(self, x: torch.Tensor, features: torch.Tensor | None = None,
                    split: bool = False) -> torch.Tensor:
        """The value output ``[B, L]`` (standardised if ``normalize_values``); a shared core
        reuses the policy's ``features`` when given. ``split`` runs a separate value net on
        the two halves of the rows at once when there is a second thread (never from the
        second thread itself, which would wait on itself)."""
        if self.value_net is not None:
            inputs = self._value_inputs(x)
            if split and self._side is not None:
                return self._side.recurrent_forward(self.value_net, inputs)[0].squeeze(-1)
            return self.value_net(inputs)[0].squeeze(-1)
        if features is None:
            features, _ = self.policy_net.features(x)
        return self.value_head(features).squeeze(-1)

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
        """State values in reward units (the net predicts standardised ones); ``split`` as
        in :meth:`_raw_values`."""
        raw = self._raw_values(x, split=split)
        return self.value_norm.denormalize(raw) if self.config.normalize_values else raw

    @torch.no_grad()
    def trial_values(self, seq: TrialSequences) -> torch.Tensor:
        """The critic's state values ``[R, L]``, in reward units, at every step of the trials
        (diagnostics: ``experiments/critic_bias.py``)."""
        return self._values(self.inputs.from_sequences(seq).to(self.device))

    def state_dict(self) -> dict:
        state = {"iteration": self.iteration}
        for key, part in self._stateful_parts().items():
            state[key] = part.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for key, part in self._stateful_parts().items():
            part.load_state_dict(state[key])
        self.iteration = int(state["iteration"])

    def _stateful_parts(self) -> dict:
        """Checkpoint key → module or optimiser (the value parts depend on shared_core)."""
        parts = {"policy_net": self.policy_net, "value_net": self.value_net,
                 "value_head": self.value_head, "reward_head": self.reward_head,
                 "value_norm": self.value_norm,
                 "policy_opt": self.policy_opt, "value_opt": self.value_opt}
        return {key: part for key, part in parts.items() if part is not None}


def reward_prediction_error(predictions: torch.Tensor, actions: torch.Tensor,
                            rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean squared error of the taken actions' predicted rewards: ``predictions [B,
    L, A]`` hold one reward per action, ``actions``, ``rewards`` and ``mask`` are ``[B, L]``."""
    taken = predictions.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return masked_mean((taken - rewards) ** 2, mask)

