"""Helpers shared by the test modules (tests/ is on sys.path under pytest's default import)."""

import warnings
from collections.abc import Sequence

from gymnasium.utils.env_checker import check_env

UNBOUNDED_BOX_WARNINGS = ("observation space minimum value is -infinity",
                          "observation space maximum value is infinity")


def unexpected_check_env_warnings(env, allowed: Sequence[str] = UNBOUNDED_BOX_WARNINGS
                                  ) -> list[str]:
    """Run gymnasium's ``check_env`` and return the warnings not matching ``allowed``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    return [str(w.message) for w in caught
            if not any(text in str(w.message) for text in allowed)]
