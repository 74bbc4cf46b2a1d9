"""Known answers for the inner-loop estimators of gradient-based meta-RL (LVC, DiCE).

A two-step problem with two actions per step, whose second state is the first action, and a
tabular softmax policy has four trajectories, so the expected return J(θ) and its derivatives
are exact by enumeration.
Weighting each trajectory's estimator by its (detached) probability gives the estimator's
expectation exactly; DiCE must match J's gradient and Hessian, LVC its gradient."""

import itertools

import torch

from metarl.meta.rl import dice_objective, lvc_objective

# r(state, action): state 0 at t = 0, state 1 + a0 at t = 1 (the first action matters later)
REWARDS = torch.tensor([[1.0, -0.5], [0.3, 2.0], [-1.0, 0.4]], dtype=torch.float64)
DISCOUNT = 0.9
TRAJECTORIES = list(itertools.product(range(2), range(2)))


def _log_pi(theta):
    return torch.log_softmax(theta, dim=-1)  # [state, action]


def _exact_return(theta):
    probs = _log_pi(theta).exp()
    return sum(probs[0, a0] * probs[1 + a0, a1]
               * (REWARDS[0, a0] + DISCOUNT * REWARDS[1 + a0, a1]) for a0, a1 in TRAJECTORIES)


def _expected(estimator, theta):
    """``Σ_τ ⊥p(τ) · estimator(τ)``: the estimator's expectation under the policy."""
    log_pi = _log_pi(theta)
    total = 0.0
    for a0, a1 in TRAJECTORIES:
        log_prob = torch.stack([log_pi[0, a0], log_pi[1 + a0, a1]])[None]  # one episode
        rewards = torch.stack([REWARDS[0, a0], REWARDS[1 + a0, a1]])[None]
        total = total + log_prob.sum().exp().detach() * estimator(log_prob, rewards)
    return total


def _dice(log_prob, rewards):
    return dice_objective(log_prob, rewards, torch.ones_like(rewards), DISCOUNT)


def _lvc(log_prob, rewards):
    reward_to_go = torch.stack([rewards[:, 0] + DISCOUNT * rewards[:, 1], DISCOUNT *
                                rewards[:, 1]], -1)  # discounted from the episode start
    mask = torch.ones_like(rewards)
    return lvc_objective(log_prob, log_prob.detach(), reward_to_go, mask) * mask.sum()


THETA = torch.tensor([[0.2, -0.4], [0.7, 0.1], [-0.3, 0.5]], dtype=torch.float64)


def test_dice_gives_the_exact_gradient_and_hessian():
    grad = torch.autograd.functional.jacobian(lambda t: _expected(_dice, t), THETA)
    exact = torch.autograd.functional.jacobian(_exact_return, THETA)
    torch.testing.assert_close(grad, exact)
    hessian = torch.autograd.functional.hessian(lambda t: _expected(_dice, t), THETA)
    torch.testing.assert_close(hessian, torch.autograd.functional.hessian(_exact_return, THETA))


def test_dice_with_a_baseline_keeps_the_gradient():
    def with_baseline(log_prob, rewards):
        values = torch.full_like(rewards, 0.7)
        return dice_objective(log_prob, rewards, torch.ones_like(rewards), DISCOUNT, values)

    grad = torch.autograd.functional.jacobian(lambda t: _expected(with_baseline, t), THETA)
    torch.testing.assert_close(grad, torch.autograd.functional.jacobian(_exact_return, THETA))


def test_lvc_gives_the_exact_gradient_but_not_the_exact_hessian():
    grad = torch.autograd.functional.jacobian(lambda t: _expected(_lvc, t), THETA)
    torch.testing.assert_close(grad, torch.autograd.functional.jacobian(_exact_return, THETA))
    hessian = torch.autograd.functional.hessian(lambda t: _expected(_lvc, t), THETA)
    exact = torch.autograd.functional.hessian(_exact_return, THETA)
    assert not torch.allclose(hessian, exact)  # LVC drops the cross-step terms by design
