"""The SB3 agents (``metarl train sb3-sac|sb3-ppo|sb3-recurrent-ppo``): a normal run dir, exact
resume (SB3's own save plus the replay buffer), evaluation through metarl's evaluator on the
same held-out tasks and JSON as every agent, and SB3's own load of the checkpoint."""

import csv
import io
import json

import numpy as np
import pytest

pytest.importorskip("sb3_contrib", reason="the sb3 extra is not installed")

from metarl import runs  # noqa: E402
from metarl.cli import main  # noqa: E402
from metarl.training import latest_checkpoint  # noqa: E402

SMOKE = {
    "sb3-sac": ["point-nav", "mode=task-in-obs", "steps_per_iteration=100",
                "learning_starts=50", "batch_size=32", "hidden_size=16",
                "env.horizon=50"],
    "sb3-ppo": ["bandit", "mode=trial", "episodes_per_trial=5", "steps_per_iteration=100",
                "minibatches=2", "hidden_size=8", "ppo_epochs=2"],
    "sb3-recurrent-ppo": ["bandit", "mode=trial", "episodes_per_trial=5",
                          "steps_per_iteration=100", "minibatches=2", "hidden_size=8",
                          "lstm_size=8", "ppo_epochs=2"],
}


def _train(agent, run_dir, *extra, capsys):
    env, *settings = SMOKE[agent]
    assert main(["train", agent, env, "--run-dir", str(run_dir), "--set", *settings,
                 "eval_tasks=4", "checkpoint_every=1", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _rows(run_dir):
    with open(run_dir / "progress.csv") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


@pytest.mark.parametrize("agent", sorted(SMOKE))
def test_two_iterations_resume_exactly_and_evaluate_as_every_agent(agent, tmp_path, capsys):
    whole = _train(agent, tmp_path / "whole", "iterations=2", capsys=capsys)
    _train(agent, tmp_path / "part", "iterations=1", capsys=capsys)
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "part"), "--set",
                 "iterations=2"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = _rows(tmp_path / "whole")
    assert [int(r["env_steps_total"]) for r in rows] == [100, 200]
    assert rows == _rows(tmp_path / "part")  # losses and returns, bit for bit
    assert {k: v for k, v in whole.items() if k.startswith("eval_")} == {
        k: v for k, v in resumed.items() if k.startswith("eval_")}
    assert (tmp_path / "whole" / "tb").is_dir()
    # metarl eval: the same JSON shape and held-out tasks as every meta-RL agent
    assert main(["eval", str(tmp_path / "whole"), "--num-tasks", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    episodes = 5 if "ppo" in agent else 3
    assert result["agent"] == agent and result["num_tasks"] == 4
    assert len(result["returns_per_episode"]) == episodes
    assert result["summary"]["trial_return"] == pytest.approx(whole["eval_trial_return"])


def test_the_checkpoint_holds_sb3s_own_save(tmp_path, capsys):
    from stable_baselines3 import SAC

    _train("sb3-sac", tmp_path / "run", "iterations=1", capsys=capsys)
    loaded = runs.load(tmp_path / "run")
    state = loaded.agent.state_dict()
    model = SAC.load(io.BytesIO(state["sb3_zip"]), device="cpu")
    assert model.num_timesteps == 100
    obs = np.random.default_rng(0).normal(size=(7, loaded.agent.model.observation_space.shape[0]))
    ours, _ = loaded.agent.model.predict(obs.astype(np.float32), deterministic=True)
    theirs, _ = model.predict(obs.astype(np.float32), deterministic=True)
    assert np.array_equal(ours, theirs)
    assert len(state["replay"]["observations"]) == 100  # the filled rows only
    assert latest_checkpoint(tmp_path / "run").name == "iter_000001.pt"


def test_a_sac_oracle_sees_the_task_and_the_multi_task_policy_does_not(tmp_path, capsys):
    shapes = {}
    for mode in ("task-in-obs", "resample"):
        _train("sb3-sac", tmp_path / mode, "iterations=1", f"mode={mode}", capsys=capsys)
        shapes[mode] = runs.load(tmp_path / mode).agent.model.observation_space.shape[0]
    assert shapes["task-in-obs"] == shapes["resample"] + 2  # point-nav's goal


def test_steps_per_iteration_must_split_over_the_environments(tmp_path, capsys):
    assert main(["train", "sb3-sac", "point-nav", "--run-dir", str(tmp_path / "run"), "--set",
                 "n_envs=3", "steps_per_iteration=100"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "steps_per_iteration must be a multiple of n_envs (3), got 100")
    assert not (tmp_path / "run").exists()


def test_without_the_sb3_extra_training_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if not installed
    assert main(["train", "sb3-sac", "point-nav", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the SB3 agents need the sb3 extra" in err[0]
    assert not (tmp_path / "run").exists()
