"""Known-answer, consistency and API tests for every numpy task distribution."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metarl.envs import REGISTRY, make
from metarl.envs.maze import (
    GOAL_REWARD,
    STEP_REWARD,
    WALL_PENALTY,
    bfs_distances,
    goal_candidates,
    observation_table,
    parse_maze_task,
)
from metarl.random import BatchRNG
from metarl.types import Task

NUMPY_ENVS = sorted(name for name, spec in REGISTRY.items() if spec.family == "numpy")
DETERMINISTIC_ENVS = ["maze", "maze-sign", "point-nav"]
UP, DOWN, LEFT, RIGHT = range(4)

# 5x5 mazes (1 = wall); cells are (row, col)
CORRIDOR = [[1, 1, 1, 1, 1],
            [1, 0, 0, 0, 1],
            [1, 1, 1, 0, 1],
            [1, 0, 0, 0, 1],
            [1, 1, 1, 1, 1]]
RING = [[1, 1, 1, 1, 1],
        [1, 0, 0, 0, 1],
        [1, 0, 1, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1]]


def random_actions(space: gymnasium.Space, shape: tuple[int, ...],
                   rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gymnasium.spaces.Discrete):
        return rng.integers(space.n, size=shape)
    # beyond the bounds on purpose, to exercise clipping
    return rng.uniform(-0.2, 0.2, size=(*shape, *space.shape)).astype(np.float32)


def vector_for(env, tasks):
    vec = env.vector(len(tasks))
    vec.set_tasks(tasks)
    return vec


# ------------------------------------------------------------------------------ API
@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_check_env(name):
    env = gymnasium.make(f"metarl/{name}", render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_split_tasks_reproducible(name):
    env = make(name)
    train = env.split_tasks("train", 4, seed=3)
    assert train == env.split_tasks("train", 4, seed=3)
    assert [t.id for t in train] == [0, 1, 2, 3]
    assert all(t.env == name for t in train)
    test = env.split_tasks("test", 4, seed=3)
    assert all(a != b for a, b in zip(train, test, strict=True))
    assert train != env.split_tasks("train", 4, seed=4)


@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_json_round_trip_same_behaviour(name):
    env_a, env_b = make(name), make(name)
    task = env_a.split_tasks("test", 1, seed=0)[0]
    copy = Task.from_json(task.to_json())
    assert copy == task
    env_a.set_task(task)
    env_b.set_task(copy)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs_a, _ = env_a.reset(seed=episode)
        obs_b, _ = env_b.reset(seed=episode)
        np.testing.assert_array_equal(obs_a, obs_b)
        for _ in range(env_a.max_episode_steps):
            action = random_actions(env_a.action_space, (), rng)
            out_a, out_b = env_a.step(action), env_b.step(action)
            np.testing.assert_array_equal(out_a[0], out_b[0])
            assert out_a[1:4] == out_b[1:4]
            if out_a[2] or out_a[3]:
                break


@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_render_non_blank_and_changes(name):
    env = make(name, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert len(np.unique(first.reshape(-1, 3), axis=0)) > 1  # not blank
    rng = np.random.default_rng(0)
    changed = False
    for _ in range(20):
        _, _, terminated, truncated, _ = env.step(random_actions(env.action_space, (), rng))
        changed |= not np.array_equal(env.render(), first)
        if terminated or truncated:
            env.reset()
    assert changed


@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_vector_env_api(name):
    env = make(name)
    num = 16
    vec = vector_for(env, env.sample_tasks(num, np.random.default_rng(0)))
    obs, infos = vec.reset(seed=0)
    assert obs.shape == (num, *env.observation_space.shape)
    assert obs.dtype == env.observation_space.dtype
    rng = np.random.default_rng(0)
    for _ in range(env.max_episode_steps + 3):  # keeps stepping finished episodes
        obs, rewards, terminated, truncated, infos = vec.step(
            random_actions(env.action_space, (num,), rng))
        assert all(o in env.observation_space for o in obs)
        assert rewards.shape == (num,) and np.isfinite(rewards).all()
        assert terminated.dtype == bool and truncated.dtype == bool
        for value in infos.values():
            assert isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
            assert value.shape[0] == num


@pytest.mark.parametrize("name", ["bandit", "tabular-mdp"])
def test_vector_rng_seeded_and_kept_across_episodes(name):
    env = make(name)
    tasks = env.sample_tasks(64, np.random.default_rng(0))
    actions = np.zeros(64, dtype=np.int64)

    def two_episodes():
        vec = vector_for(env, tasks)
        vec.reset(seed=7)
        first = vec.step(actions)[1]
        vec.reset()
        return first, vec.step(actions)[1]

    (a1, a2), (b1, b2) = two_episodes(), two_episodes()
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)


@pytest.mark.parametrize("name", NUMPY_ENVS)
def test_vector_env_streams_do_not_depend_on_batch(name):
    """With a keyed BatchRNG, an environment's rollout depends only on its own key."""
    env = make(name)
    tasks = env.sample_tasks(32, np.random.default_rng(0))
    actions = random_actions(env.action_space, (env.max_episode_steps, 32),
                             np.random.default_rng(1))

    def rollout(index: slice):
        vec = vector_for(env, tasks[index])
        first_obs = vec.reset(seed=BatchRNG(5, np.arange(32)[index]))[0]
        return first_obs, np.stack([vec.step(a[index])[1] for a in actions])

    full_obs, full_rewards = rollout(slice(None))
    part_obs, part_rewards = rollout(slice(16, None))
    np.testing.assert_array_equal(full_obs[16:], part_obs)
    np.testing.assert_array_equal(full_rewards[:, 16:], part_rewards)


# ------------------------------------------------------------------------------ bandit
def test_bandit_reward_means():
    means = np.array([0.1, 0.5, 0.9])
    task = Task("bandit", {"means": means})
    env = make("bandit", arms=3)
    env.set_task(task)
    env.reset(seed=0)
    pulls = 4000
    single = [np.mean([env.step(arm)[1] for _ in range(pulls)]) for arm in range(3)]
    vec = vector_for(env, [task] * pulls)
    vec.reset(seed=0)
    vector = [vec.step(np.full(pulls, arm))[1].mean() for arm in range(3)]
    tolerance = 5 * np.sqrt(0.25 / pulls)
    np.testing.assert_allclose(single, means, atol=tolerance)
    np.testing.assert_allclose(vector, means, atol=tolerance)


# ------------------------------------------------------------------------- tabular MDP
def mdp_counts(transitions: list[tuple[int, int, int, float]], states: int, actions: int):
    counts = np.zeros((states, actions, states))
    reward_sums = np.zeros((states, actions))
    for s, a, s2, r in transitions:
        counts[s, a, s2] += 1
        reward_sums[s, a] += r
    return counts, reward_sums


def assert_matches_mdp(counts, reward_sums, task, min_count):
    n = counts.sum(-1)
    seen = n >= min_count
    assert seen.sum() >= 5
    freq = counts[seen] / n[seen][:, None]
    p = task.array("transitions")[seen]
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n[seen][:, None]) + 1e-3)
    mean_r = reward_sums[seen] / n[seen]
    assert np.all(np.abs(mean_r - task.array("reward_means")[seen]) <= 5 / np.sqrt(n[seen]))


def test_tabular_mdp_vector_rewards_and_transitions():
    env = make("tabular-mdp")
    task = env.sample_tasks(1, np.random.default_rng(1))[0]
    num = 5000
    vec = vector_for(env, [task] * num)
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    counts = np.zeros((10, 5, 10))
    reward_sums = np.zeros((10, 5))
    for _ in range(env.max_episode_steps):
        s, a = obs.argmax(1), rng.integers(5, size=num)
        obs, rewards, *_ = vec.step(a)
        np.add.at(counts, (s, a, obs.argmax(1)), 1)
        np.add.at(reward_sums, (s, a), rewards)
    assert_matches_mdp(counts, reward_sums, task, min_count=300)


def test_tabular_mdp_single_rewards_and_transitions():
    env = make("tabular-mdp")
    task = env.sample_tasks(1, np.random.default_rng(1))[0]
    env.set_task(task)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(300):
        s = 0
        env.reset()
        for _ in range(env.max_episode_steps):
            a = int(rng.integers(5))
            _, r, _, _, info = env.step(a)
            samples.append((s, a, info["state"], r))
            s = info["state"]
    assert_matches_mdp(*mdp_counts(samples, 10, 5), task, min_count=60)


# ------------------------------------------------------------------------------ maze
def maze_task(walls, goal, start=(1, 1), **extra) -> Task:
    name = "maze-sign" if "sign" in extra else "maze"
    return Task(name, {"walls": np.array(walls), "start": start, "goal": goal, **extra})


def position(obs: np.ndarray, size: int = 5) -> tuple[int, int]:
    return tuple(int(v) for v in np.round(obs[9:11] * (size - 1)))


def test_maze_rewards_bumps_and_goal():
    env = make("maze", size=5)
    env.set_task(maze_task(CORRIDOR, goal=(3, 1)))
    obs, _ = env.reset(seed=0)
    assert position(obs) == (1, 1)
    np.testing.assert_array_equal(obs[:9], [1, 1, 1, 1, 0, 0, 1, 1, 1])
    obs, reward, terminated, truncated, info = env.step(UP)  # into the wall
    assert position(obs) == (1, 1) and info["hit_wall"]
    assert reward == pytest.approx(STEP_REWARD + WALL_PENALTY) == pytest.approx(-0.041)
    path = [RIGHT, RIGHT, DOWN, DOWN, LEFT]
    cells = [(1, 2), (1, 3), (2, 3), (3, 3), (3, 2)]
    for action, cell in zip(path, cells, strict=True):
        obs, reward, terminated, truncated, info = env.step(action)
        assert position(obs) == cell and not info["hit_wall"]
        assert reward == pytest.approx(-0.04) and not terminated and not truncated
    obs, reward, terminated, _, _ = env.step(LEFT)
    assert position(obs) == (3, 1) and terminated
    assert reward == pytest.approx(STEP_REWARD + GOAL_REWARD) == pytest.approx(0.96)
    # stepping a finished episode is harmless: the goal is absorbing, reward 0
    assert env.step(RIGHT)[1:3] == (0.0, True)


def test_maze_truncates_at_horizon():
    env = make("maze", size=5, horizon=3)
    env.set_task(maze_task(CORRIDOR, goal=(3, 1)))
    env.reset()
    assert [env.step(UP)[3] for _ in range(3)] == [False, False, True]


def test_maze_vector_matches_hand_built_episode():
    env = make("maze", size=5)
    tasks = [maze_task(CORRIDOR, goal=(3, 1)), maze_task(RING, goal=(1, 3))]
    vec = vector_for(env, tasks)
    vec.reset(seed=0)
    actions = np.array([[UP, RIGHT], [RIGHT, RIGHT], [RIGHT, DOWN], [DOWN, DOWN]])
    rewards = np.stack([vec.step(a)[1] for a in actions])
    np.testing.assert_allclose(rewards[:, 0], [-0.041, -0.04, -0.04, -0.04])
    np.testing.assert_allclose(rewards[:, 1], [-0.04, 0.96, 0, 0])


def test_maze_sign_shows_goal_only_on_sign():
    env = make("maze-sign", size=5)
    env.set_task(maze_task(RING, goal=(3, 3), sign=(2, 1), goal_index=2))
    obs, _ = env.reset()
    assert obs.shape == (14,)
    np.testing.assert_array_equal(obs[11:], 0)
    obs, *_ = env.step(DOWN)  # onto the sign
    np.testing.assert_array_equal(obs[11:], [0, 0, 1])
    obs, reward, terminated, *_ = env.step(DOWN)  # corner (3, 1): not the goal
    np.testing.assert_array_equal(obs[11:], 0)
    assert not terminated and reward == pytest.approx(-0.04)
    env.step(RIGHT)
    obs, reward, terminated, *_ = env.step(RIGHT)
    assert terminated and reward == pytest.approx(0.96)
    np.testing.assert_array_equal(obs[11:], 0)


@pytest.mark.parametrize("size", [5, 7, 9])
@pytest.mark.parametrize("name", ["maze", "maze-sign"])
def test_sampled_mazes_are_valid(name, size):
    env = make(name, size=size)
    for task in env.sample_tasks(20, np.random.default_rng(size)):
        walls = task.array("walls", dtype=np.int8)
        parse_maze_task(task, size, sign=name == "maze-sign")  # border, free cells
        dist = bfs_distances(walls, (1, 1))
        assert np.all((dist >= 0) == (walls == 0)), "every free cell is reachable"
        goal = tuple(task.array("goal", dtype=int))
        if name == "maze":
            assert dist[goal] >= dist.max() / 2
            continue
        index = task.params["goal_index"]
        assert goal == tuple(goal_candidates(size)[index])
        sign = tuple(task.array("sign", dtype=int))
        assert dist[sign] >= dist.max() / 2
        assert sign not in {(1, 1), *map(tuple, goal_candidates(size).tolist())}
        table = observation_table(walls, np.array(sign[0] * size + sign[1]), np.array(index))
        one_hot = table[:, 11:]
        assert one_hot.sum() == 1 and one_hot[sign[0] * size + sign[1], index] == 1


def test_maze_horizon_scales_and_bad_sizes():
    assert make("maze").max_episode_steps == 50
    assert make("maze", size=9).max_episode_steps > 50
    for bad in (4, 3, 8):
        with pytest.raises(ValueError, match="odd"):
            make("maze", size=bad)
    env = make("maze", size=5)
    with pytest.raises(ValueError, match="not a free cell"):
        env.set_task(maze_task(CORRIDOR, goal=(2, 1)))


# ------------------------------------------------------------------------- point-nav
def test_point_nav_clipping_and_distance_reward():
    env = make("point-nav")
    env.set_task(Task("point-nav", {"goal": [0.3, -0.2]}))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 0])
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.05]))
    np.testing.assert_allclose(obs, [0.1, -0.05])
    assert obs.dtype == np.float32
    assert reward == pytest.approx(-np.hypot(0.1 - 0.3, -0.05 + 0.2))
    assert info["distance"] == pytest.approx(-reward)
    obs, reward, *_ = env.step(np.array([-3.0, 0.02], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.0, -0.03], atol=1e-7)
    assert reward == pytest.approx(-np.hypot(0.3, 0.17))
    flags = [env.step(np.zeros(2))[2:4] for _ in range(98)]
    assert not any(t for t, _ in flags)
    assert [tr for _, tr in flags] == [False] * 97 + [True]


def test_point_nav_goals_in_square():
    goals = np.stack([t.array("goal") for t in make("point-nav").sample_tasks(
        500, np.random.default_rng(0))])
    assert np.all(np.abs(goals) <= 0.5) and goals.min() < -0.45 and goals.max() > 0.45


# ------------------------------------------------------------ vector == single (exact)
@pytest.mark.parametrize("name", DETERMINISTIC_ENVS)
def test_vector_equals_single_envs(name):
    kwargs = {"size": 5} if name.startswith("maze") else {}  # small mazes: goals get reached
    env = make(name, **kwargs)
    num = 24
    tasks = env.sample_tasks(num, np.random.default_rng(2))
    singles = [make(name, **kwargs) for _ in range(num)]
    vec = vector_for(env, tasks)
    rng = np.random.default_rng(3)
    reached = 0
    for episode in range(2):
        obs = vec.reset(seed=episode if episode == 0 else None)[0]
        for single, task in zip(singles, tasks, strict=True):
            single.set_task(task)
        single_obs = np.stack([s.reset(seed=episode)[0] for s in singles])
        np.testing.assert_array_equal(obs, single_obs)
        valid = np.ones(num, dtype=bool)
        for _ in range(env.max_episode_steps):
            actions = random_actions(env.action_space, (num,), rng)
            v_obs, v_rew, v_term, v_trunc, v_info = vec.step(actions)
            for i in np.flatnonzero(valid):
                obs, reward, terminated, truncated, info = singles[i].step(actions[i])
                np.testing.assert_array_equal(v_obs[i], obs)
                assert (v_rew[i], v_term[i], v_trunc[i]) == (reward, terminated, truncated)
                assert {k: v[i] for k, v in v_info.items()} == info
            reached += int(v_term[valid].sum())
            valid &= ~(v_term | v_trunc)
    if name.startswith("maze"):
        assert reached > 0, "some random walks should reach the goal"


def test_benchmark_smoke():
    from metarl.benchmarks.envs import run

    result = run(num_envs=4, steps=3, envs=NUMPY_ENVS)
    assert set(result["envs"]) == set(NUMPY_ENVS)
    for figures in result["envs"].values():
        assert figures["vector_steps_per_s"] > 0 and figures["loop_steps_per_s"] > 0
        assert figures["speedup"] > 0 and figures["speedup_cpu"] > 0
