"""Known answers and sanity checks for the RL² reference baselines (metarl.reference_policies)."""

import numpy as np
import pytest
import torch

from metarl.envs import make
from metarl.policy import Policy
from metarl.random import BatchRNG
from metarl.reference_policies import (
    BASELINES,
    GittinsPolicy,
    OracleMDPPolicy,
    PosteriorMeanMDPPolicy,
    PSRLPolicy,
    RandomPolicy,
    StepwisePosteriorMeanPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
    belief_value,
    finite_horizon_q,
    gittins_index,
    gittins_table,
    run_policy,
    run_policy_episodes,
)
from metarl.reference_policies.bandits import EpsilonGreedyPolicy, GreedyPolicy
from metarl.sampling import LocalSampler
from metarl.types import Task, Transition


def mean_se(returns: np.ndarray) -> tuple[float, float]:
    return float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(returns.size))


# ----------------------------------------------------------------------------- Gittins


@pytest.mark.parametrize("successes, failures, expected", [
    (0, 0, 0.7029), (1, 1, 0.6346), (2, 2, 0.6010), (9, 1, 0.8695)])
def test_gittins_index_matches_published_table(successes, failures, expected):
    # Gittins, Glazebrook & Weber (2011) tables for gamma = 0.9, prior Beta(1, 1).
    index = gittins_index(successes, failures, gamma=0.9, depth=100)
    assert index == pytest.approx(expected, abs=6e-5)


def test_gittins_table_agrees_with_bisection():
    table = gittins_table(0.9, 60)
    for s, f in [(0, 0), (3, 0), (0, 7), (4, 5), (12, 3), (20, 20)]:
        assert table[s, f] == pytest.approx(gittins_index(s, f, 0.9, 60), abs=1e-5)


def test_gittins_index_monotone_and_above_posterior_mean():
    table = gittins_table(0.95, 40)
    size = 30
    s, f = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    inside = s + f < size - 1
    assert np.all((table[1:size, :size - 1] > table[:size - 1, :size - 1])[inside[:-1, :-1]])
    assert np.all((table[:size - 1, 1:size] < table[:size - 1, :size - 1])[inside[:-1, :-1]])
    assert np.all(table[:size, :size][inside] > ((1 + s) / (2 + s + f))[inside])


def test_belief_value_small_cases():
    assert belief_value(2, 1) == pytest.approx(0.5)
    # pull; stay after a success (posterior 2/3), switch after a failure (0.5)
    assert belief_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)
    table = gittins_table(0.9, 40)
    gittins = belief_value(5, 10, index=lambda s, f: table[s, f])
    greedy = belief_value(5, 10, index=lambda s, f: (1 + s) / (2 + s + f))
    assert greedy < gittins < belief_value(5, 10)


# ----------------------------------------------------------------------------- bandits


def bandit_tasks(means: np.ndarray) -> list[Task]:
    return [Task("bandit", {"means": m}, id=i) for i, m in enumerate(means)]


def test_ucb1_pulls_every_arm_once_first():
    env = make("bandit", arms=5)
    tasks = env.split_tasks("test", 50)
    rollouts = LocalSampler(env).sample(UCB1Policy(5, c=0.1), tasks, trials=2, episodes=8)
    first = np.sort(rollouts.actions[:, :, :5, 0], axis=-1)
    np.testing.assert_array_equal(first, np.broadcast_to(np.arange(5), first.shape))


@pytest.mark.parametrize("policy", [ThompsonSamplingPolicy(5), GreedyPolicy(5),
                                    GittinsPolicy(5, episodes=50)], ids=type)
def test_bandit_policies_find_a_clearly_best_arm(policy):
    env = make("bandit", arms=5)
    best = np.arange(100) % 5
    means = np.full((100, 5), 0.1)
    means[np.arange(100), best] = 0.9
    rollouts = LocalSampler(env).sample(policy, bandit_tasks(means), episodes=50, seed=3)
    late = rollouts.actions[:, 0, 25:, 0]
    assert (late == best[:, None]).mean() > 0.85


def test_bandit_returns_order_and_match_rl2_table():
    """k = 5, n = 10 on 5000 tasks: random < epsilon-greedy <= Gittins, and Gittins equals
    its exact expected value (6.645, printed as 6.6 in RL² Table 1) within 3 standard
    errors (about 0.1)."""
    env = make("bandit", arms=5)
    tasks = env.split_tasks("test", 5000)
    returns = {name: mean_se(run_policy(policy, env, tasks, episodes=10, seed=0))
               for name, policy in [("random", RandomPolicy(5)),
                                    ("epsilon", EpsilonGreedyPolicy(5, epsilon=0.1)),
                                    ("gittins", GittinsPolicy(5, episodes=10))]}
    assert returns["random"][0] == pytest.approx(5.0, abs=3 * returns["random"][1])
    assert returns["random"][0] < returns["epsilon"][0] < returns["gittins"][0]
    table = gittins_table(0.9, GittinsPolicy(5, episodes=10).depth)
    exact = belief_value(5, 10, index=lambda s, f: table[s, f])
    assert exact == pytest.approx(6.6, abs=0.05)
    assert returns["gittins"][0] == pytest.approx(exact, abs=3 * returns["gittins"][1])


def test_thompson_sampling_is_deterministic_given_the_seed():
    env = make("bandit", arms=5)
    tasks = env.split_tasks("test", 20)
    first = run_policy(ThompsonSamplingPolicy(5), env, tasks, episodes=20, seed=7)
    again = run_policy(ThompsonSamplingPolicy(5), env, tasks, episodes=20, seed=7)
    other = run_policy(ThompsonSamplingPolicy(5), env, tasks, episodes=20, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_per_episode_returns_sum_to_trial_returns():
    env = make("bandit", arms=5)
    tasks = env.split_tasks("test", 6)
    episodes = run_policy_episodes(ThompsonSamplingPolicy(5), env, tasks, 20, trials=3, seed=7)
    assert episodes.shape == (6, 3, 20) and set(np.unique(episodes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(episodes.sum(-1), run_policy(ThompsonSamplingPolicy(5), env,
                                                               tasks, 20, trials=3, seed=7))


# ----------------------------------------------------------------------------- tabular MDPs


def transition(obs, actions, rewards, next_obs, valid, states=3) -> Transition:
    eye = np.eye(states, dtype=np.float32)
    n = len(actions)
    return Transition(eye[obs], np.asarray(actions), np.asarray(rewards, dtype=float),
                      eye[next_obs], np.zeros(n, bool), np.zeros(n, bool),
                      np.asarray(valid), step=0, episode=0)


def test_psrl_posterior_matches_closed_form():
    policy = PSRLPolicy(states=3, actions=2, horizon=4)
    state = policy.reset([Task("tabular-mdp", {})], 2, BatchRNG(0, [0, 1]))
    # env 0: (s=0, a=1) twice with rewards 2.0 and 0.5, landing in 2 then 1; env 1 invalid
    state = policy.observe(state, transition([0, 0], [1, 1], [2.0, 9.0], [2, 2], [True, False]))
    state = policy.observe(state, transition([0, 1], [1, 0], [0.5, 9.0], [1, 1], [True, False]))
    post = state.posterior
    # Normal-Normal: precision 1 + n, mean (prior 1 + reward sum) / (1 + n)
    assert post.reward_mean()[0, 0, 1] == pytest.approx((1.0 + 2.5) / 3.0)
    assert post.reward_precision()[0, 0, 1] == pytest.approx(3.0)
    np.testing.assert_array_equal(post.transition_alpha()[0, 0, 1], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(post.reward_mean()[1], 1.0)
    np.testing.assert_array_equal(post.transition_alpha()[1], 1.0)
    assert post.visits.sum() == 2


def test_psrl_samples_follow_the_posterior():
    policy = PSRLPolicy(states=3, actions=2, horizon=4)
    envs = 20000
    state = policy.reset([Task("tabular-mdp", {})], envs, BatchRNG(1, np.arange(envs)))
    step = transition(np.zeros(envs, int), np.ones(envs, int), np.full(envs, 3.0),
                      np.full(envs, 2), np.ones(envs, bool))
    posterior = policy.observe(state, step).posterior
    rewards, probs = posterior.sample(BatchRNG(2, np.arange(envs)))
    r = rewards[:, 0, 1]  # posterior N(2, 1/2)
    assert r.mean() == pytest.approx(2.0, abs=0.02) and r.var() == pytest.approx(0.5, rel=0.05)
    np.testing.assert_allclose(probs[:, 0, 1].mean(axis=0), [0.25, 0.25, 0.5], atol=0.01)


def test_finite_horizon_q_on_a_hand_built_mdp():
    # state 0: action 0 pays 1 and stays; action 1 pays 0 and moves to state 1, which pays 3.
    rewards = np.array([[[1.0, 0.0], [3.0, 3.0]]])
    transitions = np.zeros((1, 2, 2, 2))
    transitions[0, 0, 0, 0] = transitions[0, 0, 1, 1] = transitions[0, 1, :, 1] = 1.0
    q = finite_horizon_q(rewards, transitions, horizon=3)
    # q(t, s0, stay) = 1 + V(t+1, s0); q(t, s0, move) = 0 + 3 * (steps left after this one)
    np.testing.assert_allclose(q[0, :, 0, 0], [1 + 3, 1 + 1, 1])
    np.testing.assert_allclose(q[0, :, 0, 1], [0 + 6, 0 + 3, 0])
    assert q[0, 0, 0].argmax() == 1 and q[0, 2, 0].argmax() == 0


def test_mdp_ordering_random_psrl_oracle():
    env = make("tabular-mdp")
    tasks = env.split_tasks("test", 300)
    returns = {name: mean_se(run_policy(BASELINES["tabular-mdp"][name](env, 10), env, tasks,
                                        episodes=10, seed=0))
               for name in ("random", "psrl", "oracle")}
    (rand, rand_se), (psrl, psrl_se), (oracle, oracle_se) = returns.values()
    assert rand == pytest.approx(100.0, abs=3 * rand_se)  # reward means ~ N(1, 1), 100 steps
    assert psrl - 4 * np.hypot(psrl_se, rand_se) > rand  # RL² Table 2: 138.1 vs 100.1
    assert oracle - 4 * np.hypot(oracle_se, psrl_se) > psrl
    # the oracle's expected return is its own value from state 0, task by task
    oracle_policy = OracleMDPPolicy(10, 5, 10)
    value = oracle_policy.reset(tasks, 1, BatchRNG(0, np.arange(300))).q[:, 0, 0].max(axis=-1)
    assert oracle == pytest.approx(10 * value.mean(), abs=3 * oracle_se)


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("env_name, baseline", [
    (env, name) for env, table in BASELINES.items() for name in table])
def test_registry_builds_policies_that_do_not_read_tasks(env_name, baseline):
    env = make(env_name)
    policy = BASELINES[env_name][baseline](env, 3)
    assert isinstance(policy, Policy)
    returns = run_policy(policy, env, env.split_tasks("train", 4), episodes=3, trials=2)
    assert returns.shape == (4, 2) and np.isfinite(returns).all()
    if baseline != "oracle":  # learners work on tasks whose parameters are hidden
        state = policy.reset([Task(env_name, {})] * 4, 2, BatchRNG(0, np.arange(8)))
        obs = torch.zeros((8, *env.observation_space.shape))
        obs[:, 0] = 1.0
        action, _, _ = policy.act(obs, state)
        assert action.shape == (8,)


@pytest.mark.parametrize("myopic", [False, True])
def test_stepwise_greedy_uses_a_reward_within_the_episode(myopic):
    """After action 3 pays 5 in state 0 (prior mean 1), the stepwise planners take it again
    at once; the per-episode planner keeps its plan until the episode ends."""
    obs = np.zeros((2, 10), dtype=np.float32)
    obs[:, 0] = 1.0
    step = Transition(obs, np.array([3, 3]), np.array([5.0, 5.0]), obs, np.zeros(2, bool),
                      np.zeros(2, bool), np.ones(2, bool), 0, 0)
    stepwise = StepwisePosteriorMeanPolicy(10, 5, 10, myopic=myopic)
    per_episode = PosteriorMeanMDPPolicy(10, 5, 10)
    tasks = [Task("tabular-mdp", {})] * 2
    for policy in (stepwise, per_episode):
        state = policy.reset(tasks, 1, BatchRNG(0, np.arange(2)))
        first, state, _ = policy.act(torch.as_tensor(obs), state)
        second, _, _ = policy.act(torch.as_tensor(obs), policy.observe(state, step))
        if policy is stepwise:
            assert second.tolist() == [3, 3]
        else:
            assert second.tolist() == first.tolist() != [3, 3]
