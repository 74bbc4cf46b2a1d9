"""Helpers shared by the test modules (tests/ is on sys.path under pytest's default import)."""

import warnings
from collections.abc import Sequence

import torch
from gymnasium.utils.env_checker import check_env
from torch.utils._python_dispatch import TorchDispatchMode

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


class MetaDeviceValues(TorchDispatchMode):
    """Runs code written for an accelerator on PyTorch's ``meta`` device, where tensors have
    shapes, dtypes and a device but no values (there is no GPU here). Every op still checks
    its tensors' devices as on CUDA: a CPU tensor (other than a 0-d scalar) meeting a meta
    one raises. So that the code gets through its data-dependent steps, reading a value
    (``float``, ``bool``, ``.item()``) gives 1 (False for booleans: "no task left to
    refit", "CG has not converged") and a copy to the CPU gives ones (the numpy acting
    snapshot). ``ops`` counts the ops that ran on meta tensors."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.is_meta:
            self.ops += 1
            if func is torch.ops.aten._local_scalar_dense.default:
                return False if first.dtype == torch.bool else 1
            if (func is torch.ops.aten._to_copy.default and kwargs.get("device") is not None
                    and torch.device(kwargs["device"]).type == "cpu"):
                return torch.ones(first.shape, dtype=kwargs.get("dtype") or first.dtype)
        return func(*args, **kwargs)


def on_meta(tensors) -> bool:
    return all(t.is_meta for t in tensors)
