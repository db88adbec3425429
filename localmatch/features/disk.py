"""DISK (Tyszkiewicz et al., NeurIPS 2020) through kornia, with the "depth" checkpoint."""

from __future__ import annotations

from functools import lru_cache

import torch

from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import (LearnedConfig, autocast, empty_features, select_device, to_features,
                                       working_tensor)
from localmatch.io import Image
from localmatch.types import Features
from localmatch.weights import load_state_dict

#: DISK's U-Net halves the working image four times; its instance norm needs 2 or more cells at the bottom
STRIDE = 16
DESCRIPTOR_DIM = 128


@lru_cache(maxsize=4)
def _model(device: str):
    from kornia.feature import DISK

    model = DISK()
    model.load_state_dict(load_state_dict("disk-depth")["extractor"], strict=True)
    return model.eval().to(device)


def extract_disk(image: Image, config: LearnedConfig) -> Features:
    """DISK keypoints (integer pixels of the working image, 128-d descriptors), in original pixels."""
    device = select_device(config.device)
    tensor, work = working_tensor(image, config, STRIDE, device)
    if tensor.shape[-2] * tensor.shape[-1] < 2 * STRIDE ** 2:  # a 16 x 16 working image: too small to describe
        return empty_features(image, work, DESCRIPTOR_DIM, "disk")
    with torch.inference_mode(), autocast(device, config):
        out = _model(str(device))(tensor, n=config.max_features, window_size=5, pad_if_not_divisible=True,
                                  score_threshold=config.detection_threshold or 0.0)[0]
    return to_features(image, work, out.keypoints, out.detection_scores, out.descriptors, "disk", config.max_features)


FEATURES.add("disk", FeatureExtractor("disk", LearnedConfig, extract_disk))
