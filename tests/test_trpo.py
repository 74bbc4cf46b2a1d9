"""Known-answer tests for TRPO's pieces (CG, Fisher-vector products, line search, step) and
the batched linear feature baseline."""

import numpy as np
import pytest
import torch

from metarl.nn.linear_value import (
    fit_linear_value,
    linear_value_estimates,
    linear_value_features,
    predict_linear_value,
)
from metarl.nn.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flatten,
    trpo_step,
    unflatten,
)

DT = torch.float64


def spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, n, generator=g, dtype=DT)
    return q @ q.T / n + 0.5 * torch.eye(n, dtype=DT)


# ---------------------------------------------------------------- helpers, CG


def test_flatten_unflatten_roundtrip_list_and_dict():
    ts = [torch.randn(2, 3), torch.randn(4), torch.randn(1, 1, 2)]
    flat = flatten(ts)
    assert flat.shape == (12,)
    back = unflatten(flat, ts)
    assert isinstance(back, list) and all(torch.equal(a, b) for a, b in zip(back, ts, strict=True))
    d = {"w": ts[0], "b": ts[1]}
    back_d = unflatten(flatten(d), d)
    assert list(back_d) == ["w", "b"] and torch.equal(back_d["w"], d["w"])
    with pytest.raises(ValueError):
        unflatten(torch.zeros(3), ts)


def test_flat_grad_matches_autograd_and_zero_fills_unused():
    w = torch.randn(3, 2, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    unused = torch.randn(4, requires_grad=True)
    out = (w.sum(0) * b).pow(2).sum()
    g = flat_grad(out, [w, b, unused])
    gw, gb = torch.autograd.grad((w.sum(0) * b).pow(2).sum(), [w, b])
    assert torch.allclose(g, torch.cat([gw.reshape(-1), gb, torch.zeros(4)]))


def test_conjugate_gradient_solves_spd_system():
    a = spd(10, 0)
    b = torch.randn(10, dtype=DT, generator=torch.Generator().manual_seed(1))
    x = conjugate_gradient(lambda v: a @ v, b, iterations=10)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-6, rtol=0)
    assert (a @ x - b).abs().max() < 1e-6
    # b = 0 returns 0 without dividing by zero
    assert torch.equal(conjugate_gradient(lambda v: a @ v, torch.zeros(10, dtype=DT)),
                       torch.zeros(10, dtype=DT))


# ---------------------------------------------------------------- Fisher-vector product


def gaussian_policy_setup(seed: int = 0):
    """Linear-mean diagonal Gaussian with state-independent log-std: mean = s W^T + c."""
    g = torch.Generator().manual_seed(seed)
    s_dim, a_dim, n = 3, 2, 50
    states = torch.randn(n, s_dim, generator=g, dtype=DT)
    w = torch.randn(a_dim, s_dim, generator=g, dtype=DT).requires_grad_()
    c = torch.randn(a_dim, generator=g, dtype=DT).requires_grad_()
    log_std = (0.3 * torch.randn(a_dim, generator=g, dtype=DT)).requires_grad_()
    params = [w, c, log_std]
    old_mean = (states @ w.T + c).detach()
    old_log_std = log_std.detach().clone()

    def kl_of(w_, c_, ls_):
        mean = states @ w_.T + c_
        var_old, var_new = (2 * old_log_std).exp(), (2 * ls_).exp()
        kl = (ls_ - old_log_std + (var_old + (old_mean - mean) ** 2) / (2 * var_new) - 0.5)
        return kl.sum(-1).mean()

    def kl_fn():
        return kl_of(w, c, log_std)

    def log_prob(actions):
        mean = states @ w.T + c
        return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std
                - 0.5 * np.log(2 * np.pi)).sum(-1)

    return states, params, kl_of, kl_fn, log_prob, old_log_std


def test_fisher_vector_product_equals_hessian_and_closed_form():
    states, params, kl_of, kl_fn, _, log_std = gaussian_policy_setup()
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def kl_flat(theta):
        w_, c_, ls_ = (t.view(s) for t, s in zip(theta.split(sizes), shapes, strict=True))
        return kl_of(w_, c_, ls_)

    theta = flatten(params).detach()
    hessian = torch.autograd.functional.hessian(kl_flat, theta)
    # closed form: per action dim j, E[x x^T] / sigma_j^2 for x = [s, 1]; 2 for log-std j
    a_dim, s_dim = shapes[0]
    x = torch.cat([states, torch.ones(len(states), 1, dtype=DT)], 1)
    sxx = x.T @ x / len(states)
    fisher = torch.zeros(len(theta), len(theta), dtype=DT)
    var = (2 * log_std).exp()
    for j in range(a_dim):
        idx = [j * s_dim + k for k in range(s_dim)] + [a_dim * s_dim + j]
        fisher[np.ix_(idx, idx)] = sxx / var[j]
        fisher[a_dim * s_dim + a_dim + j, a_dim * s_dim + a_dim + j] = 2.0
    assert torch.allclose(hessian, fisher, atol=1e-10)

    damping = 0.1
    fvp = fisher_vector_product(kl_fn, params, damping=damping)
    for seed in range(3):   # the KL graph is reused across calls
        v = torch.randn(len(theta), dtype=DT, generator=torch.Generator().manual_seed(seed))
        expected = fisher @ v + damping * v
        assert torch.allclose(fvp(v), expected, atol=1e-10)


# ---------------------------------------------------------------- line search


def quadratic_problem(target: torch.Tensor, kl_scale: float):
    """loss(x) = ½|x - target|², kl(x) = kl_scale·½|x|², old x = 0."""
    def evaluate(step):
        return 0.5 * (step - target).pow(2).sum(), kl_scale * 0.5 * step.pow(2).sum()
    return evaluate, 0.5 * float(target.pow(2).sum())


def test_line_search_rejects_kl_violation_then_accepts_shrunken_step():
    target = torch.tensor([1.0, 2.0], dtype=DT)
    evaluate, old_loss = quadratic_problem(target, kl_scale=1.0)
    # full step reaches the minimum but KL = 2.5 > 1; at 0.5, KL = 0.625 <= 1 and loss improves
    step, info = backtracking_line_search(evaluate, target, old_loss, max_kl=1.0)
    assert info["accepted"] and info["fraction"] == 0.5 and info["evaluations"] == 2
    assert torch.allclose(step, 0.5 * target)
    assert info["kl"] == pytest.approx(0.625) and info["loss"] < old_loss
    # with ratio 0.8: KL = 2.5·f² is 1.6, 1.024 at f = 0.8, 0.64; 0.655 at f = 0.512
    step, info = backtracking_line_search(evaluate, target, old_loss, max_kl=1.0,
                                          backtrack_ratio=0.8)
    assert info["fraction"] == pytest.approx(0.512) and info["evaluations"] == 4


def test_line_search_rejects_overshoot_without_kl_bound():
    target = torch.tensor([1.0, -1.0], dtype=DT)
    evaluate, old_loss = quadratic_problem(target, kl_scale=0.0)
    # 3·target overshoots (loss 4× worse); 1.5·target improves
    step, info = backtracking_line_search(evaluate, 3 * target, old_loss, max_kl=1.0)
    assert info["accepted"] and info["fraction"] == 0.5
    assert torch.allclose(step, 1.5 * target)


def test_line_search_returns_zero_step_when_nothing_improves():
    target = torch.tensor([1.0, 2.0], dtype=DT)
    evaluate, old_loss = quadratic_problem(target, kl_scale=1.0)
    step, info = backtracking_line_search(evaluate, -target, old_loss, max_kl=10.0,
                                          max_backtracks=15)
    assert not info["accepted"] and info["fraction"] == 0.0
    assert torch.equal(step, torch.zeros(2, dtype=DT))
    assert info["evaluations"] == 15 and info["loss"] == old_loss and info["kl"] == 0.0
    # NaN losses are rejected too
    step, info = backtracking_line_search(lambda s: (float("nan"), 0.0), target, old_loss, 1.0)
    assert not info["accepted"] and torch.equal(step, torch.zeros(2, dtype=DT))


# ---------------------------------------------------------------- trpo_step


def test_trpo_step_matches_closed_form_on_quadratic_kl():
    """Linear surrogate gᵀθ and KL ½(θ-θ₀)ᵀA(θ-θ₀): the step is exactly
    sqrt(2δ / dᵀ(A+λI)d)·d with d = -(A+λI)⁻¹g, and the full step is accepted."""
    n, max_kl, damping = 6, 0.05, 0.01
    a = spd(n, 3)
    g = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(4))
    theta = torch.nn.Parameter(torch.randn(n, dtype=DT, generator=torch.Generator()
                                           .manual_seed(5)))
    theta0 = theta.detach().clone()

    def surrogate():
        return g @ theta

    def kl():
        d = theta - theta0
        return 0.5 * d @ a @ d

    info = trpo_step([theta], surrogate, kl, max_kl=max_kl, cg_iterations=n, damping=damping)
    damped = a + damping * torch.eye(n, dtype=DT)
    d = -torch.linalg.solve(damped, g)
    expected = theta0 + torch.sqrt(2 * max_kl / (d @ damped @ d)) * d
    assert info["accepted"] and info["fraction"] == 1.0
    assert torch.allclose(theta.detach(), expected, atol=1e-8)
    assert info["kl"] <= max_kl and info["loss_after"] < info["loss_before"]


def test_trpo_step_improves_gaussian_policy_within_kl():
    torch.manual_seed(0)
    states, params, _, kl_fn, log_prob, _ = gaussian_policy_setup(seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        actions = states @ params[0].T + params[1] + params[2].exp() * torch.randn(
            len(states), 2, generator=g, dtype=DT)
        old_lp = log_prob(actions)
    advantages = torch.randn(len(states), generator=g, dtype=DT)

    def surrogate():
        return -((log_prob(actions) - old_lp).exp() * advantages).mean()

    before = [p.detach().clone() for p in params]
    max_kl = 0.01
    info = trpo_step(params, surrogate, kl_fn, max_kl=max_kl)
    assert info["accepted"]
    with torch.no_grad():
        loss_after, kl_after = float(surrogate()), float(kl_fn())
    assert loss_after < info["loss_before"]
    assert loss_after == pytest.approx(info["loss_after"]) and kl_after == pytest.approx(
        info["kl"])
    assert 0 < kl_after <= max_kl * (1 + 1e-6)
    assert any(not torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert all(p.requires_grad and p.grad is None for p in params)


def test_trpo_step_reverts_when_line_search_fails():
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=DT))
    theta0 = theta.detach().clone()
    calls = {"n": 0}

    def surrogate():   # its gradient says "go down", but every trial point is worse
        calls["n"] += 1
        if calls["n"] == 1:
            return theta.sum()
        return theta.sum() + 100.0

    def kl():
        return 0.5 * (theta - theta0).pow(2).sum()

    info = trpo_step({"theta": theta}, surrogate, kl, max_kl=0.01, max_backtracks=3)
    assert not info["accepted"] and info["evaluations"] == 3
    assert torch.equal(theta.detach(), theta0)


# ---------------------------------------------------------------- linear feature baseline


def rllab_fit(obs: np.ndarray, returns: np.ndarray, reg_coeff: float) -> np.ndarray:
    """rllab's LinearFeatureBaseline.fit on a list of (variable-length) paths."""
    feats = []
    for o in obs:
        o = np.clip(o, -10, 10)
        al = np.arange(len(o)).reshape(-1, 1) / 100.0
        feats.append(np.concatenate([o, o**2, al, al**2, al**3, np.ones((len(o), 1))], 1))
    x, y = np.concatenate(feats), np.concatenate(returns)
    return np.linalg.lstsq(x.T @ x + reg_coeff * np.eye(x.shape[1]), x.T @ y, rcond=None)[0]


def random_batch(b=3, e=4, t=20, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = 2 * torch.randn(b, e, t, d, generator=g, dtype=DT)
    returns = torch.randn(b, e, t, generator=g, dtype=DT).cumsum(-1)
    lengths = torch.randint(5, t + 1, (b, e), generator=g)
    mask = torch.arange(t) < lengths[..., None]
    return obs, returns, mask


def test_features_match_rllab_layout_and_clip():
    obs = torch.tensor([[[0.5, 20.0], [-30.0, 1.0], [2.0, 3.0]]], dtype=DT)   # [1, T=3, 2]
    f = linear_value_features(obs)
    assert f.shape == (1, 3, 8)
    assert torch.allclose(f[0, 1], torch.tensor([-10, 1, 100, 1, .01, 1e-4, 1e-6, 1],
                                                dtype=DT))
    assert torch.allclose(f[0, 0, :4], torch.tensor([0.5, 10, 0.25, 100], dtype=DT))


def test_linear_baseline_fits_linear_returns_exactly():
    obs, _, mask = random_batch(t=100)   # a/a²/a³ are nearly collinear on short episodes
    w = torch.randn(3, 8, dtype=DT, generator=torch.Generator().manual_seed(7))
    returns = (linear_value_features(obs) * w[:, None, None]).sum(-1)
    weights = fit_linear_value(obs, returns, mask, reg_coeff=1e-10)
    assert torch.allclose(weights, w, atol=1e-5)
    values = linear_value_estimates(obs, returns, mask, reg_coeff=1e-10)
    assert torch.allclose(values[mask], returns[mask], atol=1e-6)
    assert (values[~mask] == 0).all()
    # the default reg 1e-5 still matches closely
    values = linear_value_estimates(obs, returns, mask)
    assert torch.allclose(values[mask], returns[mask], atol=1e-3)


def test_linear_baseline_ignores_masked_steps():
    obs, returns, mask = random_batch(seed=1)
    weights = fit_linear_value(obs, returns, mask)
    assert not mask.flatten(1).all(1).any()            # every task has padded steps
    garbage_r = torch.where(mask, returns, float("nan"))   # even NaN padding is ignored
    garbage_o = torch.where(mask[..., None], obs, float("nan"))
    assert torch.allclose(fit_linear_value(garbage_o, garbage_r, mask), weights,
                          atol=1e-12, rtol=1e-10)
    values = linear_value_estimates(garbage_o, garbage_r, mask)
    assert torch.isfinite(values).all() and (values[~mask] == 0).all()


def test_linear_baseline_batched_equals_per_task_and_rllab():
    obs, returns, mask = random_batch(b=4, seed=2)
    weights = fit_linear_value(obs, returns, mask)
    for i in range(4):
        single = fit_linear_value(obs[i:i + 1], returns[i:i + 1], mask[i:i + 1])
        assert torch.allclose(single[0], weights[i], atol=1e-10, rtol=1e-8)
        lengths = mask[i].sum(-1).tolist()
        paths_o = [obs[i, k, :n].numpy() for k, n in enumerate(lengths)]
        paths_r = [returns[i, k, :n].numpy() for k, n in enumerate(lengths)]
        ref = rllab_fit(paths_o, paths_r, 1e-5)
        assert np.allclose(weights[i].numpy(), ref, atol=1e-6, rtol=1e-6)


def test_linear_baseline_float32_and_shapes():
    obs, returns, mask = random_batch(seed=3)
    values64 = linear_value_estimates(obs, returns, mask)
    values32 = linear_value_estimates(obs.float(), returns.float(), mask)
    assert values32.dtype == torch.float32 and values32.shape == returns.shape
    assert torch.allclose(values32.double(), values64, atol=1e-3, rtol=1e-4)
    w = fit_linear_value(obs, returns)     # no mask: all steps
    assert w.dtype == torch.float64 and w.shape == (3, 8)
    assert predict_linear_value(obs, w).shape == returns.shape
    # extra episode dims: [B, M, K, T, D]
    v5 = linear_value_estimates(obs.reshape(3, 2, 2, 20, 2), returns.reshape(3, 2, 2, 20),
                                mask.reshape(3, 2, 2, 20))
    assert torch.allclose(v5.reshape(values64.shape), values64)


def test_linear_baseline_raises_on_non_finite_returns():
    obs, returns, mask = random_batch(seed=4)
    returns[1, 0, 0] = float("nan")   # a valid step
    with pytest.raises(FloatingPointError, match=r"tasks \[1\]"):
        fit_linear_value(obs, returns, mask)
