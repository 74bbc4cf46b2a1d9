"""Gradient-based adaptation of RL policies (MAML-RL, ProMP) on :mod:`metarl.meta`.

The adaptation lives in the policy's trial state (DESIGN.md): a trial of ``N`` tasks x ``M``
rollouts starts with the meta-parameters θ; after each episode ``end_episode`` takes the
inner policy-gradient step of every task on its ``M`` episodes (one vmapped computation),
and the next episode acts with the adapted parameters θ'_i — so evaluation's adaptation
curve is the pre-update, one-step, two-step... return.

Per-task data is :class:`PolicyData` ``[N, M, T, ...]``: advantages from a linear feature
baseline fitted per task (MAML-RL) and GAE, standardised per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor
from torch.func import functional_call, jvp, vjp, vmap

from metarl.agent import MetaRLAgent
from metarl.config import (
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_INTERVAL,
    check_settings,
    setting,
)
from metarl.memory import MemoryNeed
from metarl.meta.adapt import InnerLoop, LossFn, Params, adapt_batch, parameters_of
from metarl.nn import GaussianMLP, NumpyGaussianMLP, discounted_returns, gae
from metarl.nn.linear_value import linear_value_estimates
from metarl.nn.mlp import INITS
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition


@dataclass(frozen=True)
class PolicyData:
    """One episode of every trial, per task: ``[N, M, T, ...]`` tensors."""

    observations: Tensor
    actions: Tensor
    advantages: Tensor
    mask: Tensor  # float: 1 on real steps
    old_log_prob: Tensor  # log π of the sampling policy
    rewards: Tensor
    values: Tensor  # the linear baseline's predictions

    def tasks(self, index: slice) -> PolicyData:
        """The data of some of the tasks."""
        return PolicyData(*(x[index] for x in self.as_tuple()))

    def as_tuple(self) -> tuple[Tensor, ...]:
        """What inner losses receive: ``(obs, actions, advantages, mask, old_log_prob,
        rewards, values)``."""
        return (self.observations, self.actions, self.advantages, self.mask,
                self.old_log_prob, self.rewards, self.values)


def episode_data(rollouts: Rollouts, episode: int, discount: float, gae_lambda: float,
                 normalize: bool = True, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> PolicyData:
    """Episode ``episode`` of ``rollouts`` as :class:`PolicyData` on ``device`` (default the
    CPU), with advantages from GAE over a per-task linear feature baseline (fitted on
    ``device``; standardised per task when ``normalize``)."""
    def tensor(array: np.ndarray, kind: torch.dtype = dtype) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(array[:, :, episode]), dtype=kind,
                               device=device)

    obs, rewards = tensor(rollouts.observations), tensor(rollouts.rewards)
    mask = tensor(rollouts.valid)
    n, m, t = rewards.shape
    returns = discounted_returns(rewards.reshape(n * m, t), mask.reshape(n * m, t), discount)
    values = linear_value_estimates(obs, returns.reshape(n, m, t), mask.bool())
    advantages, _ = gae(rewards.reshape(n * m, t), values.reshape(n * m, t).to(dtype),
                        mask.reshape(n * m, t), discount, gae_lambda)
    advantages = advantages.reshape(n, m, t)
    if normalize:
        advantages = standardize_per_task(advantages, mask)
    actions = tensor(rollouts.actions)
    old = rollouts.extras.get("log_prob")
    old_log_prob = tensor(old) if old is not None else torch.zeros_like(rewards)
    return PolicyData(obs, actions, advantages, mask, old_log_prob, rewards,
                      values.to(dtype))


def standardize_per_task(x: Tensor, mask: Tensor) -> Tensor:
    """``(x - mean) / std`` over each task's real steps (``[N, ...]``), zero elsewhere."""
    dims = tuple(range(1, x.dim()))
    count = mask.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dims, keepdim=True) / count
    var = ((x - mean).square() * mask).sum(dims, keepdim=True) / count
    return (x - mean) / (var.sqrt() + 1e-8) * mask


def log_probs(net: GaussianMLP, params: Params, observations: Tensor, actions: Tensor
              ) -> Tensor:
    """``log π_params(a | s)`` for every step (any leading shape)."""
    return net.head.log_prob(functional_call(net, params, (observations,)), actions)


def vpg_loss(net: GaussianMLP) -> LossFn:
    """MAML-RL's inner loss on one task's data: ``-mean(log π(a|s) · A)`` over real steps."""
    def loss(params: Params, data: tuple[Tensor, ...]) -> Tensor:
        obs, actions, advantages, mask = data[:4]
        logp = log_probs(net, params, obs, actions)
        return -(logp * advantages * mask).sum() / mask.sum().clamp_min(1.0)

    return loss


def lvc_loss(net: GaussianMLP) -> LossFn:
    """ProMP's low-variance curvature (LVC) inner loss: ``-mean(π(a|s) / π_old(a|s) · A)``
    with ``π_old`` the sampling policy. Its gradient at θ = θ_old is the policy gradient;
    its Hessian drops the high-variance cross terms of the exact one (Rothfuss et al. 2019)."""
    def loss(params: Params, data: tuple[Tensor, ...]) -> Tensor:
        obs, actions, advantages, mask, old_log_prob = data[:5]
        logp = log_probs(net, params, obs, actions)
        return -lvc_objective(logp, old_log_prob, advantages, mask)

    return loss


def lvc_objective(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: Tensor
                  ) -> Tensor:
    """``mean_t π(a_t|s_t) / π_old(a_t|s_t) · A_t`` over real steps (ProMP's J^LVC)."""
    ratio = (log_prob - old_log_prob).exp()
    return (ratio * advantages * mask).sum() / mask.sum().clamp_min(1.0)


def magic_box(x: Tensor) -> Tensor:
    """DiCE's ``⊡(x) = exp(x − ⊥x)``: 1 in value, ``∇x`` under differentiation."""
    return (x - x.detach()).exp()


def dice_objective(log_prob: Tensor, rewards: Tensor, mask: Tensor, discount: float,
                   values: Tensor | None = None) -> Tensor:
    """DiCE (Foerster et al. 2018) over episodes ``[..., T]``: ``Σ_t ⊡(Σ_{t'≤t} log π_t')
    γ^t r_t`` (+ the baseline term ``Σ_t (1 − ⊡(log π_t)) γ^t b_t``), averaged over episodes.
    Unbiased for gradients of every order."""
    log_prob = log_prob * mask
    weights = discount ** torch.arange(rewards.shape[-1], dtype=rewards.dtype,
                                       device=rewards.device)
    objective = (magic_box(log_prob.cumsum(-1)) * rewards * weights * mask).sum(-1)
    if values is not None:
        objective = objective + ((1 - magic_box(log_prob)) * values * weights * mask).sum(-1)
    return objective.mean()


def dice_loss(net: GaussianMLP, discount: float) -> LossFn:
    """The inner loss ``−DiCE / scale`` on one task's episodes (with the linear baseline);
    ``scale`` (:func:`dice_scale`, a constant of the data) puts its gradient on the scale of
    the VPG and LVC losses on standardised advantages, so one inner lr serves all three."""
    def loss(params: Params, data: tuple[Tensor, ...]) -> Tensor:
        obs, actions, _, mask, _, rewards, values = data
        logp = log_probs(net, params, obs, actions)
        scale = dice_scale(rewards, values, mask, discount)
        return -dice_objective(logp, rewards, mask, discount, values) / scale

    return loss


def dice_scale(rewards: Tensor, values: Tensor, mask: Tensor, discount: float) -> Tensor:
    """Mean real steps per episode x the std of the raw advantages ``G_t − b(s_t)`` over real
    steps (episodes ``[..., T]``). DiCE sums ``∇log π_t · γ^t (G_t − b_t)`` over an episode
    where the VPG loss averages ``∇log π_t · Â_t`` over steps with ``Â`` standardised:
    without this division an inner lr of 0.1 on a 200-step MuJoCo episode overflows."""
    steps = rewards.shape[-1]
    returns = discounted_returns(rewards.reshape(-1, steps), mask.reshape(-1, steps),
                                 discount).reshape(rewards.shape)
    count = mask.sum().clamp_min(1.0)
    advantages = (returns - values) * mask
    mean = advantages.sum() / count
    std = (((advantages - mean) * mask).square().sum() / count).sqrt()
    steps_per_episode = count / mask.sum(-1).gt(0).sum().clamp_min(1)
    return steps_per_episode * (std + 1e-8)


INNER_ESTIMATORS = ("vpg", "lvc", "dice")


def inner_estimator_loss(name: str, net: GaussianMLP, discount: float) -> LossFn:
    """The inner loss of estimator ``name``: ``"vpg"`` (MAML-RL: ``-mean(log π · A)``, whose
    Hessian misses how the pre-update samples depend on θ), ``"lvc"`` (ProMP's low-variance
    curvature) or ``"dice"`` (unbiased to every order, higher variance)."""
    if name == "vpg":
        return vpg_loss(net)
    if name == "lvc":
        return lvc_loss(net)
    if name == "dice":
        return dice_loss(net, discount)
    raise ValueError(f"unknown inner_estimator {name!r}; valid: {', '.join(INNER_ESTIMATORS)}")


def adapt_tasks(inner: InnerLoop, params: Params, data: PolicyData, per_task: bool,
                batched: bool = True) -> Params:
    """Per-task adapted parameters ``[N, ...]`` from shared meta-parameters (``per_task``
    False) or from per-task parameters of an earlier step; differentiable w.r.t. them."""
    if not per_task:
        return adapt_batch(inner, params, data.as_tuple(), batched=batched)
    return vmap(lambda p, d: inner(p, d), randomness="same")(params, data.as_tuple())


def adapt_through(inner: InnerLoop, params: Params, episodes: Sequence[PolicyData]) -> Params:
    """Per-task parameters after one inner step on each of ``episodes`` in turn, starting
    from the shared ``params`` (differentiable w.r.t. them)."""
    per_task = False
    for episode in episodes:
        params, per_task = adapt_tasks(inner, params, episode, per_task), True
    return params


def collect(env: Any, policy: Any, sampler: Any, rng: np.random.Generator, meta_batch: int,
            rollouts_per_task: int, inner_steps: int, discount: float, gae_lambda: float,
            device: torch.device | str | None = None
            ) -> tuple[list[PolicyData], dict[str, float]]:
    """Sample ``meta_batch`` fresh tasks x ``rollouts_per_task`` trials of ``inner_steps + 1``
    episodes with an adapting ``policy``; returns each episode's :class:`PolicyData` (on
    ``device``) and the pre-/post-update returns."""
    tasks = env.sample_tasks(meta_batch, rng)
    rollouts = sampler.sample(policy, tasks, trials=rollouts_per_task,
                              episodes=inner_steps + 1, seed=int(rng.integers(2**31)))
    data = [episode_data(rollouts, k, discount, gae_lambda, device=device)
            for k in range(inner_steps + 1)]
    returns = rollouts.episode_returns().mean(axis=(0, 1))
    return data, {"pre_update_return": float(returns[0]),
                  "post_update_return": float(returns[-1]),
                  "env_steps": float(rollouts.num_steps)}


@dataclass
class AdaptiveState:
    rng: BatchRNG
    params: Params  # shared or per task [N, ...], detached
    frozen: NumpyGaussianMLP
    per_task: bool
    trials: int


class AdaptivePolicy:
    """A Gaussian MLP policy that takes an inner step per task after every episode (see the
    module docstring). ``inner_lr``/``discount``/``gae_lambda`` define the inner step.

    The inner step runs on the network's device (``net_device``). Acting runs in numpy on a
    snapshot of the current parameters (:mod:`metarl.nn.mlp` explains why: a per-step torch
    forward of a small MLP costs more in dispatch than its maths), so the device the sampler
    hands observations on and gets actions back on is the CPU (``device``)."""

    device = torch.device("cpu")  # of act's tensors (numpy acting); see the docstring

    def __init__(self, net: GaussianMLP, inner: InnerLoop, discount: float, gae_lambda: float,
                 deterministic: bool = False):
        self.net, self.inner = net, inner
        self.discount, self.gae_lambda = discount, gae_lambda
        self.deterministic = deterministic
        self.net_device = next(net.parameters()).device

    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> AdaptiveState:
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        return AdaptiveState(rng, params, self.net.snapshot(params), False, trials)

    def act(self, obs: Tensor, state: AdaptiveState
            ) -> tuple[Tensor, AdaptiveState, dict[str, Tensor]]:
        action, log_prob = state.frozen.act(obs.cpu().numpy(), state.rng, self.deterministic)
        return torch.from_numpy(action), state, {"log_prob": torch.from_numpy(log_prob)}

    def observe(self, state: AdaptiveState, step: Transition) -> AdaptiveState:
        return state

    def end_episode(self, state: AdaptiveState, episode: Rollouts) -> AdaptiveState:
        data = episode_data(episode, 0, self.discount, self.gae_lambda, device=self.net_device)
        adapted = adapt_tasks(self.inner, state.params, data, state.per_task)
        adapted = {n: p.detach() for n, p in adapted.items()}
        return replace(state, params=adapted, frozen=self.net.snapshot(adapted), per_task=True)


def gaussian_kl(old: Tensor, new: Tensor) -> Tensor:
    """``KL(old || new)`` per step for head outputs ``old``/``new`` (mean, log std)."""
    mean_old, log_std_old = old.chunk(2, -1)
    mean_new, log_std_new = new.chunk(2, -1)
    var_old, var_new = (2 * log_std_old).exp(), (2 * log_std_new).exp()
    kl = (log_std_new - log_std_old
          + (var_old + (mean_old - mean_new).square()) / (2 * var_new) - 0.5)
    return kl.sum(-1)


def per_task_outputs(net: GaussianMLP, params: Params, observations: Tensor) -> Tensor:
    """Head outputs for per-task parameters ``[N, ...]`` on ``observations [N, ...]``."""
    return vmap(lambda p, x: functional_call(net, p, (x,)))(params, observations)



def gaussian_fisher_vector_product(outputs_fn: Callable[[Params], Tensor], params: Params,
                                   mask: Tensor, damping: float) -> Callable[[Tensor], Tensor]:
    """``v ↦ (F + damping·I) v`` for the masked mean ``KL(π_old || π_θ)`` at ``θ = θ_old``,
    where ``outputs_fn(θ)`` gives a diagonal Gaussian's head outputs (mean, log std) per
    step. At ``θ_old`` the KL's Hessian is ``Jᵀ M J`` (``J`` the Jacobian of the outputs,
    ``M = diag(1/σ², 2)`` per step), so one forward-mode ``J v`` and a reverse-mode ``Jᵀ u``
    (linearised once) replace double backprop through the inner adaptation step."""
    primals = {n: p.detach() for n, p in params.items()}
    outputs, pullback = vjp(outputs_fn, primals)
    log_std = outputs.detach().chunk(2, -1)[1]
    weights = torch.cat([torch.exp(-2 * log_std), torch.full_like(log_std, 2.0)], -1)
    weights = weights * (mask / mask.sum().clamp_min(1.0))[..., None]
    sizes = [p.numel() for p in primals.values()]

    def product(v: Tensor) -> Tensor:
        pieces = v.split(sizes)
        tangents = {n: piece.view_as(p) for (n, p), piece in zip(primals.items(), pieces,
                                                                  strict=True)}
        _, jv = jvp(outputs_fn, (primals,), (tangents,))
        (grads,) = pullback(jv * weights)
        return torch.cat([g.reshape(-1) for g in grads.values()]) + damping * v

    return product


@dataclass
class AdaptationConfig:
    """What gradient-based meta-RL agents share: the Gaussian MLP policy, the meta-batch and
    the inner policy-gradient step (agents override the defaults with their papers')."""

    meta_batch: int = setting(20, AT_LEAST_1)
    rollouts_per_task: int = setting(20, AT_LEAST_1)
    hidden_size: int = setting(100, AT_LEAST_1)
    num_layers: int = setting(2, AT_LEAST_1)
    activation: str = setting("relu", choices=("relu", "tanh"))
    init_std: float = setting(1.0, POSITIVE)
    init: str = setting("xavier", choices=INITS)  # Glorot weights, zero biases; or "torch"
    inner_estimator: str = setting("vpg", choices=INNER_ESTIMATORS)  # see inner_estimator_loss
    inner_lr: float = setting(0.1, NON_NEGATIVE)  # 0: no adaptation (an ablation)
    inner_steps: int = setting(1, AT_LEAST_1)
    discount: float = setting(0.99, UNIT_INTERVAL)
    gae_lambda: float = setting(1.0, UNIT_INTERVAL)

    def validate(self) -> None:
        """The declared ranges (:func:`metarl.config.check_settings`); subclasses add the
        checks that involve several fields."""
        check_settings(self)


class GradientMetaAgent(MetaRLAgent):
    """The Agent-protocol skeleton of MAML-TRPO and ProMP: a Gaussian MLP adapted per task
    by :class:`InnerLoop` on :meth:`inner_loss`; one iteration samples a meta-batch with the
    adapting policy (:func:`collect`) and hands its per-episode data to :meth:`update`.

    The network, the rollout data, the linear baseline, the inner steps and the update live
    on ``device``; acting alone runs in numpy on a CPU snapshot (:class:`AdaptivePolicy`)."""

    title = "gradient-based meta-RL"  # for error messages

    def __init__(self, env: Any, config: AdaptationConfig, device: str = "cpu"):
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"{self.title} needs a continuous (Box) action space, got "
                             f"{env.action_space}")
        self.env, self.config = env, config
        self.device = torch.device(device)
        self.net = GaussianMLP(int(np.prod(env.observation_space.shape)),
                               int(np.prod(env.action_space.shape)),
                               (config.hidden_size,) * config.num_layers,
                               activation=config.activation, init_std=config.init_std,
                               init=config.init).to(self.device)
        self.inner = InnerLoop(self.inner_loss(), steps=1, lr=config.inner_lr,
                               first_order=getattr(config, "first_order", False))

    def inner_loss(self) -> LossFn:
        """The inner step's loss on one task's data (``config.inner_estimator``)."""
        return inner_estimator_loss(self.config.inner_estimator, self.net,
                                    self.config.discount)

    def update(self, data: list[PolicyData]) -> dict[str, float]:
        """The outer update from the episodes of the meta-batch (last = post-update)."""
        raise NotImplementedError

    @classmethod
    def memory_needs(cls, config: Any, env: Any) -> list[MemoryNeed]:
        """An iteration's rollouts (meta_batch x rollouts_per_task x (inner_steps + 1)) and
        an evaluation's (eval_tasks x rollouts_per_task x :attr:`eval_episodes`)."""
        cfg = config.agent_config
        trials = ("trials", "rollouts_per_task", cfg.rollouts_per_task)
        return [cls.rollouts(config, env, "an iteration's rollouts",
                             ("tasks", "meta_batch", cfg.meta_batch), trials,
                             ("episodes", "inner_steps", cfg.inner_steps + 1)),
                cls.rollouts(config, env, "an evaluation's rollouts",
                             ("tasks", "eval_tasks", config.trainer.eval_tasks), trials,
                             ("episodes", None, cls.eval_episodes))]

    def eval_trials(self) -> int:
        """Evaluated with as many trials per task as it trains with (MAML-RL's protocol): the
        inner step adapts on all of a task's trials together. Its trials' 3 episodes give the
        pre-update, one-step and two-step returns."""
        return self.config.rollouts_per_task

    def policy(self, deterministic: bool = False) -> AdaptivePolicy:
        return AdaptivePolicy(self.net, self.inner, self.config.discount,
                              self.config.gae_lambda, deterministic)

    def train_iteration(self, sampler: Any, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        data, metrics = collect(self.env, self.policy(), sampler, rng, cfg.meta_batch,
                                cfg.rollouts_per_task, cfg.inner_steps, cfg.discount,
                                cfg.gae_lambda, self.device)
        return {**self.update(data), **metrics}

    def adapted(self, data: list[PolicyData]) -> Params:
        """θ'_i(θ) after the inner steps on all but the last episode, differentiable w.r.t.
        the meta-parameters."""
        return adapt_through(self.inner, parameters_of(self.net), data[:-1])
