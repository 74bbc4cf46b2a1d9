"""Sampler shapes, masking, same-seed determinism and Local-vs-Ray equality."""

import numpy as np
import pytest
import torch

from metarl.envs import make
from metarl.policy import StatelessPolicy
from metarl.sampling import LocalSampler


class RandomPolicy(StatelessPolicy):
    def __init__(self, n: int):
        self.n = n

    def act(self, obs, rng):
        return torch.as_tensor(rng.integers(self.n, size=obs.shape[0])), rng, {
            "obs_sum": obs.sum(-1)}


class RecordingPolicy(RandomPolicy):
    """Records the hook calls to check the order the sampler makes them in."""

    def __init__(self, n: int):
        super().__init__(n)
        self.calls: list[str] = []

    def reset(self, tasks, trials, rng):
        self.calls.append(f"reset:{len(tasks)}x{trials}")
        return rng

    def observe(self, state, step):
        self.calls.append(f"observe:{step.episode}.{step.step}")
        return state

    def end_episode(self, state, episode):
        self.calls.append(f"end:{episode.shape}")
        return state


def test_shapes_masks_and_extras():
    env = make("tabular-mdp", horizon=4)
    tasks = env.split_tasks("train", 3)
    r = LocalSampler(env).sample(RandomPolicy(5), tasks, trials=2, episodes=3, seed=0)
    assert r.shape == (3, 2, 3, 4)
    assert r.observations.shape == (3, 2, 3, 4, 10)
    assert r.valid.all() and r.truncated[..., -1].all() and not r.truncated[..., :-1].any()
    assert r.extras["obs_sum"].shape == (3, 2, 3, 4)
    assert np.allclose(r.extras["obs_sum"], 1.0)  # one-hot observations
    assert r.infos["state"].shape == (3, 2, 3, 4)
    assert r.tasks == tuple(tasks)
    # next observation of step t is the observation of step t+1 within an episode
    assert np.array_equal(r.next_observations[..., :-1, :], r.observations[..., 1:, :])


def test_hook_order():
    env = make("tabular-mdp", horizon=2)
    policy = RecordingPolicy(5)
    LocalSampler(env).sample(policy, env.split_tasks("train", 2), trials=1, episodes=2, seed=0)
    assert policy.calls == ["reset:2x1", "observe:0.0", "observe:0.1", "end:(2, 1, 1, 2)",
                            "observe:1.0", "observe:1.1", "end:(2, 1, 1, 2)"]


def test_early_termination_is_masked():
    env = make("bandit", arms=3)
    r = LocalSampler(env).sample(RandomPolicy(3), env.split_tasks("train", 4), episodes=5, seed=1)
    assert r.shape == (4, 1, 5, 1) and r.valid.all() and r.terminated.all()
    maze = make("maze")
    r = LocalSampler(maze).sample(RandomPolicy(4), maze.split_tasks("train", 8), episodes=2,
                                  seed=1)
    ended = r.terminated.any(-1)
    for idx in zip(*np.nonzero(ended), strict=True):
        stop = int(np.argmax(r.terminated[idx]))
        assert r.valid[idx][: stop + 1].all() and not r.valid[idx][stop + 1:].any()
        assert (r.rewards[idx][stop + 1:] == 0).all()


def test_same_seed_same_rollouts_and_different_seed_differs():
    env = make("tabular-mdp")
    tasks = env.split_tasks("train", 5)
    sampler = LocalSampler(env)
    a = sampler.sample(RandomPolicy(5), tasks, trials=2, episodes=2, seed=3)
    b = sampler.sample(RandomPolicy(5), tasks, trials=2, episodes=2, seed=3)
    c = sampler.sample(RandomPolicy(5), tasks, trials=2, episodes=2, seed=4)
    assert np.array_equal(a.rewards, b.rewards) and np.array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    # trials of the same task are independent streams
    assert not np.array_equal(a.actions[:, 0], a.actions[:, 1])


def test_results_do_not_depend_on_batch_composition():
    env = make("tabular-mdp")
    tasks = env.split_tasks("train", 6)
    sampler = LocalSampler(env)
    whole = sampler.sample(RandomPolicy(5), tasks, trials=2, episodes=2, seed=9)
    part = sampler.sample(RandomPolicy(5), tasks[2:5], trials=2, episodes=2, seed=9,
                          task_offset=2)
    assert np.array_equal(whole.rewards[2:5], part.rewards)
    assert np.array_equal(whole.observations[2:5], part.observations)


def test_local_and_ray_samplers_agree(ray_local):
    from helpers import local_and_ray_rollouts

    from metarl.agents.rl2 import RL2Agent, RL2Config

    env = make("tabular-mdp", horizon=5)
    torch.manual_seed(0)
    agent = RL2Agent(env, RL2Config(episodes_per_trial=2, hidden_size=16))
    tasks = env.split_tasks("train", 5)
    local, remote = local_and_ray_rollouts(env, agent.policy(), tasks, trials=2, episodes=2,
                                           seed=11)
    for name in ("observations", "actions", "rewards", "next_observations", "valid",
                 "terminated", "truncated"):
        assert np.array_equal(getattr(local, name), getattr(remote, name)), name
    assert np.allclose(local.extras["log_prob"], remote.extras["log_prob"], atol=1e-6)
    assert remote.tasks == local.tasks


def test_ray_sampler_rejects_bad_counts_before_starting_ray():
    pytest.importorskip("ray")
    from metarl.sampling.ray_sampler import RaySampler

    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        RaySampler(make("bandit"), workers=0)
    with pytest.raises(ValueError, match="max_retries must be >= 0, got -1"):
        RaySampler(make("bandit"), max_retries=-1)


@pytest.mark.parametrize("name", ["bandit", "tabular-mdp", "maze", "maze-sign", "point-nav",
                                  "dream-bus", "dream-map"])
def test_vector_env_is_used_for_numpy_envs(name):
    from metarl.envs_api import SerialVectorEnv

    assert not isinstance(make(name).vector(4), SerialVectorEnv)


def test_serial_vector_env_matches_native_vector_env():
    from metarl.envs_api import SerialVectorEnv

    env = make("point-nav")
    tasks = env.split_tasks("train", 3)
    native, serial = env.vector(3), SerialVectorEnv([lambda: make("point-nav")] * 3)
    for venv in (native, serial):
        venv.set_tasks(tasks)
    obs_a, _ = native.reset(seed=0)
    obs_b, _ = serial.reset(seed=0)
    assert np.allclose(obs_a, obs_b)
    actions = np.random.default_rng(0).uniform(-0.2, 0.2, size=(5, 3, 2))
    for a in actions:
        out_a, out_b = native.step(a), serial.step(a)
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            assert np.allclose(x, y)
