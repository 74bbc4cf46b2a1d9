"""The few-shot dataset registry: ``make_task_source(name, split, ...)`` for ``"sinusoid"``
(regression), ``"omniglot"`` and ``"image-folder"`` (classification)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from metarl.fewshot.data import ClassDataset, EpisodeSampler, TaskSource, check_split
from metarl.fewshot.images import ImageFolder, Omniglot
from metarl.fewshot.sinusoid import SinusoidSampler, SinusoidTasks


def _sinusoid(split: str = "train", **kwargs: Any) -> Any:
    check_split(split)  # one continuous task distribution: held-out sets come from seeds
    return SinusoidTasks(**kwargs)


def _omniglot(split: str = "train", **kwargs: Any) -> ClassDataset:
    return Omniglot(**kwargs).split(split)


def _image_folder(split: str = "train", **kwargs: Any) -> ClassDataset:
    return ImageFolder(**kwargs).split(split)


#: name -> factory(split, **dataset kwargs) returning a ClassDataset or SinusoidTasks.
DATASETS: dict[str, Callable[..., Any]] = {
    "sinusoid": _sinusoid,
    "omniglot": _omniglot,
    "image-folder": _image_folder,
}
#: name -> one line for ``metarl list``
DATASET_DESCRIPTIONS: dict[str, str] = {
    "sinusoid": "sine regression, amplitude 0.1-5 and phase 0-pi (MAML paper)",
    "omniglot": "handwritten characters, N-way K-shot by alphabet (env.data_dir: the zips)",
    "image-folder": "any folder of class sub-folders of images (env.root=DIR)",
}
_CLASSIFICATION = {"omniglot", "image-folder"}


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown few-shot dataset {name!r}; valid: {', '.join(DATASETS)}")
    return name


def is_classification(name: str) -> bool:
    """Whether dataset ``name`` gives classification episodes (else regression)."""
    return _check_name(name) in _CLASSIFICATION


def make_task_source(name: str, split: str = "train", *, ways: int | None = None,
                     shots: int | None = None, queries: int | None = None,
                     shuffle: bool = False, **dataset_kwargs: Any) -> TaskSource:
    """A task source for split ``split`` of dataset ``name``.

    Classification (``omniglot``, ``image-folder``): an :class:`EpisodeSampler`, defaults
    ``ways=5, shots=1, queries=15``. Regression (``sinusoid``): a ``SinusoidSampler``, defaults
    ``shots=10, queries=10`` (``ways`` is invalid). Other keyword arguments go to the dataset
    (e.g. ``data_dir``, ``image_size``, ``rotations``, ``split_by``, ``seed``, ``root``).
    """
    dataset = DATASETS[_check_name(name)](check_split(split), **dataset_kwargs)
    if is_classification(name):
        return EpisodeSampler(dataset, 5 if ways is None else ways, 1 if shots is None else shots,
                              15 if queries is None else queries, shuffle=shuffle)
    if ways is not None:
        raise ValueError(f"ways applies to classification datasets, not {name!r}")
    return SinusoidSampler(dataset, 10 if shots is None else shots,
                           10 if queries is None else queries)




#: name -> the dataset class whose constructor arguments are the run's ``env.`` keys
DATASET_CLASSES: dict[str, type] = {"sinusoid": SinusoidTasks, "omniglot": Omniglot,
                                    "image-folder": ImageFolder}


def dataset_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments dataset ``name`` accepts (a run's ``env.`` keys)."""
    parameters = inspect.signature(DATASET_CLASSES[_check_name(name)]).parameters
    return {k: p for k, p in parameters.items()
            if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}
