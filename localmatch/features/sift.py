"""OpenCV SIFT keypoints with RootSIFT (default) or SIFT descriptors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from localmatch.config import check_flag, check_number
from localmatch.features import FEATURES, ExtractorConfig, FeatureExtractor
from localmatch.io import Image, Resized, resize_to_working
from localmatch.types import Features


SIFT_CENTRE_OFFSET = 0.25  # px of the working image, see extract_sift


@dataclass(frozen=True)
class SiftConfig(ExtractorConfig):
    """Options of the SIFT extractor: :class:`~localmatch.features.ExtractorConfig`'s (``max_features``:
    the strongest by response), plus:

    Attributes:
        root: RootSIFT descriptors (L1-normalise, square root) instead of L2-normalised SIFT.
        upright: all orientations 0 (no rotation invariance; one descriptor per location).
        contrast_threshold: OpenCV's DoG contrast threshold (lower finds more in flat images).
    """

    root: bool = True
    upright: bool = False
    contrast_threshold: float = 0.04

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flag(self, "root", "upright")
        check_number(self, "contrast_threshold", 0)


def extract_sift(image: Image, config: SiftConfig) -> Features:
    """SIFT on the working-size grayscale image; keypoints returned in original pixels."""
    work = resize_to_working(image.gray(), config.max_side)
    sift = cv2.SIFT.create(nfeatures=config.max_features, contrastThreshold=config.contrast_threshold)
    keypoints: Sequence[cv2.KeyPoint]
    descriptors: np.ndarray | None
    if config.upright:  # detect, reset orientations, then describe: two passes over the pyramid
        keypoints = _upright(sift.detect(work.pixels, None))[: config.max_features]
        keypoints, descriptors = sift.compute(work.pixels, keypoints) if keypoints else ([], None)
    else:
        keypoints, descriptors = sift.detectAndCompute(work.pixels, None)
    return features_from_opencv(image, work, keypoints, descriptors, "rootsift" if config.root else "sift",
                                root=config.root)


def features_from_opencv(image: Image, work: Resized, keypoints, descriptors: np.ndarray | None,
                         extractor: str, *, root: bool = True, points: np.ndarray | None = None) -> Features:
    """Pack OpenCV SIFT keypoints found on the working image ``work`` into :class:`Features` in original
    pixels (``extractor`` names them), with RootSIFT descriptors when ``root``, else L2-normalised SIFT.

    ``points``: ``(N, 2)`` the keypoints' positions on the working image in the pixel-centre convention,
    when the caller has corrected OpenCV's itself (default: OpenCV's less SIFT's quarter pixel, below).
    """
    if not keypoints or descriptors is None:
        return _empty(image, extractor)
    descriptors = _normalise(descriptors.astype(np.float32), root)
    # OpenCV reports positions on its first octave (the image doubled) halved, which puts them a quarter
    # pixel right of and below the pixel-centre convention used everywhere else (pixel (0, 0) is centred
    # on (0, 0)): a rotation by 180 degrees otherwise comes out as x' = W - 0.5 - x instead of W - 1 - x.
    if points is None:
        points = np.array([k.pt for k in keypoints], dtype=np.float32) - SIFT_CENTRE_OFFSET
    mean_scale = 0.5 * (work.scale[0] + work.scale[1])
    return Features(
        keypoints=work.to_original(points),
        scales=np.array([k.size for k in keypoints], dtype=np.float32) / mean_scale,
        orientations=np.deg2rad(np.array([k.angle for k in keypoints], dtype=np.float32)),
        scores=np.array([k.response for k in keypoints], dtype=np.float32),
        descriptors=descriptors,
        image_size=image.size,
        extractor=extractor,
        working_scale=mean_scale,
    )


def _upright(keypoints: Sequence[cv2.KeyPoint]) -> list[cv2.KeyPoint]:
    """Orientation 0 for all, dropping the copies SIFT makes of a location for extra orientations."""
    seen: set[tuple[float, float, float]] = set()
    out: list[cv2.KeyPoint] = []
    for k in sorted(keypoints, key=lambda k: -k.response):
        key = (round(k.pt[0], 2), round(k.pt[1], 2), round(k.size, 2))
        if key not in seen:
            seen.add(key)
            out.append(cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0.0, k.response, k.octave, k.class_id))
    return out


def _normalise(descriptors: np.ndarray, root: bool) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012) or L2: every row comes out with unit L2 norm."""
    if root:
        descriptors /= np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-12)
        return np.sqrt(descriptors, out=descriptors)
    return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)


def _empty(image: Image, name: str) -> Features:
    zeros = np.zeros((0,), np.float32)
    return Features(np.zeros((0, 2), np.float32), zeros, zeros, zeros, np.zeros((0, 128), np.float32), image.size, name)


FEATURES.add("sift", FeatureExtractor("sift", SiftConfig, extract_sift, side_by_side=True))
