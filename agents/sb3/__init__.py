"""Stable-Baselines3 algorithms as metarl agents: the oracle, multi-task and RL²-style
reference lines trained on :class:`metarl.integrations.TaskEnv`."""

from metarl.agents.sb3.agent import (
    SB3Agent,
    SB3PPOConfig,
    SB3RecurrentPPOConfig,
    SB3SACConfig,
)

__all__ = ["SB3Agent", "SB3PPOConfig", "SB3RecurrentPPOConfig", "SB3SACConfig"]
