"""``metarl train --resume`` checks what was typed against the stored run before anything is
touched: another agent or env, another ``--config``, a ``--set`` or flag whose value differs
from the stored one (unless its key is resumable), an ``--iterations`` below the latest
checkpoint, or a stored config this version of the code no longer accepts is one line and
exit code 2, and every file of the run keeps its bytes."""

import shutil

import pytest
import yaml

from metarl.agents.rl2.agent import RL2Config
from metarl.cli import main
from metarl.config import resumable_keys

TINY = ["--set", "tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=2",
        "hidden_size=8", "threads=1", "ppo_epochs=1", "minibatches=1", "checkpoint_every=1"]
RESUMABLE = "iterations, checkpoint_every, keep_checkpoints, eval_every, device, threads, " \
            "env.data_dir"
CHANGE = f"(a resume may change only {RESUMABLE}; to change others, fork the run with " \
         "experiments/fork_run.py)"


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration RL² run on the bandit (checkpoints 1 and 2), copied by :func:`run`."""
    path = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "2", "--run-dir", str(path),
                 *TINY]) == 0
    return path


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def refused(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metarl: error: ") and err.count("\n") == 1, err
    return err.removeprefix("metarl: error: ").removesuffix("\n")


def test_the_resumable_keys_are_declared_in_one_place():
    assert ", ".join(resumable_keys(RL2Config)) == RESUMABLE


@pytest.mark.parametrize(("typed", "line"), [
    (["pearl", "bandit"], "with agent='pearl': the run has agent='rl2'"),
    (["rl2", "tabular-mdp"], "with env='tabular-mdp': the run has env='bandit'"),
    (["--set", "lr=0.01"], f"with lr=0.01: the run has lr=0.001 {CHANGE}"),
    (["--set", "agent.gae_lambda=0.5"], f"with gae_lambda=0.5: the run has gae_lambda=0.3 "
                                        f"{CHANGE}"),
    (["--set", "hidden_size=16"], f"with hidden_size=16: the run has hidden_size=8 {CHANGE}"),
    (["--set", "env.arms=7"], f"with env.arms=7: the run has env.arms=5 {CHANGE}"),  # default
    (["--set", "eval_tasks=3"], f"with eval_tasks=3: the run has eval_tasks=2 {CHANGE}"),
    (["--seed", "1"], f"with seed=1: the run has seed=0 {CHANGE}"),
    (["--set", "eval_every=1", "lr=0.01"], f"with lr=0.01: the run has lr=0.001 {CHANGE}"),
    (["--iterations", "1"], "with iterations=1: the run is already at iteration 2"),
    (["--set", "iterations=0"], "with iterations=0: the run is already at iteration 2"),
])
def test_a_typed_value_that_differs_from_the_run_is_refused(typed, line, run, capsys):
    before = snapshot(run)
    argv = (["train", *typed[:2], "--resume", "--run-dir", str(run)] if typed[0] in (
        "pearl", "rl2") else ["train", "--resume", "--run-dir", str(run), *typed])
    assert refused(argv, capsys) == f"cannot resume {str(run)!r} {line}"
    assert snapshot(run) == before


def test_a_different_config_file_is_refused(run, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("agent: rl2\nenv: bandit\ntasks_per_iteration: 4\nlr: 0.0003\n")
    before = snapshot(run)
    assert refused(["train", "--resume", "--run-dir", str(run), "--config", str(other)],
                   capsys) == f"cannot resume {str(run)!r} with lr=0.0003: the run has " \
                              f"lr=0.001 {CHANGE}"
    assert refused(["train", "--resume", "--run-dir", str(run), "--config",
                    "rl2/tabular-mdp-n10"], capsys) == (
        f"cannot resume {str(run)!r} with env='tabular-mdp': the run has env='bandit'")
    assert snapshot(run) == before


def test_equal_and_resumable_values_are_accepted_and_stored(run, tmp_path, capsys):
    same = tmp_path / "same.yaml"
    same.write_text("agent: rl2\nenv: bandit\nhidden_size: 8\nlr: 1.0e-3\n")
    assert main(["train", "rl2", "bandit", "--resume", "--run-dir", str(run), "--config",
                 str(same), "--iterations", "3", "--seed", "0", "--device", "cpu", "--set",
                 "agent.lr=0.001", "env.arms=5", "eval_every=1", "keep_checkpoints=0",
                 "checkpoint_every=2", "threads=0"]) == 0  # (0: leave torch's threads alone)
    assert "resuming" in capsys.readouterr().err
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: stored[k] for k in ("iterations", "eval_every", "keep_checkpoints",
                                   "checkpoint_every", "threads", "lr", "hidden_size")} == {
        "iterations": 3, "eval_every": 1, "keep_checkpoints": 0, "checkpoint_every": 2,
        "threads": 0, "lr": 0.001, "hidden_size": 8}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000001.pt", "iter_000002.pt", "iter_000003.pt"]  # keep_checkpoints=0 keeps all


def test_iterations_equal_to_the_checkpoint_finish_the_run_without_training(run, capsys):
    assert main(["train", "--resume", "--run-dir", str(run), "--iterations", "2"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["iterations"] == 2


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda text: text + "foo: 1\n", "unknown config key 'foo' for agent 'rl2'; valid keys: "),
    (lambda text: text.replace("hidden_size: 8", "hidden_size: big"),
     "config key 'hidden_size' expects int, got 'big'"),
    (lambda text: text.replace("lr: 0.001", "lr: -0.001"), "lr must be > 0, got -0.001"),
    (lambda text: text + "previous_observation: true\n",
     "option previous_observation=True was removed from agent 'rl2'; only "
     "previous_observation=False (its old default) is still accepted, and ignored"),
    (lambda text: text.replace("agent: rl2\n", ""), "the config names no agent (got agent: "
                                                    "None)"),
    (lambda text: text.replace("agent: rl2", "agent: rl3"), "unknown agent 'rl3'; valid "
                                                            "agents: "),
    (lambda text: "- not a mapping\n", "config file '{config}' must hold a mapping of key: "
                                       "value"),
])
def test_a_stored_config_the_code_no_longer_accepts_is_one_line(edit, reason, run, capsys):
    config = run / "config.yaml"
    config.write_text(edit(config.read_text()))
    before = snapshot(run)
    line = refused(["train", "--resume", "--run-dir", str(run)], capsys)
    prefix = f"cannot resume {str(run)!r}: its config.yaml does not fit this version of metarl: "
    assert line.startswith(prefix + reason.replace("{config}", str(config))), line
    if not reason.endswith(": "):  # the lists of valid keys and agents are long
        assert line == prefix + reason.replace("{config}", str(config))
    assert snapshot(run) == before


def test_an_older_config_with_a_retired_option_at_its_old_default_still_resumes(run):
    config = run / "config.yaml"
    config.write_text(config.read_text() + "previous_observation: false\nvalue_coef: 0.5\n")
    assert main(["train", "--resume", "--run-dir", str(run), "--iterations", "3"]) == 0


def test_end_to_end_a_changed_setting_is_refused_in_a_subprocess(run, run_metarl):
    before = snapshot(run)
    done = run_metarl("train", "--resume", "--run-dir", str(run), "--set", "discount=0.9")
    assert done.returncode == 2
    assert done.stderr == (f"metarl: error: cannot resume {str(run)!r} with discount=0.9: the "
                           f"run has discount=0.99 {CHANGE}\n")
    assert snapshot(run) == before


def test_end_to_end_a_hand_edited_config_is_one_line_in_a_subprocess(run, run_metarl):
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("discount: 0.99", "discount: high"))
    before = snapshot(run)
    done = run_metarl("train", "--resume", "--run-dir", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"metarl: error: cannot resume {str(run)!r}: its config.yaml does "
                           f"not fit this version of metarl: config key 'discount' expects "
                           f"float, got 'high'\n")
    assert snapshot(run) == before
