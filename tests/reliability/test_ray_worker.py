"""A Ray sampler worker that dies is replaced and its shard re-run: the call returns the
rollouts a healthy run gives; a worker that keeps dying ends the call with SamplerError.

The workers are killed with SIGKILL on their real process ids: from the test (a thread that
waits until the worker is inside ``sample``), or by the policy itself in the worker. The
policies here run slowly or die only in a Ray worker process, never in the test process."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from as_a_user import progress_rows, sampler_worker_pids

from metarl.envs import make
from metarl.policy import StatelessPolicy
from metarl.sampling import LocalSampler

ARRAYS = ("observations", "actions", "rewards", "next_observations", "valid", "terminated",
          "truncated")
DRIVER_PID = os.getpid()


# ------------------------------------------------------------------ policies and helpers
class FlaggingPolicy:
    """Wraps a policy: in a Ray worker, its first ``act`` of a call writes ``started-PID``
    into ``flags`` and every ``act`` sleeps ``delay`` s (in the test process it only
    delegates). Sleeping does not change the rollouts."""

    def __init__(self, inner, flags: Path, delay: float = 0.0):
        self.inner, self.flags, self.delay = inner, str(flags), delay
        self.device = getattr(inner, "device", torch.device("cpu"))

    def reset(self, tasks, trials, rng):
        self._flagged = False
        return self.inner.reset(tasks, trials, rng)

    def act(self, obs, state):
        if os.getpid() != DRIVER_PID:
            if not self._flagged:
                self._flagged = True
                Path(self.flags, f"started-{os.getpid()}").touch()
            time.sleep(self.delay)
        return self.inner.act(obs, state)

    def observe(self, state, step):
        return self.inner.observe(state, step)

    def end_episode(self, state, episode):
        return self.inner.end_episode(state, episode)


class DyingPolicy(FlaggingPolicy):
    """In a Ray worker, flags the attempt, then kills its own process with SIGKILL."""

    def act(self, obs, state):
        super().act(obs, state)
        if os.getpid() != DRIVER_PID:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.act(obs, state)


class RaisingPolicy(StatelessPolicy):
    def act(self, obs, state):
        raise ValueError("a bug in the policy")


def started(flags: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in flags.glob("started-*")]


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a killed child of the raylet lingers as a zombie until reaped
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive")


class Killer(threading.Thread):
    """Kills (SIGKILL) each listed pid -- or, with ``pids=None``, every pid -- that flags
    itself in ``flags`` as inside ``sample``; ``killed`` lists the pids it killed."""

    def __init__(self, flags: Path, pids: list[int] | None, timeout: float = 60.0):
        super().__init__(daemon=True)
        self.flags, self.pids, self.timeout = flags, pids, timeout
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self):
        deadline = time.time() + self.timeout
        while not self.stop.is_set() and time.time() < deadline:
            for pid in started(self.flags):
                if pid not in self.killed and (self.pids is None or pid in self.pids):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    if self.pids is not None and set(self.killed) >= set(self.pids):
                        return
            time.sleep(0.005)


def assert_same_rollouts(a, b, extras: bool = True) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    if extras:
        assert a.extras.keys() == b.extras.keys()
        for key in a.extras:
            assert np.array_equal(a.extras[key], b.extras[key]), key
    assert a.tasks == b.tasks


# ------------------------------------------------------------------ in-process fixtures
@pytest.fixture(scope="module")
def ray_here(ray_local):
    """The session's local Ray instance; this module's policies travel by value (the
    workers cannot import a test module)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray_local
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def workload():
    """An RL² policy on 6 tabular-MDP tasks (2 trials, 2 episodes of 10 steps)."""
    from metarl.agents.rl2 import RL2Agent, RL2Config

    env = make("tabular-mdp", horizon=10)
    torch.manual_seed(0)
    agent = RL2Agent(env, RL2Config(episodes_per_trial=2, hidden_size=16))
    tasks = env.split_tasks("train", 6)
    return env, agent.policy(), tasks, {"trials": 2, "episodes": 2, "seed": 7,
                                        "task_offset": 3}


@pytest.fixture(scope="module")
def shared_sampler(ray_here, workload):
    """One 2-worker RaySampler for the module (starting workers is the slow part); every test
    leaves it healthy, with its workers replaced where they died."""
    from metarl.sampling.ray_sampler import RaySampler

    sampler = RaySampler(workload[0], workers=2)
    yield sampler
    sampler.close()


@pytest.fixture(scope="module")
def healthy(shared_sampler, workload):
    """The rollouts of a call on which no worker died."""
    _, policy, tasks, kwargs = workload
    return shared_sampler.sample(policy, tasks, **kwargs)


@pytest.fixture
def sampler(shared_sampler, healthy):
    yield shared_sampler
    shared_sampler.max_retries = 3


# ------------------------------------------------------------------ in-process tests
def test_worker_killed_during_sample_is_replaced(workload, sampler, healthy, tmp_path):
    env, policy, tasks, kwargs = workload
    pids, replaced = sampler.worker_pids(), sampler.replacements
    killer = Killer(tmp_path, [pids[1]])
    killer.start()
    # each act sleeps 20 ms in a worker: a shard takes >= 0.8 s, the kill lands inside it
    rollouts = sampler.sample(FlaggingPolicy(policy, tmp_path, delay=0.02), tasks, **kwargs)
    killer.join()
    assert killer.killed == [pids[1]]
    wait_dead(pids[1])
    assert sampler.replacements == replaced + 1  # the death was seen inside this call
    new_pids = sampler.worker_pids()
    assert new_pids[0] == pids[0] and new_pids[1] not in pids
    # shard 1 ran twice: on the killed worker and on its replacement
    assert sorted(started(tmp_path)) == sorted([pids[0], pids[1], new_pids[1]])
    assert_same_rollouts(rollouts, healthy)
    local = LocalSampler(env).sample(policy, tasks, **kwargs)
    assert_same_rollouts(rollouts, local, extras=False)
    assert np.allclose(rollouts.extras["log_prob"], local.extras["log_prob"], atol=1e-6)


def test_worker_killed_between_calls_is_replaced(workload, sampler, healthy):
    _, policy, tasks, kwargs = workload
    pids, replaced = sampler.worker_pids(), sampler.replacements
    os.kill(pids[0], signal.SIGKILL)
    wait_dead(pids[0])
    assert_same_rollouts(sampler.sample(policy, tasks, **kwargs), healthy)
    assert sampler.replacements == replaced + 1
    new_pids = sampler.worker_pids()
    assert new_pids[0] not in pids and new_pids[1] == pids[1]


def test_killing_every_replacement_ends_in_sampler_error(workload, sampler, healthy,
                                                         tmp_path):
    from metarl.sampling.ray_sampler import SamplerError

    _, policy, tasks, kwargs = workload
    sampler.max_retries = 1
    killer = Killer(tmp_path, None)  # kills every worker that starts sampling
    killer.start()
    try:
        with pytest.raises(SamplerError, match=r"died 2 times in one sample call "
                                               r"\(retries exhausted, max_retries=1\)") as err:
            sampler.sample(FlaggingPolicy(policy, tmp_path, delay=0.02), tasks, **kwargs)
    finally:
        killer.stop.set()
        killer.join()
    assert len(str(err.value).splitlines()) == 1
    assert "ActorDiedError" in str(err.value)
    assert 2 <= len(killer.killed) <= 4  # at most 2 attempts for each of 2 shards
    # the sampler is still usable: the dead workers are replaced on the next call
    assert_same_rollouts(sampler.sample(policy, tasks, **kwargs), healthy)


def test_worker_that_always_dies_gives_up_within_the_retry_bound(workload, sampler, healthy,
                                                                 tmp_path):
    from metarl.sampling.ray_sampler import SamplerError

    _, policy, tasks, kwargs = workload
    assert sampler.max_retries == 3  # the default: 3 re-runs per shard and call
    sampler.max_retries = 2  # (each re-run starts a new process: keep the test short)
    replaced = sampler.replacements
    tick = time.time()
    with pytest.raises(SamplerError, match="worker 0 \\(tasks 3-3\\) died 3 times in one "
                                           "sample call"):
        # one task: one shard, on worker 0
        sampler.sample(DyingPolicy(policy, tmp_path), tasks[:1], **kwargs)
    assert time.time() - tick < 120
    assert len(started(tmp_path)) == 3  # the first run and 2 re-runs, each on a new process
    assert sampler.replacements == replaced + 2
    assert_same_rollouts(sampler.sample(policy, tasks, **kwargs), healthy)


def test_errors_in_the_sampling_code_are_not_retried(workload, sampler):
    _, _, tasks, kwargs = workload
    replaced = sampler.replacements
    with pytest.raises(ValueError, match="a bug in the policy"):
        sampler.sample(RaisingPolicy(), tasks, **kwargs)
    assert sampler.replacements == replaced


class DiesFromCall:
    """Delegates to a RaySampler; from call ``first`` on, the policy kills its worker."""

    def __init__(self, sampler, first: int, flags: Path):
        self.sampler, self.first, self.flags, self.calls = sampler, first, flags, 0

    def sample(self, policy, tasks, **kwargs):
        self.calls += 1
        if self.calls >= self.first:
            policy = DyingPolicy(policy, self.flags)
        return self.sampler.sample(policy, tasks, **kwargs)


def test_exhausted_retries_leave_the_last_checkpoint(workload, sampler, tmp_path):
    """The Trainer saves only after an iteration succeeded: when sampling gives up in
    iteration 2, checkpoint 2 is the last, progress.csv has 2 rows, and the run resumes
    from there to the rows of a run that never failed."""
    from metarl import runs
    from metarl.sampling.ray_sampler import SamplerError
    from metarl.training import latest_checkpoint

    values = {"agent": "rl2", "env": "tabular-mdp", "env.horizon": 10, "iterations": 4,
              "seed": 3, "tasks_per_iteration": 4, "episodes_per_trial": 2, "hidden_size": 8,
              "checkpoint_every": 1, "eval_tasks": 2, "threads": 1}
    config, env = runs.build_run_config(values)
    assert env.init_kwargs == workload[0].init_kwargs  # what the shared workers run
    sampler.max_retries = 0
    failing = runs.make_trainer(tmp_path / "failed", config, env,
                                DiesFromCall(sampler, 3, tmp_path))
    with pytest.raises(SamplerError, match="died once in one sample call"):
        failing.train(progress=False)
    assert latest_checkpoint(tmp_path / "failed").name == "iter_000002.pt"
    assert [r["iteration"] for r in progress_rows(tmp_path / "failed")] == ["0", "1"]
    sampler.max_retries = 3
    resumed = runs.make_trainer(tmp_path / "failed", config, env, sampler)
    assert resumed.resume() == 2
    resumed.train(progress=False)
    runs.make_trainer(tmp_path / "full", config, env, sampler).train(progress=False)
    failed_rows, full_rows = progress_rows(tmp_path / "failed"), progress_rows(tmp_path / "full")
    assert len(failed_rows) == len(full_rows) == 4
    for a, b in zip(failed_rows, full_rows, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {
            k: v for k, v in b.items() if k != "time_s"}


# ------------------------------------------------------------------ as a user
ITERATIONS = 30  # long enough that a worker is found and killed before the run ends
TINY = ["--iterations", str(ITERATIONS), "--seed", "3", "--set", "tasks_per_iteration=4",
        "episodes_per_trial=2", "eval_tasks=2", "hidden_size=8", "threads=1", "eval_every=2"]


def _train(run: Path, kill_after_rows: int | None = None) -> tuple[str, tuple | None]:
    """``metarl train rl2 bandit --sampler ray --workers 2`` in a subprocess (with its own
    local Ray instance); with ``kill_after_rows``, SIGKILL one sampler worker once
    progress.csv has that many rows. Returns the run's stderr and (killed pid, rows then)."""
    cmd = [sys.executable, "-m", "metarl.cli", "train", "rl2", "bandit", "--sampler", "ray",
           "--workers", "2", "--run-dir", str(run), *TINY]
    log = run.with_name(run.name + ".stderr")
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        killed = None
        try:
            if kill_after_rows is not None:
                killed = _kill_a_worker(proc, run, kill_after_rows)
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = log.read_text()
    assert proc.returncode == 0, err
    return err, killed


def _kill_a_worker(proc: subprocess.Popen, run: Path, rows: int) -> tuple[int, int] | None:
    """Once progress.csv has ``rows`` rows, SIGKILL a sampler worker of ``proc``: one
    caught inside ``sample`` if that happens within 0.5 s (the bandit's samples are short),
    else an idle one (the next call finds it dead)."""
    deadline = time.time() + 120
    while len(progress_rows(run)) < rows:
        if proc.poll() is not None or time.time() > deadline:
            return None
        time.sleep(0.01)
    deadline = time.time() + 0.5
    while proc.poll() is None:
        workers = sampler_worker_pids(proc.pid)
        busy = [pid for pid, title in workers.items() if title.endswith(".sample")]
        if busy or (time.time() > deadline and workers):
            victim = (busy or list(workers))[0]
            os.kill(victim, signal.SIGKILL)
            return victim, len(progress_rows(run))
        time.sleep(0.002)
    return None



@pytest.mark.reliability_slow
def test_training_survives_a_killed_worker(tmp_path):
    err, killed = _train(tmp_path / "killed", kill_after_rows=2)
    assert killed is not None, "no Ray SamplerWorker process found to kill"
    assert killed[1] < ITERATIONS, "the run had finished when the worker was killed"
    assert "Ray sampler worker" in err and "replacing it" in err, err
    _train(tmp_path / "healthy")
    killed_rows = progress_rows(tmp_path / "killed")
    healthy_rows = progress_rows(tmp_path / "healthy")
    assert len(killed_rows) == len(healthy_rows) == ITERATIONS
    for a, b in zip(killed_rows, healthy_rows, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {
            k: v for k, v in b.items() if k != "time_s"}
    assert ((tmp_path / "killed" / "eval.json").read_text()
            == (tmp_path / "healthy" / "eval.json").read_text())


def test_a_sampler_that_gives_up_is_one_line_and_exit_4(tmp_path, monkeypatch, capsys):
    """The CLI's side of SamplerError: one line naming the cause, exit 4, the checkpoint of
    the last finished iteration kept (the sampler fails from the third call on)."""
    from metarl.cli import main
    from metarl.sampling.local import LocalSampler
    from metarl.stopping import SamplerError

    sample, calls = LocalSampler.sample, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise SamplerError("Ray sampler worker 1 (tasks 2-3) died 4 times in one sample call")
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(LocalSampler, "sample", failing)
    run = tmp_path / "run"
    code = main(["train", "rl2", "bandit", "--iterations", "5", "--run-dir", str(run), "--set",
                 "tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=2",
                 "hidden_size=8", "checkpoint_every=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert err[-1] == ("metarl: error: Ray sampler worker 1 (tasks 2-3) died 4 times in one "
                       "sample call; the last checkpoint is intact: continue with --resume")
    assert sorted(p.name for p in (run / "checkpoints").glob("iter_*.pt")) == [
        "iter_000001.pt", "iter_000002.pt"]
