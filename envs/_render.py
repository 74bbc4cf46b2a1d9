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
