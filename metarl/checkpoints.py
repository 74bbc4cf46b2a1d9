"""Atomic file writes and safe checkpoint loading."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from metarl.stopping import NO_SPACE


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or not a metarl checkpoint."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` only if the block succeeds
    (readers see the old file or the complete new one, never a part). A full disk raises
    ``OSError`` (``ENOSPC``) naming ``path``, not the temporary file, and leaves ``path``
    as it was."""
    path = Path(path)
    with full_disk_names(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    try:
        with full_disk_names(path):
            yield Path(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def full_disk_names(path: str | Path) -> Iterator[None]:
    """A full disk's ``OSError`` in the block names ``path`` (an error of a write to an open
    file names none)."""
    path = Path(path)
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE and exc.filename != str(path):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, no arbitrary
    objects are unpickled."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means a corrupt file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable "
                              f"({reason[:120]})") from None
    if not isinstance(state, dict) or "agent" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a metarl checkpoint")
    return state
