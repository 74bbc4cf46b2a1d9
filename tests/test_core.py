"""Known-answer tests for the shared pieces: Rollouts, BatchRNG, GAE, PPO's loss, heads."""

import math

import numpy as np
import pytest
import torch

from metarl.nn import GaussianHead, GaussianMLP, GaussianMLPPolicy, gae, ppo_clip_loss
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task


def _rollouts(valid: np.ndarray) -> Rollouts:
    n, m, k, t = valid.shape
    steps = np.arange(valid.size, dtype=np.float32).reshape(valid.shape)
    return Rollouts(
        observations=steps[..., None], actions=steps.astype(np.int64),
        rewards=np.where(valid, steps, 0).astype(np.float32), next_observations=steps[..., None],
        terminated=np.zeros(valid.shape, bool), truncated=np.zeros(valid.shape, bool),
        valid=valid, tasks=tuple(Task("x", {"i": i}, id=i) for i in range(n)))


def test_gae_known_answer_on_hand_built_trial():
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 0.2], [0.5, 1.0, 77.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv, ret = gae(rewards, values, mask, discount=0.9, gae_lambda=0.8)
    # row 0: δ2 = 2 - .2 = 1.8; δ1 = 0 + .9*.2 - 1 = -.82; δ0 = 1 + .9*1 - .5 = 1.4
    a2 = 1.8
    a1 = -0.82 + 0.72 * a2
    a0 = 1.4 + 0.72 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    # row 1 ends after step 1 (padding ignored): δ1 = 0 - 1 = -1; δ0 = 1 + .9 - .5 = 1.4
    assert adv[1].tolist() == pytest.approx([1.4 + 0.72 * -1.0, -1.0, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 0.2], abs=1e-6)
    assert ret[1, 2] == 0


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.3, -0.2, 0.7]])
    adv, _ = gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), 0.5, 1.0)
    expected = [1 + 0.5 * 2 + 0.25 * 3 - 0.3, 2 + 0.5 * 3 + 0.2, 3 - 0.7]
    assert adv[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_ppo_clip_loss_on_tiny_batch():
    old = torch.zeros(3)
    new = torch.tensor([0.1, 0.5, -0.5])
    adv = torch.tensor([1.0, 2.0, -1.0])
    loss, info = ppo_clip_loss(new, old, adv, clip=0.2, mask=torch.ones(3, dtype=torch.bool))
    # ratio e^.1 unclipped; e^.5 clipped to 1.2 (A>0); e^-.5 clipped to 0.8 (A<0, min picks it)
    expected = -(math.exp(0.1) * 1.0 + 1.2 * 2.0 + 0.8 * -1.0) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert info["clip_fraction"].item() == pytest.approx(2 / 3)
    masked, _ = ppo_clip_loss(new, old, adv, 0.2, torch.tensor([True, False, False]))
    assert masked.item() == pytest.approx(-math.exp(0.1), abs=1e-6)


def test_ppo_gradient_is_zero_where_clipped():
    new = torch.tensor([0.5, 0.0], requires_grad=True)
    loss, _ = ppo_clip_loss(new, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2,
                            torch.ones(2, dtype=torch.bool))
    loss.backward()
    assert new.grad[0] == 0 and new.grad[1] == pytest.approx(-0.5)


def test_trial_sequences_pack_valid_steps_in_order():
    valid = np.ones((1, 2, 2, 3), bool)
    valid[0, 0, 0, 2] = False  # trial 0: episode 0 ended after 2 steps
    r = _rollouts(valid)
    seq = r.trial_sequences()
    assert seq.mask.sum(1).tolist() == [5, 6]
    assert seq.actions[0, :5].tolist() == [0, 1, 3, 4, 5]
    assert seq.episode_start[0].tolist() == [True, False, True, False, False, False]
    assert seq.episode[0, :5].tolist() == [0, 0, 1, 1, 1]
    back = seq.unpack(seq.actions.astype(float), r.shape)
    assert np.array_equal(back[valid], r.actions[valid].astype(float))


def test_rollouts_validate_shapes_and_concatenate():
    r = _rollouts(np.ones((2, 1, 1, 2), bool))
    with pytest.raises(ValueError, match="leading shape"):
        Rollouts(**{**r.__dict__, "actions": r.actions[:, :, :, :1]})
    both = Rollouts.concatenate([r.select_tasks([1]), r.select_tasks([0])])
    assert both.tasks == (r.tasks[1], r.tasks[0])
    assert np.array_equal(both.rewards[0], r.rewards[1])


def test_task_json_round_trip():
    task = Task("bandit", {"means": np.array([0.1, 0.2])}, id=3)
    back = Task.from_json(task.to_json())
    assert back == task and back.id == 3
    assert back.array("means").tolist() == [0.1, 0.2]


def test_batch_rng_streams_depend_only_on_key():
    full = BatchRNG(7, np.arange(6), "env")
    part = BatchRNG(7, np.arange(2, 4), "env")
    a = full.random((6, 3))
    b = part.random((2, 3))
    assert np.array_equal(a[2:4], b)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(BatchRNG(8, np.arange(6), "env").random(6), full.random(6))


def test_batch_rng_normals_computed_ahead_equal_one_by_one():
    """Repeated same-sized normal draws are served from a block computed ahead; interleaved
    with other draws, subsets and sizes, every value must equal the plain Box-Muller draw
    at the same counter."""
    def reference(rng: BatchRNG, size: tuple[int, ...]) -> np.ndarray:
        per_env = int(np.prod(size[1:]))
        half = (per_env + 1) // 2
        u = rng.random((size[0], 2, half))
        z = np.concatenate([np.sqrt(-2 * np.log1p(-u[:, 0])) * np.cos(2 * np.pi * u[:, 1]),
                            np.sqrt(-2 * np.log1p(-u[:, 0])) * np.sin(2 * np.pi * u[:, 1])], 1)
        return z[:, :per_env].reshape(size)

    fast, slow = BatchRNG(3, np.arange(5), "x"), BatchRNG(3, np.arange(5), "x")
    plan = [(5, 3)] * 40 + ["uniform", (5, 2, 2), (5, 3), (5, 3), "subset"] + [(5, 3)] * 70
    for size in plan:
        if size == "uniform":
            assert np.array_equal(fast.random((5, 2)), slow.random((5, 2)))
        elif size == "subset":
            fast, slow = fast.subset(slice(1, 4)), slow.subset(slice(1, 4))
        else:
            size = (fast.size, *size[1:])
            assert np.array_equal(fast.standard_normal(size), reference(slow, size))


def test_batch_rng_distributions():
    rng = BatchRNG(0, np.arange(4))
    u = rng.random((4, 50_000))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    z = rng.standard_normal((4, 50_000))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    probs = np.tile([0.2, 0.0, 0.8], (4, 1))
    draws = np.stack([rng.categorical(probs) for _ in range(5000)])
    assert (draws == 1).sum() == 0
    assert abs((draws == 2).mean() - 0.8) < 0.02


def test_gaussian_head_log_prob_matches_torch_distributions():
    head = GaussianHead(4, 3, init_std=0.5)
    params = head(torch.randn(6, 4))
    action, log_prob = head.sample_with_log_prob(params, BatchRNG(0, np.arange(6)), False)
    mean, log_std = params.chunk(2, -1)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob, expected)
    torch.testing.assert_close(head.log_prob(params, action), expected)
    again = head.sample(params, BatchRNG(0, np.arange(6)), False)
    assert torch.equal(again, action)  # same draw with or without the log-probability


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gaussian_mlp_numpy_snapshot_acts_like_the_torch_network(activation):
    net = GaussianMLP(5, 3, (16, 8), activation=activation, init_std=0.7)
    obs = torch.randn(4, 5)
    keys = np.arange(4)
    action, log_prob = net.snapshot().act(obs.numpy(), BatchRNG(1, keys))
    params = net(obs)
    with torch.no_grad():
        expected = net.head.sample(params, BatchRNG(1, keys), deterministic=False)
        expected_log_prob = net.head.log_prob(params, expected)
    np.testing.assert_allclose(action, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob, expected_log_prob.numpy(), rtol=1e-5, atol=1e-5)
    mean, _ = net.snapshot().act(obs.numpy(), BatchRNG(1, keys), deterministic=True)
    np.testing.assert_allclose(mean, params[:, :3].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gaussian_mlp_policy_snapshots_weights_at_reset():
    net = GaussianMLP(2, 1, (4,))
    policy = GaussianMLPPolicy(net, deterministic=True)
    state = policy.reset([], 1, BatchRNG(0, [0]))
    obs = torch.ones(1, 2)
    before = policy.act(obs, state)[0]
    with torch.no_grad():
        net.head.mean.bias += 1.0
    assert torch.equal(policy.act(obs, state)[0], before)  # the trial keeps its weights
    after = policy.act(obs, policy.reset([], 1, BatchRNG(0, [0])))[0]
    torch.testing.assert_close(after, before + 1.0)
