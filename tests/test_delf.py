"""DELF-style attentive features from the ImageNet EfficientNet-Lite0 (``features="delf"``)."""

from __future__ import annotations

import json
import sqlite3

import cv2
import numpy as np
import pytest
import torch

import localmatch
from conftest import corner_error, shared_data, warp
from localmatch.database import DB_FILE, Database
from localmatch.errors import ConfigError
from localmatch.evaluate import evaluate, ground_truth_from_folders
from localmatch.features.delf import CELL_PER_PIXEL_NOISE, DelfConfig, content_box, window_contrast
from localmatch.shortlist.efficientnet_lite import EfficientNetLite0
from test_learned import needs_weights
from test_verify import H_TRUE

WEIGHTS = ("efficientnet-lite0",)


def test_a_cell_is_centred_where_its_receptive_field_is():
    """The keypoint convention (cell (i, j) at pixel (16 j + 15, 16 i + 15)) is where the network's input
    pixels that reach the cell are centred, with TF "same" padding. Only the wiring counts, so the weights
    are small and positive: every activation stays between ReLU6's bounds and every input pixel in a cell's
    receptive field reaches it."""
    torch.manual_seed(0)
    net = EfficientNetLite0().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.abs_()
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(0.01)
                module.bias.fill_(0.1)
    x = torch.rand(1, 3, 480, 640, requires_grad=True)
    cells = net.stride16_features(x)
    assert cells.shape == (1, 112, 30, 40)
    for i, j in ((12, 15), (14, 20), (20, 30)):
        (grad,) = torch.autograd.grad(cells[0, :, i, j].sum(), x, retain_graph=True)
        weight = grad.abs().sum(dim=(0, 1))
        centre_x = float((weight.sum(0) * torch.arange(640.0)).sum() / weight.sum())
        centre_y = float((weight.sum(1) * torch.arange(480.0)).sum() / weight.sum())
        assert abs(centre_x - (16 * j + 15)) < 0.5 and abs(centre_y - (16 * i + 15)) < 0.5


@pytest.fixture(scope="module")
def warped(astronaut):
    return warp(astronaut, H_TRUE, (469, 437))  # not multiples of 16


def test_delf_features_layout_in_original_pixels(warped):
    needs_weights(*WEIGHTS)
    f = localmatch.extract(warped, "delf", max_features=300, min_contrast=None)  # every cell, flat ones too
    assert len(f) == 300 and f.extractor == "delf" and f.descriptors.shape == (300, 112)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-4)
    assert list(f.scores) == sorted(f.scores, reverse=True) and f.scores[-1] > 0
    # 469 x 437 is described at 464 x 432 (multiples of 16): 29 x 27 cells, centred 15 px into each
    sx, sy = 464 / 469, 432 / 437
    np.testing.assert_allclose(f.working_scale, (sx + sy) / 2 / CELL_PER_PIXEL_NOISE, rtol=1e-6)
    columns = np.round((f.keypoints[:, 0] + 0.5) * sx - 0.5 - 15) / 16
    rows = np.round((f.keypoints[:, 1] + 0.5) * sy - 0.5 - 15) / 16
    assert np.allclose(columns, np.round(columns), atol=1e-3) and np.allclose(rows, np.round(rows), atol=1e-3)
    assert columns.min() >= 0 and columns.max() <= 28 and rows.min() >= 0 and rows.max() <= 26
    np.testing.assert_allclose(f.scales, 16 / ((sx + sy) / 2), rtol=1e-5)  # a cell's size in original pixels
    every_cell = localmatch.extract(warped, "delf", max_features=5000, min_contrast=None)
    assert len(every_cell) == 29 * 27
    np.testing.assert_allclose(every_cell.descriptors[:300], f.descriptors, atol=1e-6)  # the strongest first


def test_delf_pyramid_threshold_and_config_checks(warped):
    needs_weights(*WEIGHTS)
    pyramid = localmatch.extract(warped, "delf", scales=[0.5, 1.0], max_features=5000, min_contrast=None)
    assert len(pyramid) == 29 * 27 + 15 * 14  # at half size (234 px long side): 240 x 224 working pixels
    sizes = [16 / ((464 / 469 + 432 / 437) / 2), 16 / ((240 / 469 + 224 / 437) / 2)]  # cells in original pixels
    np.testing.assert_allclose(sorted(set(pyramid.scales)), sizes, rtol=1e-5)
    assert pyramid.working_scale == pytest.approx((240 / 469 + 224 / 437) / 2 / CELL_PER_PIXEL_NOISE)
    # A factor above 1 does not enlarge an image already under max_side: the same cells again.
    doubled = localmatch.extract(warped, "delf", scales=[1.0, 2.0], max_features=5000, min_contrast=None)
    assert len(doubled) == 2 * 29 * 27
    np.testing.assert_allclose(doubled.scales, sizes[0], rtol=1e-5)
    strong = localmatch.extract(warped, "delf", detection_threshold=80.0, max_features=5000, min_contrast=None)
    assert 0 < len(strong) < 29 * 27 and strong.scores.min() >= 80.0
    assert DelfConfig(scales=[1, 0.5]).scales == (1, 0.5)
    for bad in ((), 0.5, [0], [-1.0], [8.5], ["1"], [True]):
        with pytest.raises(ConfigError, match="scales"):
            DelfConfig(scales=bad)
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(ConfigError, match="min_contrast"):
            DelfConfig(min_contrast=bad)


def test_delf_recovers_a_homography_to_a_few_pixels_and_rejects_another_photo(astronaut, coffee, warped):
    """Keypoints are cell centres (16 working pixels apart): the estimate is good to a few pixels, which
    is what the verifier's cell-sized threshold allows for, not to SIFT's fraction of a pixel."""
    needs_weights(*WEIGHTS)
    result = localmatch.verify(astronaut, warped, features="delf", geometry="homography")
    assert result.is_match and result.num_inliers > 100
    assert corner_error(result.matrix, H_TRUE, 512, 512) < 6.0
    assert not localmatch.verify(astronaut, coffee, features="delf").is_match


def test_tiny_and_flat_images_give_valid_features(tmp_path):
    """A flat image has nothing to describe (no features); with ``min_contrast=None`` or 0 every cell is kept."""
    needs_weights(*WEIGHTS)
    for size in ((1, 1), (3, 5), (16, 16)):
        f = localmatch.extract(np.full((*size, 3), 90, np.uint8), "delf")
        assert f.image_size == size[::-1] and len(f) == 0 and f.descriptors.shape == (0, 112)
        every_cell = localmatch.extract(np.full((*size, 3), 90, np.uint8), "delf", min_contrast=None)
        assert every_cell.image_size == size[::-1] and len(every_cell) == 1 and every_cell.descriptors.shape == (1, 112)
    flat = np.full((120, 200, 3), 128, np.uint8)
    assert len(localmatch.extract(flat, "delf")) == 0
    assert len(localmatch.extract(flat, "delf", min_contrast=None)) == 12 * 8  # 192 x 128 working pixels
    assert len(localmatch.extract(flat, "delf", min_contrast=0)) == 12 * 8  # nothing varies less than 0
    assert not localmatch.verify(flat, np.zeros((90, 150, 3), np.uint8), features="delf").is_match
    with Database(tmp_path / "db", features="delf") as db:
        assert db.descriptor_dim == 112 and len(db) == 0


def test_cells_over_a_flat_inside_are_dropped():
    """A flat square inside a varied picture is no border, but each cell whose 32 x 32 window lies in it is
    dropped: centres 15 + 16 k in 79..175 along both axes of the square 64..191, 7 x 7 of the 16 x 16 cells."""
    needs_weights(*WEIGHTS)
    picture = np.random.default_rng(0).integers(0, 256, (256, 256, 3)).astype(np.uint8)
    picture[64:192, 64:192] = 128
    f = localmatch.extract(picture, "delf", max_features=5000)
    assert len(f) == 16 * 16 - 7 * 7
    in_square = ((f.keypoints >= 79) & (f.keypoints <= 175)).all(axis=1)
    assert not in_square.any()


def test_window_contrast_is_the_standard_deviation_of_the_clipped_window():
    grey = np.random.default_rng(0).integers(0, 256, (40, 50)).astype(np.uint8)
    centres = np.array([[20, 20], [0, 0], [49, 39], [5, 30]])
    expected = [grey[max(y - 15, 0):y + 17, max(x - 15, 0):x + 17].astype(float).std() for x, y in centres]
    np.testing.assert_allclose(window_contrast(grey, centres), expected, rtol=1e-9)


def test_content_box_cuts_flat_borders_only():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (60, 80)).astype(np.uint8)
    framed = np.zeros((100, 130), np.uint8)
    framed[25:85, 30:110] = picture  # bars at every side (letterbox and pillarbox at once)
    assert content_box(framed, 1.0) == (30, 25, 110, 85)
    assert content_box(picture, 1.0) == (0, 0, 80, 60)
    noisy_bar = framed.copy()
    noisy_bar[:25] = rng.integers(0, 2, (25, 130))  # JPEG-like noise in the top bar: still flat at 1 grey level
    assert content_box(noisy_bar, 1.0) == (30, 25, 110, 85)
    white_top = framed.copy()
    white_top[:25] = 255  # the side bars are flat in the rows left once the (white) top bar is cut
    assert content_box(white_top, 1.0) == (30, 25, 110, 85)
    inner = picture.copy()
    inner[20:40, :] = 7  # a flat band inside the picture is not a border
    assert content_box(inner, 1.0) == (0, 0, 80, 60)
    assert content_box(np.full((30, 40), 200, np.uint8), 1.0)[2:] == (0, 0)


def _pillarbox(image: np.ndarray, bar: int) -> np.ndarray:
    height, width = image.shape[:2]
    framed = np.zeros((height, width + 2 * bar, 3), np.uint8)
    framed[:, bar:bar + width] = image
    return framed


def test_bars_neither_make_different_photos_match_nor_hide_a_copy(astronaut, coffee):
    """Cells inside black bars, or along their edge, describe where they lie in the frame: before the bars
    were cut off, two different photographs in the same bars verified with dozens of inliers (checked here
    with ``min_contrast=None``; ``reflect_border=True`` stops it too). A copy of a photograph in bars verifies
    with the bars' width as the shift."""
    needs_weights(*WEIGHTS)
    a = _pillarbox(astronaut.pixels, 100)
    b = _pillarbox(cv2.resize(coffee.pixels, (512, 512), interpolation=cv2.INTER_AREA), 100)
    before = localmatch.verify(a, b, features="delf", feature_config={"min_contrast": None})
    assert before.is_match and before.num_inliers >= 20
    mirrored = localmatch.verify(a, b, features="delf", feature_config={"min_contrast": None, "reflect_border": True})
    assert mirrored.num_inliers < 15
    assert localmatch.verify(a, b, features="delf").num_inliers < 15
    copy = localmatch.verify(astronaut, a, features="delf", geometry="homography")
    assert copy.is_match
    np.testing.assert_allclose(copy.matrix, [[1, 0, 100], [0, 1, 0], [0, 0, 1]], atol=1e-3)


def _noise_jpeg(seed: int, size: tuple[int, int], grey: int = 20, std: float = 8.0) -> np.ndarray:
    """A dark frame: Gaussian sensor noise around ``grey``, ``size = (width, height)``, through JPEG at 90."""
    pixels = np.clip(grey + np.random.default_rng(seed).normal(0, std, (size[1], size[0], 3)), 0, 255)
    ok, encoded = cv2.imencode(".jpg", pixels.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR_RGB)


def test_pictures_of_noise_do_not_match_through_their_borders_when_mirrored():
    """Zero padding tells the network's cells near the border where they lie; where a picture shows nothing
    but noise, those cells match the cells at the same border of another such picture, and a fundamental
    matrix fits them: these four pairs of dark frames verify with 23-36 inliers. Mirrored beyond its
    borders (``reflect_border``), the same pairs reach 13 at most. (It halves such chance counts rather
    than ending them: with noise of 4 grey levels instead of 8, 4 of 10 such pairs still reach 15-17;
    BENCHMARKS.md, "Pictures of nothing".)"""
    needs_weights(*WEIGHTS)
    pairs = [(_noise_jpeg(2 * n, (640, 480)), _noise_jpeg(2 * n + 1, (800, 600) if n % 2 else (640, 480)))
             for n in range(4)]
    assert all(localmatch.verify(a, b, features="delf").is_match for a, b in pairs)  # what the option is for
    mirrored = {"reflect_border": True}
    assert not any(localmatch.verify(a, b, features="delf", feature_config=mirrored).is_match for a, b in pairs)


def test_reflect_border_keeps_every_cell_where_it_was(warped):
    needs_weights(*WEIGHTS)
    mirrored = localmatch.extract(warped, "delf", max_features=5000, min_contrast=None, reflect_border=True)
    zero_padded = localmatch.extract(warped, "delf", max_features=5000, min_contrast=None)
    assert len(mirrored) == len(zero_padded) == 29 * 27
    np.testing.assert_array_equal(np.unique(mirrored.keypoints, axis=0), np.unique(zero_padded.keypoints, axis=0))
    assert not np.allclose(mirrored.descriptors, zero_padded.descriptors)  # the network did see the mirror
    with pytest.raises(ConfigError, match="reflect_border"):
        DelfConfig(reflect_border="yes")


def test_a_database_built_before_min_contrast_keeps_its_meaning(tmp_path):
    """Stored DELF options without ``min_contrast`` (written before it existed) read as ``None``, so queries
    are described as the stored images were."""
    needs_weights(*WEIGHTS)
    with Database(tmp_path / "db", features="delf") as db:
        assert db.feature_config.min_contrast == 1.0
    con = sqlite3.connect(tmp_path / "db" / DB_FILE)
    stored = json.loads(con.execute("SELECT value FROM meta WHERE key = 'feature_config'").fetchone()[0])
    del stored["min_contrast"]
    con.execute("UPDATE meta SET value = ? WHERE key = 'feature_config'", (json.dumps(stored),))
    con.commit()
    con.close()
    with Database(tmp_path / "db") as db:
        assert db.feature_config.min_contrast is None and db.feature_config.max_features == 1000


@pytest.mark.slow
def test_delf_asmk_database_finds_the_other_views_of_a_scene(tmp_path):
    """ASMK* over DELF-style features on the whole of multiview_dev (79 images, 1024 words trained on them):
    measured mAP 0.92 before re-ranking (0.924 +- 0.006 over six codebook seeds, RootSIFT's 0.854 +- 0.012,
    BENCHMARKS.md), and re-ranking verifies a first view's scene-mates. (A 9-image database, which this
    test used before, trains too small a codebook: how many scene-mates it ranked second and third went
    from 11 to 15 of 18 with the codebook's seed alone.)"""
    needs_weights(*WEIGHTS)
    root = shared_data("multiview_dev")
    paths = [str(p) for p in sorted(root.glob("*/*")) if p.suffix.lower() in (".jpg", ".png", ".jpeg")]
    truth = ground_truth_from_folders(paths)
    with Database(tmp_path / "db", features="delf", representation="asmk") as db:
        report = db.add(paths)
        assert not report.failed and len(db) == 79
        assert evaluate(db, truth, rerank=False).mean_ap >= 0.90
        for scene in ("british_museum", "st_pauls_cathedral", "venice_doges_palace"):
            mates = [p for p in paths if f"/{scene}/" in p]
            reranked = db.search(mates[0], k=3)
            assert reranked[0].path == mates[0] and sum(h.verified and h.path in mates for h in reranked) >= 2, scene
