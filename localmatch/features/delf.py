"""DELF-style attentive local features from the ImageNet EfficientNet-Lite0 that ``gem`` uses.

DELF (Noh et al., ICCV 2017) describes every cell of a CNN's stride-16 feature map and keeps the cells
that an attention function scores highest, each located at its receptive field's centre. DELF's own
attention is a small network trained on landmarks, whose weights cannot be had here; this attention is
the feature's L2 norm, which HOW (Tolias et al., ECCV 2020) uses instead of a separate attention network
(HOW also fine-tunes its backbone on landmarks; this one is ImageNet's as it is). Nothing beyond the
``efficientnet-lite0`` checkpoint is needed.

- Working image: the image inside its flat borders (below), long side ``max_side`` (768 by default, or
  its own when smaller) times each of ``scales`` (never above its own), sides then rounded to the nearest
  multiple of 16 (so up to 8 pixels over that).
- Descriptors: the 112-d output of EfficientNet-Lite0's last stride-16 stage, L2-normalised.
- Keypoints: cell ``(i, j)`` sits at working pixel ``(16 j + 15, 16 i + 15)`` (see
  :meth:`~localmatch.shortlist.efficientnet_lite.EfficientNetLite0.stride16_features`), mapped to
  original pixels; ``scales`` is the cell's size (16 working pixels) in original pixels.
- Scores: the attention (L2 norm); the ``max_features`` highest over all scales are kept, and
  ``detection_threshold``, when given, drops cells whose norm is below it.
- Flat parts are left out (``min_contrast``, 1 grey level by default). The rows and columns at the
  image's borders whose grey levels hardly vary (letterbox and pillarbox bars, blank margins) are cut off
  before the network sees the image (see :func:`content_box`), and a cell whose 32 x 32 working pixels
  hardly vary (a blank wall, a saturated sky; :func:`window_contrast`) is dropped. Such cells describe
  little more than where they lie in the frame: with every cell kept, each of the 45 pairs of 10 different
  ukbench objects verified when both were put in the same black bars (up to 83 inliers), and none does
  now; a flat image has no features.
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
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from localmatch.config import check_flag, check_number
from localmatch.errors import ConfigError
from localmatch.features import FEATURES, FeatureExtractor
from localmatch.features._torch import LearnedConfig, autocast, empty_features, select_device, to_features
from localmatch.io import Image, Resized, resize_to_working
from localmatch.shortlist.efficientnet_lite import STRIDE16_DIM, EfficientNetLite0, input_tensor, pretrained
from localmatch.types import Features

STRIDE = 16
#: Cells of mirrored image beyond each side of the working image (``DelfConfig.reflect_border``).
BORDER_CELLS = 2
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
        min_contrast: a standard deviation of grey levels (0-255). Border rows and columns that vary
            less are cut off before the network sees the image (:func:`content_box`), and cells whose 32 x
            32 working pixels vary less are dropped (:func:`window_contrast`). None keeps every cell of
            the whole image, as databases built before this option do.
        reflect_border: let the network see the working image mirrored :data:`BORDER_CELLS` cells beyond
            each side (the cells of that margin are dropped) instead of padded with zeros. Zero padding
            tells the cells near the border where they lie, and where a picture shows nothing else
            (sensor noise, a dark frame) they match the cells at the same border of another such picture:
            11 of 20 pairs of noise pictures verified, none with the mirror. Off by default: it costs a
            quarter more extraction time, and ASMK* mAP on multiview_dev fell within its seed spread
            (BENCHMARKS.md, "Pictures of nothing").
    """

    STORED_DEFAULTS: ClassVar[dict[str, Any]] = {"min_contrast": None}  # the option came in session 32

    max_features: int = 1000
    max_side: int | None = 768
    scales: tuple[float, ...] = (1.0,)
    min_contrast: float | None = 1.0
    reflect_border: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "min_contrast", 0, optional=True)
        check_flag(self, "reflect_border")
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


def window_contrast(grey: np.ndarray, centres: np.ndarray, half: int = STRIDE) -> np.ndarray:
    """Standard deviation of ``grey`` (``(H, W) uint8``) over the ``2 half`` x ``2 half`` window centred on
    each of ``centres`` (``(N, 2)`` integer pixel positions x, y), clipped to the image: ``(N,) float64``."""
    grey = grey.astype(np.float64)
    sums, squares = cv2.integral(grey), cv2.integral(grey * grey)
    height, width = grey.shape
    x, y = centres[:, 0].astype(np.int64), centres[:, 1].astype(np.int64)
    x0, x1 = np.clip(x - half + 1, 0, width), np.clip(x + half + 1, 0, width)
    y0, y1 = np.clip(y - half + 1, 0, height), np.clip(y + half + 1, 0, height)
    count = np.maximum((x1 - x0) * (y1 - y0), 1)

    def window_sum(table: np.ndarray) -> np.ndarray:
        return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]

    mean = window_sum(sums) / count
    return np.sqrt(np.maximum(window_sum(squares) / count - mean * mean, 0.0))


@dataclass(frozen=True)
class _ScaleCells:
    """One scale's cells that are not flat: keypoints ``(N, 2)`` in original pixels, attention ``(N,)``,
    descriptors ``(N, 112)``, and the cells' size (16 working pixels) in original pixels."""

    keypoints: torch.Tensor
    attention: torch.Tensor
    descriptors: torch.Tensor
    cell_size: float


def content_box(grey: np.ndarray, min_contrast: float) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, the part of ``grey`` (``(H, W) uint8``) inside its flat borders: the rows at the
    top and bottom, then the columns at the left and right (of the rows left), whose grey levels have a
    standard deviation below ``min_contrast``: letterbox and pillarbox bars, blank margins. Pixels ``x0 <= x
    < x1``, ``y0 <= y < y1``; empty (``x0 == x1`` or ``y0 == y1``) when every row, or every column of the
    rows left, is flat."""

    def inside(flat: np.ndarray) -> tuple[int, int]:
        varied = np.flatnonzero(~flat)
        return (int(varied[0]), int(varied[-1]) + 1) if len(varied) else (0, 0)

    y0, y1 = inside(grey.std(axis=1) < min_contrast)
    x0, x1 = inside(grey[y0:y1].std(axis=0) < min_contrast) if y1 > y0 else (0, 0)
    return x0, y0, x1, y1


def _cells(pixels: np.ndarray, config: DelfConfig, scale: float, device: torch.device) -> _ScaleCells:
    """``pixels``' cells at ``scale``, keypoints in ``pixels``' own coordinates."""
    own = max(pixels.shape[:2])
    base = min(config.max_side, own) if config.max_side else own
    work = resize_to_working(pixels, max(min(round(base * scale), own), 1), multiple=STRIDE)
    half = config.half and device.type == "cuda"
    pad = BORDER_CELLS * STRIDE if config.reflect_border else 0
    seen = cv2.copyMakeBorder(work.pixels, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad else work.pixels
    tensor = input_tensor(seen).to(device)
    with torch.inference_mode(), autocast(device, config):
        cells = _network(str(device), half).stride16_features(tensor.half() if half else tensor)[0].float().cpu()
    if pad:  # sides are multiples of STRIDE, so the cells inside keep their centres (see stride16_features)
        cells = cells[:, BORDER_CELLS:-BORDER_CELLS, BORDER_CELLS:-BORDER_CELLS]
    dim, rows, cols = cells.shape
    cells = cells.reshape(dim, rows * cols).T
    i, j = np.divmod(np.arange(rows * cols), cols)
    centres = np.stack([j, i], 1).astype(np.float32) * STRIDE + (STRIDE - 1)
    if config.min_contrast is not None:
        grey = cv2.cvtColor(work.pixels, cv2.COLOR_RGB2GRAY)
        keep = window_contrast(grey, centres) >= config.min_contrast
        centres, cells = centres[keep], cells[torch.from_numpy(keep)]
    return _ScaleCells(torch.from_numpy(work.to_original(centres)), cells.norm(dim=1), cells,
                       STRIDE / (0.5 * (work.scale[0] + work.scale[1])))


def extract_delf(image: Image, config: DelfConfig) -> Features:
    """The ``max_features`` cells of highest attention over every scale (see the module docstring)."""
    device = select_device(config.device)
    in_original = Resized(image.pixels, (1.0, 1.0))  # keypoints are mapped to original pixels per scale
    pixels, offset = image.pixels, (0, 0)
    if config.min_contrast is not None:  # the network sees the picture without its bars
        x0, y0, x1, y1 = content_box(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), config.min_contrast)
        if x1 <= x0 or y1 <= y0:
            return empty_features(image, in_original, STRIDE16_DIM, "delf")
        pixels, offset = pixels[y0:y1, x0:x1], (x0, y0)
    per_scale = [_cells(pixels, config, scale, device) for scale in config.scales]
    keypoints = torch.cat([s.keypoints for s in per_scale]) + torch.tensor(offset, dtype=torch.float32)
    attention = torch.cat([s.attention for s in per_scale])
    descriptors = torch.cat([s.descriptors for s in per_scale])
    cell_sizes = torch.cat([torch.full((len(s.keypoints),), s.cell_size) for s in per_scale])
    coarsest = STRIDE / max(s.cell_size for s in per_scale)  # the smallest working scale
    if config.detection_threshold is not None:
        keep = attention >= config.detection_threshold
        keypoints, attention, descriptors, cell_sizes = (t[keep] for t in (keypoints, attention, descriptors,
                                                                           cell_sizes))
    features = to_features(image, in_original, keypoints, attention, descriptors, "delf", config.max_features,
                           scales=cell_sizes)
    return dataclasses.replace(features, working_scale=coarsest / CELL_PER_PIXEL_NOISE)


FEATURES.add("delf", FeatureExtractor("delf", DelfConfig, extract_delf))
