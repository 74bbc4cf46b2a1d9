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


def local_and_ray_rollouts(env, policy, tasks, workers: int = 2, **sample_kwargs):
    """The same ``sample`` call on a LocalSampler and on a RaySampler (closed after)."""
    from metarl.sampling import LocalSampler
    from metarl.sampling.ray_sampler import RaySampler

    local = LocalSampler(env).sample(policy, tasks, **sample_kwargs)
    remote_sampler = RaySampler(env, workers=workers)
    try:
        return local, remote_sampler.sample(policy, tasks, **sample_kwargs)
    finally:
        remote_sampler.close()


def load_experiment(name: str):
    """The script ``experiments/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
