"""Shared helpers of the benchmark scripts: data location, timing, the OpenCV tutorial pipeline."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def data_dir(name: str) -> Path:
    """``$LOCALMATCH_DATA/name``, or exit with a clear message when it is not there."""
    root = os.environ.get("LOCALMATCH_DATA")
    if not root or not (Path(root) / name).is_dir():
        sys.exit(f"needs $LOCALMATCH_DATA/{name} (set LOCALMATCH_DATA to the shared data folder)")
    return Path(root) / name


def multiview_pairs() -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """multiview_dev's first three images of each scene: ``(pairs of one scene, pairs of the scenes' first
    images)``; the first should verify, the second should not (37 and 136 pairs)."""
    root = data_dir("multiview_dev")
    images = {scene.name: sorted(p for p in scene.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:3]
              for scene in sorted(p for p in root.iterdir() if p.is_dir())}
    same = [pair for paths in images.values() for pair in itertools.combinations(paths, 2)]
    different = [(images[x][0], images[y][0]) for x, y in itertools.combinations(images, 2)]
    return same, different


def ukbench_pairs() -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """ukbench_subset's 14 objects of 4 views each: ``(pairs of one object, pairs of the objects' first
    views)``; the first should verify, the second should not (84 and 91 pairs)."""
    paths = sorted(data_dir("ukbench_subset").glob("images/ukbench*.jpg"))
    groups = [paths[i:i + 4] for i in range(0, len(paths), 4)]
    same = [pair for group in groups for pair in itertools.combinations(group, 2)]
    different = list(itertools.combinations([group[0] for group in groups], 2))
    return same, different


def parse_options(text: str) -> dict:
    """``"key=value,key=value"`` (numbers, ``true``, ``false``) -> ``{key: int, float or bool}``; ``""`` -> ``{}``."""
    options: dict = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        if value in ("true", "false"):
            options[key] = value == "true"
        else:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return options


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@contextlib.contextmanager
def numba_loop(module, available: bool):
    """Within the block, ``module`` (one of localmatch's ``compiled`` modules) reports its numba loop as
    ``available`` or not, so its caller takes the compiled path or the numpy one, from the first call
    (the matcher's would otherwise reduce its first entries with numpy: ``NUMPY_ENTRIES_FIRST``);
    restored afterwards."""
    before = module.AVAILABLE, getattr(module, "NUMPY_ENTRIES_FIRST", None)
    module.AVAILABLE = available
    if before[1] is not None:
        module.NUMPY_ENTRIES_FIRST = 0
    try:
        yield
    finally:
        module.AVAILABLE = before[0]
        if before[1] is not None:
            module.NUMPY_ENTRIES_FIRST = before[1]


def tutorial_homography(path_a: str, path_b: str, ratio: float = 0.8, threshold: float = 3.0):
    """The OpenCV tutorial pipeline: SIFT at full resolution, BFMatcher kNN k=2, Lowe ratio,
    findHomography RANSAC. Returns ``(H or None, num_inliers)``."""
    sift = cv2.SIFT_create()
    img_a, img_b = cv2.imread(path_a, cv2.IMREAD_GRAYSCALE), cv2.imread(path_b, cv2.IMREAD_GRAYSCALE)
    kp_a, des_a = sift.detectAndCompute(img_a, None)
    kp_b, des_b = sift.detectAndCompute(img_b, None)
    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return None, 0
    good = [m for m, n in cv2.BFMatcher().knnMatch(des_a, des_b, k=2) if m.distance < ratio * n.distance]
    if len(good) < 4:
        return None, 0
    src = np.float32([kp_a[m.queryIdx].pt for m in good])
    dst = np.float32([kp_b[m.trainIdx].pt for m in good])
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold)
    return H, 0 if mask is None else int(mask.sum())


def mean_accuracy(errors: list[float], thresholds: tuple[float, ...]) -> float:
    """Mean over thresholds of the share of errors at or under each (failures are ``inf``)."""
    e = np.asarray(errors, dtype=np.float64)
    return float(np.mean([(e <= t).mean() for t in thresholds]))
