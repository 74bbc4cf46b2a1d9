"""Gradient-based few-shot learners on :mod:`metarl.meta`: MAML (second and first order),
Meta-SGD, ANIL and Reptile.

* MAML (Finn et al. 2017): adapt all weights by ``inner_steps`` SGD steps on the support
  set, meta-train the initial weights on the query loss after adaptation (``first_order``:
  FOMAML).
* Meta-SGD (Li et al. 2017): MAML with a learned step size per weight.
* ANIL (Raghu et al. 2020): MAML adapting only the final layer (``head``).
* Reptile (Nichol et al. 2018): SGD on each task's data, then move the initial weights
  toward the mean adapted weights.

The network is :class:`~metarl.fewshot.models.Conv4` (images, ``head`` = the classifier over
``ways`` labels) or :class:`~metarl.fewshot.models.RegressionMLP` (vectors). Every meta-batch
is one vmapped computation over its tasks; at evaluation the learners adapt with
``eval_inner_steps`` steps (MAML's test-time protocol: more steps than in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, check_settings, setting
from metarl.fewshot.data import FewShotBatch
from metarl.fewshot.learner import FewShotLearner
from metarl.fewshot.models import Conv4, RegressionMLP
from metarl.meta import (
    InnerLoop,
    Params,
    StepSizes,
    adapt_batch,
    parameters_of,
    reptile_gradients,
    set_gradients,
)


@dataclass
class FewShotConfig:
    """What every few-shot learner is configured with (``--set ways=20 shots=1``)."""

    ways: int = setting(5, AT_LEAST_1)  # classification only
    shots: int = setting(1, AT_LEAST_1)
    queries: int = setting(15, AT_LEAST_1)
    meta_batch: int = setting(32, AT_LEAST_1)
    lr: float = setting(1e-3, POSITIVE)  # Adam's outer learning rate
    hidden: int = setting(64, AT_LEAST_1)  # conv filters (images) or MLP width (vectors)

    def validate(self) -> None:
        """The declared ranges of every field, the learner's own too
        (:func:`metarl.config.check_settings`)."""
        check_settings(self)


#: dataset -> field defaults that differ from the dataclass's (the papers' settings)
SINUSOID = {"shots": 10, "queries": 10, "meta_batch": 25, "hidden": 40}


@dataclass
class MAMLConfig(FewShotConfig):
    """MAML's settings; the defaults are its Omniglot 5-way ones (sinusoid: see
    :data:`MAML_SINUSOID`). Omniglot 20-way used 5 inner steps with lr 0.1, meta-batch 16."""

    inner_lr: float = setting(0.4, NON_NEGATIVE)
    inner_steps: int = setting(1, AT_LEAST_1)
    eval_inner_steps: int = setting(3, AT_LEAST_1)
    first_order: bool = False
    meta_sgd: bool = False  # learn a step size per weight (Meta-SGD), initialised to inner_lr
    anil: bool = False  # adapt only the head (ANIL)
    # vmap the meta-batch (True) or loop over its tasks (False); None: vmap for MLPs, loop for
    # conv nets, whose per-task weights vmap turns into grouped convolutions that are slower
    # on CPU (Omniglot 5-way 1-shot, 5 queries, 8 tasks, 32 filters: 0.26 s vmapped vs 0.22 s
    # looped a step; see experiments/RESULTS.md for the command)
    vmap_tasks: bool | None = None


#: MAML's sinusoid setup: K = 10, meta-batch 25, α = 0.01, 1 step (10 at test), Adam 1e-3
MAML_SINUSOID = {**SINUSOID, "inner_lr": 0.01, "eval_inner_steps": 10}


class GradientLearner(FewShotLearner):
    """MAML / FOMAML / Meta-SGD / ANIL (see the module docstring)."""

    def __init__(self, task_kind: str, input_shape: tuple[int, ...], ways: int | None,
                 config: MAMLConfig):
        super().__init__(task_kind)
        self.config = config
        self.model = make_network(task_kind, input_shape, ways, config.hidden)
        params = parameters_of(self.model)
        self.adapt_names = ([n for n in params if n.startswith("head.")] if config.anil
                            else None)
        adapted = {n: p for n, p in params.items()
                   if self.adapt_names is None or n in self.adapt_names}
        self.step_sizes = StepSizes(adapted, config.inner_lr) if config.meta_sgd else None
        self.vmap_tasks = (len(input_shape) == 1 if config.vmap_tasks is None
                           else config.vmap_tasks)

    def inner_loop(self, steps: int | None = None) -> InnerLoop:
        """The inner loop with ``steps`` (default: training's or evaluation's count)."""
        if steps is None:
            steps = self.config.inner_steps if self.training else self.config.eval_inner_steps
        return InnerLoop(self.support_loss, steps=steps, lr=self.config.inner_lr,
                         first_order=self.config.first_order, adapt=self.adapt_names)

    def support_loss(self, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        x, y = data
        out = functional_call(self.model, params, (x,))
        if self.classification:
            return nn.functional.cross_entropy(out, y)
        return (out - y).square().mean()

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                steps: int | None = None) -> Tensor:
        inner = self.inner_loop(steps)
        params = parameters_of(self.model)
        rates = None if self.step_sizes is None else self.step_sizes.as_dict()

        def one_task(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            return functional_call(self.model, inner(params, (sx, sy), rates), (qx,))

        with torch.enable_grad():  # adaptation needs gradients, also at evaluation
            if self.vmap_tasks:
                out = vmap(one_task, randomness="same")(support_x, support_y, query_x)
            else:
                out = torch.stack([one_task(*task) for task in zip(support_x, support_y, query_x,
                                                                   strict=True)])
        return out if torch.is_grad_enabled() else out.detach()

    @classmethod
    def from_config(cls, config: MAMLConfig, task_kind: str, input_shape: tuple[int, ...],
                    ways: int | None) -> GradientLearner:
        return cls(task_kind, input_shape, ways, config)


@dataclass
class ReptileConfig(FewShotConfig):
    """Reptile's settings (Nichol et al. 2018). The paper's inner optimiser on Omniglot is
    Adam (β1 = 0) with an annealed outer step; here the inner loop is plain SGD and the outer
    step a constant ε (see the presets for the values used).

    ``inner_steps`` SGD steps with ``inner_lr`` on each task's support and query examples,
    then an SGD outer step of size ``lr`` (ε) toward the mean adapted weights; evaluation
    adapts on the support set with ``eval_inner_steps`` steps."""

    lr: float = 0.1
    inner_lr: float = setting(0.02, NON_NEGATIVE)
    inner_steps: int = setting(10, AT_LEAST_1)
    eval_inner_steps: int = setting(50, AT_LEAST_1)


#: Reptile's sinusoid setup: 32 inner SGD steps of 0.02 on the K points, ε = 0.1 (paper A.1)
REPTILE_SINUSOID = {**SINUSOID, "inner_steps": 32, "eval_inner_steps": 32}


class Reptile(GradientLearner):
    """Reptile: first-order adaptation, outer step ``θ += ε (mean φ − θ)``."""

    def __init__(self, task_kind: str, input_shape: tuple[int, ...], ways: int | None,
                 config: ReptileConfig):
        as_maml = MAMLConfig(**{**vars(config), "first_order": True})
        super().__init__(task_kind, input_shape, ways, as_maml)
        self.reptile_config = config

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=lr)

    def train_step(self, batch: FewShotBatch, optimizer: torch.optim.Optimizer
                   ) -> dict[str, float]:
        params = parameters_of(self.model)
        start = {n: p.detach() for n, p in params.items()}  # no graph: Reptile is first order
        task_data = (torch.cat([batch.support_x, batch.query_x], 1),
                     torch.cat([batch.support_y, batch.query_y], 1))
        inner = InnerLoop(self.support_loss, steps=self.config.inner_steps,
                          lr=self.config.inner_lr, first_order=True)
        adapted = adapt_batch(inner, start, task_data, batched=self.vmap_tasks)
        # a task whose many plain SGD steps blew up (seen at K=5 on sinusoid) would turn the
        # mean into NaN: leave it out of this outer step and count it
        finite = torch.stack([p.flatten(1).isfinite().all(1) for p in adapted.values()]).all(0)
        optimizer.zero_grad(set_to_none=True)
        if finite.any():
            kept = {n: p[finite] for n, p in adapted.items()}
            set_gradients(params, reptile_gradients(params, kept))
            optimizer.step()
        with torch.no_grad():
            predictions = torch.stack([
                functional_call(self.model, {n: p[i] for n, p in adapted.items()}, (x,))
                for i, x in enumerate(batch.query_x)])
            losses = self.task_loss(predictions[finite], batch.query_y[finite])
        metrics = self.metrics(predictions[finite], batch.query_y[finite], losses)
        return {**metrics, "diverged_tasks": float((~finite).sum())}

    @classmethod
    def from_config(cls, config: ReptileConfig, task_kind: str, input_shape: tuple[int, ...],
                    ways: int | None) -> Reptile:
        return cls(task_kind, input_shape, ways, config)


def make_network(task_kind: str, input_shape: tuple[int, ...], ways: int | None,
                 hidden: int) -> nn.Module:
    """Conv4 for images ``(C, H, W)``, a two-hidden-layer ReLU MLP for vectors."""
    out = ways if task_kind == "classification" else 1
    if out is None:
        raise ValueError("classification needs the number of ways")
    if len(input_shape) == 3:
        return Conv4(input_shape[0], out, hidden=hidden, image_size=input_shape[-1])
    return RegressionMLP(input_shape[-1], out, hidden=(hidden, hidden))
