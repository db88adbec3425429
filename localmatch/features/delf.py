"""DELF-style attentive local features from the ImageNet EfficientNet-Lite0 that ``gem`` uses.

DELF (Noh et al., ICCV 2017) describes every cell of a CNN's stride-16 feature map and keeps the cells
that an attention function scores highest, each located at its receptive field's centre. DELF's own
attention is a small network trained on landmarks, whose weights cannot be had here; this attention is
the feature's L2 norm, which HOW (Tolias et al., ECCV 2020) uses instead of a separate attention network
(HOW also fine-tunes its backbone on landmarks; this one is ImageNet's as it is). Nothing beyond the
``efficientnet-lite0`` checkpoint is needed.

- Working image: long side ``max_side`` (768 by default, or the image's own when smaller) times each of
  ``scales``, sides rounded to multiples of 16; never enlarged beyond the image's own size.
- Descriptors: the 112-d output of EfficientNet-Lite0's last stride-16 stage, L2-normalised.
- Keypoints: cell ``(i, j)`` sits at working pixel ``(16 j + 15, 16 i + 15)`` (see
  :meth:`~localmatch.shortlist.efficientnet_lite.EfficientNetLite0.stride16_features`), mapped to
  original pixels; ``scales`` is the cell's size (16 working pixels) in original pixels.
- Scores: the attention (L2 norm); the ``max_features`` highest over all scales are kept, and
  ``detection_threshold``, when given, drops cells whose norm is below it.
- A keypoint is only as exact as its 16-pixel cell, so ``working_scale`` is the (coarsest) working
  scale divided by :data:`CELL_PER_PIXEL_NOISE`: RANSAC's threshold (3 working pixels for pixel-exact
  keypoints) becomes 6 working pixels, 3/8 of a cell. (On multiview_dev pairs, 12 working pixels verified
  one more same-scene pair of 37 and let chance matches between different scenes reach more inliers.)

On multiview_dev these features make ASMK* far stronger than RootSIFT's (BENCHMARKS.md). Their coarse,
partly semantic cells verify most pairs of the same scene but give homographies good to a few pixels
only, and chance matches between different buildings reach more inliers than RootSIFT's: verify with
SIFT where a false match costs more than a missed one.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from localmatch.errors import ConfigError
from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import LearnedConfig, autocast, select_device, to_features
from localmatch.io import Image, Resized, resize_to_working
from localmatch.shortlist.efficientnet_lite import EfficientNetLite0, input_tensor, pretrained
from localmatch.types import Features

STRIDE = 16
#: Localisation noise of a cell centre, in working pixels, relative to a pixel-exact keypoint's.
CELL_PER_PIXEL_NOISE = 2.0


@dataclass(frozen=True)
class DelfConfig(LearnedConfig):
    """:class:`~localmatch.features._torch.LearnedConfig` with DELF's defaults, plus:

    Attributes:
        scales: factors of the working size at which the image is described (DELF's image
            pyramid; a factor above 1 only counts for images larger than ``max_side``); one scale by
            default, which scored best on multiview_dev (BENCHMARKS.md).
        detection_threshold: the smallest attention (feature L2 norm) kept; None keeps the
            ``max_features`` strongest cells whatever their norm.
    """

    max_features: int = 1000
    max_side: int | None = 768
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        super().__post_init__()
        scales = self.scales
        if isinstance(scales, (int, float, str)) or not scales:
            raise ConfigError(f"DelfConfig.scales must be a non-empty list of positive numbers, got {scales!r}")
        object.__setattr__(self, "scales", tuple(scales))
        for scale in self.scales:
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 8:
                raise ConfigError(f"DelfConfig.scales: each must be a number in (0, 8], got {scale!r}")


@lru_cache(maxsize=2)
def _network(device: str, half: bool) -> EfficientNetLite0:
    """The pretrained network on ``device`` (float16 on CUDA when ``half``); the shared CPU one otherwise."""
    net = pretrained()
    if device == "cpu":
        return net
    net = copy.deepcopy(net).to(device)
    return net.half() if half else net


def _cells(image: Image, config: DelfConfig, scale: float,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One scale's cells: keypoints ``(N, 2)`` in original pixels, attention ``(N,)``, descriptors
    ``(N, 112)`` and sizes ``(N,)`` (16 working pixels, in original pixels)."""
    own = max(image.size)
    base = min(config.max_side, own) if config.max_side else own
    work = resize_to_working(image.pixels, max(min(round(base * scale), own), 1), multiple=STRIDE)
    half = config.half and device.type == "cuda"
    tensor = input_tensor(work.pixels).to(device)
    with torch.inference_mode(), autocast(device, config):
        cells = _network(str(device), half).stride16_features(tensor.half() if half else tensor)[0].float().cpu()
    dim, rows, cols = cells.shape
    cells = cells.reshape(dim, rows * cols).T
    i, j = np.divmod(np.arange(rows * cols), cols)
    centres = np.stack([j, i], 1).astype(np.float32) * STRIDE + (STRIDE - 1)
    keypoints = torch.from_numpy(work.to_original(centres))
    size = STRIDE / (0.5 * (work.scale[0] + work.scale[1]))
    return keypoints, cells.norm(dim=1), cells, torch.full((len(cells),), size)


def extract_delf(image: Image, config: DelfConfig) -> Features:
    """The ``max_features`` cells of highest attention over every scale (see the module docstring)."""
    device = select_device(config.device)
    per_scale = [_cells(image, config, scale, device) for scale in config.scales]
    keypoints, attention, descriptors, cell_sizes = (torch.cat(parts) for parts in zip(*per_scale))
    coarsest = STRIDE / float(cell_sizes.max())  # the smallest working scale (every scale has a cell)
    if config.detection_threshold is not None:
        keep = attention >= config.detection_threshold
        keypoints, attention, descriptors, cell_sizes = (t[keep] for t in (keypoints, attention, descriptors,
                                                                           cell_sizes))
    in_original = Resized(image.pixels, (1.0, 1.0))  # the keypoints are in original pixels already
    features = to_features(image, in_original, keypoints, attention, descriptors, "delf", config.max_features,
                           scales=cell_sizes)
    return dataclasses.replace(features, working_scale=coarsest / CELL_PER_PIXEL_NOISE)


FEATURES.add("delf", FeatureExtractor("delf", DelfConfig, extract_delf))
