"""Animations of a trained agent adapting on held-out tasks (``metarl render``).

::

    loaded = runs.load(run_dir)
    tasks = env.split_tasks(split, n, seed)                 # the tasks `metarl eval` uses
    LocalSampler(env, render=True).sample(policy, tasks, episodes=K,
                                          on_reset=recorder.on_reset, on_step=recorder.on_step)
    # the recorder grabs venv.envs[i].render() of every running environment, writes a
    # legend above each frame (the task's parameters, trial i/N, episode k/K, step t/T,
    # the return so far in the episode and in the trial; see task_label, legend_lines),
    # tiles the tasks side by side and streams the composite frames to a GIF/MP4
    # written atomically.

Frames come from each env's ``render()`` (``render_mode="rgb_array"``), so any env that
supports it (numpy or MuJoCo) can be rendered. An environment whose episode already ended
holds its last frame until the next episode starts.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl.checkpoints import atomic_path
from metarl.envs_api import MetaEnv, VectorMetaEnv
from metarl.policy import Policy
from metarl.types import Task, Transition

FORMATS = {".gif": "gif", ".mp4": "mp4"}
MIN_TILE_WIDTH = 240  # narrower frames are padded so that the captions fit
HEADER_LINES = 3  # task, where in the trial, returns (more when the task's text wraps)
FONT_SIZE = 12  # on tiles up to FONT_SCALE_WIDTH wide; larger on wider ones (MuJoCo's 480)
LINE_HEIGHT = 15
FONT_SCALE_WIDTH = 360
TEXT_X, TEXT_Y = 4, 2  # margins of the caption text in its band
GAP = 4
BACKGROUND = (255, 255, 255)
GRID_COLOR = (150, 150, 150)
TEXT_COLOR = (20, 20, 20)

FrameSink = Callable[[np.ndarray], None]


class RenderError(ValueError):
    """Bad render request (output format, missing encoder, env without frames)."""


# ------------------------------------------------------------------------------ output
def output_format(path: str | Path) -> str:
    """``"gif"`` or ``"mp4"`` from the file name; checks that the encoder is installed."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise RenderError(f"--out {str(path)!r} has an unsupported extension; "
                          f"valid extensions: {', '.join(FORMATS)}")
    if FORMATS[suffix] == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise RenderError("mp4 needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    return FORMATS[suffix]


@contextlib.contextmanager
def frame_writer(path: Path, fmt: str, fps: float) -> Iterator[FrameSink]:
    """A function that appends one RGB frame to the animation at ``path``.

    GIF frames are quantised to a 256-colour palette as they arrive (pillow keeps every
    frame in memory until the file is closed); MP4 frames stream to ffmpeg."""
    import imageio.v3 as iio

    if fmt == "gif":
        with iio.imopen(path, "w", plugin="pillow", extension=".gif") as file:
            yield lambda frame: file.write(frame, duration=1000.0 / fps, loop=0, bits=8)
        return
    import imageio.v2 as imageio

    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                macro_block_size=1)
    try:
        yield lambda frame: writer.append_data(pad_to_multiple(frame, 16))
    finally:
        writer.close()


def pad_to_multiple(frame: np.ndarray, multiple: int) -> np.ndarray:
    """Pad ``frame`` with background at the bottom/right to sides divisible by ``multiple``
    (video codecs want even sizes, ideally multiples of 16)."""
    h, w = frame.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == pw == 0:
        return frame
    return np.pad(frame, ((0, ph), (0, pw), (0, 0)), constant_values=255)


# ------------------------------------------------------------------------------ captions
def task_label(task: Task, max_values: int = 6) -> str:
    """``"task ID: DESCRIPTION"``: the task's parameters in a few words (e.g. ``"task 0:
    goal (0.50, -0.25)"``); the known environments have their own wording, any other task
    lists small parameters by value and large ones by shape."""
    describe = TASK_DESCRIPTIONS.get(task.env)
    if describe is not None:
        try:
            return f"task {task.id}: {describe(task.params)}"
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # a hand-made task with other params: the generic wording
    return f"task {task.id}: {_describe_params(task.params, max_values)}"


def _describe_params(params: Mapping[str, Any], max_values: int = 6) -> str:
    values, shapes = [], []
    for key, value in params.items():
        name = key.replace("_", " ")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            values.append(f"{name} {str(value)[:16]}")
        elif array.size > max_values:
            shapes.append(f"{name} [{'x'.join(map(str, array.shape))}]")
        else:
            values.append(f"{name} {_vector(array)}")
    return ", ".join([*values, *shapes])


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):.2f}"


def _vector(value: Any) -> str:
    """A number as ``0.54``, a vector as ``(0.50, -0.25)``."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return _number(array)
    return f"({', '.join(_number(v) for v in array.ravel())})"


def _cell(value: Any) -> str:
    row, col = (int(v) for v in np.asarray(value).ravel())
    return f"(row {row}, col {col})"


def _bandit(params: Mapping[str, Any]) -> str:
    means = np.asarray(params["means"], dtype=float)
    if means.size <= 10:
        return "means " + " ".join(f"{m:.2f}" for m in means)
    return (f"{means.size} arms, means {means.min():.2f} to {means.max():.2f}, "
            f"best arm {int(means.argmax())}")


def _tabular_mdp(params: Mapping[str, Any]) -> str:
    rewards = np.asarray(params["reward_means"], dtype=float)
    states, actions = rewards.shape
    return (f"{states} states x {actions} actions, reward means {rewards.min():.2f} to "
            f"{rewards.max():.2f}")


def _maze(params: Mapping[str, Any]) -> str:
    text = f"goal {_cell(params['goal'])}"
    if "sign" in params:
        text += f", sign {_cell(params['sign'])}"
    return text


TASK_DESCRIPTIONS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "bandit": _bandit,
    "tabular-mdp": _tabular_mdp,
    "maze": _maze,
    "maze-sign": _maze,
    "point-nav": lambda p: f"goal {_vector(p['goal'])}",
    "cheetah-vel": lambda p: f"target velocity {_vector(p['velocity'])}",
    "cheetah-dir": lambda p: "run forward (+x)" if float(p["direction"]) > 0
    else "run backward (-x)",
    "cheetah-crippled": lambda p: f"joint {int(p['joint'])} disabled",
    "ant-dir": lambda p: f"direction {_vector(p['direction'])}",
    "ant-goal": lambda p: f"goal {_vector(p['goal'])}",
    "ant-broken-leg": lambda p: f"leg {int(p['leg'])} disabled",
}


def legend_lines(*, trial: int, trials: int, episode: int, episodes: int, step: int,
                 horizon: int, episode_return: float, trial_return: float,
                 exploring: bool = False) -> list[str]:
    """The two changing lines of a frame's legend (below the task's description): the
    trial, the episode within it (1-based) and the step; the return so far in that episode
    and in the whole trial, or for an env's reward-free exploration episodes (which open a
    trial) that it explores. The step is left out for one-step episodes (bandits)."""
    where = [f"trial {trial}/{trials}", f"episode {episode}/{episodes}"]
    if horizon > 1:
        where.append(f"step {step}/{horizon}")
    if exploring:
        return [" · ".join(where), "exploration episode: no reward"]
    return [" · ".join(where),
            f"return: episode {episode_return:.2f} · trial {trial_return:.2f}"]


def text_right(text: str, font, x: float = 0.0) -> float:
    """The right edge (pixels) of ``text`` drawn at ``x`` with ``font``."""
    return x + font.getbbox(text)[2]


def wrap(text: str, font, width: float) -> list[str]:
    """``text`` broken into lines at most ``width`` pixels wide: after commas where that
    is enough, else at spaces (a word wider than a line is broken inside)."""
    chunks = re.split(r"(?<=,) (?![^(]*\))", text)  # not inside parentheses
    return _fill(chunks, font, width, lambda chunk: _fill(
        chunk.split(" "), font, width, lambda word: _break(word, font, width)))


def _fill(pieces: Sequence[str], font, width: float,
          split: Callable[[str], list[str]]) -> list[str]:
    """Greedy lines of ``pieces`` joined by spaces; a piece that does not fit on a line of
    its own is cut by ``split`` (its last part starts the next line)."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        candidate = f"{line} {piece}" if line else piece
        if text_right(candidate, font) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        *full, line = split(piece)
        lines.extend(full)
    return [*lines, line]


def _break(word: str, font, width: float) -> list[str]:
    """``word`` cut into pieces at most ``width`` pixels wide (at least a character each)."""
    pieces = []
    while text_right(word, font) > width and len(word) > 1:
        cut = len(word) - 1
        while cut > 1 and text_right(word[:cut], font) > width:
            cut -= 1
        pieces.append(word[:cut])
        word = word[cut:]
    return [*pieces, word]


def _fit(text: str, font, width: float) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if text_right(text, font) <= width:
        return text
    while text and text_right(text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def draw_caption(tile: np.ndarray, lines: Sequence[str], font, header_height: int,
                 line_height: int = LINE_HEIGHT) -> None:
    """Write ``lines`` into the header band (``header_height`` pixels) at the top of
    ``tile`` (in place); lines too wide for the tile are cut with an ellipsis (the recorder
    wraps them first, so this only guards against e.g. returns with many digits)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(tile[:header_height])
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((TEXT_X, TEXT_Y + i * line_height),
                  _fit(line, font, tile.shape[1] - 2 * TEXT_X), fill=TEXT_COLOR, font=font)
    tile[:header_height] = np.asarray(image)


# ------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class Layout:
    """Tiles of ``frame_shape`` below a caption band of ``header_lines`` text lines, on a
    grid of ``rows x cols``."""

    frame_shape: tuple[int, int]  # (height, width) of an env frame
    rows: int
    cols: int
    header_lines: int = HEADER_LINES
    line_height: int = LINE_HEIGHT

    @classmethod
    def for_frames(cls, frames: Sequence[np.ndarray], header_lines: int = HEADER_LINES,
                   line_height: int = LINE_HEIGHT) -> Layout:
        height = max(f.shape[0] for f in frames)
        width = max(f.shape[1] for f in frames)
        cols = math.ceil(math.sqrt(len(frames)))
        return cls((height, width), math.ceil(len(frames) / cols), cols, header_lines,
                   line_height)

    @staticmethod
    def tile_width(frames: Sequence[np.ndarray]) -> int:
        return max(max(f.shape[1] for f in frames), MIN_TILE_WIDTH)

    @property
    def header_height(self) -> int:
        return self.header_lines * self.line_height + 2 * TEXT_Y

    @property
    def tile_shape(self) -> tuple[int, int]:
        return (self.header_height + self.frame_shape[0],
                max(self.frame_shape[1], MIN_TILE_WIDTH))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of a composite frame."""
        th, tw = self.tile_shape
        return (self.rows * (th + GAP) + GAP, self.cols * (tw + GAP) + GAP)

    def tile(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` centred below an empty caption band (cropped if it is too large)."""
        th, tw = self.tile_shape
        tile = np.full((th, tw, 3), BACKGROUND, dtype=np.uint8)
        fh, fw = min(frame.shape[0], self.frame_shape[0]), min(frame.shape[1], tw)
        top, left = th - self.frame_shape[0], (tw - fw) // 2
        tile[top:top + fh, left:left + fw] = frame[:fh, :fw]
        return tile

    def compose(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """All tiles on one grey grid, row-major."""
        th, tw = self.tile_shape
        out = np.full((*self.shape, 3), GRID_COLOR, dtype=np.uint8)
        for i, tile in enumerate(tiles):
            r, c = divmod(i, self.cols)
            top, left = GAP + r * (th + GAP), GAP + c * (tw + GAP)
            out[top:top + th, left:left + tw] = tile
        return out


def as_rgb(frame: Any, env_name: str) -> np.ndarray:
    """An env's ``render()`` output as ``uint8 [H, W, 3]``."""
    if frame is None:
        raise RenderError(f"env {env_name!r} returned no frame; it must support "
                          f"render_mode='rgb_array'")
    array = np.asarray(frame)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.dtype != np.uint8:
        scale = 255.0 if array.dtype.kind == "f" and array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).astype(np.uint8)
    return array[..., :3]


# ------------------------------------------------------------------------------ recording
class TrialRecorder:
    """Sampler callbacks that turn every lockstep step into one captioned composite frame.

    Environment ``i`` runs ``tasks[i]`` (trial ``i + 1``, one trial per task). Each tile's
    legend: the task's description (wrapped to the tile's width), then
    :func:`legend_lines`. Environments whose episode ended keep their last frame and
    legend. Reset frames are skipped for one-step episodes (bandits), where they would
    only repeat the state between pulls.
    """

    def __init__(self, tasks: Sequence[Task], episodes: int, horizon: int, sink: FrameSink,
                 progress: Callable[[], None] | None = None, exploration_episodes: int = 0):
        from PIL import ImageFont

        self.tasks, self.episodes, self.horizon = tuple(tasks), episodes, horizon
        self.exploration_episodes = exploration_episodes
        self.sink, self.progress = sink, progress
        self.font = ImageFont.load_default(size=FONT_SIZE)  # scaled at the first reset
        self.labels = [task_label(t) for t in self.tasks]
        self.label_lines: list[list[str]] = [[label] for label in self.labels]
        self.layout: Layout | None = None
        self.frames: list[np.ndarray] = []
        n = len(self.tasks)
        self.episode, self.steps = 0, np.zeros(n, dtype=int)
        self.episode_return, self.trial_return = np.zeros(n), np.zeros(n)
        self.count = 0  # composite frames written

    def on_reset(self, episode: int, venv: VectorMetaEnv) -> None:
        from PIL import ImageFont

        self.episode = episode
        self.steps[:] = 0
        self.episode_return[:] = 0.0
        self.frames = [self._grab(venv, i) for i in range(len(self.tasks))]
        if self.layout is None:
            tile_width = Layout.tile_width(self.frames)
            scale = max(1.0, tile_width / FONT_SCALE_WIDTH)
            self.font = ImageFont.load_default(size=round(FONT_SIZE * scale))
            width = tile_width - 2 * TEXT_X
            self.label_lines = [wrap(label, self.font, width) for label in self.labels]
            task_lines = max(len(lines) for lines in self.label_lines)
            self.layout = Layout.for_frames(self.frames, task_lines + 2,
                                            round(LINE_HEIGHT * scale))
        if self.horizon > 1:
            self._emit()

    def on_step(self, step: Transition, venv: VectorMetaEnv) -> None:
        valid = np.asarray(step.valid, dtype=bool)
        rewards = np.where(valid, step.rewards, 0.0)
        self.steps += valid
        self.episode_return += rewards
        self.trial_return += rewards
        for i in np.flatnonzero(valid):
            self.frames[i] = self._grab(venv, int(i))
        self._emit()
        if self.progress is not None:
            self.progress()

    def _grab(self, venv: VectorMetaEnv, i: int) -> np.ndarray:
        envs = getattr(venv, "envs", None)
        if envs is None:
            raise RenderError("rendering needs a SerialVectorEnv: use LocalSampler(env, "
                              "render=True)")
        return as_rgb(envs[i].render(), self.tasks[i].env)

    def captions(self, i: int) -> list[str]:
        """The legend of environment ``i``, one string per drawn line: the task (wrapped
        to the tile), blank lines up to the longest task description of the animation,
        then :func:`legend_lines`."""
        assert self.layout is not None
        task = self.label_lines[i]
        padding = [""] * (self.layout.header_lines - 2 - len(task))
        return [*task, *padding, *legend_lines(
            trial=i + 1, trials=len(self.tasks), episode=self.episode + 1,
            episodes=self.episodes, step=int(self.steps[i]), horizon=self.horizon,
            episode_return=float(self.episode_return[i]),
            trial_return=float(self.trial_return[i]),
            exploring=self.episode < self.exploration_episodes)]

    def _emit(self) -> None:
        assert self.layout is not None
        tiles = []
        for i, frame in enumerate(self.frames):
            tile = self.layout.tile(frame)
            draw_caption(tile, self.captions(i), self.font, self.layout.header_height,
                         self.layout.line_height)
            tiles.append(tile)
        self.sink(self.layout.compose(tiles))
        self.count += 1


def record_trials(env: MetaEnv, policy: Policy, tasks: Sequence[Task], *, episodes: int,
                  seed: int, sink: FrameSink, progress: bool | None = None) -> dict[str, Any]:
    """Run one trial of ``policy`` per task through the shared sampler and stream composite
    frames to ``sink``. ``progress``: report the steps on stderr (``None`` or ``True``: a
    bar on a terminal, else a line every ~10 s; ``False``: nothing; :mod:`metarl.progress`).
    Returns the number of frames, the frame size and the per-episode returns ``[N, K]``."""
    from metarl.progress import Progress
    from metarl.sampling import LocalSampler

    sampler = LocalSampler(env, render=True)
    horizon = env.max_episode_steps
    with Progress(total=episodes * horizon, desc="render", unit="steps",
                  enabled=progress) as bar:
        recorder = TrialRecorder(tasks, episodes, horizon, sink, progress=bar.update,
                                 exploration_episodes=env.exploration_episodes)
        try:
            rollouts = sampler.sample(policy, tasks, trials=1, episodes=episodes, seed=seed,
                                      on_reset=recorder.on_reset, on_step=recorder.on_step)
        finally:
            sampler.close()
        bar.update(bar.total - bar.n)  # episodes that ended early skip steps
    assert recorder.layout is not None
    return {"frames": recorder.count, "frame_size": list(recorder.layout.shape),
            "returns": rollouts.episode_returns()[:, 0].tolist()}


def check_gl_backend(env_name: str) -> None:
    """Choose the OpenGL backend now when ``env_name`` renders with MuJoCo (see
    :func:`metarl.envs._render.select_gl_backend`), so that a machine without one gets one
    line saying what to install (a :class:`RenderError`) before anything is written."""
    from metarl.envs import REGISTRY
    from metarl.envs._render import GLBackendError, select_gl_backend

    spec = REGISTRY.get(env_name)
    if spec is None or spec.family not in ("mujoco", "metaworld"):
        return
    try:
        select_gl_backend()
    except GLBackendError as exc:
        raise RenderError(str(exc)) from None


def render_run(run_dir: str | Path, out: str | Path, *, tasks: int = 2,
               episodes: int | None = None, split: str = "test", seed: int = 0,
               fps: float | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Render trials of a trained run on ``tasks`` held-out tasks to ``out`` (.gif/.mp4).

    The tasks and the policy's random streams are those of ``metarl eval --split SPLIT
    --seed SEED``: task ``i`` here is task ``i`` there, with the same trial wherever the
    env's single and vector versions draw the same noise. ``episodes`` defaults to the
    agent's trial length, ``fps`` to the env's ``render_fps``."""
    from metarl import runs
    from metarl.evaluation import EVAL_SEED_OFFSET

    fmt = output_format(out)
    if tasks < 1:
        raise RenderError(f"--tasks must be >= 1, got {tasks}")
    if episodes is not None and episodes < 1:
        raise RenderError(f"--episodes must be >= 1, got {episodes}")
    if fps is not None and fps <= 0:
        raise RenderError(f"--fps must be > 0, got {fps}")
    loaded = runs.load(run_dir)
    if not loaded.agent.uses_sampler:
        raise RenderError(f"{loaded.config.agent!r} is a few-shot learner: it has no episodes "
                          "to render (use metarl eval)")
    check_gl_backend(loaded.config.env)
    env = loaded.env
    episodes = episodes or loaded.agent.eval_episodes
    fps = fps or float(env.metadata.get("render_fps") or 10)
    task_list = env.split_tasks(split, tasks, seed=seed)
    with atomic_path(out) as tmp, frame_writer(tmp, fmt, fps) as sink:
        result = record_trials(env, loaded.agent.policy(), task_list, episodes=episodes,
                               seed=seed + EVAL_SEED_OFFSET, sink=sink, progress=progress)
    return {"out": str(out), "format": fmt, "fps": fps, "tasks": tasks, "episodes": episodes,
            **result}
