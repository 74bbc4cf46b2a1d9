"""Supervised few-shot learning: datasets, N-way K-shot task samplers (and learners).

``make_task_source(name, split, ways=, shots=, queries=, **dataset_kwargs)`` gives an object
with ``sample(batch, rng) -> FewShotBatch`` for ``"sinusoid"`` (regression), ``"omniglot"``
and ``"image-folder"`` (classification); see :mod:`metarl.fewshot.data`.
"""

from metarl.fewshot.data import (
    DATASETS,
    SPLITS,
    ClassDataset,
    EpisodeSampler,
    FewShotBatch,
    TaskSource,
    fixed_batch,
    is_classification,
    make_task_source,
)
from metarl.fewshot.images import ImageFolder, Omniglot, find_omniglot
from metarl.fewshot.sinusoid import SinusoidSampler, SinusoidTasks

__all__ = [
    "DATASETS", "SPLITS", "ClassDataset", "EpisodeSampler", "FewShotBatch", "ImageFolder",
    "Omniglot", "SinusoidSampler", "SinusoidTasks", "TaskSource", "find_omniglot", "fixed_batch",
    "is_classification", "make_task_source",
]
