"""RL² (Duan et al. 2016): a recurrent policy whose hidden state is the learner.

The GRU reads ``(observation, previous action, previous reward, episode-start flag)`` and
keeps its hidden state across all episodes of a trial; it is reset only between trials.
The outer loop is PPO with GAE over the whole trial (the trial is one long episode).
"""

from metarl.agents.rl2.agent import RL2Agent, RL2Config, RL2Policy

__all__ = ["RL2Agent", "RL2Config", "RL2Policy"]
