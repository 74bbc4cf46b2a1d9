"""Tiny numpy drawing helpers for rendering the numpy environments as RGB images."""

from __future__ import annotations

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
