"""MuJoCo task distributions: API, reward formulas, task effects, determinism, rendering."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import unexpected_check_env_warnings

from metarl.envs import REGISTRY, make
from metarl.policy import StatelessPolicy
from metarl.sampling import LocalSampler
from metarl.types import Task

MUJOCO_ENVS = sorted(name for name, spec in REGISTRY.items() if spec.family == "mujoco")
PEARL_ANT = {"ctrl_cost_weight": 0.5, "contact_cost_weight": 5e-4, "healthy_reward": 1.0}


class RandomPolicy(StatelessPolicy):
    """Uniform actions in [-1, 1] from the sampler's per-environment streams."""

    def __init__(self, act_dim: int):
        self.act_dim = act_dim

    def act(self, obs, rng):
        return torch.as_tensor(rng.uniform(-1, 1, size=(obs.shape[0], self.act_dim))), rng, {}


def rollout(env, task: Task, actions: np.ndarray, seed: int = 0):
    env.set_task(task)
    obs = [env.reset(seed=seed)[0]]
    rewards = []
    for action in actions:
        o, r, *_ = env.step(action)
        obs.append(o)
        rewards.append(r)
    return np.array(obs), np.array(rewards)


def actions_for(env, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(steps, *env.action_space.shape))


# ------------------------------------------------------------------------------ API
def test_registered_lazily_without_importing_mujoco():
    assert MUJOCO_ENVS == ["ant-broken-leg", "ant-dir", "ant-goal", "cheetah-crippled",
                           "cheetah-dir", "cheetah-vel"]
    code = ("import sys, metarl.envs; "
            "assert 'mujoco' not in sys.modules and 'metarl.envs.mujoco_tasks' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_check_env(name):
    env = make(name)
    assert unexpected_check_env_warnings(env) == []
    assert env.max_episode_steps == type(env).max_episode_steps == 200


@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_split_tasks_reproducible(name):
    env = make(name)
    train = env.split_tasks("train", 16, seed=3)
    assert train == env.split_tasks("train", 16, seed=3)
    assert [t.id for t in train] == list(range(16)) and all(t.env == name for t in train)
    assert train != env.split_tasks("test", 16, seed=3)
    assert train != env.split_tasks("train", 16, seed=4)


@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_json_round_trip_same_behaviour(name):
    env_a, env_b = make(name), make(name)
    task = env_a.split_tasks("test", 1, seed=0)[0]
    copy = Task.from_json(task.to_json())
    assert copy == task
    actions = actions_for(env_a, 10)
    for got, want in zip(rollout(env_a, task, actions), rollout(env_b, copy, actions),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_task_distributions():
    rng = np.random.default_rng(0)
    velocities = [t.params["velocity"] for t in make("cheetah-vel").sample_tasks(500, rng)]
    assert 0 <= min(velocities) < 0.1 and 2.9 < max(velocities) <= 3
    directions = [t.params["direction"] for t in make("cheetah-dir").sample_tasks(200, rng)]
    assert set(directions) == {-1.0, 1.0} and 60 < directions.count(1.0) < 140
    units = np.array([t.params["direction"] for t in make("ant-dir").sample_tasks(50, rng)])
    assert set(map(tuple, units)) == {(-1.0, 0.0), (1.0, 0.0)}
    env = make("ant-dir", random_angle=True)
    units = np.array([t.params["direction"] for t in env.sample_tasks(500, rng)])
    np.testing.assert_allclose(np.linalg.norm(units, axis=1), 1.0)
    assert np.all(np.histogram(np.arctan2(units[:, 1], units[:, 0]), bins=4)[0] > 80)
    goals = np.array([t.params["goal"] for t in make("ant-goal").sample_tasks(2000, rng)])
    radius = np.linalg.norm(goals, axis=1)
    assert radius.max() <= 3 and radius.max() > 2.95
    # uniform over the disc's area: half of the goals lie within 3 / sqrt(2)
    assert abs(np.mean(radius <= 3 / np.sqrt(2)) - 0.5) < 0.05
    legs = [t.params["leg"] for t in make("ant-broken-leg").sample_tasks(100, rng)]
    assert set(legs) == {0, 1, 2, 3}
    legs = [t.params["leg"] for t in make("ant-broken-leg", legs=[0, 2]).sample_tasks(50, rng)]
    assert set(legs) == {0, 2}
    joints = [t.params["joint"] for t in make("cheetah-crippled").sample_tasks(100, rng)]
    assert set(joints) == set(range(6))


@pytest.mark.parametrize(("name", "params"), [
    ("cheetah-vel", {"speed": 1.0}), ("cheetah-vel", {"velocity": float("nan")}),
    ("cheetah-dir", {"direction": 0.5}), ("ant-dir", {"direction": [1.0, 1.0]}),
    ("ant-goal", {"goal": [1.0]}), ("ant-broken-leg", {"leg": 4}),
    ("cheetah-crippled", {"joint": 1.5}),
])
def test_bad_tasks_rejected(name, params):
    with pytest.raises(ValueError, match=name):
        make(name).set_task(Task(name, params))


def test_bad_arguments_rejected():
    with pytest.raises(TypeError, match="terminate_when_unhealthy"):
        make("ant-dir", terminate_when_unhealthy=True)
    with pytest.raises(ValueError, match="legs"):
        make("ant-broken-leg", legs=[4])
    with pytest.raises(ValueError, match="horizon"):
        make("cheetah-vel", horizon=0)


def test_clones_pickles_and_vector_keep_arguments():
    env = make("ant-goal", horizon=7, goal_radius=1.5, reset_noise_scale=0.0)
    assert env.init_kwargs == {"horizon": 7, "goal_radius": 1.5, "ctrl_cost_weight": 0.1,
                               "reset_noise_scale": 0.0}
    vec = env.vector(2, backend="gym")  # the batched backend: tests/test_mujoco_vector.py
    assert vec.max_episode_steps == 7
    assert all(e.init_kwargs == env.init_kwargs for e in vec.envs)
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(obs[0], obs[1])  # no reset noise
    env.set_task(Task("ant-goal", {"goal": [0.5, -1.0]}))
    copy = pickle.loads(pickle.dumps(env))
    assert copy.task == env.task and copy.init_kwargs == env.init_kwargs


# ---------------------------------------------------------------------- reward formulas
def step_terms(env, action: np.ndarray) -> tuple[SimpleNamespace, float, dict]:
    """Step once; the quantities each reward is built from, computed from the raw state."""
    qpos_x, torso = env.data.qpos[0], env.data.body("torso").xpos[:2].copy()
    _, reward, terminated, _, info = env.step(action)
    assert not terminated
    vxy = (env.data.body("torso").xpos[:2] - torso) / env.dt  # ant: the torso body
    vx = vxy[0] if env.name.startswith("ant") else (env.data.qpos[0] - qpos_x) / env.dt
    terms = SimpleNamespace(
        vx=vx, vxy=vxy, pos=env.data.qpos[:2].copy(), cost=np.sum(np.clip(action, -1, 1) ** 2),
        contact=np.sum(np.clip(env.data.cfrc_ext, -1, 1) ** 2),
        healthy=float(0.2 <= env.data.qpos[2] <= 1.0))
    return terms, reward, info


REWARD_CASES = [
    ("cheetah-vel", {}, {"velocity": 1.7}, lambda s: -abs(s.vx - 1.7) - 0.05 * s.cost),
    ("cheetah-dir", {}, {"direction": -1.0}, lambda s: -s.vx - 0.05 * s.cost),
    ("cheetah-crippled", {}, {"joint": 2}, lambda s: s.vx - 0.05 * s.cost),
    ("ant-dir", {}, {"direction": [-1.0, 0.0]}, lambda s: -s.vxy[0] - 0.005 * s.cost),
    ("ant-dir", {"random_angle": True}, {"direction": [0.6, 0.8]},
     lambda s: 0.6 * s.vxy[0] + 0.8 * s.vxy[1] - 0.005 * s.cost),
    ("ant-dir", PEARL_ANT, {"direction": [0.6, -0.8]},
     lambda s: 0.6 * s.vxy[0] - 0.8 * s.vxy[1] - 0.5 * s.cost - 5e-4 * s.contact + s.healthy),
    ("ant-goal", {}, {"goal": [1.0, -2.0]},
     lambda s: -abs(s.pos[0] - 1.0) - abs(s.pos[1] + 2.0) - 0.1 * s.cost),
    ("ant-broken-leg", {}, {"leg": 1}, lambda s: s.vxy[0] - 0.005 * s.cost),
]


@pytest.mark.parametrize(("name", "kwargs", "params", "formula"), REWARD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(REWARD_CASES)])
def test_reward_matches_formula(name, kwargs, params, formula):
    env = make(name, **kwargs)
    env.set_task(Task(name, params))
    env.reset(seed=1)
    # beyond the bounds on purpose: the control cost uses the action clipped to [-1, 1]
    for action in actions_for(env, 8, seed=2) * 1.3:
        terms, reward, info = step_terms(env, action)
        assert reward == pytest.approx(formula(terms), rel=1e-12, abs=1e-12)
        assert info["x_velocity"] == pytest.approx(terms.vx, rel=1e-12, abs=1e-12)
        weight = kwargs.get("ctrl_cost_weight", env.init_kwargs["ctrl_cost_weight"])
        assert info["reward_ctrl"] == pytest.approx(-weight * terms.cost, rel=1e-12)
        assert sum(v for k, v in info.items() if k.startswith("reward_")) == pytest.approx(
            reward, rel=1e-12, abs=1e-12)


def test_ant_never_terminates_and_truncates_at_horizon():
    env = make("ant-dir", horizon=5)
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    qpos[2] = 1.5  # far above the healthy range: gymnasium's Ant would terminate
    env.set_state(qpos, env.data.qvel.copy())
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(5)]
    assert not env.is_healthy
    assert flags == [(False, False)] * 4 + [(False, True)]


# ------------------------------------------------------------------ tasks change things
def test_cheetah_vel_tasks_same_dynamics_different_rewards():
    env = make("cheetah-vel")
    actions = actions_for(env, 20)
    obs_a, rew_a = rollout(env, Task("cheetah-vel", {"velocity": 0.5}), actions)
    obs_b, rew_b = rollout(env, Task("cheetah-vel", {"velocity": 2.5}), actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert np.all(rew_a != rew_b)


def test_cheetah_dir_rewards_mirror():
    env = make("cheetah-dir")
    actions = actions_for(env, 20)
    _, forward = rollout(env, Task("cheetah-dir", {"direction": 1.0}), actions)
    _, backward = rollout(env, Task("cheetah-dir", {"direction": -1.0}), actions)
    np.testing.assert_allclose(forward + backward, -2 * 0.05 * (actions**2).sum(1), atol=1e-12)


def disabled_actuator_forces(env, task: Task, steps: int = 3) -> list[np.ndarray]:
    """``actuator_force`` after each of a few steps whose actions are all |a| >= 0.3."""
    env.set_task(task)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape, forces = env.action_space.shape, []
    for _ in range(steps):
        env.step(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 1.0, size=shape))
        forces.append(env.data.actuator_force.copy())
    return forces


@pytest.mark.parametrize("leg", range(4))
def test_broken_leg_actuators_produce_no_force(leg):
    env = make("ant-broken-leg")
    broken = [2 * leg, 2 * leg + 1]
    hip, ankle = (env.model.joint(env.model.actuator_trnid[i, 0]).name for i in broken)
    assert hip.startswith("hip_") and ankle == hip.replace("hip", "ankle")  # one leg
    for force in disabled_actuator_forces(env, Task("ant-broken-leg", {"leg": leg})):
        assert np.all(force[broken] == 0)
        assert np.all(np.delete(force, broken) != 0)


def test_broken_legs_change_dynamics():
    env = make("ant-broken-leg")
    actions = actions_for(env, 10)
    obs = [rollout(env, Task("ant-broken-leg", {"leg": leg}), actions)[0] for leg in range(4)]
    assert all(not np.allclose(obs[i][-1], obs[j][-1]) for i in range(4) for j in range(i))


@pytest.mark.parametrize("joint", range(6))
def test_crippled_joint_produces_no_force(joint):
    env = make("cheetah-crippled")
    for force in disabled_actuator_forces(env, Task("cheetah-crippled", {"joint": joint})):
        assert force[joint] == 0
        assert np.all(np.delete(force, joint) != 0)


# ---------------------------------------------------------------- sampler determinism
@pytest.mark.parametrize("name", MUJOCO_ENVS)
def test_local_sampler_same_seed_same_rollouts(name):
    env = make(name, horizon=15)
    tasks = env.split_tasks("train", 2)
    policy = RandomPolicy(env.action_space.shape[0])
    sampler = LocalSampler(env)
    first = sampler.sample(policy, tasks, trials=2, episodes=2, seed=0)
    again = sampler.sample(policy, tasks, trials=2, episodes=2, seed=0)  # reused envs
    fresh = LocalSampler(make(name, horizon=15)).sample(policy, tasks, trials=2, episodes=2,
                                                       seed=0)
    other = sampler.sample(policy, tasks, trials=2, episodes=2, seed=1)
    assert first.shape == (2, 2, 2, 15) and first.valid.all()
    assert first.truncated[..., -1].all() and not first.terminated.any()
    assert {"x_velocity", "reward_task", "reward_ctrl"} <= set(first.infos)
    for rollouts in (again, fresh):
        for field in ("observations", "actions", "rewards", "next_observations"):
            np.testing.assert_array_equal(getattr(first, field), getattr(rollouts, field))
        for key, value in first.infos.items():
            np.testing.assert_array_equal(value, rollouts.infos[key])
    assert not np.array_equal(first.observations, other.observations)
    # reset noise differs between trials and between episodes of a trial
    start = first.observations[:, :, :, 0]
    assert not np.array_equal(start[:, 0], start[:, 1])
    assert not np.array_equal(start[:, :, 0], start[:, :, 1])


# ---------------------------------------------------------------------------- render
def _skip_without_offscreen_gl() -> str:
    """The OpenGL backend the envs will render with (EGL or OSMesa, whichever works here, or
    the one MUJOCO_GL names); skips with the one-line reason when there is none."""
    from metarl.envs._render import GLBackendError, select_gl_backend

    try:
        return select_gl_backend()
    except GLBackendError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-goal"])
def test_render_frames_non_blank_and_change(name):
    backend = _skip_without_offscreen_gl()
    env = make(name, render_mode="rgb_array", width=96, height=72)
    env.reset(seed=0)
    frames = [env.render()]
    assert os.environ["MUJOCO_GL"] == backend
    for actions in actions_for(env, 10).reshape(2, 5, -1):
        for action in actions:
            env.step(action)
        frames.append(env.render())
    env.close()
    for frame in frames:
        assert frame.shape == (72, 96, 3) and frame.dtype == np.uint8
        assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 10  # not blank
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))
