"""DREAM: its losses and rewards against hand-worked values, the policy's switch from
exploration to exploitation in the Policy hooks, and CLI runs with exact resume."""

import csv
import json

import numpy as np
import pytest
import torch

from metarl.agents.dream.networks import (
    TrajectoryDecoder,
    bottleneck_loss,
    decoder_loss,
    episode_tensors,
    information_gain_rewards,
    squared_distances,
)
from metarl.cli import main

TINY = ["envs_per_iteration=4", "batch_size=4", "exploit_min_replay=4", "explore_min_replay=4",
        "embed_dim=8", "hidden_size=8", "decoder_hidden=8", "target_sync=20", "eval_tasks=4",
        "epsilon_steps=100"]


def rows_without_time(run_dir):
    with (run_dir / "progress.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def test_information_gain_rewards_telescope_to_the_total_decrease():
    distances = torch.tensor([[5.0, 3.0, 2.5, 2.5, 9.0], [4.0, 1.0, 7.0, 7.0, 7.0]])
    lengths = torch.tensor([3, 1])
    rewards = information_gain_rewards(distances, lengths, penalty=0.1)
    expected = torch.tensor([[5 - 3 - 0.1, 3 - 2.5 - 0.1, 2.5 - 2.5 - 0.1, 0.0],
                             [4 - 1 - 0.1, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    # the sum is d_0 - d_L - penalty * L whatever happens in between
    torch.testing.assert_close(rewards.sum(1), torch.tensor([5 - 2.5 - 0.3, 4 - 1 - 0.1]))


def test_bottleneck_only_penalises_norms_above_the_cutoff():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)  # ||f||² = 5, 25
    loss = bottleneck_loss(f, cutoff=10.0)
    assert loss.item() == pytest.approx((10 + 25) / 2)
    loss.backward()
    torch.testing.assert_close(f.grad, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))  # d/df ||f||²/2


def test_episode_tensors_and_decoder_loss_by_hand():
    obs = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    next_obs = obs + 100
    valid = np.array([[True, True, False], [True, True, True]])
    actions = np.array([[1, 2, 5], [3, 4, 6]])
    seq, acts, lengths = episode_tensors(obs, actions, next_obs, valid)
    assert lengths.tolist() == [2, 3]
    torch.testing.assert_close(seq[0], torch.tensor([[0.0, 1], [2, 3], [102, 103], [0, 0]]))
    torch.testing.assert_close(seq[1, 3], torch.tensor([110.0, 111]))
    assert acts.tolist() == [[1, 2, 0], [3, 4, 6]]

    g = torch.zeros(2, 4, 1)
    g[0, :, 0] = torch.tensor([1.0, 2.0, 3.0, 99.0])  # the last prefix is padding
    g[1, :, 0] = torch.tensor([0.0, 0.0, 0.0, 4.0])
    f = torch.tensor([[1.0], [2.0]])
    # prefixes t = 0..L: (0 + 1 + 4) and (4 + 4 + 4 + 4), over 3 + 4 prefixes
    assert decoder_loss(g, f, lengths).item() == pytest.approx((5 + 16) / 7)
    torch.testing.assert_close(squared_distances(g, f)[0], torch.tensor([0.0, 1, 4, 98**2]))


def test_decoder_prefixes_do_not_see_later_steps():
    torch.manual_seed(0)
    decoder = TrajectoryDecoder(5, 7, 6, hidden_size=8)
    obs, actions = torch.randn(3, 5, 5), torch.randint(7, (3, 4))
    g = decoder(obs, actions)
    changed_obs, changed_actions = obs.clone(), actions.clone()
    changed_obs[:, 3:], changed_actions[:, 2:] = 0.0, 0
    g2 = decoder(changed_obs, changed_actions)
    torch.testing.assert_close(g[:, :3], g2[:, :3])  # g_t reads transitions 0..t-1
    assert not torch.allclose(g[:, 3], g2[:, 3])
    torch.testing.assert_close(g[0, 0], g[1, 0])  # g_0: nothing explored yet


def tiny_agent(env="dream-bus", **settings):
    import metarl.agents as agents
    from metarl.config import build_config, parse_overrides

    agent_cls, config_cls = agents.get("dream").load()
    values = {"agent": "dream", "env": env, **parse_overrides(TINY), **settings}
    config = build_config(values, config_cls, agent_cls.env_factory(env))
    made = agent_cls.make_env(env, config.env_kwargs, config.agent_config)
    return agent_cls(made, config.agent_config), made


def test_policy_explores_then_exploits_on_the_decoded_z():
    """The exploration episode acts with the exploration network; z at the switch is g of
    that episode; the exploitation episode acts greedily on Q(s, z)."""
    from metarl.agents.dream.policy import explorer_inputs
    from metarl.sampling import LocalSampler

    agent, env = tiny_agent()
    torch.manual_seed(0)
    policy = agent.policy()
    seen = []

    class Spy:  # records z and the networks' greedy actions as the sampler drives the policy
        device = policy.device

        def reset(self, *args):
            return policy.reset(*args)

        def act(self, obs, state):
            action, state, extras = policy.act(obs, state)
            seen.append((state.episode, obs.clone(), state.prev_action.clone(),
                         None if state.z is None else state.z.clone(), action))
            return action, state, extras

        def observe(self, state, step):
            return policy.observe(state, step)

        def end_episode(self, state, episode):
            return policy.end_episode(state, episode)

    tasks = env.split_tasks("test", 3)
    rollouts = LocalSampler(env).sample(Spy(), tasks, episodes=2, seed=0)
    explore = [s for s in seen if s[0] == 0]
    exploit = [s for s in seen if s[0] == 1]
    assert explore and exploit and all(s[3] is None for s in explore)
    ep = rollouts.select_episodes([0])
    obs, actions, lengths = episode_tensors(
        ep.observations.reshape(3, 20, -1), ep.actions.reshape(3, 20),
        ep.next_observations.reshape(3, 20, -1), ep.valid.reshape(3, 20))
    with torch.no_grad():
        z = agent.exploiter.decoder.final(obs, actions, lengths)
        torch.testing.assert_close(exploit[0][3], z)
        # the first step of each episode is greedy on its own network from the zero state
        _, obs0, prev0, _, act0 = explore[0]
        q, _ = agent.explorer.step(explorer_inputs(obs0, prev0, env.action_space.n), None, None)
        assert prev0.tolist() == [env.action_space.n] * 3 and torch.equal(act0, q.argmax(-1))
        _, obs1, _, z1, act1 = exploit[0]
        q, _ = agent.exploiter.q.step(obs1, z1, None)
        assert torch.equal(act1, q.argmax(-1))
    # the exploration episode earns nothing; the exploitation episode is the trial's return
    returns = rollouts.episode_returns()
    assert (returns[..., 0] == 0).all() and (returns[..., 1] != 0).all()


def test_training_exploits_half_the_environments_on_the_noisy_problem_embedding():
    from metarl.random import BatchRNG
    from metarl.sampling import LocalSampler

    agent, env = tiny_agent(id_noise=0.0)
    policy = agent.training_policy()
    state = policy.reset(env.split_tasks("train", 4), 1, BatchRNG(0, range(4)))
    rollouts = LocalSampler(env).sample(policy, env.split_tasks("train", 4), episodes=1, seed=1)
    state = policy.end_episode(state, rollouts)
    problems = torch.tensor([t.params["problem"] for t in env.split_tasks("train", 4)])
    with torch.no_grad():
        f = agent.exploiter.problem(problems)
    uses_ids = state.use_ids
    assert uses_ids.tolist() == [(b + agent.iteration % 2) % 2 == 1 for b in range(4)]
    torch.testing.assert_close(state.z[uses_ids], f[uses_ids])  # no noise: exactly f(μ)
    assert not torch.allclose(state.z[~uses_ids], f[~uses_ids])


@pytest.mark.parametrize("env", ["dream-bus", "dream-map"])
def test_two_iterations_resume_exactly_and_evaluate(env, tmp_path, capsys):
    """Both policies take gradient steps (small minimum replay); a run stopped after one
    iteration and resumed logs the same rows as one that ran through."""
    common = ["--set", *TINY, "checkpoint_every=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "dream", env, "--iterations", "2", "--run-dir", str(full),
                 *common]) == 0
    assert main(["train", "dream", env, "--iterations", "1", "--run-dir", str(cut),
                 *common]) == 0
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", "2"]) == 0
    rows = rows_without_time(full)
    assert rows == rows_without_time(cut)
    assert float(rows[-1]["replay_trials"]) == 8
    assert float(rows[-1]["explore_td_loss"]) > 0 and float(rows[-1]["exploit_td_loss"]) > 0
    capsys.readouterr()
    assert main(["eval", str(full), "--json", "--num-tasks", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == "dream" and len(result["returns_per_episode"]) == 2
    assert result["returns_per_episode"][0] == 0.0
    assert result["summary"]["exploitation_return"] == pytest.approx(
        result["returns_per_episode"][1])


def test_refuses_an_env_without_exploration_episodes_before_writing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "dream", "bandit", "--iterations", "1", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "dream-bus" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()
