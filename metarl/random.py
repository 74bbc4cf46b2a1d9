"""Counter-based random numbers keyed by environment, for shard-invariant sampling.

A :class:`BatchRNG` holds one independent random stream per environment of a batch. The
stream of environment ``b`` depends only on the seed, a stream tag and the environment's
*key* (its global index, ``task_index * trials + trial``), never on which other
environments share the batch. So sampling 100 tasks in one process or split over Ray
workers gives bit-identical rollouts for the same seed.

Every draw is vectorised over the batch (a splitmix64 hash of ``(seed, tag, key, counter)``
in numpy); its API mirrors ``numpy.random.Generator`` for sizes whose first dimension is the
batch size. A draw's values depend only on the counter it starts at, so draws that recur
(an env step's normal and uniform, a policy's action noise) are computed ahead in blocks
(:meth:`BatchRNG._draw`). The streams are frozen: ``tests/test_random.py`` holds digests of
long interleaved sequences of draws.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


#: at most how many draws of one kind and size are computed ahead in one block
_AHEAD = 32
#: ... and at most this many values in the block (large draws gain nothing from it)
_AHEAD_VALUES = 1 << 18


class _Ahead:
    """Draws of one kind (uniform or normal) and size: where the last ones were, and a block
    of values computed ahead at counters ``first + i * step``."""

    __slots__ = ("last", "stride", "first", "step", "values", "served")

    def __init__(self) -> None:
        self.last = -1  # counter of the last draw (-1: none yet)
        self.stride = 0  # counters between the last two draws
        self.first, self.step = 0, 1
        self.values: np.ndarray | None = None  # [B, count, per_env]
        self.served = 0  # draws served from the last block (0: no block yet)


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
        self._ahead: dict[tuple[bool, int], _Ahead] = {}  # (normal?, per_env) -> block

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
        out._ahead = {}
        return out

    def _bits(self, per_env: int) -> np.ndarray:
        counters = np.arange(self._counter, self._counter + per_env, dtype=np.uint64)
        self._counter += per_env
        return _mix(self._state[:, None] + (counters[None, :] + np.uint64(1)) * _GOLDEN)

    def _bits_at(self, first: int, step: int, count: int, width: int) -> np.ndarray:
        """The bits at counters ``first + i * step + j`` (``i < count``, ``j < width``):
        ``[B, count, width]``, the same as :meth:`_bits` gives at those counters."""
        counters = (np.arange(count, dtype=np.uint64)[:, None] * np.uint64(step)
                    + np.arange(first, first + width, dtype=np.uint64)[None, :])
        return _mix(self._state[:, None, None] + (counters[None] + np.uint64(1)) * _GOLDEN)

    def _shape(self, size: int | tuple[int, ...] | None) -> tuple[int, ...]:
        if size is None:
            return (self.size,)
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if not shape or shape[0] != self.size:
            raise ValueError(f"size {shape} must start with the batch size {self.size}")
        return shape

    def _draw(self, normal: bool, shape: tuple[int, ...]) -> np.ndarray:
        """The next draw of ``shape``: uniform floats, or Box-Muller normals.

        A draw's values depend only on the counter it starts at, so they may come from a
        block computed ahead. Each kind and size remembers where its last draws were; when
        two in a row were the same number of counters apart (a step drawing the same things
        in the same order, whatever else it draws in between), the next ``_AHEAD`` draws at
        that spacing are computed in one block, and served from it while the spacing
        holds. The values are those of drawing them one by one."""
        per_env = math.prod(shape[1:])
        width = 2 * ((per_env + 1) // 2) if normal else per_env
        counter = self._counter
        if per_env == 0:
            return np.zeros(shape)
        ahead = self._ahead.get((normal, per_env))
        if ahead is None:
            ahead = self._ahead[normal, per_env] = _Ahead()
        stride = counter - ahead.last if ahead.last >= 0 else 0
        ahead.last = counter
        self._counter = counter + width
        values = ahead.values
        if values is not None:
            index, rest = divmod(counter - ahead.first, ahead.step)
            if rest == 0 and 0 <= index < values.shape[1]:
                ahead.stride = stride
                ahead.served += 1
                return values[:, index].reshape(shape).copy()  # the caller may write to it
        count = 1
        if stride and stride == ahead.stride:
            # the block size adapts: twice what the last block served (a spacing that keeps
            # breaking wastes little), the whole _AHEAD while it holds
            count = min(_AHEAD, 2 * ahead.served) if ahead.served else _AHEAD
            count = max(1, min(count, _AHEAD_VALUES // max(1, self.size * per_env)))
        ahead.stride = stride
        if count == 1:
            values = self._compute(normal, per_env, counter, width, 1, width)
            ahead.values = None
            return values.reshape(shape)
        values = self._compute(normal, per_env, counter, stride, count, width)
        ahead.first, ahead.step, ahead.values, ahead.served = counter, stride, values, 1
        return values[:, 0].reshape(shape).copy()

    def _compute(self, normal: bool, per_env: int, first: int, step: int, count: int,
                 width: int) -> np.ndarray:
        """``count`` draws of ``per_env`` values at counters ``first + i * step``:
        ``[B, count, per_env]``."""
        u = (self._bits_at(first, step, count, width) >> np.uint64(11)).astype(np.float64)
        u *= 1.0 / 2**53
        if not normal:
            return u
        # Box-Muller on the first and second halves of each draw's counters
        half = width // 2
        u = u.reshape(self.size, count, 2, half)
        radius = np.sqrt(-2.0 * np.log1p(-u[:, :, 0]))
        angle = 2.0 * np.pi * u[:, :, 1]
        sines = per_env - half  # an odd size drops its last sine: not computed
        return np.concatenate([radius * np.cos(angle),
                               radius[:, :, :sines] * np.sin(angle[:, :, :sines])], axis=2)

    def random(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Uniform floats in ``[0, 1)`` of shape ``size`` (first dimension = batch): the
        top 53 bits of one counter each."""
        return self._draw(False, self._shape(size))

    def uniform(self, low=0.0, high=1.0, size=None) -> np.ndarray:
        return low + (np.asarray(high) - low) * self.random(size)

    def standard_normal(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Gaussian samples by the Box-Muller transform.

        A draw of ``per_env`` values uses the next ``2 * ceil(per_env / 2)`` counters: value
        ``k < ceil(per_env / 2)`` is ``sqrt(-2 log(1 - u[k])) cos(2 pi u[k + half])``, the
        rest the sines of the same pairs (``u`` the uniforms of :meth:`random` at those
        counters)."""
        return self._draw(True, self._shape(size))

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
