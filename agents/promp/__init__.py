"""ProMP (Rothfuss et al. 2019): proximal meta-policy search."""

from metarl.agents.promp.agent import ProMPAgent, ProMPConfig

__all__ = ["ProMPAgent", "ProMPConfig"]
