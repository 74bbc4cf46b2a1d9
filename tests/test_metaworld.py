"""The Meta-World adapter (``metaworld-ml1`` / ``metaworld-ml10``, the ``metaworld`` extra).

Most tests need Meta-World (its own virtualenv: it pins mujoco==3.3.0; see the README) and
skip without it; the missing-extra error and the lazy import are tested everywhere.
"""

from __future__ import annotations

import builtins
import ctypes.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box
from helpers import UNBOUNDED_BOX_WARNINGS, unexpected_check_env_warnings

from metarl.cli import main
from metarl.envs import REGISTRY, make
from metarl.policy import StatelessPolicy
from metarl.sampling import LocalSampler
from metarl.types import Task

# Meta-World's observation space: unbounded object entries, a goal slot fixed at zero
SPACE_WARNINGS = (*UNBOUNDED_BOX_WARNINGS,
                  "observation space maximum and minimum values are equal")


class RandomPolicy(StatelessPolicy):
    """Uniform actions in [-1, 1]^4 from the sampler's per-environment streams."""

    def act(self, obs, rng):
        return torch.as_tensor(rng.uniform(-1, 1, size=(obs.shape[0], 4))), rng, {}


# `pytest.importorskip("metaworld")` as fixtures, not at module level: the missing-extra tests
# below must run where Meta-World is absent.
@pytest.fixture(scope="module")
def metaworld():
    return pytest.importorskip("metaworld")


@pytest.fixture(scope="module")
def ml1(metaworld):
    return make("metaworld-ml1")


@pytest.fixture(scope="module")
def ml10(metaworld):
    return make("metaworld-ml10", max_episode_steps=20)


def rand_vecs(tasks) -> list[tuple[float, ...]]:
    return [tuple(t.params["rand_vec"]) for t in tasks]


def rollout(env, task: Task, steps: int = 5, seed: int = 0) -> np.ndarray:
    env.set_task(task)
    obs = [env.reset(seed=seed)[0]]
    for action in np.random.default_rng(seed).uniform(-1, 1, size=(steps, 4)):
        obs.append(env.step(action)[0])
    return np.array(obs)


# ------------------------------------------------------------- without Meta-World
def test_registered_lazily_without_importing_metaworld():
    assert sorted(n for n, s in REGISTRY.items() if s.family == "metaworld") == [
        "metaworld-ml1", "metaworld-ml10"]
    code = ("import sys, metarl.envs, metarl.envs.metaworld_adapter; "
            "assert 'metaworld' not in sys.modules and 'mujoco' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["metaworld-ml1", "metaworld-ml10"])
def test_missing_extra_is_one_clear_error(name, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # `import metaworld` now fails
    with pytest.raises(ImportError) as caught:
        make(name)
    message = (f'{name} needs the metaworld extra: pip install "metarl[metaworld]" '
               f"(it pins mujoco==3.3.0)")
    assert str(caught.value) == message and isinstance(caught.value, ValueError)
    assert main(["train", "rl2", name, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_broken_install_is_one_clear_error(monkeypatch):
    real_import = builtins.__import__

    def broken_import(name, *args, **kwargs):
        if name == "metaworld":  # what a MuJoCo 4 -> 3.3 downgrade in place leaves behind
            raise OSError("libmujoco.so.4.0.0: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken_import)
    with pytest.raises(ValueError, match=r"metaworld-ml1: importing metaworld failed \(OSError: "
                       r"libmujoco.so.4.0.0.*pip uninstall -y mujoco mujoco-core mujoco-studio"):
        make("metaworld-ml1")


# ------------------------------------------------------------------------ the API
def test_check_env_ml1(ml1):
    assert unexpected_check_env_warnings(ml1, SPACE_WARNINGS) == []
    assert ml1.max_episode_steps == type(ml1).max_episode_steps == 500
    assert ml1.observation_space.shape == (39,)
    assert ml1.action_space == Box(-1.0, 1.0, (4,), np.float32)
    assert ml1.init_kwargs == {"task_name": "reach-v3", "benchmark_seed": 0,
                               "max_episode_steps": 500, "width": 480, "height": 480,
                               "camera_name": None}


def test_ml1_splits_are_metaworlds_own(ml1, metaworld):
    bench = metaworld.ML1("reach-v3", seed=0)
    for split, mw_tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        tasks = ml1.split_tasks(split, 50, seed=0)
        assert [t.id for t in tasks] == list(range(50))
        assert all(t.env == "metaworld-ml1" and t.params["env_name"] == "reach-v3"
                   for t in tasks)
        want = {tuple(pickle.loads(t.data)["rand_vec"]) for t in mw_tasks}
        assert set(rand_vecs(tasks)) == want  # all 50, none twice
    train, test = ml1.split_tasks("train", 50), ml1.split_tasks("test", 50)
    assert not set(rand_vecs(train)) & set(rand_vecs(test))  # different goal positions
    assert set(rand_vecs(ml1.sample_tasks(20, np.random.default_rng(1)))) <= set(
        rand_vecs(train))


@pytest.mark.parametrize("which", ["ml1", "ml10"])
def test_splits_reproducible(which, request):
    env = request.getfixturevalue(which)
    train = env.split_tasks("train", 12, seed=3)
    assert train == env.split_tasks("train", 12, seed=3)
    assert train != env.split_tasks("train", 12, seed=4)
    assert train != env.split_tasks("test", 12, seed=3)
    assert env.sample_tasks(5, np.random.default_rng(0)) == env.sample_tasks(
        5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="train and test splits only"):
        env.split_tasks("val", 2)


def test_ml10_test_classes_are_held_out(ml10, metaworld):
    train_classes = set(metaworld.env_dict.ML10_V3["train"])
    test_classes = set(metaworld.env_dict.ML10_V3["test"])
    assert len(train_classes) == 10 and len(test_classes) == 5
    assert not train_classes & test_classes
    train = ml10.split_tasks("train", 30, seed=0)
    test = ml10.split_tasks("test", 10, seed=0)
    sampled = ml10.sample_tasks(40, np.random.default_rng(0))
    names = lambda tasks: [t.params["env_name"] for t in tasks]
    assert set(names(train)) == set(names(sampled)) == train_classes
    assert set(names(test)) == test_classes
    # class-balanced draws: every test class twice, every train class four times
    assert sorted(names(test)) == sorted(list(test_classes) * 2)
    assert sorted(names(sampled)) == sorted(list(train_classes) * 4)


def test_ml10_shares_spaces_and_keeps_one_env_per_class(ml10):
    tasks = ml10.split_tasks("train", 10) + ml10.split_tasks("test", 5)
    for task in tasks:  # raises if a class had different spaces
        obs = rollout(ml10, task, steps=1)
        assert obs.shape == (2, 39) and ml10.observation_space.contains(obs[0])
    envs = dict(ml10._envs)
    assert len(envs) == 15
    for task in tasks[:3]:
        rollout(ml10, task, steps=1)
    assert all(ml10._envs[name] is env for name, env in envs.items())


@pytest.mark.parametrize(("which", "split"), [("ml1", "train"), ("ml10", "test")])
def test_json_round_trip_same_behaviour(which, split, request):
    env = request.getfixturevalue(which)
    task = env.split_tasks(split, 3, seed=0)[2]
    copy = Task.from_json(task.to_json())
    assert copy == task
    fresh = make(env.name, **env.init_kwargs)
    np.testing.assert_array_equal(rollout(env, task, seed=5), rollout(fresh, copy, seed=5))
    # Meta-World's reset is deterministic given the task, whatever the seed
    np.testing.assert_array_equal(rollout(env, task, 0, seed=0), rollout(fresh, copy, 0, seed=9))


def test_same_as_metaworlds_own_env(ml1, metaworld):
    bench = metaworld.ML1("reach-v3", seed=0)
    mw_task = bench.test_tasks[7]
    rand_vec = pickle.loads(mw_task.data)["rand_vec"]
    assert tuple(rand_vec) in rand_vecs(ml1.split_tasks("test", 50))
    mw_env = bench.test_classes["reach-v3"]()
    mw_env.set_task(mw_task)
    ml1.set_task(Task("metaworld-ml1", {"env_name": "reach-v3", "rand_vec": rand_vec.tolist()}))
    np.testing.assert_array_equal(ml1.reset(seed=0)[0], mw_env.reset()[0])
    for action in np.random.default_rng(0).uniform(-1, 1, size=(5, 4)):
        ours, theirs = ml1.step(action), mw_env.step(action)
        np.testing.assert_array_equal(ours[0], theirs[0])
        assert ours[1:4] == theirs[1:4] and ours[4]["success"] == theirs[4]["success"]


@pytest.mark.parametrize(("which", "params", "needle"), [
    ("ml1", {"env_name": "push-v3", "rand_vec": [0.0] * 6}, "env_name"),
    ("ml1", {"rand_vec": [0.0] * 6}, "env_name"),
    ("ml1", {"env_name": "reach-v3", "rand_vec": [0.0] * 3}, "rand_vec"),
    ("ml1", {"env_name": "reach-v3"}, "rand_vec"),
    ("ml1", {"env_name": "reach-v3", "rand_vec": [float("nan")] * 6}, "rand_vec"),
    ("ml1", {"env_name": "reach-v3", "rand_vec": [5.0] * 6}, "rand_vec"),
    ("ml10", {"env_name": "reach-wall-v3", "rand_vec": [0.0] * 6}, "env_name"),
])
def test_bad_tasks_rejected(which, params, needle, request):
    env = request.getfixturevalue(which)
    with pytest.raises(ValueError, match=f"{env.name} task {needle}"):
        env.set_task(Task(env.name, params))


def test_bad_arguments_rejected(metaworld):
    with pytest.raises(ValueError, match="unknown Meta-World task 'reach-v2'"):
        make("metaworld-ml1", task_name="reach-v2")
    with pytest.raises(ValueError, match="max_episode_steps"):
        make("metaworld-ml1", max_episode_steps=0)


def test_clones_and_pickles_keep_arguments(metaworld):
    env = make("metaworld-ml1", task_name="push-v3", max_episode_steps=7)
    vec = env.vector(2)
    assert vec.max_episode_steps == 7
    assert all(e.init_kwargs == env.init_kwargs for e in vec.envs)
    env.set_task(env.split_tasks("test", 1)[0])
    copy = pickle.loads(pickle.dumps(env))
    assert copy.task == env.task and copy.init_kwargs == env.init_kwargs
    np.testing.assert_array_equal(copy.reset(seed=0)[0], env.reset(seed=0)[0])


# ------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("which", ["ml1", "ml10"])
def test_local_sampler_random_policy(which, request):
    env = request.getfixturevalue(which)
    env = make(env.name, **{**env.init_kwargs, "max_episode_steps": 20})
    tasks = env.split_tasks("train", 2)
    r = LocalSampler(env).sample(RandomPolicy(), tasks, trials=1, episodes=1, seed=0)
    assert r.shape == (2, 1, 1, 20) and r.valid.all()
    assert r.truncated[..., -1].all() and not r.truncated[..., :-1].any()
    assert not r.terminated.any() and np.isfinite(r.rewards).all()
    assert r.observations.shape == (2, 1, 1, 20, 39) and r.actions.shape == (2, 1, 1, 20, 4)
    assert r.infos["success"].dtype == np.float64
    assert set(np.unique(r.infos["success"])) <= {0.0, 1.0}
    assert {"near_object", "grasp_success", "obj_to_target"} <= set(r.infos)
    again = LocalSampler(env).sample(RandomPolicy(), tasks, trials=1, episodes=1, seed=0)
    np.testing.assert_array_equal(r.observations, again.observations)
    np.testing.assert_array_equal(r.rewards, again.rewards)


def test_render_rgb_array(metaworld):
    backend = os.environ.get("MUJOCO_GL", "osmesa")
    if backend == "osmesa" and ctypes.util.find_library("OSMesa") is None:
        pytest.skip("offscreen MuJoCo rendering needs libosmesa6 for MUJOCO_GL=osmesa")
    env = make("metaworld-ml1", render_mode="rgb_array", width=64, height=48,
               max_episode_steps=5)
    env.reset(seed=0)
    try:
        frame = env.render()
    except Exception as error:  # no usable OpenGL context on this machine
        env.close()
        pytest.skip(f"offscreen MuJoCo rendering unavailable: {error}")
    env.close()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 10
