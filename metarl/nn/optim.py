"""One optimiser step, shared by agents and experiment scripts."""

from __future__ import annotations

import torch
from torch import nn


def clipped_step(optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter],
                 loss: torch.Tensor, max_grad_norm: float) -> None:
    """Backpropagate ``loss``, clip the gradient of ``parameters`` to ``max_grad_norm`` and
    step ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
