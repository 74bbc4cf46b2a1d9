"""The standard few-shot networks: the 4-layer conv net for images and an MLP for regression.

Both are plain modules without buffers, so :mod:`metarl.meta` can evaluate them with
``torch.func.functional_call`` under ``vmap``: batch norm uses the statistics of the batch
at hand (``track_running_stats=False``), as MAML's reference implementation does at test
time too.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from metarl.nn import MLP


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (64 filters) -> batch norm -> ReLU -> 2x2 max-pool (Vinyals et al. 2016)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Four conv blocks (28x28 -> 1x1 for Omniglot), flattened; an optional linear head.

    ``out_features=None`` gives the embedding network of ProtoNets / Matching Nets
    (``embedding_dim`` features for 28x28 inputs); an integer adds the linear classifier
    MAML adapts (named ``head`` so ANIL can adapt it alone)."""

    def __init__(self, in_channels: int = 1, out_features: int | None = None,
                 hidden: int = 64, image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(conv_block(in_channels, hidden),
                                  *(conv_block(hidden, hidden) for _ in range(3)),
                                  nn.Flatten())
        side = image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = hidden * max(side, 1) ** 2
        self.head = None if out_features is None else nn.Linear(self.embedding_dim,
                                                                out_features)

    def forward(self, x):
        features = self.body(x)
        return features if self.head is None else self.head(features)


class RegressionMLP(nn.Module):
    """MAML's sinusoid network: 40-40 ReLU MLP; the last layer is ``head`` (for ANIL)."""

    def __init__(self, in_features: int = 1, out_features: int = 1,
                 hidden: Sequence[int] = (40, 40)):
        super().__init__()
        self.body = MLP(in_features, hidden, activation="relu")
        self.head = nn.Linear(self.body.out_features, out_features)
        self.embedding_dim = self.body.out_features

    def forward(self, x):
        return self.head(self.body(x))
