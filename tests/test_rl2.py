"""RL²: hidden state across episodes, input encoding, update sanity."""

import pickle

import numpy as np
import pytest
import torch

from metarl.agents.rl2 import RL2Agent, RL2Config
from metarl.envs import make
from metarl.nn import LayerNormGRU, LayerNormLSTM, SideThread
from metarl.random import BatchRNG
from metarl.sampling import LocalSampler


def _agent(env, **kw):
    torch.manual_seed(0)
    return RL2Agent(env, RL2Config(hidden_size=16, **kw))


def test_hidden_state_kept_between_episodes_and_reset_between_trials():
    env = make("tabular-mdp", horizon=3)
    agent = _agent(env, episodes_per_trial=2)
    policy = agent.policy()
    tasks = env.split_tasks("train", 2)
    sampler = LocalSampler(env)
    hiddens = []

    class Spy:
        def __getattr__(self, name):
            return getattr(policy, name)

        def end_episode(self, state, episode):
            before = state.hidden.clone()
            state = policy.end_episode(state, episode)
            assert torch.equal(state.hidden, before)  # not reset between episodes
            hiddens.append(before)
            return state

    sampler.sample(Spy(), tasks, episodes=2, seed=0)
    assert len(hiddens) == 2 and hiddens[0].abs().sum() > 0
    assert not torch.equal(hiddens[0], hiddens[1])
    fresh = policy.reset(tasks, 1, BatchRNG(0, np.arange(2)))
    assert fresh.hidden.abs().sum() == 0  # a new trial starts from zeros


@pytest.mark.parametrize("layer_norm, previous_observation, head_hidden, cell, input_hidden",
                         [(False, False, 0, "gru", 0), (True, True, 0, "gru", 12),
                          (True, False, 16, "gru", 0), (True, False, 0, "lstm", 0)])
def test_sequence_recomputation_matches_sampling(layer_norm, previous_observation, head_hidden,
                                                 cell, input_hidden):
    """Log-probs recomputed over whole trials equal the ones sampled step by step: the
    hidden state flows across episode boundaries exactly as during sampling."""
    for name in ("tabular-mdp", "maze"):
        env = make(name)
        agent = _agent(env, episodes_per_trial=3, layer_norm=layer_norm,
                       previous_observation=previous_observation, head_hidden=head_hidden,
                       cell=cell, candidate_activation="relu" if cell == "lstm" else "tanh",
                       input_hidden=input_hidden)
        assert (agent.policy_net.head_layer is None) == (head_hidden == 0)
        assert (agent.policy_net.input_layer is None) == (input_hidden == 0)
        r = LocalSampler(env).sample(agent.policy(), env.split_tasks("train", 4), trials=2,
                                     episodes=3, seed=2)
        seq = r.trial_sequences()
        with torch.no_grad():
            params, _ = agent.policy_net(agent.inputs.from_sequences(seq))
            log_prob = agent.policy_net.output.log_prob(params, torch.as_tensor(seq.actions))
        sampled = seq.extras["log_prob"]
        assert np.allclose(log_prob.numpy()[seq.mask], sampled[seq.mask], atol=1e-5)


def test_second_episode_depends_on_first():
    env = make("bandit", arms=3)
    agent = _agent(env)
    policy = agent.policy(deterministic=True)
    obs = torch.zeros(2, 1)
    state = policy.reset(env.split_tasks("train", 2), 1, BatchRNG(0, np.arange(2)))
    _, state, _ = policy.act(obs, state)
    from metarl.types import Transition

    step = Transition(obs.numpy(), np.array([0, 0]), np.array([0.0, 1.0]), obs.numpy(),
                      np.array([True, True]), np.array([False, False]), np.array([True, True]),
                      0, 0)
    state = policy.end_episode(policy.observe(state, step), None)
    policy.act(obs, state)
    assert not torch.allclose(state.pending_hidden[0, 0], state.pending_hidden[0, 1])


@pytest.mark.parametrize("shared_core", [False, True])
def test_update_improves_surrogate_and_is_deterministic(shared_core):
    env = make("bandit", arms=3)
    results = []
    for _ in range(2):
        agent = _agent(env, episodes_per_trial=5, tasks_per_iteration=16,
                       shared_core=shared_core)
        metrics = agent.train_iteration(LocalSampler(env), np.random.default_rng(0))
        results.append((metrics, [p.detach().clone() for p in agent.policy_net.parameters()]))
    (m1, p1), (m2, p2) = results
    assert m1 == m2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert m1["policy_loss"] < 0.05 and np.isfinite(m1["value_loss"])


def test_layer_norm_gru_is_invariant_to_weight_scale_and_keeps_memory():
    torch.manual_seed(0)
    gru = LayerNormGRU(5, 8)
    x, h0 = torch.randn(3, 6, 5), torch.randn(1, 3, 8)
    out, h = gru(x, h0)
    assert out.shape == (3, 6, 8) and torch.equal(out[:, -1], h[0])
    with torch.no_grad():  # layer norm undoes any scaling of the projections
        gru.input_proj.weight.mul_(7.0)
        gru.hidden_proj.weight.mul_(0.3)
    assert torch.allclose(gru(x, h0)[0], out, atol=1e-3)  # up to the norms' epsilon
    gru.update_bias = 50.0  # update gate shut: the state is carried unchanged
    assert torch.allclose(gru(x, h0)[1], h0, atol=1e-6)


def test_layer_norm_lstm_sums_what_it_writes_and_splits_sequences_exactly():
    torch.manual_seed(0)
    lstm = LayerNormLSTM(4, 8, candidate_activation="relu")
    x = torch.randn(3, 7, 4)
    out, state = lstm(x)
    assert out.shape == (3, 7, 8) and state.shape == (1, 3, 16)
    assert torch.equal(out[:, -1], state[0, :, :8])
    first, mid = lstm(x[:, :3])  # carrying the state over a split changes nothing
    second, end = lstm(x[:, 3:], mid)
    assert torch.allclose(torch.cat([first, second], dim=1), out, atol=1e-6)
    assert torch.allclose(end, state, atol=1e-6)
    # forget gate open, write gate open: the cell is the sum of the ReLU candidates written
    lstm.forget_bias = 50.0
    with torch.no_grad():
        lstm.input_norm.bias.zero_()
        lstm.input_norm.bias[8:16] = 50.0  # write gate pre-activation
        lstm.hidden_norm.bias.zero_()
    candidates = [torch.relu(lstm.input_norm(lstm.input_proj(x[:, t]))
                             + lstm.hidden_norm(h @ lstm.hidden_proj.weight.T))[:, 24:]
                  for t, h in enumerate([torch.zeros(3, 8), *lstm(x)[0].unbind(1)][:7])]
    assert torch.allclose(lstm(x)[1][0, :, 8:], torch.stack(candidates).sum(0), atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    ({"cell": "rnn"}, "unknown cell 'rnn'; valid: gru, lstm"),
    ({"candidate_activation": "gelu"}, "valid: tanh, relu"),
    ({"cell": "lstm"}, "cell=lstm needs layer_norm=true"),
    ({"candidate_activation": "relu"}, "candidate_activation=relu needs layer_norm=true"),
    ({"layer_norm": True, "cell": "lstm", "chrono_init": True}, "cell=gru"),
    ({"input_hidden": -1}, r"input_hidden must be >= 0 \(0: no such layer\), got -1"),
    ({"value_coef": -0.5}, "value_coef must be >= 0, got -0.5"),
    ({"reward_prediction_coef": -1.0}, "reward_prediction_coef must be >= 0, got -1.0"),
    ({"second_thread": True, "shared_core": True}, "needs a separate value net"),
    ({"value_time_input": True, "shared_core": True}, "value_time_input needs a separate"),
    ({"value_target_lambda": 1.5}, r"value_target_lambda must be in \[0, 1\], got 1.5"),
    ({"gae_lambda": -0.1}, r"gae_lambda must be in \[0, 1\], got -0.1"),
])
def test_rl2_core_options_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        RL2Config(**bad).validate()


def test_checkpoints_naming_the_core_gru_still_load():
    agent = _agent(make("bandit", arms=3), layer_norm=True)
    legacy = {k.replace("core.", "gru.", 1): v for k, v in agent.policy_net.state_dict().items()}
    fresh = _agent(make("bandit", arms=3), layer_norm=True, chrono_init=True)
    fresh.policy_net.load_state_dict(legacy)
    for key, value in agent.policy_net.state_dict().items():
        assert torch.equal(fresh.policy_net.state_dict()[key], value)


def test_chrono_init_spreads_memory_timescales_over_the_trial():
    torch.manual_seed(0)
    gru = LayerNormGRU(3, 200, max_timescale=100)
    timescales = torch.exp(-gru.input_gate_norm.bias[:200]).detach()
    assert gru.update_bias == 0.0
    assert 1.0 <= timescales.min() < 10.0 and 90.0 < timescales.max() <= 100.0
    agent = _agent(make("tabular-mdp"), layer_norm=True, chrono_init=True, episodes_per_trial=4)
    assert torch.exp(-agent.policy_net.core.input_gate_norm.bias).max() <= 40.0  # 4 x 10 steps


def test_rl2_update_benchmark_reports_both_cores(capsys):
    import json

    from metarl.cli import main

    threads = torch.get_num_threads()
    wanted = 1 if threads > 1 else 2  # differs from the current count (1: no oversubscription)
    assert main(["bench", "rl2-update", "--tasks", "4", "--episodes", "2", "--threads",
                 str(wanted), "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threads"] == wanted and torch.get_num_threads() == threads  # restored
    for core in ("gru", "layer_norm_gru", "layer_norm_lstm", "layer_norm_gru_second_thread"):
        timings = result[core]
        assert timings["update_ms"] > 0 and timings["core_forward_backward_ms"] > 0
        assert 0 < timings["sample_share"] < 1
    assert result["core_ratio"] > 0 and result["lstm_core_ratio"] > 0 and result["tasks"] == 4
    assert result["second_thread_update_speedup"] > 0 and result["epochs"] == 1
    assert result["second_thread_sample_speedup"] > 0


def test_shared_core_trains_one_core_on_both_losses_and_round_trips():
    env = make("tabular-mdp", horizon=3)

    def shared(value_coef):
        return _agent(env, episodes_per_trial=2, tasks_per_iteration=4, shared_core=True,
                      layer_norm=True, ppo_epochs=1, minibatches=1, value_coef=value_coef)

    agent = shared(1.0)
    assert agent.value_net is None and agent.value_opt is None
    seq = LocalSampler(env).sample(agent.policy(), env.split_tasks("train", 4), episodes=2,
                                   seed=0).trial_sequences()
    x = agent.inputs.from_sequences(seq)
    (grad,) = torch.autograd.grad(agent._raw_values(x).pow(2).mean(),
                                  agent.policy_net.core.hidden_proj.weight)
    assert grad.abs().sum() > 0  # the value loss reaches the recurrent core
    changes = []
    for a in (shared(0.0), agent):  # same start, same batch; only the value weight differs
        before = a.policy_net.core.hidden_proj.weight.detach().clone()
        a.update(seq)
        changes.append(a.policy_net.core.hidden_proj.weight.detach() - before)
    assert not torch.allclose(*changes)
    fresh = shared(1.0)
    fresh.load_state_dict(agent.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh._values(x), agent._values(x))
    assert "value_net" not in agent.state_dict() and "value_head" in agent.state_dict()


def test_reward_prediction_loss_is_the_taken_actions_squared_error():
    env = make("tabular-mdp", horizon=3)
    agent = _agent(env, episodes_per_trial=2, tasks_per_iteration=4, ppo_epochs=1,
                   minibatches=1, reward_prediction_coef=1.0)
    seq = LocalSampler(env).sample(agent.policy(), env.split_tasks("train", 4), episodes=2,
                                   seed=0).trial_sequences()
    x = agent.inputs.from_sequences(seq)
    with torch.no_grad():
        predicted = agent.reward_head(agent.policy_net.features(x)[0]).numpy()
    rows, steps = np.nonzero(seq.mask)
    taken = predicted[rows, steps, seq.actions[rows, steps]]
    expected = np.mean((taken - seq.rewards[rows, steps]) ** 2)
    metrics = agent.update(seq)  # one minibatch: the loss is taken before the step
    assert np.isclose(metrics["reward_prediction_loss"], expected, rtol=1e-5)
    fresh = _agent(env, episodes_per_trial=2, reward_prediction_coef=1.0)
    fresh.load_state_dict(agent.state_dict())
    assert torch.equal(fresh.reward_head.weight, agent.reward_head.weight)
    with pytest.raises(ValueError, match="reward_prediction_coef needs a Discrete action"):
        _agent(make("point-nav"), reward_prediction_coef=1.0)


def test_second_thread_gives_the_same_numbers():
    env = make("tabular-mdp", horizon=3)
    agents = [_agent(env, episodes_per_trial=2, tasks_per_iteration=8, ppo_epochs=2,
                     minibatches=2, layer_norm=True, second_thread=second_thread)
              for second_thread in (False, True)]  # 16 units: bit-equal here
    metrics = [a.train_iteration(LocalSampler(env), np.random.default_rng(3)) for a in agents]
    assert metrics[0] == metrics[1]
    for key, part in agents[0].state_dict().items():
        if key == "iteration":
            continue
        other = agents[1].state_dict()[key]
        if key.endswith("_opt"):  # optimiser states: compare the moments
            for index, values in part["state"].items():
                assert all(torch.equal(v, other["state"][index][k]) for k, v in values.items())
        else:
            assert all(torch.equal(v, other[name]) for name, v in part.items())


def test_side_thread_keeps_the_grad_mode_and_splits_rows_up_to_rounding():
    side = pickle.loads(pickle.dumps(SideThread()))  # copies (Ray ships policies) get a pool
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():  # grad mode is thread-local: the side thread must take the caller's
        assert side.submit(layer, torch.ones(1, 3)).result().grad_fn is None
    assert side.submit(layer, torch.ones(1, 3)).result().grad_fn is not None
    torch.manual_seed(0)
    for core in (LayerNormGRU(5, 8), LayerNormLSTM(5, 8)):
        inputs = torch.randn(7, 4, 5)
        state = torch.randn(1, 7, core.state_size)
        with torch.no_grad():
            whole, split = core(inputs, state), side.recurrent_forward(core, inputs, state)
        for a, b in zip(whole, split, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_second_thread_is_bit_equal_at_the_mdp_preset_size():
    env = make("tabular-mdp")
    agents = []
    for second_thread in (False, True):
        torch.manual_seed(0)
        agents.append(RL2Agent(env, RL2Config(
            hidden_size=256, layer_norm=True, tasks_per_iteration=625, ppo_epochs=1,
            minibatches=4, lr=1e-3, clip=0.1, entropy_coef=0.05, second_thread=second_thread)))
    metrics = [a.train_iteration(LocalSampler(env), np.random.default_rng(0)) for a in agents]
    assert metrics[0] == metrics[1]
    for a, b in zip(agents[0].policy_net.parameters(), agents[1].policy_net.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    for a, b in zip(agents[0].value_net.parameters(), agents[1].value_net.parameters(),
                    strict=True):
        assert torch.equal(a, b)


def test_rl2_update_benchmark_times_only_the_named_cores(capsys):
    import json

    from metarl.cli import main

    assert main(["bench", "rl2-update", "--tasks", "4", "--episodes", "2", "--epochs", "1",
                 "--cores", "layer_norm_gru", "layer_norm_gru_second_thread", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "gru" not in result and "layer_norm_lstm" not in result
    assert "core_ratio" not in result and "lstm_core_ratio" not in result  # gru not timed
    assert result["second_thread_update_speedup"] > 0
    assert result["second_thread_sample_speedup"] > 0


def test_rl2_update_benchmark_rejects_an_unknown_core(capsys):
    from metarl.cli import main

    assert main(["bench", "rl2-update", "--tasks", "4", "--cores", "transformer"]) == 2
    error = capsys.readouterr().err
    assert "'transformer'" in error and "layer_norm_gru_second_thread" in error
    assert len(error.strip().splitlines()) == 1


def test_value_time_input_is_the_discounted_horizon_left_for_the_critic_only():
    env = make("tabular-mdp", horizon=3)
    plain = _agent(env, episodes_per_trial=2, discount=0.5)
    timed = _agent(env, episodes_per_trial=2, discount=0.5, value_time_input=True)
    x = torch.randn(4, 6, plain.inputs.size)
    extended = timed._value_inputs(x)
    assert torch.equal(extended[..., :-1], x) and torch.equal(plain._value_inputs(x), x)
    expected = torch.tensor([1 - 0.5 ** 6, 1 - 0.5 ** 5, 1 - 0.5 ** 4, 0.875, 0.75, 0.5])
    torch.testing.assert_close(extended[..., -1], expected.expand(4, -1))
    sizes = [(a.policy_net.core.input_size, a.value_net.core.input_size) for a in (plain, timed)]
    assert sizes == [(x.shape[-1], x.shape[-1]), (x.shape[-1], x.shape[-1] + 1)]
    assert timed._values(x).shape == (4, 6)


def test_value_time_input_trains_with_the_second_thread_to_the_same_numbers():
    env = make("tabular-mdp", horizon=3)
    agents = [_agent(env, episodes_per_trial=2, tasks_per_iteration=8, ppo_epochs=2,
                     minibatches=2, layer_norm=True, value_time_input=True,
                     second_thread=second_thread) for second_thread in (False, True)]
    metrics = [a.train_iteration(LocalSampler(env), np.random.default_rng(3)) for a in agents]
    assert metrics[0] == metrics[1] and np.isfinite(metrics[0]["value_loss"])


def test_deterministic_rl2_policy_takes_the_most_likely_action():
    from metarl.nn.heads import CategoricalHead

    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    rng = BatchRNG(0, np.arange(2))
    assert CategoricalHead(4, 3).sample(logits, rng, deterministic=True).tolist() == [1, 0]
    env = make("bandit", arms=3)
    agent = _agent(env)
    first = {}
    for deterministic in (False, True):
        policy = agent.policy(deterministic=deterministic)
        state = policy.reset(env.split_tasks("train", 50), 1, BatchRNG(0, np.arange(50)))
        with torch.no_grad():  # as the samplers call it
            actions, _, _ = policy.act(torch.zeros(50, 1), state)
        first[deterministic] = set(np.asarray(actions).tolist())
    # 50 trials see the same first input: one most likely arm, where sampling varies
    assert len(first[True]) == 1 and len(first[False]) > 1


def test_value_targets_are_monte_carlo_returns_with_value_target_lambda_one():
    from metarl.nn.losses import discounted_returns, gae

    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.5], [0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    values = torch.tensor([[5.0, -3.0, 2.0, 7.0], [1.0, 4.0, 0.0, 0.0]])  # any critic
    env = make("tabular-mdp")
    mc_agent = _agent(env, discount=0.9, gae_lambda=0.3, value_target_lambda=1.0)
    advantages, targets = mc_agent._advantages_and_targets(rewards, values, mask)
    # 1 + 0.9 * (0 + 0.9 * (2 + 0.9 * 0.5)) and 0 + 0.9 * 1: the critic does not enter
    torch.testing.assert_close(targets[:, 0], torch.tensor([1 + 0.81 * 2.45, 0.9]))
    torch.testing.assert_close(targets, discounted_returns(rewards, mask, 0.9))
    torch.testing.assert_close(advantages, gae(rewards, values, mask, 0.9, 0.3)[0])
    default = _agent(env, discount=0.9, gae_lambda=0.3)  # targets: the λ = 0.3 returns
    torch.testing.assert_close(default._advantages_and_targets(rewards, values, mask)[1],
                               gae(rewards, values, mask, 0.9, 0.3)[1])
