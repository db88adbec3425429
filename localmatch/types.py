"""Typed results passed between the stages: features, matches, verification.

All points are ``(x, y)`` in ORIGINAL image pixels with the origin at the centre of the top-left
pixel (see :mod:`localmatch.io`). Matrices map image A to image B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Features:
    """Local features of one image.

    Attributes:
        keypoints: ``(N, 2) float32`` (x, y) in original pixels.
        scales: ``(N,) float32`` feature size (diameter of the meaningful neighbourhood) in original pixels.
        orientations: ``(N,) float32`` in radians, counter-clockwise from the x axis as OpenCV gives
            them (0 for upright features).
        scores: ``(N,) float32`` detector response; larger is stronger.
        descriptors: ``(N, D) float32``, each row L2-normalised.
        image_size: ``(width, height)`` of the original image.
        extractor: what made them (``"rootsift"``, ``"sift"``...); only alike features are matched.
        working_scale: working-image size / original size the keypoints were detected at (1.0 when
            not resized); localisation noise in original pixels grows as ``1 / working_scale``.
    """

    keypoints: np.ndarray
    scales: np.ndarray
    orientations: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    extractor: str
    working_scale: float = 1.0

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if self.keypoints.shape != (n, 2):
            raise ValueError(f"keypoints must be (N, 2), got {self.keypoints.shape}")
        for name in ("scales", "orientations", "scores"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        if self.descriptors.ndim != 2 or len(self.descriptors) != n:
            raise ValueError(f"descriptors must be ({n}, D), got {self.descriptors.shape}")
        for name in ("keypoints", "descriptors"):  # one NaN point made RANSAC find no model for the whole pair
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} hold NaN or infinite values")

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def descriptor_dim(self) -> int:
        return int(self.descriptors.shape[1])


@dataclass(frozen=True, eq=False)
class Matches:
    """Putative correspondences between image A and image B.

    Attributes:
        indices: ``(K, 2) int64``; row ``(i, j)`` pairs keypoint ``i`` of A with keypoint ``j`` of B.
        scores: ``(K,) float32`` match quality in [0, 1], larger is better (for the ratio matcher:
            1 - distance ratio), used to order samples and draw.
    """

    indices: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.indices)
        if self.indices.shape != (k, 2) or not np.issubdtype(self.indices.dtype, np.integer):
            raise ValueError(f"indices must be (K, 2) integers, got {self.indices.shape} {self.indices.dtype}")
        if self.scores.shape != (k,):
            raise ValueError(f"scores must be ({k},), got {self.scores.shape}")

    def __len__(self) -> int:
        return len(self.indices)

    @staticmethod
    def empty() -> "Matches":
        return Matches(np.zeros((0, 2), np.int64), np.zeros((0,), np.float32))


@dataclass(frozen=True, eq=False)
class Correspondences:
    """Point pairs between A and B, best first, ready for robust estimation.

    Attributes:
        points_a: ``(K, 2) float32`` in A's original pixels.
        points_b: ``(K, 2) float32`` the corresponding points in B.
        scores: ``(K,) float32`` match quality, descending.
        working_scale_a, working_scale_b: each image's working size / original size (see
            :class:`Features`). RANSAC's threshold holds in each image's working pixels, whatever the
            two images' sizes (see :func:`localmatch.api.verify_correspondences`).
    """

    points_a: np.ndarray
    points_b: np.ndarray
    scores: np.ndarray
    working_scale_a: float = 1.0
    working_scale_b: float = 1.0

    def __len__(self) -> int:
        return len(self.points_a)


@dataclass(frozen=True, eq=False)
class Verification:
    """The answer to "do A and B show the same thing, and how are they related?".

    Attributes:
        num_matches: putative matches that went into robust estimation.
        num_inliers: matches consistent with the estimated model (0 when there is none).
        points_a: ``(M, 2) float32`` inlier points in A, original pixels.
        points_b: ``(M, 2) float32`` the corresponding points in B.
        geometry: ``"homography"``, ``"fundamental"``, ``"affine"``, or None when no model was found.
        matrix: ``(3, 3) float64`` mapping A to B in original pixels (``x_b ~ H x_a``,
            ``x_b^T F x_a = 0``; an affine map has last row ``0 0 1``), or None.
        is_match: ``num_inliers >= min_inliers`` of the verification config.
        score: inlier ratio ``num_inliers / num_matches`` in [0, 1] (0 when there is no model).
        features: ``Features.extractor`` of the matched features (``"rootsift"``, ``"asift"``...), or None
            for a dense matcher and for correspondences verified without features.
        refined: the homography was refined by matching A against B warped into A's frame
            (:mod:`localmatch.refine`); the points, counts and score are then the refinement's.
    """

    num_matches: int
    num_inliers: int
    points_a: np.ndarray
    points_b: np.ndarray
    geometry: str | None
    matrix: np.ndarray | None
    is_match: bool
    score: float
    features: str | None = None
    refined: bool = False

    def to_dict(self) -> dict:
        """JSON-ready summary (no point arrays)."""
        return {
            "num_matches": self.num_matches,
            "num_inliers": self.num_inliers,
            "geometry": self.geometry,
            "matrix": None if self.matrix is None else self.matrix.tolist(),
            "is_match": self.is_match,
            "score": self.score,
            "features": self.features,
            "refined": self.refined,
        }


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        path: the image's path as given when it was added.
        image_id: its id in the database.
        rank: 1-based position in the result list.
        score: what the list is sorted by: for verified hits ``num_inliers + (global_score + 1) / 4``
            (at least ``min_inliers``); for the others ``(global_score + 1) / 4`` (below 1); without
            re-ranking, ``global_score``.
        global_score: the shortlist's similarity: inner product of the global descriptors (cosine), or in
            an ``asmk``/``rasmk`` database the normalised ASMK kernel score.
        num_inliers: inliers of the geometric verification (fewer than ``min_inliers`` for a hit that did
            not verify; 0 without re-ranking or when no model was found).
        geometry: the fitted model's name, or None.
        matrix: ``(3, 3)`` from the query to this image in original pixels, or None. A hit that did not
            verify keeps the model that was fitted anyway, a rough one (RANSAC stops early on such pairs):
            look at ``verified`` before using it.
        verified: ``num_inliers >= min_inliers``.
    """

    path: str
    image_id: int
    rank: int
    score: float
    global_score: float
    num_inliers: int = 0
    geometry: str | None = None
    matrix: np.ndarray | None = None
    verified: bool = False

    def to_dict(self) -> dict:
        return {"rank": self.rank, "path": self.path, "score": self.score, "global_score": self.global_score,
                "num_inliers": self.num_inliers, "geometry": self.geometry, "verified": self.verified,
                "matrix": None if self.matrix is None else np.asarray(self.matrix).tolist()}
