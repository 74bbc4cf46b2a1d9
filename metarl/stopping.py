"""Stopping a training run cleanly on SIGTERM / SIGINT (see :mod:`metarl.training`).

Kept free of heavy imports: the CLI catches :class:`TrainingStopped` before torch loads.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TrainingStopped(Exception):
    """A stop signal arrived; the run was saved after ``iteration`` iterations."""

    def __init__(self, signum: int, iteration: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration "
                         f"{iteration} (checkpoint saved); continue with --resume")
        self.signum, self.iteration = signum, iteration


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
