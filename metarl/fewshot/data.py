"""Few-shot batches, class datasets and the N-way K-shot episode sampler.

A *task source* is anything with ``sample(batch, rng) -> FewShotBatch``: an
:class:`EpisodeSampler` over a :class:`ClassDataset` (classification) or a
:class:`~metarl.fewshot.sinusoid.SinusoidSampler` (regression).
:func:`metarl.fewshot.datasets.make_task_source` builds one from a registered dataset name.

Batch layout (B tasks, N ways, K shots, Q queries per class)::

    classification: support_x [B, N*K, C, H, W] float32, support_y [B, N*K] int64
                    query_x   [B, N*Q, C, H, W] float32, query_y   [B, N*Q] int64
    regression:     support_x [B, K, 1], support_y [B, K, 1], query_x/query_y [B, Q, 1]

Classification supports are grouped by label (``support_y[b] = [0]*K + [1]*K + ...``, same
for the queries) unless the sampler shuffles them; labels are assigned to the drawn classes
in random order per task, so label ``j`` of task ``b`` is class ``params["classes"][b, j]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

SPLITS = ("train", "val", "test")


def check_split(name: str) -> str:
    """``name`` if it is one of :data:`SPLITS`, else a ValueError."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
    return name


@dataclass
class FewShotBatch:
    """B few-shot tasks: support and query tensors plus per-task numpy ``params`` ([B, ...])."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    def to(self, device: torch.device | str) -> FewShotBatch:
        """The same batch with its tensors on ``device`` (``params`` stay numpy)."""
        return FewShotBatch(self.support_x.to(device), self.support_y.to(device),
                            self.query_x.to(device), self.query_y.to(device), self.params)

    def task(self, i: int) -> FewShotBatch:
        """Task ``i`` as a batch of one (the leading dimension is kept)."""
        b = len(self)
        if not -b <= i < b:
            raise IndexError(f"task {i} out of range for a batch of {b}")
        s = slice(i % b, i % b + 1)
        return FewShotBatch(self.support_x[s], self.support_y[s], self.query_x[s],
                            self.query_y[s], {k: v[s] for k, v in self.params.items()})


@dataclass
class ClassDataset:
    """Labelled images: ``images`` [n_images, C, H, W] float32 in [0, 1], ``labels`` [n_images]
    int64 in ``[0, n_classes)``, ``class_names[label]``. ``class_indices[c]`` lists the images
    of class ``c``; ``counts[c]`` is their number."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    class_indices: list[np.ndarray] = field(init=False, repr=False)
    counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.class_names = list(self.class_names)
        if self.images.ndim != 4:
            raise ValueError(f"images must be [n, C, H, W], got shape {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} != ({len(self.images)},)")
        n = len(self.class_names)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= n):
            raise ValueError(f"labels must lie in [0, {n}) for {n} class names")
        order = np.argsort(self.labels, kind="stable")
        self.counts = np.bincount(self.labels, minlength=n).astype(np.int64)
        self.class_indices = np.split(order, np.cumsum(self.counts)[:-1]) if n else []

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.images)

    def index_matrix(self, classes: np.ndarray | None = None) -> np.ndarray:
        """[n_classes, max count] image indices per class, padded with -1."""
        classes = np.arange(self.n_classes) if classes is None else np.asarray(classes)
        width = int(self.counts[classes].max()) if len(classes) else 0
        out = np.full((len(classes), width), -1, dtype=np.int64)
        for row, c in enumerate(classes):
            out[row, : self.counts[c]] = self.class_indices[c]
        return out


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class EpisodeSampler:
    """Seeded N-way K-shot episodes from a :class:`ClassDataset`.

    Each task draws ``ways`` distinct classes (uniformly among the classes with at least
    ``shots + queries`` images) and ``shots + queries`` distinct images of each; the first
    ``shots`` are the support, the rest the queries. ``shuffle=True`` permutes the support and
    the query sets within each task (for sequence models); otherwise they are grouped by label.
    """

    classification = True

    def __init__(self, dataset: ClassDataset, ways: int, shots: int, queries: int,
                 shuffle: bool = False):
        self.dataset = dataset
        self.ways = _positive("ways", ways)
        self.shots = _positive("shots", shots)
        self.queries = _positive("queries", queries)
        self.shuffle = shuffle
        need = self.shots + self.queries
        most = int(dataset.counts.max()) if dataset.n_classes else 0
        if need > most:
            raise ValueError(f"shots + queries = {need} exceeds the images per class of this "
                             f"dataset (at most {most})")
        self.classes = np.flatnonzero(dataset.counts >= need)
        if self.ways > len(self.classes):
            raise ValueError(f"ways = {self.ways} exceeds the {len(self.classes)} classes with "
                             f">= {need} images (dataset has {dataset.n_classes} classes)")
        if len(self.classes) < dataset.n_classes:
            warnings.warn(f"{dataset.n_classes - len(self.classes)} classes have fewer than "
                          f"shots + queries = {need} images and are never sampled", stacklevel=2)
        self._index = dataset.index_matrix(self.classes)
        self._counts = dataset.counts[self.classes]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    @property
    def output_dim(self) -> int:
        return self.ways

    def sample(self, batch: int, rng: np.random.Generator) -> FewShotBatch:
        """``batch`` tasks drawn with ``rng`` (see the module docstring for the layout)."""
        b, n, k, q = _positive("batch", batch), self.ways, self.shots, self.queries
        # classes: the n smallest of iid keys, sorted by key = a uniformly random ordered subset
        keys = rng.random((b, len(self.classes)))
        pick = np.argpartition(keys, n - 1, axis=1)[:, :n]
        pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(keys, pick, 1), 1), 1)
        # images: k + q distinct of each class, same trick; padding slots get keys above 1
        width = self._index.shape[1]
        keys = rng.random((b, n, width))
        keys[np.arange(width) >= self._counts[pick][..., None]] = 2.0
        slots = np.argpartition(keys, k + q - 1, axis=2)[..., : k + q]
        slots = np.take_along_axis(slots, np.argsort(np.take_along_axis(keys, slots, 2), 2), 2)
        idx = self._index[pick[..., None], slots]  # [b, n, k + q]
        support = idx[..., :k].reshape(b, n * k)
        query = idx[..., k:].reshape(b, n * q)
        support_y = np.broadcast_to(np.repeat(np.arange(n), k), (b, n * k))
        query_y = np.broadcast_to(np.repeat(np.arange(n), q), (b, n * q))
        if self.shuffle:
            perm = np.argsort(rng.random((b, n * k)), axis=1)
            support, support_y = (np.take_along_axis(a, perm, 1) for a in (support, support_y))
            perm = np.argsort(rng.random((b, n * q)), axis=1)
            query, query_y = (np.take_along_axis(a, perm, 1) for a in (query, query_y))
        images = self.dataset.images
        return FewShotBatch(
            torch.from_numpy(images[support]), torch.from_numpy(np.array(support_y)),
            torch.from_numpy(images[query]), torch.from_numpy(np.array(query_y)),
            {"classes": self.classes[pick], "support_index": support, "query_index": query})


# ---------------------------------------------------------------------------------- registry


class TaskSource(Protocol):
    """What trainers consume: ``sample(batch, rng)`` plus shape information."""

    classification: bool

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def output_dim(self) -> int: ...

    def sample(self, batch: int, rng: np.random.Generator) -> FewShotBatch: ...


def fixed_batch(source: TaskSource, batch: int, seed: int) -> FewShotBatch:
    """A reproducible batch (e.g. a held-out evaluation set): ``source`` sampled with ``seed``."""
    return source.sample(batch, np.random.default_rng(seed))
