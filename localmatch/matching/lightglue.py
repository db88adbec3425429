"""LightGlue (Lindenberger et al., ICCV 2023) through kornia: ``lightglue`` for DISK and ALIKED features,
``lighterglue`` (the XFeat authors' smaller LightGlue) for XFeat features."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from localmatch.config import Config, check_flag, check_number
from localmatch.features._torch import bfloat16_on_cpu, check_device, load_checked, select_device
from localmatch.matching import MATCHERS, Matcher
from localmatch.types import Features, Matches
from localmatch.weights import load_state_dict

#: extractor name -> (kornia's LightGlue feature preset, weights name in the manifest)
PRESETS = {"disk": ("disk", "disk-lightglue"), "aliked": ("aliked", "aliked-lightglue"),
           "xfeat": ("xfeat", "xfeat-lighterglue")}

#: extractor name -> the least assignment score of a match kept by default. kornia's (and LightGlue's) 0.1
#: keeps low-confidence matches on look-alike structure: on multiview_dev, 19 (ALIKED) and 17 (DISK) of 136
#: pairs of photographs of different places verified, with up to 76 inliers (British Museum's pediment
#: matched to St Paul's). At 0.4 none does and no pair of one scene is lost, with oxford_affine_vgg and
#: ScanNet accuracy within their noise. LighterGlue is less confident on true matches (ScanNet pose
#: AUC@20 29.2 at 0.1, 28.5 at 0.3, 14.1 at 0.4), so XFeat keeps 0.3: 1 of the 136 still verifies
#: (4 at 0.1). Measured by ``bench/learned.py --only multiview``; see BENCHMARKS.md.
DEFAULT_FILTER_THRESHOLD = {"disk": 0.4, "aliked": 0.4, "xfeat": 0.3}


@dataclass(frozen=True)
class LightGlueConfig(Config):
    """Options of the LightGlue matchers.

    Attributes:
        filter_threshold: keep matches whose assignment score is above this (None: the extractor's value
            in :data:`DEFAULT_FILTER_THRESHOLD`, 0.4 for DISK and ALIKED, 0.3 for XFeat).
        depth_confidence: early stop of the layers (-1 off; None: the preset's value).
        width_confidence: point pruning (-1 off; None: the preset's value).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        half: mixed precision (float16) on CUDA.
        cpu_bfloat16: run under bfloat16 autocast on a CPU that has bfloat16 instructions (AVX512-BF16 or
            AMX; ignored on other CPUs, which would emulate it). Off by default: 1.2-1.7 times as fast on 2
            cores, but XFeat + LighterGlue's ScanNet pose AUC@20 fell from 28.5 to 21.6 with it
            (BENCHMARKS.md, "LightGlue in bfloat16 on the CPU").
    """

    filter_threshold: float | None = None
    depth_confidence: float | None = None
    width_confidence: float | None = None
    device: str = "auto"
    half: bool = True
    cpu_bfloat16: bool = False

    def __post_init__(self) -> None:
        check_number(self, "filter_threshold", 0, 1, optional=True)
        check_flag(self, "cpu_bfloat16")
        for name in ("depth_confidence", "width_confidence"):
            if getattr(self, name) != -1:
                check_number(self, name, 0, 1, optional=True)
        check_device(self)

    def filter_threshold_for(self, extractor: str) -> float:
        if self.filter_threshold is not None:
            return self.filter_threshold
        return DEFAULT_FILTER_THRESHOLD[extractor]


@lru_cache(maxsize=8)
def _model(preset: str, weights: str, device: str, filter_threshold: float, depth_confidence, width_confidence, mp: bool):
    from kornia.feature import LightGlue

    conf = {k: v for k, v in LightGlue.features[preset].items() if k != "weights"}
    conf["filter_threshold"] = filter_threshold
    if depth_confidence is not None:
        conf["depth_confidence"] = depth_confidence
    if width_confidence is not None:
        conf["width_confidence"] = width_confidence
    # kornia annotates ``features`` as a str; None makes it skip its own weight download (loaded below)
    model = LightGlue(None, mp=mp, **conf)  # type: ignore[arg-type]
    state = {k[len("matcher."):] if k.startswith("matcher.") else k: v for k, v in load_state_dict(weights).items()}
    for i in range(model.conf.n_layers):  # the checkpoints' older layout, renamed as kornia does
        state = {k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn")
                  .replace(f"cross_attn.{i}", f"transformers.{i}.cross_attn"): v for k, v in state.items()}
    # derived buffer missing; DISK's checkpoint has unused log_assignment.*.r scalars, XFeat's carries the extractor
    load_checked(model, state, derived=("confidence_thresholds",), ignored=("extractor.",) + tuple(
        f"log_assignment.{i}.r" for i in range(model.conf.n_layers)))
    return model.eval().to(device)


def _as_input(f: Features, device: torch.device) -> dict:
    """LightGlue's input for one image. kornia refuses keypoints outside ``[0, width] x [0, height]``; a
    sub-pixel keypoint may lie up to half a pixel before 0 (pixel centres at integers), which on a tiny
    image's long side fails that check, so it is moved onto the edge."""
    size = np.array(f.image_size, np.float32)
    keypoints = np.clip(f.keypoints, 0.0, size)
    return {"keypoints": torch.from_numpy(keypoints)[None].to(device),
            "descriptors": torch.from_numpy(f.descriptors)[None].to(device),
            "image_size": torch.tensor([f.image_size], dtype=torch.float32, device=device)}


def mixed_precision(device: torch.device, config: LightGlueConfig) -> bool:
    """Whether LightGlue runs under torch's autocast on ``device``: float16 on CUDA with ``half``, bfloat16 on
    a CPU with ``cpu_bfloat16`` when the CPU has bfloat16 instructions (elsewhere it would be emulated)."""
    if device.type == "cuda":
        return config.half
    return bfloat16_on_cpu(device, config.cpu_bfloat16)


def match_lightglue(features_a: Features, features_b: Features, config: LightGlueConfig) -> Matches:
    """LightGlue matches of A's keypoints with B's; ``scores`` are the assignment probabilities."""
    if len(features_a) == 0 or len(features_b) == 0:
        return Matches.empty()
    preset, weights = PRESETS[features_a.extractor]
    device = select_device(config.device)
    model = _model(preset, weights, str(device), config.filter_threshold_for(features_a.extractor),
                   config.depth_confidence, config.width_confidence, mixed_precision(device, config))
    with torch.inference_mode():
        out = model({"image0": _as_input(features_a, device), "image1": _as_input(features_b, device)})
    matches0 = out["matches0"][0].cpu().numpy()
    scores0 = out["matching_scores0"][0].float().cpu().numpy()
    idx_a = np.flatnonzero(matches0 > -1)
    return Matches(np.stack([idx_a, matches0[idx_a]], axis=1).astype(np.int64), scores0[idx_a].astype(np.float32))


MATCHERS.add("lightglue", Matcher("lightglue", LightGlueConfig, match_lightglue, accepts=("disk", "aliked")))
MATCHERS.add("lighterglue", Matcher("lighterglue", LightGlueConfig, match_lightglue, accepts=("xfeat",)))
