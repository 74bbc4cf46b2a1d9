"""The sampler benchmark's breakdown (where a Ray ``sample`` call's time goes, the local
sampler's per-step costs) and the Ray sampler's placement options. No speed is asserted here:
speed belongs in ``metarl bench sampler``; these check that the records are consistent."""

import json

import numpy as np

from metarl.benchmarks.sampler import (
    _TimedEnv,
    benchmark_policy,
    run,
    step_breakdown,
    timed_policy,
)
from metarl.envs import make
from metarl.sampling import LocalSampler
from metarl.types import STEP_FIELDS


def _policy(env):
    return benchmark_policy(int(np.prod(env.observation_space.shape)),
                            int(np.prod(env.action_space.shape)))


def test_ray_sample_timing_is_consistent(ray_local):
    from metarl.sampling.ray_sampler import RaySampler

    env = make("point-nav")
    tasks = env.split_tasks("train", 5)
    sampler = RaySampler(env, workers=2)
    try:
        assert sampler.last_timing is None
        rollouts = sampler.sample(_policy(env), tasks, trials=2, episodes=2, seed=1)
        timing = sampler.last_timing
    finally:
        sampler.close()
    assert timing is not None
    assert len(timing.busy_s) == len(timing.start_s) == len(timing.return_s) == 2
    assert all(0 < busy <= timing.wall_s for busy in timing.busy_s)
    assert 0 <= timing.put_policy_s <= timing.wall_s
    assert 0 <= timing.concatenate_s <= timing.wall_s
    assert 0 <= timing.idle_fraction < 1
    # the shards' arrays, of 2 and 3 tasks, are exactly the call's result
    assert sum(timing.result_bytes) == rollouts.nbytes
    assert timing.result_bytes[0] * 5 == rollouts.nbytes * 2
    record = timing.as_dict()
    assert record["idle_fraction"] == timing.idle_fraction and "busy_s" in record
    json.dumps(record)


def test_timed_policy_and_env_leave_the_rollouts_unchanged():
    env = make("point-nav")
    tasks = env.split_tasks("train", 3)
    policy = _policy(env)
    plain = LocalSampler(make("point-nav")).sample(policy, tasks, trials=2, episodes=2, seed=4)
    timed_env, timed = _TimedEnv(make("point-nav")), timed_policy(policy)
    rollouts = LocalSampler(timed_env).sample(timed, tasks, trials=2, episodes=2, seed=4)
    for name in STEP_FIELDS:
        assert np.array_equal(getattr(plain, name), getattr(rollouts, name)), name
    assert timed.seconds > 0 and timed_env.vectors[0].seconds > 0
    # the sampler takes the policy's own path: it acts through the timed act_numpy
    from metarl.sampling.local import _numpy_act

    assert isinstance(timed, type(policy)) and _numpy_act(timed).__func__ is type(timed).act_numpy


def test_step_breakdown_splits_a_call_per_lockstep_step():
    env = make("cheetah-vel", horizon=5)
    tasks = env.split_tasks("train", 3)
    record = step_breakdown(env, _policy(env), tasks, episodes=2)
    assert record["envs"] == 3
    assert record["policy"] > 0 and record["env"] > 0 and record["sampler"] > 0


def test_bench_run_reports_where_the_time_goes(ray_local):
    result = run("cheetah-vel", workers=2, tasks=4, episodes=1, steps=5, repeats=1)
    assert result["env_steps"] == 4 * 5 and result["ray_nodes"] == 1
    assert [row["envs"] for row in result["local_step_us"]] == [4, 2]
    breakdown = result["ray_breakdown"]
    assert len(breakdown["worker_busy_s"]) == 2
    assert all(busy <= breakdown["wall_s"] for busy in breakdown["worker_busy_s"])
    assert 0 <= breakdown["idle_fraction"] < 1
    assert set(result["per_step_us"]) == {"fixed", "per_env"}
    json.dumps(result)
