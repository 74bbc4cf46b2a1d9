"""MAML-TRPO (Finn et al. 2017): gradient-based meta-RL with a TRPO outer step."""

from metarl.agents.maml_trpo.agent import MAMLTRPOAgent, MAMLTRPOConfig

__all__ = ["MAMLTRPOAgent", "MAMLTRPOConfig"]
