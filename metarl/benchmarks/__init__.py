"""Benchmarks (run with ``python -m metarl.benchmarks.<name>`` or ``metarl bench``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(step: Callable[[], object], repeats: int, warmup: int = 3,
              tick: Callable[[], object] | None = None) -> float:
    """Median wall time of ``step()`` in milliseconds over ``repeats`` calls after
    ``warmup`` untimed ones; ``tick()`` after each call, outside the timings (progress)."""
    for _ in range(warmup):
        step()
        if tick is not None:
            tick()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if tick is not None:
            tick()
    return 1000 * statistics.median(times)
