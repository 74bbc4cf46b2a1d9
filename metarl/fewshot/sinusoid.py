"""Sinusoid regression tasks (Finn et al., 2017, MAML section 5.1).

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]`` and phase ``phi ~ U[0, pi]``;
inputs are ``x ~ U[-5, 5]``, drawn independently for the support and the query set. There is
one continuous task distribution, so a held-out set is a batch drawn with a fixed seed
(:meth:`SinusoidTasks.fixed` or :func:`metarl.fewshot.data.fixed_batch`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metarl.fewshot.data import FewShotBatch, _positive


class SinusoidTasks:
    """The sinusoid task distribution; ranges are ``(low, high)`` of uniform draws."""

    def __init__(self, amplitude: tuple[float, float] = (0.1, 5.0),
                 phase: tuple[float, float] = (0.0, math.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0)):
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        self.amplitude = tuple(map(float, amplitude))
        self.phase = tuple(map(float, phase))
        self.x_range = tuple(map(float, x_range))

    @staticmethod
    def function(x: np.ndarray, amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """``A sin(x - phi)`` in float64, broadcasting ``amplitude``/``phase`` ([B]) over
        ``x`` ([B, ...]): the targets of a batch, or a dense curve for plotting."""
        x = np.asarray(x, dtype=np.float64)
        shape = (-1,) + (1,) * (x.ndim - 1)
        a = np.asarray(amplitude, dtype=np.float64).reshape(shape)
        p = np.asarray(phase, dtype=np.float64).reshape(shape)
        return a * np.sin(x - p)

    def sample_params(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"amplitude": [B], "phase": [B]}`` float64."""
        amplitude = rng.uniform(*self.amplitude, size=batch)
        return {"amplitude": amplitude, "phase": rng.uniform(*self.phase, size=batch)}

    def sample(self, batch: int, shots: int, queries: int,
               rng: np.random.Generator) -> FewShotBatch:
        """``batch`` tasks with ``shots`` support and ``queries`` query points each (float32
        tensors [B, K, 1] / [B, Q, 1]); ``params`` holds the amplitudes and phases."""
        b = _positive("batch", batch)
        k, q = _positive("shots", shots), _positive("queries", queries)
        params = self.sample_params(b, rng)
        x = rng.uniform(*self.x_range, size=(b, k + q, 1)).astype(np.float32)
        y = self.function(x, params["amplitude"], params["phase"]).astype(np.float32)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        return FewShotBatch(x[:, :k].contiguous(), y[:, :k].contiguous(),
                            x[:, k:].contiguous(), y[:, k:].contiguous(), params)

    def fixed(self, batch: int, shots: int, queries: int, seed: int) -> FewShotBatch:
        """A reproducible batch (a held-out set): :meth:`sample` with ``default_rng(seed)``."""
        return self.sample(batch, shots, queries, np.random.default_rng(seed))


class SinusoidSampler:
    """A task source (``sample(batch, rng)``) of sinusoid tasks with fixed shots and queries."""

    classification = False
    input_shape = (1,)
    output_dim = 1

    def __init__(self, tasks: SinusoidTasks | None = None, shots: int = 10, queries: int = 10):
        self.tasks = SinusoidTasks() if tasks is None else tasks
        self.shots = _positive("shots", shots)
        self.queries = _positive("queries", queries)

    def sample(self, batch: int, rng: np.random.Generator) -> FewShotBatch:
        return self.tasks.sample(batch, self.shots, self.queries, rng)
