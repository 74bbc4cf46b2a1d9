"""What the reliability tests share: the ``metarl`` command in a fresh process, and what a user
reads back (progress rows, the stderr lines that are not progress, checkpoint weights)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

#: the command line, as a user runs it
CLI = [sys.executable, "-m", "metarl.cli"]


def metarl(*args: str, timeout: float = 300, env: dict | None = None,
           cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """``metarl ARGS`` in a fresh process: its exit code, stdout and stderr."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})})


def progress_rows(run: Path) -> list[dict[str, str]]:
    """The rows of the run's ``progress.csv`` ([] without one)."""
    path = run / "progress.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows without ``time_s``, the one column that differs between equal runs."""
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def messages(stderr: str) -> list[str]:
    """stderr without the progress lines (``train 3/10 it (30%) | ... | elapsed 0:00:02``,
    also the evaluations')."""
    return [line for line in stderr.splitlines() if " | elapsed " not in line]


def finite_weights(state) -> bool:
    """Whether every floating tensor in a (nested) state dict is finite."""
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(finite_weights(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(finite_weights(v) for v in state)
    return True


def sampler_worker_pids(root: int | None = None) -> dict[int, str]:
    """Live Ray ``SamplerWorker`` actor processes with their titles: Ray names an actor's
    process ``ray::SamplerWorker`` and, while it runs a method, ``ray::SamplerWorker.METHOD``.
    With ``root``, only descendants of that process (its local Ray's raylet runs them);
    without, every one on the machine (a cluster's raylets are not the test's children)."""
    pids = [int(p.name) for p in Path("/proc").glob("[0-9]*")] if root is None \
        else _descendants(root)
    found = {}
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, UnicodeDecodeError):
            continue
        if title.startswith("ray::SamplerWorker") and state != "Z":
            found[pid] = title
    return found


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
