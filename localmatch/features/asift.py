"""ASIFT: SIFT on affine-simulated views of the image, for strong viewpoint change.

SIFT is invariant to zoom and rotation but not to the tilt of a plane seen at a slant; past about
40-50 degrees of viewpoint change its descriptors no longer agree. ASIFT (Morel & Yu, SIAM J. Imaging
Sciences 2009) detects and describes SIFT on simulated views of the image (the image squeezed by tilt
``t`` along directions every ``72 / t`` degrees) and maps every keypoint back to the image, so one of
the views of A usually looks like one of the views of B. OpenCV's ``cv2.AffineFeature`` does the
simulation; this module caps the result and packs it as RootSIFT :class:`Features`.

Cost: with ``max_tilt=2`` (tilts 1, sqrt 2 and 2: 10 views) extraction takes about 1 s per 1024 px image
on 2 cores, some 7x SIFT, so it is meant for pairs that plain SIFT could not verify (``verify(...,
fallback_features="asift")``, which runs it in two stages: :func:`asift_stages`), not for indexing a
collection.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from localmatch.config import check_number, check_whole
from localmatch.features import FEATURES, ExtractorConfig, FeatureExtractor
from localmatch.features.sift import SIFT_CENTRE_OFFSET, features_from_opencv
from localmatch.io import Image, Resized, resize_to_working
from localmatch.types import Features

NAME = "asift"


@dataclass(frozen=True)
class AsiftConfig(ExtractorConfig):
    """Options of the ASIFT extractor: :class:`~localmatch.features.ExtractorConfig`'s (``max_features``
    over all views, the strongest by response; 8192 by default), plus:

    Attributes:
        max_tilt: simulate tilts ``sqrt(2) ** k`` for ``k = 0 .. max_tilt`` (OpenCV's ``maxTilt``): 2 reaches
            tilt 2, about 60 degrees of viewpoint change; each level adds views and time.
        contrast_threshold: OpenCV's DoG contrast threshold in every view.
    """

    max_features: int = 8192
    max_tilt: int = 2
    contrast_threshold: float = 0.04

    def __post_init__(self) -> None:
        super().__post_init__()
        check_whole(self, "max_tilt", 0)
        check_number(self, "contrast_threshold", 0)


def extract_asift(image: Image, config: AsiftConfig) -> Features:
    """ASIFT on the working-size grayscale image; keypoints returned in original pixels.

    Orientations are those measured in each view. Positions are corrected per view (see
    :func:`view_offsets`) so that they follow the pixel-centre convention like plain SIFT's.
    """
    work = resize_to_working(image.gray(), config.max_side)
    return _strongest(image, work, [_detect(work, config, 0, config.max_tilt)], config.max_features)


def asift_stages(image: Image, config: AsiftConfig) -> Iterator[Features]:
    """ASIFT in stages, as MODS does (Mishkin, Matas & Perdoch, CVIU 2015): first the views up to tilt
    sqrt 2, then each further tilt level added to them. Yields the features after each stage (capped at
    ``max_features`` like :func:`extract_asift`); the last stage's equal :func:`extract_asift`'s exactly.

    A caller that stops at the first stage that verifies skips the remaining views: the views up to tilt
    sqrt 2 cost about half of all ten, and they verify three of the five pairs that the benchmarks'
    retries recover (graf 1-5 and 1-6 among them; BENCHMARKS.md).
    """
    work = resize_to_working(image.gray(), config.max_side)
    found = [_detect(work, config, 0, min(1, config.max_tilt))]
    yield _strongest(image, work, found, config.max_features)
    for level in range(2, config.max_tilt + 1):
        found.append(_detect(work, config, level, level))
        yield _strongest(image, work, found, config.max_features)


@dataclass(frozen=True)
class _Detections:
    """What SIFT found on some of the views, before the cap: OpenCV keypoints, ``(N, 128)`` descriptors
    and ``(N, 2)`` positions on the working image, corrected to the pixel-centre convention."""

    keypoints: list
    descriptors: np.ndarray
    points: np.ndarray


def _detect(work: Resized, config: AsiftConfig, first_level: int, last_level: int) -> _Detections:
    """SIFT on the views of tilt levels ``first_level .. last_level`` (tilt ``sqrt(2) ** level``)."""
    tilts, rolls = opencv_views(last_level)
    start = len(opencv_views(first_level - 1)[0]) if first_level > 0 else 0
    affine = cv2.AffineFeature.create(cv2.SIFT.create(contrastThreshold=config.contrast_threshold))
    affine.setViewParams(tilts[start:].tolist(), rolls[start:].tolist())
    keypoints, descriptors = affine.detectAndCompute(work.pixels, None)
    if not keypoints:
        return _Detections([], np.zeros((0, 128), np.float32), np.zeros((0, 2), np.float32))
    views = start + np.array([k.class_id for k in keypoints])  # class_id counts the views given
    points = (np.array([k.pt for k in keypoints]) - view_offsets(last_level)[views]).astype(np.float32)
    # Rotated views are padded by repeating the border, and OpenCV keeps what SIFT finds there.
    height, width = work.pixels.shape[:2]
    inside = np.flatnonzero((points >= -0.5).all(axis=1) & (points[:, 0] <= width - 0.5)
                            & (points[:, 1] <= height - 0.5))
    return _Detections([keypoints[int(i)] for i in inside], descriptors[inside], points[inside])


def _strongest(image: Image, work: Resized, found: list[_Detections], max_features: int) -> Features:
    """The ``max_features`` strongest detections of all ``found`` (by response, ties in view order)."""
    keypoints = [k for d in found for k in d.keypoints]
    responses = np.array([k.response for k in keypoints], np.float32)
    keep = np.argsort(-responses, kind="stable")[:max_features]
    descriptors = np.concatenate([d.descriptors for d in found])
    points = np.concatenate([d.points for d in found])
    return features_from_opencv(image, work, [keypoints[i] for i in keep], descriptors[keep], NAME,
                                points=points[keep])


@functools.cache
def view_offsets(max_tilt: int) -> np.ndarray:
    """``(V, 2)`` how far OpenCV's mapped-back position of a keypoint found in view ``v`` lies from the
    pixel-centre position, in working-image pixels (view ``v`` is the keypoint's ``class_id``).

    OpenCV rotates the image by ``phi`` (exactly), squeezes x by nearest-pixel sampling at ``1 / t``
    and maps keypoints back with the inverse of ``diag(1 / t, 1) R(phi)``. In the view, SIFT's position
    is a quarter pixel right of and below the pixel centre (see ``SIFT_CENTRE_OFFSET``); and view
    column ``k`` holds rotated column ``floor(k t)``, not ``k t``, on average ``mean(frac(k t))`` short
    (half a pixel for ``t = sqrt 2``, none for ``t = 2``). Both are taken back through ``R(phi)^T
    diag(t, 1)``. Measured on a 180-degree rotation, this takes the views' disagreement from up to
    1.2 px to under 0.05 px in every view (astronaut, coffee, chelsea).
    """
    tilts, rolls = opencv_views(max_tilt)
    k = np.arange(1, 4097)
    shortfall = np.array([np.mean(k * np.float32(t) - np.floor(k * np.float32(t))) if t != 1 else 0.0
                          for t in tilts])
    in_view = np.stack([SIFT_CENTRE_OFFSET * tilts + shortfall, np.full_like(tilts, SIFT_CENTRE_OFFSET)], axis=1)
    c, s = np.cos(np.deg2rad(rolls)), np.sin(np.deg2rad(rolls))
    offsets = np.stack([c * in_view[:, 0] + s * in_view[:, 1], -s * in_view[:, 0] + c * in_view[:, 1]], axis=1)
    offsets.flags.writeable = False  # cached: one array per max_tilt for every call
    return offsets


def opencv_views(max_tilt: int) -> tuple[np.ndarray, np.ndarray]:
    """Tilt and rotation (degrees) of each view, in ``cv2.AffineFeature``'s order (its constructor's loop,
    in its float arithmetic; the Python binding does not return ``getViewParams``)."""
    tilts, rolls, tilt = [1.0], [0.0], 1.0
    for _ in range(max_tilt):
        tilt *= float(np.float32(2 ** 0.5))
        step = np.float32(np.float32(72) / tilt)
        count = int(np.floor(np.float32(180) / step))
        if np.float32(count * step) == np.float32(180):
            count -= 1
        tilts += [float(np.float32(tilt))] * (count + 1)
        rolls += [float(np.float32(step * j)) for j in range(count + 1)]
    return np.array(tilts), np.array(rolls)


FEATURES.add(NAME, FeatureExtractor(NAME, AsiftConfig, extract_asift, stages=asift_stages, side_by_side=True))
