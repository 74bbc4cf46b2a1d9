"""metarl: meta-reinforcement learning on today's stack.

``metarl.load(run_dir)`` returns a trained run (agent, env, config); the command line is
``metarl`` (see ``metarl --help``).
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir, checkpoint=None, overrides=None):
    """A trained run: ``.agent``, ``.env``, ``.config``, ``.iteration`` (see metarl.runs)."""
    from metarl.runs import load as _load

    return _load(run_dir, checkpoint, overrides)
