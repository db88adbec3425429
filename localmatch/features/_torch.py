"""Shared parts of the learned (torch) extractors: their config, device choice, input tensors, loading."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from localmatch.config import Config, check_choice, check_flag, check_number
from localmatch.errors import ConfigError
from localmatch.features import ExtractorConfig
from localmatch.io import Image, Resized, resize_to_working
from localmatch.types import Features

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class LearnedConfig(ExtractorConfig):
    """Options shared by the learned extractors: :class:`~localmatch.features.ExtractorConfig`'s
    (``max_features``: the highest scoring; the working image's sides are rounded to the network's
    stride), plus:

    Attributes:
        detection_threshold: keypoint score a detection must exceed; None takes the model's own default,
            0 keeps the ``max_features`` strongest maxima whatever their score.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        half: run in float16 on CUDA where the model supports it (ignored on the CPU).
        cpu_bfloat16: run under bfloat16 autocast on a CPU that has bfloat16 instructions (AVX512-BF16 or
            AMX; ignored on other CPUs, which would emulate it). Off by default: see BENCHMARKS.md,
            "Extraction in bfloat16 on the CPU", for what it gains and costs per extractor.
    """

    detection_threshold: float | None = None
    device: str = "auto"
    half: bool = True
    cpu_bfloat16: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self, "detection_threshold", 0, optional=True)
        check_flag(self, "cpu_bfloat16")
        check_device(self)


def check_device(config: Config) -> None:
    """The ``device`` and ``half`` options that every torch model's config has."""
    check_choice(config, "device", DEVICES)
    check_flag(config, "half")


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX); torch's private checks, read through
    getattr so that a torch without them answers False."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in checks)


def bfloat16_on_cpu(device: torch.device, cpu_bfloat16: bool) -> bool:
    """Whether a model asked to run in bfloat16 on the CPU (``cpu_bfloat16``, an extractor's or a matcher's
    option) does so on ``device``: only a CPU with bfloat16 instructions, where it is not emulated."""
    return device.type == "cpu" and cpu_bfloat16 and cpu_has_bfloat16()


def autocast(device: torch.device, config: LearnedConfig, *,
             cuda_half: bool = False) -> contextlib.AbstractContextManager:
    """Torch's autocast for one extraction: bfloat16 on a CPU with ``config.cpu_bfloat16`` that has bfloat16
    instructions, float16 on CUDA with ``config.half`` for models that support it (``cuda_half``); else none."""
    if bfloat16_on_cpu(device, config.cpu_bfloat16):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type == "cuda" and config.half and cuda_half:
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def working_tensor(image: Image, config: LearnedConfig, multiple: int, device: torch.device,
                   gray: bool = False) -> tuple[torch.Tensor, Resized]:
    """``(1, C, h, w)`` float tensor in [0, 1] at the working size (sides multiples of ``multiple``)."""
    pixels = image.gray() if gray else image.pixels
    work = resize_to_working(pixels, config.max_side, multiple=multiple)
    array = work.pixels.astype(np.float32) / 255.0
    array = array[None] if gray else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))[None].to(device), work


def to_features(image: Image, work: Resized, keypoints: torch.Tensor, scores: torch.Tensor,
                descriptors: torch.Tensor, extractor: str, max_features: int,
                scales: torch.Tensor | None = None, orientations: torch.Tensor | None = None) -> Features:
    """Features from working-image keypoints (pixel centres at integers), strongest first.

    ``scales`` (working-image pixels) and ``orientations`` (radians) per keypoint are optional; without
    them both are 0, as for detectors that give neither.
    """
    order = torch.argsort(scores.float(), descending=True)[:max_features]
    kp = keypoints[order].float().cpu().numpy().reshape(-1, 2)
    desc = torch.nn.functional.normalize(descriptors[order].float(), dim=-1).cpu().numpy()
    mean_scale = 0.5 * (work.scale[0] + work.scale[1])

    def per_keypoint(values: torch.Tensor | None, factor: float) -> np.ndarray:
        if values is None:
            return np.zeros(len(kp), np.float32)
        return (values[order].float().cpu().numpy() * factor).astype(np.float32)

    return Features(work.to_original(kp), per_keypoint(scales, 1.0 / mean_scale), per_keypoint(orientations, 1.0),
                    scores[order].float().cpu().numpy().astype(np.float32),
                    np.ascontiguousarray(desc, dtype=np.float32), image.size, extractor, mean_scale)


def empty_features(image: Image, work: Resized, descriptor_dim: int, extractor: str) -> Features:
    """Valid features with no keypoint, for a working image too small for the network or with nothing on it."""
    return to_features(image, work, torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, descriptor_dim), extractor, 1)


def load_checked(module: torch.nn.Module, state: dict, *, derived: tuple[str, ...] = (),
                 ignored: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict=False)`` that fails unless only derived buffers are missing and only the
    ``ignored`` prefixes are unexpected (so no learned parameter is left at random)."""
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(derived)] if derived else list(result.missing_keys)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignored)] if ignored else list(result.unexpected_keys)
    if missing or unexpected:
        raise RuntimeError(f"{type(module).__name__}: checkpoint does not fit: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
