"""One MAML meta-step on sinusoid regression, timed for metarl.meta, ``higher`` and torchopt.

The same computation three ways: a meta-batch of 25 sinusoid tasks, K = 10 support and 10
query points each, the MAML paper's 40-40 ReLU MLP, one inner SGD step (α = 0.01), and the
second-order meta-gradient of the mean query MSE with respect to the initial parameters.

* ``ours``: :func:`metarl.meta.maml_losses` (``torch.func`` ``grad`` inside ``vmap``: one
  batched computation for the meta-batch);
* ``higher``: ``higher.innerloop_ctx`` in a loop over tasks (its MAML example);
* ``torchopt``: ``torchopt.MetaSGD`` in a loop over tasks, restoring the weights after each
  (its MAML example).

Each figure is the median of ``repeats`` timed meta-steps after warm-up, with one torch
thread; ``max_grad_diff`` is the largest absolute difference between our meta-gradient and
the others'. ``higher`` / ``torchopt`` figures are ``null`` when not installed
(``pip install -e ".[bench]"``).

    metarl bench inner-loop [--json]
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import nn

from metarl.benchmarks import median_ms
from metarl.fewshot.models import RegressionMLP
from metarl.fewshot.sinusoid import SinusoidTasks
from metarl.meta import InnerLoop, maml_losses, parameters_of, supervised_loss
from metarl.progress import Progress

Gradients = list[torch.Tensor]


def _mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target).square().mean()


def ours(model: nn.Module, batch, inner_lr: float) -> Gradients:
    model.zero_grad(set_to_none=True)
    inner = InnerLoop(supervised_loss(model, _mse), steps=1, lr=inner_lr)
    losses = maml_losses(inner, parameters_of(model), (batch.support_x, batch.support_y),
                         (batch.query_x, batch.query_y))
    losses.mean().backward()
    return [p.grad for p in model.parameters()]


def with_higher(model: nn.Module, batch, inner_lr: float) -> Gradients:
    import higher

    model.zero_grad(set_to_none=True)
    inner_opt = torch.optim.SGD(model.parameters(), lr=inner_lr)
    tasks = len(batch)
    for i in range(tasks):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel,
                                                                                    diffopt):
            diffopt.step(_mse(fmodel(batch.support_x[i]), batch.support_y[i]))
            (_mse(fmodel(batch.query_x[i]), batch.query_y[i]) / tasks).backward()
    return [p.grad for p in model.parameters()]


def with_torchopt(model: nn.Module, batch, inner_lr: float) -> Gradients:
    import torchopt

    model.zero_grad(set_to_none=True)
    inner_opt = torchopt.MetaSGD(model, lr=inner_lr)
    initial = torchopt.extract_state_dict(model)
    tasks = len(batch)
    for i in range(tasks):
        inner_opt.step(_mse(model(batch.support_x[i]), batch.support_y[i]))
        (_mse(model(batch.query_x[i]), batch.query_y[i]) / tasks).backward()
        torchopt.recover_state_dict(model, initial)
    return [p.grad for p in model.parameters()]


def run(tasks: int = 25, shots: int = 10, inner_lr: float = 0.01, repeats: int = 20) -> dict:
    """The timings and gradient differences (see the module docstring)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = RegressionMLP().to(torch.float32)
        batch = SinusoidTasks().sample(tasks, shots, shots, np.random.default_rng(0))
        implementations = {"ours": ours}
        if importlib.util.find_spec("higher"):
            implementations["higher"] = with_higher
        if importlib.util.find_spec("torchopt"):
            implementations["torchopt"] = with_torchopt
        reference = [g.clone() for g in ours(model, batch, inner_lr)]
        result: dict = {"tasks": tasks, "shots": shots, "inner_steps": 1,
                        "model": "MLP 1-40-40-1 ReLU", "threads": 1}
        diffs = []
        with Progress(total=len(implementations) * (repeats + 3), desc="bench inner-loop",
                      unit="steps") as bar:
            for name in ("ours", "higher", "torchopt"):
                if name not in implementations:
                    result[f"{name}_ms"] = None
                    continue
                fn = implementations[name]
                grads = fn(model, batch, inner_lr)
                diffs.append(max(float((a - b).abs().max()) for a, b in zip(grads, reference,
                                                                            strict=True)))
                result[f"{name}_ms"] = median_ms(lambda fn=fn: fn(model, batch, inner_lr),
                                                 repeats, tick=bar.update)
        for name in ("higher", "torchopt"):
            other = result[f"{name}_ms"]
            result[f"speedup_vs_{name}"] = None if other is None else other / result["ours_ms"]
        result["max_grad_diff"] = max(diffs)
        return result
    finally:
        torch.set_num_threads(previous_threads)
