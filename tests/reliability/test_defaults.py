"""Defaults a user meets without asking: the trainer's thread count is the one the docs state,
and long steps report progress on stderr (a bar on a terminal, a plain line every ~10 s in a
log) without changing any result."""

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from metarl import runs
from metarl.cli import main
from metarl.config import TrainerConfig
from metarl.evaluation import EvalRequest
from metarl.progress import Progress, reports_steps, sampler_with_progress
from metarl.sampling import LocalSampler

ROOT = Path(__file__).resolve().parents[2]
TINY = {"rl2-bandit": ["rl2", "bandit", "--set", "tasks_per_iteration=4",
                       "episodes_per_trial=3", "hidden_size=8", "eval_tasks=3"],
        "maml-point-nav": ["maml-trpo", "point-nav", "--set", "meta_batch=2",
                           "rollouts_per_task=2", "env.horizon=10", "eval_tasks=3"]}


# ----------------------------------------------------------------------------- threads
def documented_threads_default() -> int:
    """The default of ``threads`` in docs/training.md's list of trainer keys, checked
    against its "Threads and devices" paragraph."""
    text = (ROOT / "docs" / "training.md").read_text()
    listed = re.search(r"`threads` \((\d+)", text)
    assert listed, "docs/training.md lists the trainer key `threads` with its default"
    section = text.split("## Threads and devices", 1)[1].split("\n## ", 1)[0]
    stated = re.search(r"default(?: is)? (\d+)", section)
    assert stated, "the Threads paragraph states the default"
    assert stated.group(1) == listed.group(1)
    return int(listed.group(1))


def test_default_threads_is_what_the_docs_say():
    assert TrainerConfig().threads == documented_threads_default()
    readme = (ROOT / "README.md").read_text()
    for match in re.finditer(r"threads[^.\n]*?default[^.\n]*?(\d+)", readme):
        assert int(match.group(1)) == TrainerConfig().threads, match.group(0)


def test_a_run_records_the_default_threads_and_reports_its_final_evaluation(run_metarl,
                                                                            tmp_path):
    """``metarl train`` without ``threads`` uses the default; off a terminal its final
    evaluation prints plain progress lines (every METARL_PROGRESS_INTERVAL seconds, 0 here:
    every step), not a bar."""
    run = tmp_path / "run"
    done = run_metarl("train", *TINY["rl2-bandit"], "--iterations", "1", "--run-dir", str(run),
                      env={"METARL_PROGRESS_INTERVAL": "0"})
    assert done.returncode == 0, done.stderr
    config = (run / "config.yaml").read_text()
    assert re.search(r"^threads: (\d+)$", config, re.M).group(1) == str(TrainerConfig().threads)
    lines = [line for line in done.stderr.splitlines() if line.startswith("final evaluation")]
    assert lines and lines[-1].startswith("final evaluation 3/3 steps (100%) | elapsed ")
    assert lines[-1].endswith(" | done") and "\r" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["iterations"] == 1


# ----------------------------------------------------------------------------- progress
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_is_a_plain_line_every_10_seconds():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(total=100, desc="final evaluation", unit="steps", stream=stream,
                  clock=clock) as bar:
        assert not bar.is_bar
        for _ in range(100):
            clock.now += 0.25  # 25 s in all
            bar.update()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "final evaluation 40/100 steps (40%) | elapsed 0:00:10 | ETA 0:00:15",
        "final evaluation 80/100 steps (80%) | elapsed 0:00:20 | ETA 0:00:05",
        "final evaluation 100/100 steps (100%) | elapsed 0:00:25 | done"]
    assert "\r" not in stream.getvalue()


def test_progress_shorter_than_the_interval_or_disabled_prints_nothing():
    for enabled, seconds in ((None, 9.0), (False, 100.0)):
        stream, clock = io.StringIO(), FakeClock()
        with Progress(total=10, stream=stream, clock=clock, enabled=enabled) as bar:
            for _ in range(10):
                clock.now += seconds / 10
                bar.update()
        assert stream.getvalue() == ""


def test_progress_on_a_terminal_is_a_tqdm_bar():
    stream = Terminal()
    with Progress(total=5, desc="render", unit="steps", stream=stream) as bar:
        assert bar.is_bar
        bar.update(5)
    assert "render" in stream.getvalue() and "5/5" in stream.getvalue()
    assert "\r" in stream.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny runs of an RL² and a MAML-TRPO agent (one iteration each)."""
    out = {}
    for name, args in TINY.items():
        run = tmp_path_factory.mktemp("runs") / name
        assert main(["train", args[0], args[1], "--iterations", "1", "--run-dir", str(run),
                     *args[2:]]) == 0
        out[name] = run
    return out


@pytest.mark.parametrize("name", list(TINY))
def test_evaluation_results_are_unchanged_by_progress_reporting(trained, name):
    loaded = runs.load(trained[name])
    request = EvalRequest(num_tasks=3, seed=7)
    plain = loaded.agent.evaluate(loaded.env, LocalSampler(loaded.env), request)
    stream = io.StringIO()
    bar = Progress(desc="eval", unit="steps", stream=stream, interval=0.0)  # a line a step
    assert not bar.is_bar
    sampler = LocalSampler(loaded.env)
    assert reports_steps(sampler)
    reported = loaded.agent.evaluate(loaded.env, sampler_with_progress(sampler, bar), request)
    bar.close()
    assert json.dumps(reported) == json.dumps(plain)  # every figure, bit for bit
    lines = stream.getvalue().splitlines()
    steps = plain["episodes"] * loaded.env.max_episode_steps
    assert len(lines) >= 2 and lines[-1].startswith(f"eval {steps}/{steps} steps (100%)")


@pytest.mark.parametrize("name", list(TINY))
def test_final_evaluation_is_the_same_with_and_without_progress(trained, name, tmp_path):
    loaded = runs.load(trained[name])
    written = []
    for progress in (False, True):
        run_dir = tmp_path / str(progress)
        run_dir.mkdir()
        trainer = SimpleNamespace(config=loaded.config, agent=loaded.agent, env=loaded.env,
                                  eval_sampler=LocalSampler(loaded.env), run_dir=run_dir)
        summary = runs.final_evaluation(trainer, progress=progress)
        written.append(((run_dir / "eval.json").read_text(), summary))
    assert written[0] == written[1]


def test_final_evaluation_of_metarl_train_equals_metarl_eval(trained, capsys):
    """``metarl train`` evaluates with progress reporting, ``metarl eval`` without: the same
    tasks and random streams give the same figures."""
    run = trained["maml-point-nav"]
    stored = json.loads((run / "eval.json").read_text())
    assert main(["eval", str(run), "--num-tasks", str(stored["num_tasks"]), "--seed", "0",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {key: again[key] for key in stored} == stored


def test_benchmarks_report_progress(monkeypatch, capsys):
    from metarl.benchmarks import envs

    monkeypatch.setenv("METARL_PROGRESS_INTERVAL", "0")
    result = envs.run(num_envs=4, steps=4, envs=["bandit"], repeats=2)
    assert set(result["envs"]) == {"bandit"}
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("bench envs 1/8 timings (12%) | elapsed ")
    assert lines[-1].startswith("bench envs 8/8 timings (100%)") and lines[-1].endswith("done")
