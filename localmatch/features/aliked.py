"""ALIKED n16 (Zhao et al., TIM 2023) through kornia."""

from __future__ import annotations

from functools import lru_cache

import torch

from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import LearnedConfig, autocast, load_checked, select_device, to_features, working_tensor
from localmatch.io import Image
from localmatch.types import Features
from localmatch.weights import load_state_dict

DETECTION_THRESHOLD = 0.2  # kornia's and the authors' default


@lru_cache(maxsize=4)
def _model(device: str, max_features: int, detection_threshold: float):
    from kornia.feature import ALIKED

    model = ALIKED(model_name="aliked-n16", max_num_keypoints=max_features, detection_threshold=detection_threshold)
    load_checked(model, load_state_dict("aliked-n16"), derived=("hw_grid",))
    return model.eval().to(device)


def extract_aliked(image: Image, config: LearnedConfig) -> Features:
    """ALIKED sub-pixel keypoints and 128-d descriptors, in original pixels."""
    device = select_device(config.device)
    tensor, work = working_tensor(image, config, 32, device)
    threshold = DETECTION_THRESHOLD if config.detection_threshold is None else config.detection_threshold
    model = _model(str(device), config.max_features, threshold)
    with torch.inference_mode(), autocast(device, config, cuda_half=True):
        out = model(tensor)[0]
    return to_features(image, work, out.keypoints, out.keypoint_scores, out.descriptors, "aliked", config.max_features)


FEATURES.add("aliked", FeatureExtractor("aliked", LearnedConfig, extract_aliked))
