"""`metarl render` / `metarl plot`: frames through the sampler, GIFs, PNGs, one-line errors."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from PIL import Image

from metarl import render
from metarl.cli import main
from metarl.envs import make
from metarl.plot import build_figure, group_runs, read_run
from metarl.policy import StatelessPolicy
from metarl.render import Layout, TrialRecorder, legend_lines, task_label
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
    assert task_label(tasks[0]) == "task 0: goal (0.50, -0.25)"  # env "x": generic wording


def _step(rewards, valid, episode=0):
    n = len(rewards)
    return Transition(np.zeros((n, 1)), np.zeros(n), np.asarray(rewards, dtype=float),
                      np.zeros((n, 1)), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                      np.asarray(valid, dtype=bool), step=0, episode=episode)


def test_legend_counts_episodes_steps_and_returns_so_far():
    tasks = [Task("point-nav", {"goal": [0.5, -0.25]}, id=7)]
    out = []
    recorder = TrialRecorder(tasks, episodes=2, horizon=3, sink=out.append)
    venv = _Venv([_Env(10)])
    legends = []
    recorder.on_reset(0, venv)
    legends.append(recorder.captions(0))
    for reward in [1.0, 0.0, 2.0]:  # a hand episode: returns so far 1, 1, 3
        recorder.on_step(_step([reward], [True]), venv)
        legends.append(recorder.captions(0))
    recorder.on_reset(1, venv)  # the trial's return carries over, the episode's restarts
    legends.append(recorder.captions(0))
    recorder.on_step(_step([5.0], [True], episode=1), venv)
    legends.append(recorder.captions(0))
    assert [legend[0] for legend in legends] == ["task 7: goal (0.50, -0.25)"] * 6
    assert [legend[1:] for legend in legends] == [
        ["trial 1/1 · episode 1/2 · step 0/3", "return: episode 0.00 · trial 0.00"],
        ["trial 1/1 · episode 1/2 · step 1/3", "return: episode 1.00 · trial 1.00"],
        ["trial 1/1 · episode 1/2 · step 2/3", "return: episode 1.00 · trial 1.00"],
        ["trial 1/1 · episode 1/2 · step 3/3", "return: episode 3.00 · trial 3.00"],
        ["trial 1/1 · episode 2/2 · step 0/3", "return: episode 0.00 · trial 3.00"],
        ["trial 1/1 · episode 2/2 · step 1/3", "return: episode 5.00 · trial 8.00"]]
    assert len(out) == 6  # a frame per reset and per step
    # one-step episodes (bandits): no step counter
    assert legend_lines(trial=2, trials=3, episode=4, episodes=10, step=1, horizon=1,
                        episode_return=1.0, trial_return=-2.5) == [
        "trial 2/3 · episode 4/10", "return: episode 1.00 · trial -2.50"]
    # DREAM's reward-free exploration episodes are named as such
    assert legend_lines(trial=1, trials=1, episode=1, episodes=2, step=3, horizon=20,
                        episode_return=0.0, trial_return=0.0, exploring=True) == [
        "trial 1/1 · episode 1/2 · step 3/20", "exploration episode: no reward"]


def _line_rows(layout, line):
    """The composite frame's pixel rows of caption line ``line`` of the first tile row."""
    top = render.GAP + render.TEXT_Y + line * layout.line_height
    return slice(top, top + layout.line_height)


def test_frames_change_exactly_where_the_legend_changes():
    tasks = [Task("point-nav", {"goal": [0.5, -0.25]}, id=0),
             Task("point-nav", {"goal": [0.1, 0.2]}, id=1)]
    out = []
    recorder = TrialRecorder(tasks, episodes=1, horizon=5, sink=out.append)
    venv = _Venv([_Env(10), _Env(200)])
    recorder.on_reset(0, venv)
    recorder.on_step(_step([1.0, 0.0], [True, True]), venv)   # frame 1
    recorder.on_step(_step([0.0, 0.0], [True, True]), venv)   # frame 2: steps change only
    venv.envs[1].alive = False
    recorder.on_step(_step([2.0, 0.0], [True, False]), venv)  # frame 3: env 1 has ended
    venv.envs[0].alive = False
    recorder.on_step(_step([0.0, 0.0], [False, False]), venv)  # frame 4: nothing runs
    layout = recorder.layout
    assert layout.header_lines == 3
    th, tw = layout.tile_shape
    gap = render.GAP
    left, right = slice(gap, gap + tw), slice(2 * gap + tw, 2 * gap + 2 * tw)
    header = slice(0, gap + layout.header_height)
    below = slice(gap + layout.header_height, None)

    def changed(a, b, rows, cols):
        return not np.array_equal(out[a][rows, cols], out[b][rows, cols])

    for a, b in [(0, 1), (1, 2), (2, 3), (3, 4)]:  # the env frames do not change
        assert not changed(a, b, below, slice(None))
    # the task line never changes; the step line changes with every step of a live env,
    # the return line only with a non-zero reward
    task, where, ret = (_line_rows(layout, k) for k in range(3))
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 4)]:
        assert not changed(a, b, task, slice(None))
    assert changed(0, 1, where, left) and changed(0, 1, ret, left)
    assert changed(0, 1, where, right) and not changed(0, 1, ret, right)
    assert changed(1, 2, where, left) and not changed(1, 2, ret, left)
    assert changed(2, 3, where, left) and changed(2, 3, ret, left)
    assert not changed(2, 3, header, right)  # env 1's episode ended: its legend holds
    assert np.array_equal(out[3], out[4])  # no env stepped: the same frame
    assert changed(0, 1, header, left) and (out[1][header, left] != 255).any()


@pytest.mark.parametrize("name", [*sorted(NUMPY_ENVS), "cheetah-vel", "cheetah-dir",
                                  "cheetah-crippled", "ant-dir", "ant-goal",
                                  "ant-broken-leg"])
def test_task_labels_describe_the_task(name):
    if name not in NUMPY_ENVS:
        pytest.importorskip("mujoco")
    env = make(name, **NUMPY_ENVS.get(name, {}))
    task = env.split_tasks("test", 1)[0]
    label = task_label(task)
    expected = {
        "bandit": lambda p: "task 0: means " + " ".join(f"{m:.2f}" for m in p["means"]),
        "tabular-mdp": lambda p: "task 0: 10 states x 5 actions, reward means {:.2f} to {:.2f}"
        .format(np.min(p["reward_means"]), np.max(p["reward_means"])),
        "maze": lambda p: "task 0: goal (row {}, col {})".format(*p["goal"]),
        "maze-sign": lambda p: "task 0: goal (row {}, col {}), sign (row {}, col {})".format(
            *p["goal"], *p["sign"]),
        "point-nav": lambda p: "task 0: goal ({:.2f}, {:.2f})".format(*p["goal"]),
        "cheetah-vel": lambda p: f"task 0: target velocity {p['velocity']:.2f}",
        "cheetah-dir": lambda p: "task 0: run " + ("forward (+x)" if p["direction"] > 0
                                                   else "backward (-x)"),
        "cheetah-crippled": lambda p: f"task 0: joint {p['joint']} disabled",
        "ant-dir": lambda p: "task 0: direction ({:.0f}, {:.0f})".format(*p["direction"]),
        "ant-goal": lambda p: "task 0: goal ({:.2f}, {:.2f})".format(*p["goal"]),
        "ant-broken-leg": lambda p: f"task 0: leg {p['leg']} disabled",
    }[name](task.params)
    assert label == expected


def _captioned(tasks, frames, horizon=10):
    out = []
    recorder = TrialRecorder(tasks, episodes=10, horizon=horizon, sink=out.append)
    recorder.on_reset(0, _Venv([_Frame(f) for f in frames]))
    recorder.on_step(_step([-1234.5] * len(tasks), [True] * len(tasks)),
                     _Venv([_Frame(f) for f in frames]))
    return recorder, out


class _Frame:
    def __init__(self, frame):
        self.frame = frame

    def render(self):
        return self.frame


@pytest.mark.parametrize("name", ["tabular-mdp", "bandit", "maze-sign", "point-nav", "wide",
                                  "ant-goal"])
def test_captions_fit_the_tile(name):
    """Every caption line lies inside its tile and band (PIL's text bbox at the drawn
    position), none is cut, and the task's description is all there (wrapped)."""
    from PIL import ImageDraw

    if name == "wide":  # a task of many parameters on a narrow frame, generic wording
        tasks = [Task("custom", {f"parameter_{k}": k * 0.125 for k in range(12)}, id=3)]
        frames = [np.zeros((30, 20, 3), dtype=np.uint8)]
    elif name == "ant-goal":  # MuJoCo frames are 480x480 (not rendered here: no GL needed)
        pytest.importorskip("mujoco")
        tasks = make(name).split_tasks("test", 3)
        frames = [np.zeros((480, 480, 3), dtype=np.uint8)] * 3
    else:
        env = make(name, render_mode="rgb_array", **NUMPY_ENVS[name])
        tasks = env.split_tasks("test", 2)
        frames = []
        for task in tasks:
            env.set_task(task)
            env.reset(seed=0)
            frames.append(env.render())
    recorder, out = _captioned(tasks, frames)
    layout = recorder.layout
    th, tw = layout.tile_shape
    draw = ImageDraw.Draw(Image.new("RGB", (tw, th)))
    for i, task in enumerate(tasks):
        lines = recorder.captions(i)
        assert len(lines) == layout.header_lines
        for k, line in enumerate(lines):
            xy = (render.TEXT_X, render.TEXT_Y + k * layout.line_height)
            left, top, right, bottom = draw.textbbox(xy, line, font=recorder.font)
            assert 0 <= left and right <= tw - 1, (line, right, tw)
            assert 0 <= top and bottom <= layout.header_height, (line, bottom)
            assert "…" not in line
        task_lines = [line for line in lines[:-2] if line]
        assert " ".join(task_lines) == task_label(task)
    if name in ("tabular-mdp", "wide"):  # these descriptions are wider than the tile
        assert render.text_right(task_label(tasks[0]), recorder.font) > tw
        assert layout.header_lines > 3
    if name == "ant-goal":  # wide tiles get a larger font
        assert recorder.font.size > render.FONT_SIZE
        assert layout.line_height > render.LINE_HEIGHT
    assert out[-1].shape == (*layout.shape, 3)


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


def test_runs_logging_different_columns_share_the_axes(runs, tmp_path):
    """As the SB3 agents' train_return beside rl2's trial_return: each run draws the
    columns it logs; a column no run logs is still the one-line error."""
    import shutil

    from metarl.plot import PlotError, plot_runs

    other = tmp_path / "other"
    shutil.copytree(runs[0], other)
    config = other / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.002"))
    progress = other / "progress.csv"
    progress.write_text(progress.read_text().replace("trial_return", "train_return", 1))
    result = plot_runs([runs[0], other], tmp_path / "mixed.png", x="env_steps_total",
                       y=["trial_return", "train_return"])
    first, second = (group["label"] for group in result["groups"])
    assert result["lines"] == [f"{first}: trial_return", f"{second}: train_return"]
    with pytest.raises(PlotError, match="column 'nope' is not in"):
        plot_runs([runs[0], other], tmp_path / "bad.png", y=["trial_return", "nope"])


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


def _hand_run(path, seed, returns, config=None, adaptation=None):
    """A run directory with a hand-written progress.csv (and eval.json)."""
    import json

    path.mkdir(parents=True)
    (path / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in
                                              {"agent": "rl2", "env": "bandit", "seed": seed,
                                               **(config or {})}.items()))
    rows = "".join(f"{i},{r}\n" for i, r in enumerate(returns))
    (path / "progress.csv").write_text("iteration,trial_return\n" + rows)
    if adaptation is not None:
        (path / "eval.json").write_text(json.dumps({"returns_per_episode": adaptation}))
    return path


def _legend(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_single_episode_evaluations_draw_no_adaptation_panel(tmp_path):
    """A one-episode evaluation (the model-based agents') is a point, not a curve."""
    run = _hand_run(tmp_path / "grbal", 0, [1.0, 2.0], adaptation=[3.0])
    fig, _ = build_figure([run])
    assert len(fig.axes) == 1
    fig, _ = build_figure([run, _hand_run(tmp_path / "rl2", 0, [1.0], {"lr": 0.1},
                                          adaptation=[0.1, 0.5])])
    assert len(fig.axes) == 2


def test_plot_of_one_seed_says_so_and_draws_no_band(tmp_path):
    run = _hand_run(tmp_path / "rl2-bandit", 0, [1.0, 2.0, 4.0], adaptation=[0.1, 0.5])
    fig, groups = build_figure([run])
    learning, adaptation = fig.axes
    assert learning.get_title() == "learning curve (1 seed)"
    assert adaptation.get_title() == "adaptation curve (eval.json, 1 seed)"
    assert _legend(learning) == ["rl2-bandit (1 seed)"]
    assert not learning.collections and not adaptation.collections  # no band
    assert "min-max" not in learning.get_title() + adaptation.get_title()
    # two configs of one seed each: still no band, and the title says it per line
    other = _hand_run(tmp_path / "rl2-bandit-lr", 0, [0.0, 1.0, 1.0], {"lr": 0.1})
    fig, groups = build_figure([run, other])
    assert len(groups) == 2 and fig.axes[0].get_title() == "learning curve (1 seed each)"
    assert _legend(fig.axes[0]) == ["rl2-bandit (1 seed)", "rl2-bandit-lr (1 seed)"]
    assert not fig.axes[0].collections


def test_plot_of_several_seeds_draws_a_min_max_band(tmp_path):
    runs = [_hand_run(tmp_path / f"rl2-bandit-seed{s}", s, returns, adaptation=adapt)
            for s, returns, adapt in [(0, [1.0, 2.0, 4.0], [0.1, 0.5]),
                                      (1, [3.0, 2.0, 6.0], [0.3, 0.7])]]
    fig, groups = build_figure(runs)
    learning, adaptation = fig.axes
    assert len(groups) == 1
    assert learning.get_title() == "learning curve (mean over seeds, band: min-max)"
    assert adaptation.get_title() == ("adaptation curve (eval.json, mean over seeds, "
                                      "band: min-max)")
    assert _legend(learning) == ["rl2-bandit (2 seeds)"]
    assert np.allclose(learning.lines[0].get_ydata(), [2.0, 2.0, 5.0])  # the mean
    (band,) = learning.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == 1.0 and ys.max() == 6.0  # min and max over the seeds
    assert len(adaptation.collections) == 1
    # a single-seed group next to a two-seed one: the band is only where there are 2+
    single = _hand_run(tmp_path / "rl2-bandit-lr", 0, [0.0, 1.0, 1.0], {"lr": 0.1})
    fig, _ = build_figure([*runs, single])
    assert fig.axes[0].get_title() == ("learning curve (mean over seeds, band: min-max where "
                                       "2+ seeds)")
    assert _legend(fig.axes[0]) == ["rl2-bandit (2 seeds)", "rl2-bandit-lr (1 seed)"]
    assert len(fig.axes[0].collections) == 1
