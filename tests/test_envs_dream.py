"""Known answers for DREAM's bus and map grids (envs/dream_grid.py), their vector version,
the reference policies (metarl/reference_policies/dream.py) and the exploitation return of
evaluate_policy."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from metarl.envs import make
from metarl.envs.dream_grid import (
    BUS_COLORS,
    BUS_DESTINATIONS,
    BUS_OBS_DIM,
    BUS_PERMUTATIONS,
    BUS_SOURCES,
    DISTRACTOR_COLOR,
    DISTRACTOR_DESTINATIONS,
    DISTRACTOR_SOURCES,
    DOWN,
    END_EPISODE,
    GOALS,
    LAYOUTS,
    LEFT,
    MAP_OBS_DIM,
    MAP_TILE,
    NO_GOAL,
    NOOP,
    RIDE_BUS,
    RIGHT,
    START,
    UP,
    VectorDreamGridEnv,
    cell_index,
    decode_observation,
    observations,
    walking_table,
)
from metarl.evaluation import EVAL_SEED_OFFSET, evaluate_policy
from metarl.random import BatchRNG
from metarl.reference_policies import (
    BASELINES,
    DreamExploreExploitPolicy,
    DreamOraclePolicy,
    run_policy_episodes,
    shortest_path_steps,
)
from metarl.reference_policies.dream import distances_to_goals
from metarl.sampling import LocalSampler
from metarl.types import Task, Transition

DREAM_ENVS = ["dream-bus", "dream-map"]
#: the move from the start onto each coloured source stop
TO_SOURCE = {(4, 5): UP, (5, 4): RIGHT, (3, 4): LEFT, (4, 3): DOWN}
#: the move from each near-corner destination onto its corner
TO_CORNER = {(0, 1): ((0, 0), DOWN), (8, 7): ((8, 8), UP), (0, 7): ((0, 8), UP),
             (8, 1): ((8, 0), DOWN)}


def pos(obs) -> tuple[int, int]:
    fields = decode_observation(obs)
    return int(fields["x"]), int(fields["y"])


def task(name: str, problem: int) -> Task:
    return Task(name, {"problem": problem})


def env_on(name: str, problem: int, **kwargs):
    env = make(name, **kwargs)
    env.set_task(task(name, problem))
    return env


def exploit_reset(env, goal: int, max_seed: int = 200):
    """Reset with the first seed whose goal is ``goal`` (exploration_episodes=0)."""
    for seed in range(max_seed):
        obs, info = env.reset(seed=seed)
        if decode_observation(obs)["goal"] == goal:
            return obs
    raise AssertionError(f"no seed below {max_seed} draws goal {goal}")


def run(env, actions):
    out = [env.step(a) for a in actions]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out], [o[3] for o in out]


# --------------------------------------------------------------------------- API, splits
@pytest.mark.parametrize("name", DREAM_ENVS)
def test_spaces(name):
    """(gymnasium's ``check_env`` runs on every numpy env in tests/test_envs_numpy.py)"""
    env = gymnasium.make(f"metarl/{name}", render_mode="rgb_array").unwrapped
    dim = BUS_OBS_DIM if name == "dream-bus" else MAP_OBS_DIM
    assert env.observation_space.shape == (dim,) and env.action_space.n == 7
    assert env.max_episode_steps == 20 and env.exploration_episodes == 1
    assert env.metadata["render_fps"] > 0


def test_bus_splits_follow_the_reference():
    env = make("dream-bus")
    assert env.num_problems == 576
    np.testing.assert_array_equal(env.train_problems, np.arange(0, 576, 11))
    assert len(env.train_problems) == 53 and len(env.test_problems) == 523
    assert not set(env.train_problems) & set(env.test_problems)
    assert set(env.train_problems) | set(env.test_problems) == set(range(576))
    train = {t.params["problem"] for t in env.split_tasks("train", 500, seed=1)}
    test = {t.params["problem"] for t in env.split_tasks("test", 500, seed=1)}
    val = {t.params["problem"] for t in env.split_tasks("val", 500, seed=1)}
    sampled = {t.params["problem"] for t in env.sample_tasks(500, np.random.default_rng(0))}
    assert train <= set(env.train_problems) and sampled <= set(env.train_problems)
    assert len(train) > 45 and len(sampled) > 45
    assert test <= set(env.test_problems) and val <= set(env.test_problems)
    assert len(test) > 300
    tasks = env.split_tasks("test", 5, seed=2)
    assert [t.id for t in tasks] == list(range(5)) and tasks == env.split_tasks("test", 5, 2)


def test_map_splits_are_the_same_24():
    env = make("dream-map")
    assert env.num_problems == 24
    np.testing.assert_array_equal(env.train_problems, np.arange(24))
    np.testing.assert_array_equal(env.test_problems, np.arange(24))
    for split in ("train", "test"):
        assert {t.params["problem"] for t in env.split_tasks(split, 500)} == set(range(24))


@pytest.mark.parametrize("name, bad", [("dream-bus", 576), ("dream-bus", -1),
                                       ("dream-map", 24), ("dream-map", 1.5),
                                       ("dream-map", True)])
def test_set_task_rejects_bad_problems(name, bad):
    env = make(name)
    limit = 576 if name == "dream-bus" else 24
    with pytest.raises(ValueError, match=rf"problem must be an integer in \[0, {limit}\)"):
        env.set_task(task(name, bad))
    with pytest.raises(ValueError, match="problem"):
        env.set_task(Task(name, {}))
    with pytest.raises(ValueError, match=rf"\[0, {limit}\)"):
        env.vector(2).set_tasks([task(name, 0), task(name, bad)])


def test_kwargs_reach_clones_and_vector_envs():
    env = make("dream-map", horizon=12, exploration_episodes=2)
    assert env.init_kwargs == {"horizon": 12, "exploration_episodes": 2}
    clone = env._clone()
    assert clone.max_episode_steps == 12 and clone.exploration_episodes == 2
    vec = env.vector(3)
    assert isinstance(vec, VectorDreamGridEnv)
    assert vec.max_episode_steps == 12 and vec.exploration_episodes == 2
    for bad in ({"horizon": 0}, {"exploration_episodes": -1}):
        with pytest.raises(ValueError, match=">= "):
            make("dream-bus", **bad)


# --------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("name", DREAM_ENVS)
@pytest.mark.parametrize("problem", [0, 5, 11, 23])
@pytest.mark.parametrize("goal", range(4))
def test_scripted_optimal_exploitation_returns_0_8(name, problem, goal):
    problem = problem + (24 * 7 if name == "dream-bus" else 0)  # a useless permutation too
    env = env_on(name, problem, exploration_episodes=0)
    obs = exploit_reset(env, goal)
    assert decode_observation(obs)["exploring"] == 0
    corner = tuple(GOALS[goal])
    dest = next(d for d, (c, _) in TO_CORNER.items() if c == corner)
    dest_index = [tuple(d) for d in BUS_DESTINATIONS.tolist()].index(dest)
    source = tuple(BUS_SOURCES[list(BUS_PERMUTATIONS[problem % 24]).index(dest_index)])
    states, rewards, terms, truncs = run(env, [TO_SOURCE[source], RIDE_BUS,
                                              TO_CORNER[dest][1]])
    assert [pos(o) for o in states] == [source, dest, corner]
    np.testing.assert_allclose(rewards, [-0.1, -0.1, 1.0])
    assert terms == [False, False, True] and not any(truncs)
    assert sum(rewards) == pytest.approx(0.8)
    assert shortest_path_steps(problem, START, corner, name) == 3


@pytest.mark.parametrize("name", DREAM_ENVS)
def test_walking_to_a_corner_returns_0_3(name):
    env = env_on(name, 3, exploration_episodes=0)
    exploit_reset(env, 0)  # (0, 0)
    states, rewards, terms, _ = run(env, [LEFT] * 4 + [DOWN] * 4)
    assert pos(states[-1]) == (0, 0) and terms == [False] * 7 + [True]
    assert sum(rewards) == pytest.approx(0.3)
    dist = distances_to_goals(walking_table())
    assert dist[:, cell_index(*START)].tolist() == [8, 8, 8, 8]


@pytest.mark.parametrize("steps_before", [0, 4, 19])
def test_end_episode_penalty_makes_the_episode_return_minus_2(steps_before):
    env = env_on("dream-bus", 0, exploration_episodes=0)
    env.reset(seed=0)
    _, rewards, terms, truncs = run(env, [NOOP] * steps_before + [END_EPISODE])
    # -0.1 - 0.1 * steps_remaining (horizon - steps taken, this one included)
    assert rewards[-1] == pytest.approx(-0.1 - 0.1 * (20 - steps_before - 1))
    assert sum(rewards) == pytest.approx(-2.0)
    assert terms[-1] and not any(terms[:-1])
    assert truncs[-1] == (steps_before == 19)
    if steps_before == 0:
        assert rewards == [pytest.approx(-2.0)]


def test_end_penalty_scales_with_the_horizon():
    env = env_on("dream-map", 0, exploration_episodes=0, horizon=5)
    env.reset(seed=0)
    assert env.step(END_EPISODE)[1] == pytest.approx(-0.5)
    env.reset()
    _, rewards, _, truncs = run(env, [NOOP] * 5)
    assert truncs == [False] * 4 + [True] and sum(rewards) == pytest.approx(-0.5)


@pytest.mark.parametrize("name", DREAM_ENVS)
def test_exploration_episode_pays_nothing_and_has_no_goal(name):
    env = env_on(name, 7)
    obs, info = env.reset(seed=0)
    fields = decode_observation(obs)
    assert info == {"exploring": True}
    assert fields["goal"] == NO_GOAL and fields["exploring"] == 1
    np.testing.assert_array_equal(obs[20:25], [0, 0, 0, 0, 1])
    # walk through the corner (0, 0): not a goal while exploring
    states, rewards, terms, truncs = run(env, [LEFT] * 4 + [DOWN] * 4 + [UP] * 12)
    assert pos(states[7]) == (0, 0)
    assert rewards == [0.0] * 20 and not any(terms) and truncs == [False] * 19 + [True]
    assert all(decode_observation(o)["goal"] == NO_GOAL for o in states)
    env.reset(seed=0)
    assert env.step(END_EPISODE)[1:4] == (0.0, True, False)


def test_episodes_of_a_trial_explore_then_exploit():
    env = env_on("dream-bus", 0, exploration_episodes=2)

    def flags():
        return [env.reset()[1]["exploring"] for _ in range(4)]

    env.reset(seed=3)
    assert flags() == [True, False, False, False]  # episodes 1..4 of the trial
    env.set_task(task("dream-bus", 11))  # a new task starts a new trial
    assert flags() == [True, True, False, False]
    env.reset(seed=4)  # so does a seeded reset
    assert flags() == [True, False, False, False]
    goals = []
    for seed in range(40):
        env.reset(seed=seed)
        env.reset()
        obs, info = env.reset()
        goals.append(decode_observation(obs)["goal"])
        assert not info["exploring"]
    assert set(goals) == {0, 1, 2, 3}  # uniform over the corners, drawn from the seed


# --------------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("name", DREAM_ENVS)
@pytest.mark.parametrize("problem", [0, 9, 23])
def test_buses_follow_the_permutation_and_back(name, problem):
    env = env_on(name, problem)
    for i, source in enumerate(BUS_SOURCES.tolist()):
        env.reset(seed=0)
        dest = tuple(BUS_DESTINATIONS[BUS_PERMUTATIONS[problem][i]])
        states, *_ = run(env, [TO_SOURCE[tuple(source)], RIDE_BUS, RIDE_BUS])
        assert [pos(o) for o in states] == [tuple(source), dest, tuple(source)]
        assert all(decode_observation(o)["on_stop"] == 1 for o in states)
    env.reset(seed=0)
    obs, *_ = env.step(RIDE_BUS)  # not on a stop: nothing happens
    assert pos(obs) == START and decode_observation(obs)["on_stop"] == 0


@pytest.mark.parametrize("problem", [0, 24 * 5 + 3, 575])
def test_useless_buses_ride_to_edge_midpoints(problem):
    env = env_on("dream-bus", problem)
    useless = BUS_PERMUTATIONS[problem // 24]
    paths = {(5, 5): [UP, RIGHT], (3, 3): [DOWN, LEFT], (3, 5): [UP, LEFT],
             (5, 3): [DOWN, RIGHT]}
    for i, source in enumerate(DISTRACTOR_SOURCES.tolist()):
        env.reset(seed=0)
        states, *_ = run(env, paths[tuple(source)] + [RIDE_BUS, RIDE_BUS])
        dest = tuple(DISTRACTOR_DESTINATIONS[useless[i]])
        assert [pos(o) for o in states[1:]] == [tuple(source), dest, tuple(source)]
        assert decode_observation(states[2])["on_stop"] == 1
    env_map = env_on("dream-map", problem % 24)  # the map grid has no useless buses
    env_map.reset(seed=0)
    states, *_ = run(env_map, [UP, RIGHT, RIDE_BUS])
    assert pos(states[-1]) == (5, 5) and decode_observation(states[-1])["on_stop"] == 0


def test_moves_are_clipped_to_the_grid():
    env = env_on("dream-bus", 0)
    env.reset(seed=0)
    states, *_ = run(env, [LEFT] * 6 + [UP] * 6 + [RIGHT, DOWN])
    assert [pos(o) for o in states[3:6]] == [(0, 4)] * 3
    assert pos(states[11]) == (0, 8) and pos(states[13]) == (1, 7)


@pytest.mark.parametrize("problem", [0, 13, 23])
def test_map_tile_reveals_the_problem(problem):
    env = env_on("dream-map", problem)
    env.reset(seed=0)
    states, *_ = run(env, [RIGHT, RIGHT, RIGHT, DOWN, DOWN])
    assert pos(states[3]) == MAP_TILE
    assert [int(decode_observation(o)["map"]) for o in states] == [0, 0, 0, problem + 1, 0]
    assert states[3][27 + problem + 1] == 1.0 and states[3][27:].sum() == 1.0
    bus = env_on("dream-bus", problem)
    bus.reset(seed=0)
    obs = run(bus, [RIGHT, RIGHT, RIGHT, DOWN])[0][-1]
    assert obs.shape == (27,) and decode_observation(obs)["map"] == 0


def test_decode_observation_is_batched():
    layout = LAYOUTS["dream-map"]
    cells = np.array([0, 80, cell_index(*MAP_TILE), cell_index(4, 5)])
    obs = observations(layout, cells, np.array([0, 4, 2, 3]), False, np.array([3, 4, 5, 6]))
    fields = decode_observation(obs)
    assert fields["x"].tolist() == [0, 8, 7, 4] and fields["y"].tolist() == [0, 8, 3, 5]
    assert fields["on_stop"].tolist() == [0, 0, 0, 1]
    assert fields["goal"].tolist() == [0, 4, 2, 3] and fields["exploring"].tolist() == [0] * 4
    assert fields["map"].tolist() == [0, 0, 6, 0]
    assert (obs.sum(axis=1) == 6).all()  # six one-hots
    assert decode_observation(obs[:, :BUS_OBS_DIM])["map"].tolist() == [0] * 4


# --------------------------------------------------------------------------- vector env
@pytest.mark.parametrize("name", DREAM_ENVS)
def test_vector_env_equals_single_envs(name):
    """Random actions over a trial of three episodes; single env ``i`` is reset with the
    seed environment ``i``'s BatchRNG gives (as SerialVectorEnv does), then without."""
    num = 24
    env = make(name)
    problems = env.train_problems[np.arange(num) % len(env.train_problems)]
    tasks = [task(name, int(p)) for p in problems]
    vec = env.vector(num)
    vec.set_tasks(tasks)
    singles = [env_on(name, int(p)) for p in problems]
    seeds = BatchRNG(7, np.arange(num), "env").seeds()  # what the vector env uses
    rng = np.random.default_rng(0)
    goals, ended = [], 0
    for episode in range(3):
        obs, infos = vec.reset(seed=BatchRNG(7, np.arange(num), "env") if episode == 0
                               else None)
        single = [s.reset(seed=int(k) if episode == 0 else None) for s, k in
                  zip(singles, seeds, strict=True)]
        np.testing.assert_array_equal(obs, np.stack([o for o, _ in single]))
        assert infos["exploring"].tolist() == [i["exploring"] for _, i in single]
        goals.append(decode_observation(obs)["goal"])
        valid = np.ones(num, dtype=bool)
        for _ in range(env.max_episode_steps):
            actions = rng.choice(7, size=num, p=[0.19] * 5 + [0.04, 0.01])
            v_obs, v_rew, v_term, v_trunc, v_info = vec.step(actions)
            for i in np.flatnonzero(valid):
                o, r, te, tr, info = singles[i].step(actions[i])
                np.testing.assert_array_equal(v_obs[i], o)
                assert (v_rew[i], v_term[i], v_trunc[i]) == (r, te, tr)
                assert v_info["exploring"][i] == info["exploring"]
            ended += int(v_term[valid].sum())
            valid &= ~(v_term | v_trunc)
    assert (goals[0] == NO_GOAL).all()
    assert set(goals[1]) | set(goals[2]) == {0, 1, 2, 3}
    assert not np.array_equal(goals[1], goals[2])
    assert ended > 0


@pytest.mark.parametrize("name", DREAM_ENVS)
@pytest.mark.parametrize("baseline", ["random", "explore-exploit"])
def test_native_and_serial_samplers_agree(name, baseline):
    """The LocalSampler over the native vector env and over single envs (render=True uses a
    SerialVectorEnv) give identical rollouts, goal draws and goal hits included."""
    env = make(name)
    tasks = env.split_tasks("test", 6, seed=1)
    policy = BASELINES[name][baseline](env, 3)
    native = LocalSampler(env).sample(policy, tasks, trials=2, episodes=3, seed=5)
    serial = LocalSampler(env, render=True).sample(policy, tasks, trials=2, episodes=3,
                                                   seed=5)
    valid = native.valid
    np.testing.assert_array_equal(valid, serial.valid)  # steps after an episode ended differ
    for field in ("observations", "actions", "rewards", "next_observations", "terminated",
                  "truncated"):
        np.testing.assert_array_equal(getattr(native, field)[valid],
                                      getattr(serial, field)[valid])
    np.testing.assert_array_equal(native.infos["exploring"][valid],
                                  serial.infos["exploring"][valid])
    assert native.terminated[valid].any() and (native.rewards[valid] != 0).any()
    if baseline == "explore-exploit":
        assert (native.rewards[valid] == 1.0).sum() == 6 * 2 * 2  # every goal reached


def test_stepping_finished_vector_envs_is_harmless():
    vec = make("dream-bus", exploration_episodes=0).vector(2)
    vec.set_tasks([task("dream-bus", 0), task("dream-bus", 1)])
    vec.reset(seed=0)
    assert vec.step(np.array([END_EPISODE, NOOP]))[2].tolist() == [True, False]
    for _ in range(30):
        obs, reward, *_ = vec.step(np.array([END_EPISODE, RIDE_BUS]))
        assert np.isfinite(reward).all() and obs.shape == (2, 27)


# --------------------------------------------------------------------------- render
def test_render_shows_goal_map_and_agent():
    env = make("dream-map", render_mode="rgb_array", exploration_episodes=0)
    env.set_task(task("dream-map", 4))
    exploit_reset(env, 1)  # goal (8, 8): top right, y grows upwards
    image = env.render()
    px = image.shape[0] // 9
    assert tuple(image[px // 4, 8 * px + px // 4]) == (40, 170, 40)  # goal, outside its stop
    tile = (8 - MAP_TILE[1]) * px + px // 2, MAP_TILE[0] * px + px // 2
    assert tuple(image[tile]) == (0, 0, 0)
    agent = 4 * px + px // 2
    assert tuple(image[agent, agent]) == (220, 40, 40)
    env.step(RIGHT)
    assert tuple(env.render()[agent, agent]) != (220, 40, 40)
    assert not (image == DISTRACTOR_COLOR).all(axis=-1).any()  # no useless buses on the map


@pytest.mark.parametrize("problem", [0, 24 * 9 + 17])
def test_render_colours_each_route_and_the_useless_buses(problem):
    env = make("dream-bus", render_mode="rgb_array")
    env.set_task(task("dream-bus", problem))
    env.reset(seed=0)
    image = env.render()
    px = image.shape[0] // 9

    def center(position):
        return tuple(image[(8 - position[1]) * px + px // 2, position[0] * px + px // 2])

    for i, color in enumerate(BUS_COLORS):
        assert center(BUS_SOURCES[i]) == color
        assert center(BUS_DESTINATIONS[BUS_PERMUTATIONS[problem % 24][i]]) == color
    for position in [*DISTRACTOR_SOURCES, *DISTRACTOR_DESTINATIONS]:
        assert center(position) == DISTRACTOR_COLOR


# --------------------------------------------------------------------------- policies
@pytest.mark.parametrize("name", DREAM_ENVS)
def test_oracle_and_explorer_exploit_optimally(name):
    env = make(name)
    tasks = env.split_tasks("test", 50, seed=0)
    returns = {}
    for baseline in ("oracle", "explore-exploit", "random"):
        policy = BASELINES[name][baseline](env, 2)
        returns[baseline] = run_policy_episodes(policy, env, tasks, episodes=2, trials=2)
    for baseline in ("oracle", "explore-exploit"):
        np.testing.assert_allclose(returns[baseline][..., 0], 0.0)
        np.testing.assert_allclose(returns[baseline][..., 1], 0.8, atol=1e-6)
    assert returns["random"][..., 1].mean() < 0.0
    np.testing.assert_allclose(returns["random"][..., 0], 0.0)


@pytest.mark.parametrize("name, probe_steps", [("dream-bus", 11), ("dream-map", 5)])
def test_explorer_probes_within_the_horizon(name, probe_steps):
    env = make(name)
    tasks = env.split_tasks("test", 8, seed=3)
    rollouts = LocalSampler(env).sample(DreamExploreExploitPolicy(name), tasks, episodes=3)
    lengths = rollouts.valid.sum(axis=-1)  # [N, M, K]
    assert (lengths[..., 0] == probe_steps).all()
    assert (rollouts.actions[:, :, 0, probe_steps - 1] == END_EPISODE).all()
    assert (lengths[..., 1:] == 3).all()
    oracle = LocalSampler(env).sample(DreamOraclePolicy(name), tasks, episodes=3)
    assert (oracle.valid.sum(axis=-1)[..., 0] == 1).all()  # ends exploration at once


@pytest.mark.parametrize("name", DREAM_ENVS)
def test_explorer_without_exploration_walks(name):
    env = make(name, exploration_episodes=0)
    tasks = env.split_tasks("test", 10, seed=0)
    returns = run_policy_episodes(DreamExploreExploitPolicy(name), env, tasks, episodes=2)
    np.testing.assert_allclose(returns, 0.3, atol=1e-6)
    oracle = run_policy_episodes(DreamOraclePolicy(name), env, tasks, episodes=2)
    np.testing.assert_allclose(oracle, 0.8, atol=1e-6)


def test_explorer_learns_routes_from_observations_only():
    policy = DreamExploreExploitPolicy("dream-bus")
    env = make("dream-bus")
    tasks = env.split_tasks("test", 4, seed=0)
    rollouts = LocalSampler(env).sample(policy, tasks, episodes=1)
    state = policy.reset([Task("dream-bus", {})] * 4, 1, BatchRNG(0, np.arange(4)))
    assert (state.known == -1).all()
    for t in range(rollouts.valid.shape[-1]):
        step = Transition(rollouts.observations[:, 0, 0, t], rollouts.actions[:, 0, 0, t],
                          rollouts.rewards[:, 0, 0, t], rollouts.next_observations[:, 0, 0, t],
                          rollouts.terminated[:, 0, 0, t], rollouts.truncated[:, 0, 0, t],
                          rollouts.valid[:, 0, 0, t], t, 0)
        state = policy.observe(state, step)
    expected = BUS_PERMUTATIONS[[t.params["problem"] % 24 for t in tasks]]
    np.testing.assert_array_equal(state.known, expected)


# --------------------------------------------------------------------------- evaluation
class WalkingExplorer(DreamOraclePolicy):
    """The oracle, except that it walks left for the whole exploration episode."""

    def act(self, obs, state):
        action, state, extras = super().act(obs, state)
        exploring = torch.as_tensor(decode_observation(obs.numpy())["exploring"] == 1)
        return torch.where(exploring, LEFT, action), state, extras


@pytest.mark.parametrize("episodes", [2, 3])
def test_evaluate_policy_reports_the_exploitation_return(episodes):
    env = make("dream-bus")
    sampler = LocalSampler(env)
    result = evaluate_policy(WalkingExplorer("dream-bus"), env, sampler, split="test",
                             num_tasks=6, episodes=episodes, trials=2, seed=0)
    assert result["env_steps"] == 6 * 2 * (20 + 3 * (episodes - 1))  # 20 exploring steps
    assert result["exploitation_return"] == pytest.approx(0.8 * (episodes - 1), abs=1e-5)
    assert result["returns_per_episode"][0] == 0.0
    assert result["exploitation_return_stderr"] == pytest.approx(0.0, abs=1e-6)
    assert result["summary"]["exploitation_return"] == result["exploitation_return"]
    assert "exploitation_return_stderr" in result["summary"]


def test_exploitation_return_leaves_out_exploration_episodes():
    """A bandit marked as exploring its first episode: its reward must not count."""
    env = make("bandit")
    policy = BASELINES["bandit"]["random"](env, 3)
    plain = evaluate_policy(policy, env, LocalSampler(env), split="test", num_tasks=40,
                            episodes=3, trials=2, seed=1)
    assert "exploitation_return" not in plain and "exploitation_return" not in plain["summary"]
    env.exploration_episodes = 1
    result = evaluate_policy(policy, env, LocalSampler(env), split="test", num_tasks=40,
                             episodes=3, trials=2, seed=1)
    tasks = env.split_tasks("test", 40, seed=1)
    returns = run_policy_episodes(policy, env, tasks, episodes=3, trials=2,
                                  seed=1 + EVAL_SEED_OFFSET)
    per_task = returns[:, :, 1:].sum(-1).mean(1)
    assert result["exploitation_return"] == pytest.approx(per_task.mean())
    assert result["exploitation_return_stderr"] == pytest.approx(
        per_task.std(ddof=1) / np.sqrt(40))
    assert result["exploitation_return"] != pytest.approx(result["trial_return"])
    assert result["trial_return"] == plain["trial_return"]  # everything else unchanged
