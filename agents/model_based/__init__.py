"""Model-based meta-RL with MPC: GrBAL, ReBAL (Nagabandi, Clavera et al. 2019) and the
non-adaptive model-based baseline MB-MPC (with optional dynamic evaluation)."""

from metarl.agents.model_based.agent import (
    GrBALConfig,
    MBMPCConfig,
    ModelBasedAgent,
    ModelBasedConfig,
    ReBALConfig,
)
from metarl.agents.model_based.policy import MPCPolicy, UniformRandomPolicy

__all__ = ["GrBALConfig", "MBMPCConfig", "MPCPolicy", "ModelBasedAgent", "ModelBasedConfig",
           "ReBALConfig", "UniformRandomPolicy"]
