"""Fault and bad-input cases run as a user would: the ``metarl`` command in a subprocess, real
signals, real paths. Fast cases run in the default suite; those over ~10 s are marked
``reliability_slow`` and run by ``.ci/run`` (``python -m pytest -q -m reliability_slow``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: tiny RL² settings: an iteration takes well under a second
TINY_RL2 = ["--set", "tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=2",
            "hidden_size=8", "threads=1"]


def metarl(*args: str, timeout: float = 300, env: dict | None = None,
           cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """``metarl ARGS`` in a fresh process: its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "metarl.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})})


@pytest.fixture
def run_metarl():
    return metarl
