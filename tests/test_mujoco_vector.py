"""The natively batched MuJoCo backend against the gymnasium single envs (the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from metarl.envs import make
from metarl.envs.mujoco_vector import VectorMujocoTaskEnv
from metarl.envs_api import SerialVectorEnv
from metarl.random import BatchRNG
from metarl.types import Task

PEARL_ANT = {"ctrl_cost_weight": 0.5, "contact_cost_weight": 5e-4, "healthy_reward": 1.0}
CASES = [("cheetah-vel", {}), ("cheetah-dir", {}), ("cheetah-crippled", {}), ("ant-dir", {}),
         ("ant-dir", {"random_angle": True, **PEARL_ANT}), ("ant-goal", {}),
         ("ant-broken-leg", {})]
TOL = {"rtol": 1e-6, "atol": 1e-6}


def batched(name: str, num_envs: int, tasks: list[Task] | None = None, **kwargs
            ) -> VectorMujocoTaskEnv:
    env = make(name, **kwargs)
    vec = env.vector(num_envs)
    assert isinstance(vec, VectorMujocoTaskEnv)
    vec.set_tasks(tasks or env.split_tasks("train", num_envs))
    return vec


def references(vec: VectorMujocoTaskEnv, name: str, **kwargs) -> list:
    """Gymnasium single envs on the batched env's tasks, in its current physics state."""
    envs = []
    for task, data in zip(vec.tasks, vec.datas, strict=True):
        env = make(name, **kwargs)
        env.set_task(task)
        env.reset(seed=0)
        env.set_state(data.qpos.copy(), data.qvel.copy())
        envs.append(env)
    return envs


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in
                                                         enumerate(CASES)])
def test_same_transitions_as_gymnasium_reference(name, kwargs):
    env = make(name, horizon=20, **kwargs)
    tasks = env.split_tasks("test", 3, seed=1)
    if name in ("cheetah-crippled", "ant-broken-leg"):  # different disabled actuators
        key = "joint" if name == "cheetah-crippled" else "leg"
        tasks = [Task(name, {key: i}, id=i) for i in (0, 1, 3)]
    vec = batched(name, 3, tasks, horizon=20, **kwargs)
    obs, infos = vec.reset(seed=0)
    refs = references(vec, name, horizon=20, **kwargs)
    np.testing.assert_allclose(obs, [ref._get_obs() for ref in refs], **TOL)
    rng = np.random.default_rng(0)
    shape = (3, *env.action_space.shape)
    for t in range(20):
        # beyond the bounds on purpose: the control cost clips, the actuators clamp
        actions = (1.3 * rng.uniform(-1, 1, size=shape)).astype(np.float32)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        for i, ref in enumerate(refs):
            ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(actions[i])
            np.testing.assert_allclose(obs[i], ref_obs, **TOL)
            np.testing.assert_allclose(rewards[i], ref_reward, **TOL)
            assert (terminated[i], truncated[i]) == (ref_term, ref_trunc) == (False, t == 19)
            assert set(infos) == set(ref_info)
            for key, value in ref_info.items():
                np.testing.assert_allclose(infos[key][i], value, **TOL, err_msg=key)


def test_threads_give_identical_transitions():
    tasks = make("ant-goal").split_tasks("train", 5)
    one, two = batched("ant-goal", 5, tasks), batched("ant-goal", 5, tasks, nthread=2)
    assert two.nthread == 2
    np.testing.assert_array_equal(one.reset(seed=3)[0], two.reset(seed=3)[0])
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10, 5, 8))
    for action in actions:
        for got, want in zip(one.step(action)[:4], two.step(action)[:4], strict=True):
            np.testing.assert_array_equal(got, want)
    two.close()


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-dir"])
def test_reset_noise_follows_gymnasium_v5(name):
    vec = batched(name, 200, reset_noise_scale=0.2)
    vec.reset(seed=0)
    env = vec.env
    qpos = np.array([d.qpos for d in vec.datas]) - env.init_qpos
    qvel = np.array([d.qvel for d in vec.datas]) - env.init_qvel
    assert np.abs(qpos).max() <= 0.2 and np.abs(qpos).max() > 0.19  # uniform in +-0.2
    assert abs(qpos.std() - 0.2 / np.sqrt(3)) < 0.01
    assert abs(qvel.std() - 0.2) < 0.01 and abs(qvel.mean()) < 0.01  # normal, std 0.2
    assert np.abs(qvel).max() > 0.5


def test_reset_randomness_is_keyed_by_environment():
    tasks = make("cheetah-vel").split_tasks("train", 6)
    full, part = batched("cheetah-vel", 6, tasks), batched("cheetah-vel", 2, tasks[2:4])
    obs_full, _ = full.reset(seed=BatchRNG(7, np.arange(6), "env"))
    obs_part, _ = part.reset(seed=BatchRNG(7, np.arange(2, 4), "env"))
    np.testing.assert_array_equal(obs_full[2:4], obs_part)
    again, _ = full.reset()  # continues each environment's stream
    assert not np.any(again == obs_full)
    np.testing.assert_array_equal(full.reset(seed=5)[0], full.reset(seed=5)[0])


def test_backend_flag_and_arguments():
    env = make("ant-goal", horizon=7, goal_radius=1.5, reset_noise_scale=0.0)
    vec = env.vector(2)
    assert isinstance(vec, VectorMujocoTaskEnv) and vec.max_episode_steps == 7
    assert vec.init_kwargs == env.init_kwargs
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(obs[0], obs[1])  # no reset noise
    assert isinstance(env.vector(2, backend="gym"), SerialVectorEnv)
    reference = make("cheetah-vel", backend="gym")
    assert reference.init_kwargs["backend"] == "gym"
    assert isinstance(reference.vector(2), SerialVectorEnv)
    assert isinstance(reference.vector(2, backend="batched"), VectorMujocoTaskEnv)
    assert "nthread" not in make("cheetah-vel").init_kwargs
    with pytest.raises(ValueError, match="unknown backend 'fast'; valid backends: batched, gym"):
        make("cheetah-vel", backend="fast")
    with pytest.raises(ValueError, match="nthread"):
        make("cheetah-vel", nthread=0)


def test_bad_tasks_and_actions_rejected():
    vec = batched("ant-broken-leg", 2)
    with pytest.raises(ValueError, match="leg"):
        vec.set_tasks([Task("ant-broken-leg", {"leg": 0}), Task("ant-broken-leg", {"leg": 4})])
    with pytest.raises(ValueError, match="3 tasks for 2"):
        vec.set_tasks([Task("ant-broken-leg", {"leg": 0})] * 3)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="actions of shape"):
        vec.step(np.zeros((2, 6)))


def test_stepping_past_the_horizon_does_not_fail():
    vec = batched("cheetah-dir", 2, horizon=2)
    vec.reset(seed=0)
    flags = [vec.step(np.zeros((2, 6)))[3].tolist() for _ in range(3)]
    assert flags == [[False, False], [True, True], [True, True]]


# ------------------------------------------------------------------ sampler benchmark
def test_benchmark_policy_samples_batched_mujoco_envs():
    from metarl.benchmarks.sampler import benchmark_policy
    from metarl.sampling import LocalSampler

    env = make("cheetah-crippled", horizon=5)
    policy = benchmark_policy(17, 6)
    sampler = LocalSampler(env, threads=1)
    rollouts = sampler.sample(policy, env.split_tasks("train", 3), episodes=2, seed=0)
    assert rollouts.shape == (3, 1, 2, 5) and rollouts.extras["log_prob"].shape == (3, 1, 2, 5)
    assert rollouts.observations.flags.c_contiguous and rollouts.truncated[..., -1].all()


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "envs", "--env", "ant-dir"], "benchmark 'envs' does not take --env"),
    (["bench", "sampler", "--env", "bandit"], "needs a continuous-action env, 'bandit'"),
    (["bench", "sampler", "--workers", "0"], "--workers must be >= 1, got 0"),
])
def test_bench_options_are_checked(argv, message, capsys):
    from metarl.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
