"""Few-shot learners as agents: the registry's ``kind="few-shot"`` entries.

Each class pairs :class:`~metarl.fewshot.agent.FewShotAgent` with a learner, and each config
class adds the papers' per-dataset defaults (:meth:`dataset_defaults`, applied before
``--set`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def _for(dataset: str, sinusoid: dict[str, Any], **always: Any) -> dict[str, Any]:
    return {**(sinusoid if dataset == "sinusoid" else {}), **always}


@dataclass
class MAMLAgentConfig(MAMLConfig):
    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return _for(dataset, MAML_SINUSOID)


@dataclass
class FOMAMLAgentConfig(MAMLConfig):
    first_order: bool = True

    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return _for(dataset, MAML_SINUSOID)


@dataclass
class MetaSGDAgentConfig(MAMLConfig):
    """Meta-SGD (Li et al. 2017): step sizes learned per weight, one inner step."""

    meta_sgd: bool = True
    eval_inner_steps: int = 1  # the learned step sizes are fitted to one step (paper: 1)

    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return _for(dataset, {**MAML_SINUSOID, "eval_inner_steps": 1})


@dataclass
class ANILAgentConfig(MAMLConfig):
    """ANIL (Raghu et al. 2020): MAML adapting the head only."""

    anil: bool = True

    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return _for(dataset, MAML_SINUSOID)


@dataclass
class ReptileAgentConfig(ReptileConfig):
    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return _for(dataset, REPTILE_SINUSOID)


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
class CNPAgentConfig(CNPConfig, FewShotConfig):
    @staticmethod
    def dataset_defaults(dataset: str) -> dict[str, Any]:
        return {k: v for k, v in _for(dataset, SINUSOID).items() if k != "hidden"}


class ProtoNetAgent(FewShotAgent):
    learner_class = ProtoNet


class MatchingNetAgent(FewShotAgent):
    learner_class = MatchingNet


class CNPAgent(FewShotAgent):
    learner_class = CNP
