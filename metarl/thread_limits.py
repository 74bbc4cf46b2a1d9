"""Thread limits for torch's intra-op pool and numpy's BLAS together.

A ``threads`` setting has to bind both: the samplers act in numpy (see
:mod:`metarl.nn.mlp`), and OpenBLAS's threads, left at one per core, spin against the other
jobs on a busy machine (the (64, 64) policy on 800 rows: 0.6–0.8 ms a call with one BLAS
thread against 1.9–3.0 ms with two while two training jobs hold the cores, and the same
0.34 ms either way on an idle machine; ``python experiments/analysis/policy_threads.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    """The native thread pools of this process (scanning the libraries costs milliseconds,
    so once; numpy's BLAS is loaded before any caller gets here)."""
    return ThreadpoolController()


def set_threads(threads: int) -> None:
    """Use ``threads`` threads for torch and for BLAS from now on (process-wide)."""
    torch.set_num_threads(threads)
    _controller().limit(limits=threads, user_api="blas")


@contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch and BLAS threads, restored after (``None``:
    unchanged)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _controller().limit(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)
