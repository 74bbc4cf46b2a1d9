"""Why a training run stopped early (see :mod:`metarl.training`): a signal
(:class:`TrainingStopped`, handled by :func:`stop_requests`), a non-finite loss, gradient or
parameter (:class:`TrainingDiverged`), a sampler that lost its workers for good
(:class:`SamplerError`) or a full disk (:class:`DiskFull`).

Kept free of heavy imports: the CLI catches these before torch loads.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the errors of a full disk: no space left, or the quota used up
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class TrainingStopped(Exception):
    """A stop signal arrived; the run was saved after ``iteration`` iterations."""

    def __init__(self, signum: int, iteration: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration "
                         f"{iteration} (checkpoint saved); continue with --resume")
        self.signum, self.iteration = signum, iteration


class TrainingDiverged(Exception):
    """Iteration ``iteration`` blew up: ``problem`` says which quantity (a metric such as the
    loss, a gradient or a parameter) is not finite or beyond all bounds; nothing of it was
    saved. ``checkpoint`` is the newest checkpoint (all saved ones are sound), or None when
    none was saved yet."""

    def __init__(self, iteration: int, problem: str, checkpoint: str | os.PathLike | None):
        last = (f"last good checkpoint: {os.fspath(checkpoint)}" if checkpoint is not None
                else "no checkpoint was saved yet")
        super().__init__(f"diverged at iteration {iteration}: {problem}; {last}")
        self.iteration, self.problem, self.checkpoint = iteration, problem, checkpoint


class SamplerError(RuntimeError):
    """Sampling could not finish: a shard's Ray worker kept dying (retries exhausted). The
    iteration in flight is not saved; the last checkpoint is intact."""


class DiskFull(Exception):
    """Writing ``path`` failed for lack of space (``ENOSPC``) or quota (``EDQUOT``); the
    checkpoints already saved are intact (checkpoints are written atomically)."""

    def __init__(self, path: str | os.PathLike, reason: str,
                 checkpoint: str | os.PathLike | None):
        last = (f"the last checkpoint {os.fspath(checkpoint)!r} is intact; free space and "
                f"continue with --resume" if checkpoint is not None
                else "no checkpoint was saved yet; free space and start again")
        super().__init__(f"{reason} writing {os.fspath(path)!r}; {last}")
        self.path, self.reason, self.checkpoint = path, reason, checkpoint


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Collect SIGTERM and SIGINT (unless ignored, as in a shell's background job) into the
    yielded list instead of dying; the first one restores the previous handlers, so a
    second signal acts at once. Off the main thread (where handlers cannot be set) the list
    stays empty."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    signums = [s for s in (signal.SIGTERM, signal.SIGINT)
               if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.getsignal(s) for s in signums}

    def request_stop(signum: int, frame: Any) -> None:
        received.append(signum)
        for s, handler in previous.items():
            signal.signal(s, handler)

    for s in signums:
        signal.signal(s, request_stop)
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
