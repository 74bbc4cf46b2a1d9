"""Dynamics models (metarl.nn.dynamics) and GrBAL's meta-objective (metarl.meta.dynamics):
known answers for the normalisation, the batched paths, the recurrent model, the window
sampler, online adaptation and the second-order meta-gradient."""

import time

import numpy as np
import pytest
import torch
from torch.func import functional_call

from metarl.meta import (
    InnerLoop,
    StepSizes,
    adapt_online,
    grbal_loss,
    parameters_of,
)
from metarl.nn import DeltaMLP, RecurrentDelta


def _transitions(shape, obs_dim=3, act_dim=2, seed=0, dtype=torch.float64):
    """Random ``(obs, act, next_obs)`` with leading dims ``shape`` and uneven scales."""
    g = torch.Generator().manual_seed(seed)
    obs = 3.0 + 2.0 * torch.randn(*shape, obs_dim, generator=g, dtype=dtype)
    act = 0.5 * torch.randn(*shape, act_dim, generator=g, dtype=dtype)
    step = torch.randn(obs_dim, obs_dim + act_dim, generator=g, dtype=dtype) * 0.1
    next_obs = obs + torch.tanh(torch.cat([obs, act], -1) @ step.T) + 0.05
    return obs, act, next_obs


def _tiny_model(seed=0, hidden=(5,), activation="tanh"):
    torch.manual_seed(seed)
    model = DeltaMLP(3, 2, hidden=hidden, activation=activation).double()
    model.stats.fit(*_transitions((40,), seed=seed + 1))
    return model


def test_stats_are_numpy_moments_and_predict_inverts_the_normalisation():
    obs, act, next_obs = (x.numpy() for x in _transitions((4, 5, 6)))
    obs[..., 1] = 5.0  # a constant dimension: centred, std 1 instead of a blow-up
    next_obs[..., 1] = 5.0
    model = DeltaMLP(3, 2, hidden=()).double()  # one linear layer on normalised inputs
    model.stats.fit(obs, act, next_obs)
    s = model.stats
    delta = next_obs - obs
    for buffers, data in (((s.obs_mean, s.obs_std), obs), ((s.act_mean, s.act_std), act),
                          ((s.delta_mean, s.delta_std), delta)):
        flat = data.reshape(-1, data.shape[-1])
        std = flat.std(0)
        np.testing.assert_allclose(buffers[0].numpy(), flat.mean(0), rtol=1e-12)
        np.testing.assert_allclose(buffers[1].numpy(), np.where(std < 1e-6, 1.0, std),
                                   rtol=1e-12)
    assert s.obs_std[1] == 1.0 and s.delta_std[1] == 1.0
    assert set(model.state_dict()) >= {"stats.obs_mean", "stats.delta_std"}

    # a linear system s' = A s + B a: set the layer to output its exact normalised delta
    g = np.random.default_rng(0)
    a_mat, b_mat = g.normal(size=(3, 3)), g.normal(size=(3, 2))
    jac = np.concatenate([(a_mat - np.eye(3)) * s.obs_std.numpy(),
                          b_mat * s.act_std.numpy()], 1)
    bias = (a_mat - np.eye(3)) @ s.obs_mean.numpy() + b_mat @ s.act_mean.numpy()
    with torch.no_grad():
        layer = model.net.layers[0]
        layer.weight.copy_(torch.from_numpy(jac / s.delta_std.numpy()[:, None]))
        layer.bias.copy_(torch.from_numpy((bias - s.delta_mean.numpy()) / s.delta_std.numpy()))
    x, u = torch.from_numpy(obs), torch.from_numpy(act)
    expected = x @ torch.from_numpy(a_mat).T + u @ torch.from_numpy(b_mat).T
    torch.testing.assert_close(model.predict(x, u), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.stats.delta_from_normalised(
        model.stats.normalised_delta(x, expected)) + x, expected, rtol=1e-12, atol=1e-12)


def test_float32_model_takes_float64_obs_and_returns_their_dtype():
    torch.manual_seed(0)
    model = DeltaMLP(3, 2, hidden=(8,))
    obs, act, next_obs = _transitions((2, 4))
    model.stats.fit(obs, act, next_obs)
    out = model.predict(obs, act)
    assert out.dtype == torch.float64 and out.shape == (2, 4, 3)
    torch.testing.assert_close(out.float(), model.predict(obs.float(), act.float()))
    assert model.loss(None, (obs, act, next_obs)).dtype == torch.float32


def test_predict_per_env_equals_one_functional_call_per_environment():
    model = _tiny_model(hidden=(6, 6), activation="relu")
    params = parameters_of(model)
    envs = 3
    per_env = {n: torch.stack([p + 0.3 * i * torch.randn_like(p) for i in range(envs)])
               for n, p in params.items()}
    obs, act, _ = _transitions((envs, 7), seed=2)
    together = model.predict_per_env(per_env, obs, act)
    for i in range(envs):
        p_i = {n: p[i] for n, p in per_env.items()}
        x = model.stats.normalise_inputs(obs[i], act[i])
        alone = obs[i] + model.stats.delta_from_normalised(functional_call(model, p_i, (x,)))
        torch.testing.assert_close(together[i], alone, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(together[0], together[2])


def test_grbal_meta_gradient_equals_finite_differences():
    model = _tiny_model()
    params = parameters_of(model)
    windows = _transitions((2, 3, 8), seed=3)  # 2 tasks x 3 windows of M + K = 4 + 4
    inner = InnerLoop(model.loss, steps=1, lr=0.5)
    outer, pre = grbal_loss(model, params, windows, inner, support_steps=4)
    grads = torch.autograd.grad(outer, list(params.values()))
    torch.testing.assert_close(pre, model.loss(params, tuple(x[..., :4, :] for x in windows)))

    first_order = InnerLoop(model.loss, steps=1, lr=0.5, first_order=True)
    fo_grads = torch.autograd.grad(
        grbal_loss(model, params, windows, first_order, support_steps=4)[0],
        list(params.values()))
    g = np.random.default_rng(0)
    worst_fo = 0.0
    for (name, p), grad, fo_grad in zip(params.items(), grads, fo_grads, strict=True):
        for _ in range(2):
            i = tuple(int(g.integers(d)) for d in p.shape)
            with torch.no_grad():
                p[i] += 1e-6
                plus = grbal_loss(model, params, windows, inner, 4)[0]
                p[i] -= 2e-6
                minus = grbal_loss(model, params, windows, inner, 4)[0]
                p[i] += 1e-6
            numeric = (plus - minus) / 2e-6
            assert grad[i].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-8), name
            worst_fo = max(worst_fo, abs(fo_grad[i].item() - numeric.item()))
    assert worst_fo > 1e-4  # the check can tell second order from first order


def test_grbal_learned_step_sizes_pass_through():
    model = _tiny_model()
    params = parameters_of(model)
    windows = _transitions((5, 6), seed=7)
    inner = InnerLoop(model.loss, steps=2, lr=0.2)
    rates = StepSizes(params, 0.2).double()
    learned, _ = grbal_loss(model, params, windows, inner, 3, step_sizes=rates.as_dict())
    torch.testing.assert_close(learned, grbal_loss(model, params, windows, inner, 3)[0])
    learned.backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in rates.rates)


def test_adapt_online_masks_missing_transitions():
    model = _tiny_model()
    params = parameters_of(model)
    inner = InnerLoop(model.loss, steps=1, lr=0.1)
    obs, act, next_obs = _transitions((3, 5), seed=4)
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[1, :3] = False  # environment 1 has its last 2 transitions only, 2 has none
    valid[2] = False
    obs[1, :3] = obs[2] = float("nan")  # the invalid entries are ignored, whatever they hold
    adapted = adapt_online(model, params, inner, (obs, act, next_obs), valid)
    expected = [inner(params, (obs[0], act[0], next_obs[0])),
                inner(params, (obs[1, 3:], act[1, 3:], next_obs[1, 3:])), params]
    for name, p in adapted.items():
        assert p.shape == (3, *params[name].shape) and not p.requires_grad
        for i in range(3):
            torch.testing.assert_close(p[i], expected[i][name], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(adapted["net.layers.0.weight"][0], params["net.layers.0.weight"])
    unmasked = adapt_online(model, params, inner, (obs[:1], act[:1], next_obs[:1]))
    torch.testing.assert_close(unmasked["net.layers.0.bias"][0],
                               expected[0]["net.layers.0.bias"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_run_equals_a_loop_of_cell_steps(cell):
    torch.manual_seed(0)
    model = RecurrentDelta(3, 2, hidden_size=6, cell=cell).double()
    model.stats.fit(*_transitions((20,), seed=5))
    obs, act, next_obs = _transitions((2, 3, 5), seed=6)  # [2, 3] sequences of 5 steps
    state, pred = model.run(model.initial_state((2, 3)), obs, act)
    assert state.shape == (2, 3, model.state_size) and pred.shape == obs.shape

    cell_cls = torch.nn.GRUCell if cell == "gru" else torch.nn.LSTMCell
    reference = cell_cls(5, 6).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, name).copy_(getattr(model.rnn, f"{name}_l0"))
    x = model.stats.normalise_inputs(obs, act).reshape(6, 5, 5)
    h = c = torch.zeros(6, 6, dtype=torch.float64)
    outputs = []
    for t in range(5):
        if cell == "gru":
            h = reference(x[:, t], h)
        else:
            h, c = reference(x[:, t], (h, c))
        outputs.append(h)
    final = h if cell == "gru" else torch.cat([h, c], -1)
    torch.testing.assert_close(state.reshape(6, -1), final, rtol=1e-12, atol=1e-12)
    delta = model.stats.delta_from_normalised(model.head(torch.stack(outputs, 1)))
    torch.testing.assert_close(pred, obs + delta.reshape(2, 3, 5, 3), rtol=1e-12, atol=1e-12)

    stepped = model.initial_state((2, 3))
    for t in range(5):
        stepped, next_pred = model.step(stepped, obs[..., t, :], act[..., t, :])
        torch.testing.assert_close(next_pred, pred[..., t, :], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stepped, state, rtol=1e-12, atol=1e-12)

    # a state broadcasts over candidates: [2, 1, S] against obs [2, 3, d]
    one = model.initial_state((2, 1)) + 0.1
    torch.testing.assert_close(model.step(one, obs[..., 0, :], act[..., 0, :])[1],
                               model.step(one.expand(2, 3, -1), obs[..., 0, :],
                                          act[..., 0, :])[1])

    # the loss scores the steps after condition_steps only
    target = model.stats.normalised_delta(obs, next_obs)
    normalised = model.stats.normalised_delta(obs, pred)
    for m in (0, 2):
        torch.testing.assert_close(model.loss(obs, act, next_obs, condition_steps=m),
                                   (normalised - target)[..., m:, :].square().mean())


def test_window_state_skips_invalid_steps():
    torch.manual_seed(0)
    model = RecurrentDelta(3, 2, hidden_size=6).double()
    model.stats.fit(*_transitions((20,), seed=5))
    obs, act, _ = _transitions((2, 4), seed=7)
    valid = torch.tensor([[False, True, True, True], [False, False, False, False]])
    state = model.window_state(obs, act, valid)
    expected, _ = model.run(model.initial_state(), obs[0, 1:], act[0, 1:])
    torch.testing.assert_close(state[0], expected, rtol=1e-12, atol=1e-12)
    assert state[1].abs().sum() == 0  # nothing valid: the zero state


def test_delta_mlp_learns_a_linear_system_quickly():
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    a_mat = np.eye(3) + 0.1 * g.normal(size=(3, 3))
    b_mat = 0.2 * g.normal(size=(3, 2))
    obs = g.normal(size=(1024, 3))
    act = g.uniform(-1, 1, size=(1024, 2))
    next_obs = obs @ a_mat.T + act @ b_mat.T
    data = tuple(torch.from_numpy(x).float() for x in (obs, act, next_obs))
    train, test = (tuple(x[:768] for x in data), tuple(x[768:] for x in data))
    model = DeltaMLP(3, 2, hidden=(64, 64))
    model.stats.fit(*train)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    params = parameters_of(model)
    start = time.perf_counter()
    for _ in range(300):
        loss = model.loss(params, train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        error = model.predict(test[0], test[1]) - test[2]
        change = test[2] - test[0]
    assert (error.square().mean() / change.square().mean()).item() < 1e-2
    assert model.loss(None, test).item() < 1e-2
    assert elapsed < 3.0
