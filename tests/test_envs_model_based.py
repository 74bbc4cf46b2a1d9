"""MuJoCo envs for model-based meta-RL (GrBAL): observations with the root position, the
known batched reward of a transition, legs that break mid-episode, held-out splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers import unexpected_check_env_warnings

from metarl.envs import make
from metarl.envs.mujoco_vector import VectorMujocoTaskEnv
from metarl.types import Task

STEPS = 50
#: per env: constructor arguments (the ants with a healthy bonus) and three distinct tasks
CASES = {
    "cheetah-vel": ({}, [{"velocity": v} for v in (0.5, 1.5, 2.5)]),
    "cheetah-dir": ({}, [{"direction": d} for d in (1.0, -1.0, 1.0)]),
    "cheetah-crippled": ({}, [{"joint": j} for j in (0, 2, 5)]),
    "ant-dir": ({"healthy_reward": 1.0, "ctrl_cost_weight": 0.5},
                [{"direction": u} for u in ([1.0, 0.0], [0.6, 0.8], [-0.6, -0.8])]),
    "ant-goal": ({"healthy_reward": 1.0}, [{"goal": g} for g in ([1.0, -2.0], [-0.5, 0.3],
                                                                  [2.0, 2.0])]),
    "ant-broken-leg": ({"healthy_reward": 1.0}, [{"leg": leg} for leg in (0, 1, 3)]),
}
NAMES = list(CASES)
TASK_FREE = ("cheetah-crippled", "ant-broken-leg")  # rewards that ignore the task
RTOL = {"rtol": 1e-9, "atol": 1e-9}


def tasks_of(name: str) -> list[Task]:
    return [Task(name, params, id=i) for i, params in enumerate(CASES[name][1])]


def model_based(name: str, **kwargs):
    return make(name, model_based=True, **{**CASES[name][0], **kwargs})


def random_actions(env, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Uniform in [-1.5, 1.5]: beyond the bounds, so that the control cost clips."""
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (*shape, *env.action_space.shape))


def record_single(env, task: Task, actions: np.ndarray, seed: int = 0):
    """``(obs, actions, next_obs, rewards)`` of one episode of ``env`` on ``task``."""
    env.set_task(task)
    obs = [env.reset(seed=seed)[0]]
    rewards = []
    for action in actions:
        next_obs, reward, terminated, _, _ = env.step(action)
        assert not terminated
        obs.append(next_obs)
        rewards.append(reward)
    obs = np.array(obs)
    return obs[:-1], actions, obs[1:], np.array(rewards)


def record_vector(vec, actions: np.ndarray, seed: int = 0):
    """The same for a vector env, ``[B, T, ...]``."""
    obs = [vec.reset(seed=seed)[0]]
    rewards = []
    for action in actions:
        next_obs, reward, *_ = vec.step(action)
        obs.append(next_obs)
        rewards.append(reward)
    obs = np.array(obs).swapaxes(0, 1)
    return obs[:, :-1], actions.swapaxes(0, 1), obs[:, 1:], np.array(rewards).T


# ------------------------------------------------------------------------ observations
@pytest.mark.parametrize("name", NAMES)
def test_observations_keep_the_root_position(name):
    env = model_based(name)
    assert unexpected_check_env_warnings(env) == []
    dim = 18 if name.startswith("cheetah") else 29
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == (dim,)
    for action in random_actions(env, (3,)):
        obs = env.step(action)[0]
        np.testing.assert_array_equal(obs, np.concatenate([env.data.qpos, env.data.qvel]))
    vec = env.vector(2)
    assert isinstance(vec, VectorMujocoTaskEnv)
    assert vec.single_observation_space.shape == (dim,)
    obs, _ = vec.reset(seed=0)
    for data, row in zip(vec.datas, vec.step(random_actions(env, (2,)))[0], strict=True):
        np.testing.assert_array_equal(row, np.concatenate([data.qpos, data.qvel]))


@pytest.mark.parametrize("name", ["ant-dir", "ant-goal"])
def test_model_based_ant_has_the_same_physics(name):
    """Where the observation keeps the root position, the ant recomputes ``xpos`` after each
    step (its velocity is then the displacement of the observed root position); the states
    must not change. Plain ant-dir is gymnasium's ant, whose ``xpos`` lags a substep."""
    env, plain = model_based(name), make("ant-dir")
    actions = random_actions(env, (30,))
    obs = record_single(env, tasks_of(name)[1], actions)[0]
    plain_obs = record_single(plain, tasks_of("ant-dir")[0], actions)[0]
    np.testing.assert_array_equal(obs[:, 2:], plain_obs[:, :27])
    body = env.data.body(env._main_body)
    np.testing.assert_array_equal(body.xpos, env.data.qpos[:3])  # xpos in step with qpos
    assert body.xpos[0] != plain.data.body(plain._main_body).xpos[0]


def test_conflicting_observation_arguments_rejected():
    with pytest.raises(ValueError, match="exclude_current_positions_from_observation=True "
                                         "conflicts with model_based=True"):
        make("cheetah-vel", model_based=True, exclude_current_positions_from_observation=True)
    with pytest.raises(ValueError, match="include_cfrc_ext_in_observation=True conflicts"):
        make("ant-dir", model_based=True, include_cfrc_ext_in_observation=True)
    env = make("ant-dir", model_based=True, include_cfrc_ext_in_observation=False)
    assert env.observation_space.shape == (29,)
    assert make("ant-dir", include_cfrc_ext_in_observation=False).observation_space.shape == (27,)


# ------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("name", NAMES)
def test_reward_equals_single_env_rewards(name):
    env = model_based(name)
    task = tasks_of(name)[1]
    obs, actions, next_obs, rewards = record_single(env, task, random_actions(env, (STEPS,)))
    assert np.abs(actions).max() > 1.4
    env.set_task(tasks_of(name)[0])  # tasks= overrides the current task
    got = env.reward(obs, actions, next_obs, [task] * STEPS)
    assert isinstance(got, np.ndarray) and got.shape == (STEPS,) and got.dtype == np.float64
    np.testing.assert_allclose(got, rewards, **RTOL)
    env.set_task(task)  # the current task, for every transition
    np.testing.assert_allclose(env.reward(obs, actions, next_obs), rewards, **RTOL)
    for t in (0, STEPS - 1):  # one transition, no leading dimension
        single = env.reward(obs[t], actions[t], next_obs[t])
        assert single.shape == () and single == pytest.approx(rewards[t], rel=1e-9, abs=1e-9)
    tensors = [torch.as_tensor(x) for x in (obs, actions, next_obs)]
    got = env.reward(*tensors)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), rewards, **RTOL)


@pytest.mark.parametrize("name", NAMES)
def test_reward_equals_vector_env_rewards_per_task(name):
    env = model_based(name)
    tasks = tasks_of(name)
    vec = env.vector(3)
    vec.set_tasks(tasks)
    obs, actions, next_obs, rewards = record_vector(vec, random_actions(env, (STEPS, 3)))
    assert obs.shape == (3, STEPS, env.observation_space.shape[0])
    # [B, C, d]: B tasks x C transitions each, as numpy and as torch tensors
    np.testing.assert_allclose(env.reward(obs, actions, next_obs, tasks), rewards, **RTOL)
    tensors = [torch.as_tensor(x) for x in (obs, actions, next_obs)]
    np.testing.assert_allclose(env.reward(*tensors, tasks).numpy(), rewards, **RTOL)
    # [B * C, d]: one task per row
    flat = [x.reshape(3 * STEPS, -1) for x in (obs, actions, next_obs)]
    np.testing.assert_allclose(env.reward(*flat, [t for t in tasks for _ in range(STEPS)]),
                               rewards.reshape(-1), **RTOL)
    others = tasks[1:] + tasks[:1]
    changed = np.abs(env.reward(obs, actions, next_obs, others) - rewards).max(axis=1) > 1e-3
    # each row's own task matters, unless the reward ignores the task
    want = [name not in TASK_FREE and a.params != b.params
            for a, b in zip(tasks, others, strict=True)]
    assert changed.tolist() == want


def test_reward_known_answers():
    """Hand-computed rewards: clipped control cost, healthy bonus, goal distance."""
    cheetah = model_based("cheetah-vel")
    cheetah.set_task(Task("cheetah-vel", {"velocity": 1.0}))
    obs, next_obs = np.zeros(18), np.zeros(18)
    next_obs[0] = 0.1  # v_x = 0.1 / 0.05 = 2
    action = np.array([2.0, -2.0, 0.5, 0.0, 0.0, 0.0])  # clipped: ||a||^2 = 2.25
    assert cheetah.reward(obs, action, next_obs) == pytest.approx(-1.0 - 0.05 * 2.25)
    ant = make("ant-dir", model_based=True, healthy_reward=1.0, ctrl_cost_weight=0.5)
    ant.set_task(Task("ant-dir", {"direction": [0.6, 0.8]}))
    obs, next_obs = np.zeros((3, 29)), np.zeros((3, 29))
    obs[:, 2] = 0.5
    next_obs[:, :3] = [0.05, 0.1, 0.5]  # v = (1, 2), u . v = 2.2, healthy
    next_obs[1, 2] = 1.5  # too high: no bonus
    next_obs[2, 20] = np.nan  # not finite (a velocity): no bonus
    action = np.zeros((3, 8))
    action[:, 0] = -1.5  # clipped: ||a||^2 = 1
    want = [2.2 + 1.0 - 0.5, 2.2 - 0.5, 2.2 - 0.5]
    np.testing.assert_allclose(ant.reward(obs, action, next_obs), want, rtol=1e-12)
    tensors = [torch.as_tensor(x) for x in (obs, action, next_obs)]
    np.testing.assert_allclose(ant.reward(*tensors).numpy(), want, rtol=1e-12)
    goal = make("ant-goal", model_based=True)
    goal.set_task(Task("ant-goal", {"goal": [1.0, -2.0]}))
    next_obs[:, :2] = [0.5, 0.5]
    np.testing.assert_allclose(goal.reward(obs, action, next_obs), -3.0 - 0.1, rtol=1e-12)


def test_reward_float32_gradient_and_device():
    env = model_based("ant-dir")
    obs, actions, next_obs, rewards = record_single(env, tasks_of("ant-dir")[2],
                                                    random_actions(env, (10,)))
    obs32 = torch.tensor(obs, dtype=torch.float32, requires_grad=True)
    got = env.reward(obs32, actions, torch.as_tensor(next_obs, dtype=torch.float32))
    assert got.dtype == torch.float32 and got.device == obs32.device and got.shape == (10,)
    np.testing.assert_allclose(got.detach().numpy(), rewards, rtol=1e-4, atol=1e-3)
    got.sum().backward()  # dr/dx = -u_x / dt for the direction u = (-0.6, -0.8)
    np.testing.assert_allclose(obs32.grad[:, :2].numpy(), [[0.6 / env.dt, 0.8 / env.dt]] * 10,
                               rtol=1e-5)
    got = env.reward(obs.astype(np.float32), actions, next_obs)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-dir", "ant-broken-leg"])
def test_reward_needs_the_root_position(name):
    env = make(name)
    obs = env.reset(seed=0)[0]
    action = np.zeros(env.action_space.shape)
    with pytest.raises(ValueError, match=r"reward\(obs, \.\.\.\) needs the root position in the "
                                         r"observation; build the env with model_based=True"):
        env.reward(obs, action, env.step(action)[0])


def test_ant_goal_reward_with_contact_forces_in_the_observation():
    """ant-goal keeps the root position without model_based: the contact cost then comes from
    the observed (clipped) contact forces."""
    env = make("ant-goal", ctrl_cost_weight=0.5, contact_cost_weight=0.05, healthy_reward=1.0)
    assert env.observation_space.shape == (107,)
    task = tasks_of("ant-goal")[0]
    obs, actions, next_obs, rewards = record_single(env, task, random_actions(env, (STEPS,)))
    np.testing.assert_allclose(env.reward(obs, actions, next_obs), rewards, **RTOL)
    without = make("ant-goal", ctrl_cost_weight=0.5, healthy_reward=1.0)
    without.set_task(task)
    assert np.abs(without.reward(obs, actions, next_obs) - rewards).max() > 1e-3


def test_contact_cost_needs_the_contact_forces():
    env = make("ant-dir", model_based=True, contact_cost_weight=5e-4)
    obs = env.reset(seed=0)[0]
    action = np.zeros(8)
    with pytest.raises(ValueError, match="contact cost .* needs the contact forces"):
        env.reward(obs, action, env.step(action)[0])


def test_reward_arguments_checked():
    env = model_based("cheetah-vel")
    obs = np.zeros((4, 18))
    with pytest.raises(ValueError, match="3 tasks for observations of shape"):
        env.reward(obs, np.zeros((4, 6)), obs, tasks_of("cheetah-vel"))
    with pytest.raises(ValueError, match="must share leading dimensions"):
        env.reward(obs, np.zeros((3, 6)), obs)
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 18\]"):
        env.reward(obs[:, :17], np.zeros((4, 6)), obs[:, :17])


# --------------------------------------------------------------- legs that break later
@pytest.mark.parametrize("name", TASK_FREE)
def test_cripple_at_breaks_the_group_mid_episode(name):
    """With ``cripple_at=k`` the transitions are the intact robot's with the commanded
    actions for the first ``k`` steps, then with the group's actions zeroed."""
    k, horizon = 6, 12
    crippled = make(name, horizon=horizon, cripple_at=k)
    intact = make(name, horizon=horizon, cripple_at=10**6)  # never breaks
    task = tasks_of(name)[1]
    group = list(crippled._groups[task.params[crippled._choice]])
    actions = random_actions(crippled, (horizon,))
    masked = actions.copy()
    masked[k:, group] = 0.0
    for _ in range(2):  # each episode starts intact again
        obs = record_single(crippled, task, actions)[2]
        np.testing.assert_array_equal(obs, record_single(intact, task, masked)[2])
        unmasked = record_single(intact, task, actions)[2]
        np.testing.assert_array_equal(obs[:k], unmasked[:k])
        assert not np.allclose(obs[k], unmasked[k])


@pytest.mark.parametrize("name", TASK_FREE)
def test_cripple_at_same_transitions_single_and_vector(name):
    horizon, tasks = 10, tasks_of(name)
    env = make(name, horizon=horizon, cripple_at=4, model_based=True)
    vec = env.vector(3)
    vec.set_tasks(tasks)
    singles = [make(name, **env.init_kwargs) for _ in tasks]
    actions = random_actions(env, (2, horizon, 3))
    for episode in range(2):  # each episode starts intact again
        vec.reset(seed=episode)
        for single, task, data in zip(singles, tasks, vec.datas, strict=True):
            single.set_task(task)
            single.reset(seed=0)
            single.set_state(data.qpos.copy(), data.qvel.copy())
        for action in actions[episode]:
            obs, rewards, *_ = vec.step(action)
            for i, single in enumerate(singles):
                single_obs, reward, *_ = single.step(action[i])
                np.testing.assert_allclose(obs[i], single_obs, rtol=1e-6, atol=1e-6)
                assert rewards[i] == pytest.approx(reward, rel=1e-6, abs=1e-6)


# --------------------------------------------------------------------------- splits
def test_held_out_splits_grbal():
    ant = make("ant-broken-leg", legs=(1, 2, 3), test_legs=(0,))
    assert {t.params["leg"] for t in ant.split_tasks("test", 20, seed=0)} == {0}
    for split in ("train", "val"):
        assert {t.params["leg"] for t in ant.split_tasks(split, 40, seed=0)} == {1, 2, 3}
    assert {t.params["leg"] for t in ant.sample_tasks(40, np.random.default_rng(0))} == {1, 2, 3}
    cheetah = make("cheetah-crippled", joints=(1, 2, 3, 4, 5), test_joints=(0,))
    test = cheetah.split_tasks("test", 10, seed=3)
    assert {t.params["joint"] for t in test} == {0} and [t.id for t in test] == list(range(10))
    assert {t.params["joint"] for t in cheetah.split_tasks("train", 50)} == {1, 2, 3, 4, 5}
    default = make("cheetah-crippled", joints=(2, 4))  # test_joints: the same as joints
    assert {t.params["joint"] for t in default.split_tasks("test", 30)} == {2, 4}
    assert make("ant-broken-leg", test_legs=[3]).split_tasks("test", 4, seed=1) == \
        make("ant-broken-leg", test_legs=[3]).split_tasks("test", 4, seed=1)
    with pytest.raises(ValueError, match="test_legs must be a non-empty subset of 0..3"):
        make("ant-broken-leg", test_legs=[4])
    with pytest.raises(ValueError, match="unknown task split"):
        ant.split_tasks("holdout", 3)
    with pytest.raises(ValueError, match="cripple_at must be an integer >= 0"):
        make("cheetah-crippled", cripple_at=-1)


# --------------------------------------------------------------------------- colours
RED_GEOMS = {
    "cheetah-crippled": {j: {name} for j, name in enumerate(
        ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"])},
    "ant-broken-leg": {0: {"rightback_leg_geom", "fourth_ankle_geom"},  # GrBAL's leg 3
                       1: {"left_leg_geom", "left_ankle_geom"},
                       2: {"right_leg_geom", "right_ankle_geom"},
                       3: {"back_leg_geom", "third_ankle_geom"}},
}


@pytest.mark.parametrize("name", TASK_FREE)
def test_disabled_group_rendered_red(name):
    env = make(name)
    intact = make("cheetah-vel" if name.startswith("cheetah") else "ant-dir").model.geom_rgba
    key = env._choice
    for group, geoms in [*RED_GEOMS[name].items(), (0, RED_GEOMS[name][0])]:
        env.set_task(Task(name, {key: group}))
        rgba = env.model.geom_rgba
        red = {env.model.geom(g).name for g in np.flatnonzero((rgba != intact).any(1))}
        assert red == geoms, group
        ids = [env.model.geom(g).id for g in geoms]
        np.testing.assert_array_equal(rgba[ids, :3], 1.0 * np.array([[1, 0, 0]] * len(ids)))
        np.testing.assert_array_equal(rgba[:, 3], intact[:, 3])
    copy = pickle.loads(pickle.dumps(env))
    np.testing.assert_array_equal(copy.model.geom_rgba, env.model.geom_rgba)


# ------------------------------------------------------------- options are kept
def test_clones_pickles_and_vectors_keep_the_options():
    env = make("ant-broken-leg", horizon=20, model_based=True, legs=(1, 2, 3), test_legs=(0,),
               cripple_at=7)
    assert env.init_kwargs == {"horizon": 20, "legs": (1, 2, 3), "test_legs": (0,),
                               "cripple_at": 7, "model_based": True, "ctrl_cost_weight": 0.005}
    assert "model_based" not in make("ant-dir").init_kwargs
    env.set_task(Task("ant-broken-leg", {"leg": 2}))
    copies = [pickle.loads(pickle.dumps(env)), env._clone(),
              *env.vector(2, backend="gym").envs, env.vector(2).env]
    for copy in copies:
        assert copy.init_kwargs == env.init_kwargs
        assert (copy.model_based, copy.cripple_at) == (True, 7)
        assert copy.observation_space.shape == (29,)
        assert copy.split_tasks("test", 5) == env.split_tasks("test", 5)
    assert copies[0].task == env.task
    assert env.vector(2).single_observation_space.shape == (29,)
