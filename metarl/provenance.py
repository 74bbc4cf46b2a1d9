"""Where and with what code a stretch of a training run ran (``segments.jsonl``)."""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from metarl.checkpoints import atomic_write_text

#: a run dir's log of its stretches (one JSON object per line, oldest first)
SEGMENTS_FILE = "segments.jsonl"


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
    from importlib.metadata import PackageNotFoundError, version

    try:
        metarl_version = version("metarl")
    except PackageNotFoundError:  # run from a checkout that is not installed
        metarl_version = "unknown"
    return {"host": platform.node(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "metarl": metarl_version, "commit": _source_commit()}


def read_segments(path: Path) -> list[dict[str, Any]]:
    """The stretches a ``segments.jsonl`` records, oldest first ([] without the file)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_segments(path: Path, segments: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically with ``segments``, one JSON line each."""
    atomic_write_text(path, "".join(json.dumps(segment) + "\n" for segment in segments))


def truncate_segments(path: Path, iteration: int) -> None:
    """Drop the stretches that start at ``iteration`` or later: a run resumed (or forked)
    from checkpoint ``iteration`` discards the iterations they ran, as their progress rows."""
    segments = read_segments(path)
    kept = [segment for segment in segments if segment["first_iteration"] < iteration]
    if kept != segments:
        write_segments(path, kept)


def setting_changes(segments: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(first iteration, settings that differ from the stretch before) for each stretch
    whose settings and its predecessor's are both recorded (stretches run before segments
    carried settings have none) and differ."""
    out = []
    for before, after in itertools.pairwise(segments):
        if "settings" in before and "settings" in after:
            changed = {key: value for key, value in after["settings"].items()
                       if before["settings"].get(key) != value}
            if changed:
                out.append((after["first_iteration"], changed))
    return out
