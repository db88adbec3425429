"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation), as a feature map.

Parameter names follow the ``efficientnet-lite0-57934424.pth`` checkpoint so it loads with
``strict=True``; :func:`pretrained` gives the ImageNet network that the ``gem`` global descriptor and the
``delf`` local features share. Convolutions use TensorFlow's "same" padding computed from each input's size (the
checkpoint was trained in TensorFlow), so any image size works.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
#: (kernel, stride, expand ratio, input channels, output channels, repeats) per stage.
STAGES = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
FEATURE_DIM = 1280
#: The blocks up to the end of the stride-16 stage (112 channels), and that stage's stride and width.
STRIDE16_BLOCKS, STRIDE16_DIM = 11, 112


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding (extra pixel at the bottom/right when uneven)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expand = expand != 1
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """``features(x)``: ``(B, 3, H, W)`` normalised RGB -> ``(B, 1280, ceil(H/32), ceil(W/32))``."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, 1000)  # the ImageNet classifier, kept so the checkpoint loads strictly

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._blocks_up_to(x, len(self._blocks))
        return F.relu6(self._bn1(self._conv_head(x)))

    def stride16_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB, sides multiples of 16 -> ``(B, 112, H/16, W/16)``: the output of
        the last stride-16 stage (linear, as every stage's projection is). With sides multiples of 16, TF
        "same" padding centres output cell ``(i, j)`` on input pixel ``(16 j + 15, 16 i + 15)`` (each
        stride-2 convolution pads one pixel less before than after)."""
        return self._blocks_up_to(x, STRIDE16_BLOCKS)

    def _blocks_up_to(self, x: torch.Tensor, count: int) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks[:count]:
            x = block(x)
        return x


def input_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(h, w, 3) uint8`` RGB -> ``(1, 3, h, w) float32`` normalised with ImageNet statistics."""
    x = (pixels.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


_PRETRAINED: EfficientNetLite0 | None = None


def pretrained() -> EfficientNetLite0:
    """The ImageNet network (``efficientnet-lite0`` weights, sha256-checked), loaded strictly once per process."""
    global _PRETRAINED
    if _PRETRAINED is None:
        from localmatch.weights import load_state_dict

        net = EfficientNetLite0()
        net.load_state_dict(load_state_dict("efficientnet-lite0"), strict=True)
        _PRETRAINED = net.eval()
    return _PRETRAINED
