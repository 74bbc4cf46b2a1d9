"""Tiny numpy drawing helpers for rendering the numpy environments as RGB images, and the
choice of MuJoCo's OpenGL backend (:func:`select_gl_backend`, :func:`gl_free_import`).

MuJoCo renders offscreen through the backend named by ``MUJOCO_GL``: ``egl`` (libEGL, a GPU
or Mesa driver), ``osmesa`` (libOSMesa, CPU) or ``glfw`` (a display). This module imports
neither MuJoCo nor OpenGL: the numpy envs use its drawing helpers, and the MuJoCo envs call
:func:`select_gl_backend` only when built with a ``render_mode``.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def canvas(height: int, width: int, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = color
    return image


def fill_rect(image: np.ndarray, top: int, left: int, bottom: int, right: int,
              color: tuple[int, int, int]) -> None:
    h, w = image.shape[:2]
    image[max(top, 0):min(bottom, h), max(left, 0):min(right, w)] = color


def fill_circle(image: np.ndarray, cy: float, cx: float, radius: float,
                color: tuple[int, int, int]) -> None:
    h, w = image.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = color


def heat_color(value: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    v = float(np.clip(value, 0.0, 1.0))
    return (int(255 * (1 - v)), int(255 * (1 - 0.7 * v)), 255)


def draw_points(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, color: tuple[int, int, int],
                radius: int = 1) -> None:
    """Square dots of half-width ``radius`` at pixel coordinates ``(ys, xs)`` (clipped)."""
    h, w = image.shape[:2]
    ys, xs = np.round(np.asarray(ys)).astype(int), np.round(np.asarray(xs)).astype(int)
    dy, dx = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1),
                         indexing="ij")
    yy, xx = (ys[:, None, None] + dy).ravel(), (xs[:, None, None] + dx).ravel()
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    image[yy[inside], xx[inside]] = color


def draw_polyline(image: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  color: tuple[int, int, int], radius: int = 0) -> None:
    """Connect consecutive pixel coordinates ``(ys[i], xs[i])`` with straight segments."""
    ys, xs = np.asarray(ys, dtype=float), np.asarray(xs, dtype=float)
    if len(ys) < 2:
        draw_points(image, ys, xs, color, radius)
        return
    length = np.hypot(np.diff(ys), np.diff(xs))
    samples = max(int(np.ceil(length.max())) + 1, 2)
    t = np.linspace(0.0, 1.0, samples)[None, :]
    draw_points(image, (ys[:-1, None] + t * np.diff(ys)[:, None]).ravel(),
                (xs[:-1, None] + t * np.diff(xs)[:, None]).ravel(), color, radius)


# ------------------------------------------------------------------ MuJoCo's OpenGL backend
#: offscreen backends tried, in order, when neither MUJOCO_GL nor PYOPENGL_PLATFORM is set
#: (``glfw`` too when there is a display); each with the libraries PyOpenGL loads for it
GL_LIBRARIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "egl": (("EGL",), ("OpenGL", "GL")),
    "osmesa": (("OSMesa",),),
    "glfw": (),
}
#: what to install when a backend is missing
GL_INSTALL = {"egl": "an EGL driver such as libegl1 (Debian: libegl1 libegl-mesa0)",
              "osmesa": "apt-get install libosmesa6",
              "glfw": "a display (DISPLAY) and libglfw3"}
NO_GL_HINT = ("install one: apt-get install libosmesa6 (CPU rendering) or an EGL driver "
              "such as libegl1")
#: MUJOCO_GL values with which ``import mujoco`` loads no OpenGL library
_IMPORT_LOADS_NO_GL = ("", "glfw", "glx", "enable", "enabled", "on", "true", "1",
                       "disable", "disabled", "off", "false", "0")
_DISABLED = ("disable", "disabled", "off", "false", "0")
#: the probe run in a fresh process: one 8x8 frame of a one-geom model
_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
renderer = mujoco.Renderer(model, 8, 8)
try:
    renderer.update_scene(mujoco.MjData(model))
    renderer.render()
finally:
    renderer.close()
"""
PROBE_TIMEOUT_S = 60.0


class GLBackendError(RuntimeError):
    """No usable OpenGL backend for MuJoCo rendering (the message is one line)."""


def find_gl_library(name: str) -> str | None:
    """The file of the shared library ``lib{name}.so`` as the dynamic loader would find it
    (``LD_LIBRARY_PATH``, then the ldconfig cache), or ``None``; nothing is loaded."""
    for folder in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        found = sorted(Path(folder).glob(f"lib{name}.so*"))
        if found:
            return str(found[0])
    return ctypes.util.find_library(name)


def missing_gl_libraries(backend: str) -> list[str]:
    """The libraries ``backend`` needs that are not installed (``libOSMesa``, ...)."""
    return [f"lib{names[0]}" for names in GL_LIBRARIES.get(backend, ())
            if not any(find_gl_library(name) for name in names)]


def probe_gl_backend(backend: str) -> str | None:
    """Render one tiny frame with ``MUJOCO_GL=backend`` in a fresh Python process (a broken
    driver cannot crash this one); ``None`` when it worked, else why not, in a few words."""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"rendering a test frame took over {PROBE_TIMEOUT_S:g} s"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {done.returncode}"
    return reason if len(reason) <= 160 else reason[:157] + "..."


#: backends chosen (or errors) by GL environment: (MUJOCO_GL, PYOPENGL_PLATFORM, DISPLAY)
_checked: dict[tuple[str, str, str], str | GLBackendError] = {}


def _gl_environment() -> tuple[str, str, str]:
    user = os.environ.get("MUJOCO_GL", "")
    platform = "" if user.strip() else os.environ.get("PYOPENGL_PLATFORM", "")
    return user, platform, os.environ.get("DISPLAY", "")


def select_gl_backend() -> str:
    """Choose MuJoCo's OpenGL backend for rendering, set ``MUJOCO_GL`` to it and return it.

    A backend the user set wins: ``MUJOCO_GL``, else ``PYOPENGL_PLATFORM`` (``egl`` or
    ``osmesa``); it is checked. Otherwise the first that renders a test frame of EGL,
    OSMesa and (with a display) GLFW; backends whose libraries are not installed are not
    tried. Raises :class:`GLBackendError` with one line saying what to install when none
    works. The answer is remembered for the process (a check costs a Python start-up).
    """
    key = _gl_environment()
    if key not in _checked:
        try:
            _checked[key] = _select(*key)
        except GLBackendError as error:
            _checked[key] = error
    answer = _checked[key]
    if isinstance(answer, GLBackendError):
        raise GLBackendError(str(answer))
    os.environ["MUJOCO_GL"] = answer
    _checked.setdefault(_gl_environment(), answer)
    return answer


def _select(user: str, platform: str, display: str) -> str:
    if user.strip():
        chosen, source = user.strip().lower(), f"MUJOCO_GL={user}"
        valid: tuple[str, ...] = ("egl", "osmesa", "glfw")
    elif platform.strip():
        chosen, source = platform.strip().lower(), f"PYOPENGL_PLATFORM={platform}"
        valid = ("egl", "osmesa")
    else:
        failures = []
        for backend in ("egl", "osmesa", *(("glfw",) if display else ())):
            missing = missing_gl_libraries(backend)
            reason = (f"{', '.join(missing)} not found" if missing
                      else probe_gl_backend(backend))
            if reason is None:
                return backend
            failures.append(f"{backend}: {reason}")
        raise GLBackendError(f"no OpenGL backend for MuJoCo rendering "
                             f"({'; '.join(failures)}); {NO_GL_HINT}")
    if chosen in _DISABLED:
        raise GLBackendError(f"{source} turns MuJoCo rendering off; unset it or set "
                             f"MUJOCO_GL to egl or osmesa")
    if chosen not in valid:
        raise GLBackendError(f"{source} is not a MuJoCo rendering backend; use "
                             f"{', '.join(valid)}, or unset it to detect one")
    if missing := missing_gl_libraries(chosen):
        raise GLBackendError(f"{source} but {', '.join(missing)} is not installed: "
                             f"{GL_INSTALL[chosen]} (or unset it to detect a backend)")
    if reason := probe_gl_backend(chosen):
        raise GLBackendError(f"{source} cannot render ({reason}): {GL_INSTALL[chosen]} "
                             f"(or unset it to detect a backend)")
    return chosen


@contextlib.contextmanager
def gl_free_import() -> Iterator[None]:
    """Import MuJoCo (or a package that imports it) without loading OpenGL when the
    ``MUJOCO_GL`` set would break the import: ``import mujoco`` loads the backend it names
    and fails (with an ``AttributeError`` deep in PyOpenGL) when that backend's library is
    missing, or refuses a value it does not know. Training never renders, so the MuJoCo
    envs import MuJoCo inside this block; ``MUJOCO_GL`` is restored after, and rendering
    checks it (:func:`select_gl_backend`)."""
    value = os.environ.get("MUJOCO_GL")
    broken = value is not None and "mujoco" not in sys.modules and (
        value.strip().lower() not in _IMPORT_LOADS_NO_GL
        and (value.strip().lower() not in GL_LIBRARIES
             or bool(missing_gl_libraries(value.strip().lower()))))
    if not broken:
        yield
        return
    os.environ["MUJOCO_GL"] = "disable"
    try:
        yield
    finally:
        os.environ["MUJOCO_GL"] = value
