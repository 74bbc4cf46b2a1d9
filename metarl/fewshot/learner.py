"""The few-shot learner interface the trainer and evaluation drive.

::

    learner = SomeLearner(config, task_kind="classification", input_shape=(1, 28, 28), ways=5)
    optimizer = learner.make_optimizer()
    for it in range(iterations):
        batch = source.sample(meta_batch, rng)             # FewShotBatch [B, ...]
        metrics = learner.train_step(batch, optimizer)     # one outer update
    predictions = learner.predict(support_x, support_y, query_x)   # [B, Q, ways] or [B, Q, 1]

Every learner is batched over tasks: tensors carry a leading task dimension ``B``.
Classification predictions are logits over the ``ways`` labels of each task; regression
predictions are values shaped like ``query_y``.
"""

from __future__ import annotations

import torch
from torch import nn

from metarl.fewshot.data import FewShotBatch

#: the kinds of few-shot problem a learner may solve
TASK_KINDS = ("classification", "regression")


class FewShotLearner(nn.Module):
    """Base class: subclasses implement :meth:`predict` and :meth:`meta_loss` (or override
    :meth:`train_step`, e.g. Reptile, whose outer update is not a loss gradient)."""

    #: the task kinds a learner supports (e.g. ProtoNets only classification)
    supports: tuple[str, ...] = TASK_KINDS

    def __init__(self, task_kind: str):
        super().__init__()
        if task_kind not in self.supports:
            raise ValueError(f"{type(self).__name__} does not support {task_kind} tasks; "
                             f"it supports: {', '.join(self.supports)}")
        self.task_kind = task_kind

    @property
    def classification(self) -> bool:
        return self.task_kind == "classification"

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor,
                query_x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, Q, ways]`` (classification) or values ``[B, Q, 1]`` (regression)."""
        raise NotImplementedError

    def task_loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-task loss ``[B]``: cross-entropy or mean squared error over the queries."""
        if self.classification:
            losses = nn.functional.cross_entropy(predictions.flatten(0, 1), targets.flatten(),
                                                 reduction="none")
            return losses.view(targets.shape).mean(-1)
        return (predictions - targets).square().flatten(1).mean(-1)

    def meta_loss(self, batch: FewShotBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The outer loss (mean over tasks) and metrics for logging."""
        predictions = self.predict(batch.support_x, batch.support_y, batch.query_x)
        losses = self.task_loss(predictions, batch.query_y)
        return losses.mean(), self.metrics(predictions, batch.query_y, losses)

    def metrics(self, predictions: torch.Tensor, targets: torch.Tensor,
                losses: torch.Tensor) -> dict[str, float]:
        out = {"loss": float(losses.detach().mean())}
        if self.classification:
            out["accuracy"] = float((predictions.argmax(-1) == targets).float().mean())
        return out

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=lr)

    def train_step(self, batch: FewShotBatch, optimizer: torch.optim.Optimizer
                   ) -> dict[str, float]:
        """One outer update on a meta-batch; returns the metrics."""
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.meta_loss(batch)
        loss.backward()
        optimizer.step()
        return metrics
