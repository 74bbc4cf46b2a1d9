"""Supervised few-shot learning: datasets, N-way K-shot task samplers and learners.

Learners (:class:`FewShotLearner`, batched over tasks, ``predict(support_x, support_y,
query_x)``): MAML / FOMAML / Meta-SGD / ANIL (:class:`GradientLearner`), :class:`Reptile`,
:class:`ProtoNet`, :class:`MatchingNet` and the black-box :class:`CNP`; they train through
``metarl train LEARNER DATASET`` (:mod:`metarl.agents.fewshot`).

``make_task_source(name, split, ways=, shots=, queries=, **dataset_kwargs)`` gives an object
with ``sample(batch, rng) -> FewShotBatch`` for ``"sinusoid"`` (regression), ``"omniglot"``
and ``"image-folder"`` (classification); see :mod:`metarl.fewshot.datasets`.
"""

from metarl.fewshot.data import (
    SPLITS,
    ClassDataset,
    EpisodeSampler,
    FewShotBatch,
    TaskSource,
    fixed_batch,
)
from metarl.fewshot.datasets import DATASETS, is_classification, make_task_source
from metarl.fewshot.images import ImageFolder, Omniglot, find_omniglot
from metarl.fewshot.learner import FewShotLearner
from metarl.fewshot.sinusoid import SinusoidSampler, SinusoidTasks

__all__ = [
    "DATASETS", "SPLITS", "ClassDataset", "EpisodeSampler", "FewShotBatch", "ImageFolder",
    "Omniglot", "SinusoidSampler", "SinusoidTasks", "TaskSource", "find_omniglot", "fixed_batch",
    "is_classification", "make_task_source", "FewShotLearner", "GradientLearner", "Reptile",
    "ProtoNet", "MatchingNet", "CNP",
]


def __getattr__(name: str):  # the learners import torch.func etc. only when asked for
    if name in ("GradientLearner", "Reptile"):
        from metarl.fewshot import maml

        return getattr(maml, name)
    if name in ("ProtoNet", "MatchingNet"):
        from metarl.fewshot import metric

        return getattr(metric, name)
    if name == "CNP":
        from metarl.fewshot.blackbox import CNP

        return CNP
    raise AttributeError(f"module 'metarl.fewshot' has no attribute {name!r}")
