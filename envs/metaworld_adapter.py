"""Meta-World's ML1 and ML10 benchmarks as task distributions (the optional ``metaworld`` extra).

``pip install "metarl[metaworld]"`` installs Meta-World 3.1.1, which pins ``mujoco==3.3.0``
(the default install gets MuJoCo 4.x), so use a separate virtualenv (see the README). This
module imports ``metaworld`` only when an env is built; without it, building one raises
:class:`MetaWorldNotInstalled`, a ``ValueError`` the CLI reports in one line (exit code 2).

==================  ===========================================================================
name                tasks
==================  ===========================================================================
``metaworld-ml1``   one manipulation task (``task_name``, default ``reach-v3``): train and test
                    are Meta-World's 50 + 50 goal/object positions (``ML1``)
``metaworld-ml10``  10 train classes x 50 positions; test: 5 *other* classes x 50 (``ML10``)
==================  ===========================================================================

* **Splits are Meta-World's own.** The benchmark is built with ``benchmark_seed`` (default
  0; ``metaworld.ML1(task_name, seed=...)`` / ``metaworld.ML10(seed=...)``), which fixes its
  task lists. ``sample_tasks`` draws from the train list; ``split_tasks("train"|"test", n,
  seed)`` from the train or test list with a generator seeded by ``(seed, split)``. Draws are
  class-balanced (classes in a shuffled round-robin, as Meta-World's vector envs spread a meta
  batch over classes) and without replacement within a class until its 50 tasks are used up.
  There is no ``val`` split.
* **Task params** are ``{"env_name": "reach-v3", "rand_vec": [...]}``: the Meta-World class
  and the vector its ``reset`` places the object(s) and goal from (length per class, inside the
  class's ``_random_reset_space``). A Meta-World ``Task`` is ``env_name`` plus a pickle of
  exactly ``{rand_vec, env_cls, partially_observable=True}`` for the ML benchmarks, so these
  two fields define it completely; they are readable, survive JSON exactly and need no
  unpickling of stored bytes (``set_task`` rebuilds the pickle from the env class itself).
* **Episodes** are ``max_episode_steps`` long (default 500, Meta-World's ``max_path_length``),
  then ``truncated``; nothing terminates (Meta-World never does). ``reset`` is deterministic
  given the task (Meta-World's ``reset`` ignores seeds once a task is set).
* **Spaces** are Meta-World's: 39-d float64 observations (hand, gripper, objects, the same
  for the previous frame, and a goal slot that stays zero in the ML benchmarks) and 4-d
  actions in ``[-1, 1]``, the same for all ML10 classes.
* **info** holds Meta-World's metrics as floats: ``success`` (1.0 at steps where the task's
  success condition holds, else 0.0), ``near_object``, ``grasp_success``, ``grasp_reward``,
  ``in_place_reward``, ``obj_to_target``, ``unscaled_reward``. Rewards are Meta-World's v2
  rewards (0 to 10).

ML10 switches the underlying Meta-World env class per task; each env keeps one instance per
class, created when a task of that class is first set.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from metarl.envs._render import gl_free_import, select_gl_backend
from metarl.envs_api import MetaEnv, split_rng
from metarl.types import Task

#: Meta-World's episode length (``SawyerXYZEnv.max_path_length``)
MAX_PATH_LENGTH = 500


class MetaWorldNotInstalled(ImportError, ValueError):
    """Meta-World is missing (or broken): the message says how to install it."""


def _import_metaworld(env: str):
    try:
        with gl_free_import():  # building an env never loads OpenGL (envs/_render.py)
            import metaworld
    except ModuleNotFoundError as exc:
        if exc.name == "metaworld":
            raise MetaWorldNotInstalled(
                f'{env} needs the metaworld extra: pip install "metarl[metaworld]" '
                f"(it pins mujoco==3.3.0)") from None
        error: Exception = exc
    except (ImportError, OSError) as exc:  # OSError: libmujoco.so.4.0.0 (see the README)
        error = exc
    else:
        return metaworld
    raise MetaWorldNotInstalled(
        f"{env}: importing metaworld failed ({type(error).__name__}: {error}); reinstall: "
        f'pip uninstall -y mujoco mujoco-core mujoco-studio && pip install "metarl[metaworld]"'
    ) from error


@dataclass(frozen=True)
class _Benchmark:
    """A Meta-World benchmark's classes and task lists, as ``(env_name, rand_vec)`` pairs."""

    classes: dict[str, type]  # train classes first, then test classes
    train: tuple[tuple[str, tuple[float, ...]], ...]
    test: tuple[tuple[str, tuple[float, ...]], ...]


@functools.cache
def _benchmark(env: str, task_name: str | None, seed: int) -> _Benchmark:
    """Meta-World's ``ML1(task_name, seed)`` or ``ML10(seed)`` (built once per process: ML10
    resets every class 50 times to draw its goals, a few seconds)."""
    metaworld = _import_metaworld(env)
    bench = metaworld.ML10(seed=seed) if task_name is None else metaworld.ML1(task_name,
                                                                            seed=seed)

    def decode(tasks) -> tuple[tuple[str, tuple[float, ...]], ...]:
        out = []
        for task in tasks:
            data = pickle.loads(task.data)  # Meta-World's own task list: trusted bytes
            out.append((task.env_name, tuple(float(x) for x in data["rand_vec"])))
        return tuple(out)

    return _Benchmark({**bench.train_classes, **bench.test_classes},
                      decode(bench.train_tasks), decode(bench.test_tasks))


class MetaWorldEnv(MetaEnv):
    """A Meta-World ML benchmark as a :class:`~metarl.envs_api.MetaEnv` (see the module doc)."""

    max_episode_steps = MAX_PATH_LENGTH
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "depth_array", "human"],
                                          "render_fps": 80}

    def __init__(self, task_name: str | None, benchmark_seed: int, max_episode_steps: int,
                 render_mode: str | None, width: int, height: int, camera_name: str | None,
                 options: dict[str, Any]):
        metaworld = _import_metaworld(self.name)
        if task_name is not None and task_name not in metaworld.ML1.ENV_NAMES:
            raise ValueError(f"unknown Meta-World task {task_name!r}; valid tasks: "
                             f"{', '.join(sorted(metaworld.ML1.ENV_NAMES))}")
        if int(max_episode_steps) != max_episode_steps or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an integer >= 1, "
                             f"got {max_episode_steps!r}")
        self._init_kwargs = {**options, "benchmark_seed": int(benchmark_seed),
                             "max_episode_steps": int(max_episode_steps), "width": width,
                             "height": height, "camera_name": camera_name}
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self._mw_task_cls = metaworld.Task
        self._bench = _benchmark(self.name, task_name, int(benchmark_seed))
        self._envs: dict[str, Any] = {}  # one Meta-World env per class, built on first use
        self._env: Any = None  # the env of the task applied at the last reset
        self._current: tuple[str, np.ndarray] | None = None  # the task set, as (class, vec)
        self._apply = False  # whether the next reset must apply it
        self._elapsed = 0
        if render_mode not in (None, "human"):  # offscreen: the user's MUJOCO_GL (checked),
            select_gl_backend()                  # else EGL or OSMesa (envs/_render.py)
        first = self._env_for(self._bench.train[0][0])
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    # ------------------------------------------------------------------ tasks
    def _env_for(self, env_name: str):
        """The Meta-World env of class ``env_name`` (built on first use)."""
        if env_name not in self._envs:
            env = self._bench.classes[env_name](
                render_mode=self.render_mode, width=self._init_kwargs["width"],
                height=self._init_kwargs["height"], camera_name=self._init_kwargs["camera_name"])
            env.max_path_length = self.max_episode_steps  # Meta-World refuses steps beyond it
            if getattr(self, "observation_space", None) is not None and (
                    env.observation_space != self.observation_space
                    or env.action_space != self.action_space):
                raise RuntimeError(f"{self.name}: {env_name} has different spaces")
            self._envs[env_name] = env
        return self._envs[env_name]

    def _draw(self, pool: Sequence[tuple[str, tuple[float, ...]]], n: int,
              rng: np.random.Generator) -> list[Task]:
        """``n`` tasks of ``pool``: classes in a shuffled round-robin; within a class, tasks
        without replacement until all were drawn, then another permutation."""
        by_class: dict[str, list[tuple[float, ...]]] = {}
        for env_name, rand_vec in pool:
            by_class.setdefault(env_name, []).append(rand_vec)
        names = [list(by_class)[i] for i in rng.permutation(len(by_class))]
        counts = [len(range(c, n, len(names))) for c in range(len(names))]
        picks = {}
        for name, count in zip(names, counts, strict=True):
            size = len(by_class[name])
            rounds = -(-count // size)
            picks[name] = np.concatenate([rng.permutation(size) for _ in range(rounds)]
                                         or [np.zeros(0, int)])
        tasks = []
        for i in range(n):
            name = names[i % len(names)]
            rand_vec = by_class[name][picks[name][i // len(names)]]
            tasks.append(Task(self.name, {"env_name": name, "rand_vec": list(rand_vec)}, id=i))
        return tasks

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks from Meta-World's train tasks."""
        return self._draw(self._bench.train, n, rng)

    def split_tasks(self, split: str, n: int, seed: int = 0) -> list[Task]:
        """``n`` tasks from Meta-World's ``train`` or ``test`` tasks, drawn with a generator
        seeded by ``(seed, split)``."""
        if split not in ("train", "test"):
            raise ValueError(f"{self.name} has Meta-World's train and test splits only, "
                             f"got {split!r}")
        return self._draw(getattr(self._bench, split), n, split_rng(split, seed))

    def set_task(self, task: Task) -> None:
        params = task.params
        env_name = params.get("env_name")
        if env_name not in self._bench.classes:
            raise ValueError(f"{self.name} task env_name must be one of "
                             f"{', '.join(self._bench.classes)}, got {env_name!r}")
        space = self._env_for(env_name)._random_reset_space
        try:
            rand_vec = task.array("rand_vec")
        except (KeyError, TypeError, ValueError):
            rand_vec = None
        if (rand_vec is None or rand_vec.shape != space.shape or not np.isfinite(rand_vec).all()
                or not np.all((space.low <= rand_vec) & (rand_vec <= space.high))):
            raise ValueError(f"{self.name} task rand_vec must be {space.shape[0]} floats within "
                             f"{env_name}'s reset space {space}, got {params.get('rand_vec')!r}")
        self._current, self._apply = (env_name, rand_vec), True
        self._task = task

    # -------------------------------------------------------- gymnasium hooks
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._apply:
            env_name, rand_vec = self._current
            self._env = self._env_for(env_name)
            # what Meta-World's benchmarks pickle into Task.data for the ML benchmarks
            data = {"rand_vec": rand_vec, "env_cls": type(self._env),
                    "partially_observable": True}
            self._env.set_task(self._mw_task_cls(env_name=env_name, data=pickle.dumps(data)))
            self._apply = False
        if seed is not None:
            self._env.seed(seed)  # Meta-World's reset ignores its seed argument
        self._elapsed = 0
        obs, info = self._env.reset()
        return obs, info

    def step(self, action):
        if self._env is None:
            raise RuntimeError(f"{self.name}: call reset before step")
        obs, reward, terminated, truncated, info = self._env.step(action)
        self._elapsed += 1
        info = {key: float(value) for key, value in info.items()
                if isinstance(value, (bool, int, float, np.number))}
        return (obs, float(reward), bool(terminated),
                bool(truncated) or self._elapsed >= self.max_episode_steps, info)

    def render(self):
        if self._env is None:
            raise RuntimeError(f"{self.name}: call reset before render")
        return self._env.render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._env, self._apply = None, self._current is not None

    # ----------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return {"init_kwargs": self.init_kwargs, "render_mode": self.render_mode,
                "task": self.task.to_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, render_mode=state["render_mode"], **state["init_kwargs"])
        self.set_task(Task.from_dict(state["task"]))


class MetaWorldML1Env(MetaWorldEnv):
    """Meta-World ML1: the goal/object positions of one task (``task_name``) vary."""

    name = "metaworld-ml1"

    def __init__(self, task_name: str = "reach-v3", benchmark_seed: int = 0,
                 max_episode_steps: int = MAX_PATH_LENGTH, render_mode: str | None = None,
                 width: int = 480, height: int = 480, camera_name: str | None = None):
        super().__init__(task_name, benchmark_seed, max_episode_steps, render_mode, width,
                         height, camera_name, {"task_name": task_name})


class MetaWorldML10Env(MetaWorldEnv):
    """Meta-World ML10: 10 train task classes, 5 held-out test classes."""

    name = "metaworld-ml10"

    def __init__(self, benchmark_seed: int = 0, max_episode_steps: int = MAX_PATH_LENGTH,
                 render_mode: str | None = None, width: int = 480, height: int = 480,
                 camera_name: str | None = None):
        super().__init__(None, benchmark_seed, max_episode_steps, render_mode, width, height,
                         camera_name, {})
