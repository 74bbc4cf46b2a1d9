"""Agents, installed as metarl.agents."""
