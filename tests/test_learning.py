"""Learning tests on tiny problems (slow: excluded from the default run)."""

import numpy as np
import pytest
import torch

from metarl.agents.rl2 import RL2Agent, RL2Config
from metarl.envs import make
from metarl.reference_policies import BASELINES, run_policy
from metarl.sampling import LocalSampler


@pytest.mark.slow
def test_rl2_learns_two_armed_bandit_beyond_random():
    env = make("bandit", arms=2)
    torch.manual_seed(0)
    agent = RL2Agent(env, RL2Config(episodes_per_trial=10, tasks_per_iteration=128,
                                    hidden_size=32, lr=3e-3, value_lr=3e-3))
    sampler = LocalSampler(env)
    for it in range(60):
        agent.train_iteration(sampler, np.random.default_rng(it))
    tasks = env.split_tasks("test", 500)
    learned = run_policy(agent.policy(), env, tasks, 10, seed=0).mean()
    random = run_policy(BASELINES["bandit"]["random"](env, 10), env, tasks, 10, seed=0).mean()
    gittins = run_policy(BASELINES["bandit"]["gittins"](env, 10), env, tasks, 10, seed=0).mean()
    assert learned > random + 0.5 * (gittins - random), (learned, random, gittins)
