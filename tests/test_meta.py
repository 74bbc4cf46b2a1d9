"""Known answers for metarl.meta: MAML's meta-gradient by hand, first order, vmap == loop,
Meta-SGD, ANIL and Reptile."""

import pytest
import torch
from torch import nn

from metarl.meta import (
    InnerLoop,
    StepSizes,
    adapt_batch,
    maml_losses,
    parameters_of,
    reptile_gradients,
    supervised_loss,
)


@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons with the hand derivations (restored after each test)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _mse(prediction, target):
    return (prediction - target).square().mean()


def _linear_tasks(tasks=3, n=6, m=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(tasks, n, d, generator=g), torch.randn(tasks, m, d, generator=g)
    w_true = torch.randn(tasks, d, 1, generator=g)
    return (xs, xs @ w_true), (xq, xq @ w_true)


def _hand_meta_gradient(w, alpha, support, query, first_order):
    """One-step MAML on L(w) = mean((Xw - y)^2):
    w' = w - α (2/n) Xsᵀ(Xs w - ys);  dLq/dw = (I - (2α/n) XsᵀXs)ᵀ (2/m) Xqᵀ(Xq w' - yq)."""
    (xs, ys), (xq, yq) = support, query
    n, m = len(xs), len(xq)
    w_adapted = w - alpha * 2 / n * xs.T @ (xs @ w - ys)
    outer = 2 / m * xq.T @ (xq @ w_adapted - yq)
    if first_order:
        return outer
    jacobian = torch.eye(len(w)) - 2 * alpha / n * xs.T @ xs
    return jacobian.T @ outer


@pytest.mark.parametrize("first_order", [False, True])
def test_one_step_maml_meta_gradient_equals_the_hand_derivation(first_order):
    model = nn.Linear(4, 1, bias=False)
    inner = InnerLoop(supervised_loss(model, _mse), steps=1, lr=0.05, first_order=first_order)
    support, query = _linear_tasks()
    params = parameters_of(model)
    maml_losses(inner, params, support, query).mean().backward()
    w = model.weight.detach().T
    expected = torch.stack([
        _hand_meta_gradient(w, 0.05, (support[0][i], support[1][i]),
                            (query[0][i], query[1][i]), first_order) for i in range(3)]).mean(0)
    torch.testing.assert_close(model.weight.grad.T, expected, rtol=1e-10, atol=1e-12)


def test_second_and_first_order_differ_and_first_order_is_the_detached_version():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    support, query = _linear_tasks()
    grads = {}
    for first_order in (False, True):
        model.zero_grad()
        inner = InnerLoop(supervised_loss(model, _mse), steps=2, lr=0.1, first_order=first_order)
        maml_losses(inner, parameters_of(model), support, query).mean().backward()
        grads[first_order] = [p.grad.clone() for p in model.parameters()]
    # first order by hand: adapt without a graph, differentiate the query loss at θ'
    loss = supervised_loss(model, _mse)
    manual = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(3):
        theta = {n: p.detach().clone() for n, p in model.named_parameters()}
        for _ in range(2):
            theta = {n: p.requires_grad_() for n, p in theta.items()}
            step = torch.autograd.grad(loss(theta, (support[0][i], support[1][i])),
                                       list(theta.values()))
            theta = {n: (p - 0.1 * g).detach()
                     for (n, p), g in zip(theta.items(), step, strict=True)}
        theta = {n: p.requires_grad_() for n, p in theta.items()}
        outer = torch.autograd.grad(loss(theta, (query[0][i], query[1][i])),
                                    list(theta.values()))
        manual = [a + b / 3 for a, b in zip(manual, outer, strict=True)]
    for got, want in zip(grads[True], manual, strict=True):
        torch.testing.assert_close(got, want)
    assert any(not torch.allclose(a, b)
               for a, b in zip(grads[False], grads[True], strict=True))


@pytest.mark.parametrize("first_order", [False, True])
def test_vmapped_and_looped_meta_batches_give_the_same_gradient(first_order):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    inner = InnerLoop(supervised_loss(model, _mse), steps=3, lr=0.02, first_order=first_order)
    support, query = _linear_tasks(tasks=5)
    grads = []
    for batched in (True, False):
        model.zero_grad()
        losses = maml_losses(inner, parameters_of(model), support, query, batched=batched)
        losses.mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    looped = adapt_batch(inner, parameters_of(model), support, batched=False)
    vmapped = adapt_batch(inner, parameters_of(model), support)
    for name in looped:
        torch.testing.assert_close(looped[name], vmapped[name])


def test_meta_sgd_step_sizes_receive_the_expected_gradient():
    """d Lq(w − α⊙g) / dα = −g ⊙ ∇Lq(w')."""
    model = nn.Linear(4, 1, bias=False)
    params = parameters_of(model)
    rates = StepSizes(params, init=0.05)
    loss = supervised_loss(model, _mse)
    inner = InnerLoop(loss, steps=1)
    support, query = _linear_tasks(tasks=1)
    maml_losses(inner, params, support, query, step_sizes=rates.as_dict()).mean().backward()
    (xs, ys), (xq, yq) = (support[0][0], support[1][0]), (query[0][0], query[1][0])
    w = model.weight.detach().T
    g = 2 / len(xs) * xs.T @ (xs @ w - ys)
    w_adapted = w - 0.05 * g
    expected = -g * (2 / len(xq) * xq.T @ (xq @ w_adapted - yq))
    torch.testing.assert_close(rates.rates[0].grad.T, expected)
    assert model.weight.grad is not None


def test_anil_adapts_only_the_named_parameters():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    params = parameters_of(model)
    inner = InnerLoop(supervised_loss(model, _mse), steps=2, lr=0.1, adapt=("2.weight", "2.bias"))
    support, _ = _linear_tasks(tasks=1)
    adapted = inner(params, (support[0][0], support[1][0]))
    assert adapted["0.weight"] is params["0.weight"] and adapted["0.bias"] is params["0.bias"]
    assert not torch.allclose(adapted["2.weight"], params["2.weight"])
    # the body still gets the outer gradient (through the query loss and the head's step)
    _, query = _linear_tasks(tasks=1)
    inner.loss(adapted, (query[0][0], query[1][0])).backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown parameters to adapt"):
        InnerLoop(inner.loss, adapt=("head.weight",))(params, (support[0][0], support[1][0]))


def test_reptile_gradient_moves_parameters_toward_the_mean_adapted_parameters():
    model = nn.Linear(4, 1)
    params = parameters_of(model)
    inner = InnerLoop(supervised_loss(model, _mse), steps=5, lr=0.05, first_order=True)
    support, _ = _linear_tasks(tasks=4)
    adapted = adapt_batch(inner, params, support)
    before = {n: p.detach().clone() for n, p in params.items()}
    grads = reptile_gradients(params, adapted)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for name, p in params.items():
        p.grad = grads[name]
    optimizer.step()
    for name, p in params.items():
        expected = before[name] + 0.5 * (adapted[name].mean(0).detach() - before[name])
        torch.testing.assert_close(p.detach(), expected)


def test_zero_inner_steps_is_the_identity_and_negative_steps_are_rejected():
    model = nn.Linear(2, 1)
    params = parameters_of(model)
    adapted = InnerLoop(supervised_loss(model, _mse), steps=0)(params, None)
    assert all(adapted[n] is params[n] for n in params)
    with pytest.raises(ValueError, match="inner steps must be >= 0, got -1"):
        InnerLoop(supervised_loss(model, _mse), steps=-1)


@pytest.mark.bench
def test_inner_loop_benchmark_reports_equal_meta_gradients(capsys):
    from metarl.cli import main

    assert main(["bench", "inner-loop", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["ours_ms"] > 0 and result["max_grad_diff"] < 1e-5
    for name in ("higher", "torchopt"):
        assert (result[f"{name}_ms"] is None) == (result[f"speedup_vs_{name}"] is None)
