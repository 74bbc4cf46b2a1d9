"""The gymnasium adapters (metarl.integrations): every env in every mode passes gymnasium's
env checker; each mode's observation carries what it says, with known answers."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metarl.envs import REGISTRY, make
from metarl.integrations import MODES, TaskEnv, task_vector

ENVS = [name for name in REGISTRY if not name.startswith("metaworld")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ENVS)
def test_every_env_passes_the_env_checker_in_every_mode(name, mode):
    check_env(TaskEnv(name, mode=mode), skip_render_check=True)


def test_task_in_obs_appends_the_tasks_parameters():
    env = TaskEnv("tabular-mdp", mode="task-in-obs")
    obs, _ = env.reset(seed=3)
    inner = make("tabular-mdp").observation_space.shape[0]
    assert obs.shape == (inner + 10 * 5 + 10 * 5 * 10,)
    expected = np.concatenate([np.ravel(env.task.params["reward_means"]),
                               np.ravel(env.task.params["transitions"])])
    assert np.allclose(obs[inner:], expected, atol=1e-7)
    first = env.task
    obs, *_ = env.step(0)
    assert env.task is first and np.allclose(obs[inner:], task_vector(first), atol=1e-7)


def test_resample_draws_a_new_task_at_every_reset_and_adds_nothing():
    env = TaskEnv("point-nav", mode="resample")
    assert env.observation_space == make("point-nav").observation_space
    goals = []
    for seed in range(4):
        env.reset(seed=seed)
        goals.append(tuple(env.task.params["goal"]))
    assert len(set(goals)) == 4
    env.reset(seed=2)
    assert tuple(env.task.params["goal"]) == goals[2]  # the seed decides the task


def test_trial_chains_episodes_of_one_task_with_previous_action_reward_and_end_flag():
    env = TaskEnv("bandit", mode="trial", episodes_per_trial=3)  # 5 arms, one pull an episode
    obs, info = env.reset(seed=0)
    assert obs.shape == (1 + 5 + 2,) and np.all(obs[1:] == 0) and info["inner_episode"] == 0
    task = env.task
    for k, arm in enumerate([4, 1, 4]):
        obs, reward, terminated, truncated, info = env.step(arm)
        assert env.task is task and reward in (0.0, 1.0)
        assert np.array_equal(obs[1:6], np.eye(5)[arm])  # the previous action, one-hot
        assert obs[6] == reward and obs[7] == 1.0  # the previous reward; an episode ended
        assert (terminated, truncated, info["inner_episode"]) == (k == 2, False, k + 1)


def test_trial_on_a_continuous_env_marks_the_inner_episode_boundary():
    env = TaskEnv("point-nav", mode="trial", episodes_per_trial=2)  # 100 steps an episode
    env.reset(seed=1)
    action = np.array([0.05, -0.2], dtype=np.float32)  # clipped to the box in the obs
    ended, steps, terminated = [], 0, False
    while not terminated:
        obs, _, terminated, truncated, _ = env.step(action)
        steps += 1
        ended.append(obs[-1])
        assert not truncated
    assert steps == 200 and [i for i, e in enumerate(ended) if e] == [99, 199]
    assert np.allclose(obs[2:4], [0.05, -0.1])


def test_the_adapters_vectorise_with_gymnasiums_vector_api_deterministically():
    def vector():
        return gym.vector.SyncVectorEnv(
            [lambda: TaskEnv("bandit", mode="trial", episodes_per_trial=4)] * 3)

    runs = []
    for _ in range(2):
        envs = vector()
        obs, _ = envs.reset(seed=7)
        rewards = []
        for _ in range(4):
            obs, reward, terminated, _, _ = envs.step(np.array([0, 1, 2]))
            rewards.append(reward)
        assert terminated.all()
        runs.append(np.array(rewards))
        envs.close()
    assert np.array_equal(runs[0], runs[1])


def test_held_out_tasks_and_bad_arguments():
    tasks = make("point-nav").split_tasks("test", 2)
    env = TaskEnv("point-nav", mode="task-in-obs", tasks=tasks)
    for seed in range(5):
        env.reset(seed=seed)
        assert env.task in tasks
    with pytest.raises(ValueError, match="unknown mode 'oracle'; valid modes: task-in-obs"):
        TaskEnv("bandit", mode="oracle")
    with pytest.raises(ValueError, match="episodes_per_trial must be >= 1, got 0"):
        TaskEnv("bandit", mode="trial", episodes_per_trial=0)
