"""metarl: meta-reinforcement learning on today's stack."""
__version__ = "0.1.0"
