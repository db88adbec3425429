"""Local feature extractors, chosen by name.

Each extractor is a :class:`FeatureExtractor`: a name, a frozen config type and a function
``(Image, config) -> Features``. Extractors resize to their working size themselves and report
keypoints in original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from localmatch.config import Config, build_config
from localmatch.io import Image, ImageSource, load_image
from localmatch.registry import Registry
from localmatch.types import Features


@dataclass(frozen=True)
class FeatureExtractor:
    name: str
    config_type: type[Config]
    run: Callable[[Image, Any], Features]

    def make_config(self, config: Config | dict | None = None, **overrides: Any) -> Config:
        """The config from an instance, a dict or keyword overrides of the defaults."""
        return build_config(self.config_type, config, overrides, self.name)


FEATURES: Registry[FeatureExtractor] = Registry("features")


def extract(
    image: ImageSource, features: str = "sift", config: Config | dict | None = None, **overrides: Any
) -> Features:
    """Extract local features from one image.

    Args:
        image: a path, encoded bytes, an RGB array or a loaded :class:`~localmatch.io.Image`.
        features: registered extractor name (see ``FEATURES.names()``).
        config: the extractor's config object or a dict of its options.
        **overrides: single options, e.g. ``max_features=4096``.

    Returns:
        :class:`~localmatch.types.Features` with keypoints in original pixels.
    """
    extractor = FEATURES.get(features)
    cfg = extractor.make_config(config, **overrides)
    return extractor.run(load_for(image, cfg), cfg)


def load_for(image: ImageSource, config: Config | None) -> Image:
    """Decode ``image`` under the pixel limit of an extractor's config (``max_pixels``, where it has one)."""
    max_pixels = getattr(config, "max_pixels", None)
    return load_image(image) if max_pixels is None else load_image(image, max_pixels=max_pixels)


from localmatch.features import aliked, asift, disk, keynet_affnet, sift, xfeat  # noqa: E402,F401  (registers them)
