"""The command-line contract: smoke runs, JSON output, one-line errors, exact resume."""

import csv
import json
import subprocess
import sys

import pytest

from metarl.cli import main, train_agent_main
from metarl.provenance import read_segments, setting_changes

TINY = ["--set", "tasks_per_iteration=8", "hidden_size=8", "episodes_per_trial=3",
        "eval_tasks=5", "ppo_epochs=2", "minibatches=2"]


def _rows(run_dir):
    with open(run_dir / "progress.csv") as handle:
        return list(csv.DictReader(handle))


def test_two_iteration_smoke_run_and_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "2", "--run-dir", str(run), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["iterations"] == 2
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "progress.csv", "checkpoints", "tb",
                                                "eval.json"}
    assert len(_rows(run)) == 2 and list((run / "tb").iterdir())
    assert main(["eval", str(run), "--json", "--num-tasks", "7", "--episodes", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == "rl2" and result["env"] == "bandit"
    assert len(result["returns_per_episode"]) == 4 and result["num_tasks"] == 7
    assert result["mean_return"] == pytest.approx(sum(result["returns_per_episode"]) / 4)


def test_console_scripts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "metarl.cli", "list", "agents"],
                         capture_output=True, text=True, check=True).stdout
    assert "rl2" in out
    run = tmp_path / "r"
    assert train_agent_main(["rl2", "tabular-mdp", "--iterations", "1", "--run-dir", str(run),
                             *TINY]) == 0
    assert (run / "checkpoints" / "iter_000001.pt").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["train", "nope", "bandit"], "unknown agent 'nope'; valid agents: anil, cnp, dream, "
                                  "fomaml, grbal, maml, maml-trpo, matchingnet, mb-mpc, meta-sgd, "
                                  "pearl, promp, protonet, rebal, reptile, rl2"),
    (["train", "rl2", "nope"], "unknown env 'nope'; valid envs: "),
    (["train", "rl2", "bandit", "--set", "lrr=1"], "unknown config key 'lrr'"),
    (["train", "rl2", "bandit", "--set", "lr=fast"], "config key 'lr' expects float, got 'fast'"),
    (["train", "rl2", "bandit", "--set", "env.arms=1"], "arms must be >= 2, got 1"),
    (["train", "rl2", "bandit", "--set", "env.horizon=3"], "unknown env key 'env.horizon'"),
    (["train", "rl2", "bandit", "--set", "iterations"], "not of the form key=value"),
    (["train", "rl2", "bandit", "--config", "nowhere.yaml"], "neither a file nor a preset"),
    (["eval", "/no/such/run"], "run dir '/no/such/run' does not exist"),
    (["bench", "nope"], "unknown benchmark 'nope'"),
    (["bench", "rl2-update", "--threads", "0"], "--threads must be >= 1, got 0"),
    (["bench", "envs", "--threads", "2"], "benchmark 'envs' does not take --threads"),
    (["bench", "envs", "--epochs", "2"], "benchmark 'envs' does not take --epochs"),
    (["bench", "rl2-update", "--epochs", "0"], "--epochs must be >= 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "1", "--run-dir", str(run), *TINY]) == 0
    ckpt = run / "checkpoints" / "iter_000001.pt"
    ckpt.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    assert "is corrupt or unreadable" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"not a checkpoint"  # nothing lost
    assert main(["train", "rl2", "bandit", "--run-dir", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    common = ["--set", "checkpoint_every=2", *TINY[1:]]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "rl2", "bandit", "--iterations", "5", "--run-dir", str(full),
                 "--set", *common[1:]]) == 0
    assert main(["train", "rl2", "bandit", "--iterations", "3", "--run-dir", str(cut),
                 "--set", *common[1:]]) == 0
    # simulate a kill after iteration 3 was logged but before its checkpoint was written
    (cut / "checkpoints" / "iter_000003.pt").unlink()
    assert len(_rows(cut)) == 3
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", "5"]) == 0
    a, b = _rows(full), _rows(cut)
    assert [r["iteration"] for r in b] == ["0", "1", "2", "3", "4"]
    segments = read_segments(cut / "segments.jsonl")
    assert [s["first_iteration"] for s in segments] == [0, 2]  # the resume re-ran iteration 2
    assert segments[1]["cpu_count"] >= 1 and segments[1]["torch"] and segments[1]["started"]
    assert segments[0]["settings"]["iterations"] == 3
    assert setting_changes(segments) == [(2, {"iterations": 5})]  # the resume's only change
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            if key != "time_s":
                assert ra[key] == rb[key], (key, ra["iteration"])


def test_a_resume_drops_the_stretches_it_discards(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "2", "--run-dir", str(run),
                 "--set", "checkpoint_every=1", *TINY[1:]]) == 0
    assert main(["train", "--resume", "--run-dir", str(run), "--iterations", "4"]) == 0
    for late in ("iter_000003.pt", "iter_000004.pt"):  # killed before iteration 3's save
        (run / "checkpoints" / late).unlink()
    assert main(["train", "--resume", "--run-dir", str(run), "--iterations", "3"]) == 0
    segments = read_segments(run / "segments.jsonl")
    assert [(s["first_iteration"], s["settings"]["iterations"]) for s in segments] == [
        (0, 2), (2, 3)]  # the discarded stretch (to 4) is gone with its progress rows


def test_resume_requires_a_run(tmp_path, capsys):
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "none")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_bad_device_is_rejected(capsys):
    assert main(["train", "rl2", "bandit", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'; valid devices: cpu, cuda" in capsys.readouterr().err


def test_train_with_ray_sampler(tmp_path, ray_local, capsys):
    run = tmp_path / "ray"
    assert main(["train", "rl2", "bandit", "--iterations", "1", "--sampler", "ray",
                 "--workers", "2", "--run-dir", str(run), *TINY]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["iterations"] == 1
    assert len(_rows(run)) == 1


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    import time

    common = ["--iterations", "30", "--set", "checkpoint_every=1", *TINY[1:]]
    full, cut = tmp_path / "full", tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "metarl.cli", "train", "rl2", "bandit",
                             "--run-dir", str(cut), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # kill once a checkpoint at iteration >= 3 exists (only the newest 3 are kept: iter_3
    # alone may already be gone when the poll looks)
    while proc.poll() is None and time.time() < deadline:
        if any(int(p.stem.removeprefix("iter_")) >= 3 for p in (cut / "checkpoints").glob(
                "iter_*.pt")):
            break
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() != 0, "the run finished before it could be killed"
    assert main(["train", "--resume", "--run-dir", str(cut)]) == 0
    assert main(["train", "rl2", "bandit", "--run-dir", str(full), *common]) == 0
    a, b = _rows(full), _rows(cut)
    assert len(a) == len(b) == 30
    kept = sorted(p.name for p in (full / "checkpoints").iterdir())
    assert kept == ["iter_000028.pt", "iter_000029.pt", "iter_000030.pt"]
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "time_s"} == {
            k: v for k, v in rb.items() if k != "time_s"}


def test_periodic_evaluations_reach_progress_csv(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "5", "--run-dir", str(run),
                 *TINY, "eval_every=2"]) == 0
    rows = _rows(run)
    assert [bool(r["eval_trial_return"]) for r in rows] == [False, True, False, True, False]
    assert float(rows[1]["eval_last_episode_return"]) >= 0.0  # bandit rewards are 0 or 1


def test_eval_deterministic_acts_on_the_most_likely_action(tmp_path, capsys):
    run = tmp_path / "mdp"
    assert main(["train", "rl2", "tabular-mdp", "--iterations", "1", "--run-dir", str(run),
                 *TINY]) == 0
    capsys.readouterr()
    returns = {}
    for flags in ([], ["--deterministic"], ["--deterministic"]):
        assert main(["eval", str(run), "--json", "--num-tasks", "6", *flags]) == 0
        returns.setdefault(tuple(flags), []).append(
            json.loads(capsys.readouterr().out)["trial_return"])
    sampled, (greedy, again) = returns[()][0], returns[("--deterministic",)]
    assert greedy == again and greedy != sampled  # other actions, Gaussian rewards


def test_eval_deterministic_is_refused_for_a_few_shot_learner(tmp_path, capsys):
    run = tmp_path / "sine"
    assert main(["train", "maml", "sinusoid", "--iterations", "1", "--run-dir", str(run),
                 "--set", "eval_tasks=4", "meta_batch=2", "hidden=8"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--deterministic"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--deterministic" in error and "'maml'" in error and len(error.splitlines()) == 1


def test_sigterm_saves_the_iteration_in_flight_and_resume_continues_exactly(tmp_path):
    import signal
    import time

    common = ["--set", "checkpoint_every=1000", *TINY[1:]]
    cut, full = tmp_path / "cut", tmp_path / "full"
    proc = subprocess.Popen([sys.executable, "-m", "metarl.cli", "train", "rl2", "bandit",
                             "--iterations", "1000", "--run-dir", str(cut), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (
            (cut / "progress.csv").exists() and len(_rows(cut)) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    done = len(_rows(cut))  # no periodic checkpoint was due: the stop wrote this one
    assert f"stopped by SIGTERM after iteration {done} (checkpoint saved)" in err
    assert [p.name for p in (cut / "checkpoints").iterdir()] == [f"iter_{done:06d}.pt"]
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", str(done + 2)]) == 0
    assert main(["train", "rl2", "bandit", "--iterations", str(done + 2), "--run-dir", str(full),
                 *common]) == 0
    a, b = _rows(full), _rows(cut)
    assert len(a) == len(b) == done + 2
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "time_s"} == {
            k: v for k, v in rb.items() if k != "time_s"}


def test_stop_requests_respects_an_ignored_sigint_and_restores_handlers():
    import os
    import signal

    from metarl.stopping import stop_requests

    before_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell's `cmd &`
    before_term = signal.getsignal(signal.SIGTERM)
    try:
        with stop_requests() as stops:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            assert stops == [signal.SIGTERM]
            assert signal.getsignal(signal.SIGTERM) == before_term  # a second one acts at once
        assert signal.getsignal(signal.SIGTERM) == before_term
    finally:
        signal.signal(signal.SIGINT, before_int)


def test_list_names_the_datasets_and_presets(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("sinusoid", "omniglot", "image-folder"))
    assert main(["list", "presets"]) == 0
    assert "rl2/bandit-k5-n10" in capsys.readouterr().out.split()


def test_the_wheel_ships_the_presets_and_the_agents(tmp_path):
    """A non-editable install runs presets from any directory: they are package data."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("metarl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    from metarl.config import preset_names

    assert {f"metarl/presets/{name}.yaml" for name in preset_names()} <= names
    assert {"metarl/agents/fewshot.py", "metarl/agent.py", "metarl/envs/bandit.py"} <= names
    from metarl import agents

    for spec in agents.REGISTRY.values():  # every registered agent's module, package or file
        module = f"metarl/agents/{spec.module.replace('.', '/')}"
        assert {f"{module}.py", f"{module}/__init__.py"} & names, spec.name


@pytest.mark.parametrize(("agent", "env"), [("rl2", "bandit"), ("maml-trpo", "point-nav"),
                                            ("promp", "point-nav"), ("pearl", "point-nav"),
                                            ("maml", "sinusoid")])
def test_a_device_this_machine_lacks_is_one_line_and_exit_2(agent, env, tmp_path, capsys,
                                                             monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    run = tmp_path / "run"
    assert main(["train", agent, env, "--device", "cuda", "--iterations", "1",
                 "--run-dir", str(run)]) == 2
    error = capsys.readouterr().err
    assert error == "metarl: error: device 'cuda' is not available on this machine; valid " \
                    "devices: cpu\n"
    assert not run.exists()  # refused before anything is written
