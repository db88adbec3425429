"""The pair API: ``verify(a, b)``, and the steps that turn matches into a verification."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from localmatch.config import Config, build_config, require_whole
from localmatch.features import FEATURES, extract_pair, load_for, stages_of_pair
from localmatch.geometry import Model, RansacConfig, estimate
from localmatch.io import ImageSource, load_image
from localmatch.matching import MATCHERS, Matcher, default_matcher
from localmatch.refine import check_refinable, refine_homography
from localmatch.types import Correspondences, Features, Matches, Verification

#: A pair with at least this many inliers counts as the same thing (COLMAP's two-view default).
DEFAULT_MIN_INLIERS = 15


def verify(
    a: ImageSource | Features,
    b: ImageSource | Features,
    *,
    features: str = "sift",
    matcher: str | None = None,
    geometry: str = "auto",
    backend: str = "opencv",
    min_inliers: int = DEFAULT_MIN_INLIERS,
    feature_config: Config | dict | None = None,
    matcher_config: Config | dict | None = None,
    ransac: RansacConfig | dict | None = None,
    fallback_features: str | None = None,
    refine: bool = False,
) -> Verification:
    """Do images A and B show the same thing, and how are they related?

    Args:
        a, b: image paths, encoded bytes, RGB arrays, loaded images, or features already extracted.
        features: extractor name (``localmatch.FEATURES.names()``), used for images given as sources.
        matcher: matcher name (``localmatch.MATCHERS.names()``); a dense matcher (``"loftr"``) takes the
            images themselves and ignores ``features``. By default the features' own
            (:func:`~localmatch.matching.default_matcher`): ``"lightglue"`` for DISK and ALIKED,
            ``"lighterglue"`` for XFeat, ``"nn"`` for the others.
        geometry: ``"auto"`` (homography or fundamental matrix, whichever the data supports),
            ``"homography"``, ``"fundamental"`` or ``"affine"``.
        backend: robust estimator, ``"opencv"`` (USAC MAGSAC++) or ``"pycolmap"`` (LO-RANSAC).
        min_inliers: inliers needed for ``is_match``.
        feature_config, matcher_config, ransac: options of each stage (config objects or dicts).
            ``ransac.threshold`` is in working-image pixels: RANSAC runs on each image's working pixels
            (a large photo and a small copy each in their own).
        fallback_features: when A and B do not verify, extract these features (default options) from
            both images, match them with ``nn`` and verify again; ``"asift"`` (SIFT on affine-simulated
            views) recovers pairs with strong viewpoint change, at about 0.5-2.5 s per retried pair (in two
            stages: the views up to tilt sqrt 2, then the tilt-2 ones only if those did not verify).
            Needs images, not features. Pairs that verify at once cost nothing more.
        refine: when the pair verifies with a homography (the retry's included) that tilts A by about 25
            degrees or more, warp B into A's frame by it (or A into B's, when B is the finer there), match
            the features again and correct the homography by what is left (:func:`localmatch.refine.refine_homography`): more
            exact under slant, for one more extraction (about 0.1 s for SIFT at 1024 px); other pairs cost
            nothing more. Needs images and a sparse matcher.

    Returns:
        :class:`~localmatch.types.Verification`, all points and the matrix in original pixels: the
        retry's when ``fallback_features`` was tried and verified, else the first one
        (``Verification.features`` says which); refined when ``refine`` held (``Verification.refined``).

    Raises:
        ImageError: an image could not be decoded (the message names it and says why).
        UnknownNameError: a features, matcher, geometry or backend name is not registered.
    """
    check_min_inliers(min_inliers)  # before any extraction
    given = a if isinstance(a, Features) else b if isinstance(b, Features) else None
    matcher = matcher or default_matcher(features if given is None else given.extractor)
    m = MATCHERS.get(matcher)
    if refine:
        check_refinable(m)
    if fallback_features is not None:
        FEATURES.get(fallback_features)  # an unknown name fails before any work
    options: dict[str, Any] = dict(geometry=geometry, backend=backend, min_inliers=min_inliers, ransac=ransac)
    if isinstance(a, Features) or isinstance(b, Features):
        if m.dense or fallback_features is not None or refine:
            why = (f"matcher {matcher!r} matches images" if m.dense else
                   "fallback_features extracts from the images" if fallback_features is not None else
                   "refine warps image B")
            raise ValueError(f"{why}; give images, not features")
        return _match_and_verify(a, b, features, feature_config, m, matcher_config, options)[0]
    if fallback_features is not None or refine:
        # decode once: the retry and the refinement read the same images
        first_config = None if m.dense else FEATURES.get(features).make_config(feature_config)
        a, b = load_for(a, first_config), load_for(b, first_config)
    if m.dense:
        correspondences = m.run(load_image(a), load_image(b), m.make_config(matcher_config))
        return _with_retry(verify_correspondences(correspondences, **options), a, b, fallback_features, options)
    result, features_a, features_b = _match_and_verify(a, b, features, feature_config, m, matcher_config, options)
    result = _with_retry(result, a, b, fallback_features, options)
    if not refine:
        return result
    return refine_homography(result, features_a, features_b, a, b, features=features,
                             feature_config=feature_config, matcher=m, matcher_config=matcher_config, backend=backend,
                             ransac=ransac, min_inliers=min_inliers)


def _match_and_verify(a: ImageSource | Features, b: ImageSource | Features, features: str,
                      feature_config: Config | dict | None, matcher: Matcher, matcher_config: Config | dict | None,
                      options: dict[str, Any]) -> tuple[Verification, Features, Features]:
    """Extract (unless given), match with the sparse ``matcher`` and verify; the features are returned
    for the refinement."""
    features_a, features_b = extract_pair(a, b, features, feature_config)
    matcher.check(features_a, features_b)
    matches = matcher.run(features_a, features_b, matcher.make_config(matcher_config))
    return verify_matches(features_a, features_b, matches, **options), features_a, features_b


def _with_retry(result: Verification, a: ImageSource, b: ImageSource, fallback_features: str | None,
                options: dict[str, Any]) -> Verification:
    """``result``, or the retry's with ``fallback_features`` when that verifies where ``result`` did not."""
    if result.is_match or fallback_features is None:
        return result
    retry = retry_in_stages(a, b, fallback_features, **options)
    return result if retry is None else retry


def retry_in_stages(a: ImageSource, b: ImageSource, features: str, **options: Any) -> Verification | None:
    """Verify A and B with ``features`` (default options) and ``nn``, stage by stage for an extractor that
    has stages (ASIFT: the views up to tilt sqrt 2 first, then the tilt-2 views added): the first
    verification that matches, or None when none does."""
    extractor = FEATURES.get(features)
    config = extractor.make_config()
    for features_a, features_b in stages_of_pair(extractor, load_for(a, config), load_for(b, config), config):
        retry = verify(features_a, features_b, matcher="nn", **options)
        if retry.is_match:
            return retry
    return None


def correspondences_of(features_a: Features, features_b: Features, matches: Matches) -> Correspondences:
    """The matched points of A and B, best match first."""
    return matched_points(features_a.keypoints, features_b.keypoints, matches,
                          features_a.working_scale, features_b.working_scale)


def matched_points(keypoints_a: np.ndarray, keypoints_b: np.ndarray, matches: Matches,
                   working_scale_a: float = 1.0, working_scale_b: float = 1.0) -> Correspondences:
    """``(N, 2)`` and ``(M, 2)`` keypoints indexed by the matches, best match first (working scales as
    :class:`~localmatch.types.Correspondences`)."""
    if len(matches) and (matches.indices.min() < 0 or matches.indices[:, 0].max() >= len(keypoints_a)
                         or matches.indices[:, 1].max() >= len(keypoints_b)):  # -1 would quietly take the last
        raise ValueError(f"match indices out of range: A has {len(keypoints_a)} keypoints and B {len(keypoints_b)}")
    order = np.argsort(-matches.scores, kind="stable")
    return Correspondences(keypoints_a[matches.indices[order, 0]], keypoints_b[matches.indices[order, 1]],
                           matches.scores[order], working_scale_a, working_scale_b)


def verify_matches(features_a: Features, features_b: Features, matches: Matches, **options: Any) -> Verification:
    """Robustly fit a model to putative matches and summarise the result (options as
    :func:`verify_correspondences`); ``Verification.features`` names the features' extractor."""
    result = verify_correspondences(correspondences_of(features_a, features_b, matches), **options)
    return dataclasses.replace(result, features=features_a.extractor)


def verify_correspondences(
    correspondences: Correspondences,
    *,
    geometry: str = "auto",
    backend: str = "opencv",
    min_inliers: int = DEFAULT_MIN_INLIERS,
    ransac: RansacConfig | dict | None = None,
    only_matches: bool = False,
) -> Verification:
    """Fit a model to point pairs given best first (PROSAC samples them in that order).

    Pairs with fewer correspondences than ``min_inliers`` cannot be a match and are not estimated.
    With ``only_matches`` (the re-ranker's setting), RANSAC also stops once a model with ``min_inliers``
    inliers would have been found (see :func:`localmatch.geometry.estimate`): quicker on pairs that do
    not match, but their best-effort model, which ``is_match`` rejects anyway, is then a rougher one.
    """
    check_min_inliers(min_inliers)
    config = build_config(RansacConfig, ransac, {}, "ransac")
    model = None
    if len(correspondences) >= min_inliers:
        # The threshold is in working pixels. Each image's points go to its own working pixels, times
        # 1 / the smaller working scale: the same problem, in coordinates no smaller than original pixels.
        # OpenCV's USAC fits a little differently at another magnitude (BENCHMARKS.md, "RANSAC in each
        # image's working pixels"), so a pair at one working scale is fitted in original pixels as before.
        unit = min(correspondences.working_scale_a, correspondences.working_scale_b)
        factor_a, factor_b = correspondences.working_scale_a / unit, correspondences.working_scale_b / unit
        model = estimate(correspondences.points_a * factor_a, correspondences.points_b * factor_b, geometry,
                         backend=backend, config=config.replace(threshold=config.threshold / unit),
                         min_inliers=min_inliers if only_matches else 0)
        if model is not None:
            model = model.for_scaled_points(1 / factor_a, 1 / factor_b)
    return verification_from_model(correspondences, model, min_inliers)


def check_min_inliers(min_inliers: int) -> None:
    """``min_inliers`` must be a whole number >= 1: with 0, a pair with no inliers at all would be a match."""
    require_whole(min_inliers, "min_inliers", 1)


def verification_from_model(correspondences: Correspondences, model: Model | None, min_inliers: int) -> Verification:
    """Pack an estimated model (or None) into a :class:`Verification`."""
    num_matches = len(correspondences)
    if model is None:
        empty = np.zeros((0, 2), np.float32)
        return Verification(num_matches, 0, empty, empty, None, None, False, 0.0)
    num_inliers = model.num_inliers
    return Verification(
        num_matches=num_matches,
        num_inliers=num_inliers,
        points_a=np.asarray(correspondences.points_a[model.inliers], np.float32),
        points_b=np.asarray(correspondences.points_b[model.inliers], np.float32),
        geometry=model.geometry,
        matrix=model.matrix,
        is_match=num_inliers >= min_inliers,
        score=num_inliers / max(num_matches, 1),
    )
