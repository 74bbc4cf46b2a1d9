"""GrBAL, ReBAL and MB-MPC: a learned dynamics model, adapted online, controlled by MPC.

One iteration (Nagabandi, Clavera et al. 2019, the reference code's ``Trainer``)::

    tasks ~ the train split                        # episodes_per_iteration, one episode each
    collect: iteration 0 uniformly random actions, later MPC on the current model, adapting
             online at every step (policy.py)      # all data kept, per episode
    fit the normalisation to all data; train the model for up to model_epochs epochs
             (early stopping on held-out episodes, the reference's rolling-average rule):
      grbal:   windows of M + K consecutive steps; θ' = θ − α ∇ L(θ; first M); Adam on
               L(θ'; last K)                                   (metarl.meta.dynamics)
      rebal:   the recurrent model runs over the window from a zero state, its hidden
               state conditioning each prediction on the steps before; Adam on the MSE of
               every step (the reference's whole-sequence loss; the planner uses the model
               from an episode's first step), backpropagated through the window
      mb-mpc:  plain MSE on minibatches of transitions, one model for all tasks

The model predicts the normalised state delta ``s' − s`` from the normalised ``(s, a)``
(:mod:`metarl.nn.dynamics`); MPC scores candidate action sequences with the env's known
reward (``env.reward``) on predicted states (:mod:`metarl.mpc`). ``mb-mpc`` with
``dynamic_evaluation`` fine-tunes its (not meta-trained) model on the last M transitions at
run time with the same inner step as GrBAL: the two baselines that show what meta-training
buys. Evaluation: one episode per held-out task (``split_tasks("test")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl.agent import MetaRLAgent
from metarl.config import (
    AT_LEAST_1,
    NON_NEGATIVE,
    OPEN_UNIT_INTERVAL,
    POSITIVE,
    UNIT_INTERVAL,
    at_least,
    check_settings,
    setting,
)
from metarl.envs_api import MetaEnv
from metarl.memory import Factor, MemoryNeed, numbers
from metarl.meta import InnerLoop, StepSizes
from metarl.meta.dynamics import grbal_loss
from metarl.mpc import CEM, MPPI, Planner, RandomShooting
from metarl.nn.dynamics import DeltaMLP, RecurrentDelta
from metarl.policy import Policy
from metarl.sampling import Sampler
from metarl.types import Rollouts

#: the envs whose reward is a known function of the transition alone (the task only
#: changes the dynamics), so the planner may use it without knowing the task
MODEL_BASED_ENVS = ("cheetah-crippled", "ant-broken-leg")


@dataclass
class ModelBasedConfig:
    """Settings shared by GrBAL, ReBAL and MB-MPC (the reference's ``run_grbal.py``: MLP
    512-512-512 ReLU, M = K = 16, inner lr 1e-3, meta-batch 10, Adam 1e-3, 100 epochs with
    early stopping, random shooting with 500 candidates over horizon 10, discount 1, 5
    rollouts per iteration, iteration 0 random)."""

    hidden_size: int = setting(512, AT_LEAST_1)
    num_layers: int = setting(3, AT_LEAST_1)
    # M: real transitions the model adapts on; K: the steps after them it is trained to predict
    adapt_window: int = setting(16, AT_LEAST_1)
    predict_window: int = setting(16, AT_LEAST_1)
    lr: float = setting(1e-3, POSITIVE)
    meta_batch: int = setting(10, AT_LEAST_1)  # windows per gradient step (grbal, rebal)
    batch_size: int = setting(128, AT_LEAST_1)  # transitions per gradient step (mb-mpc)
    model_epochs: int = setting(100, NON_NEGATIVE)
    # every valid_every-th episode is held out to stop the model's training early
    valid_every: int = setting(10, at_least(2))
    early_stop_persistency: float = setting(0.99, UNIT_INTERVAL)
    episodes_per_iteration: int = setting(5, AT_LEAST_1)
    random_first_iteration: bool = True
    planner: str = setting("rs", choices=("rs", "cem", "mppi"))
    candidates: int = setting(500, AT_LEAST_1)
    plan_horizon: int = setting(10, AT_LEAST_1)
    cem_iterations: int = setting(5, AT_LEAST_1)
    elite_fraction: float = setting(0.1, OPEN_UNIT_INTERVAL)
    cem_smoothing: float = setting(0.1, UNIT_INTERVAL)  # weight of the old mean (reference α)
    mppi_temperature: float = setting(1.0, POSITIVE)
    mppi_noise: float = setting(0.5, POSITIVE)
    discount: float = setting(1.0, UNIT_INTERVAL)

    #: what the model is and how it adapts (fixed per agent)
    method: ClassVar[str] = "mb-mpc"

    def validate(self) -> None:
        check_settings(self)

    @property
    def adaptation(self) -> str:
        """How the policy adapts at run time: ``none``, ``gradient`` or ``recurrent``."""
        return "none"


@dataclass
class GrBALConfig(ModelBasedConfig):
    """GrBAL: the MLP's prior θ meta-trained for one gradient step on the last M steps."""

    inner_lr: float = setting(1e-3, POSITIVE)
    inner_steps: int = setting(1, AT_LEAST_1)
    learn_inner_lr: bool = False  # Meta-SGD style per-parameter step sizes
    method: ClassVar[str] = "grbal"

    @property
    def adaptation(self) -> str:
        return "gradient"


@dataclass
class ReBALConfig(ModelBasedConfig):
    """ReBAL: a GRU over the last M steps conditions the prediction (reference: 256 units,
    lr 1e-2)."""

    recurrent_size: int = setting(256, AT_LEAST_1)
    lr: float = setting(1e-2, POSITIVE)
    method: ClassVar[str] = "rebal"

    @property
    def adaptation(self) -> str:
        return "recurrent"


@dataclass
class MBMPCConfig(ModelBasedConfig):
    """MB-MPC: one MLP for all tasks trained by MSE; ``dynamic_evaluation`` fine-tunes it on
    the last M steps at run time (one SGD step with ``inner_lr``, no meta-training)."""

    dynamic_evaluation: bool = False
    inner_lr: float = setting(1e-3, POSITIVE)
    inner_steps: int = setting(1, AT_LEAST_1)
    method: ClassVar[str] = "mb-mpc"

    @property
    def adaptation(self) -> str:
        return "gradient" if self.dynamic_evaluation else "none"


class EpisodeStore:
    """Every collected episode, ``[E, T, ...]`` float32, with its held-out flag."""

    def __init__(self, obs_dim: int, act_dim: int, horizon: int):
        self.obs = np.zeros((0, horizon, obs_dim), np.float32)
        self.actions = np.zeros((0, horizon, act_dim), np.float32)
        self.next_obs = np.zeros((0, horizon, obs_dim), np.float32)
        self.held_out = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.obs)

    def add(self, rollouts: Rollouts, valid_every: int) -> None:
        """Add every episode of ``rollouts``; episode ``e`` of the store is held out when
        ``e % valid_every == valid_every - 1``."""
        if not rollouts.valid.all():
            raise ValueError("model-based agents need episodes that run to the horizon "
                             "(this env terminated one early)")
        def episodes(array: np.ndarray) -> np.ndarray:  # [N, M, K, T, ...] -> [E, T, ...]
            return array.reshape(-1, *array.shape[3:]).astype(np.float32)

        index = len(self) + np.arange(int(np.prod(rollouts.shape[:3])))
        self.obs = np.concatenate([self.obs, episodes(rollouts.observations)])
        self.actions = np.concatenate([self.actions, episodes(rollouts.actions)])
        self.next_obs = np.concatenate([self.next_obs, episodes(rollouts.next_observations)])
        self.held_out = np.concatenate([self.held_out, index % valid_every == valid_every - 1])

    def windows(self, held_out: bool, count: int, length: int, rng: np.random.Generator
                ) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` windows of ``length`` consecutive steps of one episode, uniform over the
        (held-out or training) episodes and start steps: ``[count, length, ...]``."""
        episodes = np.flatnonzero(self.held_out == held_out)
        chosen = episodes[rng.integers(0, len(episodes), count)]
        start = rng.integers(0, self.obs.shape[1] - length + 1, count)
        steps = start[:, None] + np.arange(length)
        return tuple(torch.from_numpy(x[chosen[:, None], steps])
                     for x in (self.obs, self.actions, self.next_obs))

    def transitions(self, held_out: bool) -> int:
        return int((self.held_out == held_out).sum()) * self.obs.shape[1]

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (checkpoints load with ``weights_only=True``)."""
        return {key: torch.from_numpy(getattr(self, key).copy())
                for key in ("obs", "actions", "next_obs", "held_out")}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for key, value in state.items():
            setattr(self, key, value.numpy().copy())


class EarlyStopping:
    """The reference's rule: stop once the rolling average of the validation loss
    (``persistency`` of the old value) rises; it starts at 1.5x (before: 2x) the first loss."""

    def __init__(self, persistency: float):
        self.persistency = persistency
        self.average: float | None = None
        self.previous = math.inf

    def should_stop(self, loss: float) -> bool:
        if self.average is None:
            self.average, self.previous = 1.5 * loss, 2.0 * loss
            if loss < 0:
                self.average, self.previous = loss / 1.5, loss / 2.0
        self.average = self.persistency * self.average + (1 - self.persistency) * loss
        stop = self.previous < self.average
        self.previous = self.average
        return stop


def build_planner(cfg: ModelBasedConfig) -> Planner:
    if cfg.planner == "cem":
        return CEM(cfg.candidates, cfg.plan_horizon, iterations=cfg.cem_iterations,
                   elite_fraction=cfg.elite_fraction, smoothing=cfg.cem_smoothing)
    if cfg.planner == "mppi":
        return MPPI(cfg.candidates, cfg.plan_horizon, temperature=cfg.mppi_temperature,
                    noise_std=cfg.mppi_noise)
    return RandomShooting(cfg.candidates, cfg.plan_horizon)


class ModelBasedAgent(MetaRLAgent):
    """See the module docstring; ``config`` is a :class:`GrBALConfig`, :class:`ReBALConfig`
    or :class:`MBMPCConfig`."""

    default_eval_tasks: ClassVar[int] = 10
    eval_episodes: int = 1

    @classmethod
    def make_env(cls, env: str, env_kwargs: dict[str, Any], config: Any) -> MetaEnv:
        from metarl import envs

        if env not in MODEL_BASED_ENVS:
            raise ValueError(f"model-based agents need an env whose reward does not depend "
                             f"on the task; valid envs: {', '.join(MODEL_BASED_ENVS)}")
        return envs.make(env, **env_kwargs, model_based=True)  # the root position observed

    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """An evaluation's rollouts and an iteration's, the episode store (all episodes of
        the run, float32) and the planner's candidate tensors (environments x candidates x
        the widest layer, float32)."""
        cfg, trainer = config.agent_config, config.trainer
        one: Factor = ("trials", None, 1)
        horizon = int(env.max_episode_steps)
        width = 4 * (2 * numbers(env.observation_space) + numbers(env.action_space))
        planner_width = 4 * max(cfg.hidden_size, getattr(cfg, "recurrent_size", 0),
                                numbers(env.observation_space)) * 3
        return [*super().memory_needs(config, env),
                cls.rollouts(config, env, "an iteration's collection",
                             ("tasks", "episodes_per_iteration", cfg.episodes_per_iteration),
                             one, ("episodes", None, 1)),
                MemoryNeed("the episode store", (
                    ("iterations", "iterations", max(trainer.iterations, 1)),
                    ("episodes", "episodes_per_iteration", cfg.episodes_per_iteration),
                    ("steps", None, horizon)), width),
                MemoryNeed("the planner's candidates", (
                    ("environments", "eval_tasks", max(trainer.eval_tasks,
                                                       cfg.episodes_per_iteration)),
                    ("candidates", "candidates", cfg.candidates)), planner_width)]

    def __init__(self, env: MetaEnv, config: ModelBasedConfig, device: str = "cpu"):
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"model-based agents need a continuous (Box) action space, got "
                             f"{env.action_space}")
        config.validate()
        self.env, self.config, self.device = env, config, torch.device(device)
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        if config.adaptation == "recurrent":
            self.model: DeltaMLP | RecurrentDelta = RecurrentDelta(
                obs_dim, act_dim, hidden_size=config.recurrent_size)
        else:
            self.model = DeltaMLP(obs_dim, act_dim, hidden=(config.hidden_size,)
                                  * config.num_layers, activation="relu")
        self.model.to(self.device)
        self.step_sizes: StepSizes | None = None
        if getattr(config, "learn_inner_lr", False):
            self.step_sizes = StepSizes(dict(self.model.named_parameters()), config.inner_lr)
            self.step_sizes.to(self.device)
        trained = list(self.model.parameters()) + (
            list(self.step_sizes.parameters()) if self.step_sizes is not None else [])
        self.optimizer = torch.optim.Adam(trained, lr=config.lr)
        self.inner = (InnerLoop(self.model.loss, steps=config.inner_steps, lr=config.inner_lr)
                      if hasattr(config, "inner_lr") else None)
        self.store = EpisodeStore(obs_dim, act_dim, int(env.max_episode_steps))
        self.planner = build_planner(config)
        self.iteration = 0

    # ------------------------------------------------------------------ policies
    def policy(self, deterministic: bool = False) -> Policy:
        """MPC on the model, adapting online at every step (``deterministic`` changes
        nothing: the planner's candidates are random by nature)."""
        from metarl.agents.model_based.policy import MPCPolicy

        cfg = self.config
        space = self.env.action_space
        step_sizes = self.step_sizes.as_dict() if self.step_sizes is not None else None
        return MPCPolicy(self.model, self.planner, self.env.reward, space.low, space.high,
                         adaptation=cfg.adaptation, window=cfg.adapt_window, inner=self.inner,
                         step_sizes=step_sizes, discount=cfg.discount)

    def _collection_policy(self) -> Policy:
        from metarl.agents.model_based.policy import UniformRandomPolicy

        if self.iteration == 0 and self.config.random_first_iteration:
            return UniformRandomPolicy(self.env.action_space.low, self.env.action_space.high)
        return self.policy()

    # ------------------------------------------------------------------ training
    def train_iteration(self, sampler: Sampler, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.config
        tasks = self.env.split_tasks("train", cfg.episodes_per_iteration,
                                     seed=int(rng.integers(2**31)))
        rollouts = sampler.sample(self._collection_policy(), tasks, trials=1, episodes=1,
                                  seed=int(rng.integers(2**31)))
        self.store.add(rollouts, cfg.valid_every)
        self.model.stats.fit(self.store.obs, self.store.actions, self.store.next_obs)
        metrics = {"env_steps": float(rollouts.num_steps),
                   "collection_return": float(rollouts.episode_returns().mean()),
                   "transitions": float(len(self.store) * self.store.obs.shape[1])}
        metrics.update(self._fit_model(rng))
        self.iteration += 1
        return metrics

    def _fit_model(self, rng: np.random.Generator) -> dict[str, float]:
        """Up to ``model_epochs`` epochs of the method's loss, stopped early on the held-out
        episodes; an epoch sees about as many transitions as the training episodes hold."""
        cfg = self.config
        per_step = (cfg.batch_size if cfg.method == "mb-mpc"
                    else cfg.meta_batch * (cfg.adapt_window + cfg.predict_window))
        steps = max(1, self.store.transitions(False) // per_step)
        has_valid = self.store.transitions(True) > 0
        stopper = EarlyStopping(cfg.early_stop_persistency)
        losses, epochs, valid = [], 0, math.nan
        for epochs in range(1, cfg.model_epochs + 1):  # noqa: B007 - read after the loop
            losses = [self._gradient_step(rng) for _ in range(steps)]
            if not has_valid:
                continue
            with torch.no_grad():
                valid = float(np.mean([self._loss(True, rng).item()
                                       for _ in range(max(1, steps // 10))]))
            if stopper.should_stop(valid):
                break
        if not losses:
            return {"model_epochs": 0.0}
        train = float(np.mean(losses))
        if not math.isfinite(train):
            raise FloatingPointError(f"the model's training loss is {train}")
        metrics = {"model_loss": train, "model_epochs": float(epochs)}
        return metrics if not has_valid else {**metrics, "model_valid_loss": valid}

    def _gradient_step(self, rng: np.random.Generator) -> float:
        loss = self._loss(False, rng)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _loss(self, held_out: bool, rng: np.random.Generator) -> Tensor:
        """The method's training loss on a batch of training (or held-out) data."""
        cfg = self.config
        m, k = cfg.adapt_window, cfg.predict_window
        if cfg.method == "mb-mpc":
            obs, act, next_obs = (x.flatten(0, 1).to(self.device) for x in
                                  self.store.windows(held_out, cfg.batch_size, 1, rng))
            return self.model.loss(dict(self.model.named_parameters()), (obs, act, next_obs))
        windows = tuple(x.to(self.device) for x in
                        self.store.windows(held_out, cfg.meta_batch, m + k, rng))
        if cfg.method == "rebal":  # every step of the window, as the reference's sequences
            return self.model.loss(*windows)
        step_sizes = self.step_sizes.as_dict() if self.step_sizes is not None else None
        outer, _ = grbal_loss(self.model, dict(self.model.named_parameters()), windows,
                              self.inner, support_steps=m, step_sizes=step_sizes)
        return outer

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "store": self.store.state_dict(), "iteration": self.iteration}
        if self.step_sizes is not None:
            state["step_sizes"] = self.step_sizes.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.store.load_state_dict(state["store"])
        self.iteration = int(state["iteration"])
        if self.step_sizes is not None:
            self.step_sizes.load_state_dict(state["step_sizes"])
