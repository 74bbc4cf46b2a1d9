"""PEARL: the context encoder, SAC pieces, per-task replay, the test-time prior→posterior
switch, and runs through the CLI."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution, kl_divergence
from torch.distributions.transforms import TanhTransform

from metarl.agents.pearl import PEARLAgent, PEARLConfig
from metarl.agents.pearl.agent import context_rows, fixed_task_set
from metarl.cli import main
from metarl.envs import make
from metarl.nn.context import ContextEncoder, kl_to_standard_normal, product_of_gaussians
from metarl.nn.sac import (
    EnsembleMLP,
    TanhGaussianActor,
    Temperature,
    polyak_update,
    soft_q_target,
    tanh_gaussian_log_prob,
)
from metarl.random import BatchRNG
from metarl.replay import TaskReplayBuffer
from metarl.runs import load, make_agent
from metarl.sampling import LocalSampler

TINY = ["train_tasks=4", "initial_steps=20", "prior_steps=20", "extra_posterior_steps=20",
        "tasks_per_iteration=2", "gradient_steps=3", "meta_batch=3", "batch_size=8",
        "context_batch=6", "hidden_size=16", "encoder_hidden=16", "eval_tasks=2"]


# ------------------------------------------------------------------ context encoder
def test_product_of_gaussians_matches_the_closed_form():
    mean = torch.tensor([[1.0, -2.0], [3.0, 0.5]])[None]  # [1 task, C=2, L=2]
    var = torch.tensor([[0.5, 4.0], [2.0, 1.0]])[None]
    post_mean, post_var = product_of_gaussians(mean, var)
    # two factors: σ² = σ1²σ2² / (σ1² + σ2²), μ = (μ1 σ2² + μ2 σ1²) / (σ1² + σ2²)
    s1, s2, m1, m2 = var[0, 0], var[0, 1], mean[0, 0], mean[0, 1]
    torch.testing.assert_close(post_var[0], s1 * s2 / (s1 + s2))
    torch.testing.assert_close(post_mean[0], (m1 * s2 + m2 * s1) / (s1 + s2))


def test_product_of_gaussians_ignores_masked_factors_and_empty_context_is_the_prior():
    mean, var = torch.randn(3, 4, 2), torch.rand(3, 4, 2) + 0.1
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    post_mean, post_var = product_of_gaussians(mean, var, mask)
    expected = product_of_gaussians(mean[0:1, :2], var[0:1, :2])
    torch.testing.assert_close(post_mean[0], expected[0][0])
    torch.testing.assert_close(post_var[0], expected[1][0])
    torch.testing.assert_close(post_mean[2], torch.zeros(2))
    torch.testing.assert_close(post_var[2], torch.ones(2))


def test_kl_to_standard_normal_matches_torch_distributions():
    mean, var = torch.randn(5, 3), torch.rand(5, 3) + 0.05
    expected = kl_divergence(Independent(Normal(mean, var.sqrt()), 1),
                             Independent(Normal(torch.zeros(3), torch.ones(3)), 1))
    torch.testing.assert_close(kl_to_standard_normal(mean, var), expected)


def test_encoder_is_permutation_invariant_and_the_recurrent_one_is_not():
    torch.manual_seed(0)
    context = torch.randn(2, 7, 5)
    perm = torch.randperm(7)
    encoder = ContextEncoder(5, 3, hidden=(16, 16, 16))
    for a, b in zip(encoder(context), encoder(context[:, perm]), strict=True):
        torch.testing.assert_close(a, b)
    recurrent = ContextEncoder(5, 3, hidden=(16, 16, 16), recurrent=True)
    assert not torch.allclose(recurrent(context)[0], recurrent(context[:, perm])[0])


# ------------------------------------------------------------------------ SAC pieces
def test_soft_q_target_on_a_hand_made_batch():
    rewards = torch.tensor([1.0, -2.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([10.0, 7.0, -3.0])
    next_log_prob = torch.tensor([-1.0, 2.0, 0.5])
    target = soft_q_target(rewards, terminated, next_q, next_log_prob, alpha=0.2,
                           discount=0.9, reward_scale=5.0)
    # 5 r + 0.9 (1 - d)(Q' - 0.2 log π)
    expected = torch.tensor([5.0 + 0.9 * (10.0 + 0.2), -10.0, 2.5 + 0.9 * (-3.0 - 0.1)])
    torch.testing.assert_close(target, expected)


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std, noise = torch.randn(6, 3), torch.randn(6, 3) * 0.5, torch.randn(6, 3)
    pre_tanh = mean + log_std.exp() * noise
    dist = TransformedDistribution(Independent(Normal(mean, log_std.exp()), 1),
                                   [TanhTransform()])
    torch.testing.assert_close(tanh_gaussian_log_prob(pre_tanh, noise, log_std),
                               dist.log_prob(torch.tanh(pre_tanh)), atol=1e-4, rtol=1e-4)


def test_actor_with_zero_noise_gives_the_squashed_mean():
    actor = TanhGaussianActor(4, 2, (8, 8))
    x = torch.randn(5, 4)
    action, _, stats = actor.sample(x, torch.zeros(5, 2))
    torch.testing.assert_close(action, torch.tanh(stats["mean"]))


def test_ensemble_mlp_equals_its_members_one_by_one():
    torch.manual_seed(0)
    net = EnsembleMLP(2, 4, (8, 8), 1)
    x = torch.randn(5, 4)
    out = net(x)
    for member in range(2):
        h = x
        for i, layer in enumerate(net.layers):
            h = h @ layer.weight[member] + layer.bias[member]
            if i < len(net.layers) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[member], h)
    torch.testing.assert_close(net(x.expand(2, 5, 4)), out)


def test_polyak_update_and_temperature():
    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.9 * target.weight.detach() + 0.1 * source.weight.detach()
    polyak_update(target, source, 0.1)
    torch.testing.assert_close(target.weight, expected)
    fixed = Temperature(0.5)
    assert not fixed.learned and fixed.alpha.item() == pytest.approx(0.5)
    learned = Temperature(1.0, target_entropy=-2.0)
    learned.loss(torch.full((4,), 3.0)).backward()  # entropy -3 < target 2: α must grow
    assert learned.log_alpha.grad.item() < 0


# ------------------------------------------------------------------------ replay
def _transitions(n, obs_dim=3, action_dim=2, reward=0.0):
    return {"observations": np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim),
            "actions": np.zeros((n, action_dim)), "rewards": np.full(n, reward),
            "next_observations": np.ones((n, obs_dim)), "terminated": np.zeros(n)}


def test_replay_keeps_tasks_apart_and_is_fifo():
    buffer = TaskReplayBuffer(3, obs_dim=3, action_dim=2, capacity=10, initial_capacity=2)
    for task in range(3):
        buffer.add(task, _transitions(4, reward=float(task)))
    batch = buffer.sample(np.array([2, 0, 2]), 50, np.random.default_rng(0))
    assert batch["observations"].shape == (3, 50, 3) and batch["rewards"].shape == (3, 50)
    np.testing.assert_array_equal(batch["rewards"][:, 0], [2.0, 0.0, 2.0])
    assert (batch["rewards"] == np.array([[2.0], [0.0], [2.0]])).all()
    step = _transitions(12)
    step["rewards"] = np.arange(12.0)
    buffer.add(1, step)  # 4 + 12 > capacity 10: only the newest 10 remain
    assert buffer.sizes[1] == 10
    kept = buffer.sample(np.array([1]), 200, np.random.default_rng(1))["rewards"]
    assert set(kept[0].tolist()) == set(range(2, 12))
    in_order = buffer.sample(np.array([1]), 10, np.random.default_rng(2), sequential=True)
    np.testing.assert_array_equal(in_order["rewards"][0], np.arange(2.0, 12.0))
    buffer.clear(0)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(np.array([0]), 1, np.random.default_rng(0))


def test_replay_state_dict_round_trip():
    buffer = TaskReplayBuffer(2, obs_dim=3, action_dim=2, capacity=100)
    buffer.add(0, _transitions(5, reward=1.0))
    copy = TaskReplayBuffer(2, obs_dim=3, action_dim=2, capacity=100)
    copy.load_state_dict(buffer.state_dict())
    a = buffer.sample(np.array([0]), 7, np.random.default_rng(0))
    b = copy.sample(np.array([0]), 7, np.random.default_rng(0))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert copy.sizes.tolist() == [5, 0]


# ------------------------------------------------------------------------ the agent
def _agent(**overrides) -> PEARLAgent:
    settings = dict(train_tasks=4, hidden_size=16, encoder_hidden=16, meta_batch=3,
                    batch_size=8, context_batch=6, initial_steps=20, prior_steps=20,
                    extra_posterior_steps=20, tasks_per_iteration=2, gradient_steps=2)
    settings.update(overrides)
    return PEARLAgent(make("point-nav", horizon=10), PEARLConfig(**settings))


def test_test_policy_switches_from_prior_to_posterior_of_its_own_context():
    torch.manual_seed(0)
    agent = _agent(exploration_episodes=2, bottleneck=False)  # deterministic z: mean factor
    env = agent.env
    tasks = env.split_tasks("test", 3)
    rollouts = LocalSampler(env).sample(agent.policy(), tasks, trials=2, episodes=4, seed=3)
    z = torch.as_tensor(rollouts.extras["z"])  # [N, M, K, T, L]
    for k in range(4):  # one z per episode
        assert torch.equal(z[:, :, k], z[:, :, k, :1].expand_as(z[:, :, k]))
    torch.testing.assert_close(z[:, :, 1, 0], z[:, :, 0, 0])  # exploration: the same prior z
    for k in (2, 3):  # posterior from all earlier episodes of the same trial
        past = rollouts.select_episodes(slice(0, k))
        rows = context_rows(past.observations, agent.scale.from_env(past.actions),
                            past.rewards, past.next_observations, False)
        context = torch.as_tensor(rows.reshape(3, 2, -1, rows.shape[-1]))
        with torch.no_grad():
            expected, _ = agent.encoder(context)
        torch.testing.assert_close(z[:, :, k, 0], expected)
    assert not torch.allclose(z[:, :, 2, 0], z[:, :, 1, 0])


def test_fixed_task_set_covers_a_finite_family():
    tasks = fixed_task_set(make("cheetah-dir"), "train", 2, seed=0)
    assert sorted(t.params["direction"] for t in tasks) == [-1.0, 1.0]
    assert [t.id for t in tasks] == [0, 1]


def test_one_iteration_fills_the_buffers_and_updates_every_network():
    torch.manual_seed(0)
    agent = _agent()
    before = {name: [p.detach().clone() for p in getattr(agent, name).parameters()]
              for name in ("actor", "critic", "encoder")}
    metrics = agent.train_iteration(LocalSampler(agent.env), np.random.default_rng(0))
    # initial 2 episodes x 4 tasks, then 2 tasks x (2 prior + 2 extra posterior) episodes
    assert metrics["env_steps"] == 4 * 20 + 2 * 40
    assert len(agent.replay) == 4 * 20 + 2 * 40
    assert np.isfinite([metrics[k] for k in ("critic_loss", "actor_loss", "kl")]).all()
    for name, params in before.items():
        after = list(getattr(agent, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(params, after, strict=True)), name


def test_cli_smoke_eval_and_resume_equals_uninterrupted_run(tmp_path, capsys):
    common = ["--set", *TINY, "checkpoint_every=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "pearl", "point-nav", "--iterations", "2", "--run-dir", str(full),
                 *common]) == 0
    assert main(["train", "pearl", "point-nav", "--iterations", "1", "--run-dir", str(cut),
                 *common]) == 0
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", "2"]) == 0
    rows = [list(csv.DictReader((run / "progress.csv").open())) for run in (full, cut)]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == \
            {k: v for k, v in b.items() if k != "time_s"}
    capsys.readouterr()
    assert main(["eval", str(full), "--json", "--num-tasks", "2", "--episodes", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == "pearl" and len(result["returns_per_episode"]) == 3


def test_cli_run_on_cheetah_vel_logs_trains_and_evaluates(tmp_path):
    """One tiny iteration on cheetah-vel (200-step episodes): its progress row counts the
    env steps of the schedule and has finite losses, the checkpoint loads into an agent
    whose every network moved from the seeded initial weights, and the final evaluation
    reports a finite 3-episode adaptation curve."""
    run = tmp_path / "run"
    assert main(["train", "pearl", "cheetah-vel", "--iterations", "1", "--run-dir", str(run),
                 "--set", *TINY, "checkpoint_buffers=false"]) == 0
    rows = list(csv.DictReader((run / "progress.csv").open()))
    assert len(rows) == 1 and rows[0]["iteration"] == "0"
    row = {k: float(v) for k, v in rows[0].items() if v != ""}
    # initial: 4 tasks x 1 episode (20 steps round up to one 200-step episode); then 2
    # tasks x (1 prior + 1 extra posterior episode)
    assert row["env_steps"] == 4 * 200 + 2 * 2 * 200
    for key in ("critic_loss", "actor_loss", "kl", "q_mean", "initial_return",
                "prior_return", "extra_posterior_return"):
        assert math.isfinite(row[key]), key
    assert row["kl"] > 0 and row["alpha"] == 1.0
    trained = load(run)
    assert trained.iteration == 1 and trained.agent.iteration == 1
    assert len(trained.agent.replay) == 0  # checkpoint_buffers=false: no buffers saved
    initial = make_agent(trained.config, trained.env)
    for name in ("encoder", "actor", "critic", "target_critic"):
        before = getattr(initial, name).state_dict()
        after = getattr(trained.agent, name).state_dict()
        assert any(not torch.equal(after[k], before[k]) for k in after), name
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes"] == 3 and result["num_tasks"] == 2
    curve = result["returns_per_episode"]
    assert len(curve) == 3 and all(math.isfinite(x) for x in curve)
    for key in ("trial_return", "mean_return", "trial_return_stderr"):
        assert math.isfinite(result[key]), key
    assert result["trial_return"] == pytest.approx(sum(curve), rel=1e-5)
    assert all(-200 * (3.0 + 10.0 + 0.3) <= x <= 0.0 for x in curve)  # -|v - v*| - ctrl


def test_bad_pearl_settings_exit_2(tmp_path, capsys):
    assert main(["train", "pearl", "point-nav", "--run-dir", str(tmp_path / "r"),
                 "--set", "entropy=bogus"]) == 2
    assert "entropy" in capsys.readouterr().err
    assert main(["train", "pearl", "bandit", "--run-dir", str(tmp_path / "b")]) == 2


def _ordered_contexts(generator, batch=64, length=6, dim=3):
    """Contexts of 3..length transitions (mask) whose target, the first feature of the last
    real transition minus that of the first one, depends on their order: a permutation-
    invariant encoder sees the same set either way and can do no better than predicting 0,
    a mean squared error of Var(y) = 2."""
    x = torch.randn(batch, length, dim, generator=generator)
    lengths = torch.randint(3, length + 1, (batch,), generator=generator)
    mask = torch.arange(length)[None] < lengths[:, None]
    return x, mask, x[torch.arange(batch), lengths - 1, 0] - x[:, 0, 0]


def _train_encoder(recurrent: bool, steps: int = 200) -> tuple[float, float]:
    """(held-out MSE of the posterior mean before, after) ``steps`` Adam steps."""
    torch.manual_seed(0)
    encoder = ContextEncoder(3, 1, hidden=(32, 32), bottleneck=False, recurrent=recurrent)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    train, held_out = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    test = _ordered_contexts(held_out, batch=512)

    def loss(x, mask, y):
        return (encoder(x, mask)[0][:, 0] - y).square().mean()

    with torch.no_grad():
        before = loss(*test).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss(*_ordered_contexts(train)).backward()
        optimizer.step()
    with torch.no_grad():
        return before, loss(*test).item()


def test_recurrent_encoder_learns_an_order_dependent_context_the_set_encoder_cannot():
    """On masked contexts whose target depends on the order (see _ordered_contexts) the
    recurrent encoder's held-out error drops from ~2 to under 5% of it, while the
    permutation-invariant encoder trained the same way stays near Var(y) = 2."""
    recurrent_before, recurrent_after = _train_encoder(recurrent=True)
    set_before, set_after = _train_encoder(recurrent=False)
    assert recurrent_before > 1.5
    assert recurrent_after < 0.05 * recurrent_before, (recurrent_before, recurrent_after)
    assert set_after > 1.5, set_after  # the order-blind baseline cannot learn it
    assert recurrent_after < 0.05 * set_after


def test_recurrent_pearl_iteration_trains_on_sequential_context():
    """The agent with ``recurrent=True`` draws its context as consecutive transitions of the
    encoder buffer (insertion order) and trains on it."""
    torch.manual_seed(0)
    agent = _agent(recurrent=True)
    drawn = []
    sample = agent.encoder_replay.sample
    agent.encoder_replay.sample = lambda *a, **k: drawn.append(k) or sample(*a, **k)
    metrics = agent.train_iteration(LocalSampler(agent.env), np.random.default_rng(0))
    assert drawn and all(k.get("sequential") for k in drawn)
    assert np.isfinite(metrics["critic_loss"]) and metrics["kl"] > 0


def test_test_policy_gives_the_same_trials_on_ray(ray_local):
    """z is drawn from per-environment streams and the posterior from the trial's own
    context, so sharding tasks over Ray workers changes nothing."""
    from helpers import local_and_ray_rollouts

    torch.manual_seed(0)
    agent = _agent(exploration_episodes=1)
    local, remote = local_and_ray_rollouts(agent.env, agent.policy(),
                                           agent.env.split_tasks("test", 4), trials=2,
                                           episodes=3, seed=5)
    np.testing.assert_allclose(remote.extras["z"], local.extras["z"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote.rewards, local.rewards, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ trial state
def test_one_policy_runs_two_interleaved_trials_with_their_own_tasks():
    """The trial's tasks live in its state: resetting a second trial (other tasks) on the
    same policy object does not change which contexts the first trial's z comes from."""
    torch.manual_seed(0)
    agent = _agent(bottleneck=False)  # z = the posterior mean, no noise
    tasks = agent.train_tasks
    rng = np.random.default_rng(0)
    for task in range(4):
        agent.encoder_replay.add(task, {
            "observations": rng.normal(size=(6, 2)), "actions": rng.uniform(-1, 1, (6, 2)),
            "rewards": rng.normal(size=6) + task, "next_observations": rng.normal(size=(6, 2)),
            "terminated": np.zeros(6)})
    rows = agent._context_batch(np.arange(4), rng)
    contexts = {task: rows[i] for i, task in enumerate(tasks)}
    with torch.no_grad():
        means = agent.encoder(torch.as_tensor(rows))[0]  # [4 tasks, L]
    policy = agent._collection_policy(contexts)
    episode = LocalSampler(agent.env).sample(policy, tasks[:2], trials=1, episodes=1, seed=0)
    first = policy.reset(tasks[:2], 2, BatchRNG(0, np.arange(4)))
    second = policy.reset(tasks[2:4], 2, BatchRNG(1, np.arange(4)))
    torch.testing.assert_close(second.z, means[2:4].repeat_interleave(2, 0))
    obs = torch.zeros(4, 2)
    action, first, _ = policy.act(obs, first)
    assert action.shape == (4, 2)
    first = policy.end_episode(first, episode)  # redraws z from the first trial's tasks
    torch.testing.assert_close(first.z, means[:2].repeat_interleave(2, 0))
    second = policy.end_episode(second, episode)
    torch.testing.assert_close(second.z, means[2:4].repeat_interleave(2, 0))


# ------------------------------------------------------------------ the agent's device
@pytest.mark.parametrize("overrides", [
    {"entropy": "auto", "posterior_steps": 10, "exploration_episodes": 1},
    {"recurrent": True, "bottleneck": False, "use_next_obs": True},
], ids=["bottleneck-auto-entropy", "recurrent-deterministic-z"])
def test_pearl_keeps_networks_replay_batches_and_acting_on_its_device(overrides):
    """Built with ``device="meta"``: every network, buffer, optimiser state and the action
    scaling are on it, and a training iteration (prior and posterior collection, context
    and replay batches, encoder, SAC and temperature updates) and a test-time trial (prior
    z, then the posterior of its own context) run there — a tensor left on the CPU would
    meet a meta one and raise (see MetaDeviceValues in tests/helpers.py)."""
    from helpers import MetaDeviceValues, on_meta

    settings = dict(train_tasks=3, hidden_size=8, encoder_hidden=8, meta_batch=2,
                    batch_size=4, context_batch=3, initial_steps=4, prior_steps=4,
                    extra_posterior_steps=4, tasks_per_iteration=2, gradient_steps=2)
    agent = PEARLAgent(make("point-nav", horizon=4), PEARLConfig(**{**settings, **overrides}),
                       device="meta")
    modules = [agent.encoder, agent.actor, agent.critic, agent.target_critic,
               agent.temperature]
    for module in modules:
        assert on_meta(module.parameters()) and on_meta(module.buffers())
    assert on_meta([agent.scale.low, agent.scale.high])
    env = agent.env
    mode = MetaDeviceValues()
    with mode:
        metrics = agent.train_iteration(LocalSampler(env), np.random.default_rng(0))
        LocalSampler(env).sample(agent.policy(), env.split_tasks("test", 2), trials=2,
                                 episodes=3, seed=0)
        policy = agent.policy()
        tasks = env.split_tasks("test", 2)
        episode = LocalSampler(env).sample(policy, tasks, trials=1, episodes=1, seed=0)
        state = policy.reset(tasks, 1, BatchRNG(0, np.arange(2)))
        action, state, extras = policy.act(torch.zeros(2, 2, device="meta"), state)
        assert on_meta([action, extras["z"], state.z])
        for _ in range(2):
            state = policy.end_episode(state, episode)
            assert state.z.is_meta
        stochastic = agent._collection_policy()
        action, _, _ = stochastic.act(torch.zeros(2, 2, device="meta"),
                                      stochastic.reset(tasks, 1, BatchRNG(0, np.arange(2))))
        assert action.is_meta
    for module in modules:
        assert on_meta(module.parameters())
    for optimizer in (agent.actor_opt, agent.critic_opt, agent.encoder_opt):
        states = [t for s in optimizer.state.values() for t in s.values()
                  if isinstance(t, torch.Tensor) and t.dim() > 0]
        assert states and on_meta(states)
    assert set(metrics) >= {"critic_loss", "actor_loss", "kl", "alpha"}
    assert mode.ops > 1000
