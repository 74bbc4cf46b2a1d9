"""Reference baselines for the RL² tables (Duan et al. 2016): bandits and tabular MDPs; and
for DREAM's bus and map grids (Liu et al. 2021).

Every baseline is a :class:`metarl.policy.Policy` with per-environment statistics in its
trial state. ``BASELINES[env_name][baseline_name](env, episodes, **hyper)`` builds one for a task
distribution and trials of ``episodes`` episodes; randomness comes from the sampler's seed::

    env = metarl.envs.make("bandit", arms=5)
    policy = BASELINES["bandit"]["gittins"](env, episodes=10)
    returns = run_policy(policy, env, env.split_tasks("test", 1000), episodes=10, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from metarl.policy import Policy
from metarl.reference_policies._common import RandomPolicy
from metarl.reference_policies.bandits import (
    ArmCounts,
    BanditPolicy,
    EpsilonGreedyPolicy,
    GittinsPolicy,
    GreedyPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
)
from metarl.reference_policies.dream import (
    DreamExploreExploitPolicy,
    DreamOraclePolicy,
    distances_to_goals,
    shortest_path_steps,
)
from metarl.reference_policies.evaluate import run_policy, run_policy_episodes
from metarl.reference_policies.gittins import belief_value, gittins_index, gittins_table
from metarl.reference_policies.tabular import (
    OracleMDPPolicy,
    PosteriorMeanMDPPolicy,
    PSRLPolicy,
    StepwisePosteriorMeanPolicy,
    TabularPosterior,
    finite_horizon_q,
)

Factory = Callable[..., Policy]

#: env name -> baseline name -> factory ``(env, episodes, **hyperparameters)``.
#: ``"oracle"`` reads the true task parameters: an upper reference, not a learner.
BASELINES: dict[str, dict[str, Factory]] = {
    "bandit": {
        "random": RandomPolicy.from_env,
        "greedy": GreedyPolicy.from_env,
        "epsilon-greedy": EpsilonGreedyPolicy.from_env,
        "ucb1": UCB1Policy.from_env,
        "thompson": ThompsonSamplingPolicy.from_env,
        "gittins": GittinsPolicy.from_env,
    },
    "tabular-mdp": {
        "random": RandomPolicy.from_env,
        "greedy": PosteriorMeanMDPPolicy.from_env,
        "greedy-stepwise": StepwisePosteriorMeanPolicy.from_env,
        "greedy-myopic": partial(StepwisePosteriorMeanPolicy.from_env, myopic=True),
        "psrl": PSRLPolicy.from_env,
        "oracle": OracleMDPPolicy.from_env,
    },
    "dream-bus": {
        "random": RandomPolicy.from_env,
        "explore-exploit": DreamExploreExploitPolicy.from_env,
        "oracle": DreamOraclePolicy.from_env,
    },
    "dream-map": {
        "random": RandomPolicy.from_env,
        "explore-exploit": DreamExploreExploitPolicy.from_env,
        "oracle": DreamOraclePolicy.from_env,
    },
}

__all__ = [
    "BASELINES", "ArmCounts", "BanditPolicy", "DreamExploreExploitPolicy", "DreamOraclePolicy",
    "EpsilonGreedyPolicy", "GittinsPolicy", "GreedyPolicy", "OracleMDPPolicy", "PSRLPolicy",
    "PosteriorMeanMDPPolicy", "RandomPolicy", "StepwisePosteriorMeanPolicy", "TabularPosterior",
    "ThompsonSamplingPolicy", "UCB1Policy", "belief_value", "distances_to_goals",
    "finite_horizon_q", "gittins_index", "gittins_table", "run_policy", "run_policy_episodes",
    "shortest_path_steps",
]
