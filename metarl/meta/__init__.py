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

__all__ = ["InnerLoop", "LossFn", "Params", "StepSizes", "adapt_batch", "maml_losses",
           "parameters_of", "reptile_gradients", "set_gradients", "supervised_loss"]
