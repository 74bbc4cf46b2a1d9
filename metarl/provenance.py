"""Where and with what code a stretch of a training run ran (``segments.jsonl``)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _source_commit() -> str | None:
    """The git commit of the metarl checkout running, ``-dirty`` with uncommitted changes
    (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def machine_record() -> dict[str, Any]:
    """Where and with what code a stretch of a run ran: iteration times in
    ``progress.csv`` only compare within one machine."""
    from metarl import __version__
    return {"host": platform.node(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "metarl": __version__, "commit": _source_commit()}
