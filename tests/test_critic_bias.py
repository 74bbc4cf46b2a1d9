"""experiments/critic_bias.py and RL2Agent.trial_values on a tiny tabular-MDP run."""

import numpy as np
import torch
from helpers import load_experiment

import metarl
from metarl.cli import main
from metarl.nn.losses import discounted_returns


def test_episode_means_split_the_trial_into_its_episodes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "rl2", "tabular-mdp", "--iterations", "1", "--run-dir", str(run_dir),
                 "--set", "tasks_per_iteration=4", "hidden_size=8", "episodes_per_trial=3",
                 "eval_tasks=2"]) == 0
    run = metarl.load(run_dir)
    means = load_experiment("critic_bias").episode_means(run, tasks=5, seed=0)
    assert set(means) == {"value", "mc_return", "lambda_return", "advantage"}
    assert all(col.shape == (3,) for col in means.values())
    # GAE's value targets are advantage + value, step by step and so per episode
    np.testing.assert_allclose(means["lambda_return"], means["advantage"] + means["value"],
                               rtol=1e-5, atol=1e-4)
    # the Monte Carlo column is the trials' own return: another critic changes only the rest
    with torch.no_grad():
        for param in run.agent.value_net.parameters():
            param.add_(0.5)
    moved = load_experiment("critic_bias").episode_means(run, tasks=5, seed=0)
    np.testing.assert_array_equal(moved["mc_return"], means["mc_return"])
    assert not np.allclose(moved["value"], means["value"])


def test_trial_values_are_in_reward_units_per_step():
    from metarl.agents.rl2 import RL2Agent, RL2Config
    from metarl.envs import make
    from metarl.sampling import LocalSampler

    env = make("tabular-mdp")
    agent = RL2Agent(env, RL2Config(hidden_size=8, episodes_per_trial=2))
    agent.value_norm.mean.fill_(50.0)
    agent.value_norm.var.fill_(100.0)
    tasks = env.sample_tasks(3, np.random.default_rng(0))
    seq = LocalSampler(env).sample(agent.policy(), tasks, episodes=2, seed=0).trial_sequences()
    values = agent.trial_values(seq)
    assert values.shape == seq.rewards.shape
    raw = agent.value_net(agent.inputs.from_sequences(seq))[0].squeeze(-1)
    torch.testing.assert_close(values, raw.detach() * 10.0 + 50.0)
    # and the diagnostic's Monte Carlo column is the discounted reward-to-go
    rewards = torch.as_tensor(seq.rewards, dtype=torch.float32)
    mc = discounted_returns(rewards, torch.as_tensor(seq.mask), 0.5)
    torch.testing.assert_close(mc[:, -1], rewards[:, -1])
