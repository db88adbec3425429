"""Region proposers for R-ASMK: boxes ``(x0, y0, x1, y1)`` in an image's original pixel coordinates.

A proposer is a function ``(width, height, keypoints (N, 2)) -> (R, 4) float32`` registered by name. Boxes
a user gives (for example from an object detector) bypass the proposer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from localmatch.registry import Registry

RegionProposer = Callable[[int, int, np.ndarray], np.ndarray]
REGION_PROPOSERS: Registry[RegionProposer] = Registry("region proposer")


def _positions(length: float, side: float, count: int) -> np.ndarray:
    if count <= 1 or length <= side:
        return np.array([max(0.0, (length - side) / 2)])
    return np.linspace(0.0, length - side, count)


@REGION_PROPOSERS.register("grid")
def grid_regions(width: int, height: int, keypoints: np.ndarray | None = None, *, levels: int = 3,
                 overlap: float = 0.4) -> np.ndarray:
    """The whole image plus R-MAC-style square regions (Tolias et al., ICLR 2016).

    Level ``l`` (1..``levels``) places squares of side ``2 min(W, H) / (l + 1)`` on a regular grid, ``l``
    across the shorter side and as many across the longer side as keep neighbours about ``overlap``
    apart: 1 + 2 + 6 + 12 = 21 boxes for a 4:3 image with 3 levels.
    """
    boxes = [(0.0, 0.0, width - 1.0, height - 1.0)]
    short, long_ = min(width, height), max(width, height)
    for level in range(1, levels + 1):
        side = 2.0 * short / (level + 1)
        step = side * (1.0 - overlap)
        across_short = level
        across_long = max(level, int(np.ceil((long_ - side) / step)) + 1)
        nx, ny = (across_long, across_short) if width >= height else (across_short, across_long)
        for y0 in _positions(height, side, ny):
            for x0 in _positions(width, side, nx):
                boxes.append((x0, y0, min(x0 + side, width) - 1.0, min(y0 + side, height) - 1.0))
    return np.unique(np.round(np.array(boxes, np.float32), 2), axis=0)


@REGION_PROPOSERS.register("clusters")
def keypoint_clusters(width: int, height: int, keypoints: np.ndarray, *, counts: tuple[int, ...] = (2, 4, 8),
                      min_points: int = 16, coverage: float = 2.0) -> np.ndarray:
    """The whole image plus the boxes of keypoint clusters: for each ``k`` in ``counts``, k-means (faiss,
    seed 0) of the ``(x, y)`` positions into ``k`` groups, each group of at least ``min_points`` boxed from
    its ``coverage``-th to its ``100 - coverage``-th percentile on each axis (a stray point does not
    stretch the box). Where features crowd on objects, the boxes follow them; no detector is trained.
    """
    import faiss

    boxes = [(0.0, 0.0, width - 1.0, height - 1.0)]
    points = np.ascontiguousarray(keypoints, dtype=np.float32).reshape(-1, 2)
    for k in counts:
        if len(points) < k * min_points:
            continue
        kmeans = faiss.Kmeans(2, k, niter=20, seed=0, verbose=False, min_points_per_centroid=1)
        kmeans.train(points)
        labels = kmeans.index.search(points, 1)[1][:, 0]
        for group in range(k):
            members = points[labels == group]
            if len(members) >= min_points:
                lo, hi = np.percentile(members, coverage, axis=0), np.percentile(members, 100 - coverage, axis=0)
                boxes.append((lo[0], lo[1], hi[0], hi[1]))
    return np.array(boxes, np.float32)


@REGION_PROPOSERS.register("full")
def full_image(width: int, height: int, keypoints: np.ndarray | None = None) -> np.ndarray:
    """The whole image only: R-ASMK with this proposer is ASMK."""
    return np.array([[0.0, 0.0, width - 1.0, height - 1.0]], np.float32)
