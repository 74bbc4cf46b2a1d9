"""Metric-based few-shot learners: Prototypical Networks and Matching Networks.

* ProtoNet (Snell et al. 2017, "Prototypical Networks for Few-shot Learning"): a class's
  prototype is the mean embedding of its support examples; a query's logits are its negative
  squared Euclidean distances to the prototypes.
* MatchingNet (Vinyals et al. 2016, "Matching Networks for One Shot Learning"): a query's
  label distribution is a softmax attention over the support set (cosine similarity) applied
  to the support labels; optionally with full context embeddings (FCE).

The embedding network is :class:`~metarl.fewshot.models.Conv4` without a head for images
``(C, H, W)`` and a ReLU :class:`~metarl.nn.MLP` for vectors. Conv4's batch norm uses the
statistics of the batch it sees, so each task's support and query images are embedded
together (as in Snell et al.'s code) in one call per task, the tasks vmapped
(:func:`embed`): no statistics are shared across tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import vmap

from metarl.config import AT_LEAST_1, POSITIVE, setting
from metarl.fewshot.learner import FewShotLearner
from metarl.fewshot.models import Conv4
from metarl.nn import MLP


def make_encoder(input_shape: tuple[int, ...], hidden: int) -> tuple[nn.Module, int]:
    """The embedding network and its output size: Conv4 (``hidden`` filters, no head) for
    images ``(C, H, W)``; for vectors, an MLP with two ReLU layers of ``hidden`` units and a
    linear ``hidden``-dimensional output."""
    if len(input_shape) == 3:
        net = Conv4(input_shape[0], None, hidden=hidden, image_size=input_shape[-1])
        return net, net.embedding_dim
    net = MLP(math.prod(input_shape), (hidden, hidden), hidden, activation="relu")
    return net, hidden


def embed(encoder: nn.Module, *xs: Tensor) -> tuple[Tensor, ...]:
    """Embeddings ``[B, M_j, D]`` of inputs ``[B, M_j, ...]``, each task independently.

    The inputs of a task are concatenated and embedded in one call, vmapped over the tasks, so
    batch-norm statistics are per task (flattening ``B`` into the batch would mix tasks)."""
    sizes = [x.shape[1] for x in xs]
    x = torch.cat(xs, 1)
    if x.dim() > 3:  # images [B, M, C, H, W]
        z = vmap(encoder)(x)
    else:  # vectors: every layer acts per example, no vmap needed
        z = encoder(x.flatten(2))
    return z.split(sizes, 1)


def one_hot(labels: Tensor, ways: int | None) -> Tensor:
    """``[B, S, ways]`` float one-hot labels; ``ways`` is inferred as ``max + 1`` if None."""
    n = int(labels.max()) + 1 if ways is None else ways
    return nn.functional.one_hot(labels, n).to(torch.get_default_dtype())


def class_means(features: Tensor, onehot: Tensor) -> Tensor:
    """Mean feature of each class ``[B, N, D]`` from ``features [B, S, D]`` and one-hot
    labels ``[B, S, N]`` (a class without support examples gets zeros)."""
    counts = onehot.sum(1).clamp_min(1.0)  # [B, N]
    return onehot.transpose(1, 2) @ features / counts.unsqueeze(-1)


def check_ways(ways: int | None) -> int | None:
    """``ways`` if it is None or a positive integer, else a ValueError."""
    if ways is not None and (isinstance(ways, bool) or ways < 1):
        raise ValueError(f"ways must be a positive integer or None, got {ways!r}")
    return ways


# -------------------------------------------------------------------------------- ProtoNet


DISTANCES = ("sqeuclidean", "cosine")


@dataclass
class ProtoNetConfig:
    """Prototypical Networks (Snell et al. 2017). Paper: Adam, lr 1e-3 halved every 2000
    episodes (no schedule here), one episode per update with more ways in training than at
    test (60-way on Omniglot, 30/20-way on miniImageNet); here ``meta_batch`` tasks of the
    evaluation's ways per update."""

    lr: float = setting(1e-3, POSITIVE)  # Adam (paper: 1e-3)
    meta_batch: int = setting(32, AT_LEAST_1)  # tasks per update (paper: 1 episode)
    hidden: int = setting(64, AT_LEAST_1)  # Conv4 filters (paper: 64) or MLP width
    # paper's choice; "cosine" is its ablation
    distance: str = setting("sqeuclidean", choices=DISTANCES)


class ProtoNet(FewShotLearner):
    """Prototypical Networks (Snell et al. 2017): ``logits[q, c] = −‖f(q) − p_c‖²`` with
    prototype ``p_c`` the mean embedding of class ``c``'s support examples (or the cosine
    similarity with ``distance="cosine"``). ``ways=None`` infers the number of classes from
    the support labels (``max + 1``)."""

    supports = ("classification",)

    def __init__(self, task_kind: str, input_shape: tuple[int, ...], ways: int | None = None,
                 hidden: int = 64, distance: str = "sqeuclidean"):
        super().__init__(task_kind)
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; valid: {', '.join(DISTANCES)}")
        self.ways = check_ways(ways)
        self.distance = distance
        self.encoder, self.embedding_dim = make_encoder(tuple(input_shape), hidden)

    def prototypes(self, support_z: Tensor, support_y: Tensor) -> Tensor:
        """Class prototypes ``[B, N, D]`` from support embeddings ``[B, S, D]``."""
        return class_means(support_z, one_hot(support_y, self.ways))

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        support_z, query_z = embed(self.encoder, support_x, query_x)
        protos = self.prototypes(support_z, support_y)
        if self.distance == "cosine":
            return (nn.functional.normalize(query_z, dim=-1)
                    @ nn.functional.normalize(protos, dim=-1).transpose(1, 2))
        # ‖q − p‖² = ‖q‖² − 2 q·p + ‖p‖², without a [B, Q, N, D] difference tensor
        return (2 * query_z @ protos.transpose(1, 2) - query_z.square().sum(-1, keepdim=True)
                - protos.square().sum(-1).unsqueeze(1))

    @classmethod
    def from_config(cls, config: ProtoNetConfig, task_kind: str, input_shape: tuple[int, ...],
                    ways: int | None) -> ProtoNet:
        return cls(task_kind, input_shape, ways, hidden=config.hidden,
                   distance=config.distance)


# ----------------------------------------------------------------------------- MatchingNet


@dataclass
class MatchingNetConfig:
    """Matching Networks (Vinyals et al. 2016). The paper gives no optimiser settings; Adam
    1e-3 as for the other learners. Its cosine attention has no temperature; a learned scale
    (initially ``scale``) makes the softmax over cosines in [−1, 1] sharp enough to train."""

    lr: float = setting(1e-3, POSITIVE)  # Adam
    meta_batch: int = setting(32, AT_LEAST_1)  # tasks per update
    hidden: int = setting(64, AT_LEAST_1)  # Conv4 filters (paper: 64) or MLP width
    # initial inverse temperature of the attention softmax
    scale: float = setting(10.0, POSITIVE)
    learn_scale: bool = True
    fce: bool = False  # full context embeddings (paper: used on miniImageNet, not Omniglot)
    # attLSTM read steps K of the query embedding (with fce)
    fce_steps: int = setting(5, AT_LEAST_1)


class MatchingNet(FewShotLearner):
    """Matching Networks (Vinyals et al. 2016): ``P(y | q, S) = Σ_i a(q, x_i) onehot(y_i)``
    with ``a`` the softmax over the support of ``scale · cos(f(q), g(x_i))``; the logits are
    the log-probabilities (exactly, by a log-sum-exp over each class's support examples).

    ``fce=True`` adds the paper's full context embeddings (appendix A.2): ``g`` runs a
    bidirectional LSTM over the support embeddings (``g(x_i) = g'(x_i) + h→_i + h←_i``), and
    ``f`` refines each query embedding by ``fce_steps`` steps of an LSTM that attends over
    ``g(S)`` (``ĥ_k, c_k = LSTM(f'(q), [h_{k−1}, r_{k−1}], c_{k−1})``, ``h_k = ĥ_k + f'(q)``,
    ``r_{k−1} = Σ_i softmax(h_{k−1}ᵀ g(x_i)) g(x_i)``; the read ``r`` enters the LSTM cell as
    input next to ``f'(q)``, which gives the same gates as concatenating it to the state). The
    bidirectional LSTM reads the support in the given order, so with FCE the predictions
    depend on that order (as in the paper); without it they do not."""

    supports = ("classification",)

    def __init__(self, task_kind: str, input_shape: tuple[int, ...], ways: int | None = None,
                 hidden: int = 64, scale: float = 10.0, learn_scale: bool = True,
                 fce: bool = False, fce_steps: int = 5):
        super().__init__(task_kind)
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if fce and fce_steps < 1:
            raise ValueError(f"fce_steps must be >= 1, got {fce_steps}")
        self.ways = check_ways(ways)
        self.encoder, self.embedding_dim = make_encoder(tuple(input_shape), hidden)
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.fce = fce
        self.fce_steps = fce_steps
        if fce:
            d = self.embedding_dim
            self.support_lstm = nn.LSTM(d, d, batch_first=True, bidirectional=True)
            self.query_lstm = nn.LSTMCell(2 * d, d)

    def context_support(self, support_z: Tensor) -> Tensor:
        """FCE ``g``: ``g'(x_i)`` plus both directions of a BiLSTM over the support [B, S, D]."""
        out, _ = self.support_lstm(support_z)
        forward, backward = out.chunk(2, -1)
        return support_z + forward + backward

    def context_query(self, query_z: Tensor, support_g: Tensor) -> Tensor:
        """FCE ``f``: the attention LSTM, all queries of all tasks as one LSTM batch."""
        b, q, d = query_z.shape
        h = query_z.new_zeros(b, q, d)
        c = query_z.new_zeros(b * q, d)
        x = query_z.reshape(b * q, d)
        for _ in range(self.fce_steps):
            attention = torch.softmax(h @ support_g.transpose(1, 2), -1)  # [B, Q, S]
            read = attention @ support_g  # [B, Q, D]
            h_hat, c = self.query_lstm(torch.cat([x, read.reshape(b * q, d)], -1),
                                       (h.reshape(b * q, d), c))
            h = (h_hat + x).view(b, q, d)
        return h

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        support_z, query_z = embed(self.encoder, support_x, query_x)
        if self.fce:
            support_z = self.context_support(support_z)
            query_z = self.context_query(query_z, support_z)
        similarity = (nn.functional.normalize(query_z, dim=-1)
                      @ nn.functional.normalize(support_z, dim=-1).transpose(1, 2))
        scores = self.log_scale.exp() * similarity  # [B, Q, S] attention logits
        members = one_hot(support_y, self.ways).bool().unsqueeze(1)  # [B, 1, S, N]
        per_class = torch.where(members, scores.unsqueeze(-1), -math.inf)  # [B, Q, S, N]
        return per_class.logsumexp(2) - scores.logsumexp(-1, keepdim=True)

    @classmethod
    def from_config(cls, config: MatchingNetConfig, task_kind: str,
                    input_shape: tuple[int, ...], ways: int | None) -> MatchingNet:
        return cls(task_kind, input_shape, ways, hidden=config.hidden, scale=config.scale,
                   learn_scale=config.learn_scale, fce=config.fce, fce_steps=config.fce_steps)
