"""Refining a verified homography: one image is warped into the other's frame by it, and matched again.

SIFT is covariant with similarities, not with the affine and perspective distortions of a viewpoint
change: under them its keypoints land a pixel or more off the point their partner marks, and the
homography fitted to them inherits the error (graf's wall seen at 20-60 degrees). Once B is warped into
A's frame by the estimated homography, what is left between A and the warped B is close to the identity,
so features found on the warped B sit where A's do, and a homography fitted to those matches corrects
the first one. This is the rectify-and-match-again step of view-synthesis matchers (MODS); here it is
run once, on the features the frame's image already has.

Frames (all in the pixel-centre convention):
- A's original pixels ``x_a``; B's original pixels ``x_b``; the first estimate maps ``x_b ~ H x_a``.
- The refinement frame ``u``: the working image of A (or of B, when B samples the shared part more
  finely), ``T`` mapping it to that image's original pixels. The other image is drawn on it
  (``warped(u) = other(M u)``, ``M = H T`` from A's frame, ``H^-1 T`` from B's) and described; the
  frame image's features are moved into it.
- The correction ``R`` maps the frame image's features to the warped image's (``u_w ~ R u``), so the
  refined homography is ``M R T^-1`` from A's frame and its inverse from B's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from localmatch.config import Config, build_config
from localmatch.features import FEATURES, load_for
from localmatch.geometry import HOMOGRAPHY, RansacConfig, estimate, project
from localmatch.io import Image, ImageSource, working_scale
from localmatch.matching import Matcher
from localmatch.types import Features, Verification

#: Largest displacement, in the frame's working pixels, between a feature of the frame's image and its
#: match on the warped image: the first estimate is good to a few pixels, so a partner further off is wrong.
GATE = 8.0
#: Inlier threshold of the correcting homography, in the frame's working pixels (the first fit's is 3):
#: after the warp, true partners sit within about a pixel of each other.
THRESHOLD = 1.0
#: Features nearer than this (working pixels) to where the warped image ends are not used: the warp fills
#: what lies outside it with black, whose edge makes keypoints of its own.
BORDER = 8
#: Share of the first fit's inliers that the refined homography must still explain within the first fit's
#: threshold: a correction fitted to matches in one part of the image must not tilt the rest away.
KEEP_FIRST = 0.5
#: Refine only where the homography tilts A: the median, over the first fit's inliers, of the ratio of
#: the singular values of its local linear map (ASIFT's tilt; 1.1 is about 25 degrees) must reach this.
#: Under a similarity (zoom, rotation, blur, light) SIFT's keypoints already sit where their partners'
#: do, and the warp would only resample the image: on oxford_affine_vgg such pairs came out up to 1 px
#: worse or a little better, for 0.1 s each (BENCHMARKS.md).
MIN_TILT = 1.1


def check_refinable(matcher: Matcher) -> None:
    """Raise ``ValueError`` before any work when ``matcher`` cannot refine: it must match features."""
    if matcher.dense:
        raise ValueError(f"refine matches B again on features, which matcher {matcher.name!r} does not take")


def refine_homography(verification: Verification, features_a: Features, features_b: Features, image_a: ImageSource,
                      image_b: ImageSource, *, features: str, feature_config: Config | dict | None, matcher: Matcher,
                      matcher_config: Config | dict | None, backend: str = "opencv",
                      ransac: RansacConfig | dict | None = None, min_inliers: int = 15) -> Verification:
    """The verification with its homography refined by matching one image against the other warped into
    its frame.

    The frame is the working image of whichever of A and B samples the part they share more finely (A
    when they are alike): its features are reused, and the other image is warped into it and described.
    Described in the coarser one's frame, the finer one's keypoints would lose the precision the first
    fit had from them.

    Args:
        verification: a verified homography from A to B (any other result is returned as it is).
        features_a, features_b: the features the first estimate came from (or any others of the extractor
            ``features`` with ``feature_config``, with which the warped image is described).
        image_a, image_b: A and B (decoded, or anything :func:`~localmatch.io.load_image` takes); only the
            one warped is decoded, and only when the homography tilts A.
        matcher: a sparse matcher for ``features``, with ``matcher_config``.
        backend, ransac: the robust estimator and its options (its threshold is replaced by
            :data:`THRESHOLD`).
        min_inliers: the refined fit must keep at least this many inliers.

    Returns:
        When the homography tilts A by at least :data:`MIN_TILT` and the refinement holds (at least
        ``min_inliers`` inliers, and a refined homography that still explains :data:`KEEP_FIRST` of the
        first fit's inliers within the first fit's threshold): a :class:`Verification` whose matrix is the
        refined homography and whose points, counts and score are the refinement's (the warped image's
        features mapped back into its original pixels), ``refined=True``, ``features`` as given.
        Otherwise ``verification`` unchanged.
    """
    H = verification.matrix
    if not verification.is_match or verification.geometry != HOMOGRAPHY or H is None:
        return verification
    if np.median(tilts(H, verification.points_a)) < MIN_TILT:
        return verification
    extractor = FEATURES.get(features)
    config = extractor.make_config(feature_config)
    scale_a, scale_b = (working_scale(f.image_size, config.max_side) for f in (features_a, features_b))
    centre = np.median(verification.points_a, axis=0)
    b_per_a = float(np.sqrt(abs(np.linalg.det(_jacobian(H, centre[None])[0])))) * scale_b / scale_a
    frame_is_a = b_per_a <= 1
    # The frame's own features are reused; the other image is warped into the frame (by H into A's, by
    # H^-1 into B's) and described.
    if frame_is_a:
        frame, other_image = _frame(features_a, scale_a, H), image_b
    else:
        frame, other_image = _frame(features_b, scale_b, np.linalg.inv(H)), image_a
    other_image = load_for(other_image, config)
    warped, inside = _warp(other_image, frame.to_other, frame.size)
    ours = replace(frame.features, keypoints=frame.from_original(frame.features.keypoints), image_size=frame.size)
    theirs = extractor.run(Image(warped, f"{other_image.source} warped into the other image's frame"), config)
    ours = _subset(ours, _at_least_from_border(ours.keypoints, inside))
    theirs = _subset(theirs, _at_least_from_border(theirs.keypoints, inside))
    matches = matcher.run(ours, theirs, matcher.make_config(matcher_config)).indices
    matches = matches[np.linalg.norm(ours.keypoints[matches[:, 0]] - theirs.keypoints[matches[:, 1]], axis=1) <= GATE]
    if len(matches) < min_inliers:
        return verification
    first_config = build_config(RansacConfig, ransac, {}, "ransac")
    model = estimate(ours.keypoints[matches[:, 0]], theirs.keypoints[matches[:, 1]], HOMOGRAPHY, backend=backend,
                     config=first_config.replace(threshold=THRESHOLD))
    if model is None or model.num_inliers < min_inliers:
        return verification
    # x_other ~ to_other R to_frame^-1 x_frame
    corrected = frame.to_other @ model.matrix @ np.linalg.inv(frame.to_original)
    refined = corrected if frame_is_a else np.linalg.inv(corrected)
    # The correction is fitted where the matches are; it must still explain the first fit's inliers.
    first_error = np.linalg.norm(project(verification.points_a, refined)[0] - verification.points_b, axis=1)
    if np.count_nonzero(first_error * scale_b <= first_config.threshold) < \
            KEEP_FIRST * verification.num_inliers:
        return verification
    inliers = matches[model.inliers]
    points_frame = project(ours.keypoints[inliers[:, 0]], frame.to_original)[0].astype(np.float32)
    points_other = project(theirs.keypoints[inliers[:, 1]], frame.to_other)[0].astype(np.float32)
    points_a, points_b = (points_frame, points_other) if frame_is_a else (points_other, points_frame)
    return replace(verification, num_matches=len(matches), num_inliers=model.num_inliers, points_a=points_a,
                   points_b=points_b, matrix=refined / refined[2, 2], score=model.num_inliers / len(matches),
                   refined=True)


@dataclass(frozen=True)
class _Frame:
    """One image's working frame, and the maps out of it (pixel-centre convention).

    Attributes:
        features: the image's features (original pixels).
        size: ``(width, height)`` of the working image.
        to_original: ``(3, 3)`` frame points to the image's original pixels.
        to_other: ``(3, 3)`` frame points to the other image's original pixels, scaled so that the frame's
            centre has a positive last coordinate (in front of the other camera).
    """

    features: Features
    size: tuple[int, int]
    to_original: np.ndarray
    to_other: np.ndarray

    def from_original(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` original pixels to frame points, float32."""
        return project(points, np.linalg.inv(self.to_original))[0].astype(np.float32)


def _frame(features: Features, scale: float, to_image_of_other: np.ndarray) -> _Frame:
    """The working frame (at ``scale``) of the image ``features`` come from; ``to_image_of_other`` maps that
    image's original pixels to the other image's."""
    width, height = (max(1, round(side * scale)) for side in features.image_size)
    to_original = _frame_to_original(features.image_size, (width, height))
    to_other = to_image_of_other @ to_original
    if (to_other @ [width / 2, height / 2, 1])[2] < 0:
        to_other = -to_other  # the same homography, in front where the frame's centre is
    return _Frame(features, (width, height), to_original, to_other)


def tilts(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N,)``: at each of ``(N, 2)`` points, the ratio of the larger to the smaller singular value of the
    ``(3, 3)`` homography's local linear map (its Jacobian): 1 for a similarity, 1 / cos(theta) for a
    plane seen at angle theta, as ASIFT's tilt."""
    singular = np.linalg.svd(_jacobian(matrix, points), compute_uv=False)
    return singular[:, 0] / np.maximum(singular[:, 1], 1e-12)


def _jacobian(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, 2, 2)``: the derivative of the ``(3, 3)`` homography at each of ``(N, 2)`` points."""
    x, y = np.asarray(points, np.float64).T
    h = matrix / matrix[2, 2]
    w = h[2, 0] * x + h[2, 1] * y + 1
    u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
    v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    return np.stack([np.stack([h[0, 0] - u * h[2, 0], h[0, 1] - u * h[2, 1]], -1),
                     np.stack([h[1, 0] - v * h[2, 0], h[1, 1] - v * h[2, 1]], -1)], -2) / w[:, None, None]


def _frame_to_original(original: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
    """``(3, 3)``: points of a ``frame``-sized copy of an image to its ``original`` pixels (pixel centres)."""
    sx, sy = frame[0] / original[0], frame[1] / original[1]
    return np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])


def _warp(image: Image, to_image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``image`` drawn on a ``size`` grid whose point ``u`` shows ``image`` at ``to_image @ u``, and a
    ``(h, w) bool`` mask of the grid points at least :data:`BORDER` pixels inside the image's part, and
    in front of it (``to_image``'s last coordinate positive: a plane's horizon can cross the grid).

    Where the grid samples the image more sparsely than its pixels (B larger than A, or a zoom), the
    image is first shrunk by that factor (area averaging) so that the bilinear warp does not alias."""
    centre = np.array([[(size[0] - 1) / 2, (size[1] - 1) / 2]])
    step = np.linalg.norm(project(centre + [[1, 0], [0, 1]], to_image)[0] - project(centre, to_image)[0], axis=1)
    shrink = 1 / float(np.sqrt(step[0] * step[1]))
    pixels = image.pixels
    if np.isfinite(shrink) and shrink < 0.67:
        small = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
        pixels = cv2.resize(pixels, small, interpolation=cv2.INTER_AREA)
        to_image = np.linalg.inv(_frame_to_original(image.size, small)) @ to_image
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(pixels, to_image, size, flags=flags | cv2.INTER_LINEAR)
    ones = np.full(pixels.shape[:2], 255, np.uint8)
    inside = cv2.warpPerspective(ones, to_image, size, flags=flags | cv2.INTER_NEAREST)
    columns, rows = np.arange(size[0]), np.arange(size[1])
    depth = to_image[2, 0] * columns[None, :] + to_image[2, 1] * rows[:, None] + to_image[2, 2]
    inside[depth <= 0] = 0
    inside = cv2.erode(inside, np.ones((2 * BORDER + 1, 2 * BORDER + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0)
    return warped, inside > 0


def _at_least_from_border(points: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``(N,) bool``: which ``(N, 2)`` grid points fall on the mask."""
    h, w = inside.shape
    cols = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    return inside[rows, cols]


def _subset(features: Features, keep: np.ndarray) -> Features:
    """The features where ``(N,) bool`` ``keep`` is true."""
    return replace(features, keypoints=features.keypoints[keep], scales=features.scales[keep],
                   orientations=features.orientations[keep], scores=features.scores[keep],
                   descriptors=features.descriptors[keep])
