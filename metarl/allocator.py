"""Keep glibc's malloc from handing large freed blocks back to the kernel.

A training step allocates and frees the same large tensors over and over (an RL² minibatch's
activations are 0.6–64 MB each). By default glibc serves such blocks with ``mmap`` and returns
them with ``munmap`` or a heap trim, so every reuse page-faults and zero-fills its memory
afresh: a ``metarl bench rl2-update --tasks 1250 --epochs 1`` run of the second-thread core
takes 2.5–2.7M minor faults and 12 s of system time with glibc's defaults, 0.9M and 7 s
without (experiments/RESULTS.md). With mmap off and trimming off, freed blocks are reused
from the heap instead; the process keeps its peak footprint. ``METARL_KEEP_FREED_MEMORY=0``
opts out.

Only glibc is touched, and not when the user has set any ``MALLOC_*`` tunable of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: the largest is "never" in practice


def keep_freed_memory() -> bool:
    """Turn off mmap'd allocations and heap trimming in this process (glibc only).

    Returns whether the settings were applied. Call it before the large allocations start.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("METARL_KEEP_FREED_MEMORY") == "0" or any(
            name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
