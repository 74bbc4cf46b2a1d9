"""One training process per run directory: an exclusive lock on ``RUN/.lock``.

``metarl train`` (and ``--resume``) holds :func:`run_lock` on its run directory from before
it writes anything there until the process ends. The lock is an OS lock (``flock``) on the
open file, so the kernel releases it when the process dies, however it dies (``kill -9``
too): a stale ``.lock`` file never blocks anyone. The holder writes its pid (and host) into
the file, so a second process on the same directory fails at once with one line naming it
(:class:`RunDirBusy`). Where ``fcntl`` is missing (Windows) there is no lock.

Drive a :class:`metarl.training.Trainer` from Python the same way::

    with run_lock(run_dir):
        trainer.resume()
        trainer.train()

Kept free of heavy imports: the CLI catches :class:`RunDirError` before torch loads.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunDirError(Exception):
    """A run directory that cannot be trained into as asked (one line for the user)."""


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


def _holder(fd: int) -> str:
    """``pid N`` (``on host H`` when another host) of the lock's holder, from the file."""
    text = ""
    for _ in range(20):  # the holder writes its pid right after locking: wait a moment
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 256).decode(errors="replace").strip()
        if text:
            break
        time.sleep(0.025)
    pid, _, host = text.partition(" ")
    if not pid:
        return "pid unknown"
    return f"pid {pid}" + (f" on host {host}" if host and host != socket.gethostname() else "")


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if missing) for the block; raises
    :class:`RunDirBusy` at once if another process holds it. Yields the lock file's path."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd children
    except OSError as exc:  # not a directory, not writable, no space, ...
        raise RunDirError(f"cannot use run dir {str(run_dir)!r}: "
                          f"{exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirBusy(f"run dir {str(run_dir)!r} is in use by another metarl "
                                 f"process ({_holder(fd)}); wait for it to end or stop "
                                 f"it first") from None
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as exc:  # e.g. no space for the pid
            raise RunDirError(f"cannot use run dir {str(run_dir)!r}: "
                              f"{exc.strerror or exc}") from None
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # still locked: nobody reads a stale pid later
    finally:
        os.close(fd)  # releases the lock
