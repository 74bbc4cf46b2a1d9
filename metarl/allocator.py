"""Keep glibc's malloc from handing large freed blocks back to the kernel.

A training step allocates and frees the same large tensors over and over (an RL² minibatch's
activations are 0.6–64 MB each). By default glibc serves such blocks with ``mmap`` and returns
them with ``munmap`` or a heap trim, so every reuse page-faults and zero-fills its memory
afresh: ~50,000 minor faults a second in an RL² tabular-MDP run, ~9% of its CPU time in the
kernel. With mmap off and trimming off, freed blocks are reused from the heap instead; the
process keeps its peak footprint. Compare ``metarl bench rl2-update`` with and without
``METARL_KEEP_FREED_MEMORY=0`` (the opt-out).

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
