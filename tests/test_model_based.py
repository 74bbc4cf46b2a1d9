"""GrBAL, ReBAL and MB-MPC: the agents' data loop, online adaptation in the Policy hooks,
CLI runs with exact resume, and the refusals (see also test_dynamics.py, test_mpc.py and
test_envs_model_based.py for the parts' known answers)."""

import csv
import json

import numpy as np
import pytest
import torch

from metarl.agents.model_based import ModelBasedAgent, MPCPolicy
from metarl.agents.model_based.agent import EarlyStopping, EpisodeStore
from metarl.cli import main
from metarl.meta import InnerLoop
from metarl.random import BatchRNG
from metarl.runs import make_agent
from metarl.sampling import LocalSampler
from metarl.types import Transition

TINY = ["hidden_size=16", "num_layers=1", "candidates=16", "plan_horizon=3",
        "episodes_per_iteration=2", "model_epochs=2", "adapt_window=4", "predict_window=4",
        "meta_batch=2", "batch_size=16", "eval_tasks=2", "env.horizon=20", "valid_every=2"]


def rows_without_time(run_dir):
    with (run_dir / "progress.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


@pytest.mark.parametrize("agent, env, extra", [
    ("grbal", "cheetah-crippled", []),
    ("rebal", "ant-broken-leg", []),
    ("mb-mpc", "cheetah-crippled", ["dynamic_evaluation=true", "planner=cem",
                                    "cem_iterations=2"]),
    ("grbal", "ant-broken-leg", ["planner=mppi", "learn_inner_lr=true"]),
])
def test_two_iterations_resume_exactly_and_evaluate(agent, env, extra, tmp_path, capsys):
    """Iteration 0 is random, iteration 1 plans with the adapting model; a run stopped after
    iteration 0 and resumed logs the same rows as one that was not stopped."""
    common = ["--set", *TINY, *extra, "checkpoint_every=1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", agent, env, "--iterations", "2", "--run-dir", str(full),
                 *common]) == 0
    assert main(["train", agent, env, "--iterations", "1", "--run-dir", str(cut),
                 *common]) == 0
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", "2"]) == 0
    assert rows_without_time(full) == rows_without_time(cut)
    rows = rows_without_time(full)
    assert [float(r["transitions"]) for r in rows] == [40.0, 80.0]  # all data kept
    capsys.readouterr()
    assert main(["eval", str(full), "--json", "--num-tasks", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == agent and result["split"] == "test"
    assert len(result["returns_per_episode"]) == 1


@pytest.mark.parametrize("argv, words", [
    (["train", "grbal", "cheetah-vel"], ["cheetah-crippled", "ant-broken-leg"]),
    (["train", "mb-mpc", "ant-broken-leg", "--set", "env.model_based=false"],
     ["unknown env key 'env.model_based'"]),  # the agents always set it
    (["train", "rebal", "cheetah-crippled", "--set", "valid_every=1"], ["valid_every"]),
])
def test_bad_input_is_one_line_exit_2_and_no_run_dir(argv, words, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*argv, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not run_dir.exists()


def tiny_agent(name, env="cheetah-crippled", **settings):
    """A tiny agent of ``name`` and its env, built as ``metarl train`` builds them."""
    import metarl.agents as agents
    from metarl.config import build_config, parse_overrides

    agent_cls, config_cls = agents.get(name).load()
    values = {"agent": name, "env": env, **parse_overrides(TINY), **settings}
    config = build_config(values, config_cls, agent_cls.env_factory(env))
    made = agent_cls.make_env(env, config.env_kwargs, config.agent_config)
    return make_agent(config, made), made


def fake_step(obs, actions, next_obs, valid, step):
    return Transition(obs, actions, np.zeros(len(obs)), next_obs, np.zeros(len(obs), bool),
                      np.zeros(len(obs), bool), valid, step, 0)


def test_grbal_adapts_at_every_step_on_exactly_the_last_m_real_transitions():
    agent, env = tiny_agent("grbal")
    torch.manual_seed(0)
    agent.model.stats.fit(np.random.randn(50, 18), np.random.randn(50, 6),
                          np.random.randn(50, 18))
    policy = agent.policy()
    tasks = env.split_tasks("test", 2)
    state = policy.reset(tasks, 1, BatchRNG(0, [0, 1]))
    rng = np.random.default_rng(0)
    history = []
    for t in range(7):  # more than M = 4; environment 1 skips step 5 (not valid)
        obs, act, nxt = rng.normal(size=(2, 18)), rng.normal(size=(2, 6)), rng.normal(size=(2, 18))
        valid = np.array([True, t != 5])
        history.append((obs, act, nxt, valid))
        state = policy.observe(state, fake_step(obs, act, nxt, valid, t))
    for b in range(2):
        kept = [(o[b], a[b], n[b]) for o, a, n, v in history if v[b]][-4:]
        expected = [torch.as_tensor(np.stack(x), dtype=torch.float32)
                    for x in zip(*kept, strict=True)]
        assert torch.equal(state.obs[b], expected[0]) and torch.equal(state.next_obs[b],
                                                                      expected[2])
        # the planner's model for environment b: one SGD step from θ on those transitions
        inner = InnerLoop(agent.model.loss, steps=1, lr=agent.config.inner_lr)
        adapted = inner(dict(agent.model.named_parameters()), tuple(expected))
        probe = torch.randn(3, 18), torch.randn(3, 6)
        step, _, per_env = policy.adapted_model(state)
        assert per_env
        batch = [torch.zeros(2, 3, x.shape[-1]) for x in probe]
        for x, p in zip(batch, probe, strict=True):
            x[b] = p
        got = step(batch[0], batch[1], None)[0][b]
        want = agent.model.predict(*probe, params=adapted)
        assert torch.allclose(got, want, atol=1e-5)
    # without adaptation the prediction is θ's, so the check above can fail
    assert not torch.allclose(agent.model.predict(*probe), want, atol=1e-4)


def test_rebal_state_is_the_model_run_from_zero_over_the_last_m_transitions():
    """As in training (windows from the zero state), not carried through the episode; a
    new episode starts from the zero state again."""
    agent, env = tiny_agent("rebal")  # M = 4
    policy = agent.policy()
    state = policy.reset(env.split_tasks("test", 2), 1, BatchRNG(0, [0, 1]))
    rng = np.random.default_rng(1)
    seq = [(rng.normal(size=(2, 18)), rng.normal(size=(2, 6))) for _ in range(7)]
    for t, (obs, act) in enumerate(seq):  # environment 1 has finished after step 2
        state = policy.observe(state, fake_step(obs, act, obs, np.array([True, t <= 2]), t))
    _, hidden, per_env = policy.adapted_model(state)
    assert not per_env
    for b, steps in ((0, seq[-4:]), (1, seq[:3])):
        obs = torch.as_tensor(np.stack([o[b] for o, _ in steps]), dtype=torch.float32)
        act = torch.as_tensor(np.stack([a[b] for _, a in steps]), dtype=torch.float32)
        with torch.no_grad():
            expected, _ = agent.model.run(agent.model.initial_state(), obs, act)
            over_episode, _ = agent.model.run(agent.model.initial_state(), *[
                torch.as_tensor(np.stack([x[i][b] for x in seq]), dtype=torch.float32)
                for i in (0, 1)])
        torch.testing.assert_close(hidden[b], expected, rtol=1e-5, atol=1e-6)
        if b == 0:  # the state carried over all 7 steps differs: the check above can fail
            assert not torch.allclose(hidden[b], over_episode, atol=1e-4)
    state = policy.end_episode(state, None)
    _, hidden, _ = policy.adapted_model(state)
    assert not state.valid.any() and hidden.abs().sum() == 0


def test_mb_mpc_without_dynamic_evaluation_plans_on_theta():
    agent, _ = tiny_agent("mb-mpc")
    assert agent.policy().adaptation == "none"
    agent, _ = tiny_agent("mb-mpc", dynamic_evaluation=True)
    assert agent.policy().adaptation == "gradient"


def test_same_seed_gives_the_same_trials_and_planning_is_independent_of_the_batch():
    agent, env = tiny_agent("grbal")
    agent.model.stats.fit(np.random.randn(50, 18), np.random.randn(50, 6),
                          np.random.randn(50, 18))
    sampler = LocalSampler(env)
    tasks = env.split_tasks("train", 3)
    a = sampler.sample(agent.policy(), tasks, episodes=1, seed=4)
    b = sampler.sample(agent.policy(), tasks, episodes=1, seed=4)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert np.abs(a.actions).max() <= 1.0


def test_episode_store_windows_are_consecutive_steps_of_training_episodes():
    store = EpisodeStore(1, 1, 10)
    from metarl.types import Rollouts, Task

    n, t = 4, 10
    code = (np.arange(n)[:, None] * 100 + np.arange(t)[None]).astype(float)
    shape = (n, 1, 1, t)
    rollouts = Rollouts(code.reshape(*shape, 1), code.reshape(*shape, 1), np.zeros(shape),
                        code.reshape(*shape, 1) + 1, np.zeros(shape, bool),
                        np.zeros(shape, bool), np.ones(shape, bool),
                        tuple(Task("x", {}) for _ in range(n)))
    store.add(rollouts, valid_every=2)
    assert store.held_out.tolist() == [False, True, False, True]
    obs, _, nxt = store.windows(False, 50, 4, np.random.default_rng(0))
    obs = obs[..., 0].numpy()
    assert (np.diff(obs, axis=1) == 1).all()  # consecutive steps of one episode
    assert set((obs[:, 0] // 100).astype(int)) <= {0, 2}  # training episodes only
    assert torch.equal(nxt[..., 0], torch.as_tensor(obs + 1))


def test_early_stopping_follows_the_reference_rule():
    stop = EarlyStopping(0.5)
    # averages: 1.5 -> 0.5*1.5+0.5*1 = 1.25 (prev 2: go on), then 0.5*1.25+0.5*0.5 = 0.875,
    # then 0.5*0.875 + 0.5*2 = 1.4375 > 0.875: stop
    assert [stop.should_stop(x) for x in (1.0, 0.5, 2.0)] == [False, False, True]


def test_the_agents_refuse_a_discrete_action_space():
    from metarl.agents.model_based import GrBALConfig
    from metarl.envs import make

    with pytest.raises(ValueError, match="Box"):
        ModelBasedAgent(make("bandit"), GrBALConfig())


def test_an_mpc_policy_needs_a_matching_model():
    agent, env = tiny_agent("grbal")
    with pytest.raises(ValueError, match="recurrent"):
        MPCPolicy(agent.model, agent.planner, env.reward, env.action_space.low,
                  env.action_space.high, adaptation="recurrent", window=4)
