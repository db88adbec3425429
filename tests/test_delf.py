"""DELF-style attentive features from the ImageNet EfficientNet-Lite0 (``features="delf"``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import localmatch
from conftest import corner_error, shared_data, warp
from localmatch.database import Database
from localmatch.errors import ConfigError
from localmatch.features.delf import CELL_PER_PIXEL_NOISE, DelfConfig
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
    f = localmatch.extract(warped, "delf", max_features=300)
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
    every_cell = localmatch.extract(warped, "delf", max_features=5000)
    assert len(every_cell) == 29 * 27
    np.testing.assert_allclose(every_cell.descriptors[:300], f.descriptors, atol=1e-6)  # the strongest first


def test_delf_pyramid_threshold_and_config_checks(warped):
    needs_weights(*WEIGHTS)
    pyramid = localmatch.extract(warped, "delf", scales=[0.5, 1.0], max_features=5000)
    assert len(pyramid) == 29 * 27 + 15 * 14  # at half size (234 px long side): 240 x 224 working pixels
    sizes = [16 / ((464 / 469 + 432 / 437) / 2), 16 / ((240 / 469 + 224 / 437) / 2)]  # cells in original pixels
    np.testing.assert_allclose(sorted(set(pyramid.scales)), sizes, rtol=1e-5)
    assert pyramid.working_scale == pytest.approx((240 / 469 + 224 / 437) / 2 / CELL_PER_PIXEL_NOISE)
    strong = localmatch.extract(warped, "delf", detection_threshold=80.0, max_features=5000)
    assert 0 < len(strong) < 29 * 27 and strong.scores.min() >= 80.0
    assert DelfConfig(scales=[1, 0.5]).scales == (1, 0.5)
    for bad in ((), 0.5, [0], [-1.0], ["1"], [True]):
        with pytest.raises(ConfigError, match="scales"):
            DelfConfig(scales=bad)


def test_delf_recovers_a_homography_to_a_few_pixels_and_rejects_another_photo(astronaut, coffee, warped):
    """Keypoints are cell centres (16 working pixels apart): the estimate is good to a few pixels, which
    is what the verifier's cell-sized threshold allows for, not to SIFT's fraction of a pixel."""
    needs_weights(*WEIGHTS)
    result = localmatch.verify(astronaut, warped, features="delf", geometry="homography")
    assert result.is_match and result.num_inliers > 100
    assert corner_error(result.matrix, H_TRUE, 512, 512) < 6.0
    assert not localmatch.verify(astronaut, coffee, features="delf").is_match


def test_tiny_and_flat_images_give_valid_features(tmp_path):
    needs_weights(*WEIGHTS)
    for size in ((1, 1), (3, 5), (16, 16)):
        f = localmatch.extract(np.full((*size, 3), 90, np.uint8), "delf")
        assert f.image_size == size[::-1] and len(f) == 1 and f.descriptors.shape == (1, 112)
    flat = np.full((120, 200, 3), 128, np.uint8)
    assert len(localmatch.extract(flat, "delf")) == 12 * 8  # 192 x 128 working pixels: every cell (no detector)
    with Database(tmp_path / "db", features="delf") as db:
        assert db.descriptor_dim == 112 and len(db) == 0


@pytest.mark.slow
def test_delf_asmk_database_finds_the_other_views_of_a_scene(tmp_path):
    """ASMK* over DELF-style features on three multiview_dev scenes: each image finds itself, and its
    scene-mates fill most of the two places after it (15 of 18 measured, RootSIFT 16; a 9-image database trains
    a small codebook)."""
    needs_weights(*WEIGHTS)
    root = shared_data("multiview_dev")
    scenes = ("british_museum", "st_pauls_cathedral", "venice_doges_palace")
    images = {scene: [str(p) for p in sorted((root / scene).glob("*.jpg"))[:3]] for scene in scenes}
    with Database(tmp_path / "db", features="delf", representation="asmk") as db:
        report = db.add([p for paths in images.values() for p in paths])
        assert not report.failed and len(db) == 9
        mates_found = 0
        for scene, paths in images.items():
            for query in paths:
                hits = db.search(query, k=3, rerank=False)
                assert hits[0].path == query
                mates_found += sum(h.path in paths for h in hits[1:])
            reranked = db.search(paths[0], k=3)
            assert reranked[0].path == paths[0] and sum(h.verified for h in reranked) >= 2, scene
        assert mates_found >= 14
