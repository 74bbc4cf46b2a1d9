"""The reward math of the MuJoCo task distributions, on arrays whose leading dimensions index
environments (none for a single env): the single envs (:mod:`metarl.envs.mujoco_tasks`) and
the batched one (:mod:`metarl.envs.mujoco_vector`) compute their rewards with these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

#: a task's parameters as arrays (``[B, ...]`` when stacked over environments)
Params = dict[str, np.ndarray]


class StepState(NamedTuple):
    """What the rewards are computed from after a step; every array has the environments'
    leading dimensions (none for a single env)."""

    qpos: np.ndarray  # [..., nq]
    qvel: np.ndarray  # [..., nv]
    x_velocity: np.ndarray  # [...]
    xy_velocity: np.ndarray | None = None  # [..., 2], ant: of the main body
    cfrc_ext: np.ndarray | None = None  # [..., nbody, 6], ant


def ctrl_cost(action: np.ndarray, low: np.ndarray, high: np.ndarray,
              weight: float) -> np.ndarray:
    """``c ||a||^2`` of the commanded action clipped to ``[low, high]`` (in float64)."""
    a = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), low), high)
    return weight * np.square(a).sum(-1)


def contact_cost(cfrc_ext: np.ndarray, force_range: Sequence[float],
                 weight: float) -> np.ndarray:
    """Gymnasium's ant contact cost: ``c`` times the squared clipped external forces."""
    return weight * np.square(np.clip(cfrc_ext, *force_range)).sum((-2, -1))


def healthy_reward(qpos: np.ndarray, qvel: np.ndarray, z_range: Sequence[float],
                   reward: float) -> np.ndarray:
    """Gymnasium's ant healthy bonus: ``reward`` if the state is finite and the torso height
    ``qpos[2]`` lies in ``z_range``."""
    z = qpos[..., 2]
    healthy = (np.isfinite(qpos).all(-1) & np.isfinite(qvel).all(-1)
               & (z_range[0] <= z) & (z <= z_range[1]))
    return reward * healthy


def actuator_controls(params: Params, action: np.ndarray) -> np.ndarray:
    """The controls sent to the actuators: the action, with a task's disabled actuators
    (``params["action_mask"]``, if any) zeroed."""
    mask = params.get("action_mask")
    return action if mask is None else np.asarray(action) * mask
