"""TRPO's natural-gradient step (Schulman et al. 2015) as used by MAML-TRPO and ProMP.

The pieces: :func:`conjugate_gradient` solves ``F x = -g`` with ``F`` the Fisher (the Hessian
of the mean KL at the current parameters) applied through :func:`fisher_vector_product`
(double backprop, Pearlmutter); the direction is scaled to the KL boundary,
``step = sqrt(2 max_kl / dᵀ F d) d``, and :func:`backtracking_line_search` shrinks it until the
surrogate improves and ``KL <= max_kl``. :func:`trpo_step` runs all of it on a list (or dict) of
parameter tensors and writes the accepted parameters in place.

Closures (surrogate loss, KL) re-evaluate with the *current* parameter values, so the same
closures serve for the gradient, the Fisher products and the line search. The KL closure must
be ``KL(old || current)`` with the old distribution detached, so that it is 0 with zero
gradient at the starting point and its Hessian there is the Fisher.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["backtracking_line_search", "conjugate_gradient", "fisher_vector_product",
           "flat_grad", "flatten", "trpo_step", "unflatten"]

Tensors = Sequence[Tensor] | Mapping[str, Tensor]


def _as_list(tensors: Tensors) -> list[Tensor]:
    return list(tensors.values()) if isinstance(tensors, Mapping) else list(tensors)


def flatten(tensors: Tensors) -> Tensor:
    """Concatenate a list or dict (in its key order) of tensors into one flat vector."""
    items = _as_list(tensors)
    if not items:
        raise ValueError("flatten: no tensors")
    return torch.cat([t.reshape(-1) for t in items])


def unflatten(flat: Tensor, like: Tensors) -> list[Tensor] | dict[str, Tensor]:
    """Split ``flat`` into tensors shaped like ``like``: a dict (same keys) for a dict,
    else a list. The pieces are views of ``flat``."""
    items = _as_list(like)
    sizes = [t.numel() for t in items]
    if flat.numel() != sum(sizes):
        raise ValueError(f"unflatten: {flat.numel()} values for {sum(sizes)} parameters")
    pieces = [p.view_as(t) for p, t in zip(flat.split(sizes), items, strict=True)]
    if isinstance(like, Mapping):
        return dict(zip(like.keys(), pieces, strict=True))
    return pieces


def flat_grad(output: Tensor, params: Tensors, retain_graph: bool | None = None,
              create_graph: bool = False) -> Tensor:
    """Gradient of scalar ``output`` w.r.t. ``params`` as one flat vector (zeros for
    parameters that ``output`` does not depend on). ``retain_graph=None`` means
    ``create_graph``, as in ``torch.autograd.grad``."""
    items = _as_list(params)
    grads = torch.autograd.grad(output, items, retain_graph=retain_graph,
                                create_graph=create_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, items, strict=True)])


def conjugate_gradient(mvp: Callable[[Tensor], Tensor], b: Tensor, iterations: int = 10,
                       residual_tol: float = 1e-10) -> Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as the
    matrix-vector product ``mvp`` (flat vectors), starting from ``x = 0``; stops after
    ``iterations`` steps or once ``|r|² < residual_tol`` (rllab's/garage's ``cg``)."""
    b = b.detach()
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rdotr = torch.dot(r, r)
    for _ in range(iterations):
        if rdotr < residual_tol:
            break
        z = mvp(p).detach()
        alpha = rdotr / torch.dot(p, z)
        x = x + alpha * p
        r = r - alpha * z
        new_rdotr = torch.dot(r, r)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x


def fisher_vector_product(kl_fn: Callable[[], Tensor], params: Tensors,
                          damping: float = 0.01) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping I) v`` with ``H`` the Hessian of ``kl_fn()`` w.r.t. ``params`` at
    their current values (the Fisher, for a KL from a detached old policy).

    The KL and its first-order gradient graph are built once, here; each call of the returned
    function is one extra backward pass through that graph (Pearlmutter's trick)."""
    items = _as_list(params)
    kl = kl_fn()
    kl_grad = flat_grad(kl, items, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        v = v.detach()
        if not kl_grad.requires_grad:   # the KL is (locally) linear in params: H = 0
            return damping * v
        hv = flat_grad(torch.dot(kl_grad, v), items, retain_graph=True)
        return hv.detach() + damping * v

    return fvp


def _item(x: Tensor | float) -> float:
    return float(x.detach()) if isinstance(x, Tensor) else float(x)


def backtracking_line_search(evaluate: Callable[[Tensor], tuple[Tensor | float, Tensor | float]],
                             full_step: Tensor, old_loss: float, max_kl: float,
                             backtrack_ratio: float = 0.5, max_backtracks: int = 15
                             ) -> tuple[Tensor, dict[str, Any]]:
    """Try ``fraction * full_step`` for ``fraction = backtrack_ratio**k``, ``k < max_backtracks``
    (``evaluate(step) -> (loss, kl)`` at ``θ_old + step``); accept the first one with
    ``loss < old_loss`` and ``kl <= max_kl`` (NaNs never pass).

    Returns ``(step, info)``: the accepted step, or zeros if none passed (the caller reverts).
    ``info`` has ``accepted``, ``fraction`` (0 when rejected), ``loss``/``kl`` at the accepted
    step (``old_loss``/0 when rejected), ``evaluations`` and the ``last_loss``/``last_kl`` tried.
    """
    if not 0.0 < backtrack_ratio < 1.0:
        raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio}")
    full_step = full_step.detach()
    loss = kl = float("nan")
    fraction = 1.0
    for k in range(max_backtracks):
        fraction = backtrack_ratio**k
        step = fraction * full_step
        out = evaluate(step)
        loss, kl = _item(out[0]), _item(out[1])
        if loss < old_loss and kl <= max_kl:
            return step, {"accepted": True, "fraction": fraction, "loss": loss, "kl": kl,
                          "evaluations": k + 1, "last_loss": loss, "last_kl": kl}
    return torch.zeros_like(full_step), {
        "accepted": False, "fraction": 0.0, "loss": float(old_loss), "kl": 0.0,
        "evaluations": max(max_backtracks, 0), "last_loss": loss, "last_kl": kl}


@torch.no_grad()
def _assign(params: list[Tensor], flat: Tensor) -> None:
    for p, value in zip(params, unflatten(flat, params), strict=True):
        p.copy_(value)


def trpo_step(params: Tensors, surrogate_fn: Callable[[], Tensor], kl_fn: Callable[[], Tensor],
              max_kl: float = 0.01, cg_iterations: int = 10, damping: float = 0.01,
              backtrack_ratio: float = 0.5, max_backtracks: int = 15,
              residual_tol: float = 1e-10, line_search_no_grad: bool = True,
              fvp: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    """One TRPO update of ``params`` (tensors requiring grad, e.g. ``nn.Parameter``s), in place.

    ``fvp`` replaces the Fisher-vector product built from ``kl_fn`` by double backprop (e.g.
    a cheaper Gauss-Newton product for a known policy distribution; include the damping).

    ``surrogate_fn()`` is the loss to *minimise* and ``kl_fn()`` the mean ``KL(old || current)``,
    both evaluated at the current parameter values. The line search evaluates them under
    ``torch.no_grad()`` unless ``line_search_no_grad=False`` (needed if a closure calls
    ``torch.autograd.grad`` itself; ``torch.func`` transforms work either way).

    Returns plain-Python diagnostics: ``loss_before``, ``loss_after``, ``kl`` (after the
    update), ``accepted``, ``fraction``, ``evaluations``, ``grad_norm``, ``full_step_norm``,
    ``step_norm`` and ``curvature`` (``dᵀ(F + damping I)d`` of the CG direction ``d``).
    """
    items = _as_list(params)
    old = flatten(items).detach().clone()
    loss = surrogate_fn()
    loss_before = _item(loss)
    grad = flat_grad(loss, items)
    if fvp is None:
        fvp = fisher_vector_product(kl_fn, items, damping)
    direction = conjugate_gradient(fvp, -grad, cg_iterations, residual_tol)
    curvature = _item(torch.dot(direction, fvp(direction)))
    info: dict[str, Any] = {"loss_before": loss_before, "grad_norm": _item(grad.norm()),
                            "curvature": curvature}
    if not (math.isfinite(curvature) and curvature > 0.0):
        info.update(loss_after=loss_before, kl=0.0, accepted=False, fraction=0.0,
                    evaluations=0, full_step_norm=0.0, step_norm=0.0)
        return info
    full_step = math.sqrt(2.0 * max_kl / curvature) * direction
    del fvp   # frees the KL graph before the line search

    def evaluate(step: Tensor) -> tuple[Tensor, Tensor]:
        _assign(items, old + step)
        with torch.set_grad_enabled(not line_search_no_grad and torch.is_grad_enabled()):
            return surrogate_fn().detach(), kl_fn().detach()

    step, search = backtracking_line_search(evaluate, full_step, loss_before, max_kl,
                                            backtrack_ratio, max_backtracks)
    _assign(items, old + step)
    info.update(loss_after=search["loss"], kl=search["kl"], accepted=search["accepted"],
                fraction=search["fraction"], evaluations=search["evaluations"],
                full_step_norm=_item(full_step.norm()), step_norm=_item(step.norm()))
    return info
