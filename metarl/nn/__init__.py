"""Networks, action heads and shared losses."""

from metarl.nn.heads import CategoricalHead, GaussianHead, make_head
from metarl.nn.losses import RunningNorm, discounted_returns, gae, masked_mean, ppo_clip_loss

__all__ = ["CategoricalHead", "GaussianHead", "RunningNorm", "discounted_returns", "gae",
           "make_head", "masked_mean", "ppo_clip_loss"]
