"""Networks, action heads and shared losses."""

from metarl.nn.dqn import (
    DuelingHead,
    LinearSchedule,
    RecurrentQNetwork,
    double_dqn_targets,
    epsilon_greedy,
    hard_update,
    masked_td_loss,
)
from metarl.nn.dynamics import DeltaMLP, RecurrentDelta, TransitionStats
from metarl.nn.heads import CategoricalHead, GaussianHead, make_head
from metarl.nn.losses import RunningNorm, discounted_returns, gae, masked_mean, ppo_clip_loss
from metarl.nn.mlp import (
    MLP,
    GaussianMLP,
    GaussianMLPPolicy,
    NumpyGaussianMLP,
    activation_by_name,
    numpy_mlp,
)
from metarl.nn.optim import clipped_step
from metarl.nn.recurrent import LayerNormGRU, RecurrentNet, make_gru
from metarl.nn.side_thread import SideThread

__all__ = ["MLP", "CategoricalHead", "DeltaMLP", "DuelingHead", "GaussianHead", "GaussianMLP",
           "GaussianMLPPolicy", "LayerNormGRU", "LinearSchedule", "NumpyGaussianMLP",
           "RecurrentDelta", "RecurrentNet", "RecurrentQNetwork", "RunningNorm", "SideThread",
           "TransitionStats", "activation_by_name", "clipped_step", "discounted_returns",
           "double_dqn_targets", "epsilon_greedy", "gae", "hard_update", "make_gru",
           "make_head", "masked_mean", "masked_td_loss", "numpy_mlp", "ppo_clip_loss"]
