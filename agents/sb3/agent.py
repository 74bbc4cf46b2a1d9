"""Stable-Baselines3 (and sb3-contrib) algorithms as metarl agents.

``metarl train sb3-sac cheetah-vel --set mode=task-in-obs`` trains SB3's SAC on
:class:`metarl.integrations.TaskEnv` (``task-in-obs``: the oracle that sees the task;
``resample``: the multi-task policy that does not; ``trial``: RL²'s meta-episode) and gives a
normal run dir: ``progress.csv``, TensorBoard, checkpoints, ``metarl eval`` on the same
held-out tasks as every other agent (through :class:`metarl.integrations.sb3.SB3Policy`).

One iteration is ``model.learn(steps_per_iteration)``. Its randomness is drawn afresh from
the iteration's seed: SB3's global seeds (``set_random_seed``: Python, numpy, torch), the
action space and the environments, which are reset at the start of the iteration, so a run
resumes exactly. Iterations that hold whole episodes (or trials, in ``trial`` mode) lose
nothing to these resets; the presets are sized so.

A checkpoint holds SB3's own save (the zip of ``model.save``, loaded back with
``ALGO.load``, which unpickles SB3's data: load only runs you trust) and, for SAC, the
filled part of the replay buffer as tensors. ``metarl.load(run_dir).agent.model`` is the SB3
model itself.
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

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
from metarl.integrations.adapters import MODES, TaskEnv
from metarl.memory import NUMBER_BYTES, MemoryNeed, numbers
from metarl.policy import Policy
from metarl.sampling import Sampler

#: the buffers SB3's replay buffer fills row by row (``next_observations`` unless it
#: optimises memory)
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


@dataclass
class SB3Config:
    """What every SB3 agent shares: the adapter, the iteration, the network and the
    evaluation's trial."""

    ALGO: ClassVar[str] = ""

    # the adapter (metarl.integrations.TaskEnv): task-in-obs (oracle), resample (multi-task),
    # trial (RL²'s meta-episode)
    mode: str = setting("resample", choices=MODES)
    # episodes in a trial: trained as one gymnasium episode in trial mode, and the
    # evaluation's trial length in every mode
    episodes_per_trial: int = setting(3, AT_LEAST_1)
    steps_per_iteration: int = setting(1000, AT_LEAST_1)  # env steps over all n_envs
    n_envs: int = setting(1, AT_LEAST_1)  # environments stepped together (DummyVecEnv)
    hidden_size: int = setting(256, AT_LEAST_1)
    num_layers: int = setting(2, NON_NEGATIVE)  # hidden layers of the MLPs
    lr: float = setting(3e-4, POSITIVE)
    discount: float = setting(0.99, UNIT_INTERVAL)
    deterministic_eval: bool = True  # evaluation acts on the most likely action

    def validate(self) -> None:
        check_settings(self)
        if self.steps_per_iteration % self.n_envs:
            raise ValueError(f"steps_per_iteration must be a multiple of n_envs "
                             f"({self.n_envs}), got {self.steps_per_iteration}")

    def algorithm_kwargs(self) -> dict[str, Any]:
        """The SB3 constructor's keyword arguments for these settings."""
        raise NotImplementedError


@dataclass
class SB3SACConfig(SB3Config):
    """SB3's SAC (Haarnoja et al. 2018, SAC v2: twin Q, learned temperature): its defaults,
    which are the paper's (2 x 256 ReLU, lr 3e-4, batch 256, tau 0.005, one update a step)."""

    ALGO: ClassVar[str] = "sac"

    batch_size: int = setting(256, AT_LEAST_1)
    replay_capacity: int = setting(1_000_000, AT_LEAST_1)
    learning_starts: int = setting(100, NON_NEGATIVE)  # uniform random actions before
    tau: float = setting(0.005, between(0, 1, low_open=True))
    train_freq: int = setting(1, AT_LEAST_1)  # env steps (per environment) between updates
    gradient_steps: int = setting(1, AT_LEAST_1)  # updates each time
    # "auto": the temperature is learned toward entropy -|A|, from alpha; "fixed": alpha
    entropy: str = setting("auto", choices=("fixed", "auto"))
    alpha: float = setting(1.0, POSITIVE)

    def algorithm_kwargs(self) -> dict[str, Any]:
        return {"learning_rate": self.lr, "gamma": self.discount, "batch_size": self.batch_size,
                "buffer_size": self.replay_capacity, "learning_starts": self.learning_starts,
                "tau": self.tau, "train_freq": self.train_freq,
                "gradient_steps": self.gradient_steps,
                "ent_coef": f"auto_{self.alpha}" if self.entropy == "auto" else self.alpha,
                "policy_kwargs": {"net_arch": [self.hidden_size] * self.num_layers}}


@dataclass
class SB3PPOConfig(SB3Config):
    """SB3's PPO (Schulman et al. 2017) with its defaults: 2 x 64 tanh, lr 3e-4, 10 epochs,
    GAE λ 0.95, clip 0.2. One iteration is one rollout of ``steps_per_iteration`` steps."""

    ALGO: ClassVar[str] = "ppo"

    steps_per_iteration: int = setting(2048, AT_LEAST_1)
    hidden_size: int = setting(64, AT_LEAST_1)
    ppo_epochs: int = setting(10, AT_LEAST_1)
    minibatches: int = setting(32, AT_LEAST_1)  # of each rollout, per epoch
    gae_lambda: float = setting(0.95, UNIT_INTERVAL)
    clip: float = setting(0.2, between(0, 1, low_open=True))
    entropy_coef: float = setting(0.0, NON_NEGATIVE)
    value_coef: float = setting(0.5, NON_NEGATIVE)
    max_grad_norm: float = setting(0.5, POSITIVE)
    normalize_advantages: bool = True

    def validate(self) -> None:
        super().validate()
        if self.steps_per_iteration % self.minibatches:
            raise ValueError(f"steps_per_iteration must be a multiple of minibatches "
                             f"({self.minibatches}), got {self.steps_per_iteration}")

    def algorithm_kwargs(self) -> dict[str, Any]:
        arch = [self.hidden_size] * self.num_layers
        return {"learning_rate": self.lr, "gamma": self.discount,
                "n_steps": self.steps_per_iteration // self.n_envs,
                "batch_size": self.steps_per_iteration // self.minibatches,
                "n_epochs": self.ppo_epochs, "gae_lambda": self.gae_lambda,
                "clip_range": self.clip, "ent_coef": self.entropy_coef,
                "vf_coef": self.value_coef, "max_grad_norm": self.max_grad_norm,
                "normalize_advantage": self.normalize_advantages,
                "policy_kwargs": {"net_arch": {"pi": arch, "vf": arch}}}


@dataclass
class SB3RecurrentPPOConfig(SB3PPOConfig):
    """sb3-contrib's RecurrentPPO: an LSTM (actor and critic each their own) before the
    MLP heads; in ``trial`` mode an independent RL². Defaults: sb3-contrib's."""

    ALGO: ClassVar[str] = "recurrent-ppo"

    mode: str = setting("trial", choices=MODES)
    num_layers: int = setting(1, NON_NEGATIVE)
    lstm_size: int = setting(256, AT_LEAST_1)

    def algorithm_kwargs(self) -> dict[str, Any]:
        kwargs = super().algorithm_kwargs()
        kwargs["policy_kwargs"]["lstm_hidden_size"] = self.lstm_size
        return kwargs


def _algorithm_class(name: str) -> type:
    """SB3's class for ``name``; one line naming the extra when it is not installed."""
    try:
        if name == "recurrent-ppo":
            from sb3_contrib import RecurrentPPO

            return RecurrentPPO
        import stable_baselines3

        return {"sac": stable_baselines3.SAC, "ppo": stable_baselines3.PPO}[name]
    except ImportError as exc:
        raise ValueError(f"the SB3 agents need the sb3 extra (pip install 'metarl[sb3]'): "
                         f"{exc}") from None


class SB3Agent(MetaRLAgent):
    """An SB3 algorithm trained on a :class:`~metarl.integrations.TaskEnv` of the task
    distribution (see the module docstring)."""

    def __init__(self, env: MetaEnv, config: SB3Config, device: str = "cpu"):
        self.algorithm = _algorithm_class(config.ALGO)  # first: one line without the extra
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        self.env, self.config, self.device = env, config, device
        self.eval_episodes = config.episodes_per_trial

        def make() -> Monitor:
            return Monitor(TaskEnv(type(env)(**env.init_kwargs), config.mode,
                                   episodes_per_trial=config.episodes_per_trial))

        self.vec_env = DummyVecEnv([make] * config.n_envs)
        policy = "MlpLstmPolicy" if config.ALGO == "recurrent-ppo" else "MlpPolicy"
        self.model = self.algorithm(policy, self.vec_env, device=device, verbose=0,
                                    seed=int(torch.randint(2**31, ()).item()),
                                    **config.algorithm_kwargs())
        self._logger = Logger(folder=None, output_formats=[])  # read after each iteration
        self._attach()

    def _attach(self) -> None:
        self.model.set_logger(self._logger)
        self.network = self.model.policy  # checked for non-finite values by the Trainer

    # ------------------------------------------------------------------ the protocol
    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """An evaluation's rollouts and, for SAC, the replay buffer (SB3 allocates all of
        ``replay_capacity`` rows: observation, next observation, action, reward, flags)."""
        cfg = config.agent_config
        needs = [cls.rollouts(config, env, "an evaluation's rollouts",
                              ("tasks", "eval_tasks", config.trainer.eval_tasks),
                              ("trials", None, 1),
                              ("episodes", "episodes_per_trial", cfg.episodes_per_trial))]
        if isinstance(cfg, SB3SACConfig):
            observation = TaskEnv(env, cfg.mode).observation_space
            width = NUMBER_BYTES * (2 * numbers(observation) + numbers(env.action_space) + 3)
            needs.append(MemoryNeed("SB3's replay buffer", (
                ("transitions", "replay_capacity", cfg.replay_capacity),), width))
        return needs

    def train_iteration(self, sampler: Sampler | None,
                        rng: np.random.Generator) -> dict[str, float]:
        from stable_baselines3.common.utils import set_random_seed

        seed = int(rng.integers(2**31))
        set_random_seed(seed)
        self.model.action_space.seed(seed)
        self.vec_env.seed(seed)
        self.model._last_obs = None  # learn() resets the environments with these seeds
        # this iteration's finished episodes only
        self.model.ep_info_buffer, self.model.ep_success_buffer = deque(), deque()
        before = self.model.num_timesteps
        self.model.learn(self.config.steps_per_iteration, reset_num_timesteps=False,
                         log_interval=None)
        metrics = {"env_steps": float(self.model.num_timesteps - before)}
        for key, value in self._logger.name_to_value.items():
            name = key.split("/", 1)[-1]
            if key.startswith("train/") and name not in ("learning_rate", "n_updates"):
                metrics[name] = float(value)
        self._logger.dump()  # clears the values
        returns = [info["r"] for info in self.model.ep_info_buffer]
        metrics["train_episodes"] = float(len(returns))
        if returns:  # a gymnasium episode: a whole trial in trial mode
            metrics["train_return"] = float(np.mean(returns))
        return metrics

    def policy(self, deterministic: bool = False) -> Policy:
        from metarl.integrations.sb3 import SB3Policy

        return SB3Policy(self.model, self.env, self.config.mode,
                         deterministic=deterministic or self.config.deterministic_eval)

    def state_dict(self) -> dict:
        saved = io.BytesIO()
        self.model.save(saved)  # SB3's own zip: parameters, optimisers, counters
        state: dict[str, Any] = {"sb3_zip": saved.getvalue()}
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            rows = buffer.buffer_size if buffer.full else buffer.pos
            state["replay"] = {"pos": int(buffer.pos), "full": bool(buffer.full), **{
                name: torch.from_numpy(np.array(getattr(buffer, name)[:rows]))
                for name in REPLAY_ARRAYS if getattr(buffer, name, None) is not None}}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model = self.algorithm.load(io.BytesIO(state["sb3_zip"]), env=self.vec_env,
                                         device=self.device)
        self._attach()
        replay = state.get("replay")
        if replay is not None:
            buffer = self.model.replay_buffer
            for name in REPLAY_ARRAYS:
                if name in replay:
                    values = replay[name].numpy()
                    getattr(buffer, name)[:len(values)] = values
            buffer.pos, buffer.full = int(replay["pos"]), bool(replay["full"])
