"""ASIFT features and the pair API's fallback to them for strong viewpoint change."""

from __future__ import annotations

import json

import numpy as np
import pytest

import localmatch
from conftest import corner_error, shared_data, warp
from localmatch import UnknownNameError
from localmatch.cli import main
from localmatch.io import Image


def tilted(image: Image, tilt: float, degrees: float) -> tuple[Image, np.ndarray]:
    """``image`` seen at a slant: squeezed by ``1 / tilt`` along the direction ``degrees`` from the x axis
    (an affine map; tilt 3 is about 70 degrees from the frontal view), with the affine map A -> B."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = rotation @ np.diag([1 / tilt, 1, 1]) @ rotation.T
    w, h = image.size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float) @ affine.T
    affine = np.array([[1, 0, 5 - corners[:, 0].min()], [0, 1, 5 - corners[:, 1].min()], [0, 0, 1]]) @ affine
    size = (int(np.ptp(corners[:, 0])) + 10, int(np.ptp(corners[:, 1])) + 10)
    return warp(image, affine, size), affine


@pytest.fixture(scope="module")
def slanted(astronaut):
    return tilted(astronaut, 3.0, 30.0)


def test_asift_features_are_capped_rootsift_in_original_pixels(astronaut):
    plain = localmatch.extract(astronaut)
    f = localmatch.extract(astronaut, "asift")
    assert f.extractor == "asift" and f.image_size == (512, 512)
    assert len(plain) < len(f) <= 8192  # ten views find more than one
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert (f.descriptors >= 0).all()  # RootSIFT
    assert (f.keypoints >= -0.5).all() and (f.keypoints < 511.5).all()
    strongest = localmatch.extract(astronaut, "asift", max_features=500)
    assert len(strongest) == 500
    assert strongest.scores.min() >= np.sort(f.scores)[-500] - 1e-6  # the cap keeps the strongest
    assert len(localmatch.extract(np.full((64, 80), 128, np.uint8), "asift")) == 0
    with pytest.raises(ValueError, match="max_tilt"):
        localmatch.extract(astronaut, "asift", max_tilt=-1)


def test_asift_keypoints_map_back_to_original_pixels_after_resizing(astronaut):
    # B is A enlarged 3x past the 1024 working size; with the views' keypoints mapped back by OpenCV the
    # homography still lands within a pixel (SIFT's own test allows 0.75 px).
    import cv2

    crop = Image(np.ascontiguousarray(astronaut.pixels[:341, :397]), "crop")
    big = Image(cv2.resize(crop.pixels, (397 * 3, 341 * 3), interpolation=cv2.INTER_CUBIC), "big")
    result = localmatch.verify(crop, big, features="asift", geometry="homography")
    truth = np.array([[3.0, 0, 1.0], [0, 3.0, 1.0], [0, 0, 1]])  # pixel centres: x_b + 0.5 = 3 (x_a + 0.5)
    assert result.features == "asift" and corner_error(result.matrix, truth, 397, 341) < 1.0


def test_asift_keypoints_follow_the_pixel_centre_convention(astronaut):
    # Under a 180-degree rotation (x -> W - 1 - x) every view of A has a twin view of B. OpenCV's
    # mapped-back positions disagree by up to 1.2 px between twins in the tilted views (its nearest-pixel
    # squeeze and SIFT's quarter pixel, turned by each view's rotation); the extractor's correction
    # brings the median disagreement to zero, as SIFT's own test asks of plain SIFT.
    from scipy.spatial import cKDTree

    a = localmatch.extract(astronaut, "asift")
    b = localmatch.extract(Image(np.ascontiguousarray(astronaut.pixels[::-1, ::-1]), "rot180"), "asift")
    mapped = 511.0 - b.keypoints
    distance, nearest = cKDTree(a.keypoints).query(mapped)
    close = distance < 1.0
    assert close.sum() > 4000
    np.testing.assert_allclose(np.median(a.keypoints[nearest[close]] - mapped[close], axis=0), 0.0, atol=0.02)


def test_asift_verifies_a_slant_that_sift_cannot(astronaut, slanted):
    b, truth = slanted
    sift = localmatch.verify(astronaut, b, geometry="homography")
    assert not sift.is_match and sift.features == "rootsift"
    asift = localmatch.verify(astronaut, b, features="asift", geometry="homography")
    assert asift.is_match and asift.num_inliers > 100
    assert corner_error(asift.matrix, truth, *astronaut.size) < 1.5


def test_fallback_retries_only_pairs_that_do_not_verify(astronaut, coffee, slanted):
    b, truth = slanted
    retried = localmatch.verify(astronaut, b, geometry="homography", fallback_features="asift")
    assert retried.is_match and retried.features == "asift"
    assert corner_error(retried.matrix, truth, *astronaut.size) < 1.5

    easy = warp(astronaut, np.array([[0.9, 0.1, 20], [-0.1, 0.9, 30], [0, 0, 1]]), (480, 470))
    assert localmatch.verify(astronaut, easy, fallback_features="asift").features == "rootsift"

    # Another photograph: the retry fails too, and the first answer is returned.
    other = localmatch.verify(astronaut, coffee, fallback_features="asift")
    assert not other.is_match and other.features == "rootsift"


def test_asift_stages_end_with_the_full_extraction(astronaut):
    from localmatch.features.asift import AsiftConfig, asift_stages

    full = localmatch.extract(astronaut, "asift")
    stages = list(asift_stages(astronaut, AsiftConfig()))
    assert len(stages) == 2  # views up to tilt sqrt 2, then the tilt-2 views added
    assert len(stages[0]) < len(stages[1]) == len(full)
    for got, want in ((stages[1].keypoints, full.keypoints), (stages[1].descriptors, full.descriptors),
                      (stages[1].scales, full.scales), (stages[1].scores, full.scores)):
        np.testing.assert_array_equal(got, want)
    assert len(list(asift_stages(astronaut, AsiftConfig(max_tilt=1)))) == 1
    single = list(asift_stages(astronaut, AsiftConfig(max_tilt=0)))
    assert len(single) == 1  # the frontal view alone, as extract_asift takes it
    np.testing.assert_array_equal(single[0].keypoints, localmatch.extract(astronaut, "asift", max_tilt=0).keypoints)


def test_asift_views_are_opencvs_and_take_the_contrast_threshold(astronaut):
    """Tilts 1, sqrt 2 (every 72 / sqrt 2 degrees) and 2 (every 36 degrees, 180 left out as the same view as
    0): 10 views for max_tilt 2, as the module says; SIFT's contrast threshold reaches every view."""
    from localmatch.features.asift import opencv_views

    tilts, rolls = opencv_views(2)
    assert len(tilts) == 10
    np.testing.assert_allclose(rolls[np.isclose(tilts, 2)], [0, 36, 72, 108, 144], atol=1e-4)
    np.testing.assert_allclose(rolls[np.isclose(tilts, 2 ** 0.5)], 72 / 2 ** 0.5 * np.arange(4), atol=1e-3)
    default, strict = (len(localmatch.extract(astronaut, "asift", max_tilt=0, contrast_threshold=t))
                       for t in (0.04, 0.1))
    assert strict < 0.7 * default


def test_fallback_stops_at_the_first_stage_that_verifies(astronaut, coffee, slanted, monkeypatch):
    from localmatch.features import asift

    levels = []
    detect = asift._detect
    monkeypatch.setattr(asift, "_detect", lambda work, config, first, last: levels.append((first, last))
                        or detect(work, config, first, last))
    b, truth = slanted  # tilt 3: beyond plain SIFT, within the first stage's tilt sqrt 2 views of both images
    retried = localmatch.verify(astronaut, b, geometry="homography", fallback_features="asift")
    assert retried.is_match and corner_error(retried.matrix, truth, *astronaut.size) < 1.5
    assert levels == [(0, 1), (0, 1)]
    levels.clear()
    assert not localmatch.verify(astronaut, coffee, fallback_features="asift").is_match
    assert levels == [(0, 1), (0, 1), (2, 2), (2, 2)]  # both stages, and no view twice


def test_fallback_errors_come_before_any_work(astronaut):
    features = localmatch.extract(astronaut)
    with pytest.raises(ValueError, match="give images, not features"):
        localmatch.verify(features, features, fallback_features="asift")
    with pytest.raises(UnknownNameError, match="asift"):
        localmatch.verify(astronaut, astronaut, fallback_features="asfit")


def test_fallback_decodes_each_file_once(astronaut, coffee, tmp_path, monkeypatch):
    import PIL.Image

    import localmatch.io

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PIL.Image.fromarray(astronaut.pixels).save(a)
    PIL.Image.fromarray(coffee.pixels).save(b)
    decoded = []
    decode = localmatch.io._decode
    monkeypatch.setattr(localmatch.io, "_decode", lambda f, name, *args: decoded.append(name) or decode(f, name, *args))
    result = localmatch.verify(str(a), str(b), fallback_features="asift")
    assert not result.is_match  # so the retry ran, on the images decoded for the first attempt
    assert sorted(decoded) == [str(a), str(b)]
    with pytest.raises(localmatch.ImageError, match="over the limit"):  # the first extractor's pixel limit holds
        localmatch.verify(str(a), str(b), fallback_features="asift", feature_config={"max_pixels": 1000})


def test_cli_fallback_features(astronaut, slanted, tmp_path, capsys):
    import PIL.Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PIL.Image.fromarray(astronaut.pixels).save(a)
    PIL.Image.fromarray(slanted[0].pixels).save(b)
    assert main(["verify", str(a), str(b), "--json", "--geometry", "homography", "--fallback-features", "asift"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["is_match"] is True and out["features"] == "asift"
    assert main(["verify", str(a), str(b)]) == 0
    assert "no match" in capsys.readouterr().out


def test_oxford_graf_strong_viewpoint_is_recovered_by_the_fallback():
    # graf 1-5 and 1-6 (about 50 and 60 degrees of viewpoint change): plain SIFT finds no model;
    # the ASIFT retry lands within 5 px of the ground truth (corner error, as the benchmark measures).
    root = shared_data("oxford_affine_vgg") / "graf"
    import cv2

    width, height = cv2.imread(str(root / "img1.ppm"), cv2.IMREAD_GRAYSCALE).shape[::-1]
    for k in (5, 6):
        pair = str(root / "img1.ppm"), str(root / f"img{k}.ppm")
        assert not localmatch.verify(*pair, geometry="homography").is_match
        result = localmatch.verify(*pair, geometry="homography", fallback_features="asift")
        assert result.is_match and result.features == "asift"
        assert corner_error(result.matrix, np.loadtxt(root / f"H1to{k}p"), width, height) < 5.0


def test_fallback_keeps_different_scenes_apart():
    # The retry matches 8192 features per image: it must not turn chance matches between photographs of
    # different places into a match (fundamental matrices allowed, as geometry="auto" does).
    root = shared_data("multiview_dev")
    scenes = sorted(p for p in root.iterdir() if p.is_dir())[:6]
    first = [sorted(p for p in s.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0] for s in scenes]
    for a, b in zip(first, first[1:]):
        result = localmatch.verify(str(a), str(b), fallback_features="asift")
        assert not result.is_match, (a.name, b.name, result.num_inliers)
