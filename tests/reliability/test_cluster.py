"""``metarl sweep`` and the Ray sampler on a real multi-node Ray cluster: two raylets on this
machine (``ray.cluster_utils.Cluster``, loopback only), driven as a user drives them, through
``metarl sweep/train --ray-address`` in a subprocess. Processes are killed with SIGKILL on
their real pids: a trial's trainer (the pid in its run dir's lock file), a sampler worker
(a ``ray::SamplerWorker`` process of the cluster) in the middle of ``sample``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from as_a_user import CLI, progress_rows, sampler_worker_pids, without_time

from metarl.cli import main

TINY = ["tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=4", "hidden_size=8",
        "threads=1", "ppo_epochs=1", "minibatches=1"]


@pytest.fixture(scope="module")
def cluster():
    """A head with one CPU and a second node with one CPU: two trials (or two sampler
    workers) at once land on different nodes."""
    pytest.importorskip("ray.tune")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def start(args: list[str], log: Path, address: str) -> subprocess.Popen:
    """``metarl ARGS --ray-address ADDRESS`` in a subprocess, stderr to ``log``."""
    with log.open("w") as stderr:
        return subprocess.Popen([*CLI, *args, "--ray-address", address],
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env={**os.environ, "RAY_AUTH_MODE": "disabled"})


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    return out


def rows_reach(run: Path, rows: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while len(progress_rows(run)) < rows:
        assert proc.poll() is None, "the command ended before the kill"
        assert time.time() < deadline, f"{run} never reached {rows} progress rows"
        time.sleep(0.02)


def segments(run: Path) -> list[int]:
    return [json.loads(line)["first_iteration"]
            for line in (run / "segments.jsonl").read_text().splitlines()]


def test_a_sweep_of_two_settings_by_two_seeds_on_two_nodes(cluster, tmp_path):
    storage = tmp_path / "sweeps"
    log = tmp_path / "sweep.stderr"
    proc = start(["sweep", "rl2", "bandit", "--iterations", "2", "--seeds", "0", "1",
                  "--grid", "lr=1e-3,3e-3", "--storage", str(storage), "--name", "s",
                  "--json", "--set", *TINY], log, cluster.address)
    summary = json.loads(finish(proc, log).strip().splitlines()[-1])
    runs = storage / "s" / "runs"
    names = sorted(p.name for p in runs.iterdir())
    assert names == ["lr=0.001_seed0", "lr=0.001_seed1", "lr=0.003_seed0", "lr=0.003_seed1"]
    assert [t["status"] for t in summary["trials"]] == ["done"] * 4
    for name in names:  # each an ordinary run dir: its setting, seed and evaluation
        config = yaml.safe_load((runs / name / "config.yaml").read_text())
        lr, seed = name.split("_")
        assert (config["lr"], f"seed{config['seed']}") == (float(lr[3:]), seed)
        assert [r["iteration"] for r in progress_rows(runs / name)] == ["0", "1"]
        assert (runs / name / "checkpoints" / "iter_000002.pt").is_file()
        result = json.loads((runs / name / "eval.json").read_text())
        trial = next(t for t in summary["trials"] if t["run_dir"].endswith(name))
        assert trial["eval_trial_return"] == pytest.approx(result["trial_return"])
    # the seeds differ, the settings differ: four different learning curves
    assert len({json.dumps(without_time(progress_rows(runs / n))) for n in names}) == 4

    assert main(["report", str(storage / "s"), "--out", str(tmp_path / "report.md")]) == 0
    table = (tmp_path / "report.md").read_text()
    assert "lr=0.001" in table and "lr=0.003" in table
    assert (tmp_path / "report.png").stat().st_size > 0


def test_a_killed_trial_resumes_from_its_checkpoint(cluster, tmp_path):
    """SIGKILL the trial's trainer after its third iteration or later (checkpoints every 2):
    Tune restarts it, it resumes at its last checkpoint, and every progress row equals an
    uninterrupted run's."""
    settings = [*TINY, "checkpoint_every=2"]
    log = tmp_path / "sweep.stderr"
    run = tmp_path / "sweeps" / "k" / "runs" / "seed0"
    proc = start(["sweep", "rl2", "bandit", "--iterations", "6", "--seeds", "0", "--storage",
                  str(tmp_path / "sweeps"), "--name", "k", "--set", *settings], log,
                 cluster.address)
    rows_reach(run, 3, proc)
    pid = int((run / ".lock").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    rows_then = len(progress_rows(run))
    finish(proc, log)
    assert rows_then < 6, "the trial had finished when it was killed"
    assert "seed0 failed; retrying from its last checkpoint" in log.read_text()
    first, resumed = segments(run)  # resumed at its last checkpoint, not from scratch
    assert first == 0 and resumed in (2, 4) and resumed <= rows_then

    reference = tmp_path / "reference"
    assert main(["train", "rl2", "bandit", "--iterations", "6", "--run-dir", str(reference),
                 "--set", *settings]) == 0
    assert without_time(progress_rows(run)) == without_time(progress_rows(reference))
    assert ((run / "eval.json").read_text() == (reference / "eval.json").read_text())


def test_a_sweep_whose_driver_was_killed_continues_with_resume(cluster, tmp_path):
    """SIGKILL ``metarl sweep`` itself once a trial has 3 rows (its trials die with it):
    ``metarl sweep --resume`` restores the sweep (Tuner.restore), every trial ends, and the
    interrupted one resumed from its checkpoint with the rows of an uninterrupted run."""
    settings = [*TINY, "checkpoint_every=2"]
    storage = tmp_path / "sweeps"
    run = storage / "d" / "runs" / "seed0"
    log = tmp_path / "sweep.stderr"
    proc = start(["sweep", "rl2", "bandit", "--iterations", "8", "--seeds", "0", "1",
                  "--max-concurrent", "1", "--storage", str(storage), "--name", "d", "--set",
                  *settings], log, cluster.address)
    rows_reach(run, 3, proc)
    proc.kill()
    proc.wait()
    rows_then = len(progress_rows(run))
    assert rows_then < 8, "the trial had finished when the sweep was killed"
    resumed = start(["sweep", "--resume", "--storage", str(storage), "--name", "d"],
                    tmp_path / "resume.stderr", cluster.address)
    finish(resumed, tmp_path / "resume.stderr")
    first, again = segments(run)[:2]
    assert first == 0 and 0 < again <= rows_then and again % 2 == 0
    reference = tmp_path / "reference"
    assert main(["train", "rl2", "bandit", "--iterations", "8", "--run-dir", str(reference),
                 "--set", *settings]) == 0
    assert without_time(progress_rows(run)) == without_time(progress_rows(reference))
    assert len(progress_rows(storage / "d" / "runs" / "seed1")) == 8


def test_a_diverging_trial_stops_with_its_last_good_checkpoint_and_is_not_retried(
        cluster, tmp_path):
    """lr=1e30 diverges at once (tests/reliability/test_divergence.py): the trial ends at
    its first iteration without a retry, the other setting trains on; exit 1 naming it."""
    storage = tmp_path / "sweeps"
    log = tmp_path / "sweep.stderr"
    proc = start(["sweep", "rl2", "bandit", "--iterations", "3", "--grid", "lr=1e-3,1e30",
                  "--storage", str(storage), "--name", "div", "--json", "--set", *TINY,
                  "checkpoint_every=1"], log, cluster.address)
    out, _ = proc.communicate(timeout=240)
    err = log.read_text()
    assert proc.returncode == 1, err[-3000:]
    status = {Path(t["run_dir"]).name: t["status"]
              for t in json.loads(out.strip().splitlines()[-1])["trials"]}
    assert status == {"lr=0.001_seed0": "done", "lr=1e+30_seed0": "diverged"}
    assert "lr=1e+30_seed0 diverged at iteration 0" in err and "retrying" not in err
    assert "1 trial(s) diverged" in err
    diverged = storage / "div" / "runs" / "lr=1e+30_seed0"
    assert not list(diverged.glob("checkpoints/*.pt"))  # nothing of a blown-up iteration
    assert len(progress_rows(storage / "div" / "runs" / "lr=0.001_seed0")) == 3


def kill_a_sampling_worker(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGKILL a sampler worker caught inside ``sample``; its pid."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        busy = [pid for pid, title in sampler_worker_pids().items() if title.endswith(".sample")]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            return busy[0]
        time.sleep(0.001)
    raise AssertionError("no sampler worker was caught inside sample")


def test_a_sampler_worker_killed_on_the_cluster_changes_no_rollout(cluster, tmp_path):
    """Two sampler workers, one per node; one is killed inside ``sample``: it is replaced,
    its shard re-run, and the run's progress rows and evaluation equal those of a run
    without Ray."""
    args = ["train", "rl2", "bandit", "--iterations", "6", "--sampler", "ray", "--workers",
            "2", "--set", *TINY, "tasks_per_iteration=8"]
    run = tmp_path / "killed"
    log = tmp_path / "train.stderr"
    proc = start([*args, "--run-dir", str(run)], log, cluster.address)
    rows_reach(run, 2, proc)
    assert len(sampler_worker_pids()) == 2
    kill_a_sampling_worker(proc)
    rows_then = len(progress_rows(run))
    finish(proc, log)
    assert rows_then < 6, "the run had finished when the worker was killed"
    assert "replacing it" in log.read_text()
    assert len(progress_rows(run)) == 6

    reference = tmp_path / "local"
    assert main([*args[:5], "--run-dir", str(reference), *args[9:]]) == 0
    assert without_time(progress_rows(run)) == without_time(progress_rows(reference))
    assert (run / "eval.json").read_text() == (reference / "eval.json").read_text()


SPREAD_SCRIPT = textwrap.dedent("""
    import json
    import ray
    from ray.cluster_utils import Cluster
    from metarl.envs import make
    from metarl.sampling.ray_sampler import RaySampler

    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        sampler = RaySampler(make("bandit"), workers=2, scheduling_strategy="SPREAD")
        nodes = sampler.worker_nodes()
        sampler.close()
        alive = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        print(json.dumps({"workers": nodes, "cluster": alive}))
    finally:
        ray.shutdown()
        cluster.shutdown()
""")


@pytest.mark.reliability_slow
def test_spread_puts_the_workers_on_distinct_nodes():
    """Two nodes with two CPUs each: "SPREAD" places the two workers one per node (a
    cluster of two raylets on this machine, in a subprocess of its own)."""
    pytest.importorskip("ray")
    proc = subprocess.run([sys.executable, "-c", SPREAD_SCRIPT], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    placed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(placed["cluster"]) == 2
    assert sorted(placed["workers"]) == sorted(placed["cluster"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
