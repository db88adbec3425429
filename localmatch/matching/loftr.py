"""LoFTR (Sun et al., CVPR 2021) through kornia: detector-free dense matching of two images.

There are no cached features: every pair costs a full network pass over both images (on 2 CPU cores about
1-3 s per pair at the default 640 px working size; see BENCHMARKS.md). The weights (``loftr_outdoor.ckpt``,
``loftr_indoor_ds_new.ckpt``) have no published sha256; they are read with ``weights_only=True``.
``pretrained="none"`` builds the real architecture with seeded random weights (for tests only: its
matches mean nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from localmatch.config import Config, check_choice, check_number, check_whole
from localmatch.features._torch import check_device, select_device
from localmatch.io import Image, resize_to_working
from localmatch.matching import MATCHERS, Matcher
from localmatch.types import Correspondences
from localmatch.weights import load_state_dict

PRETRAINED = {"outdoor": "loftr-outdoor", "indoor": "loftr-indoor", "indoor_new": "loftr-indoor-new", "none": None}


@dataclass(frozen=True)
class LoFTRConfig(Config):
    """Options of the LoFTR matcher.

    Attributes:
        pretrained: ``"outdoor"``, ``"indoor"``, ``"indoor_new"``, or ``"none"`` (random, tests only).
        max_side: long side of each working image (caps memory: attention is quadratic in 1/8-pixels).
        confidence: keep matches whose coarse confidence is above this (LoFTR's own threshold is 0.2).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        half: float16 on CUDA.
    """

    pretrained: str = "outdoor"
    max_side: int = 640
    confidence: float = 0.2
    device: str = "auto"
    half: bool = True

    def __post_init__(self) -> None:
        check_choice(self, "pretrained", tuple(PRETRAINED))
        check_whole(self, "max_side", 8)
        check_number(self, "confidence", 0, 1)
        check_device(self)


@lru_cache(maxsize=4)
def _model(pretrained: str, device: str, half: bool, confidence: float):
    from kornia.feature import LoFTR

    config = _config_for(pretrained, confidence)
    weights = PRETRAINED[pretrained]
    if weights is None:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = LoFTR(pretrained=None, config=config)
    else:
        model = LoFTR(pretrained=None, config=config)
        model.load_state_dict(load_state_dict(weights)["state_dict"], strict=True)
    model = model.eval().to(device)
    return model.half() if half else model


def _config_for(pretrained: str, confidence: float) -> dict[str, Any]:
    from copy import deepcopy

    from kornia.feature.loftr.loftr import default_cfg

    cfg: dict[str, Any] = deepcopy(default_cfg)
    cfg["match_coarse"]["thr"] = confidence  # LoFTR filters by it itself
    if pretrained == "indoor_new":
        cfg["coarse"]["temp_bug_fix"] = True
    return cfg


def match_loftr(image_a: Image, image_b: Image, config: LoFTRConfig) -> Correspondences:
    """Dense correspondences between A and B, in original pixels, most confident first."""
    device = select_device(config.device)
    half = device.type == "cuda" and config.half
    work_a = resize_to_working(image_a.gray(), config.max_side, multiple=8)
    work_b = resize_to_working(image_b.gray(), config.max_side, multiple=8)
    dtype = torch.float16 if half else torch.float32
    tensors = [torch.from_numpy(w.pixels.astype(np.float32) / 255.0)[None, None].to(device, dtype) for w in (work_a, work_b)]
    with torch.inference_mode():
        out = _model(config.pretrained, str(device), half, config.confidence)({"image0": tensors[0], "image1": tensors[1]})
    confidence = out["confidence"].float().cpu().numpy()
    keep = confidence > config.confidence
    # LoFTR puts pixel centres at +0.5; localmatch at integers.
    kp_a = out["keypoints0"].float().cpu().numpy()[keep] - 0.5
    kp_b = out["keypoints1"].float().cpu().numpy()[keep] - 0.5
    order = np.argsort(-confidence[keep], kind="stable")
    return Correspondences(work_a.to_original(kp_a[order]), work_b.to_original(kp_b[order]),
                           confidence[keep][order].astype(np.float32),
                           working_scale_a=sum(work_a.scale) / 2, working_scale_b=sum(work_b.scale) / 2)


MATCHERS.add("loftr", Matcher("loftr", LoFTRConfig, match_loftr, dense=True))
