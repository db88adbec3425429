"""Shared fixtures: real photographs from the scikit-image wheel, and the shared data folders."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from localmatch.demo import skimage_photo
from localmatch.geometry import project
from localmatch.io import Image


@pytest.fixture(scope="session")
def astronaut() -> Image:
    return skimage_photo("astronaut.png")


@pytest.fixture(scope="session")
def coffee() -> Image:
    return skimage_photo("coffee.png")


def shared_data(name: str) -> Path:
    """``$LOCALMATCH_DATA/name``, or skip the test saying what is missing."""
    root = os.environ.get("LOCALMATCH_DATA")
    if not root:
        pytest.skip("LOCALMATCH_DATA is not set (point it at the shared data folder)")
    path = Path(root) / name
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path


def warp(image: Image, H: np.ndarray, size: tuple[int, int]) -> Image:
    """``image`` warped by ``H`` (A -> B, pixel-centre convention) onto a ``(width, height)`` canvas."""
    pixels = cv2.warpPerspective(image.pixels, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return Image(pixels, f"{image.source} (warped)")


def corner_error(H_est, H_true, width: int, height: int) -> float:
    from localmatch.demo import corner_error as _corner_error

    return _corner_error(H_est, H_true, width, height)


def points_on_a_plane(H: np.ndarray, offsets: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` random points of A in a 500-pixel square and their images under ``H`` in B, B's moved by
    ``offsets`` ``(N,)`` pixels along x (0: exact correspondences)."""
    pa = np.random.default_rng(seed).uniform(0, 500, size=(len(offsets), 2))
    return pa, project(pa, H)[0] + np.c_[offsets, np.zeros(len(offsets))]
