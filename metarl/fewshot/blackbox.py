"""A black-box few-shot learner: the conditional neural process (Garnelo et al. 2018,
"Conditional Neural Processes").

A CNP encodes each support example with an MLP ``h``, averages the codes into a
representation ``r`` (invariant to the order of the support set) and decodes each query with
an MLP ``g(r, x)``; the task is "learned" by the forward pass alone.

* Regression: ``h`` reads ``(x, y)`` pairs; ``g`` outputs a Gaussian mean and standard
  deviation ``σ = min_std + (1 − min_std) · softplus(·)`` (the lower bound of DeepMind's
  reference code). Training minimises the Gaussian negative log-likelihood of the queries.
* Classification: ``h`` reads the embedding of ``x`` (Conv4 for images, the raw vector
  otherwise) and the codes are averaged per class, giving one representation ``r_c`` per
  label; ``g(r_c, x)`` scores each (query, class) pair, so relabelling the support permutes
  the logits the same way. The label enters through this grouping rather than as a one-hot
  input to ``h``, which would tie the representation to the arbitrary label order.

Images are embedded per task under ``vmap`` (see :func:`metarl.fewshot.metric.embed`), so
Conv4's batch norm never mixes tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl.config import AT_LEAST_1, OPEN_UNIT_INTERVAL, POSITIVE, setting
from metarl.fewshot.data import FewShotBatch
from metarl.fewshot.learner import FewShotLearner
from metarl.fewshot.metric import check_ways, class_means, embed, one_hot
from metarl.fewshot.models import Conv4
from metarl.nn import MLP


@dataclass
class CNPConfig:
    """CNP settings. The MLP sizes are those of DeepMind's reference CNP for 1-D regression
    (encoder 3×128 hidden → 128, decoder 2×128 hidden → mean and σ, σ ≥ 0.1); the reference
    trains with Adam (1e-4 there, on batches of 64 GP curves), here Adam 1e-3 as for the other
    learners."""

    lr: float = setting(1e-3, POSITIVE)  # Adam
    meta_batch: int = setting(32, AT_LEAST_1)  # tasks per update
    hidden: int = setting(128, AT_LEAST_1)  # width of the encoder and decoder MLPs
    encoder_layers: int = setting(3, AT_LEAST_1)  # hidden layers of h
    decoder_layers: int = setting(2, AT_LEAST_1)  # hidden layers of g
    representation: int = setting(128, AT_LEAST_1)  # size of r (and of each class's r_c)
    conv_hidden: int = setting(64, AT_LEAST_1)  # Conv4 filters embedding images (classification)
    # lower bound of the predicted σ (regression)
    min_std: float = setting(0.1, OPEN_UNIT_INTERVAL)


class CNP(FewShotLearner):
    """Conditional neural process for classification and regression (see the module
    docstring). ``predict`` gives logits ``[B, Q, ways]`` or the predictive mean ``[B, Q, 1]``;
    :meth:`distribution` gives the mean and σ. ``ways=None`` infers the number of classes
    from the support labels (``max + 1``)."""

    def __init__(self, task_kind: str, input_shape: tuple[int, ...], ways: int | None = None,
                 hidden: int = 128, encoder_layers: int = 3, decoder_layers: int = 2,
                 representation: int = 128, conv_hidden: int = 64, min_std: float = 0.1):
        super().__init__(task_kind)
        if not 0 < min_std < 1:
            raise ValueError(f"min_std must lie in (0, 1), got {min_std}")
        self.ways = check_ways(ways)
        self.min_std = min_std
        input_shape = tuple(input_shape)
        if len(input_shape) == 3:
            self.features = Conv4(input_shape[0], None, hidden=conv_hidden,
                                  image_size=input_shape[-1])
            x_dim = self.features.embedding_dim
        else:
            self.features = nn.Flatten(2)  # [B, M, ...] -> [B, M, D]
            x_dim = math.prod(input_shape)
        y_dim = 0 if self.classification else 1
        out_dim = 1 if self.classification else 2  # a logit, or (mean, raw σ)
        self.encoder = MLP(x_dim + y_dim, (hidden,) * encoder_layers, representation,
                           activation="relu")
        self.decoder = MLP(representation + x_dim, (hidden,) * decoder_layers, out_dim,
                           activation="relu")

    def _features(self, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(self.features, Conv4):
            return embed(self.features, support_x, query_x)
        return self.features(support_x), self.features(query_x)

    def distribution(self, support_x: Tensor, support_y: Tensor, query_x: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Regression: predictive mean and standard deviation, each ``[B, Q, 1]``."""
        if self.classification:
            raise TypeError("distribution() is for regression; classification has logits")
        support_z, query_z = self._features(support_x, query_x)
        codes = self.encoder(torch.cat([support_z, support_y.flatten(2)], -1))  # [B, K, R]
        r = codes.mean(1, keepdim=True).expand(-1, query_z.shape[1], -1)  # [B, Q, R]
        mean, raw = self.decoder(torch.cat([r, query_z], -1)).chunk(2, -1)
        return mean, self.min_std + (1 - self.min_std) * nn.functional.softplus(raw)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        if not self.classification:
            return self.distribution(support_x, support_y, query_x)[0]
        support_z, query_z = self._features(support_x, query_x)
        r = class_means(self.encoder(support_z), one_hot(support_y, self.ways))  # [B, N, R]
        (b, q, d), n = query_z.shape, r.shape[1]
        pairs = torch.cat([r.unsqueeze(1).expand(b, q, n, -1),
                           query_z.unsqueeze(2).expand(b, q, n, d)], -1)  # [B, Q, N, R + D]
        return self.decoder(pairs).squeeze(-1)

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, float]]:
        """Classification: cross-entropy. Regression: the Gaussian negative log-likelihood of
        the queries (``loss`` and ``nll`` in the metrics, plus the mean's ``mse``)."""
        if self.classification:
            return super().meta_loss(batch)
        mean, std = self.distribution(batch.support_x, batch.support_y, batch.query_x)
        nll = nn.functional.gaussian_nll_loss(mean, batch.query_y, std.square(), full=True,
                                              reduction="none").flatten(1).mean(-1)  # [B]
        mse = (mean - batch.query_y).square().flatten(1).mean(-1)
        loss = nll.mean()
        return loss, {"loss": float(loss.detach()), "nll": float(loss.detach()),
                      "mse": float(mse.detach().mean())}

    @classmethod
    def from_config(cls, config: CNPConfig, task_kind: str, input_shape: tuple[int, ...],
                    ways: int | None) -> CNP:
        return cls(task_kind, input_shape, ways, hidden=config.hidden,
                   encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers,
                   representation=config.representation, conv_hidden=config.conv_hidden,
                   min_std=config.min_std)
