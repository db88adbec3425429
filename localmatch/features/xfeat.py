"""XFeat (Potje et al., CVPR 2024) through kornia: fast 64-d features."""

from __future__ import annotations

from functools import lru_cache

from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import LearnedConfig, autocast, select_device, to_features, working_tensor
from localmatch.io import Image
from localmatch.types import Features
from localmatch.weights import load_state_dict


@lru_cache(maxsize=4)
def _model(device: str):
    from kornia.feature import XFeat

    model = XFeat()
    model.net.load_state_dict(load_state_dict("xfeat"), strict=True)
    return model.eval().to(device)


def extract_xfeat(image: Image, config: LearnedConfig) -> Features:
    """XFeat keypoints (integer pixels of a working image whose sides are multiples of 32), in original pixels."""
    device = select_device(config.device)
    tensor, work = working_tensor(image, config, 32, device)
    with autocast(device, config):
        out = _model(str(device)).detectAndCompute(tensor, top_k=config.max_features,
                                                   detection_threshold=config.detection_threshold)[0]
    return to_features(image, work, out["keypoints"], out["scores"], out["descriptors"], "xfeat", config.max_features)


FEATURES.add("xfeat", FeatureExtractor("xfeat", LearnedConfig, extract_xfeat))
