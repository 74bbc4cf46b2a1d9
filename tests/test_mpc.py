"""Known answers for the MPC planners of metarl.mpc (random shooting, CEM, MPPI).

The test problems are linear models ``s' = s + a`` with quadratic rewards, whose best action
sequence is known in closed form; each test can fail on a wrong planner."""

from __future__ import annotations

import pytest
import torch

from metarl.mpc import (
    CEM,
    MPPI,
    RandomShooting,
    make_score,
    model_returns,
    per_env_generators,
)


def additive_step(obs, act, carry):
    """``s' = s + a`` on the first ``a`` entries; the last entry counts the steps."""
    return torch.cat([obs[..., :-1] + act, obs[..., -1:] + 1], -1), carry


def tracking_score(targets: torch.Tensor, scale: float = 1.0):
    """The scorer of :func:`additive_step` from ``s = 0`` with reward
    ``-scale * ||s'_t - targets[:, t]||^2``, ``targets [B, H, 2]``: the best sequence is
    ``a_t = targets[:, t] - targets[:, t - 1]`` when that is in the box."""
    batch, horizon, dim = targets.shape

    def reward(obs, act, next_obs):
        t = obs[..., -1].long().clamp(max=horizon - 1)  # [B, C]
        target = targets.gather(1, t[..., None].expand(-1, -1, dim))
        return -scale * (next_obs[..., :-1] - target).square().sum(-1)

    return make_score(additive_step, reward, torch.zeros(batch, dim + 1))


BOX = (-torch.ones(2), torch.ones(2))


def test_random_shooting_finds_the_optimal_first_action():
    goals = torch.tensor([[0.3, -0.5]])
    score = tracking_score(goals[:, None])
    action, info = RandomShooting(4000, 1).plan(score, 1, *BOX, torch.Generator().manual_seed(0))
    assert action.shape == (1, 2) and info["plan"].shape == (1, 1, 2)
    assert info["returns"].shape == (1, 4000)
    assert torch.allclose(action, goals, atol=0.05)
    assert torch.equal(action, info["plan"][:, 0])
    # the best of 4000 uniform draws, not any draw: its return is the largest
    assert float(info["returns"].max()) == pytest.approx(-float((action - goals).square().sum()),
                                                         abs=1e-6)


def _horizon_problem(batch: int, horizon: int, seed: int):
    """Targets whose best sequence lies well inside the box: steps in [-0.6, 0.6]."""
    gen = torch.Generator().manual_seed(seed)
    steps = torch.rand(batch, horizon, 2, generator=gen) * 1.2 - 0.6
    return steps.cumsum(1), steps


def test_cem_beats_random_shooting_on_the_same_budget():
    """Horizon 5 x 2 actions, a narrow optimum (return 0): the chosen plan's regret and its
    distance to the optimum, averaged over 8 environments x 3 seeds, with 5 x 200 model
    evaluations each (about -1.5 and 0.5 for CEM, -8 and 1.1 for random shooting)."""
    batch, horizon = 8, 5
    regrets, errors = {"cem": [], "rs": []}, {"cem": [], "rs": []}
    for seed in range(3):
        targets, optimum = _horizon_problem(batch, horizon, seed)
        score = tracking_score(targets, scale=10.0)
        cem = CEM(200, horizon, iterations=5)
        planners = {"cem": cem, "rs": RandomShooting(cem.evaluations, horizon)}
        for name, planner in planners.items():
            _, info = planner.plan(score, batch, *BOX, torch.Generator().manual_seed(seed))
            regrets[name].append(-score(info["plan"][:, None]).mean())
            errors[name].append((info["plan"] - optimum).norm(dim=(1, 2)).mean())
    regret = {name: float(torch.stack(values).mean()) for name, values in regrets.items()}
    error = {name: float(torch.stack(values).mean()) for name, values in errors.items()}
    assert regret["cem"] < 0.4 * regret["rs"], regret
    assert error["cem"] < 0.7 * error["rs"], error


def test_cem_elites_move_the_mean_toward_the_optimum():
    """The warm-start state is the final mean, shifted: its first step approaches the
    optimum's second action (elites are the best candidates, not arbitrary ones)."""
    targets, optimum = _horizon_problem(4, 3, seed=7)
    score = tracking_score(targets, scale=10.0)
    _, info = CEM(500, 3, iterations=6).plan(score, 4, *BOX, torch.Generator().manual_seed(1))
    assert torch.allclose(info["state"][:, :2], optimum[:, 1:], atol=0.1)
    assert torch.equal(info["state"][:, 2], torch.zeros(4, 2))  # the box centre
    # the plan is the best candidate of the last round (as the reference), not the mean
    assert torch.equal(score(info["plan"][:, None])[:, 0], info["returns"].max(1).values)


def test_mppi_approaches_the_optimum():
    targets, optimum = _horizon_problem(4, 3, seed=3)
    score = tracking_score(targets, scale=10.0)
    mppi = MPPI(1000, 3, iterations=5, temperature=0.5, noise_std=0.3)
    action, info = mppi.plan(score, 4, *BOX, torch.Generator().manual_seed(0))
    assert torch.allclose(action, optimum[:, 0], atol=0.05)
    first_error = (action - optimum[:, 0]).norm(dim=1).mean()
    # one iteration from the centre is further off: the iterations matter
    one, _ = MPPI(1000, 3, iterations=1, temperature=0.5, noise_std=0.3).plan(
        score, 4, *BOX, torch.Generator().manual_seed(0))
    assert first_error < 0.5 * (one - optimum[:, 0]).norm(dim=1).mean()
    assert torch.equal(info["state"][:, :-1], info["plan"][:, 1:])  # the shifted mean


def test_mppi_warm_start_sets_the_sampling_mean():
    """Started at the optimum with little noise, one round stays there; from the centre it
    cannot get there."""
    targets, optimum = _horizon_problem(4, 3, seed=5)
    score = tracking_score(targets, scale=10.0)
    mppi = MPPI(100, 3, temperature=0.5, noise_std=0.01)
    warm, _ = mppi.plan(score, 4, *BOX, torch.Generator().manual_seed(0), state=optimum)
    cold, _ = mppi.plan(score, 4, *BOX, torch.Generator().manual_seed(0))
    assert torch.allclose(warm, optimum[:, 0], atol=0.01)
    assert (cold - optimum[:, 0]).norm(dim=1).min() > 0.05


def test_model_returns_equals_an_explicit_loop_with_discount_and_carry():
    """A toy recurrent model whose carry is a tuple (h, step count), against a Python loop
    over environments, candidates and steps on unbatched vectors."""
    torch.manual_seed(0)
    batch, candidates, horizon, d, a, k = 3, 4, 5, 3, 2, 4
    W, U, V = torch.randn(k, k) * 0.5, torch.randn(d + a, k) * 0.5, torch.randn(k, d) * 0.5
    discount = 0.9

    def step(obs, act, carry):
        h, count = carry
        h = torch.tanh(h @ W + torch.cat([obs, act], -1) @ U)
        return obs + h @ V + 0.01 * count, (h, count + 1)

    def reward(obs, act, next_obs):
        return -next_obs.square().sum(-1) + obs[..., 0] * act[..., 0] - 0.1 * act[..., 1]

    obs0, h0 = torch.randn(batch, d), torch.randn(batch, k)
    count0 = torch.arange(batch, dtype=torch.float32)[:, None]  # per environment
    actions = torch.randn(batch, candidates, horizon, a)
    got = model_returns(step, reward, obs0, actions, carry=(h0, count0), discount=discount)
    expected = torch.zeros(batch, candidates)
    for b in range(batch):
        for c in range(candidates):
            obs, carry, total = obs0[b], (h0[b], count0[b]), 0.0
            for t in range(horizon):
                next_obs, carry = step(obs, actions[b, c, t], carry)
                total += discount**t * reward(obs, actions[b, c, t], next_obs)
                obs = next_obs
            expected[b, c] = total
    assert got.shape == (batch, candidates)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # in blocks of 2 and 1 candidates (6 and 3 rows), the same numbers
    for rows in (6, 1):
        blocked = model_returns(step, reward, obs0, actions, carry=(h0, count0),
                                discount=discount, block_rows=rows)
        torch.testing.assert_close(blocked, got, rtol=1e-6, atol=1e-6)
    # and the scorer of make_score is the same function
    torch.testing.assert_close(make_score(step, reward, obs0, (h0, count0), discount)(actions),
                               got)


def test_each_environment_gets_its_own_answer():
    """Different goals per environment, planned at once: each gets its own goal; with one
    generator per environment, each gets exactly the plan it gets alone."""
    goals = torch.tensor([[0.5, 0.5], [-0.6, 0.2], [0.1, -0.8]])
    score = tracking_score(goals[:, None])
    for planner in (RandomShooting(3000, 1), CEM(300, 1, iterations=4),
                    MPPI(1000, 1, iterations=4, temperature=0.05, noise_std=0.3)):
        action, _ = planner.plan(score, 3, *BOX, torch.Generator().manual_seed(0))
        assert torch.allclose(action, goals, atol=0.06), (type(planner).__name__, action)
        together, _ = planner.plan(score, 3, *BOX, per_env_generators([10, 11, 12]))
        for b in range(3):
            alone, _ = planner.plan(tracking_score(goals[b:b + 1, None]),
                                    1, *BOX, per_env_generators([10 + b]))
            torch.testing.assert_close(together[b:b + 1], alone)


@pytest.mark.parametrize("planner", [RandomShooting(500, 1), CEM(100, 3, iterations=3),
                                     MPPI(200, 3, iterations=2, noise_std=2.0)],
                         ids=["rs", "cem", "mppi"])
def test_actions_respect_the_bounds(planner):
    """An asymmetric box and goals far outside it: every action and plan stays in the box,
    and the first action goes to the box's corner nearest the goal."""
    low, high = torch.tensor([-0.5, 0.0]), torch.tensor([0.2, 2.0])
    goals = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    score = tracking_score(goals[:, None].expand(2, 3, 2))
    action, info = planner.plan(score, 2, low, high, torch.Generator().manual_seed(0))
    for x in (action, info["plan"]):
        assert bool(((x >= low) & (x <= high)).all())
    corners = torch.tensor([[0.2, 0.0], [-0.5, 2.0]])
    assert torch.allclose(action, corners, atol=0.15), action


def test_nan_returns_are_never_chosen():
    def score(actions):  # NaN everywhere but where the first action's first entry < -0.5
        returns = actions[:, :, 0, 0].clone()
        return torch.where(returns < -0.5, returns, torch.nan)

    for planner in (RandomShooting(200, 2), CEM(200, 2, iterations=2)):
        action, _ = planner.plan(score, 2, *BOX, torch.Generator().manual_seed(0))
        assert bool((action[:, 0] < -0.5).all())


def test_bad_arguments():
    with pytest.raises(ValueError, match="generators for a batch"):
        RandomShooting(10, 2).plan(lambda x: x.sum((2, 3)), 2, *BOX, per_env_generators([1]))
    with pytest.raises(ValueError, match=r"score must return \[B, C\]"):
        RandomShooting(10, 2).plan(lambda x: x.sum(), 2, *BOX)
    with pytest.raises(ValueError, match="low must be <= high"):
        RandomShooting(10, 2).plan(lambda x: x.sum((2, 3)), 2, BOX[1], BOX[0])
    with pytest.raises(ValueError, match="elite_fraction"):
        CEM(10, 2, elite_fraction=0.0)
    with pytest.raises(ValueError, match="temperature"):
        MPPI(10, 2, temperature=0.0)


def test_the_benchmark_runs_and_counts_flops():
    from metarl.benchmarks.mpc import linear_flops, run
    from metarl.cli import BENCHMARKS
    from metarl.nn.mlp import MLP

    assert BENCHMARKS["mpc"] == "metarl.benchmarks.mpc"
    assert linear_flops(MLP(24, (8,), 18), 10) == 2 * 10 * (24 * 8 + 8 * 18)
    result = run(envs=2, candidates=16, horizon=2, cem_iterations=2, repeats=1)
    assert result["preset"] == "grbal/cheetah-crippled" and result["hidden"] == [256, 256]
    rows = 2 * 16 * 2  # the preset's model: (18 + 6) -> 256 -> 256 -> 18
    assert result["model_gflop_per_plan"] == round(
        2 * rows * (24 * 256 + 256 * 256 + 256 * 18) / 1e9, 6)
    for key in ("rs_ms", "cem_ms", "env_loop_ms", "fraction", "speedup_vs_env_loop",
                "grbal_step_ms", "adapt_ms"):
        assert result[key] > 0, key
    assert result["threads"] == 1
