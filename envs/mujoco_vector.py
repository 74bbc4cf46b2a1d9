"""Natively batched MuJoCo task distributions: one ``MjModel``, ``B`` ``MjData``.

:class:`VectorMujocoTaskEnv` steps ``B`` environments of one distribution of
:mod:`metarl.envs.mujoco_tasks` (each on its own task) and computes observations, rewards and
infos in numpy over all of them at once, with the reward functions the single envs use. The
physics is a tight loop of ``mj_step(model, data, nstep=frame_skip)`` over the ``MjData``, the
calls gymnasium makes, so transitions equal the single envs' up to float rounding (bit for bit
for the cheetah). ``mujoco.rollout`` was measured too: single-threaded at most ~6% faster on
the cheetah, but it restarts the solver's warm start at every call and returns neither the
ant's ``xpos`` (which lags ``qpos`` by one substep after ``mj_step``) nor its ``cfrc_ext``.
With ``nthread > 1`` the loop is split over a thread pool (MuJoCo releases the GIL while
stepping); keep ``nthread=1`` where processes already use every core, e.g. in Ray workers.

Actuators a task disables from a step of the episode on (``cripple_at``) follow each
environment's own step count, as in the single envs (``MujocoTaskEnv._controls``); where the
ant's observation keeps the root position, ``mj_kinematics`` after each step keeps ``xpos`` in
step with ``qpos``, as the single ant does.

Reset noise follows gymnasium's v5 ``reset_model`` for both robots (``qpos`` uniform in
``+-reset_noise_scale``, ``qvel`` normal with that scale) and is drawn from the
:class:`~metarl.random.BatchRNG` passed to :meth:`~VectorMujocoTaskEnv.reset`, so an
environment's episodes depend only on its own key.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from metarl.envs._render import gl_free_import
from metarl.envs.mujoco_rewards import Params, StepState
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.random import BatchRNG, as_batch_rng
from metarl.types import Task

with gl_free_import():  # importing MuJoCo must not load OpenGL (see envs/_render.py)
    import mujoco
    from gymnasium.envs.mujoco.ant_v5 import AntEnv


class VectorMujocoTaskEnv(VectorMetaEnv):
    """``num_envs`` copies of the MuJoCo task distribution ``env`` (a
    :class:`~metarl.envs.mujoco_tasks.MujocoTaskEnv`), stepped in one call."""

    def __init__(self, env: MetaEnv, num_envs: int, nthread: int = 1):
        if num_envs < 1 or nthread < 1:
            raise ValueError(f"num_envs and nthread must be >= 1, got {num_envs}, {nthread}")
        self.env = proto = env._clone()  # configuration, spaces, model and reward functions
        self.num_envs, self.nthread = num_envs, nthread
        self.single_observation_space = proto.observation_space
        self.single_action_space = proto.action_space
        self.max_episode_steps = proto.max_episode_steps
        self._dt = proto.dt  # a property reading model.opt: ~4 µs a step in the sampler
        self.model = proto.model
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self._ant = isinstance(proto, AntEnv)  # velocity of a body, external forces
        self._kinematics = self._ant and proto._root_observed  # xpos in step with qpos
        self._body = self.model.body(proto._main_body).id if self._ant else 0
        # qpos and qvel side by side: the observation is one slice of it, copied (~3 µs a
        # step less than a concatenate)
        nq = self.model.nq
        self._state = np.zeros((num_envs, nq + self.model.nv))
        self._qpos, self._qvel = self._state[:, :nq], self._state[:, nq:]
        self._skipped = proto.observation_structure["skipped_qpos"]
        self._xy = np.zeros((num_envs, 2))  # the ant's main body position, as MjData has it
        self._cfrc = np.zeros((num_envs, self.model.nbody, 6))
        # steps since the reset (all environments reset together); an int, not an array:
        # ~3 µs a step less
        self._elapsed = 0
        self._rng: BatchRNG | None = None
        # per environment: its MjData and views of the fields read and written every step
        self._io = [(data, data.ctrl, data.qpos, data.qvel, data.xpos[self._body, :2],
                     data.cfrc_ext) for data in self.datas]
        self._chunks = [c.tolist() for c in np.array_split(np.arange(num_envs), nthread)
                        if len(c)]
        self._pool = (ThreadPoolExecutor(len(self._chunks) - 1, "mujoco-vector")
                      if len(self._chunks) > 1 else None)
        self.set_tasks([proto.task] * num_envs)

    @property
    def init_kwargs(self) -> dict:
        """The single env's constructor arguments."""
        return self.env.init_kwargs

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        self._params: Params = self.env.stacked_params(tasks)
        self.tasks = tuple(tasks)

    # ----------------------------------------------------------------------- episodes
    def reset(self, seed: int | BatchRNG | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None or self._rng is None:
            self._rng = as_batch_rng(seed, self.num_envs)
        env, scale = self.env, self.env._reset_noise_scale
        qpos = env.init_qpos + self._rng.uniform(-scale, scale, size=self._qpos.shape)
        qvel = env.init_qvel + scale * self._rng.standard_normal(self._qvel.shape)
        for i, data in enumerate(self.datas):  # gymnasium's reset and set_state
            mujoco.mj_resetData(self.model, data)
            data.qpos[:], data.qvel[:] = qpos[i], qvel[i]
            mujoco.mj_forward(self.model, data)
            self._read(i)
        self._elapsed = 0
        return self._observation(), self._position_infos()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, np.ndarray]]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, *self.single_action_space.shape):
            raise ValueError(f"actions of shape {actions.shape}, expected "
                             f"{(self.num_envs, *self.single_action_space.shape)}")
        before = self._xy.copy() if self._ant else self._qpos[:, 0].copy()
        self._simulate(self.env._controls(self._params, actions.astype(np.float64),
                                          self._elapsed))
        state = self._step_state(before)
        terms = self.env.reward_terms(self._params, state, actions)
        self._elapsed += 1
        infos = {**self._position_infos(), "x_velocity": state.x_velocity, **terms}
        if self._ant:
            infos["y_velocity"] = state.xy_velocity[:, 1]
        n = self.num_envs
        truncated = (np.ones(n, dtype=bool) if self._elapsed >= self.max_episode_steps
                     else np.zeros(n, dtype=bool))
        return self._observation(), sum(terms.values()), np.zeros(n, dtype=bool), truncated, infos

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # ------------------------------------------------------------------------ physics
    def _simulate(self, ctrl: np.ndarray) -> None:
        """``frame_skip`` physics steps of every environment, on ``nthread`` threads."""
        if self._pool is None:
            self._step_range(self._chunks[0], ctrl)
            return
        futures = [self._pool.submit(self._step_range, chunk, ctrl)
                   for chunk in self._chunks[1:]]
        self._step_range(self._chunks[0], ctrl)
        for future in futures:
            future.result()

    def _step_range(self, index: list[int], ctrl: np.ndarray) -> None:
        model, frames, ant, kinematics = (self.model, self.env.frame_skip, self._ant,
                                          self._kinematics)
        for i in index:
            data, data_ctrl = self._io[i][:2]
            data_ctrl[:] = ctrl[i]
            mujoco.mj_step(model, data, frames)
            if ant:  # cfrc_ext, as gymnasium's _step_mujoco_simulation
                mujoco.mj_rnePostConstraint(model, data)
            if kinematics:  # as the single ant env where the observation has the root
                mujoco.mj_kinematics(model, data)
            self._read(i)

    def _read(self, i: int) -> None:
        """Copy environment ``i``'s state (and the ant's body position, forces) out."""
        _, _, qpos, qvel, xy, cfrc = self._io[i]
        self._qpos[i], self._qvel[i] = qpos, qvel
        if self._ant:
            self._xy[i], self._cfrc[i] = xy, cfrc

    # ------------------------------------------------------ observations and infos
    def _step_state(self, before: np.ndarray) -> StepState:
        """Velocities as gymnasium computes them: the displacement of ``qpos[0]`` (cheetah)
        or of the main body's ``xpos`` (ant) over ``dt``."""
        dt = self._dt
        if not self._ant:
            return StepState(self._qpos, self._qvel, (self._qpos[:, 0] - before) / dt)
        xy_velocity = (self._xy - before) / dt
        return StepState(self._qpos, self._qvel, xy_velocity[:, 0], xy_velocity, self._cfrc)

    def _observation(self) -> np.ndarray:
        """Gymnasium's ``_get_obs`` for all environments, following ``observation_structure``
        (positions minus the skipped ones, velocities, clipped external forces)."""
        env = self.env
        kept = self._state[:, self._skipped:]  # qpos minus the skipped, qvel
        if self._ant and env._include_cfrc_ext_in_observation:
            forces = np.clip(self._cfrc[:, 1:], *env._contact_force_range)
            return np.concatenate([kept, forces.reshape(self.num_envs, -1)], axis=1)
        return kept.copy()

    def _position_infos(self) -> dict[str, np.ndarray]:
        infos = {"x_position": self._qpos[:, 0].copy()}
        if self._ant:
            infos["y_position"] = self._qpos[:, 1].copy()
            infos["distance_from_origin"] = np.linalg.norm(self._qpos[:, :2], axis=1)
        return infos
