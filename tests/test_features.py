"""SIFT / RootSIFT extraction."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import localmatch
from localmatch import FEATURES, UnknownNameError
from localmatch.features.sift import SiftConfig
from localmatch.io import Image


def test_rootsift_features_have_the_documented_shapes(astronaut):
    f = localmatch.extract(astronaut)
    n = len(f)
    assert 500 < n <= 2048
    assert f.keypoints.shape == (n, 2) and f.keypoints.dtype == np.float32
    assert f.scales.shape == f.orientations.shape == f.scores.shape == (n,)
    assert f.descriptors.shape == (n, 128) and f.descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert (f.descriptors >= 0).all()
    assert f.image_size == (512, 512) and f.extractor == "rootsift" and f.working_scale == 1.0
    assert (f.keypoints >= -0.5).all() and (f.keypoints[:, 0] < 511.5).all() and (f.keypoints[:, 1] < 511.5).all()


def test_options_max_features_upright_and_plain_sift(astronaut):
    assert len(localmatch.extract(astronaut, max_features=100)) <= 100
    upright = localmatch.extract(astronaut, upright=True, max_features=300)
    assert 0 < len(upright) <= 300 and (upright.orientations == 0).all()
    # one descriptor per location: SIFT's copies of a location for its other orientations are dropped
    assert len(np.unique(np.c_[upright.keypoints, upright.scales].round(2), axis=0)) == len(upright)
    turning = localmatch.extract(astronaut).orientations  # radians, as documented
    assert turning.min() >= 0 and 6 < turning.max() < 2 * np.pi + 1e-6
    # a lower contrast threshold finds what the default leaves out of a low-contrast picture (measured 18 / 826)
    faint = Image((astronaut.pixels * 0.15 + 100).astype(np.uint8), "faint")
    assert len(localmatch.extract(faint, contrast_threshold=0.01)) > 10 * len(localmatch.extract(faint))
    plain = localmatch.extract(astronaut, config=SiftConfig(root=False))
    assert plain.extractor == "sift"
    np.testing.assert_allclose(np.linalg.norm(plain.descriptors, axis=1), 1.0, atol=1e-5)


def test_features_refuse_values_that_are_not_finite(astronaut):
    import dataclasses

    f = localmatch.extract(astronaut, max_features=50)
    for name in ("keypoints", "descriptors"):
        broken = getattr(f, name).copy()
        broken[3, 1] = np.nan
        with pytest.raises(ValueError, match=f"{name} hold NaN"):
            dataclasses.replace(f, **{name: broken})


def test_image_without_keypoints_gives_empty_features():
    f = localmatch.extract(np.full((64, 80), 128, np.uint8))
    assert len(f) == 0 and f.keypoints.shape == (0, 2) and f.descriptors.shape == (0, 128)
    assert f.image_size == (80, 64)


def test_keypoints_are_in_original_pixels_after_resizing(astronaut):
    # B is A enlarged 3x; extracted at a 1024 working size, B's keypoints must come back in B's pixels.
    crop = Image(np.ascontiguousarray(astronaut.pixels[:341, :397]), "crop")  # 397 x 341, odd sizes
    big = Image(cv2.resize(crop.pixels, (397 * 3, 341 * 3), interpolation=cv2.INTER_CUBIC), "big")
    fa, fb = localmatch.extract(crop), localmatch.extract(big)
    assert fb.image_size == (1191, 1023) and fb.working_scale < 0.9
    result = localmatch.verify(fa, fb, geometry="homography")
    # Pixel-centre convention: x_b + 0.5 = 3 (x_a + 0.5).
    truth = np.array([[3.0, 0, 1.0], [0, 3.0, 1.0], [0, 0, 1]])
    from conftest import corner_error
    assert corner_error(result.matrix, truth, 397, 341) < 0.75
    # and their sizes too: true matches are 3 times as large in B (measured: median 3.01)
    nn = localmatch.MATCHERS.get("nn")
    matches = nn.run(fa, fb, nn.make_config(None)).indices
    true = np.linalg.norm(3 * (fa.keypoints[matches[:, 0]] + 0.5) - 0.5 - fb.keypoints[matches[:, 1]], axis=1) < 2
    assert true.sum() > 100
    assert np.median(fb.scales[matches[true, 1]] / fa.scales[matches[true, 0]]) == pytest.approx(3.0, rel=0.05)


def test_keypoints_follow_the_pixel_centre_convention(astronaut):
    # Rotating by 180 degrees maps pixel centre x to W - 1 - x exactly; OpenCV's raw SIFT positions give
    # W - 0.5 - x (a quarter pixel off in each image), which the extractor corrects.
    a = localmatch.extract(astronaut)
    b = localmatch.extract(Image(np.ascontiguousarray(astronaut.pixels[::-1, ::-1]), "rot180"))
    from scipy.spatial import cKDTree

    mapped = 511.0 - b.keypoints
    distance, nearest = cKDTree(a.keypoints).query(mapped)
    close = distance < 1.0
    assert close.sum() > 500
    np.testing.assert_allclose(np.median(a.keypoints[nearest[close]] - mapped[close], axis=0), 0.0, atol=0.02)


def test_unknown_names_and_options_list_the_valid_ones(astronaut):
    with pytest.raises(UnknownNameError, match="sift"):
        localmatch.extract(astronaut, features="nope")
    with pytest.raises(ValueError, match="max_features"):
        localmatch.extract(astronaut, max_featurez=10)
    assert "sift" in FEATURES.names()


def test_learned_extractors_and_matchers_load_their_modules_on_first_use():
    """Their modules import torch (about 1 s); until asked for, they are names in the registries."""
    code = """if True:
        import sys
        import localmatch
        from localmatch.errors import UnknownNameError
        assert {"aliked", "disk", "keynet-affnet", "sift", "xfeat"} <= set(localmatch.FEATURES.names())
        assert {"lightglue", "lighterglue", "loftr", "nn"} <= set(localmatch.MATCHERS.names())
        assert "torch" not in sys.modules and "xfeat" in localmatch.FEATURES
        try:
            localmatch.FEATURES.get("bogus")
        except UnknownNameError as e:
            assert "aliked" in str(e) and "torch" not in sys.modules, e
        assert localmatch.FEATURES.get("xfeat").name == "xfeat" and "torch" in sys.modules
        assert localmatch.MATCHERS.get("lighterglue").accepts == ("xfeat",)
        assert "localmatch.matching.loftr" not in sys.modules
    """
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_extractor_whose_config_lacks_the_working_size_options_is_refused():
    """The database and the CLI decode and scale every extractor's images by max_side and max_pixels, which
    ExtractorConfig gives every extractor's config."""
    from dataclasses import dataclass

    from localmatch.config import Config
    from localmatch.features import ExtractorConfig, FeatureExtractor

    @dataclass(frozen=True)
    class NoSizeConfig(Config):
        max_features: int = 10

    with pytest.raises(TypeError, match="'mine'.*NoSizeConfig must subclass localmatch.features.ExtractorConfig"):
        FeatureExtractor("mine", NoSizeConfig, lambda image, config: None)  # type: ignore[arg-type]

    @dataclass(frozen=True)
    class MyConfig(ExtractorConfig):
        max_features: int = 10
        sigma: float = 1.0

    mine = FeatureExtractor("mine", MyConfig, lambda image, config: None)
    assert mine.make_config(max_side=512).max_side == 512 and mine.make_config().max_features == 10
    with pytest.raises(ValueError, match="MyConfig.max_pixels must be a whole number >= 1"):
        mine.make_config(max_pixels=0)
    for name in FEATURES.names():  # every built-in one has them
        config = FEATURES.get(name).make_config()
        assert isinstance(config, ExtractorConfig) and config.max_pixels > 0


def test_config_from_dict_and_replace():
    cfg = SiftConfig.from_dict({"max_features": 10})
    assert cfg.max_features == 10 and cfg.replace(upright=True).upright
    with pytest.raises(ValueError, match="valid options"):
        SiftConfig.from_dict({"bogus": 1})


def test_extract_pair_side_by_side_equals_one_after_the_other(astronaut, coffee, tmp_path):
    from localmatch.features import extract_pair

    assert FEATURES.get("sift").side_by_side and not FEATURES.get("disk").side_by_side
    a, b = extract_pair(astronaut, coffee, "sift", {"max_features": 1000})
    for got, want in ((a, localmatch.extract(astronaut, max_features=1000)),
                      (b, localmatch.extract(coffee, max_features=1000))):
        np.testing.assert_array_equal(got.keypoints, want.keypoints)
        np.testing.assert_array_equal(got.descriptors, want.descriptors)
    given, extracted = extract_pair(a, coffee, "sift", {"max_features": 1000})
    assert given is a and len(extracted) == len(b)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(localmatch.ImageError, match="broken.jpg"):
        extract_pair(astronaut, str(broken))
