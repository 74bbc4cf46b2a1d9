"""Gradient-based meta-RL (MAML-TRPO, ProMP): adaptation in the trial state, the Fisher
product through the inner step, and smoke runs through the CLI."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from helpers import MetaDeviceValues, on_meta

from metarl.agents.maml_trpo import MAMLTRPOAgent, MAMLTRPOConfig
from metarl.agents.promp import ProMPAgent, ProMPConfig
from metarl.cli import main
from metarl.config import PRESETS_DIR, load_yaml
from metarl.envs import make
from metarl.meta import parameters_of
from metarl.meta.rl import (
    PolicyData,
    adapt_through,
    collect,
    dice_objective,
    dice_scale,
    gaussian_fisher_vector_product,
    gaussian_kl,
    inner_estimator_loss,
    log_probs,
    per_task_outputs,
)
from metarl.nn import GaussianMLP
from metarl.nn.trpo import fisher_vector_product
from metarl.random import BatchRNG
from metarl.runs import load, make_agent
from metarl.sampling import LocalSampler


@pytest.fixture
def agent_and_data():
    torch.manual_seed(0)
    env = make("point-nav", horizon=8)
    agent = MAMLTRPOAgent(env, MAMLTRPOConfig(meta_batch=3, rollouts_per_task=4,
                                              hidden_size=8))
    data, metrics = collect(env, agent.policy(), LocalSampler(env), np.random.default_rng(0),
                            3, 4, 1, 0.99, 1.0)
    return agent, data, metrics


def test_per_task_parameters_act_like_the_torch_network(agent_and_data):
    agent, data, _ = agent_and_data
    adapted = {n: p.detach() for n, p in agent.adapted(data).items()}
    frozen = agent.net.snapshot(adapted)
    obs = data[-1].observations[:, :, 0]  # [N=3, M=4, obs]
    mean, _ = frozen.act(obs.reshape(12, -1).numpy(), BatchRNG(0, np.arange(12)),
                         deterministic=True)
    expected = per_task_outputs(agent.net, adapted, obs).chunk(2, -1)[0]
    np.testing.assert_allclose(mean.reshape(3, 4, -1), expected.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_sampling_adapts_with_the_parameters_training_differentiates(agent_and_data):
    """The post-update episode was sampled with θ'_i; recomputing θ'_i(θ) in training must
    give the same log-probabilities as were recorded while sampling."""
    agent, data, _ = agent_and_data
    post = data[-1]
    outputs = per_task_outputs(agent.net, agent.adapted(data), post.observations)
    recomputed = agent.net.head.log_prob(outputs, post.actions)
    torch.testing.assert_close(recomputed * post.mask, post.old_log_prob * post.mask,
                               rtol=1e-4, atol=1e-4)
    pre = data[0]
    pre_log_prob = agent.net.head.log_prob(agent.net(pre.observations), pre.actions)
    assert not torch.allclose(pre_log_prob, post.old_log_prob)  # the inner step changed π


def test_lvc_inner_estimator_takes_the_same_step_with_different_curvature(agent_and_data):
    """MAML-TRPO with ``inner_estimator="lvc"``: at θ = θ_old the LVC loss has the VPG loss's
    gradient, so the adapted parameters agree; its Hessian adds the sampling term
    E[∇log π ∇log πᵀ A], so the meta-gradient through the step differs."""
    agent, data, _ = agent_and_data
    lvc = MAMLTRPOAgent(agent.env, MAMLTRPOConfig(meta_batch=3, rollouts_per_task=4,
                                                  hidden_size=8, inner_estimator="lvc"))
    lvc.net.load_state_dict(agent.net.state_dict())
    vpg_adapted, lvc_adapted = agent.adapted(data), lvc.adapted(data)
    for name in vpg_adapted:
        torch.testing.assert_close(lvc_adapted[name], vpg_adapted[name], rtol=1e-4,
                                   atol=1e-5)

    def meta_gradient(which: MAMLTRPOAgent) -> torch.Tensor:
        post = data[-1]
        outputs = per_task_outputs(which.net, which.adapted(data), post.observations)
        objective = (which.net.head.log_prob(outputs, post.actions) * post.advantages
                     * post.mask).sum()
        grads = torch.autograd.grad(objective, list(which.net.parameters()))
        return torch.cat([g.reshape(-1) for g in grads])

    difference = (meta_gradient(lvc) - meta_gradient(agent)).norm()
    assert difference > 1e-3 * meta_gradient(agent).norm(), float(difference)


def test_dice_scale_of_a_hand_built_episode():
    """Returns-to-go [1, 0] (γ = 1), baseline [0.5, 0]: raw advantages [0.5, 0] with std
    0.25, over 2 steps per episode -> scale 0.5."""
    rewards, values = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]])
    scale = dice_scale(rewards, values, torch.ones(1, 2), discount=1.0)
    torch.testing.assert_close(scale, torch.tensor(0.5), rtol=1e-6, atol=1e-6)


def test_dice_inner_step_has_the_scale_of_the_vpg_step():
    """On 100-step point-nav episodes the scaled DiCE inner gradient is within a small factor
    of the VPG one (unscaled, DiCE's is ~steps x return larger and lr 0.1 overflows)."""
    torch.manual_seed(0)
    env = make("point-nav")
    agent = MAMLTRPOAgent(env, MAMLTRPOConfig(meta_batch=2, rollouts_per_task=4,
                                              hidden_size=8))
    data, _ = collect(env, agent.policy(), LocalSampler(env), np.random.default_rng(0),
                      2, 4, 1, 0.99, 1.0)
    task = tuple(x[0] for x in data[0].tasks(slice(0, 1)).as_tuple())  # one task's episodes
    params = parameters_of(agent.net)

    def gradient_norm(estimator: str) -> float:
        loss = inner_estimator_loss(estimator, agent.net, 0.99)(params, task)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            loss, list(params.values()))]).norm().item()

    ratio = gradient_norm("dice") / gradient_norm("vpg")
    assert 0.1 < ratio < 10, ratio


def test_gauss_newton_fisher_product_equals_double_backprop(agent_and_data):
    agent, data, _ = agent_and_data
    post = data[-1]
    with torch.no_grad():
        old = per_task_outputs(agent.net, agent.adapted(data), post.observations)

    def outputs(params):
        return per_task_outputs(agent.net, adapt_through(agent.inner, params, data[:-1]),
                                post.observations)

    def kl():
        new = per_task_outputs(agent.net, agent.adapted(data), post.observations)
        return (gaussian_kl(old, new) * post.mask).sum() / post.mask.sum()

    exact = fisher_vector_product(kl, list(agent.net.parameters()), damping=1e-3)
    fast = gaussian_fisher_vector_product(outputs, parameters_of(agent.net), post.mask, 1e-3)
    for seed in range(2):
        v = torch.randn(sum(p.numel() for p in agent.net.parameters()),
                        generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fast(v), exact(v), rtol=1e-4, atol=1e-6)


def test_outer_step_respects_the_trust_region(agent_and_data):
    agent, data, _ = agent_and_data
    before = [p.detach().clone() for p in agent.net.parameters()]
    info = agent.update(data)
    assert info["accepted"]  # a fresh policy on its own samples always finds an improving step
    assert 0 < info["kl"] <= agent.config.max_kl * 1.001
    assert info["loss_after"] < info["loss_before"]
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.net.parameters(),
                                                     strict=True))


TINY = {"maml-trpo": ["meta_batch=2", "rollouts_per_task=2", "hidden_size=8", "fisher_tasks=1",
                      "cg_iterations=2", "eval_tasks=2"],
        "promp": ["meta_batch=2", "rollouts_per_task=2", "hidden_size=8", "ppo_epochs=2",
                  "eval_tasks=2"]}


@pytest.mark.parametrize("agent", ["maml-trpo", "promp"])
@pytest.mark.parametrize("env", ["point-nav", "cheetah-dir"])
def test_smoke_runs_and_adaptation_curve(agent, env, tmp_path, capsys):
    run = tmp_path / f"{agent}-{env}"
    assert main(["train", agent, env, "--iterations", "1", "--run-dir", str(run), "--set",
                 "env.horizon=5", *TINY[agent]]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(summary["eval_trial_return"])
    assert main(["eval", str(run), "--json", "--num-tasks", "2", "--episodes", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["returns_per_episode"]) == 3  # pre-update, one step, two steps


#: bounds of one step's reward at horizon 5: point-nav's is -distance to a goal in
#: [-0.5, 0.5]² from a point within 0.5 of the origin per axis; the MuJoCo ones are ±velocity
#: (cheetah-vel: -|v - v*| with v* ≤ 3) minus a control cost below 0.3, and a cheetah or an
#: ant does not reach 10 m/s in five 0.05 s steps from rest
STEP_REWARD_BOUNDS = {"point-nav": (-math.sqrt(2.0), 0.0), "cheetah-vel": (-13.3, 0.0),
                      "cheetah-dir": (-10.3, 10.0), "ant-dir": (-10.1, 10.0)}


def _settings(argv: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in argv)


@pytest.mark.parametrize("agent", ["maml-trpo", "promp"])
@pytest.mark.parametrize("env", ["point-nav", "cheetah-dir", "cheetah-vel", "ant-dir"])
def test_every_preset_trains_one_tiny_iteration(agent, env, tmp_path):
    """The papers' presets (network, estimator, optimiser) reach the agent and train: every
    preset setting not shrunk by TINY is in the trained agent's config and shapes its
    network and inner step, one iteration moves the weights away from their (seeded)
    initial values, and the logged metrics are finite with returns a 5-step episode can
    have."""
    run = tmp_path / "run"
    assert main(["train", "--config", f"{agent}/{env}", "--iterations", "1", "--run-dir",
                 str(run), "--set", "env.horizon=5", *TINY[agent]]) == 0
    trained = load(run)
    cfg = trained.agent.config
    preset = load_yaml(PRESETS_DIR / agent / f"{env}.yaml")
    shrunk = _settings(TINY[agent])
    reached = [key for key in preset if hasattr(cfg, key) and key not in shrunk]
    assert {"activation", "inner_estimator", "inner_lr", "init"} <= set(reached)
    for key in reached:
        assert getattr(cfg, key) == preset[key], key
    assert cfg.meta_batch == 2 and cfg.hidden_size == 8  # the TINY overrides won
    net = trained.agent.net
    linears = [m for m in net.body.layers if isinstance(m, torch.nn.Linear)]
    assert len(linears) == preset["num_layers"] and linears[0].out_features == 8
    assert type(net.body.layers[1]).__name__.lower() == preset["activation"]
    assert trained.agent.inner.lr == preset["inner_lr"]
    if agent == "promp":
        assert trained.agent.optimizer.param_groups[0]["lr"] == preset["lr"]
    initial = make_agent(trained.config, trained.env).net.state_dict()
    moved = [name for name, value in net.state_dict().items()
             if not torch.equal(value, initial[name])]
    assert moved, "one iteration left every weight at its initial value"

    rows = list(csv.DictReader((run / "progress.csv").open()))
    assert len(rows) == 1 and rows[0]["iteration"] == "0"
    values = {k: float(v) for k, v in rows[0].items() if v not in ("", "True", "False")}
    assert all(math.isfinite(v) for v in values.values()), values
    # 2 tasks x 2 trials x (pre-update + post-update episode) x 5 steps
    assert values["env_steps"] == 2 * 2 * 2 * 5
    low, high = STEP_REWARD_BOUNDS[env]
    for key in ("pre_update_return", "post_update_return"):
        assert 5 * low <= values[key] <= 5 * high, (key, values[key])
    curve = json.loads((run / "eval.json").read_text())["returns_per_episode"]
    assert all(5 * low <= x <= 5 * high for x in curve), curve


# ---------------------------------------------------------------- DiCE known answers
def _hand_dice_task():
    """One task's two 3-step episodes (γ = 0.5), the second ending after 2 steps (its third
    reward, 7, is padding). Returns-to-go G: [3, 4, 4] and [3.5, 1]; baseline b: [0.5, 1, 1]
    and [1, 0]; so γ^t (G_t − b_t) = [2.5, 1.5, 0.75] and [2.5, 0.5, 0]."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    actions = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    rewards = torch.tensor([[1.0, 2.0, 4.0], [3.0, 1.0, 7.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    weights = torch.tensor([[2.5, 1.5, 0.75], [2.5, 0.5, 0.0]], dtype=torch.float64)
    unused = torch.zeros_like(rewards)  # advantages and old log-probabilities: not DiCE's
    return (obs, actions, unused, mask, unused, rewards, values), weights


def test_dice_inner_gradient_is_the_baselined_score_function_gradient():
    """The DiCE inner loss on a hand-built task: its value is −(mean discounted return) /
    scale and its gradient is −mean_episodes Σ_t ∇log π(a_t|s_t) γ^t (G_t − b_t) / scale,
    with G, b and the scale worked out by hand (see _hand_dice_task)."""
    torch.manual_seed(0)
    net = GaussianMLP(3, 2, (4,), activation="tanh").double()
    data, weights = _hand_dice_task()
    # raw advantages G − b on the 5 real steps: [2.5, 3, 3, 2.5, 1], mean 2.4, variance
    # 0.54 (std + dice_scale's 1e-8 guard); 2.5 real steps per episode
    scale = 2.5 * (math.sqrt(0.54) + 1e-8)
    torch.testing.assert_close(dice_scale(data[5], data[6], data[3], 0.5),
                               torch.tensor(scale, dtype=torch.float64), rtol=1e-12, atol=0)
    params = parameters_of(net)
    loss = inner_estimator_loss("dice", net, 0.5)(params, data)
    # value: magic boxes are 1 and the baseline term 0; discounted returns 3 and 3.5
    torch.testing.assert_close(loss, torch.tensor(-3.25 / scale, dtype=torch.float64))
    logp = log_probs(net, params, data[0], data[1])
    expected = -(logp * weights).sum() / 2 / scale
    got = torch.autograd.grad(loss, list(params.values()))
    want = torch.autograd.grad(expected, list(params.values()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.cat([g.reshape(-1) for g in want]).norm() > 1e-3  # not trivially zero


def test_dice_objective_hessian_is_the_score_function_hessian():
    """DiCE's point is unbiased higher derivatives: for log π_t(θ) = −(a_t − θ·x_t)² / 2 its
    Hessian is mean_e Σ_t γ^t [r_t (∇²g_t + ∇g_t ∇g_tᵀ) − b_t (∇²ℓ_t + ∇ℓ_t ∇ℓ_tᵀ)] with
    ℓ_t = log π_t and g_t = Σ_{t'≤t} ℓ_t' — the terms a VPG surrogate's Hessian lacks."""
    data, _ = _hand_dice_task()
    mask, rewards, values = data[3], data[5], data[6]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    a = torch.randn(2, 3, generator=g, dtype=torch.float64)
    theta = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def objective(th: torch.Tensor) -> torch.Tensor:
        return dice_objective(-0.5 * (a - x @ th).square(), rewards, mask, 0.5, values)

    hessian = torch.autograd.functional.hessian(objective, theta)
    expected = torch.zeros(2, 2, dtype=torch.float64)
    for e in range(2):
        grad_g, hess_g = torch.zeros(2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
        for t in range(3):
            if not mask[e, t]:
                continue
            grad_l = (a[e, t] - x[e, t] @ theta) * x[e, t]  # ∇ℓ_t
            hess_l = -torch.outer(x[e, t], x[e, t])  # ∇²ℓ_t
            grad_g, hess_g = grad_g + grad_l, hess_g + hess_l
            expected += 0.5**t * (rewards[e, t] * (hess_g + torch.outer(grad_g, grad_g))
                                  - values[e, t] * (hess_l + torch.outer(grad_l, grad_l)))
    torch.testing.assert_close(hessian, expected / 2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "maml-trpo", "bandit"], "MAML-TRPO needs a continuous (Box) action space"),
    (["train", "promp", "point-nav", "--set", "inner_estimator=exact"],
     "unknown inner_estimator 'exact'; valid: vpg, lvc, dice"),
    (["train", "maml-trpo", "point-nav", "--set", "fisher_tasks=50"],
     "fisher_tasks must be in [0, meta_batch=20], got 50"),
    (["train", "promp", "point-nav", "--set", "init=he"],
     "unknown init 'he'; valid: xavier, torch"),
])
def test_bad_configuration_is_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_adapting_policy_gives_the_same_trials_on_ray(ray_local):
    """Per-task inner steps happen in the workers; sharding by task keeps every task's
    trials together, so Ray and the local sampler agree step for step."""
    from helpers import local_and_ray_rollouts

    torch.manual_seed(0)
    env = make("point-nav", horizon=6)
    agent = MAMLTRPOAgent(env, MAMLTRPOConfig(meta_batch=4, rollouts_per_task=3,
                                              hidden_size=8))
    local, remote = local_and_ray_rollouts(env, agent.policy(), env.split_tasks("train", 4),
                                           trials=3, episodes=3, seed=5)
    np.testing.assert_allclose(remote.actions, local.actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote.rewards, local.rewards, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    old, new = torch.randn(5, 6), torch.randn(5, 6)
    normal = torch.distributions.Normal
    expected = torch.distributions.kl_divergence(
        normal(old[:, :3], old[:, 3:].exp()), normal(new[:, :3], new[:, 3:].exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(old, new), expected)


def test_outer_gradient_through_the_inner_step_equals_finite_differences():
    """The MAML-RL meta-gradient (second order through the vmapped inner VPG step) against
    central finite differences of the same post-update surrogate, in float64."""
    from metarl.meta import InnerLoop
    from metarl.meta.rl import PolicyData, vpg_loss
    from metarl.nn import GaussianMLP

    torch.manual_seed(0)
    net = GaussianMLP(3, 2, (5,), activation="tanh").double()
    n, m, t = 2, 3, 4

    def episode() -> PolicyData:
        return PolicyData(torch.randn(n, m, t, 3, dtype=torch.float64),
                          torch.randn(n, m, t, 2, dtype=torch.float64),
                          torch.randn(n, m, t, dtype=torch.float64),
                          torch.ones(n, m, t, dtype=torch.float64),
                          torch.randn(n, m, t, dtype=torch.float64) - 3.0,
                          torch.zeros(n, m, t, dtype=torch.float64),
                          torch.zeros(n, m, t, dtype=torch.float64))

    pre, post = episode(), episode()
    inner = InnerLoop(vpg_loss(net), steps=1, lr=0.5)

    def objective(params) -> torch.Tensor:
        outputs = per_task_outputs(net, adapt_through(inner, params, [pre]), post.observations)
        ratio = (net.head.log_prob(outputs, post.actions) - post.old_log_prob).exp()
        return (ratio * post.advantages).mean()

    params = parameters_of(net)
    grads = torch.autograd.grad(objective(params), list(params.values()))
    direction = {k: torch.randn_like(p) for k, p in params.items()}
    eps = 1e-6
    with torch.no_grad():
        plus = objective({k: p + eps * direction[k] for k, p in params.items()})
        minus = objective({k: p - eps * direction[k] for k, p in params.items()})
    numeric = (plus - minus) / (2 * eps)
    analytic = sum((g * direction[k]).sum() for g, k in zip(grads, params, strict=True))
    assert abs(analytic.item() - numeric.item()) < 1e-7 * max(1.0, abs(numeric.item()))
    # and the second-order part matters here: the first-order gradient differs
    first_order = InnerLoop(vpg_loss(net), steps=1, lr=0.5, first_order=True)
    outputs = per_task_outputs(net, adapt_through(first_order, params, [pre]),
                               post.observations)
    fo = torch.autograd.grad(((net.head.log_prob(outputs, post.actions)
                               - post.old_log_prob).exp() * post.advantages).mean(),
                             list(params.values()))
    assert not all(torch.allclose(a, b) for a, b in zip(grads, fo, strict=True))


def test_xavier_init_matches_the_reference_code_and_torch_keeps_the_default():
    """MAML-RL's and ProMP's code initialise Glorot-uniform weights and zero biases; the
    "torch" option keeps PyTorch's U(±1/√fan_in) biases (non-zero)."""
    from metarl.nn import GaussianMLP

    torch.manual_seed(0)
    xavier = GaussianMLP(17, 6, (64, 64), init="xavier")
    for layer in (xavier.body.layers[0], xavier.body.layers[2], xavier.head.mean):
        fan_out, fan_in = layer.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uses the range, not a narrower one
        assert torch.count_nonzero(layer.bias) == 0
    default = GaussianMLP(17, 6, (64, 64), init="torch")
    assert torch.count_nonzero(default.head.mean.bias) == 6
    assert default.head.mean.weight.abs().max() <= 64 ** -0.5
    agent = MAMLTRPOAgent(make("point-nav"), MAMLTRPOConfig(hidden_size=8))
    assert torch.count_nonzero(agent.net.head.mean.bias) == 0  # the agents' default


# ------------------------------------------------------------------ the agent's device
def test_meta_device_harness_catches_a_tensor_left_on_the_cpu():
    with MetaDeviceValues():
        meta = torch.ones(3, device="meta")
        assert float(meta.sum()) == 1.0 and meta.cpu().numpy().tolist() == [1.0, 1.0, 1.0]
        meta * torch.tensor(2.0)  # a 0-d CPU scalar is allowed, as on CUDA
        with pytest.raises(RuntimeError, match="device"):
            meta + torch.ones(3)
        with pytest.raises(RuntimeError, match="device"):
            torch.cat([meta, torch.ones(3)])


@pytest.mark.parametrize(("agent_cls", "config"), [
    (MAMLTRPOAgent, MAMLTRPOConfig(meta_batch=2, rollouts_per_task=2, hidden_size=8,
                                   cg_iterations=2, fisher_tasks=1, line_search_steps=3)),
    (ProMPAgent, ProMPConfig(meta_batch=2, rollouts_per_task=2, hidden_size=8, ppo_epochs=2,
                             adaptive_kl_penalty=True)),
    (ProMPAgent, ProMPConfig(meta_batch=2, rollouts_per_task=2, hidden_size=8, ppo_epochs=1,
                             inner_estimator="dice", inner_steps=2)),
], ids=["maml-trpo", "promp", "promp-dice-2-steps"])
def test_gradient_agents_keep_networks_data_and_updates_on_their_device(agent_cls, config):
    """Built with ``device="meta"``, the network, the rollout data (PolicyData), the linear
    baseline, the inner steps of the adapting policy and of training, the TRPO / ProMP
    update (CG, Fisher products, line search, Adam) and the optimiser state stay on that
    device: any tensor they left on the CPU would meet a meta one and raise (see
    MetaDeviceValues). Acting is numpy on a CPU snapshot by design (AdaptivePolicy)."""
    env = make("point-nav", horizon=4)
    agent = agent_cls(env, config, device="meta")
    assert agent.device == torch.device("meta")
    assert on_meta(agent.net.parameters()) and on_meta(agent.net.buffers())
    seen: list[list[PolicyData]] = []
    update = agent.update
    agent.update = lambda data: seen.append(data) or update(data)
    mode = MetaDeviceValues()
    with mode:
        metrics = agent.train_iteration(LocalSampler(env), np.random.default_rng(0))
        policy = agent.policy()
        tasks = env.split_tasks("test", 2)
        episodes = LocalSampler(env).sample(policy, tasks, trials=2, episodes=1, seed=0)
        state = policy.reset(tasks, 2, BatchRNG(0, np.arange(4)))
        for _ in range(2):  # the first step from θ, then from per-task θ'
            state = policy.end_episode(state, episodes)
    assert len(seen) == 1 and len(seen[0]) == config.inner_steps + 1
    for episode in seen[0]:
        assert on_meta(episode.as_tuple())
    assert on_meta(state.params.values()) and state.per_task
    assert next(iter(state.params.values())).shape[0] == 2  # per task
    assert on_meta(agent.net.parameters())
    if isinstance(agent, ProMPAgent):
        assert on_meta(t for s in agent.optimizer.state.values() for t in s.values()
                       if isinstance(t, torch.Tensor) and t.dim() > 0)
        assert len(agent.optimizer.state) == len(list(agent.net.parameters()))
    assert metrics["env_steps"] == 2 * 2 * (config.inner_steps + 1) * 4
    assert mode.ops > 1000  # the update really ran (on meta), not just the construction
