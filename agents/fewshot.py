"""Few-shot learners as agents: the registry's ``kind="few-shot"`` entries.

A few-shot run's "env" is a :class:`FewShotProblem` (a dataset and its arguments, e.g.
``env.data_dir``); its agent is a :class:`FewShotAgent` wrapping a
:class:`~metarl.fewshot.learner.FewShotLearner` and its optimizer. ``train_iteration``
samples one meta-batch from the train split (no environment sampler), and ``evaluate``
reports accuracy or MSE with a 95% confidence interval over held-out tasks. Each agent class
pairs :class:`FewShotAgent` with a learner; each config class adds the papers' settings for
sinusoid regression (``SINUSOID``, applied before ``--set`` overrides).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from metarl.evaluation import EVAL_SEED_OFFSET, EvalRequest
from metarl.fewshot.blackbox import CNP, CNPConfig
from metarl.fewshot.data import FewShotBatch, TaskSource
from metarl.fewshot.datasets import (
    DATASETS,
    dataset_parameters,
    is_classification,
    make_task_source,
)
from metarl.fewshot.images import find_omniglot
from metarl.fewshot.learner import FewShotLearner
from metarl.fewshot.maml import (
    MAML_SINUSOID,
    REPTILE_SINUSOID,
    SINUSOID,
    FewShotConfig,
    GradientLearner,
    MAMLConfig,
    Reptile,
    ReptileConfig,
)
from metarl.fewshot.metric import MatchingNet, MatchingNetConfig, ProtoNet, ProtoNetConfig


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


def _task_kind(dataset: str) -> str:
    return "classification" if is_classification(dataset) else "regression"


class FewShotAgent:
    """Trains a few-shot learner one meta-batch per iteration (the Agent protocol)."""

    #: the learner class, built by ``learner.from_config(config, task_kind, input_shape, ways)``
    learner_class: type[FewShotLearner]
    uses_sampler: ClassVar[bool] = False  # learns from datasets, not environments
    default_eval_tasks: ClassVar[int] = 600  # the papers' held-out task count

    @classmethod
    def env_factory(cls, env: str) -> Callable[..., Any]:
        """A function whose signature is dataset ``env``'s arguments (the ``env.`` keys)."""
        if env not in DATASETS:
            raise ValueError(f"learns from datasets, and {env!r} is not one; valid datasets: "
                             f"{', '.join(DATASETS)}")
        supported = [d for d in DATASETS if _task_kind(d) in cls.learner_class.supports]
        if env not in supported:
            raise ValueError(f"does not learn {_task_kind(env)} datasets such as {env!r}; "
                             f"valid datasets: {', '.join(supported)}")

        def dataset_signature(**kwargs: Any) -> dict[str, Any]:
            return kwargs

        dataset_signature.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            list(dataset_parameters(env).values()))
        return dataset_signature

    @classmethod
    def memory_needs(cls, config: Any, env: Any) -> list:
        """None estimated: a learner's batches are a few tasks of images or points."""
        return []

    @classmethod
    def config_defaults(cls, env: str, config_cls: type) -> dict[str, Any]:
        return dict(getattr(config_cls, "SINUSOID", {})) if env == "sinusoid" else {}

    @classmethod
    def make_env(cls, env: str, env_kwargs: dict[str, Any], config: Any) -> FewShotProblem:
        """The dataset, read once here so that missing data fails before training. Omniglot's
        resolved ``data_dir`` is written into ``env_kwargs`` (the run stores it)."""
        if env == "omniglot" and env_kwargs.get("data_dir") is None:
            env_kwargs["data_dir"] = str(find_omniglot())
        problem = FewShotProblem(env, env_kwargs)
        problem.source("train", config)
        return problem

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

    def evaluate(self, env: Any, sampler: Any, request: EvalRequest,
                 shots: int | None = None) -> dict[str, Any]:
        """Accuracy (classification) or MSE (regression) over the request's tasks of its
        split, mean and 95% confidence half-width (1.96 standard errors); ``shots``
        overrides the trained number of support examples per class."""
        if request.deterministic or request.episodes is not None:
            raise ValueError("--deterministic and --episodes apply to meta-RL agents, not to "
                             "a few-shot learner")
        split, seed = request.split, request.seed
        num_tasks = request.num_tasks or self.default_eval_tasks
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
                "summary": {metric: float(values.mean()), f"{metric}_ci95": float(half_width)},
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


class _DatasetDefaults:
    """Settings that differ on sinusoid regression (:attr:`SINUSOID`; the dataclass defaults
    are the papers' Omniglot settings)."""

    SINUSOID: ClassVar[dict[str, Any]] = {}


@dataclass
class MAMLAgentConfig(_DatasetDefaults, MAMLConfig):
    SINUSOID: ClassVar[dict[str, Any]] = MAML_SINUSOID


@dataclass
class FOMAMLAgentConfig(_DatasetDefaults, MAMLConfig):
    SINUSOID: ClassVar[dict[str, Any]] = MAML_SINUSOID
    first_order: bool = True


@dataclass
class MetaSGDAgentConfig(_DatasetDefaults, MAMLConfig):
    """Meta-SGD (Li et al. 2017): step sizes learned per weight, one inner step."""

    SINUSOID: ClassVar[dict[str, Any]] = {**MAML_SINUSOID, "eval_inner_steps": 1}
    meta_sgd: bool = True
    eval_inner_steps: int = 1  # the learned step sizes are fitted to one step (paper: 1)


@dataclass
class ANILAgentConfig(_DatasetDefaults, MAMLConfig):
    """ANIL (Raghu et al. 2020): MAML adapting the head only."""

    SINUSOID: ClassVar[dict[str, Any]] = MAML_SINUSOID
    anil: bool = True


@dataclass
class ReptileAgentConfig(_DatasetDefaults, ReptileConfig):
    SINUSOID: ClassVar[dict[str, Any]] = REPTILE_SINUSOID


class MAMLAgent(FewShotAgent):
    learner_class = GradientLearner


class ReptileAgent(FewShotAgent):
    learner_class = Reptile


# The metric and black-box learners' own configs come first, so their defaults (e.g. the
# CNP's width 128) win over FewShotConfig's shared fields.
@dataclass
class ProtoNetAgentConfig(ProtoNetConfig, FewShotConfig):
    pass


@dataclass
class MatchingNetAgentConfig(MatchingNetConfig, FewShotConfig):
    pass


@dataclass
class CNPAgentConfig(_DatasetDefaults, CNPConfig, FewShotConfig):
    SINUSOID: ClassVar[dict[str, Any]] = {k: v for k, v in SINUSOID.items() if k != "hidden"}


class ProtoNetAgent(FewShotAgent):
    learner_class = ProtoNet


class MatchingNetAgent(FewShotAgent):
    learner_class = MatchingNet


class CNPAgent(FewShotAgent):
    learner_class = CNP
