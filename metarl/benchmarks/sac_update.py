"""One PEARL gradient step against one Stable-Baselines3 SAC gradient step of the same size.

PEARL's step (:meth:`metarl.agents.pearl.PEARLAgent.update`) on the paper's cheetah-vel
sizes: a meta-batch of 16 tasks × 256 transitions (4096 rows), a context of 100 transitions
per task through the (200, 200, 200) encoder, (300, 300, 300) actor and twin critics on
``[obs, z]`` (HalfCheetah-v5: 17 + 5 inputs, 6 actions), learned temperature. SB3's
``SAC.train(gradient_steps=1)`` with the same networks (observation size 22), batch 4096,
learned temperature. Both sample their batch from a filled replay buffer inside the timed
step. Each figure is the median of ``repeats`` steps after warm-up, one torch thread by
default; ``ratio = pearl_update_ms / sb3_sac_update_ms`` (goal ≤ 1.2).

    metarl bench sac-update [--json]          # needs `pip install -e ".[bench]"` for SB3
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.pearl import PEARLAgent, PEARLConfig
from metarl.benchmarks import median_ms
from metarl.envs import make
from metarl.progress import Progress

OBS_DIM, ACTION_DIM, LATENT_DIM = 17, 6, 5  # HalfCheetah-v5, PEARL's latent size


def pearl_update_ms(meta_batch: int, batch_size: int, context_batch: int, hidden: int,
                    repeats: int, warmup: int, fill: int = 2000,
                    tick: Callable[[], object] | None = None) -> float:
    env = make("cheetah-vel")
    config = PEARLConfig(train_tasks=meta_batch, meta_batch=meta_batch, batch_size=batch_size,
                         context_batch=context_batch, hidden_size=hidden, entropy="auto",
                         replay_capacity=fill)
    agent = PEARLAgent(env, config)
    rng = np.random.default_rng(0)
    for task in range(meta_batch):
        transitions = _random_transitions(rng, fill)
        agent.replay.add(task, transitions)
        agent.encoder_replay.add(task, transitions)
    tasks = np.arange(meta_batch)
    return median_ms(lambda: agent.update(tasks, rng), repeats, warmup, tick=tick)


def sb3_sac_update_ms(batch: int, hidden: int, repeats: int, warmup: int,
                      fill: int = 20000, tick: Callable[[], object] | None = None
                      ) -> float | None:
    if importlib.util.find_spec("stable_baselines3") is None:
        return None
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    env = _BoxEnv(OBS_DIM + LATENT_DIM, ACTION_DIM)
    model = SAC("MlpPolicy", env, batch_size=batch, buffer_size=fill, learning_starts=0,
                policy_kwargs={"net_arch": [hidden] * 3}, device="cpu", seed=0)
    model.set_logger(configure(folder=None, format_strings=[]))
    rng = np.random.default_rng(0)
    data = _random_transitions(rng, fill, OBS_DIM + LATENT_DIM)
    for i in range(fill):
        model.replay_buffer.add(data["observations"][i], data["next_observations"][i],
                                data["actions"][i], data["rewards"][i:i + 1],
                                data["terminated"][i:i + 1].astype(bool), [{}])
    return median_ms(lambda: model.train(gradient_steps=1, batch_size=batch), repeats, warmup,
                     tick=tick)


def _random_transitions(rng: np.random.Generator, n: int, obs_dim: int = OBS_DIM
                        ) -> dict[str, np.ndarray]:
    return {"observations": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
            "rewards": rng.standard_normal(n).astype(np.float32),
            "next_observations": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "terminated": np.zeros(n, dtype=np.float32)}


class _BoxEnv(gym.Env):
    """A stand-in env with the right spaces (SB3 builds its networks from them)."""

    def __init__(self, obs_dim: int, action_dim: int):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def run(meta_batch: int = 16, batch_size: int = 256, context_batch: int = 100,
        hidden: int = 300, repeats: int = 30, warmup: int = 5, threads: int = 1) -> dict:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        with Progress(total=2 * (repeats + warmup), desc="bench sac-update",
                      unit="steps") as bar:
            ours = pearl_update_ms(meta_batch, batch_size, context_batch, hidden, repeats,
                                   warmup, tick=bar.update)
            sb3 = sb3_sac_update_ms(meta_batch * batch_size, hidden, repeats, warmup,
                                    tick=bar.update)
    finally:
        torch.set_num_threads(previous)
    return {"pearl_update_ms": round(ours, 2),
            "sb3_sac_update_ms": None if sb3 is None else round(sb3, 2),
            "ratio": None if sb3 is None else round(ours / sb3, 3),
            "rows": meta_batch * batch_size, "meta_batch": meta_batch,
            "batch_size": batch_size, "context_batch": context_batch, "hidden": [hidden] * 3,
            "threads": threads}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
