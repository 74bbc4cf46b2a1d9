"""MuJoCo's OpenGL backend as a user meets it: training never needs one, whatever ``MUJOCO_GL``
says; ``metarl render`` picks EGL, else OSMesa, else exits 2 with one line saying what to
install; a backend the user names wins and is checked.

A library is made missing in the ``metarl`` process (and the processes it starts) by a
``sitecustomize`` module that makes ``ctypes`` fail to find or load it, as on a machine
without it: the system's copy cannot be hidden otherwise, and this works whether or not
this machine has it. The first test checks that the hiding reproduces the original failure.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

#: a tiny MAML-TRPO run on cheetah-vel: one iteration and its final evaluation take seconds
TINY_MUJOCO = ["maml-trpo", "cheetah-vel", "--iterations", "1", "--set", "meta_batch=2",
               "rollouts_per_task=1", "env.horizon=10", "eval_tasks=2", "threads=1"]
INSTALL_HINT = "apt-get install libosmesa6"
EGL_HINT = "libegl1"

HIDE_LIBRARIES = textwrap.dedent('''
    """Test helper: the shared libraries named in METARL_TEST_HIDE_LIBS (comma-separated
    prefixes, e.g. libOSMesa) cannot be found or loaded through ctypes in this process."""
    import ctypes
    import ctypes.util
    import os

    _hidden = tuple(p for p in os.environ.get("METARL_TEST_HIDE_LIBS", "").split(",") if p)


    def _is_hidden(name):
        return bool(name) and os.path.basename(str(name)).startswith(_hidden)


    _find_library = ctypes.util.find_library


    def find_library(name):
        return None if _is_hidden(f"lib{name}") else _find_library(name)


    ctypes.util.find_library = find_library
    _cdll_init = ctypes.CDLL.__init__


    def _init(self, name, *args, **kwargs):
        if _is_hidden(name):
            raise OSError(f"{name}: cannot open shared object file (hidden by the test)")
        _cdll_init(self, name, *args, **kwargs)


    ctypes.CDLL.__init__ = _init
''')


@pytest.fixture(scope="module")
def hide_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hide-gl")
    (folder / "sitecustomize.py").write_text(HIDE_LIBRARIES)
    return folder


def gl_env(hide_dir, hide: str = "", **values: str) -> dict:
    """The environment of a user whose machine lacks the libraries in ``hide``, with
    ``values`` set (MUJOCO_GL, PYOPENGL_PLATFORM and DISPLAY unset unless given)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "LD_LIBRARY_PATH")}
    path = os.pathsep.join(filter(None, [str(hide_dir), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "METARL_TEST_HIDE_LIBS": hide, **values}


def python(code: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


def metarl_cli(args: list[str], env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metarl.cli", *args], capture_output=True,
                          text=True, env={**env, "RAY_AUTH_MODE": "disabled"}, timeout=600,
                          cwd=cwd)


def detected(env: dict) -> tuple[str | None, str]:
    """The backend ``select_gl_backend`` picks in a process with ``env``, or its error."""
    done = python("from metarl.envs._render import GLBackendError, select_gl_backend\n"
                  "try:\n    print('ok', select_gl_backend())\n"
                  "except GLBackendError as e:\n    print('error', e)", env)
    assert done.returncode == 0, done.stderr
    kind, _, text = done.stdout.strip().partition(" ")
    return (text, "") if kind == "ok" else (None, text)


@pytest.fixture(scope="module")
def mujoco_run(tmp_path_factory, hide_dir):
    run = tmp_path_factory.mktemp("runs") / "maml-cheetah"
    done = metarl_cli(["train", *TINY_MUJOCO, "--run-dir", str(run)], gl_env(hide_dir))
    assert done.returncode == 0, done.stderr
    return run


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("metarl: error: ")
    return lines[0]


# --------------------------------------------------------------------- training: no OpenGL
def test_training_works_with_MUJOCO_GL_naming_a_missing_library(hide_dir, tmp_path):
    env = gl_env(hide_dir, hide="libOSMesa", MUJOCO_GL="osmesa")
    # the hiding reproduces the original failure: MuJoCo itself cannot be imported
    assert python("import mujoco", env).returncode != 0
    run = tmp_path / "run"
    done = metarl_cli(["train", *TINY_MUJOCO, "--run-dir", str(run)], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["iterations"] == 1
    assert (run / "eval.json").is_file()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["osmesa", "egl", "bogus"])
def test_mujoco_envs_import_and_step_with_any_MUJOCO_GL(hide_dir, value):
    """``import mujoco`` fails for a backend whose library is missing, and for a value
    MuJoCo does not know; the envs import and step anyway (no OpenGL in training)."""
    env = gl_env(hide_dir, hide="libOSMesa,libEGL", MUJOCO_GL=value)
    done = python("import os\nimport numpy as np\nfrom metarl.envs import make\n"
                  "venv = make('cheetah-vel', horizon=5).vector(2)\n"
                  "venv.reset(seed=0)\n"
                  "venv.step(np.zeros((2, *venv.single_action_space.shape)))\n"
                  "print(os.environ['MUJOCO_GL'])", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == value  # the user's setting is left as it was


# --------------------------------------------------------------------- render: detection
def test_detection_prefers_egl_then_osmesa_and_names_what_to_install(hide_dir):
    nothing = gl_env(hide_dir, hide="libOSMesa,libEGL")
    backend, error = detected(nothing)
    assert backend is None
    assert error.startswith("no OpenGL backend for MuJoCo rendering (egl: libEGL")
    assert "; osmesa: libOSMesa not found); install one: " in error
    assert INSTALL_HINT in error and EGL_HINT in error and "\n" not in error
    osmesa_only, _ = detected(gl_env(hide_dir, hide="libEGL"))
    egl_only, _ = detected(gl_env(hide_dir, hide="libOSMesa"))
    both, _ = detected(gl_env(hide_dir))
    assert osmesa_only in ("osmesa", None) and egl_only in ("egl", None)
    assert both == (egl_only or osmesa_only)  # EGL first, OSMesa when EGL does not work


def test_a_backend_the_user_names_wins_and_is_checked(hide_dir):
    backend, error = detected(gl_env(hide_dir, hide="libOSMesa", MUJOCO_GL="osmesa"))
    assert backend is None
    assert error == ("MUJOCO_GL=osmesa but libOSMesa is not installed: apt-get install "
                     "libosmesa6 (or unset it to detect a backend)")
    backend, error = detected(gl_env(hide_dir, hide="libOSMesa", PYOPENGL_PLATFORM="osmesa"))
    assert backend is None and error.startswith("PYOPENGL_PLATFORM=osmesa but libOSMesa")
    backend, error = detected(gl_env(hide_dir, MUJOCO_GL="bogus"))
    assert backend is None and error.startswith("MUJOCO_GL=bogus is not a MuJoCo rendering "
                                                "backend; use egl, osmesa, glfw")
    egl, _ = detected(gl_env(hide_dir, hide="libOSMesa"))
    if egl == "egl":  # a working EGL is used as named, without looking further
        assert detected(gl_env(hide_dir, MUJOCO_GL="egl")) == ("egl", "")


# --------------------------------------------------------------------- metarl render
def test_render_without_any_backend_exits_2_with_one_line(mujoco_run, hide_dir, tmp_path):
    out = tmp_path / "trial.gif"
    done = metarl_cli(["render", str(mujoco_run), "--out", str(out), "--tasks", "1",
                       "--episodes", "1"], gl_env(hide_dir, hide="libOSMesa,libEGL"))
    line = one_error_line(done)
    assert line.startswith("metarl: error: no OpenGL backend for MuJoCo rendering")
    assert INSTALL_HINT in line and EGL_HINT in line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_render_with_the_users_backend_missing_exits_2_with_one_line(mujoco_run, hide_dir,
                                                                      tmp_path):
    out = tmp_path / "trial.gif"
    done = metarl_cli(["render", str(mujoco_run), "--out", str(out)],
                      gl_env(hide_dir, hide="libOSMesa", MUJOCO_GL="osmesa"))
    assert one_error_line(done) == ("metarl: error: MUJOCO_GL=osmesa but libOSMesa is not "
                                    "installed: apt-get install libosmesa6 (or unset it to "
                                    "detect a backend)")
    assert not out.exists()


@pytest.mark.reliability_slow
def test_render_falls_back_to_a_working_backend(mujoco_run, hide_dir, tmp_path):
    """With OSMesa missing, EGL renders where it works; with EGL missing, OSMesa does; on a
    machine with neither working, the one line of the test above."""
    for hide in ("libOSMesa", "libEGL"):
        env = gl_env(hide_dir, hide=hide)
        backend, error = detected(env)
        env["METARL_PROGRESS_INTERVAL"] = "0"  # a progress line a step (stderr is a pipe)
        out = tmp_path / f"without-{hide}.gif"
        done = metarl_cli(["render", str(mujoco_run), "--out", str(out), "--tasks", "1",
                           "--episodes", "1"], env)
        if backend is None:
            assert one_error_line(done) == f"metarl: error: {error}"
            continue
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 0 and "Traceback" not in done.stderr
        assert "render 10/10 steps (100%) | elapsed " in done.stderr
