"""MuJoCo locomotion task distributions (MAML, ProMP, PEARL, GrBAL) on gymnasium's v5 envs.

Each distribution subclasses gymnasium's ``HalfCheetahEnv`` or ``AntEnv`` (the ``mujoco``
bindings) and keeps its physics, observations and reset noise; the task, the reward and the
episode length (``horizon``, default 200; ``truncated`` at it) change, and nothing ever
terminates. Notation for the rewards:

* ``a``: the action passed to ``step`` (the *commanded* action) clipped to the action space
  ``[-1, 1]``, the range the actuators accept; ``c ||a||^2`` is the control cost.
* ``v_x``, ``v = (v_x, v_y)``: the velocity gymnasium reports in ``info["x_velocity"]`` /
  ``info["y_velocity"]``, the displacement over one step (``dt = 0.05`` s) divided by ``dt``,
  of ``qpos[0]`` (cheetah) or of the torso body (ant).
* ``p = (qpos[0], qpos[1])``: the ant torso's position after the step.

====================  ==============================  ======================================
name                  task                            reward (default ``c``)
====================  ==============================  ======================================
``cheetah-vel``       ``v* ~ U[0, 3]``                ``-|v_x - v*| - 0.05 ||a||^2``
``cheetah-dir``       ``d ~ U{-1, +1}``               ``d v_x - 0.05 ||a||^2``
``cheetah-crippled``  joint ``j ~ U{0..5}``           ``v_x - 0.05 ||a||^2``, ``a_j`` zeroed
``ant-dir``           ``u = (+-1, 0)`` or angle       ``u . v - 0.005 ||a||^2``
``ant-goal``          ``g`` uniform in a disc, r = 3  ``-||p - g||_1 - 0.1 ||a||^2``
``ant-broken-leg``    leg ``l ~ U{0..3}``             ``v_x - 0.005 ||a||^2``, leg's 2 zeroed
====================  ==============================  ======================================

The ant rewards leave out gymnasium's contact cost and healthy bonus by default (no early
termination makes the bonus a near-constant offset; the contact cost is at most 0.042);
pass ``contact_cost_weight=5e-4, healthy_reward=1.0`` (and ``ctrl_cost_weight=0.5``) to add
them back as PEARL/ProMP do. ``info`` holds the terms: ``reward_task``, ``reward_ctrl`` (and
``reward_contact``, ``reward_survive`` for the ant).

``env.vector(n)`` is natively batched (:class:`~metarl.envs.mujoco_vector.VectorMujocoTaskEnv`:
one model, ``n`` ``MjData``, numpy rewards); ``backend="gym"`` (``make(name, backend="gym")`` or
``env.vector(n, backend="gym")``) gives the reference, a loop over these single envs. Both
compute the rewards with the same functions (``reward_terms``, ``task_reward``) on arrays whose
leading dimensions index environments (none for a single env).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium.utils import EzPickle

from metarl.envs._render import gl_free_import, select_gl_backend
from metarl.envs.mujoco_rewards import (
    Params,
    StepState,
    actuator_controls,
    contact_cost,
    ctrl_cost,
    healthy_reward,
)
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.types import Task

with gl_free_import():  # training never loads OpenGL, whatever MUJOCO_GL names
    import mujoco
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

#: ``vector()`` backends: natively batched, or a loop over gymnasium single envs (reference)
BACKENDS = ("batched", "gym")

#: a camera that follows the torso, so long runs stay in the picture
TRACKING_CAMERA = {"distance": 4.0, "type": mujoco.mjtCamera.mjCAMERA_TRACKING, "trackbodyid": 1}


def _log_mujoco_warning(message: str) -> None:
    """MuJoCo warnings while compiling a model, minus one known deprecation: recent MuJoCo
    (4.0 here) deprecates the ``settotalmass`` of gymnasium's half_cheetah.xml and would say
    so at every build, on stderr and in ``./MUJOCO_LOG.TXT``."""
    if "'settotalmass' is deprecated" not in message:
        logging.getLogger(__name__).warning("MuJoCo: %s", message)


def _default_gl_backend(render_mode: str) -> None:
    """Offscreen rendering needs an OpenGL backend in ``MUJOCO_GL``: the user's (checked),
    else EGL or OSMesa, whichever works (:func:`metarl.envs._render.select_gl_backend`);
    raises ``GLBackendError`` (one line: what to install) when none does. ``"human"``
    opens a GLFW window on the display instead."""
    if render_mode != "human":
        select_gl_backend()


class MujocoTaskEnv(MetaEnv):
    """Task handling and the reward override shared by the MuJoCo distributions.

    Combined with a gymnasium MuJoCo class (``class _Cheetah(MujocoTaskEnv, HalfCheetahEnv)``).
    Subclasses implement ``_sample_params``, ``_task_params`` (validate a task, return its
    parameters as arrays) and the static ``task_reward(params, state)``; the reward is
    ``reward_task - c ||clip(a)||^2 (+ _extra_terms)``, see :meth:`reward_terms`.
    Constructor keywords not named by a subclass go to the gymnasium class (e.g.
    ``reset_noise_scale``, ``width``, ``height``) and are kept in ``init_kwargs``;
    ``backend`` (``"batched"`` or ``"gym"``) and ``nthread`` choose what :meth:`vector` builds.
    """

    max_episode_steps = 200
    #: gymnasium constructor arguments the user may override / may not override
    _gym_defaults: ClassVar[dict[str, Any]] = {}
    _gym_fixed: ClassVar[dict[str, Any]] = {}

    def __init__(self, horizon: int, render_mode: str | None, options: dict[str, Any], *,
                 backend: str = "batched", nthread: int = 1, **gym_kwargs: Any):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if clash := sorted(set(gym_kwargs) & set(self._gym_fixed)):
            raise TypeError(f"{type(self).__name__} fixes {', '.join(clash)}; do not pass it")
        self.backend, self.nthread = _check_backend(backend), _check_nthread(nthread)
        vector_kwargs = {key: value for key, value, default in
                         (("backend", backend, "batched"), ("nthread", nthread, 1))
                         if value != default}
        self._init_kwargs = {"horizon": horizon, **options, **vector_kwargs, **gym_kwargs}
        self.max_episode_steps, self._elapsed = horizon, 0
        if render_mode is not None:
            _default_gl_backend(render_mode)
        super().__init__(render_mode=render_mode, **{"default_camera_config": TRACKING_CAMERA,
                                                     **self._gym_defaults, **gym_kwargs,
                                                     **self._gym_fixed})
        EzPickle.__init__(self, render_mode=render_mode, **self._init_kwargs)
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def _initialize_simulation(self):
        """gymnasium's model compilation, with MuJoCo's warnings sent to the log."""
        previous = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(_log_mujoco_warning)
        try:
            return super()._initialize_simulation()
        finally:
            mujoco.set_mju_user_warning(previous)

    # ------------------------------------------------------------------ tasks
    @abstractmethod
    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The params of ``n`` tasks."""

    @abstractmethod
    def _task_params(self, task: Task) -> Params:
        """Validate ``task``; its parameters as arrays (``action_mask`` disables actuators)."""

    @staticmethod
    @abstractmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        """The task's reward term after a step (batched like ``params`` and ``state``)."""

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task(self.name, p, id=i) for i, p in enumerate(self._sample_params(n, rng))]

    def set_task(self, task: Task) -> None:
        self._params = self._task_params(task)
        self._task = task

    def vector(self, num_envs: int, backend: str | None = None) -> VectorMetaEnv:
        """``num_envs`` copies: natively batched unless ``backend`` (default: the env's
        ``backend``) is ``"gym"``, a loop over single envs (the reference)."""
        if _check_backend(self.backend if backend is None else backend) == "gym":
            return super().vector(num_envs)
        from metarl.envs.mujoco_vector import VectorMujocoTaskEnv

        return VectorMujocoTaskEnv(self, num_envs, nthread=self.nthread)

    def _param(self, task: Task, key: str, shape: tuple[int, ...] = ()) -> np.ndarray:
        """``task.params[key]`` as a finite float array of ``shape`` (or a clear error)."""
        if key not in task.params:
            raise ValueError(f"{self.name} task needs param {key!r}, got {sorted(task.params)}")
        value = task.array(key)
        if value.shape != shape or not np.isfinite(value).all():
            raise ValueError(f"{self.name} task param {key!r} must be finite with shape "
                             f"{shape}, got {task.params[key]!r}")
        return value

    # -------------------------------------------------------- gymnasium hooks
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._elapsed = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        self._elapsed += 1
        return obs, float(reward), bool(terminated), self._elapsed >= self.max_episode_steps, info

    def do_simulation(self, ctrl, n_frames: int) -> None:
        super().do_simulation(actuator_controls(self._params, ctrl), n_frames)

    def _get_rew(self, x_velocity: float, action) -> tuple[float, dict[str, float]]:
        terms = self.reward_terms(self._params, self._step_state(x_velocity), action)
        terms = {key: float(value) for key, value in terms.items()}
        return sum(terms.values()), terms

    def _step_state(self, x_velocity: float) -> StepState:
        return StepState(self.data.qpos, self.data.qvel, np.float64(x_velocity))

    def reward_terms(self, params: Params, state: StepState,
                     action: np.ndarray) -> dict[str, np.ndarray]:
        """The reward's terms (their sum is the reward), batched over environments like
        ``params``, ``state`` and ``action``; shared by the single and the vector env."""
        cost = ctrl_cost(action, self.action_space.low, self.action_space.high,
                         self._ctrl_cost_weight)
        return {"reward_task": self.task_reward(params, state), "reward_ctrl": -cost,
                **self._extra_terms(state)}

    def _extra_terms(self, state: StepState) -> dict[str, np.ndarray]:
        return {}

    # ----------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "task": self.task.to_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.set_task(Task.from_dict(state["task"]))


class _CheetahTaskEnv(MujocoTaskEnv, HalfCheetahEnv):
    """HalfCheetah-v5 base: 17-d observation (no x position), 6 actuators."""


class _AntTaskEnv(MujocoTaskEnv, AntEnv):
    """Ant-v5 base: never terminates; 105-d observation (``qpos[2:]``, ``qvel`` and the 78
    clipped contact forces). Gymnasium's contact cost and healthy bonus are off unless
    ``contact_cost_weight`` / ``healthy_reward`` are passed."""

    _gym_defaults: ClassVar[dict[str, Any]] = {"contact_cost_weight": 0.0, "healthy_reward": 0.0}
    _gym_fixed: ClassVar[dict[str, Any]] = {"terminate_when_unhealthy": False}

    def do_simulation(self, ctrl, n_frames: int) -> None:
        self._xy_before = self.data.body(self._main_body).xpos[:2].copy()
        super().do_simulation(ctrl, n_frames)

    def _step_state(self, x_velocity: float) -> StepState:
        """Adds ``(v_x, v_y)`` of the last step, computed exactly as gymnasium's ``step`` does,
        and the external forces."""
        xy_velocity = (self.data.body(self._main_body).xpos[:2] - self._xy_before) / self.dt
        return StepState(self.data.qpos, self.data.qvel, np.float64(x_velocity), xy_velocity,
                         self.data.cfrc_ext)

    def _extra_terms(self, state: StepState) -> dict[str, np.ndarray]:
        return {"reward_contact": -contact_cost(state.cfrc_ext, self._contact_force_range,
                                                self._contact_cost_weight),
                "reward_survive": healthy_reward(state.qpos, state.qvel, self._healthy_z_range,
                                                 self._healthy_reward)}


class _DisabledActuators:
    """Mixin for tasks that disable one group of actuators (a joint, a leg): the group's
    action entries are zeroed before the physics (``action_mask``, see
    :func:`actuator_controls`), so those actuators produce no force; the control cost stays
    on the commanded action. Subclasses set ``_groups`` (actuator indices per choice) and
    ``_choice`` (the task param naming the group)."""

    _groups: ClassVar[tuple[tuple[int, ...], ...]]
    _choice: ClassVar[str]

    def _check_allowed(self, allowed: Sequence[int] | None) -> tuple[int, ...]:
        allowed = tuple(range(len(self._groups))) if allowed is None else tuple(allowed)
        if not allowed or not set(allowed) <= set(range(len(self._groups))):
            raise ValueError(f"{self._choice}s must be a non-empty subset of "
                             f"0..{len(self._groups) - 1}, got {allowed}")
        return allowed

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{self._choice: int(i)} for i in rng.choice(self._allowed, size=n)]

    def _task_params(self, task: Task) -> Params:
        index = float(self._param(task, self._choice))
        if not index.is_integer() or not 0 <= index < len(self._groups):
            raise ValueError(f"{self.name}: {self._choice} must be in 0..{len(self._groups) - 1}"
                             f", got {task.params[self._choice]!r}")
        mask = np.ones(self.action_space.shape)
        mask[list(self._groups[int(index)])] = 0.0
        return {"action_mask": mask}

    @staticmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        return state.x_velocity


# ---------------------------------------------------------------------------- cheetah
class CheetahVelEnv(_CheetahTaskEnv):
    """HalfCheetah running at a target velocity ``v* ~ U[0, max_velocity]`` (MAML, PEARL;
    ``[0, 3]`` is PEARL's range, MAML's paper uses ``[0, 2]``).

    Reward ``-|v_x - v*| - c ||a||^2``, ``c = 0.05`` (MAML's ``0.5 * 1e-1``)."""

    name = "cheetah-vel"

    def __init__(self, horizon: int = 200, max_velocity: float = 3.0,
                 ctrl_cost_weight: float = 0.05, render_mode: str | None = None, **kwargs: Any):
        self.max_velocity = float(max_velocity)
        super().__init__(horizon, render_mode, {"max_velocity": max_velocity},
                         ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"velocity": float(v)} for v in rng.uniform(0.0, self.max_velocity, size=n)]

    def _task_params(self, task: Task) -> Params:
        return {"velocity": self._param(task, "velocity")}

    @staticmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        return -np.abs(state.x_velocity - params["velocity"])


class CheetahDirEnv(_CheetahTaskEnv):
    """HalfCheetah running forwards or backwards, ``d ~ U{-1, +1}`` (MAML, ProMP, PEARL).

    Reward ``d v_x - c ||a||^2``, ``c = 0.05``."""

    name = "cheetah-dir"

    def __init__(self, horizon: int = 200, ctrl_cost_weight: float = 0.05,
                 render_mode: str | None = None, **kwargs: Any):
        super().__init__(horizon, render_mode, {}, ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"direction": float(d)} for d in rng.choice([-1.0, 1.0], size=n)]

    def _task_params(self, task: Task) -> Params:
        direction = self._param(task, "direction")
        if float(direction) not in (-1.0, 1.0):
            raise ValueError(f"cheetah-dir direction must be -1 or 1, got {float(direction)}")
        return {"direction": direction}

    @staticmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        return params["direction"] * state.x_velocity


class CheetahCrippledEnv(_DisabledActuators, _CheetahTaskEnv):
    """HalfCheetah with one joint crippled per task (GrBAL): action ``a_j`` is zeroed before
    the physics, ``j`` uniform over ``joints`` (default all six: bthigh, bshin, bfoot,
    fthigh, fshin, ffoot; GrBAL's code draws from 1..5).

    Reward ``v_x - c ||a||^2``, ``c = 0.05``, the cost on the commanded action (GrBAL charges
    the masked one) so that the reward function is the same for every task."""

    name = "cheetah-crippled"
    _groups = tuple((j,) for j in range(6))
    _choice = "joint"

    def __init__(self, horizon: int = 200, joints: Sequence[int] | None = None,
                 ctrl_cost_weight: float = 0.05, render_mode: str | None = None, **kwargs: Any):
        self._allowed = self._check_allowed(joints)
        super().__init__(horizon, render_mode, {"joints": joints},
                         ctrl_cost_weight=ctrl_cost_weight, **kwargs)


# -------------------------------------------------------------------------------- ant
class AntDirEnv(_AntTaskEnv):
    """Ant running along a direction: ``u = (+-1, 0)`` by default (MAML, ProMP, PEARL's
    forward/backward task), or ``u = (cos t, sin t)``, ``t ~ U[0, 2 pi)`` with
    ``random_angle=True`` (PEARL's ``ant-dir``, ProMP's ``AntRandDirec2D``).

    Reward ``u . v - c ||a||^2``, ``c = 0.005`` (MAML's ``0.5 * 1e-2``)."""

    name = "ant-dir"

    def __init__(self, horizon: int = 200, random_angle: bool = False,
                 ctrl_cost_weight: float = 0.005, render_mode: str | None = None, **kwargs: Any):
        self.random_angle = bool(random_angle)
        super().__init__(horizon, render_mode, {"random_angle": random_angle},
                         ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if self.random_angle:
            angle = rng.uniform(0.0, 2 * np.pi, size=n)
            units = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        else:
            units = np.stack([rng.choice([-1.0, 1.0], size=n), np.zeros(n)], axis=1)
        return [{"direction": u.tolist()} for u in units]

    def _task_params(self, task: Task) -> Params:
        direction = self._param(task, "direction", (2,))
        if abs(np.linalg.norm(direction) - 1.0) > 1e-6:
            raise ValueError(f"ant-dir direction must be a unit vector, got {direction}")
        return {"direction": direction}

    @staticmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        return (params["direction"] * state.xy_velocity).sum(-1)


class AntGoalEnv(_AntTaskEnv):
    """Ant walking to a goal uniform over a disc of radius ``goal_radius`` (3): radius
    ``3 sqrt(U)``, angle ``U[0, 2 pi)`` (ProMP / PEARL). The observation keeps the torso's
    x-y position (107-d), without which the goal cannot be located.

    Reward ``-||p - g||_1 - c ||a||^2``, ``c = 0.1`` (PEARL and ProMP; both also subtract
    the contact cost, see the module docstring)."""

    name = "ant-goal"
    _gym_fixed: ClassVar[dict[str, Any]] = {
        **_AntTaskEnv._gym_fixed, "exclude_current_positions_from_observation": False}

    def __init__(self, horizon: int = 200, goal_radius: float = 3.0,
                 ctrl_cost_weight: float = 0.1, render_mode: str | None = None, **kwargs: Any):
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
        self.goal_radius = float(goal_radius)
        super().__init__(horizon, render_mode, {"goal_radius": goal_radius},
                         ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        u = rng.random((n, 2))
        radius, angle = self.goal_radius * np.sqrt(u[:, 0]), 2 * np.pi * u[:, 1]
        goals = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        return [{"goal": g.tolist()} for g in goals]

    def _task_params(self, task: Task) -> Params:
        return {"goal": self._param(task, "goal", (2,))}

    @staticmethod
    def task_reward(params: Params, state: StepState) -> np.ndarray:
        return -np.abs(state.qpos[..., :2] - params["goal"]).sum(-1)


class AntBrokenLegEnv(_DisabledActuators, _AntTaskEnv):
    """Ant with one broken leg per task (GrBAL's crippled ant): the leg's hip and ankle
    actuators (actions ``2l`` and ``2l + 1``) produce no torque. Leg ``l`` is uniform over
    ``legs`` (default all four; GrBAL meta-trains on three and tests on the fourth). Legs by
    gymnasium's joint names: 0 = hip_4/ankle_4, 1 = hip_1/ankle_1, 2 = hip_2/ankle_2,
    3 = hip_3/ankle_3. Unlike GrBAL the leg's geometry is unchanged.

    Reward ``v_x - c ||a||^2``, ``c = 0.005`` (GrBAL uses ``v_x + 0.05`` without a control
    cost; MAML's ant uses this ``c``), the cost on the commanded action."""

    name = "ant-broken-leg"
    _groups = ((0, 1), (2, 3), (4, 5), (6, 7))
    _choice = "leg"

    def __init__(self, horizon: int = 200, legs: Sequence[int] | None = None,
                 ctrl_cost_weight: float = 0.005, render_mode: str | None = None, **kwargs: Any):
        self._allowed = self._check_allowed(legs)
        super().__init__(horizon, render_mode, {"legs": legs},
                         ctrl_cost_weight=ctrl_cost_weight, **kwargs)


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    return backend


def _check_nthread(nthread: int) -> int:
    if isinstance(nthread, bool) or not isinstance(nthread, int) or nthread < 1:
        raise ValueError(f"nthread must be an integer >= 1, got {nthread!r}")
    return nthread
