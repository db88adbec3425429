"""KeyNet + AffNet + OriNet keypoints with HardTFeat descriptors (affine-covariant), through kornia.

KeyNet (Barroso-Laguna et al., ICCV 2019) detects keypoints over a scale pyramid; OriNet and AffNet
(Mishkin et al., ECCV 2018) estimate each one's orientation and affine shape, so the 32x32 patch that
HardTFeat (TFeat trained with the HardNet loss) describes is normalised for viewpoint as well as scale
and rotation. That is what holds under strong viewpoint change (oxford_affine_vgg graf 1-5 and 1-6, which
SIFT and the other learned features here miss); the price is time (about 4 s per 800x640 image on 2 CPU
cores). No trained matcher exists for these descriptors: match them with ``nn``.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import (LearnedConfig, autocast, empty_features, load_checked, select_device,
                                       to_features, working_tensor)
from localmatch.io import Image
from localmatch.types import Features
from localmatch.weights import load_state_dict

PATCH_SIZE = 32
#: KeyNet's internal pyramid fails on images with a shorter side (measured: 16 px fails, 20 px works);
#: smaller working images give no features.
MIN_SIDE = 20
DESCRIPTOR_DIM = 128


def _learned(name: str) -> dict:
    """A checkpoint's tensors (the affnet repository wraps them in ``{"state_dict": ...}``)."""
    state = load_state_dict(name)
    return state.get("state_dict", state)


def _hardtfeat_for_kornia(state: dict) -> dict:
    """HardTFeat's keys renamed into ``kornia.feature.TFeat`` (its SIFT baseline's keys dropped)."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("SIFT"):
            continue
        if key.startswith("features.0."):
            key = "features.1." + key[len("features.0."):]
        elif key.startswith("features.3."):
            key = "features.4." + key[len("features.3."):]
        elif key == "classifier.1.weight":
            key, value = "descr.0.weight", value.reshape(value.shape[0], -1)
        elif key == "classifier.1.bias":
            key = "descr.0.bias"
        renamed[key] = value
    return renamed


@lru_cache(maxsize=4)
def _model(device: str, max_features: int, detection_threshold: float):
    from kornia.feature import (KeyNetDetector, LAFAffNetShapeEstimator, LAFDescriptor, LAFOrienter, OriNet,
                                TFeat)

    angle_detector = OriNet(pretrained=False)
    load_checked(angle_detector, _learned("orinet"))
    orienter = LAFOrienter(PATCH_SIZE, angle_detector=angle_detector)
    shape = LAFAffNetShapeEstimator(pretrained=False)
    load_checked(shape, _learned("affnet"))
    detector = KeyNetDetector(pretrained=False, num_features=max_features, ori_module=orienter, aff_module=shape,
                              score_threshold=detection_threshold)
    load_checked(detector.model, _learned("keynet"))  # type: ignore[arg-type]  # kornia types it as a callable
    tfeat = TFeat(pretrained=False)
    load_checked(tfeat, _hardtfeat_for_kornia(_learned("hardtfeat")))
    describer = LAFDescriptor(tfeat, patch_size=PATCH_SIZE, grayscale_descriptor=True)
    return detector.eval().to(device), describer.eval().to(device)


def extract_keynet_affnet(image: Image, config: LearnedConfig) -> Features:
    """Affine-covariant keypoints and 128-d HardTFeat descriptors, in original pixels.

    ``scales`` are the diameters of the regions (twice the square root of the affine frame's
    determinant) and ``orientations`` the frames' angles, both mapped to original pixels/radians.
    """
    from kornia.feature import get_laf_center, get_laf_orientation, get_laf_scale

    device = select_device(config.device)
    tensor, work = working_tensor(image, config, 1, device, gray=True)
    if min(tensor.shape[-2:]) < MIN_SIDE:
        return empty_features(image, work, DESCRIPTOR_DIM, "keynet-affnet")
    threshold = 0.0 if config.detection_threshold is None else config.detection_threshold
    detector, describer = _model(str(device), config.max_features, threshold)
    with torch.inference_mode(), autocast(device, config):
        lafs, responses = detector(tensor)
        # The detector always returns max_features slots; those no detection filled hold an all-zero frame
        # (and, described, one shared descriptor): on a low-texture image, most of them. (kornia's own test,
        # laf_is_filled, is recent; this is the same.)
        filled = lafs[0].ne(0).flatten(1).any(dim=1)
        if not filled.any():
            return empty_features(image, work, DESCRIPTOR_DIM, "keynet-affnet")
        lafs, responses = lafs[:, filled], responses[:, filled]
        descriptors = describer(tensor, lafs)
    return to_features(image, work, get_laf_center(lafs)[0], responses[0], descriptors[0], "keynet-affnet",
                       config.max_features, scales=2.0 * get_laf_scale(lafs)[0, :, 0, 0],
                       orientations=torch.deg2rad(get_laf_orientation(lafs)[0, :, 0]))


FEATURES.add("keynet-affnet", FeatureExtractor("keynet-affnet", LearnedConfig, extract_keynet_affnet))
