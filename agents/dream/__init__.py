"""DREAM: decoupled exploration and exploitation in meta-RL (Liu et al., ICML 2021)."""

from metarl.agents.dream.agent import DREAMAgent, DREAMConfig
from metarl.agents.dream.policy import DreamPolicy

__all__ = ["DREAMAgent", "DREAMConfig", "DreamPolicy"]
