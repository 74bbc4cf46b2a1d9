"""Functional gradient-based adaptation shared by few-shot learners and agents."""

from metarl.meta.adapt import (
    InnerLoop,
    LossFn,
    Params,
    StepSizes,
    adapt_batch,
    maml_losses,
    parameters_of,
    reptile_gradients,
    set_gradients,
    supervised_loss,
)
from metarl.meta.dynamics import adapt_online, grbal_loss

__all__ = ["InnerLoop", "LossFn", "Params", "StepSizes", "adapt_batch", "adapt_online",
           "grbal_loss", "maml_losses", "parameters_of", "reptile_gradients",
           "set_gradients", "supervised_loss"]
