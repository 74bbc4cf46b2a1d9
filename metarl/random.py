"""Counter-based random numbers keyed by environment, for shard-invariant sampling.

A :class:`BatchRNG` holds one independent random stream per environment of a batch. The
stream of environment ``b`` depends only on the seed, a stream tag and the environment's
*key* (its global index, ``task_index * trials + trial``), never on which other
environments share the batch. So sampling 100 tasks in one process or split over Ray
workers gives bit-identical rollouts for the same seed.

Every draw is vectorised over the batch (a splitmix64 hash of ``(seed, tag, key, counter)``
in numpy); its API mirrors ``numpy.random.Generator`` for sizes whose first dimension is the
batch size.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


#: how many same-sized normal draws :meth:`BatchRNG.standard_normal` computes ahead
_NORMAL_BLOCK = 32


@dataclass(frozen=True)
class _NormalBlock:
    per_env: int
    first_counter: int
    values: np.ndarray  # [B, draws, per_env]


class BatchRNG:
    """Independent random streams for a batch of environments (see module docstring)."""

    def __init__(self, seed: int, keys: Sequence[int] | np.ndarray, tag: str = ""):
        self.seed = int(seed)
        self.tag = tag
        self.keys = np.asarray(keys, dtype=np.int64)
        base = np.array([self.seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
        base = _mix(base ^ np.uint64(zlib.crc32(tag.encode())))
        self._state = _mix(self.keys.astype(np.uint64) * _GOLDEN + base)
        self._counter = 0
        self._normals: _NormalBlock | None = None

    @property
    def size(self) -> int:
        return len(self.keys)

    def child(self, tag: str) -> BatchRNG:
        """An independent family of streams for the same environments."""
        return BatchRNG(self.seed, self.keys, f"{self.tag}/{tag}")

    def subset(self, index: np.ndarray | slice) -> BatchRNG:
        """The streams of some of the environments, at the same position."""
        out = BatchRNG.__new__(BatchRNG)
        out.seed, out.tag, out.keys = self.seed, self.tag, self.keys[index]
        out._state, out._counter = self._state[index], self._counter
        out._normals = None
        return out

    def _bits(self, per_env: int) -> np.ndarray:
        counters = np.arange(self._counter, self._counter + per_env, dtype=np.uint64)
        self._counter += per_env
        return _mix(self._state[:, None] + (counters[None, :] + np.uint64(1)) * _GOLDEN)

    def _shape(self, size: int | tuple[int, ...] | None) -> tuple[int, ...]:
        if size is None:
            return (self.size,)
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if not shape or shape[0] != self.size:
            raise ValueError(f"size {shape} must start with the batch size {self.size}")
        return shape

    def random(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Uniform floats in ``[0, 1)`` of shape ``size`` (first dimension = batch)."""
        shape = self._shape(size)
        per_env = math.prod(shape[1:])
        bits = self._bits(per_env)
        return ((bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)).reshape(shape)

    def uniform(self, low=0.0, high=1.0, size=None) -> np.ndarray:
        return low + (np.asarray(high) - low) * self.random(size)

    def standard_normal(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Gaussian samples by the Box-Muller transform.

        A draw of ``per_env`` values uses the next ``2 * ceil(per_env / 2)`` counters. When
        the same size is drawn twice in a row (a policy acting step after step), the next
        draws of that size are computed ahead in one block; the values are those of drawing
        them one by one."""
        shape = self._shape(size)
        per_env = math.prod(shape[1:])
        width = 2 * ((per_env + 1) // 2)
        block = self._normals
        if block is not None and block.per_env == per_env:
            index, rest = divmod(self._counter - block.first_counter, width)
            if rest == 0 and 0 <= index < block.values.shape[1]:
                self._counter += width
                return block.values[:, index].reshape(shape)
        count = _NORMAL_BLOCK if block is not None and block.per_env == per_env else 1
        values = self._box_muller(per_env, count)
        self._normals = _NormalBlock(per_env, self._counter, values)
        self._counter += width
        return values[:, 0].reshape(shape)

    def _box_muller(self, per_env: int, count: int) -> np.ndarray:
        """``count`` consecutive draws of ``per_env`` normals: ``[B, count, per_env]``."""
        half = (per_env + 1) // 2
        u = self.random((self.size, count, 2, half))
        self._counter -= count * 2 * half  # the caller advances the counter per draw
        radius = np.sqrt(-2.0 * np.log1p(-u[:, :, 0]))
        angle = 2.0 * np.pi * u[:, :, 1]
        z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=2)
        return z[:, :, :per_env]

    def normal(self, loc=0.0, scale=1.0, size=None) -> np.ndarray:
        return loc + np.asarray(scale) * self.standard_normal(size)

    def integers(self, low: int, high: int | None = None, size=None) -> np.ndarray:
        if high is None:
            low, high = 0, low
        return (low + np.floor(self.random(size) * (high - low))).astype(np.int64)

    def categorical(self, probs: np.ndarray) -> np.ndarray:
        """One index per environment from ``probs [B, n]`` (rows need not be normalised)."""
        cdf = np.cumsum(probs, axis=-1)
        u = self.random(cdf.shape[0])[:, None] * cdf[:, -1:]
        return np.minimum((u >= cdf).sum(axis=-1), cdf.shape[-1] - 1)

    def seeds(self) -> np.ndarray:
        """One fresh 31-bit integer seed per environment (for gymnasium ``reset(seed=)``)."""
        return (self._bits(1)[:, 0] >> np.uint64(33)).astype(np.int64)


def as_batch_rng(seed: int | BatchRNG | None, num_envs: int) -> BatchRNG:
    """``seed`` as a :class:`BatchRNG` over ``num_envs`` environments (keys ``0..B-1``)."""
    if isinstance(seed, BatchRNG):
        if seed.size != num_envs:
            raise ValueError(f"BatchRNG over {seed.size} environments for {num_envs}")
        return seed
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return BatchRNG(seed, np.arange(num_envs))
