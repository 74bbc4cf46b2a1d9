"""ProtoNet, MatchingNet and CNP: known answers, invariances, task independence, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from metarl.fewshot.blackbox import CNP, CNPConfig
from metarl.fewshot.data import FewShotBatch
from metarl.fewshot.datasets import make_task_source
from metarl.fewshot.metric import MatchingNet, MatchingNetConfig, ProtoNet, ProtoNetConfig

IMAGE = (1, 16, 16)
LEARNERS = {
    "protonet": lambda kind, shape, ways: ProtoNet(kind, shape, ways, hidden=8),
    "matchingnet": lambda kind, shape, ways: MatchingNet(kind, shape, ways, hidden=8),
    "matchingnet-fce": lambda kind, shape, ways: MatchingNet(kind, shape, ways, hidden=8,
                                                             fce=True, fce_steps=2),
    "cnp": lambda kind, shape, ways: CNP(kind, shape, ways, hidden=32, representation=32,
                                         conv_hidden=8),
}


def episodes(batch: int, ways: int = 3, shots: int = 5, queries: int = 5, *,
             seed: int = 0, shape: tuple[int, ...] = (8,)) -> FewShotBatch:
    """Random classification tasks: class centres drawn per task in the first two
    coordinates; every other coordinate is noise (std 2) that an embedding must learn to
    ignore. ``shape=IMAGE`` gives random images instead (no structure)."""
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 3:
        sx = torch.rand(batch, ways * shots, *shape, generator=g)
        qx = torch.rand(batch, ways * queries, *shape, generator=g)
    else:
        centres = torch.zeros(batch, ways, *shape)
        centres[..., :2] = 2 * torch.randn(batch, ways, 2, generator=g)

        def draw(n: int) -> torch.Tensor:
            x = centres.repeat_interleave(n, 1)
            noise = torch.randn(x.shape, generator=g)
            noise[..., :2] *= 0.4
            noise[..., 2:] *= 2.0
            return x + noise

        sx, qx = draw(shots), draw(queries)
    sy = torch.arange(ways).repeat_interleave(shots).expand(batch, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(batch, -1).contiguous()
    return FewShotBatch(sx, sy, qx, qy)


def permute_support(batch: FewShotBatch, seed: int = 1) -> FewShotBatch:
    """The same tasks with each task's support examples in a different random order."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(batch.support_y.shape[1], generator=g)
                        for _ in range(len(batch))])
    sx = torch.stack([x[p] for x, p in zip(batch.support_x, perm, strict=True)])
    sy = torch.gather(batch.support_y, 1, perm)
    return FewShotBatch(sx, sy, batch.query_x, batch.query_y)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: extra intra-op threads only add overhead (and spin when the
    machine is busy, making the learning tests many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------- known answers


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    torch.manual_seed(0)
    learner = ProtoNet("classification", (4,), 3)
    learner.encoder = nn.Identity()
    b = episodes(2, ways=3, shots=4, queries=2, shape=(4,))
    logits = learner.predict(b.support_x, b.support_y, b.query_x)
    assert logits.shape == (2, 6, 3)
    expected = torch.empty(2, 6, 3)
    for t in range(2):
        for c in range(3):
            proto = b.support_x[t][b.support_y[t] == c].mean(0)
            for q in range(6):
                expected[t, q, c] = -((b.query_x[t, q] - proto) ** 2).sum()
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)
    # the arg-max is the nearest prototype (by an independent distance computation)
    protos = torch.stack([torch.stack([b.support_x[t][b.support_y[t] == c].mean(0)
                                       for c in range(3)]) for t in range(2)])
    assert torch.equal(logits.argmax(-1), torch.cdist(b.query_x, protos).argmin(-1))


def test_protonet_cosine_and_inferred_ways():
    learner = ProtoNet("classification", (4,), None, distance="cosine")
    learner.encoder = nn.Identity()
    b = episodes(2, ways=3, shots=2, queries=1, shape=(4,))
    logits = learner.predict(b.support_x, b.support_y, b.query_x)
    assert logits.shape == (2, 3, 3)  # ways inferred from the labels
    proto = b.support_x[1, 2:4].mean(0)
    expected = nn.functional.cosine_similarity(b.query_x[1, 0], proto, dim=0)
    torch.testing.assert_close(logits[1, 0, 1], expected)
    with pytest.raises(ValueError, match="distance"):
        ProtoNet("classification", (4,), 3, distance="l1")
    with pytest.raises(ValueError, match="does not support regression"):
        ProtoNet("regression", (1,))


def test_matchingnet_attention_known_answer():
    learner = MatchingNet("classification", (2,), 2, scale=2.0, learn_scale=False)
    learner.encoder = nn.Identity()
    assert not any(p.requires_grad for p in learner.parameters())  # fixed scale, no encoder
    sx = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # 2-way 1-shot: labels 1, 0
    sy = torch.tensor([[1, 0]])
    qx = torch.tensor([[[1.0, 1.0], [2.0, -1.0]]])
    logits = learner.predict(sx, sy, qx)
    # query 0: cos with both supports = 1/sqrt 2 -> equal attention
    # query 1: cos with (1, 0) = 2/sqrt 5 (label 1), with (0, 3) = -1/sqrt 5 (label 0)
    c1, c0 = 2 / math.sqrt(5), -1 / math.sqrt(5)
    p1 = math.exp(2 * c1) / (math.exp(2 * c1) + math.exp(2 * c0))
    expected = torch.tensor([[[0.5, 0.5], [1 - p1, p1]]]).log()
    torch.testing.assert_close(logits, expected)
    # with several shots, a class's probability is the sum of its examples' attention
    sx = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    sy = torch.tensor([[0, 1, 0]])
    q = torch.tensor([[[3.0, 1.0]]])
    attention = torch.softmax(2 * nn.functional.cosine_similarity(q[0], sx[0], dim=-1), 0)
    expected = torch.stack([attention[0] + attention[2], attention[1]]).log()
    torch.testing.assert_close(learner.predict(sx, sy, q)[0, 0], expected)


def test_matchingnet_scale_is_learned():
    learner = MatchingNet("classification", (4,), 3, scale=10.0)
    assert isinstance(learner.log_scale, nn.Parameter)
    assert learner.log_scale.item() == pytest.approx(math.log(10.0))
    b = episodes(2, ways=3, shots=2, queries=2, shape=(4,))
    loss, _ = learner.meta_loss(b)
    loss.backward()
    assert learner.log_scale.grad is not None and learner.log_scale.grad != 0


# ------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "cnp"])
@pytest.mark.parametrize("shape", [(8,), IMAGE], ids=["vector", "image"])
def test_support_order_does_not_matter(name, shape):
    torch.manual_seed(0)
    learner = LEARNERS[name]("classification", shape, 3)
    b = episodes(2, ways=3, shots=3, queries=2, shape=shape)
    shuffled = permute_support(b)
    assert not torch.equal(shuffled.support_y, b.support_y)
    with torch.no_grad():
        out = learner.predict(b.support_x, b.support_y, b.query_x)
        out_shuffled = learner.predict(shuffled.support_x, shuffled.support_y, b.query_x)
    torch.testing.assert_close(out_shuffled, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "matchingnet-fce", "cnp"])
def test_relabelling_permutes_logits(name):
    """Relabel the support by π: the logit of class c moves to column π(c)."""
    torch.manual_seed(0)
    learner = LEARNERS[name]("classification", (8,), 4)
    b = episodes(2, ways=4, shots=2, queries=2)
    pi = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = learner.predict(b.support_x, b.support_y, b.query_x)
        relabelled = learner.predict(b.support_x, pi[b.support_y], b.query_x)
    torch.testing.assert_close(relabelled[..., pi], out, rtol=1e-5, atol=1e-5)


def test_cnp_regression_shapes_and_order_invariance():
    torch.manual_seed(0)
    learner = CNP("regression", (1,))
    assert learner.encoder.layers[0].in_features == 2  # (x, y) pairs
    b = make_task_source("sinusoid", shots=7, queries=5).sample(3, np.random.default_rng(0))
    mean, std = learner.distribution(b.support_x, b.support_y, b.query_x)
    assert mean.shape == std.shape == (3, 5, 1)
    assert bool((std >= 0.1).all())
    torch.testing.assert_close(learner.predict(b.support_x, b.support_y, b.query_x), mean)
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(7, generator=g)
    shuffled = learner.predict(b.support_x[:, perm], b.support_y[:, perm], b.query_x)
    torch.testing.assert_close(shuffled, mean, rtol=1e-5, atol=1e-6)
    # each query is decoded independently of the others: a subset gives the same values
    torch.testing.assert_close(learner.predict(b.support_x, b.support_y, b.query_x[:, :2]),
                               mean[:, :2])
    # the support matters
    other = learner.predict(b.support_x, -b.support_y, b.query_x)
    assert not torch.allclose(other, mean)
    loss, metrics = learner.meta_loss(b)
    assert set(metrics) == {"loss", "nll", "mse"}
    assert metrics["loss"] == pytest.approx(loss.item())
    expected_mse = (mean - b.query_y).square().mean().item()
    assert metrics["mse"] == pytest.approx(expected_mse, rel=1e-5)
    expected_nll = (torch.log(std) + 0.5 * math.log(2 * math.pi)
                    + 0.5 * ((b.query_y - mean) / std) ** 2).mean().item()
    assert metrics["nll"] == pytest.approx(expected_nll, rel=1e-5)


# ---------------------------------------------------------------------- task independence


@pytest.mark.parametrize("name", list(LEARNERS))
def test_batched_prediction_equals_per_task(name):
    """Conv4's batch norm uses batch statistics: the learners must embed each task alone."""
    torch.manual_seed(0)
    learner = LEARNERS[name]("classification", IMAGE, 3)
    b = episodes(3, ways=3, shots=2, queries=3, shape=IMAGE)
    with torch.no_grad():
        batched = learner.predict(b.support_x, b.support_y, b.query_x)
        alone = torch.cat([learner.predict(t.support_x, t.support_y, t.query_x)
                           for t in map(b.task, range(3))])
    assert batched.shape == (3, 9, 3)
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_flattening_tasks_through_batch_norm_would_mix_them():
    """The check above has teeth: Conv4 on the flattened batch differs from per-task calls."""
    torch.manual_seed(0)
    learner = ProtoNet("classification", IMAGE, 3, hidden=8)
    x = episodes(3, ways=3, shots=2, shape=IMAGE).support_x
    with torch.no_grad():
        flat = learner.encoder(x.flatten(0, 1)).view(3, 6, -1)
        alone = torch.stack([learner.encoder(task) for task in x])
    assert not torch.allclose(flat, alone, atol=1e-3)


def test_fce_depends_on_support_order_and_trains():
    torch.manual_seed(0)
    learner = LEARNERS["matchingnet-fce"]("classification", (8,), 3)
    b = episodes(2, ways=3, shots=2, queries=2)
    with torch.no_grad():
        out = learner.predict(b.support_x, b.support_y, b.query_x)
        shuffled = permute_support(b)
        other = learner.predict(shuffled.support_x, shuffled.support_y, b.query_x)
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(2, 6))  # log-probabilities
    assert not torch.allclose(out, other)  # the BiLSTM reads the support in order
    loss, _ = learner.meta_loss(b)
    loss.backward()
    for module in (learner.support_lstm, learner.query_lstm, learner.encoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# ---------------------------------------------------------------------------- learning


def evaluate(learner, batch: FewShotBatch) -> tuple[float, float]:
    with torch.no_grad():
        logits = learner.predict(batch.support_x, batch.support_y, batch.query_x)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
    return loss.item(), (logits.argmax(-1) == batch.query_y).float().mean().item()


@pytest.mark.parametrize("name", ["protonet", "matchingnet", "cnp"])
def test_learns_few_shot_classification(name):
    torch.manual_seed(0)
    learner = LEARNERS[name]("classification", (8,), 3)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    held_out = episodes(64, seed=10_000)
    loss_before, _ = evaluate(learner, held_out)
    for step in range(150):
        metrics = learner.train_step(episodes(8, seed=step), optimizer)
    assert set(metrics) == {"loss", "accuracy"}
    loss_after, accuracy = evaluate(learner, held_out)
    assert loss_after < 0.4 * loss_before
    # chance: 1/3; nearest class mean on the raw inputs: 0.69; on the 2 informative
    # coordinates (the embedding to learn): 0.97
    assert accuracy > 0.85


def square_tasks(batch: int, seed: int, ways: int = 3, shots: int = 3) -> FewShotBatch:
    """Image tasks: a class is the position of a bright 4x4 square (drawn per task), each
    example jittered by up to a pixel, plus uniform noise in [0, 1.5] on every pixel."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.randint(1, 12, (batch, ways, 1, 2), generator=g)

    def draw() -> torch.Tensor:
        at = corners + torch.randint(-1, 2, (batch, ways, shots, 2), generator=g)
        pixels = torch.arange(16)
        rows = (pixels >= at[..., :1]) & (pixels < at[..., :1] + 4)  # [B, N, K, 16]
        cols = (pixels >= at[..., 1:]) & (pixels < at[..., 1:] + 4)
        square = (rows.unsqueeze(-1) & cols.unsqueeze(-2)).float()
        noise = 1.5 * torch.rand(square.shape, generator=g)
        return (square + noise).view(batch, ways * shots, *IMAGE)

    y = torch.arange(ways).repeat_interleave(shots).expand(batch, -1).contiguous()
    return FewShotBatch(draw(), y, draw(), y)


def test_protonet_learns_on_images():
    """Conv4 under vmap trains (per-task batch norm, gradients through vmap)."""
    torch.manual_seed(0)
    learner = ProtoNet("classification", IMAGE, 3, hidden=16)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    held_out = square_tasks(32, seed=10_000)
    loss_before, _ = evaluate(learner, held_out)
    for step in range(30):
        learner.train_step(square_tasks(8, seed=step), optimizer)
    loss_after, accuracy = evaluate(learner, held_out)
    assert loss_after < 0.4 * loss_before
    assert accuracy > 0.8  # chance: 1/3; about 0.45 before training


def test_cnp_learns_sinusoid_regression():
    torch.manual_seed(0)
    source = make_task_source("sinusoid", shots=10, queries=10)
    learner = CNP.from_config(CNPConfig(), "regression", (1,), None)
    optimizer = learner.make_optimizer(CNPConfig().lr)
    rng = np.random.default_rng(0)
    for _ in range(600):
        metrics = learner.train_step(source.sample(32, rng), optimizer)
    assert set(metrics) == {"loss", "nll", "mse"}
    held_out = source.sample(200, np.random.default_rng(10_000))
    with torch.no_grad():
        mean = learner.predict(held_out.support_x, held_out.support_y, held_out.query_x)
    mse = (mean - held_out.query_y).square().mean().item()
    mse_of_zero = held_out.query_y.square().mean().item()
    assert mse < 0.4 * mse_of_zero  # about 0.18 of it after these 600 steps


# ------------------------------------------------------------------------------ configs


def test_from_config():
    proto = ProtoNet.from_config(ProtoNetConfig(distance="cosine"), "classification",
                                 (1, 28, 28), 5)
    assert proto.distance == "cosine" and proto.embedding_dim == 64
    matching = MatchingNet.from_config(MatchingNetConfig(fce=True), "classification",
                                       (1, 28, 28), 5)
    assert matching.fce and matching.query_lstm.hidden_size == 64
    cnp = CNP.from_config(CNPConfig(), "classification", (1, 28, 28), 5)
    assert cnp.encoder.layers[0].in_features == 64  # Conv4 embedding, labels via grouping
    for config in (ProtoNetConfig(), MatchingNetConfig(), CNPConfig()):
        assert config.lr == 1e-3 and config.meta_batch == 32
