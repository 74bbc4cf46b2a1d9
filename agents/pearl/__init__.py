"""PEARL (Rakelly et al. 2019): probabilistic context variables on soft actor-critic."""

from metarl.agents.pearl.agent import PEARLAgent, PEARLConfig, PEARLPolicy

__all__ = ["PEARLAgent", "PEARLConfig", "PEARLPolicy"]
