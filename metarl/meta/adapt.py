"""Functional gradient-based adaptation (MAML family) with ``torch.func``.

Parameters are plain dicts ``name -> tensor`` (:func:`parameters_of`); a model is evaluated
on them with ``torch.func.functional_call``, so nothing is swapped into or cut out of a
module. An :class:`InnerLoop` adapts the parameters to one task's data::

    θ_0 = θ;   θ_{s+1} = θ_s − α ⊙ ∇ L_task(θ_s; data)        s = 0 .. steps−1

with ``α`` a float (MAML) or one learned tensor per parameter (Meta-SGD, :class:`StepSizes`),
updating only ``adapt`` names (ANIL adapts the head; the others stay θ). The result is a
differentiable function of θ (and α): the outer loss's gradient flows through the inner
steps (second order) unless ``first_order``, where each inner gradient is treated as a
constant (FOMAML). :func:`maml_losses` vmaps adaptation and the query loss over a
meta-batch of tasks; :func:`reptile_gradients` gives Reptile's outer update as a gradient
for any optimizer.

The loss is any ``loss(params, data) -> scalar`` with ``data`` one task's pytree of tensors,
so the same code adapts a regression net, an image classifier, a policy (a surrogate
policy-gradient loss over its rollouts) or a dynamics model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

Params = dict[str, Tensor]
#: ``loss(params, data) -> scalar`` for one task's ``data``
LossFn = Callable[[Params, Any], Tensor]


def parameters_of(module: nn.Module) -> Params:
    """The module's parameters by name (the live tensors: gradients reach the module)."""
    return dict(module.named_parameters())


def supervised_loss(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """``loss(params, (x, y)) = criterion(model_params(x), y)``."""
    def loss(params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        x, y = data
        return criterion(functional_call(model, params, (x,)), y)

    return loss


class StepSizes(nn.Module):
    """Meta-SGD's learned per-parameter inner step sizes ``α`` (Li et al. 2017), one tensor
    shaped like each adapted parameter, initialised to ``init``."""

    def __init__(self, params: Mapping[str, Tensor], init: float):
        super().__init__()
        self._names = list(params)
        self.rates = nn.ParameterList(
            nn.Parameter(torch.full_like(p.detach(), init)) for p in params.values())

    def as_dict(self) -> Params:
        return dict(zip(self._names, self.rates, strict=True))


@dataclass(frozen=True)
class InnerLoop:
    """``steps`` gradient steps on ``loss`` (see the module docstring).

    ``lr`` is the step size α when no :class:`StepSizes` are passed to :meth:`adapt`;
    ``adapt`` names the parameters to update (``None``: all)."""

    loss: LossFn
    steps: int = 1
    lr: float = 0.01
    first_order: bool = False
    adapt: Collection[str] | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"inner steps must be >= 0, got {self.steps}")

    def split(self, params: Params) -> tuple[Params, Params]:
        """``(adapted, fixed)`` parameters."""
        if self.adapt is None:
            return dict(params), {}
        if missing := set(self.adapt) - set(params):
            raise ValueError(f"unknown parameters to adapt {sorted(missing)}; "
                             f"valid: {', '.join(params)}")
        adapted = {n: p for n, p in params.items() if n in self.adapt}
        return adapted, {n: p for n, p in params.items() if n not in self.adapt}

    def __call__(self, params: Params, data: Any, step_sizes: Params | None = None) -> Params:
        """θ adapted to one task's ``data`` (all parameters, the fixed ones unchanged)."""
        fast, fixed = self.split(params)

        def task_loss(fast_params: Params, fixed_params: Params) -> Tensor:
            return self.loss({**fixed_params, **fast_params}, data)

        gradient = grad(task_loss)
        if self.first_order:  # the inner gradients are constants for the outer gradient
            fixed = {n: p.detach() for n, p in fixed.items()}
        for _ in range(self.steps):
            point = {n: p.detach() for n, p in fast.items()} if self.first_order else fast
            grads = gradient(point, fixed)
            fast = {n: p - (self.lr if step_sizes is None else step_sizes[n]) * grads[n]
                    for n, p in fast.items()}
        return {n: fast.get(n, p) for n, p in params.items()}


def maml_losses(inner: InnerLoop, params: Params, support: Any, query: Any, *,
                step_sizes: Params | None = None, query_loss: LossFn | None = None,
                batched: bool = True) -> Tensor:
    """Post-adaptation query losses ``[B]`` of a meta-batch (data with a leading task dim).

    ``batched`` vmaps adaptation and evaluation over the tasks (one computation for the
    meta-batch); ``False`` loops over tasks (for models ``vmap`` cannot take), with the same
    result. ``query_loss`` defaults to the inner loop's loss."""
    evaluate = query_loss or inner.loss

    def one_task(task_support: Any, task_query: Any) -> Tensor:
        return evaluate(inner(params, task_support, step_sizes), task_query)

    if batched:
        return vmap(one_task, randomness="same")(support, query)
    tasks = _task_count(support)
    return torch.stack([one_task(_index(support, i), _index(query, i)) for i in range(tasks)])


def adapt_batch(inner: InnerLoop, params: Params, support: Any, *,
                step_sizes: Params | None = None, batched: bool = True) -> Params:
    """Per-task adapted parameters with a leading task dimension ``[B, ...]``."""
    if batched:
        return vmap(lambda data: inner(params, data, step_sizes), randomness="same")(support)
    per_task = [inner(params, _index(support, i), step_sizes)
                for i in range(_task_count(support))]
    return {n: torch.stack([p[n] for p in per_task]) for n in params}


def reptile_gradients(params: Params, adapted: Params) -> Params:
    """Reptile's outer update as a gradient (Nichol et al. 2018): ``θ − mean_i φ_i``, so an
    SGD step with learning rate ε moves θ by ε (mean φ − θ). ``adapted`` has a leading
    task dimension (:func:`adapt_batch`)."""
    return {n: (p - adapted[n].mean(0)).detach() for n, p in params.items()}


def set_gradients(params: Params, gradients: Params) -> None:
    """Write ``gradients`` into the ``.grad`` of the (leaf) parameters."""
    for name, p in params.items():
        p.grad = gradients[name].detach().clone()


def _task_count(data: Any) -> int:
    leaves = torch.utils._pytree.tree_leaves(data)
    return int(leaves[0].shape[0])


def _index(data: Any, i: int) -> Any:
    return torch.utils._pytree.tree_map(lambda x: x[i], data)
