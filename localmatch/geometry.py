"""Robust two-view model estimation: homography, fundamental matrix, affine map, and the choice.

Backends, chosen by name:
- ``"opencv"`` (default): OpenCV's USAC framework with MAGSAC++ scoring, sigma-consensus local
  optimisation and MAGSAC polishing, seeded through ``UsacParams.randomGeneratorState``.
- ``"pycolmap"``: COLMAP's LO-RANSAC estimators, seeded through ``RANSACOptions.random_seed``.

Matrices map A to B: ``x_b ~ H x_a``, ``x_b^T F x_a = 0``, ``x_b = A [x_a; 1]``. Degenerate input
(too few points, repeated or collinear points, a singular result) gives ``None``, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from localmatch.config import Config, check_number, check_whole
from localmatch.errors import UnknownNameError
from localmatch.registry import Registry

HOMOGRAPHY, FUNDAMENTAL, AFFINE = "homography", "fundamental", "affine"
#: Models that can be asked for by name; ``"auto"`` picks homography or fundamental from the data.
GEOMETRIES = (HOMOGRAPHY, FUNDAMENTAL, AFFINE, "auto")
#: Smallest number of distinct correspondences each model is estimated from.
MIN_POINTS = {HOMOGRAPHY: 4, FUNDAMENTAL: 8, AFFINE: 3}
#: Points per random sample of the estimators (OpenCV USAC and COLMAP solve F from 7).
SAMPLE_SIZE = {HOMOGRAPHY: 4, FUNDAMENTAL: 7, AFFINE: 3}
#: Coordinate units per pixel in which OpenCV's USAC is given the points (and the threshold). Its MAGSAC++
#: weighs points up to a cutoff fixed in coordinate units, whatever the threshold: 7.5 for homographies and
#: affine maps, 2.5 for F (``maximum_thr`` in OpenCV's usac/ransac_solvers.cpp). On pixels its local
#: optimisation so leaned on points up to 7.5 px off, 2.5 times the default threshold; in units of 1/2.5 px
#: the cutoff is 3 px of the coordinates given, and the homographies come closer to the truth (BENCHMARKS.md,
#: "MAGSAC's cutoff"). That is the default threshold where those are working pixels (images not resized);
#: for another threshold (a resized photo's, in its working pixels; the refinement's 1 px) the cutoff stays
#: 3 px of the coordinates. F keeps pixels: its 2.5 px is already under the 3 px threshold.
USAC_UNITS_PER_PIXEL = {HOMOGRAPHY: 2.5, AFFINE: 2.5, FUNDAMENTAL: 1.0}
MIN_CAPPED_ITERATIONS = 100


@dataclass(frozen=True)
class RansacConfig(Config):
    """Options of robust estimation.

    Attributes:
        threshold: inlier threshold in pixels of the coordinates given (reprojection error for H
            and affine, Sampson-type epipolar distance for F).
        confidence: stop when the probability of having missed a better model is below 1 - this.
        max_iterations: hard cap on RANSAC iterations (bounds the time spent on non-matching pairs).
        seed: random seed; the same input and seed give the same output.
        max_h_inlier_ratio: ``auto`` takes the homography when ``inliers(H) / inliers(F)`` is above
            this (COLMAP's rule for planar or rotation-only scenes).
    """

    threshold: float = 3.0
    confidence: float = 0.9999
    max_iterations: int = 10000
    seed: int = 0
    max_h_inlier_ratio: float = 0.8

    def __post_init__(self) -> None:
        check_number(self, "threshold", 0, low_open=True)
        check_number(self, "confidence", 0, 1, low_open=True, high_open=True)
        check_whole(self, "max_iterations", 1)
        check_whole(self, "seed", 0)
        check_number(self, "max_h_inlier_ratio", 0, low_open=True)


@dataclass(frozen=True, eq=False)
class Model:
    """An estimated model.

    Attributes:
        geometry: ``"homography"``, ``"fundamental"`` or ``"affine"``.
        matrix: ``(3, 3) float64`` mapping A to B.
        inliers: ``(N,) bool`` mask over the correspondences given.
    """

    geometry: str
    matrix: np.ndarray
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    def for_scaled_points(self, scale_a: float, scale_b: float) -> Model:
        """The same model for A's points multiplied by ``scale_a`` and B's by ``scale_b``.

        With ``S = diag(s, s, 1)``: ``S_b H S_a^-1`` for a homography or affine map (``[2, 2]`` kept),
        ``S_b^-1 F S_a^-1`` for a fundamental matrix.
        """
        return Model(self.geometry, _for_scaled_points(self.geometry, self.matrix, scale_a, scale_b), self.inliers)


def _for_scaled_points(geometry: str, matrix: np.ndarray, scale_a: float, scale_b: float) -> np.ndarray:
    """``matrix`` (``(3, 3)``, or an affine map's ``(2, 3)``) as :meth:`Model.for_scaled_points` gives it."""
    # Products with diagonal matrices: the rows scaled by S_b (or S_b^-1), the columns by S_a^-1.
    row = 1 / scale_b if geometry == FUNDAMENTAL else scale_b
    rows, columns = np.array([row, row, 1.0])[: len(matrix)], np.array([1 / scale_a, 1 / scale_a, 1.0])
    return matrix * rows[:, None] * columns


Estimator = Callable[[str, np.ndarray, np.ndarray, RansacConfig], "tuple[np.ndarray, np.ndarray] | None"]
GEOMETRY_BACKENDS: Registry[Estimator] = Registry("geometry backend")


def project(points: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` points mapped by the homography ``H``, and their ``(N,)`` homogeneous scale (<= 0: behind)."""
    p = np.c_[np.asarray(points, np.float64).reshape(-1, 2), np.ones(len(points))] @ np.asarray(H, float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3], p[:, 2]


def estimate(points_a: np.ndarray, points_b: np.ndarray, geometry: str = "auto", *,
             backend: str = "opencv", config: RansacConfig = RansacConfig(), min_inliers: int = 0) -> Model | None:
    """Estimate the model that maps ``(N, 2)`` points of A onto their ``(N, 2)`` partners in B.

    Give the correspondences best first (by match score): the OpenCV backend samples them with
    PROSAC, which then finds good models in far fewer iterations.

    Args:
        geometry: one of :data:`GEOMETRIES`.
        backend: a name registered in :data:`GEOMETRY_BACKENDS`.
        min_inliers: the caller has no use for a model with fewer inliers. The iterations are then
            capped at what finds such a model with ``config.confidence`` if one exists (RANSAC's own
            stopping rule at that inlier ratio; see :func:`iterations_for`): on a pair with 30 matches
            of which 15 would have to fit F, 1175 iterations instead of 10000 that find nothing.

    Returns:
        The model with the most support, or None when the input is degenerate or nothing fits.
    """
    if geometry not in GEOMETRIES:
        raise UnknownNameError("geometry", geometry, list(GEOMETRIES))
    estimator = GEOMETRY_BACKENDS.get(backend)
    points_a = np.ascontiguousarray(points_a, dtype=np.float64).reshape(-1, 2)
    points_b = np.ascontiguousarray(points_b, dtype=np.float64).reshape(-1, 2)
    if len(points_a) != len(points_b):
        raise ValueError(f"point counts differ: {len(points_a)} vs {len(points_b)}")
    finite = np.isfinite(points_a).all(axis=1) & np.isfinite(points_b).all(axis=1)
    if not finite.all():  # one such point made OpenCV find no model for all the others
        model = estimate(points_a[finite], points_b[finite], geometry, backend=backend, config=config,
                         min_inliers=min_inliers)
        if model is None:
            return None
        inliers = np.zeros(len(points_a), bool)
        inliers[finite] = model.inliers
        return Model(model.geometry, model.matrix, inliers)
    n = len(points_a)
    if geometry != "auto":
        return _estimate_one(estimator, geometry, points_a, points_b, _capped(config, geometry, n, min_inliers))
    h = _estimate_one(estimator, HOMOGRAPHY, points_a, points_b, _capped(config, HOMOGRAPHY, n, min_inliers))
    if h is not None and h.num_inliers > config.max_h_inlier_ratio * n:
        return h  # F has at most every point as inlier, so it could not win: skip estimating it
    f = _estimate_one(estimator, FUNDAMENTAL, points_a, points_b, _capped(config, FUNDAMENTAL, n, min_inliers))
    if f is None:
        return h
    if h is None or h.num_inliers <= config.max_h_inlier_ratio * f.num_inliers:
        return f
    return h


def iterations_for(inlier_ratio: float, sample_size: int, confidence: float) -> int:
    """Random samples needed to draw one made only of inliers with probability ``confidence``:
    ``log(1 - confidence) / log(1 - inlier_ratio ** sample_size)``."""
    p = min(max(inlier_ratio, 0.0), 1.0) ** sample_size
    if p >= 1.0:
        return 1
    if p <= 0.0 or confidence >= 1.0:
        return np.iinfo(np.int32).max
    return int(np.ceil(np.log(1.0 - confidence) / np.log1p(-p)))


def _capped(config: RansacConfig, geometry: str, num_points: int, min_inliers: int) -> RansacConfig:
    """``config`` with at most the iterations that find a model of ``min_inliers`` inliers (if any)."""
    if min_inliers <= 0:
        return config
    needed = iterations_for(min_inliers / max(num_points, 1), SAMPLE_SIZE[geometry], config.confidence)
    return config.replace(max_iterations=min(config.max_iterations, max(needed, MIN_CAPPED_ITERATIONS)))


def _estimate_one(estimator: Estimator, geometry: str, points_a: np.ndarray, points_b: np.ndarray,
                  config: RansacConfig) -> Model | None:
    if _is_degenerate(points_a, points_b, MIN_POINTS[geometry]):
        return None
    try:
        result = estimator(geometry, points_a, points_b, config)
    except (cv2.error, ValueError, RuntimeError):  # backends signal hopeless input in their own ways
        return None
    if result is None:
        return None
    matrix, inliers = result
    matrix = np.asarray(matrix, dtype=np.float64)
    inliers = np.asarray(inliers).reshape(-1).astype(bool)
    if matrix.shape == (2, 3):
        matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or len(inliers) != len(points_a):
        return None
    if inliers.sum() < MIN_POINTS[geometry]:
        return None
    if geometry != FUNDAMENTAL:
        if abs(np.linalg.det(matrix)) < 1e-12 * max(np.abs(matrix).max(), 1e-300) ** 3:
            return None
        matrix = matrix / matrix[2, 2] if abs(matrix[2, 2]) > 1e-12 else matrix
    return Model(geometry, matrix, inliers)


def _is_degenerate(points_a: np.ndarray, points_b: np.ndarray, min_points: int) -> bool:
    """Too few distinct points, or all of them (nearly) on one line, in either image."""
    if len(points_a) < min_points or not (np.isfinite(points_a).all() and np.isfinite(points_b).all()):
        return True
    return any(_too_few_distinct(pts, min_points) or _nearly_collinear(pts) for pts in (points_a, points_b))


def _too_few_distinct(points: np.ndarray, min_points: int) -> bool:
    """Fewer than ``min_points`` points once those closer than 1/8 px count as one."""
    grid = np.round(points * 8.0).astype(np.int64)
    keys = grid[:, 0] * (1 << 32) + grid[:, 1]
    head = keys[: 4 * min_points]  # usually enough to tell, without hashing every point
    return len(np.unique(head)) < min_points and len(np.unique(keys)) < min_points


def _nearly_collinear(points: np.ndarray) -> bool:
    """The points' spread across their main axis is under 1/1000 of the spread along it (or nil)."""
    d = points - points.mean(axis=0)
    sxx, syy, sxy = float(d[:, 0] @ d[:, 0]), float(d[:, 1] @ d[:, 1]), float(d[:, 0] @ d[:, 1])
    # eigenvalues of the 2x2 scatter matrix, the smaller one as det / larger (no cancellation)
    half_trace, det = 0.5 * (sxx + syy), sxx * syy - sxy ** 2
    largest = half_trace + np.sqrt(max(half_trace ** 2 - det, 0.0))
    return largest <= 0 or det / largest / largest < 1e-6


def _usac_params(config: RansacConfig) -> cv2.UsacParams:
    p = cv2.UsacParams()
    p.threshold = float(config.threshold)
    p.confidence = float(config.confidence)
    p.maxIterations = int(config.max_iterations)
    p.randomGeneratorState = int(config.seed)
    p.sampler = cv2.SAMPLING_PROSAC  # callers pass matches best first
    p.score = cv2.SCORE_METHOD_MAGSAC
    p.loMethod = cv2.LOCAL_OPTIM_SIGMA
    p.final_polisher = cv2.MAGSAC
    p.final_polisher_iterations = 10
    return p


@GEOMETRY_BACKENDS.register("opencv")
def _opencv(geometry: str, points_a: np.ndarray, points_b: np.ndarray, config: RansacConfig):
    units = USAC_UNITS_PER_PIXEL[geometry]
    params = _usac_params(config.replace(threshold=config.threshold * units))
    pa, pb = (points_a * units).astype(np.float32), (points_b * units).astype(np.float32)
    if geometry == HOMOGRAPHY:
        matrix, mask = cv2.findHomography(pa, pb, params)
    elif geometry == FUNDAMENTAL:
        matrix, mask = cv2.findFundamentalMat(pa, pb, params)
    else:
        matrix, mask = cv2.estimateAffine2D(pa, pb, params=params)
    if matrix is None or mask is None:
        return None
    # fitted to points times `units`: the same model for the points themselves
    return _for_scaled_points(geometry, np.asarray(matrix, np.float64), 1 / units, 1 / units), mask


@GEOMETRY_BACKENDS.register("pycolmap")
def _pycolmap(geometry: str, points_a: np.ndarray, points_b: np.ndarray, config: RansacConfig):
    import pycolmap

    options = pycolmap.RANSACOptions()
    options.max_error = float(config.threshold)
    options.confidence = float(config.confidence)
    options.max_num_trials = int(config.max_iterations)
    options.min_num_trials = min(options.min_num_trials, int(config.max_iterations))
    options.random_seed = int(config.seed)
    if geometry == HOMOGRAPHY:
        result, key = pycolmap.estimate_homography_matrix(points_a, points_b, options), "H"
    elif geometry == FUNDAMENTAL:
        result, key = pycolmap.estimate_fundamental_matrix(points_a, points_b, options), "F"
    else:
        result, key = pycolmap.estimate_affine2d_robust(points_a, points_b, options), "tgt_from_src"
    if result is None:
        return None
    matrix = result[key]
    matrix = matrix.matrix() if hasattr(matrix, "matrix") else np.asarray(matrix)
    return matrix, result["inlier_mask"]
