"""End to end: verify() on real photographs and on the shared Oxford affine data."""

from __future__ import annotations

import numpy as np
import pytest

import localmatch
from localmatch.geometry import RansacConfig, estimate
from conftest import corner_error, points_on_a_plane, shared_data, warp

# Rotation, scale, shear and perspective; the target canvas is 469 x 437 (not multiples of 8).
H_TRUE = np.array([[0.82, 0.21, 23.0], [-0.17, 0.91, 61.0], [2.1e-4, -1.3e-4, 1.0]])


@pytest.fixture(scope="module")
def warped(astronaut):
    return warp(astronaut, H_TRUE, (469, 437))


@pytest.mark.parametrize("backend", ["opencv", "pycolmap"])
def test_synthetic_homography_on_a_real_photo(astronaut, warped, backend):
    result = localmatch.verify(astronaut, warped, geometry="homography", backend=backend)
    assert result.is_match and result.geometry == "homography"
    assert corner_error(result.matrix, H_TRUE, 512, 512) < 1.0
    assert result.points_a.shape == result.points_b.shape == (result.num_inliers, 2)
    projected = np.c_[result.points_a, np.ones(result.num_inliers)] @ H_TRUE.T
    err = np.linalg.norm(projected[:, :2] / projected[:, 2:] - result.points_b, axis=1)
    assert np.median(err) < 1.0  # inlier points are real correspondences in original pixels
    assert 0 < result.score <= 1


def test_auto_picks_homography_for_a_plane_and_affine_works(astronaut, warped):
    assert localmatch.verify(astronaut, warped).geometry == "homography"
    affine = localmatch.verify(astronaut, warped, geometry="affine")
    assert affine.geometry == "affine" and affine.num_inliers > 15


def test_working_size_smaller_than_the_image(astronaut, warped):
    result = localmatch.verify(astronaut, warped, geometry="homography", feature_config={"max_side": 333})
    assert result.is_match and corner_error(result.matrix, H_TRUE, 512, 512) < 2.0


def test_different_photos_do_not_match(astronaut, coffee):
    result = localmatch.verify(astronaut, coffee)
    assert not result.is_match and result.num_inliers < localmatch.DEFAULT_MIN_INLIERS


def test_inputs_as_path_bytes_array_and_features(tmp_path, astronaut, warped):
    import PIL.Image

    path = tmp_path / "warped.png"
    PIL.Image.fromarray(warped.pixels).save(path)
    features = localmatch.extract(astronaut)
    results = [localmatch.verify(astronaut.pixels, path), localmatch.verify(features, path.read_bytes()),
               localmatch.verify(astronaut, warped)]
    for r in results[1:]:
        np.testing.assert_allclose(r.matrix, results[0].matrix, atol=1e-6)
        assert r.num_inliers == results[0].num_inliers


def test_deterministic(astronaut, warped):
    a, b = localmatch.verify(astronaut, warped), localmatch.verify(astronaut, warped)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.num_inliers == b.num_inliers


def test_featureless_image_is_a_no_match_not_an_error(astronaut):
    result = localmatch.verify(astronaut, np.full((100, 120, 3), 90, np.uint8))
    assert result.num_matches == 0 and result.geometry is None and result.matrix is None and not result.is_match


# Easy pairs: small changes of blur, zoom, viewpoint and light (image 1 to 2 and 3).
EASY_PAIRS = [("bikes", 2), ("bikes", 3), ("boat", 2), ("boat", 3), ("graf", 2), ("leuven", 2), ("leuven", 3)]


@pytest.mark.slow
@pytest.mark.parametrize("sequence,k", EASY_PAIRS)
def test_oxford_affine_easy_pairs_agree_with_ground_truth(sequence, k):
    root = shared_data("oxford_affine_vgg") / sequence
    first, other = sorted(root.glob("img1.p?m"))[0], sorted(root.glob(f"img{k}.p?m"))[0]
    H_true = np.loadtxt(root / f"H1to{k}p")
    result = localmatch.verify(first, other, geometry="homography")
    image = localmatch.load_image(first)
    assert result.is_match
    assert corner_error(result.matrix, H_true, image.width, image.height) < 2.0


def test_only_the_reranker_caps_ransac_at_the_wanted_inliers(monkeypatch):
    # The pair API keeps searching for its best-effort model; re-ranking (only_matches) gives up on
    # models that could not reach min_inliers.
    import localmatch.api as api
    from localmatch.types import Correspondences

    seen = []
    real = api.estimate
    monkeypatch.setattr(api, "estimate", lambda *a, **k: seen.append(k["min_inliers"]) or real(*a, **k))
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 500, (40, 2)).astype(np.float32)
    pairs = Correspondences(points, points + 3.0, np.linspace(1, 0, 40, dtype=np.float32))
    plain = api.verify_correspondences(pairs, geometry="homography")
    capped = api.verify_correspondences(pairs, geometry="homography", only_matches=True)
    assert seen == [0, 15]
    assert plain.is_match and capped.is_match and plain.num_inliers == capped.num_inliers == 40


def _features(points: np.ndarray, working_scale: float) -> localmatch.Features:
    n = len(points)
    zeros = np.zeros(n, np.float32)
    return localmatch.Features(points.astype(np.float32), zeros, zeros, zeros, np.eye(n, 8, dtype=np.float32),
                               (500, 500), "rootsift", working_scale)


def _one_to_one(n: int) -> localmatch.Matches:
    """Keypoint i of A matched to keypoint i of B, scores falling from 1 to 0.5 (best first)."""
    return localmatch.Matches(np.c_[np.arange(n), np.arange(n)], np.linspace(1, 0.5, n, dtype=np.float32))


def test_the_ransac_threshold_is_in_each_images_working_pixels():
    """30 exact correspondences and 10 whose points in B are 4.5 original pixels off. At 3 working pixels,
    those 10 are outliers when B was worked on at full size (A's size does not matter: its points are
    exact) and inliers when B was worked on at half size (4.5 original pixels are 2.25 working ones). The
    homography found maps A's original pixels to B's whatever the scales."""
    pa, pb = points_on_a_plane(H_TRUE, np.r_[np.zeros(30), np.full(10, 4.5)])
    matches = _one_to_one(40)
    options = dict(geometry="homography", ransac={"threshold": 3.0, "max_iterations": 1000})
    for scales, inliers in (((1.0, 1.0), 30), ((0.5, 1.0), 30), ((0.25, 1.0), 30), ((1.0, 0.5), 40),
                            ((0.25, 0.5), 40)):
        result = localmatch.verify_matches(_features(pa, scales[0]), _features(pb, scales[1]), matches, **options)
        assert result.num_inliers == inliers, scales
        assert corner_error(result.matrix, H_TRUE, 500, 500) < 2.0, scales


def test_a_pair_at_one_working_scale_is_fitted_in_original_pixels():
    """OpenCV's USAC fits the same problem a little differently at another coordinate magnitude, so a pair
    whose images share a working scale is fitted on its original pixels with the threshold over that scale:
    exactly the model :func:`~localmatch.geometry.estimate` gives there."""
    pa, pb = points_on_a_plane(H_TRUE, np.random.default_rng(3).normal(0, 1.5, 60))
    matches = _one_to_one(60)
    result = localmatch.verify_matches(_features(pa, 0.5), _features(pb, 0.5), matches, geometry="homography")
    direct = estimate(pa.astype(np.float32), pb.astype(np.float32), "homography", config=RansacConfig(threshold=6.0))
    np.testing.assert_array_equal(result.matrix, direct.matrix)
    assert result.num_inliers == direct.num_inliers


def test_correspondences_go_to_ransac_best_match_first():
    """PROSAC samples the first correspondences first, so matched_points orders them by score."""
    from localmatch.api import matched_points

    scores = np.array([0.2, 0.9, 0.5, 0.7], np.float32)
    matches = localmatch.Matches(np.c_[np.arange(4), np.arange(4)[::-1]], scores)
    keypoints = np.arange(8, dtype=np.float32).reshape(4, 2)
    pairs = matched_points(keypoints, keypoints * 10, matches)
    np.testing.assert_array_equal(pairs.scores, scores[[1, 3, 2, 0]])
    np.testing.assert_array_equal(pairs.points_a, keypoints[[1, 3, 2, 0]])
    np.testing.assert_array_equal(pairs.points_b, keypoints[[2, 0, 1, 3]] * 10)


def test_fewer_matches_than_min_inliers_are_not_estimated():
    """Ten exact matches cannot reach 15 inliers: no model is fitted (and none reported)."""
    pa, pb = points_on_a_plane(H_TRUE, np.zeros(10))
    matches = localmatch.Matches(np.c_[np.arange(10), np.arange(10)], np.ones(10, np.float32))
    result = localmatch.verify_matches(_features(pa, 1.0), _features(pb, 1.0), matches, geometry="homography")
    assert (result.num_matches, result.num_inliers, result.geometry, result.matrix) == (10, 0, None, None)
    assert localmatch.verify_matches(_features(pa, 1.0), _features(pb, 1.0), matches, geometry="homography",
                                     min_inliers=10).num_inliers == 10
