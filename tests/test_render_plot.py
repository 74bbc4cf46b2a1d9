"""`metarl render` / `metarl plot`: frames through the sampler, GIFs, PNGs, one-line errors."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from PIL import Image

from metarl.cli import main
from metarl.envs import make
from metarl.plot import group_runs, read_run
from metarl.policy import StatelessPolicy
from metarl.render import Layout, TrialRecorder, task_label
from metarl.sampling import LocalSampler
from metarl.types import Task, Transition

NUMPY_ENVS = {"bandit": {}, "tabular-mdp": {}, "maze": {}, "maze-sign": {},
              "point-nav": {"horizon": 20}}
TINY = ["--set", "tasks_per_iteration=2", "hidden_size=8", "episodes_per_trial=2",
        "eval_tasks=2", "minibatches=1", "env.horizon=10"]


class RandomPolicy(StatelessPolicy):
    def __init__(self, space):
        self.space = space

    def act(self, obs, rng):
        b = obs.shape[0]
        if isinstance(self.space, spaces.Discrete):
            return torch.as_tensor(rng.integers(self.space.n, size=b)), rng, {}
        return torch.as_tensor(rng.uniform(-0.1, 0.1, size=(b, 2)), dtype=torch.float32), rng, {}


def _frames(name, episodes=2):
    """Raw env frames of 2 tasks grabbed through the sampler's callbacks."""
    env = make(name, **NUMPY_ENVS[name])
    frames, calls = [], []

    def on_reset(episode, venv):
        calls.append(("reset", episode))
        frames.append([e.render() for e in venv.envs])

    def on_step(step, venv):
        calls.append(("step", step.episode))
        frames.append([e.render() for e, ok in zip(venv.envs, step.valid, strict=True) if ok])

    tasks = env.split_tasks("test", 2)
    rollouts = LocalSampler(env, render=True).sample(
        RandomPolicy(env.action_space), tasks, episodes=episodes, seed=3, on_reset=on_reset,
        on_step=on_step)
    return env, tasks, rollouts, [f for group in frames for f in group], calls


@pytest.mark.parametrize("name", sorted(NUMPY_ENVS))
def test_frames_of_every_numpy_env_are_drawn_and_change(name):
    env, tasks, rollouts, frames, calls = _frames(name)
    assert [c for c in calls if c[0] == "reset"] == [("reset", 0), ("reset", 1)]
    steps_run = rollouts.valid.any(axis=(0, 1)).sum()  # lockstep steps with a live env
    assert len(calls) == 2 + steps_run
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert (frame != frame[0, 0]).any()  # not a single colour
    assert len({f.tobytes() for f in frames}) > 1  # the picture changes over time
    if name in ("maze", "maze-sign", "point-nav"):
        # deterministic dynamics: rendering single envs gives the native vector env's
        # rollouts (stochastic single envs draw from other streams than their vector envs)
        plain = LocalSampler(env).sample(RandomPolicy(env.action_space), tasks, episodes=2,
                                         seed=3)
        assert np.array_equal(plain.rewards, rollouts.rewards)
        assert np.array_equal(plain.observations, rollouts.observations)


class _Env:
    def __init__(self, color, alive=True):
        self.color, self.alive = color, alive

    def render(self):
        if not self.alive:
            raise AssertionError("rendered an environment whose episode had ended")
        return np.full((8, 8, 3), self.color, dtype=np.uint8)


class _Venv:
    def __init__(self, envs):
        self.envs = envs


def test_recorder_holds_the_last_frame_of_finished_episodes():
    tasks = [Task("x", {"goal": [0.5, -0.25]}, id=0), Task("x", {"goal": [1, 2]}, id=1)]
    out = []
    recorder = TrialRecorder(tasks, episodes=1, horizon=5, sink=out.append)
    envs = [_Env(10), _Env(200)]
    recorder.on_reset(0, _Venv(envs))
    envs[1].alive = False
    envs[0].color = 90
    step = Transition(np.zeros((2, 1)), np.zeros(2), np.array([1.0, 7.0]), np.zeros((2, 1)),
                      np.array([False, False]), np.array([False, False]),
                      np.array([True, False]), step=0, episode=0)
    recorder.on_step(step, _Venv(envs))
    assert len(out) == 2 and out[0].shape == out[1].shape == (*recorder.layout.shape, 3)
    assert recorder.frames[0][0, 0, 0] == 90 and recorder.frames[1][0, 0, 0] == 200
    assert list(recorder.trial_return) == [1.0, 0.0] and list(recorder.steps) == [1, 0]
    assert task_label(tasks[0]) == "task 0 goal=(0.50 -0.25)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = [root / "rl2-pn-seed0", root / "rl2-pn-seed1"]
    for seed, run in enumerate(dirs):
        argv = ["train", "rl2", "point-nav", "--iterations", "1", "--seed", str(seed),
                "--run-dir", str(run), *TINY]
        assert main(argv) == 0
    return dirs


def test_render_cli_writes_a_gif(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "trial.gif"
    assert main(["render", str(runs[0]), "--out", str(out), "--tasks", "1", "--episodes",
                 "2"]) == 0
    assert "wrote" in capsys.readouterr().err
    with Image.open(out) as gif:
        assert gif.n_frames == 2 * (10 + 1)  # a reset frame + 10 steps per episode
        assert gif.size[::-1] == Layout((240, 240), 1, 1).shape
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
    assert len(np.unique(last.reshape(-1, 3), axis=0)) > 3
    assert [p.name for p in out.parent.iterdir()] == ["trial.gif"]  # no temp files left


def test_render_mp4_or_clear_error(runs, tmp_path, capsys):
    out = tmp_path / "trial.mp4"
    code = main(["render", str(runs[0]), "--out", str(out), "--tasks", "2", "--episodes", "1"])
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert code == 2 and not out.exists()
        assert "mp4 needs imageio-ffmpeg: pip install imageio-ffmpeg" in capsys.readouterr().err
    else:
        assert code == 0 and out.stat().st_size > 0


def test_plot_cli_groups_seeds_and_writes_a_png(runs, tmp_path):
    assert len(group_runs([read_run(r) for r in runs])) == 1
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs), "--out", str(out), "--x", "env_steps_total"]) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1] > 100  # two panels


def test_plot_draws_several_columns_and_reference_lines(runs, tmp_path):
    from metarl.plot import plot_runs

    out = tmp_path / "two.png"
    result = plot_runs(runs[:1], out, x="env_steps_total", y=["trial_return", "iteration"],
                       references=["MAML-TRPO (published)=-139", "2.5"])
    label = result["groups"][0]["label"]
    assert result["lines"] == [f"{label}: trial_return", f"{label}: iteration",
                               "MAML-TRPO (published)", "2.5"]
    with Image.open(out) as png:
        assert png.format == "PNG"


@pytest.mark.parametrize("argv, needle", [
    (["render", "{run}", "--out", "x.avi"], "valid extensions: .gif, .mp4"),
    (["render", "{run}", "--out", "x.gif", "--tasks", "0"], "--tasks must be >= 1"),
    (["render", "/no/such/run", "--out", "x.gif"], "run dir '/no/such/run' does not exist"),
    (["plot", "{run}", "--out", "x.jpg"], "valid extensions: .png"),
    (["plot", "{run}", "--out", "x.png", "--y", "nope"], "column 'nope' is not in"),
    (["plot", "{run}", "--out", "x.png", "--ref", "MAML=high"], "--ref 'MAML=high' is not"),
    (["plot", "/no/such/run", "--out", "x.png"], "run dir '/no/such/run' does not exist"),
    (["plot", "{tmp}", "--out", "x.png"], "has no progress.csv"),
])
def test_bad_input_is_one_line_and_exit_code_2(runs, tmp_path, monkeypatch, capsys, argv,
                                               needle):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(run=runs[0], tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("x.*"))
