"""Few-shot learners as Trainer agents: ``metarl train maml sinusoid`` and friends.

A few-shot run's "env" is a :class:`FewShotProblem` (a dataset and its arguments, e.g.
``env.data_dir``); its agent is a :class:`FewShotAgent` wrapping a
:class:`~metarl.fewshot.learner.FewShotLearner` and its optimizer. ``train_iteration``
samples one meta-batch from the train split (no environment sampler), and :meth:`evaluate`
reports accuracy or MSE with a 95% confidence interval over held-out tasks.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from metarl.fewshot.data import FewShotBatch, TaskSource, is_classification, make_task_source
from metarl.fewshot.learner import FewShotLearner

#: seeds of evaluation batches are offset from the run's seed by this (as in metarl.evaluation)
EVAL_SEED_OFFSET = 10_000


def dataset_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments a dataset accepts as ``env.`` keys."""
    from metarl.fewshot.images import ImageFolder, Omniglot
    from metarl.fewshot.sinusoid import SinusoidTasks

    cls = {"sinusoid": SinusoidTasks, "omniglot": Omniglot, "image-folder": ImageFolder}[name]
    return {k: p for k, p in inspect.signature(cls).parameters.items()
            if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}


@dataclass
class FewShotProblem:
    """The "env" of a few-shot run: dataset ``name`` and its constructor ``kwargs``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        return is_classification(self.name)

    def source(self, split: str, config: Any) -> TaskSource:
        """Episodes of ``split`` shaped by the learner config's ways / shots / queries."""
        ways = config.ways if self.classification else None
        return make_task_source(self.name, split, ways=ways, shots=config.shots,
                                queries=config.queries, **self.kwargs)


class FewShotAgent:
    """Trains a few-shot learner one meta-batch per iteration (the Agent protocol)."""

    #: the learner class, built by ``learner.from_config(config, task_kind, input_shape, ways)``
    learner_class: type[FewShotLearner]

    def __init__(self, problem: FewShotProblem, config: Any, device: str = "cpu"):
        self.problem, self.config, self.device = problem, config, torch.device(device)
        self.train_source = problem.source("train", config)
        kind = "classification" if problem.classification else "regression"
        probe = self.train_source.sample(1, np.random.default_rng(0))
        self.learner = self.learner_class.from_config(
            config, kind, tuple(probe.support_x.shape[2:]),
            config.ways if problem.classification else None).to(self.device)
        self.optimizer = self.learner.make_optimizer(config.lr)
        self._sources: dict[str, TaskSource] = {f"train/{config.shots}": self.train_source}

    def train_iteration(self, sampler: Any, rng: np.random.Generator) -> dict[str, float]:
        self.learner.train()
        batch = self.train_source.sample(self.config.meta_batch, rng).to(self.device)
        return self.learner.train_step(batch, self.optimizer)

    def evaluate(self, split: str = "test", num_tasks: int = 600, seed: int = 0,
                 shots: int | None = None) -> dict[str, Any]:
        """Accuracy (classification) or MSE (regression) over ``num_tasks`` tasks of
        ``split``, mean and 95% confidence half-width (1.96 standard errors); ``shots``
        overrides the trained number of support examples per class."""
        config = self.config if shots is None else replace(self.config, shots=shots)
        key = f"{split}/{config.shots}"
        if key not in self._sources:
            self._sources[key] = self.problem.source(split, config)
        source = self._sources[key]
        rng = np.random.default_rng([seed + EVAL_SEED_OFFSET])
        self.learner.eval()
        scores = []
        with torch.no_grad():
            for start in range(0, num_tasks, self.config.meta_batch):
                size = min(self.config.meta_batch, num_tasks - start)
                scores.append(self._scores(source.sample(size, rng).to(self.device)))
        self.learner.train()
        values = np.concatenate(scores)
        metric = "accuracy" if self.problem.classification else "mse"
        half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        return {"split": split, "num_tasks": num_tasks, "metric": metric,
                metric: float(values.mean()), "ci95": float(half_width),
                "ways": self.config.ways if self.problem.classification else None,
                "shots": config.shots, "queries": config.queries}

    def _scores(self, batch: FewShotBatch) -> np.ndarray:
        """Per-task accuracy or MSE on the queries."""
        predictions = self.learner.predict(batch.support_x, batch.support_y, batch.query_x)
        if self.problem.classification:
            correct = (predictions.argmax(-1) == batch.query_y).float()
            return correct.mean(-1).cpu().numpy()
        return (predictions - batch.query_y).square().flatten(1).mean(-1).cpu().numpy()

    def policy(self, deterministic: bool = False):
        raise TypeError("few-shot learners have no policy; use evaluate() or predict()")

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor,
                query_x: torch.Tensor) -> torch.Tensor:
        """The learner's predictions for query inputs given a support set (batched)."""
        self.learner.eval()
        with torch.no_grad():
            return self.learner.predict(support_x, support_y, query_x)

    def state_dict(self) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.optimizer.load_state_dict(state["optimizer"])
