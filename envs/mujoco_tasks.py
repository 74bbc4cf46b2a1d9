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

Model-based use (GrBAL/ReBAL): ``model_based=True`` keeps the root position in the observation
(cheetah 18-d, ``qpos`` then ``qvel``; ant 29-d, ``qpos`` then ``qvel``, no contact forces), and
``env.reward(obs, action, next_obs, tasks=None)`` is then the reward as a known, batched
function of transitions (torch or numpy; equal to ``step``'s up to float rounding). Where the
ant's observation keeps the root position its ``v`` is the displacement of ``qpos[0:2]``
(gymnasium's torso ``xpos`` lags it by one physics substep; see :class:`_AntTaskEnv`).
``cheetah-crippled`` and ``ant-broken-leg`` take ``cripple_at`` (the group breaks at that
step of each episode) and held-out groups for the ``test`` split (``test_joints``,
``test_legs``).

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
    Array,
    Params,
    StepState,
    actuator_controls,
    as_array_like,
    contact_cost,
    ctrl_cost,
    healthy_reward,
)
from metarl.envs_api import MetaEnv, VectorMetaEnv, split_rng
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
    ``backend`` (``"batched"`` or ``"gym"``) and ``nthread`` choose what :meth:`vector` builds;
    ``model_based=True`` sets the observation up for :meth:`reward` (``_model_based_obs``).
    """

    max_episode_steps = 200
    #: gymnasium constructor arguments the user may override / may not override
    _gym_defaults: ClassVar[dict[str, Any]] = {}
    _gym_fixed: ClassVar[dict[str, Any]] = {}
    #: gymnasium constructor arguments that ``model_based=True`` sets
    _model_based_obs: ClassVar[dict[str, Any]] = {
        "exclude_current_positions_from_observation": False}

    def __init__(self, horizon: int, render_mode: str | None, options: dict[str, Any], *,
                 model_based: bool = False, backend: str = "batched", nthread: int = 1,
                 **gym_kwargs: Any):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if clash := sorted(set(gym_kwargs) & set(self._gym_fixed)):
            raise TypeError(f"{type(self).__name__} fixes {', '.join(clash)}; do not pass it")
        self.model_based = bool(model_based)
        if self.model_based:
            for key, value in self._model_based_obs.items():
                if key in gym_kwargs and gym_kwargs[key] != value:
                    raise ValueError(f"{key}={gym_kwargs[key]!r} conflicts with model_based=True"
                                     f", which sets {key}={value}")
        self.backend, self.nthread = _check_backend(backend), _check_nthread(nthread)
        flags = {key: value for key, value, default in
                 (("model_based", self.model_based, False), ("backend", backend, "batched"),
                  ("nthread", nthread, 1)) if value != default}
        self._init_kwargs = {"horizon": horizon, **options, **flags, **gym_kwargs}
        self.max_episode_steps, self._elapsed = horizon, 0
        if render_mode is not None:
            _default_gl_backend(render_mode)
        observation = self._model_based_obs if self.model_based else {}
        super().__init__(render_mode=render_mode, **{"default_camera_config": TRACKING_CAMERA,
                                                     **self._gym_defaults, **gym_kwargs,
                                                     **observation, **self._gym_fixed})
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
    def task_reward(params: Params, state: StepState) -> Array:
        """The task's reward term after a step (batched like ``params`` and ``state``; numpy
        arrays or torch tensors)."""

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task(self.name, p, id=i) for i, p in enumerate(self._sample_params(n, rng))]

    def set_task(self, task: Task) -> None:
        self._params = self._task_params(task)
        self._task = task

    def stacked_params(self, tasks: Sequence[Task]) -> Params:
        """The tasks' parameters stacked along a first dimension (``[len(tasks), ...]``)."""
        params = [self._task_params(task) for task in tasks]
        return {key: np.stack([p[key] for p in params]) for key in params[0]}

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
        super().do_simulation(self._controls(self._params, ctrl, self._elapsed), n_frames)

    def _controls(self, params: Params, action: np.ndarray, elapsed: np.ndarray | int
                  ) -> np.ndarray:
        """The actuators' controls at step ``elapsed`` of the episode (batched like
        ``params``, ``action`` and ``elapsed``); shared by the single and the vector env."""
        return actuator_controls(params, action)

    def _get_rew(self, x_velocity: float, action) -> tuple[float, dict[str, float]]:
        terms = self.reward_terms(self._params, self._step_state(x_velocity), action)
        terms = {key: float(value) for key, value in terms.items()}
        return sum(terms.values()), terms

    def _step_state(self, x_velocity: float) -> StepState:
        return StepState(self.data.qpos, self.data.qvel, np.float64(x_velocity))

    def reward_terms(self, params: Params, state: StepState,
                     action: Array) -> dict[str, Array]:
        """The reward's terms (their sum is the reward), batched over environments like
        ``params``, ``state`` and ``action``; shared by the single and the vector env and
        :meth:`reward`."""
        cost = ctrl_cost(action, self.action_space.low, self.action_space.high,
                         self._ctrl_cost_weight)
        return {"reward_task": self.task_reward(params, state), "reward_ctrl": -cost,
                **self._extra_terms(state)}

    def _extra_terms(self, state: StepState) -> dict[str, Array]:
        return {}

    # -------------------------------------------------------- model-based use
    @property
    def _root_observed(self) -> bool:
        """Whether the observation keeps the root's position (``model_based``, ant-goal)."""
        return not self.observation_structure["skipped_qpos"]

    def reward(self, obs: Array, action: Array, next_obs: Array,
               tasks: Sequence[Task] | None = None) -> Array:
        """The reward of transitions ``obs -> next_obs`` under the commanded ``action``, from
        the observations alone: :meth:`step`'s reward, up to float rounding.

        ``obs``, ``next_obs`` ``[..., obs_dim]`` and ``action`` ``[..., act_dim]`` are torch
        tensors (differentiable) or numpy arrays; returns the same kind, ``[...]``, in
        ``obs``'s dtype. ``tasks`` gives each index of the first dimension its task (e.g.
        ``obs [B, C, obs_dim]``: ``B`` tasks x ``C`` candidates); default the current task for
        all. Needs the root position in the observation (``model_based=True``; ant-goal
        keeps it anyway), and for a contact cost the contact forces too."""
        next_obs, action = as_array_like(next_obs, obs), as_array_like(action, obs)
        if next_obs.shape != obs.shape or action.shape[:-1] != obs.shape[:-1]:
            raise ValueError(f"obs {tuple(obs.shape)}, action {tuple(action.shape)} and "
                             f"next_obs {tuple(next_obs.shape)} must share leading dimensions")
        if tasks is None:
            params = self._params
        elif obs.ndim < 2 or len(tasks) != obs.shape[0]:
            raise ValueError(f"{len(tasks)} tasks for observations of shape "
                             f"{tuple(obs.shape)}: one task per index of the first dimension")
        else:
            extra = (1,) * (obs.ndim - 2)  # broadcast over the other leading dimensions
            params = {key: value.reshape(len(tasks), *extra, *value.shape[1:])
                      for key, value in self.stacked_params(tasks).items()}
        params = {key: as_array_like(value, obs) for key, value in params.items()}
        terms = self.reward_terms(params, self._transition_state(obs, next_obs), action)
        return as_array_like(sum(terms.values()), obs)

    def _transition_state(self, obs: Array, next_obs: Array) -> StepState:
        """The :class:`StepState` after ``obs -> next_obs``, read off the observations
        (``qpos``, ``qvel``, ...): ``v_x`` is the displacement of ``qpos[0]`` over ``dt``."""
        if not self._root_observed:
            raise ValueError("reward(obs, ...) needs the root position in the observation; "
                             "build the env with model_based=True")
        if obs.shape[-1:] != self.observation_space.shape:
            raise ValueError(f"{self.name}: observations of shape {tuple(obs.shape)}, expected "
                             f"[..., {self.observation_space.shape[0]}]")
        nq, nv = self.model.nq, self.model.nv
        return StepState(next_obs[..., :nq], next_obs[..., nq:nq + nv],
                         (next_obs[..., 0] - obs[..., 0]) / self.dt)

    # ----------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "task": self.task.to_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.set_task(Task.from_dict(state["task"]))


class _CheetahTaskEnv(MujocoTaskEnv, HalfCheetahEnv):
    """HalfCheetah-v5 base: 17-d observation (``qpos[1:]``, ``qvel``; with ``model_based``
    18-d, ``qpos[0]`` first), 6 actuators."""


class _AntTaskEnv(MujocoTaskEnv, AntEnv):
    """Ant-v5 base: never terminates; 105-d observation (``qpos[2:]``, ``qvel`` and the 78
    clipped contact forces; with ``model_based`` 29-d: ``qpos``, ``qvel``). Gymnasium's
    contact cost and healthy bonus are off unless ``contact_cost_weight`` / ``healthy_reward``
    are passed.

    Gymnasium's velocity is the displacement of the torso body's ``xpos``, which ``mj_step``
    leaves one physics substep behind ``qpos``; where the observation keeps the root position
    (``model_based``, ant-goal) the env recomputes ``xpos`` after each step
    (``mj_kinematics``, no effect on the physics), so that the velocity is the displacement of
    the observed ``qpos[0:2]`` (the two differ by up to ~5% of a step's velocity)."""

    _gym_defaults: ClassVar[dict[str, Any]] = {"contact_cost_weight": 0.0, "healthy_reward": 0.0}
    _gym_fixed: ClassVar[dict[str, Any]] = {"terminate_when_unhealthy": False}
    _model_based_obs: ClassVar[dict[str, Any]] = {
        **MujocoTaskEnv._model_based_obs, "include_cfrc_ext_in_observation": False}

    def do_simulation(self, ctrl, n_frames: int) -> None:
        self._xy_before = self.data.body(self._main_body).xpos[:2].copy()
        super().do_simulation(ctrl, n_frames)
        if self._root_observed:
            mujoco.mj_kinematics(self.model, self.data)

    def _step_state(self, x_velocity: float) -> StepState:
        """Adds ``(v_x, v_y)`` of the last step, computed exactly as gymnasium's ``step`` does,
        and the external forces."""
        xy_velocity = (self.data.body(self._main_body).xpos[:2] - self._xy_before) / self.dt
        return StepState(self.data.qpos, self.data.qvel, np.float64(x_velocity), xy_velocity,
                         self.data.cfrc_ext)

    def _transition_state(self, obs: Array, next_obs: Array) -> StepState:
        """Adds the displacement of ``qpos[0:2]`` over ``dt`` and the observed contact forces
        (``None`` when the observation leaves them out)."""
        state = super()._transition_state(obs, next_obs)
        if self.model.body(self._main_body).id != self.model.jnt_bodyid[0]:
            raise ValueError(f"reward(obs, ...) measures the root's velocity; main_body "
                             f"{self._main_body!r} is another body")
        forces = None
        if self._include_cfrc_ext_in_observation:
            start = self.model.nq + self.model.nv
            forces = next_obs[..., start:].reshape(*next_obs.shape[:-1], -1, 6)
        return state._replace(xy_velocity=(next_obs[..., :2] - obs[..., :2]) / self.dt,
                              cfrc_ext=forces)

    def _extra_terms(self, state: StepState) -> dict[str, Array]:
        """The contact cost (left out when there are no forces and its weight is 0) and the
        healthy bonus."""
        terms = {}
        if state.cfrc_ext is not None:
            terms["reward_contact"] = -contact_cost(state.cfrc_ext, self._contact_force_range,
                                                    self._contact_cost_weight)
        elif self._contact_cost_weight:
            raise ValueError(f"{self.name}: the contact cost (contact_cost_weight="
                             f"{self._contact_cost_weight}) needs the contact forces, which "
                             f"the observation leaves out (model_based=True)")
        terms["reward_survive"] = healthy_reward(state.qpos, state.qvel, self._healthy_z_range,
                                                 self._healthy_reward)
        return terms


class _DisabledActuators:
    """Mixin for tasks that disable one group of actuators (a joint, a leg): the group's
    action entries are zeroed before the physics (``action_mask``, see
    :func:`actuator_controls`), so those actuators produce no force; the control cost stays
    on the commanded action. Subclasses set ``_groups`` (actuator indices per choice) and
    ``_choice`` (the task param naming the group) and pass their keywords through
    :meth:`_group_options`: the groups tasks are drawn from (``train``/``val`` splits and
    ``sample_tasks``), the held-out ones ``split_tasks("test", ...)`` draws from (default the
    same), and ``cripple_at``, the step of each episode from which the group is disabled (0:
    from the start; before it the robot is intact). The single env renders the group's geoms
    red."""

    _groups: ClassVar[tuple[tuple[int, ...], ...]]
    _choice: ClassVar[str]

    def _group_options(self, allowed: Sequence[int] | None, test_allowed: Sequence[int] | None,
                       cripple_at: int) -> dict[str, Any]:
        """Check and keep the keywords; returns them for ``init_kwargs``."""
        self._allowed = self._check_allowed(f"{self._choice}s", allowed)
        self._test_allowed = (self._allowed if test_allowed is None else
                              self._check_allowed(f"test_{self._choice}s", test_allowed))
        integer = isinstance(cripple_at, int | np.integer) and not isinstance(cripple_at, bool)
        if not integer or cripple_at < 0:
            raise ValueError(f"cripple_at must be an integer >= 0, got {cripple_at!r}")
        self.cripple_at = int(cripple_at)
        return {f"{self._choice}s": allowed, f"test_{self._choice}s": test_allowed,
                "cripple_at": self.cripple_at}

    def _check_allowed(self, keyword: str, allowed: Sequence[int] | None) -> tuple[int, ...]:
        allowed = tuple(range(len(self._groups))) if allowed is None else tuple(allowed)
        if not allowed or not set(allowed) <= set(range(len(self._groups))):
            raise ValueError(f"{keyword} must be a non-empty subset of "
                             f"0..{len(self._groups) - 1}, got {allowed}")
        return allowed

    def _sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{self._choice: int(i)} for i in rng.choice(self._allowed, size=n)]

    def split_tasks(self, split: str, n: int, seed: int = 0) -> list[Task]:
        """As :meth:`MetaEnv.split_tasks`; ``test`` draws from the held-out groups."""
        if split != "test":
            return super().split_tasks(split, n, seed)
        groups = split_rng(split, seed).choice(self._test_allowed, size=n)
        return [Task(self.name, {self._choice: int(g)}, id=i) for i, g in enumerate(groups)]

    def _group(self, task: Task) -> int:
        """The validated index of the group ``task`` disables."""
        index = float(self._param(task, self._choice))
        if not index.is_integer() or not 0 <= index < len(self._groups):
            raise ValueError(f"{self.name}: {self._choice} must be in 0..{len(self._groups) - 1}"
                             f", got {task.params[self._choice]!r}")
        return int(index)

    def _task_params(self, task: Task) -> Params:
        mask = np.ones(self.action_space.shape)
        mask[list(self._groups[self._group(task)])] = 0.0
        return {"action_mask": mask}

    def set_task(self, task: Task) -> None:
        """Also colours the disabled group's geoms red (the others as built)."""
        super().set_task(task)
        if not hasattr(self, "_intact_rgba"):
            self._intact_rgba = self.model.geom_rgba.copy()
        rgba = self._intact_rgba.copy()
        rgba[self.group_geoms(self._group(task)), :3] = (1.0, 0.0, 0.0)
        self.model.geom_rgba[:] = rgba

    def group_geoms(self, group: int) -> np.ndarray:
        """The geoms of the bodies the group's actuated joints move."""
        joints = self.model.actuator_trnid[list(self._groups[group]), 0]
        return np.flatnonzero(np.isin(self.model.geom_bodyid, self.model.jnt_bodyid[joints]))

    def _controls(self, params: Params, action: np.ndarray, elapsed: np.ndarray | int
                  ) -> np.ndarray:
        """The action, with the group zeroed from step ``cripple_at`` of the episode."""
        controls = actuator_controls(params, action)
        if not self.cripple_at:
            return controls
        return np.where(np.asarray(elapsed >= self.cripple_at)[..., None], controls, action)

    @staticmethod
    def task_reward(params: Params, state: StepState) -> Array:
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
    def task_reward(params: Params, state: StepState) -> Array:
        return -abs(state.x_velocity - params["velocity"])


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
    def task_reward(params: Params, state: StepState) -> Array:
        return params["direction"] * state.x_velocity


class CheetahCrippledEnv(_DisabledActuators, _CheetahTaskEnv):
    """HalfCheetah with one joint crippled per task (GrBAL): action ``a_j`` is zeroed before
    the physics (from step ``cripple_at`` of each episode, default 0), ``j`` uniform over
    ``joints`` (default all six: bthigh, bshin, bfoot, fthigh, fshin, ffoot), the ``test``
    split over ``test_joints`` (default ``joints``). GrBAL's code trains on 1..5
    (``np.random.randint(1, 6)``), leaving joint 0 for testing: ``joints=(1, 2, 3, 4, 5),
    test_joints=(0,)``.

    Reward ``v_x - c ||a||^2``, ``c = 0.05``, the cost on the commanded action (GrBAL charges
    the masked one) so that the reward function is the same for every task."""

    name = "cheetah-crippled"
    _groups = tuple((j,) for j in range(6))
    _choice = "joint"

    def __init__(self, horizon: int = 200, joints: Sequence[int] | None = None,
                 test_joints: Sequence[int] | None = None, cripple_at: int = 0,
                 ctrl_cost_weight: float = 0.05, render_mode: str | None = None, **kwargs: Any):
        options = self._group_options(joints, test_joints, cripple_at)
        super().__init__(horizon, render_mode, options, ctrl_cost_weight=ctrl_cost_weight,
                         **kwargs)


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
    def task_reward(params: Params, state: StepState) -> Array:
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
    def task_reward(params: Params, state: StepState) -> Array:
        return -abs(state.qpos[..., :2] - params["goal"]).sum(-1)


class AntBrokenLegEnv(_DisabledActuators, _AntTaskEnv):
    """Ant with one broken leg per task (GrBAL's crippled ant): the leg's hip and ankle
    actuators (actions ``2l`` and ``2l + 1``) produce no torque (from step ``cripple_at`` of
    each episode, default 0). Leg ``l`` is uniform over ``legs`` (default all four), the
    ``test`` split over ``test_legs`` (default ``legs``). Legs by gymnasium's actuator order
    and joint names: 0 = hip_4/ankle_4, 1 = hip_1/ankle_1, 2 = hip_2/ankle_2, 3 =
    hip_3/ankle_3. GrBAL's code trains on its legs 0, 1, 2 and tests on its leg 3, which
    disables actions 0 and 1: ``legs=(1, 2, 3), test_legs=(0,)`` here. Unlike GrBAL the leg's
    geometry is unchanged (GrBAL also halves its geoms).

    Reward ``v_x - c ||a||^2``, ``c = 0.005`` (GrBAL uses ``v_x + 0.05`` without a control
    cost; MAML's ant uses this ``c``), the cost on the commanded action."""

    name = "ant-broken-leg"
    _groups = ((0, 1), (2, 3), (4, 5), (6, 7))
    _choice = "leg"

    def __init__(self, horizon: int = 200, legs: Sequence[int] | None = None,
                 test_legs: Sequence[int] | None = None, cripple_at: int = 0,
                 ctrl_cost_weight: float = 0.005, render_mode: str | None = None, **kwargs: Any):
        options = self._group_options(legs, test_legs, cripple_at)
        super().__init__(horizon, render_mode, options, ctrl_cost_weight=ctrl_cost_weight,
                         **kwargs)


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    return backend


def _check_nthread(nthread: int) -> int:
    if isinstance(nthread, bool) or not isinstance(nthread, int) or nthread < 1:
        raise ValueError(f"nthread must be an integer >= 1, got {nthread!r}")
    return nthread
