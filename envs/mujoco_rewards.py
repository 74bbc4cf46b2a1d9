"""The reward math of the MuJoCo task distributions, on arrays whose leading dimensions index
environments (none for a single env): the single envs (:mod:`metarl.envs.mujoco_tasks`) and
the batched one (:mod:`metarl.envs.mujoco_vector`) compute their rewards with these, and so
does ``MujocoTaskEnv.reward`` on observed transitions. Every function takes numpy arrays or
torch tensors (:func:`array_namespace`) and returns the same kind."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

#: a numpy array or a torch tensor
Array: TypeAlias = "np.ndarray | torch.Tensor"
#: a task's parameters as arrays (``[B, ...]`` when stacked over environments)
Params = dict[str, Array]


class StepState(NamedTuple):
    """What the rewards are computed from after a step; every array has the environments'
    leading dimensions (none for a single env)."""

    qpos: Array  # [..., nq]
    qvel: Array  # [..., nv]
    x_velocity: Array  # [...]
    xy_velocity: Array | None = None  # [..., 2], ant: of the main body
    cfrc_ext: Array | None = None  # [..., nbody, 6], ant (without the world body: from obs)


def array_namespace(x: Any) -> ModuleType:
    """``torch`` for a torch tensor, else ``numpy`` (torch is never imported here)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else np


def as_array_like(value: Any, like: Array) -> Array:
    """``value`` as an array of ``like``'s kind and dtype (and device, for a tensor)."""
    xp = array_namespace(like)
    if xp is np:
        return np.asarray(value, dtype=like.dtype)
    return xp.as_tensor(value, dtype=like.dtype, device=like.device)


def ctrl_cost(action: Array, low: np.ndarray, high: np.ndarray, weight: float) -> Array:
    """``c ||a||^2`` of the commanded action clipped to ``[low, high]`` (numpy: in float64;
    torch: in the tensor's dtype)."""
    xp = array_namespace(action)
    if xp is np:  # the ufuncs np.clip and .sum call, without their Python wrappers (~4 µs a
        # step in the sampler); float32 bounds are upcast exactly
        a = np.asarray(action, dtype=np.float64).clip(low, high)
        return weight * np.add.reduce(np.square(a), -1)
    a = xp.clip(action, as_array_like(low, action), as_array_like(high, action))
    return weight * xp.square(a).sum(-1)


def contact_cost(cfrc_ext: Array, force_range: Sequence[float], weight: float) -> Array:
    """Gymnasium's ant contact cost: ``c`` times the squared clipped external forces (the
    world body's, always zero, may be left out)."""
    xp = array_namespace(cfrc_ext)
    return weight * xp.square(xp.clip(cfrc_ext, *force_range)).sum((-2, -1))


def healthy_reward(qpos: Array, qvel: Array, z_range: Sequence[float], reward: float) -> Array:
    """Gymnasium's ant healthy bonus: ``reward`` if the state is finite and the torso height
    ``qpos[2]`` lies in ``z_range``."""
    xp = array_namespace(qpos)
    z = qpos[..., 2]
    healthy = (xp.isfinite(qpos).all(-1) & xp.isfinite(qvel).all(-1)
               & (z_range[0] <= z) & (z <= z_range[1]))
    return xp.where(healthy, reward, xp.zeros_like(z))


def actuator_controls(params: Params, action: np.ndarray) -> np.ndarray:
    """The controls sent to the actuators: the action, with a task's disabled actuators
    (``params["action_mask"]``, if any) zeroed."""
    mask = params.get("action_mask")
    return action if mask is None else np.asarray(action) * mask
