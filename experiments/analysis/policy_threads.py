"""Time the sampler's numpy policy call (the (64, 64) benchmark MLP) per batch size, with
numpy's BLAS left at its default thread count and limited to one thread.

    python experiments/analysis/policy_threads.py            # run it idle and next to a busy job
"""

from __future__ import annotations

import time

import numpy as np
from report_table import print_table

from metarl.benchmarks.sampler import benchmark_policy
from metarl.random import BatchRNG
from metarl.thread_limits import limited_threads


def microseconds_per_call(rows: int, calls: int = 400) -> float:
    """Best-of-3 mean time of ``NumpyGaussianMLP.act`` on ``rows`` observations."""
    frozen = benchmark_policy(17, 6).net.snapshot()
    rng = BatchRNG(0, np.arange(rows), "policy")
    obs = np.random.default_rng(0).standard_normal((rows, 17)).astype(np.float32)
    for _ in range(50):
        frozen.act(obs, rng)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            frozen.act(obs, rng)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    rows = []
    for size in (20, 200, 800):
        default = microseconds_per_call(size)
        with limited_threads(1):
            single = microseconds_per_call(size)
        rows.append([size, f"{default:.0f}", f"{single:.0f}"])
    print_table(["rows", "default BLAS threads (µs)", "one BLAS thread (µs)"], rows)

if __name__ == "__main__":
    main()
