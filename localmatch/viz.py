"""Pictures of matches."""

from __future__ import annotations

import os

import cv2
import numpy as np

from localmatch.io import Image

INLIER_COLOUR = (40, 220, 40)   # RGB
OUTLIER_COLOUR = (230, 40, 40)


def side_by_side(image_a: Image, image_b: Image, points_a: np.ndarray, points_b: np.ndarray, *,
                 outliers_a: np.ndarray | None = None, outliers_b: np.ndarray | None = None,
                 max_height: int = 800) -> np.ndarray:
    """Draw A and B next to each other with a line per correspondence.

    Args:
        points_a, points_b: ``(M, 2)`` inlier points in original pixels (drawn green).
        outliers_a, outliers_b: optional ``(K, 2)`` rejected matches (drawn red, thinner).
        max_height: both images are scaled to this height at most.

    Returns:
        ``(H, W, 3) uint8`` RGB picture.
    """
    height = min(max(image_a.height, image_b.height), max_height)
    sa, sb = height / image_a.height, height / image_b.height
    a = cv2.resize(image_a.pixels, (max(1, round(image_a.width * sa)), height), interpolation=cv2.INTER_AREA)
    b = cv2.resize(image_b.pixels, (max(1, round(image_b.width * sb)), height), interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(np.concatenate([a, b], axis=1))
    offset = a.shape[1]

    def draw(pa, pb, colour, thickness):
        for (xa, ya), (xb, yb) in zip(np.asarray(pa), np.asarray(pb)):
            p = (int(round((xa + 0.5) * sa - 0.5)), int(round((ya + 0.5) * sa - 0.5)))
            q = (int(round((xb + 0.5) * sb - 0.5)) + offset, int(round((yb + 0.5) * sb - 0.5)))
            cv2.line(canvas, p, q, colour, thickness, cv2.LINE_AA)
            cv2.circle(canvas, p, 2, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, q, 2, colour, -1, cv2.LINE_AA)

    if outliers_a is not None and outliers_b is not None:
        draw(outliers_a, outliers_b, OUTLIER_COLOUR, 1)
    draw(points_a, points_b, INLIER_COLOUR, 1)
    return canvas


def save_picture(picture: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB picture; the format follows the file extension (.png, .jpg...)."""
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{os.fspath(path)}: could not write the picture (unknown extension or unwritable folder?)")
