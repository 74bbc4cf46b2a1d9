"""experiments/fork_run.py: a run forked at a checkpoint resumes with its weights."""

import pytest
import torch
from helpers import load_experiment

import metarl
from metarl.cli import main
from metarl.provenance import read_segments, setting_changes

TINY = ["tasks_per_iteration=4", "hidden_size=8", "eval_tasks=2", "checkpoint_every=1",
        "layer_norm=true"]


@pytest.fixture(scope="module")
def fork_run():
    return load_experiment("fork_run")


@pytest.fixture
def source(tmp_path, capsys):
    run = tmp_path / "source"
    assert main(["train", "rl2", "tabular-mdp", "--iterations", "2", "--run-dir", str(run),
                 "--set", *TINY]) == 0
    capsys.readouterr()
    return run


def test_a_settings_change_copies_the_checkpoint_and_the_progress_rows(fork_run, source,
                                                                         tmp_path, capsys,
                                                                         monkeypatch):
    target = tmp_path / "fork"
    assert fork_run.main([str(source), "--iteration", "1", "--to", str(target),
                          "--set", "lr=0.01"]) == 0
    checkpoint = "checkpoints/iter_000001.pt"
    assert (target / checkpoint).read_bytes() == (source / checkpoint).read_bytes()
    assert metarl.load(target).config.agent_config.lr == 0.01
    rows = (source / "progress.csv").read_bytes().splitlines(keepends=True)
    assert (target / "progress.csv").read_bytes() == b"".join(rows[:2])  # header + iteration 0
    segments = (source / "segments.jsonl").read_text()
    assert (target / "segments.jsonl").read_text() == segments  # where iteration 0 ran
    assert main(["train", "--resume", "--run-dir", str(target), "--iterations", "2"]) == 0
    assert len((target / "progress.csv").read_bytes().splitlines()) == 3
    assert len((target / "segments.jsonl").read_text().splitlines()) == 2
    segments = read_segments(target / "segments.jsonl")
    assert setting_changes(segments) == [(1, {"lr": 0.01})]  # the fork's stretch starts at 1


def test_a_new_part_starts_fresh_and_the_optimiser_keeps_the_old_state(fork_run, source):
    """No RL² setting adds a part: the merge is checked on the source's state and a new
    config's state with one more module, whose two parameters the optimiser gains."""
    original = metarl.load(source).agent
    old = original.state_dict()
    head = torch.nn.Linear(8, 3)
    optimiser = torch.optim.Adam([*original.policy_net.parameters(), *head.parameters()])
    fresh = {**old, "head": head.state_dict(), "policy_opt": optimiser.state_dict(),
             "policy_net": {k: torch.zeros_like(v) for k, v in old["policy_net"].items()}}
    merged = fork_run.merged_agent_state(old, fresh)
    assert merged["head"] is fresh["head"]  # the new part keeps its fresh initialisation
    assert old["policy_opt"]["state"]  # the source's Adam state, to be kept
    for name, value in old["policy_net"].items():
        assert torch.equal(merged["policy_net"][name], value)
    old_state, new_state = old["policy_opt"], merged["policy_opt"]
    assert len(new_state["param_groups"][0]["params"]) == (
        len(old_state["param_groups"][0]["params"]) + 2)  # the head's weight and bias
    for index, values in old_state["state"].items():
        assert torch.equal(new_state["state"][index]["exp_avg"], values["exp_avg"])
    with pytest.raises(ValueError, match="the optimiser would lose parameters"):
        fork_run.merged_agent_state(merged, old)  # the other way round


def test_bad_forks_are_one_clear_error(fork_run, source, tmp_path, capsys):
    cases = [([str(source), "--iteration", "5", "--to", str(tmp_path / "a")],
              "no checkpoint at iteration 5; kept: iter_000001.pt, iter_000002.pt"),
             ([str(source), "--iteration", "1", "--to", str(source)], "already exists"),
             ([str(source), "--iteration", "1", "--to", str(tmp_path / "b"), "--set", "lrr=1"],
              "unknown config key 'lrr'"),
             ([str(source), "--iteration", "1", "--to", str(tmp_path / "d"),
               "--set", "hidden_size=6"], "does not fit agent 'rl2'")]
    for argv, needle in cases:
        assert fork_run.main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not any((tmp_path / name).exists() for name in "abd")  # nothing left behind


def test_a_layer_that_gains_inputs_keeps_its_function(fork_run, source, tmp_path):
    """value_time_input gives the critic's core one more input, the horizon left."""
    target = tmp_path / "timed"
    assert fork_run.main([str(source), "--iteration", "2", "--to", str(target),
                          "--set", "value_time_input=true"]) == 0
    forked, original = metarl.load(target).agent, metarl.load(source).agent
    old_weight = original.value_net.core.input_proj.weight
    new_weight = forked.value_net.core.input_proj.weight
    old_size = old_weight.shape[1]
    assert new_weight.shape[1] == old_size + 1
    assert torch.equal(new_weight[:, :old_size], old_weight)
    assert not new_weight[:, old_size:].any()
    x = torch.randn(3, 7, original.inputs.size)  # a zero column: the values are unchanged
    torch.testing.assert_close(forked._values(x), original._values(x))
    moments = forked.value_opt.state[new_weight]
    old_moments = original.value_opt.state[old_weight]
    assert moments["exp_avg"].shape == new_weight.shape
    assert torch.equal(moments["exp_avg"][:, :old_size], old_moments["exp_avg"])
    assert not moments["exp_avg"][:, old_size:].any()
    row_means = old_moments["exp_avg_sq"].mean(-1, keepdim=True)
    assert torch.equal(moments["exp_avg_sq"][:, old_size:], row_means)
    assert main(["train", "--resume", "--run-dir", str(target), "--iterations", "3"]) == 0


def test_a_fork_keeps_only_the_stretches_that_ran_its_iterations(fork_run, source, tmp_path):
    assert main(["train", "--resume", "--run-dir", str(source), "--iterations", "3"]) == 0
    assert [s["first_iteration"] for s in read_segments(source / "segments.jsonl")] == [0, 2]
    target = tmp_path / "fork"
    assert fork_run.main([str(source), "--iteration", "1", "--to", str(target)]) == 0
    assert [s["first_iteration"] for s in read_segments(target / "segments.jsonl")] == [0]
