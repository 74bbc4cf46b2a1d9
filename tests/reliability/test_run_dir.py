"""Run-directory safety, run as a user would (``metarl train`` in a subprocess, real signals):
one training per run dir (the lock), a fresh start over a run that died before its first
checkpoint, a ``progress.csv`` line torn by ``kill -9``, TensorBoard after a resume, a full
disk while checkpointing, and the progress lines when stderr is not a terminal."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from as_a_user import CLI, finite_weights, messages, progress_rows, without_time

TINY = ["tasks_per_iteration=4", "hidden_size=8", "episodes_per_trial=2", "eval_tasks=2",
        "ppo_epochs=2", "minibatches=2"]
TIMEOUT = 180



def _complete_rows(run: Path) -> int:
    """Rows of ``progress.csv`` ending in a newline (what a running training wrote)."""
    path = run / "progress.csv"
    if not path.exists():
        return 0
    return max(path.read_bytes().count(b"\n") - 1, 0)


def _train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "train", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def _start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + TIMEOUT
    while not condition():
        assert proc.poll() is None, f"the training ended before {what}: {proc.stderr.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)





# ------------------------------------------------------------------------ the lock
def test_a_second_training_on_a_busy_run_dir_exits_2_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    common = ["rl2", "bandit", "--run-dir", str(run), "--set", *TINY]
    first = _start(*common, "checkpoint_every=100000", "--iterations", "100000")
    try:
        _wait_for(lambda: _complete_rows(run) >= 2, first, "two progress rows")
        assert (run / ".lock").read_text().split()[0] == str(first.pid)
        # a fresh start (no checkpoint yet: today's refusal does not apply) and a resume
        second = subprocess.Popen([*CLI, "train", *common, "--iterations", "3"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        third = _train("--resume", "--run-dir", str(run))
        out, err = second.communicate(timeout=TIMEOUT)
        for code, error in ((second.returncode, err), (third.returncode, third.stderr)):
            assert code == 2, error
            assert error.strip().splitlines() == [
                f"metarl: error: run dir {str(run)!r} is in use by another metarl process "
                f"(pid {first.pid}); wait for it to end or stop it first"], error
        assert not out
    finally:
        first.send_signal(signal.SIGTERM)
        _, first_err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 128 + signal.SIGTERM, first_err
    rows = progress_rows(run)  # exactly the first run's rows: nothing moved, mixed or appended
    assert [int(r["iteration"]) for r in rows] == list(range(len(rows)))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"iter_{len(rows):06d}.pt"]
    assert len((run / "segments.jsonl").read_text().splitlines()) == 1
    assert len(list((run / "tb").iterdir())) == 1
    assert not [p for p in run.iterdir() if p.name.startswith("abandoned-")]
    assert (run / ".lock").read_text() == ""  # released; no stale pid


def test_the_lock_is_exclusive_per_run_dir_and_released_after_the_block(tmp_path):
    from metarl.run_lock import RunDirBusy, run_lock

    with run_lock(tmp_path / "a") as path, run_lock(tmp_path / "b"):
        assert path.read_text().split()[0] == str(os.getpid())
        holder = subprocess.run(
            [sys.executable, "-c", "import sys; from metarl.run_lock import run_lock\n"
             f"with run_lock({str(tmp_path / 'a')!r}): pass"],
            capture_output=True, text=True, timeout=TIMEOUT)
        assert holder.returncode != 0 and RunDirBusy.__name__ in holder.stderr
        assert f"(pid {os.getpid()})" in holder.stderr
    with run_lock(tmp_path / "a"):  # released at the end of the block
        pass


# ------------------------------------------------- a run that died before any checkpoint
def test_a_new_training_sets_aside_a_run_killed_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "run"
    common = ["rl2", "bandit", "--run-dir", str(run), "--set", *TINY]
    dead = _start(*common, "checkpoint_every=100000", "--iterations", "100000")
    _wait_for(lambda: _complete_rows(run) >= 3, dead, "three progress rows")
    dead.kill()
    dead.wait(timeout=TIMEOUT)
    dead_rows = progress_rows(run)
    assert not (run / "checkpoints").exists() and len(dead_rows) >= 3

    done = _train(*common, "checkpoint_every=1", "--iterations", "2")
    assert done.returncode == 0, done.stderr
    lines = messages(done.stderr)
    aside = [p for p in run.iterdir() if p.name.startswith("abandoned-")]
    assert len(aside) == 1 and len(lines) == 1, done.stderr
    assert lines[0] == (f"metarl: {str(run)!r} held a run that stopped before its first "
                        f"checkpoint; its files are now in {str(aside[0])!r}")
    # the new run's files hold the new run only; the dead run's are kept aside, whole
    assert [r["iteration"] for r in progress_rows(run)] == ["0", "1"]
    assert len((run / "segments.jsonl").read_text().splitlines()) == 1
    assert len(list((run / "tb").iterdir())) == 1
    assert progress_rows(aside[0])[:len(dead_rows)] == dead_rows
    assert {p.name for p in aside[0].iterdir()} == {"config.yaml", "progress.csv",
                                                     "segments.jsonl", "tb"}
    assert json.loads(done.stdout)["iterations"] == 2


def test_a_run_dir_with_checkpoints_is_still_refused_without_resume(tmp_path):
    from metarl.cli import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".iter_000001.x1y2.pt").write_bytes(b"half a checkpoint")
    (run / "progress.csv").write_text("iteration,env_steps_total\n0,8\n")
    # a temporary file of a checkpoint write cut short is no checkpoint: a fresh start
    assert main(["train", "rl2", "bandit", "--iterations", "1", "--run-dir", str(run),
                 "--set", *TINY]) == 0
    assert not list((run / "checkpoints").glob(".iter_*"))
    assert main(["train", "rl2", "bandit", "--iterations", "1", "--run-dir", str(run),
                 "--set", *TINY]) == 2


# ------------------------------------------------------------ torn progress.csv line
@pytest.mark.reliability_slow
def test_a_progress_line_torn_by_kill_9_is_dropped_on_resume(tmp_path):
    cut, full = tmp_path / "cut", tmp_path / "full"
    common = ["rl2", "bandit", "--set", *TINY, "checkpoint_every=3"]
    proc = _start(*common, "--iterations", "100000", "--run-dir", str(cut))
    _wait_for(lambda: _complete_rows(cut) >= 11, proc, "eleven progress rows")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    data = (cut / "progress.csv").read_bytes()
    done_rows = data.count(b"\n") - 1  # rows 0 .. done_rows - 1 are complete
    checkpoint = max(int(p.stem[5:]) for p in (cut / "checkpoints").glob("iter_*.pt"))
    # what a kill in the middle of a row's write leaves: the row's start, no newline. Cut
    # inside the iteration number ("1" of "13,...") it reads as an earlier iteration. The
    # row is the last one, or (killed right after a checkpoint) the next one.
    last = data[:-1].rfind(b"\n") + 1
    if checkpoint < done_rows:
        torn, done_rows = data[:last + 1], done_rows - 1
    else:
        torn = data + str(done_rows).encode()[:1]
    (cut / "progress.csv").write_bytes(torn)
    assert not torn.endswith(b"\n") and 9 <= checkpoint <= done_rows
    total = str(done_rows + 2)
    resumed = _train("--resume", "--run-dir", str(cut), "--iterations", total)
    assert resumed.returncode == 0, resumed.stderr
    assert messages(resumed.stderr) == [f"resuming {cut} at iteration {checkpoint}"]
    uninterrupted = _train(*common, "--iterations", total, "--run-dir", str(full))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    # no torn, lost or extra row
    assert without_time(progress_rows(cut)) == without_time(progress_rows(full))


@pytest.mark.parametrize("tear", ["half a row", "no newline", "a cr only", "iteration prefix",
                                  "zeros", "header only, torn", "short row inside"])
def test_progress_log_reads_past_a_torn_or_short_line(tmp_path, tear):
    from metarl.training import ProgressLog

    path = tmp_path / "progress.csv"
    header = "iteration,env_steps_total,loss\r\n"
    lines = [f"{i},{8 * (i + 1)},0.{i}5\r\n" for i in range(12)]
    rows = "".join(lines)
    text = {"half a row": header + rows + "12,10",
            "no newline": header + rows + "12,104,0.125",
            "a cr only": header + rows + "12,104,0.125\r",
            "iteration prefix": header + rows + "1",
            "zeros": header + rows + "\0\0\0\0",  # what a power cut may leave
            "header only, torn": "iteration,env_st",
            "short row inside": header + "".join(lines[:3]) + "3,3\r\n" + "".join(lines[3:])
            }[tear]
    path.write_bytes(text.encode())
    log = ProgressLog(path)
    fields, kept = log.read()
    if tear == "header only, torn":
        assert fields is None and kept == []
    else:
        assert fields == ["iteration", "env_steps_total", "loss"]
        assert [int(r["iteration"]) for r in kept] == list(range(12))
    log.truncate_after(9)
    expected = [] if tear == "header only, torn" else list(range(10))
    assert [int(r["iteration"]) for r in ProgressLog(path).read()[1]] == expected
    log.append({"iteration": 10, "env_steps_total": 88, "loss": 0.5})
    again = ProgressLog(path).read()[1]
    assert [int(r["iteration"]) for r in again] == [*expected, 10]


# ----------------------------------------------------------------- TensorBoard resume
def _tb_scalars(tb: Path) -> dict[str, list[int]]:
    """The steps of each scalar tag, as TensorBoard reads the event files of ``tb``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
    run = tmp_path / "run"
    common = ["--set", *TINY, "checkpoint_every=2"]
    done = _train("rl2", "bandit", "--iterations", "3", "--run-dir", str(run), *common)
    assert done.returncode == 0, done.stderr
    # killed after iteration 2 was logged (to TensorBoard too) but before its checkpoint
    (run / "checkpoints" / "iter_000003.pt").unlink()
    resumed = _train("--resume", "--run-dir", str(run), "--iterations", "5")
    assert resumed.returncode == 0, resumed.stderr
    shown = _tb_scalars(run / "tb")
    assert shown["trial_return"] == [0, 1, 2, 3, 4]
    assert all(steps == sorted(set(steps)) for steps in shown.values()), shown


# ----------------------------------------------------------------------- a full disk
_FULL_DISK_AT_SECOND_CHECKPOINT = """
import errno, pathlib, sys
from metarl.cli import main
write_bytes = pathlib.Path.write_bytes
saved = []
def full_disk(self, data):
    if self.suffix == ".pt" and self.parent.name == "checkpoints":
        if saved:  # the first checkpoint is written, the second finds the disk full
            write_bytes(self, data[:len(data) // 2])  # as far as the space went
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(self)
    return write_bytes(self, data)
pathlib.Path.write_bytes = full_disk
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    import metarl

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_AT_SECOND_CHECKPOINT, "train",
                           "rl2", "bandit", "--iterations", "5", "--run-dir", str(run),
                           "--set", *TINY, "checkpoint_every=1"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2, done.stderr
    last, failed = (run / "checkpoints" / "iter_000001.pt", run / "checkpoints" /
                    "iter_000002.pt")
    assert messages(done.stderr) == [
        f"metarl: error: no space left on device writing {str(failed)!r}; the last "
        f"checkpoint {str(last)!r} is intact; free space and continue with --resume"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == [last.name]  # no temp file
    loaded = metarl.load(run)
    assert loaded.iteration == 1 and finite_weights(loaded.agent.state_dict())


def _user_namespaces() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs "
                            "/mnt"], capture_output=True, timeout=30)
    return probe.returncode == 0


_REAL_FULL_DISK = """
set -u
mount -t tmpfs -o size=1m tmpfs "$MNT"
"$PYTHON" -m metarl.cli train rl2 bandit --iterations 100000 --run-dir "$MNT/run" \
    --set $TINY checkpoint_every=1 keep_checkpoints=2 2>"$OUT/err" >/dev/null &
pid=$!
while [ ! -e "$MNT/run/checkpoints/iter_000003.pt" ]; do
    kill -0 $pid 2>/dev/null || break; sleep 0.05
done
dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null
wait $pid
echo $? > "$OUT/rc"
rm -f "$MNT/fill"
cp -a "$MNT/run" "$OUT/run"
"""


@pytest.mark.reliability_slow
def test_a_real_full_disk_is_one_line_and_the_run_resumes(tmp_path):
    """A 1 MB tmpfs (mounted in a user namespace, no root) filled up while training."""
    import metarl

    if not _user_namespaces():
        pytest.skip("no unprivileged user namespaces here (unshare -rm) to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "MNT": str(mnt), "OUT": str(tmp_path), "PYTHON": sys.executable,
           "TINY": " ".join(TINY)}
    subprocess.run(["unshare", "-rm", "sh", "-c", _REAL_FULL_DISK], env=env, check=True,
                   timeout=TIMEOUT)
    err, run = (tmp_path / "err").read_text(), tmp_path / "run"
    assert (tmp_path / "rc").read_text().strip() == "2", err
    lines = messages(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("metarl: error: no space left on device writing ")
    last = max((run / "checkpoints").glob("iter_*.pt"))
    assert f"the last checkpoint {str(mnt / 'run' / 'checkpoints' / last.name)!r} is intact" \
        in lines[0]
    assert not list((run / "checkpoints").glob(".iter_*"))
    loaded = metarl.load(run)
    assert loaded.iteration == int(last.stem[5:]) and finite_weights(loaded.agent.state_dict())
    total = str(loaded.iteration + 1)
    resumed = _train("--resume", "--run-dir", str(run), "--iterations", total)
    assert resumed.returncode == 0, resumed.stderr
    assert [int(r["iteration"]) for r in progress_rows(run)] == list(range(int(total)))


# ------------------------------------------------------------ progress without a terminal
def test_progress_lines_when_stderr_is_a_pipe(tmp_path):
    run = tmp_path / "run"
    done = _train("rl2", "bandit", "--iterations", "3", "--run-dir", str(run), "--set", *TINY,
                  env={**os.environ, "METARL_PROGRESS_INTERVAL": "0"})
    assert done.returncode == 0, done.stderr
    assert "train:" not in done.stderr, done.stderr  # no tqdm bar ("train:  33%|...")
    lines = [line for line in done.stderr.split("\n") if line.startswith("train ")]
    assert len(lines) == 4, done.stderr  # one per iteration and "done" (then the evaluation's)
    for i, line in enumerate(lines, start=1):
        fields = line.split(" | ")
        shown = min(i, 3)
        assert fields[0] == f"train {shown}/3 it ({100 * shown // 3}%)", line
        assert fields[1].startswith("trial_return ") and fields[2].startswith("steps/s ")
        assert fields[3].startswith("elapsed 0:00:")
        assert fields[4].startswith("ETA ") if i < 3 else len(fields) == 4 or fields[4] == "done"
    assert lines[-1].endswith("| done")


def test_progress_prints_first_periodic_and_final_lines(capsys):
    from metarl import training

    clock = [1000.0]
    progress = training._TrainingProgress(total=100, initial=40, env_steps=400, enabled=None,
                                          interval=10.0, clock=lambda: clock[0])
    for done in range(41, 61):
        clock[0] += 1.0
        progress.update(done, {"loss": 0.5, "mean_return": -3.0}, 400 + 10 * (done - 40))
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "train 41/100 it (41%)", "train 51/100 it (51%)", "train 60/100 it (60%)"]
    assert lines[1] == ("train 51/100 it (51%) | mean_return -3 | steps/s 10 | "
                        "elapsed 0:00:11 | ETA 0:00:49")
    assert lines[2].endswith("| done")
    progress.close()  # nothing new: no second final line
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_the_progress_bar(monkeypatch):
    from metarl import training

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = training._TrainingProgress(10, 0, 0)
    try:
        assert bar.progress.is_bar
    finally:
        bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not training._TrainingProgress(10, 0, 0).progress.is_bar
    assert not training._TrainingProgress(10, 0, 0, enabled=False).progress.enabled
