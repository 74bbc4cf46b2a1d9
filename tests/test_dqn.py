"""Known-answer tests for the recurrent DQN pieces (metarl/nn/dqn.py) and the sequence replay
buffer (metarl/replay.py)."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from metarl.nn import (
    DuelingHead,
    LinearSchedule,
    RecurrentQNetwork,
    double_dqn_targets,
    epsilon_greedy,
    hard_update,
    masked_td_loss,
)
from metarl.random import BatchRNG
from metarl.replay import SequenceReplayBuffer, valid_mask

# ------------------------------------------------------------------ targets and losses


def test_double_dqn_targets_on_hand_batch():
    rewards = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    done = torch.tensor([[False, True], [False, False]])
    online = torch.tensor([[[1.0, 3.0, 2.0], [5.0, 0.0, 0.0]],
                           [[0.0, 0.0, 4.0], [2.0, 2.0, 1.0]]], requires_grad=True)
    target = torch.tensor([[[10.0, 20.0, 30.0], [100.0, 100.0, 100.0]],
                           [[7.0, 8.0, 6.0], [3.0, 9.0, 1.0]]], requires_grad=True)
    out = double_dqn_targets(rewards, done, online, target, gamma=0.9)
    # [0,0]: online argmax 1 (target's own argmax would be 2): 1 + .9 * 20 = 19
    # [0,1]: done, no bootstrap: 2
    # [1,0]: online argmax 2 (target's argmax is 1): 0.5 + .9 * 6 = 5.9
    # [1,1]: online tie between 0 and 1 -> first index 0: -1 + .9 * 3 = 1.7
    torch.testing.assert_close(out, torch.tensor([[19.0, 2.0], [5.9, 1.7]]))
    assert not out.requires_grad


def test_masked_td_loss_by_hand_and_padding_does_not_count():
    q = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]], requires_grad=True)
    actions = torch.tensor([[1, 0], [0, 1]])
    targets = torch.tensor([[0.0, 1.0], [2.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    loss = masked_td_loss(q, actions, targets, mask)
    # Q(s, a) = 2, 3, 5 (and 8 masked); errors 2, 2, 3 -> (4 + 4 + 9) / 3
    assert loss.item() == pytest.approx(17 / 3)
    loss.backward()
    # d/dQ[0,0,1] = 2 * (2 - 0) / 3; masked step and untaken actions get no gradient
    expected = torch.zeros(2, 2, 2)
    expected[0, 0, 1], expected[0, 1, 0], expected[1, 0, 0] = 4 / 3, 4 / 3, 2.0
    torch.testing.assert_close(q.grad, expected)

    # the masked step's target, Q-values and action can be anything, even NaN / out of range
    q2 = q.detach().clone()
    q2[1, 1] = float("nan")
    q2.requires_grad_(True)
    targets2, actions2 = targets.clone(), actions.clone()
    targets2[1, 1], actions2[1, 1] = float("nan"), -1
    loss2 = masked_td_loss(q2, actions2, targets2, mask)
    assert loss2.item() == pytest.approx(17 / 3)
    loss2.backward()
    assert torch.isfinite(q2.grad).all()
    assert masked_td_loss(q, actions, targets, torch.zeros(2, 2, dtype=torch.bool)).item() == 0


def test_dueling_head_subtracts_per_state_mean_advantage():
    head = DuelingHead(2, 3)
    with torch.no_grad():
        head.value.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.value.bias.fill_(0.5)
        head.advantage.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.advantage.bias.zero_()
    h = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    q = head(h)
    # state 0: V = 1.5, A = (1, 2, 3), mean 2 -> Q = (0.5, 1.5, 2.5)
    # state 1: V = 3.5, A = (3, -1, 2), mean 4/3 -> Q = 3.5 + (5/3, -7/3, 2/3)
    assert q[0].tolist() == pytest.approx([0.5, 1.5, 2.5])
    assert q[1].tolist() == pytest.approx([31 / 6, 7 / 6, 25 / 6])
    value = head.value(h)
    advantage = head.advantage(h)
    torch.testing.assert_close(q - value, advantage - advantage.mean(-1, keepdim=True))
    # another state's advantages do not move this state's Q (a batch-wide mean would)
    q_other = head(torch.tensor([[1.0, 2.0], [30.0, 40.0]]))
    torch.testing.assert_close(q_other[0], q[0])


def test_linear_schedule_values():
    epsilon = LinearSchedule(1.0, 0.01, 250_000)
    assert epsilon(0) == 1.0
    assert epsilon(125_000) == pytest.approx(0.505)
    assert epsilon(250_000) == 0.01
    assert epsilon(10**7) == 0.01
    rising = LinearSchedule(0.0, 10.0, 4)
    assert [rising(t) for t in (-1, 0, 1, 2, 4, 5)] == pytest.approx([0, 0, 2.5, 5, 10, 10])
    assert LinearSchedule(1.0, 0.5, 0)(0) == 0.5
    with pytest.raises(ValueError):
        LinearSchedule(1.0, 0.0, -1)


def test_hard_update_copies_parameters_and_buffers():
    source = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    source(torch.randn(8, 3))  # moves BatchNorm's running statistics
    hard_update(target, source)
    for a, b in zip(target.state_dict().values(), source.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        source[0].weight.add_(1.0)
    assert not torch.equal(target[0].weight, source[0].weight)  # a copy, not shared


# ------------------------------------------------------------------ epsilon-greedy


def test_epsilon_greedy_zero_is_argmax_with_first_index_on_ties():
    q = torch.tensor([[0.0, 2.0, 1.0], [3.0, 3.0, 0.0], [-1.0, -2.0, -1.0], [0.0, 0.0, 5.0]])
    actions = epsilon_greedy(q, 0.0, BatchRNG(0, np.arange(4)))
    assert actions.dtype == torch.int64
    assert actions.tolist() == [1, 0, 0, 2]


def test_epsilon_greedy_one_is_the_streams_uniform_draw():
    keys = np.array([4, 9, 2, 7, 11])
    q = torch.randn(5, 6)
    actions = epsilon_greedy(q, 1.0, BatchRNG(3, keys, "policy"))
    reference = BatchRNG(3, keys, "policy")
    reference.random(5)
    assert actions.tolist() == reference.integers(6, size=5).tolist()
    # per-environment epsilon as a tensor: 1 explores, 0 takes the argmax
    eps = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    mixed = epsilon_greedy(q, eps, BatchRNG(3, keys, "policy"))
    greedy = q.argmax(-1)
    assert mixed.tolist() == [actions[0], greedy[1], actions[2], greedy[3], actions[4]]


def test_epsilon_greedy_streams_advance_regardless_of_epsilon():
    q = torch.randn(3, 4)
    a, b = BatchRNG(1, [0, 1, 2]), BatchRNG(1, [0, 1, 2])
    epsilon_greedy(q, 0.0, a)
    epsilon_greedy(q, 1.0, b)
    torch.testing.assert_close(epsilon_greedy(q, 1.0, a), epsilon_greedy(q, 1.0, b))


def test_epsilon_greedy_same_keys_same_actions_batched_or_alone():
    keys = np.array([3, 5, 8, 13])
    eps = torch.tensor([0.3, 0.5, 0.7, 1.0])
    gen = torch.Generator().manual_seed(0)
    qs = [torch.randn(4, 5, generator=gen) for _ in range(20)]
    batched = BatchRNG(7, keys, "policy")
    together = torch.stack([epsilon_greedy(q, eps, batched) for q in qs])
    for b, key in enumerate(keys):
        alone = BatchRNG(7, [key], "policy")
        actions = [epsilon_greedy(q[b:b + 1], eps[b:b + 1], alone)[0] for q in qs]
        assert torch.stack(actions).tolist() == together[:, b].tolist()
    subset = BatchRNG(7, keys, "policy").subset(np.array([1, 3]))
    part = torch.stack([epsilon_greedy(q[[1, 3]], eps[[1, 3]], subset) for q in qs])
    assert part.tolist() == together[:, [1, 3]].tolist()
    # the random actions really vary (the test would pass vacuously on a constant stream)
    assert len(set(together[:, 3].tolist())) > 2


def test_epsilon_greedy_action_frequencies_at_half():
    batch, num_actions = 4000, 4
    q = torch.zeros(batch, num_actions)
    q[:, 2] = 1.0
    actions = epsilon_greedy(q, 0.5, BatchRNG(11, np.arange(batch)))
    freq = np.bincount(actions.numpy(), minlength=num_actions) / batch
    # greedy 2 with prob .5 + .5/4 = .625, each other action .125 (std ~ .008 and .005)
    assert freq == pytest.approx([0.125, 0.125, 0.625, 0.125], abs=0.03)
    with pytest.raises(ValueError):
        epsilon_greedy(q, 0.5, BatchRNG(11, np.arange(3)))


# ------------------------------------------------------------------ recurrent Q-network


@pytest.mark.parametrize("context_dim", [0, 4])
def test_recurrent_q_network_step_equals_forward(context_dim):
    torch.manual_seed(0)
    net = RecurrentQNetwork(5, 3, embed_dim=8, hidden_size=6, context_dim=context_dim,
                            head_hidden=16)
    x = torch.randn(2, 7, 5)
    context = torch.randn(2, context_dim) if context_dim else None
    q, final = net(x, context)
    assert q.shape == (2, 7, 3) and final.shape == (2, 12)
    state = net.initial_state(2)
    assert state.shape == (2, 12) and not state.any()
    steps = []
    for t in range(7):
        q_t, state = net.step(x[:, t], context, state)
        steps.append(q_t)
    torch.testing.assert_close(torch.stack(steps, 1), q)
    torch.testing.assert_close(state, final)
    # a sequence split in two, the state carried across, is the whole sequence
    q_a, mid = net(x[:, :3], context)
    q_b, end = net(x[:, 3:], context, mid)
    torch.testing.assert_close(torch.cat([q_a, q_b], 1), q)
    torch.testing.assert_close(end, final)
    # the context matters, and is required exactly when declared
    if context_dim:
        assert not torch.allclose(net(x, context + 1.0)[0], q)
        with pytest.raises(ValueError):
            net(x)
    else:
        with pytest.raises(ValueError):
            net(x, torch.zeros(2, 4))


def test_recurrent_q_network_state_masking_keeps_a_state():
    torch.manual_seed(1)
    net = RecurrentQNetwork(3, 2, embed_dim=4, hidden_size=5, context_dim=2, head_hidden=8)
    x = torch.randn(3, 4, 3)
    context = torch.randn(3, 2)
    valid = torch.tensor([[True, True, True], [True, False, True],
                          [True, True, True], [True, True, True]])  # env 1 skips step 1
    state = net.initial_state(3)
    qs = []
    for t in range(4):
        q_t, next_state = net.step(x[:, t], context, state)
        kept = torch.where(valid[t, :, None], next_state, state)
        if not valid[t, 1]:
            torch.testing.assert_close(kept[1], state[1])
            assert not torch.allclose(next_state[1], state[1])
        state = kept
        qs.append(q_t)
    # env 1's state equals running its sequence without the skipped step
    q_alone, state_alone = net(x[1:2, [0, 2, 3]], context[1:2])
    torch.testing.assert_close(state[1:2], state_alone)
    torch.testing.assert_close(torch.stack(qs, 1)[1, [2, 3]], q_alone[0, 1:])


# ------------------------------------------------------------------ sequence replay

FIELDS = {"obs": ((3, 2), np.float32), "actions": ((3,), np.int64), "valid": ((3,), "bool")}


def _entries(ids) -> dict[str, np.ndarray]:
    """Entries identified by ``obs[:, 0, 0] == id``; every field depends on the id."""
    ids = np.asarray(ids)
    obs = ids[:, None, None] + np.arange(6).reshape(1, 3, 2) / 10
    return {"obs": obs.astype(np.float32), "actions": ids[:, None] * 10 + np.arange(3),
            "valid": valid_mask(ids % 4, 3)}


def _ids(buffer: SequenceReplayBuffer) -> list[int]:
    return buffer.data["obs"][:len(buffer), 0, 0].astype(int).tolist()


def test_valid_mask():
    assert valid_mask([0, 2, 3], 3).tolist() == [[False] * 3, [True, True, False], [True] * 3]


def test_sequence_replay_round_trip_of_exact_entries():
    buffer = SequenceReplayBuffer(10, FIELDS)
    added = _entries([5, 6, 7, 8, 9])
    buffer.add(added)
    assert len(buffer) == 5
    batch = buffer.sample(300, np.random.default_rng(0))
    assert {name: (a.shape, a.dtype) for name, a in batch.items()} == {
        "obs": ((300, 3, 2), np.float32), "actions": ((300, 3), np.int64),
        "valid": ((300, 3), np.bool_)}
    ids = batch["obs"][:, 0, 0].astype(int)
    assert set(ids.tolist()) == {5, 6, 7, 8, 9}  # uniform over stored entries, none other
    expected = _entries(ids)
    for name in FIELDS:
        np.testing.assert_array_equal(batch[name], expected[name])
    counts = np.bincount(ids - 5)
    assert counts.min() > 300 / 5 * 0.6
    with pytest.raises(ValueError, match="empty"):
        SequenceReplayBuffer(4, FIELDS).sample(1, np.random.default_rng(0))


def test_sequence_replay_fifo_overwrite_after_wrap_around():
    buffer = SequenceReplayBuffer(4, FIELDS, initial_capacity=1)
    buffer.add(_entries([0, 1, 2]))
    buffer.add(_entries([3, 4, 5]))
    # slots 0..3 held 0..3; 4 and 5 overwrote the oldest (0, 1); next write at slot 2
    assert _ids(buffer) == [4, 5, 2, 3]
    assert buffer.position == 2 and len(buffer) == 4
    buffer.add(_entries([6]))
    assert _ids(buffer) == [4, 5, 6, 3]
    # more entries than capacity at once: as if added one by one
    one_by_one = SequenceReplayBuffer(4, FIELDS, initial_capacity=1)
    at_once = SequenceReplayBuffer(4, FIELDS, initial_capacity=1)
    one_by_one.add(_entries([0]))
    at_once.add(_entries([0]))
    for i in range(1, 8):
        one_by_one.add(_entries([i]))
    at_once.add(_entries(range(1, 8)))
    assert _ids(at_once) == _ids(one_by_one) == [4, 5, 6, 7]
    assert at_once.position == one_by_one.position == 0


def test_sequence_replay_grows_by_doubling_up_to_capacity():
    buffer = SequenceReplayBuffer(10, FIELDS, initial_capacity=2)
    rows = []
    for count in (1, 2, 3, 5):
        buffer.add(_entries(range(len(buffer), len(buffer) + count)))
        rows.append(buffer.rows)
    assert rows == [2, 4, 8, 10]
    assert len(buffer) == 10 and buffer.position == 1
    assert _ids(buffer) == [10, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def _save_load(state):
    stream = io.BytesIO()
    torch.save(state, stream)
    stream.seek(0)
    return torch.load(stream, weights_only=True)


def test_sequence_replay_state_dict_round_trip():
    buffer = SequenceReplayBuffer(6, FIELDS, initial_capacity=2)
    buffer.add(_entries(range(3)))
    partial = buffer.state_dict()
    assert partial["data"]["obs"].shape == (3, 3, 2)  # only filled rows
    buffer.add(_entries(range(3, 8)))  # wraps: position 2
    copy = SequenceReplayBuffer(6, FIELDS, initial_capacity=2)
    copy.load_state_dict(_save_load(buffer.state_dict()))
    assert (len(copy), copy.position, copy.rows) == (len(buffer), buffer.position, buffer.rows)
    for name in FIELDS:
        np.testing.assert_array_equal(copy.data[name], buffer.data[name])
        assert copy.data[name].dtype == buffer.data[name].dtype
    for ids in ([8], [9, 10, 11]):  # further adds behave identically
        buffer.add(_entries(ids))
        copy.add(_entries(ids))
    assert _ids(buffer) == _ids(copy) == [6, 7, 8, 9, 10, 11]
    a, b = buffer.sample(20, np.random.default_rng(3)), copy.sample(20, np.random.default_rng(3))
    for name in FIELDS:
        np.testing.assert_array_equal(a[name], b[name])
    # a partial state restores into a fresh buffer too
    fresh = SequenceReplayBuffer(6, FIELDS, initial_capacity=2)
    fresh.load_state_dict(_save_load(partial))
    assert _ids(fresh) == [0, 1, 2] and fresh.position == 3
    with pytest.raises(ValueError, match="fields"):
        SequenceReplayBuffer(6, {"obs": FIELDS["obs"]}).load_state_dict(partial)


def test_sequence_replay_rejects_bad_batches():
    buffer = SequenceReplayBuffer(4, FIELDS)
    good = _entries([1, 2])
    with pytest.raises(ValueError, match="'valid'"):
        buffer.add({"obs": good["obs"], "actions": good["actions"]})
    with pytest.raises(ValueError, match="'rewards'"):
        buffer.add({**good, "rewards": np.zeros(2)})
    with pytest.raises(ValueError, match="'obs'"):
        buffer.add({**good, "obs": np.zeros((2, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="'obs'"):
        buffer.add({**good, "obs": np.zeros((3, 2), np.float32)})  # no entry axis
    with pytest.raises(ValueError, match="'actions'"):
        buffer.add({**good, "actions": good["actions"][:1]})  # 1 entry, others 2
    with pytest.raises(ValueError, match="'actions'"):
        buffer.add({**good, "actions": good["actions"] + 0.5})  # floats into an int field
    with pytest.raises(ValueError, match="'names'"):
        SequenceReplayBuffer(4, {"names": ((2,), object)})
    assert len(buffer) == 0  # nothing half-added
