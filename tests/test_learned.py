"""Learned features (DISK, ALIKED, XFeat), LightGlue matchers and LoFTR dense matching through kornia."""

from __future__ import annotations

import os

import numpy as np
import pytest

import localmatch
from conftest import corner_error, shared_data, warp
from localmatch.database import Database
from localmatch.types import Features
from localmatch.weights import WeightsError, resolve
from test_verify import H_TRUE

DIMS = {"disk": 128, "aliked": 128, "xfeat": 64}
MATCHER_FOR = {"disk": "lightglue", "aliked": "lightglue", "xfeat": "lighterglue"}
SMALL = {"max_side": 512}


def needs_weights(*names: str) -> None:
    if not os.environ.get("LOCALMATCH_WEIGHTS"):
        pytest.skip("LOCALMATCH_WEIGHTS is not set (point it at the shared weights folder)")
    for name in names:
        try:
            resolve(name, download=False)
        except WeightsError as e:
            pytest.skip(str(e))


@pytest.fixture(scope="module")
def warped(astronaut):
    return warp(astronaut, H_TRUE, (469, 437))  # not multiples of 8, 16 or 32


WEIGHTS_OF = {"disk": ("disk-depth", "disk-lightglue"), "aliked": ("aliked-n16", "aliked-lightglue"),
              "xfeat": ("xfeat", "xfeat-lighterglue")}
KEYNET_AFFNET_WEIGHTS = ("keynet", "affnet", "orinet", "hardtfeat")


def extractor_weights(name: str) -> tuple[str, ...]:
    """The weight files an extractor needs (its matcher's left out)."""
    return KEYNET_AFFNET_WEIGHTS if name == "keynet-affnet" else WEIGHTS_OF[name][:1]


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_learned_features_have_the_features_layout(name, warped):
    needs_weights(WEIGHTS_OF[name][0])
    f = localmatch.extract(warped, name, max_features=500)
    assert 100 < len(f) <= 500 and f.extractor == name
    assert f.keypoints.dtype == np.float32 and f.descriptors.shape == (len(f), DIMS[name])
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-4)
    assert (f.keypoints > -0.5).all() and (f.keypoints[:, 0] < 468.5).all() and (f.keypoints[:, 1] < 436.5).all()
    assert list(f.scores) == sorted(f.scores, reverse=True)


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk", "keynet-affnet"])
def test_tiny_images_give_valid_empty_features_and_a_database_can_be_made(name, tmp_path):
    """DISK's network failed on a 16 x 16 working image, and so did creating any DISK database (its descriptor
    size is probed on a 16 x 16 image)."""
    needs_weights(*extractor_weights(name))
    for size in ((1, 1), (3, 5), (16, 16)):
        f = localmatch.extract(np.full((*size, 3), 90, np.uint8), name)
        assert f.image_size == size[::-1] and f.descriptors.shape[0] == len(f.keypoints) == len(f.scores)
    with Database(tmp_path / "db", features=name) as db:
        assert db.descriptor_dim == DIMS.get(name, 128) and len(db) == 0
    if name in MATCHER_FOR:  # sub-pixel keypoints just before 0 on a 3-pixel side failed kornia's range check
        needs_weights(*WEIGHTS_OF[name])
        tiny = np.random.default_rng(0).integers(0, 255, (3, 3, 3), dtype=np.uint8)
        assert localmatch.verify(tiny, tiny, features=name, matcher=MATCHER_FOR[name]).num_inliers <= 9


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk", "keynet-affnet"])
def test_low_texture_images_give_only_real_detections(name, astronaut):
    """kornia's KeyNet detector pads its output to max_features slots with zero frames at the origin, which
    all share one descriptor; those slots were kept as 2000-odd features on a low-texture image."""
    needs_weights(*extractor_weights(name))
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[200:264, 300:364] = astronaut.pixels[100:164, 200:264]  # one small textured patch
    f = localmatch.extract(canvas, name)
    assert len(np.unique(f.descriptors, axis=0)) == len(f), "several features share one descriptor"
    assert len(np.unique(f.keypoints, axis=0)) == len(f), "several features share one position"
    if name == "keynet-affnet":
        assert len(localmatch.extract(np.full((480, 640, 3), 128, np.uint8), name)) == 0


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_learned_pipeline_recovers_a_homography_in_original_pixels(name, astronaut, warped):
    needs_weights(*WEIGHTS_OF[name])
    for matcher in (MATCHER_FOR[name], "nn"):
        result = localmatch.verify(astronaut, warped, features=name, matcher=matcher, geometry="homography",
                                   feature_config=SMALL)
        assert result.is_match, matcher
        assert corner_error(result.matrix, H_TRUE, 512, 512) < 2.0, matcher


def test_learned_features_on_a_resized_working_image(astronaut, warped):
    needs_weights(*WEIGHTS_OF["aliked"])
    result = localmatch.verify(astronaut, warped, features="aliked", matcher="lightglue", geometry="homography",
                               feature_config={"max_side": 300})
    assert result.is_match and corner_error(result.matrix, H_TRUE, 512, 512) < 3.0


def test_keynet_affnet_features_layout_and_a_homography_in_original_pixels(astronaut, warped):
    needs_weights(*KEYNET_AFFNET_WEIGHTS)
    f = localmatch.extract(warped, "keynet-affnet", max_features=500)
    assert 100 < len(f) <= 500 and f.extractor == "keynet-affnet" and f.descriptors.shape == (len(f), 128)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-4)
    assert (f.keypoints > -0.5).all() and (f.keypoints[:, 0] < 468.5).all() and (f.keypoints[:, 1] < 436.5).all()
    assert (f.scales > 0).all() and np.isfinite(f.orientations).all()
    assert list(f.scores) == sorted(f.scores, reverse=True)
    half = localmatch.extract(warped, "keynet-affnet", max_features=500, max_side=240)
    assert half.working_scale < 0.6 and np.median(half.scales) > np.median(f.scales)  # region sizes in original px
    result = localmatch.verify(astronaut, warped, features="keynet-affnet", geometry="homography",
                               feature_config=SMALL)
    assert result.is_match and corner_error(result.matrix, H_TRUE, 512, 512) < 2.0
    tiny = localmatch.extract(np.full((16, 300, 3), 128, np.uint8), "keynet-affnet")  # under KeyNet's minimum
    assert len(tiny) == 0 and tiny.descriptors.shape == (0, 128)


@pytest.mark.slow
def test_keynet_affnet_holds_a_strong_viewpoint_change_that_sift_misses():
    """oxford_affine_vgg graf 1 -> 5 (about 60 degrees out of plane): affine-normalised patches match."""
    needs_weights(*KEYNET_AFFNET_WEIGHTS)
    root = shared_data("oxford_affine_vgg") / "graf"
    a, b = sorted(root.glob("img1.p?m"))[0], sorted(root.glob("img5.p?m"))[0]
    H_true = np.loadtxt(root / "H1to5p")
    sift = localmatch.verify(a, b, geometry="homography")
    assert sift.matrix is None or corner_error(sift.matrix, H_true, 800, 640) > 50
    covariant = localmatch.verify(a, b, features="keynet-affnet", geometry="homography")
    assert covariant.is_match and corner_error(covariant.matrix, H_true, 800, 640) < 5.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aliked", "disk"])
def test_lightglue_does_not_verify_look_alike_buildings(name):
    """British Museum and St Paul's, two classical facades: at kornia's match threshold of 0.1 LightGlue pairs
    their pediments and a fundamental matrix takes 66-76 inliers; at the default none are kept. Two photos
    of the British Museum still verify."""
    needs_weights(*WEIGHTS_OF[name])
    root = shared_data("multiview_dev")
    museum, museum_again = root / "british_museum/29057984_287139632.jpg", root / "british_museum/32630292_7166579210.jpg"
    cathedral = root / "st_pauls_cathedral/1.jpg"
    fm, fm2, fc = (localmatch.extract(p, name) for p in (museum, museum_again, cathedral))

    def verified(fa, fb, config=None):
        return localmatch.verify_matches(fa, fb, localmatch.match(fa, fb, "lightglue", config)).is_match

    assert verified(fm, fc, {"filter_threshold": 0.1})  # what the default guards against
    assert not verified(fm, fc)
    assert verified(fm, fm2)


def test_learned_features_are_matched_by_their_lightglue_unless_told_otherwise():
    """Mutual NN on XFeat descriptors verifies 12 of multiview_dev's 136 pairs of different places (this one
    with 18 inliers); LighterGlue, XFeat's default matcher, none of them. The default follows the extractor
    whether images or features are given, in ``verify`` and in ``match``."""
    needs_weights(*WEIGHTS_OF["xfeat"])
    assert [localmatch.matching.default_matcher(f) for f in ("xfeat", "aliked", "disk", "rootsift", "keynet-affnet")] \
        == ["lighterglue", "lightglue", "lightglue", "nn", "nn"]
    root = shared_data("multiview_dev")
    facade, cathedral = root / "building_facade_dsc/DSC_0410.JPG", root / "st_pauls_cathedral/1.jpg"
    fa, fb = localmatch.extract(facade, "xfeat"), localmatch.extract(cathedral, "xfeat")
    assert localmatch.verify(fa, fb, matcher="nn").is_match  # what the default guards against
    by_default = localmatch.verify(facade, cathedral, features="xfeat")
    assert not by_default.is_match
    lighterglue = localmatch.verify(fa, fb, matcher="lighterglue")
    assert localmatch.verify(fa, fb).num_inliers == by_default.num_inliers == lighterglue.num_inliers
    assert np.array_equal(localmatch.match(fa, fb).indices, localmatch.match(fa, fb, "lighterglue").indices)
    again = localmatch.verify(cathedral, root / "st_pauls_cathedral/2.jpg", features="xfeat")
    assert again.is_match


def test_lightglue_keeps_matches_scored_over_its_threshold_and_takes_the_given_options(astronaut, warped):
    """Each kept match carries its own assignment score, above the extractor's threshold (0.4 for ALIKED) or
    the one given; the early-stop and pruning options reach kornia's model."""
    from localmatch.matching.lightglue import _model

    needs_weights(*WEIGHTS_OF["aliked"])
    fa, fb = (localmatch.extract(image, "aliked", **SMALL) for image in (astronaut, warped))
    default, strict = (localmatch.match(fa, fb, "lightglue", config) for config in (None, {"filter_threshold": 0.9}))
    assert len(default) >= 100 and (default.scores > 0.4).all() and (default.scores <= 1).all()
    assert 0 < len(strict) < len(default) and (strict.scores > 0.9).all()
    kept = {tuple(r) for r in strict.indices}
    in_strict = np.array([tuple(r) in kept for r in default.indices])
    assert len(kept) == in_strict.sum() and (default.scores[in_strict] > 0.9).all()
    assert (default.scores[~in_strict] <= 0.9).all()  # each score is its own match's
    empty = Features(np.zeros((0, 2), np.float32), *(np.zeros(0, np.float32),) * 3, np.zeros((0, 128), np.float32),
                     fa.image_size, "aliked")
    assert len(localmatch.match(fa, empty, "lightglue")) == len(localmatch.match(empty, fb, "lightglue")) == 0
    model = _model("aliked", "aliked-lightglue", "cpu", 0.4, -1, 0.5, False)
    assert (model.conf.filter_threshold, model.conf.depth_confidence, model.conf.width_confidence) == (0.4, -1, 0.5)
    preset = _model("aliked", "aliked-lightglue", "cpu", 0.4, None, None, False).conf
    assert (preset.depth_confidence, preset.width_confidence) == (0.95, 0.99)  # kornia's ALIKED preset


def test_lightglue_mixed_precision_only_where_asked_and_the_hardware_has_it(monkeypatch):
    import torch

    from localmatch.features import _torch
    from localmatch.matching import lightglue
    from localmatch.matching.lightglue import LightGlueConfig

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert lightglue.mixed_precision(cuda, LightGlueConfig())
    assert not lightglue.mixed_precision(cuda, LightGlueConfig(half=False))
    for has_bfloat16 in (True, False):
        monkeypatch.setattr(_torch, "cpu_has_bfloat16", lambda: has_bfloat16)
        assert lightglue.mixed_precision(cpu, LightGlueConfig(cpu_bfloat16=True)) == has_bfloat16
        assert not lightglue.mixed_precision(cpu, LightGlueConfig())  # off by default
    with pytest.raises(ValueError, match="cpu_bfloat16"):
        LightGlueConfig(cpu_bfloat16="yes")


def test_lightglue_in_bfloat16_keeps_float32s_matches():
    """With ``cpu_bfloat16`` on a CPU that has bfloat16 instructions, the matches of two British Museum
    photos (362) are nearly float32's, and the pair verifies with as many inliers."""
    from localmatch.features._torch import cpu_has_bfloat16

    needs_weights(*WEIGHTS_OF["aliked"])
    if not cpu_has_bfloat16():
        pytest.skip("this CPU has no bfloat16 instructions: LightGlue runs in float32 on it")
    root = shared_data("multiview_dev")
    fa, fb = (localmatch.extract(root / "british_museum" / name, "aliked", max_side=640)
              for name in ("29057984_287139632.jpg", "32630292_7166579210.jpg"))
    half, full = (localmatch.match(fa, fb, "lightglue", {"device": "cpu", "cpu_bfloat16": h}) for h in (True, False))
    common = {tuple(r) for r in half.indices} & {tuple(r) for r in full.indices}
    assert len(common) >= 0.85 * max(len(half), len(full)) and len(full) >= 50
    assert len(common) < len(full)  # bfloat16 did run: measured 346 of 362 in common
    inliers = [localmatch.verify_matches(fa, fb, m).num_inliers for m in (half, full)]
    assert abs(inliers[0] - inliers[1]) <= 0.1 * inliers[1], inliers


def test_extraction_autocast_only_where_asked_and_the_hardware_has_it(monkeypatch):
    import torch

    from localmatch.features import _torch
    from localmatch.features._torch import LearnedConfig

    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def dtype(device, config, **options):
        context = _torch.autocast(device, config, **options)
        return context.fast_dtype if isinstance(context, torch.autocast) else None

    for has_bfloat16 in (True, False):
        monkeypatch.setattr(_torch, "cpu_has_bfloat16", lambda: has_bfloat16)
        assert dtype(cpu, LearnedConfig(cpu_bfloat16=True)) == (torch.bfloat16 if has_bfloat16 else None)
        assert dtype(cpu, LearnedConfig()) is None  # off by default
    if torch.cuda.is_available():  # torch.autocast("cuda") would only warn and disable itself here
        assert dtype(cuda, LearnedConfig(), cuda_half=True) == torch.float16
    assert dtype(cuda, LearnedConfig()) is None  # a model without float16 support
    assert dtype(cuda, LearnedConfig(half=False), cuda_half=True) is None
    with pytest.raises(ValueError, match="cpu_bfloat16"):
        LearnedConfig(cpu_bfloat16="yes")


@pytest.mark.parametrize("name", ["disk", "aliked"])
def test_extraction_in_bfloat16_keeps_float32s_keypoints(name):
    """With ``cpu_bfloat16`` on a CPU that has bfloat16 instructions, DISK's and ALIKED's keypoints on a
    British Museum photo are nearly float32's, and the pair still verifies with about as many inliers."""
    from localmatch.features._torch import cpu_has_bfloat16

    needs_weights(*WEIGHTS_OF[name])
    if not cpu_has_bfloat16():
        pytest.skip("this CPU has no bfloat16 instructions: extraction runs in float32 on it")
    root = shared_data("multiview_dev") / "british_museum"
    paths = [root / n for n in ("29057984_287139632.jpg", "32630292_7166579210.jpg")]
    half, full = ([localmatch.extract(p, name, device="cpu", max_side=640, cpu_bfloat16=h) for p in paths]
                  for h in (True, False))
    assert half[0].descriptors.dtype == np.float32 and len(half[0]) >= 0.9 * len(full[0])
    distance = np.linalg.norm(half[0].keypoints[:, None] - full[0].keypoints[None], axis=2).min(axis=1)
    assert (distance <= 1).mean() >= 0.85
    assert not np.array_equal(half[0].keypoints, full[0].keypoints)  # bfloat16 did run
    inliers = [localmatch.verify(a, b, matcher="lightglue").num_inliers for a, b in (half, full)]
    assert inliers[1] >= 50 and abs(inliers[0] - inliers[1]) <= 0.15 * inliers[1], inliers


def test_matchers_refuse_features_they_were_not_trained_for(astronaut):
    sift = localmatch.extract(astronaut, max_features=100)
    with pytest.raises(ValueError, match="disk, aliked"):
        localmatch.match(sift, sift, "lightglue")
    with pytest.raises(ValueError, match="matches images"):
        localmatch.match(sift, sift, "loftr")


# ---- LoFTR: the real architecture; random weights unless the checkpoint is available ----

RANDOM_LOFTR = {"pretrained": "none", "max_side": 160, "confidence": 0.0}


def test_loftr_random_weights_shapes_coordinates_and_filtering(astronaut, coffee):
    m = localmatch.MATCHERS.get("loftr")
    image_b = localmatch.Image(np.ascontiguousarray(coffee.pixels[:333, :451]), "coffee crop")  # other size, odd
    corr = m.run(astronaut, image_b, m.make_config(RANDOM_LOFTR))
    assert len(corr) > 0 and corr.points_a.shape == corr.points_b.shape == (len(corr), 2)
    assert list(corr.scores) == sorted(corr.scores, reverse=True)
    assert (corr.points_a > -0.5).all() and (corr.points_a < 511.5).all()
    assert (corr.points_b[:, 0] < 450.5).all() and (corr.points_b[:, 1] < 332.5).all() and (corr.points_b > -0.5).all()
    # A's points sit on LoFTR's 1/8 grid of the working image: back in working pixels, 8 * cell.
    s = 160 / 512
    np.testing.assert_allclose(((corr.points_a + 0.5) * s) % 8, 0, atol=1e-3)
    threshold = float(np.median(corr.scores))
    kept = m.run(astronaut, image_b, m.make_config({**RANDOM_LOFTR, "confidence": threshold}))
    assert 0 < len(kept) < len(corr) and (kept.scores > threshold).all()


def test_loftr_in_the_verifier_and_the_reranker(tmp_path, astronaut, warped):
    result = localmatch.verify(astronaut, warped, matcher="loftr", matcher_config=RANDOM_LOFTR)
    assert result.num_matches > 0 and result.points_a.shape == (result.num_inliers, 2)
    with pytest.raises(ValueError, match="give images"):
        localmatch.verify(localmatch.extract(astronaut), warped, matcher="loftr")
    import PIL.Image
    paths = []
    for i, image in enumerate([astronaut, warped]):
        paths.append(str(tmp_path / f"{i}.png"))
        PIL.Image.fromarray(image.pixels).save(paths[-1])
    with Database(tmp_path / "db", feature_config={"max_side": 256, "max_features": 300}) as db:
        db.add(paths)
        hits = db.search(paths[0], k=2, matcher="loftr", matcher_config=RANDOM_LOFTR, min_inliers=4)
        assert {h.path for h in hits} == set(paths) and all(h.num_inliers >= 0 for h in hits)
        # in two passes: nn over both stored candidates, LoFTR on the one nn ranks first, from the images
        hits = db.search(paths[0], k=2, matcher="loftr", matcher_config=RANDOM_LOFTR, min_inliers=4, matcher_top=1)
        assert {h.path for h in hits} == set(paths)


def test_loftr_pretrained_outdoor(astronaut, warped):
    try:
        resolve("loftr-outdoor", download=False)
    except WeightsError:
        pytest.skip("loftr_outdoor.ckpt is not available here: LoFTR's matching quality is not verified")
    result = localmatch.verify(astronaut, warped, matcher="loftr", geometry="homography")
    assert result.is_match and corner_error(result.matrix, H_TRUE, 512, 512) < 3.0


@pytest.mark.slow
def test_database_with_learned_features_and_lightglue_reranking(tmp_path):
    needs_weights(*WEIGHTS_OF["aliked"])
    images = [str(p) for p in sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))[:8]]
    # at the images' own 640 x 480: at 480 x 360, view 3 kept 18 LightGlue inliers at kornia's match threshold
    # (0.1) and none at localmatch's stricter default
    with Database(tmp_path / "db", features="aliked", feature_config={"max_side": 640, "max_features": 1024}) as db:
        db.add(images)
        assert db.global_descriptor_name == "gem"
        hits = db.search(images[1], k=4)  # LightGlue by default for ALIKED
        assert {h.path for h in hits} == set(images[:4])
        assert hits[0].path == images[1] and sum(h.verified for h in hits) >= 3
        # mutual NN on ALIKED descriptors is weaker than LightGlue: it verifies fewer of the other views
        hits = db.search(images[1], k=4, matcher="nn")
        assert hits[0].path == images[1] and all(h.path in images[:4] for h in hits if h.verified)


def test_a_costly_matcher_verifies_the_head_of_the_list_nn_ranked(tmp_path, monkeypatch):
    """``matcher_top``: nn verifies every candidate, LighterGlue only the first 3 of nn's ranking, and its
    verification replaces nn's for them alone."""
    needs_weights(*WEIGHTS_OF["xfeat"])
    images = [str(p) for p in sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))[:8]]
    with Database(tmp_path / "db", features="xfeat", feature_config={"max_side": 480}) as db:
        assert not db.add(images).failed
        by_nn = db.search(images[1], k=8, matcher="nn")
        by_glue = {h.image_id: h for h in db.search(images[1], k=8, matcher_top=None)}
        pairs_glued = []
        real = localmatch.rerank.correspondences_of  # what the re-ranker calls on each sparse matcher's output

        def counted(a, b, matches):
            pairs_glued.append(1)
            return real(a, b, matches)

        monkeypatch.setattr(localmatch.rerank, "correspondences_of", counted)
        hits = db.search(images[1], k=8, matcher_top=3)
        assert len(pairs_glued) == 3
        with pytest.raises(localmatch.ConfigError, match="matcher_top"):
            db.search(images[1], matcher_top=0)
    head, by_nn_id = {h.image_id for h in by_nn[:3]}, {h.image_id: h for h in by_nn}
    assert sorted(h.image_id for h in hits) == sorted(by_nn_id)
    for h in hits:
        expected = by_glue[h.image_id] if h.image_id in head else by_nn_id[h.image_id]
        assert (h.num_inliers, h.verified) == (expected.num_inliers, expected.verified), h.path
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].path == images[1] and {h.path for h in hits[:4]} == set(images[:4])


def test_asmk_database_of_aliked_top_k_features(tmp_path):
    """The retrieval setting BENCHMARKS.md measures for ALIKED under ASMK* (top-k keypoints, no score
    threshold): every image keeps exactly ``max_features``, a reopened database extracts queries the same
    way, and the shortlist finds the query's UKBench group."""
    needs_weights(*WEIGHTS_OF["aliked"])
    images = [str(p) for p in sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))[:8]]
    config = {"max_side": 480, "max_features": 600, "detection_threshold": 0}
    with Database(tmp_path / "db", features="aliked", feature_config=config, representation="asmk",
                  asmk_config={"codebook_size": 64}) as db:
        assert not db.add(images).failed
        assert db.info()["features"] == 8 * 600
    with Database(tmp_path / "db", readonly=True) as db:
        assert db.feature_config.detection_threshold == 0 and db.feature_config.max_features == 600
        # kornia's own threshold keeps 418 here
        assert len(db.query_features(images[6], with_global=False)[0].keypoints) == 600
        for query in (images[1], images[5]):
            group = set(images[:4] if query == images[1] else images[4:])
            hits = db.search(query, k=4, rerank=False)
            assert hits[0].path == query and len({h.path for h in hits} & group) >= 3
