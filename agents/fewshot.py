"""Few-shot learners as agents: the registry's ``kind="few-shot"`` entries.

Each class pairs :class:`~metarl.fewshot.agent.FewShotAgent` with a learner, and each config
class adds the papers' per-dataset defaults (:meth:`dataset_defaults`, applied before
``--set`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from metarl.fewshot.agent import FewShotAgent
from metarl.fewshot.blackbox import CNP, CNPConfig
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


class _DatasetDefaults:
    """``dataset_defaults(dataset)``: the :attr:`SINUSOID` settings on sinusoid regression
    (the dataclass defaults are the papers' Omniglot settings)."""

    SINUSOID: ClassVar[dict[str, Any]] = {}

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        return dict(cls.SINUSOID) if dataset == "sinusoid" else {}


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
