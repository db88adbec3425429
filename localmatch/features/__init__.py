"""Local feature extractors, chosen by name.

Each extractor is a :class:`FeatureExtractor`: a name, a frozen config type and a function
``(Image, config) -> Features``. Extractors resize to their working size themselves and report
keypoints in original pixels. An extractor may also yield its features in stages, each a superset of
the last (ASIFT adds tilted views), so that a caller can stop at the first one that is enough; and it
says whether two images are extracted faster in two threads at once than one after the other.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from localmatch.config import Config, build_config, check_whole
from localmatch.io import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, Image, ImageSource, load_image
from localmatch.registry import Registry
from localmatch.types import Features


@dataclass(frozen=True)
class ExtractorConfig(Config):
    """Options every extractor has; each extractor's config subclasses this one (and may change the
    defaults). The database, the CLI, dedup and the query box decode and scale images by them.

    Attributes:
        max_features: keep at most this many keypoints, the strongest.
        max_side: long side of the working image in pixels (None or 0: original size; never enlarged).
        max_pixels: images larger than this are refused (decompression bombs).
    """

    max_features: int = 2048
    max_side: int | None = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        check_whole(self, "max_features", 1)
        check_whole(self, "max_side", 0, optional=True)  # None or 0: original size
        check_whole(self, "max_pixels", 1)


@dataclass(frozen=True)
class FeatureExtractor:
    """A registered extractor. ``config_type`` is a frozen :class:`ExtractorConfig` subclass."""

    name: str
    config_type: type[ExtractorConfig]
    run: Callable[[Image, Any], Features]
    #: ``(Image, config) -> Iterator[Features]``, richer each time, the last equal to ``run``'s; None: one stage.
    stages: Callable[[Image, Any], Iterator[Features]] | None = None
    #: Two images take less time in two threads than one after the other: true of OpenCV's SIFT, which
    #: uses one core for most of its work; not of torch models, which already use every core.
    side_by_side: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.config_type, type) and issubclass(self.config_type, ExtractorConfig)):
            raise TypeError(f"extractor {self.name!r}: its config {getattr(self.config_type, '__name__', self.config_type)} "
                            "must subclass localmatch.features.ExtractorConfig (max_features, max_side, max_pixels)")

    def run_stages(self, image: Image, config: ExtractorConfig) -> Iterator[Features]:
        """The features of ``image`` stage by stage (just ``run``'s for an extractor without stages)."""
        if self.stages is None:
            yield self.run(image, config)
        else:
            yield from self.stages(image, config)

    def make_config(self, config: Config | dict | None = None, **overrides: Any) -> ExtractorConfig:
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


def extract_pair(a: ImageSource | Features, b: ImageSource | Features, features: str = "sift",
                 config: Config | dict | None = None) -> tuple[Features, Features]:
    """The features of images A and B, as :func:`extract` gives them; either may be given as
    :class:`~localmatch.types.Features` already and is passed through. Both images are decoded and
    extracted in two threads at once where the extractor gains from it (``FeatureExtractor.side_by_side``)."""
    extractor = FEATURES.get(features)
    cfg = extractor.make_config(config)

    def features_of(image: ImageSource | Features) -> Features:
        return image if isinstance(image, Features) else extract(image, features, cfg)

    if not extractor.side_by_side or isinstance(a, Features) or isinstance(b, Features):
        return features_of(a), features_of(b)
    with ThreadPoolExecutor(max_workers=2) as pool:
        features_a, features_b = pool.submit(features_of, a), pool.submit(features_of, b)
        return features_a.result(), features_b.result()


def stages_of_pair(extractor: FeatureExtractor, a: Image, b: Image,
                   config: ExtractorConfig) -> Iterator[tuple[Features, Features]]:
    """The features of images A and B stage by stage (see ``FeatureExtractor.run_stages``), in pairs; each
    pair extracted in two threads at once where the extractor gains from it. A staged extractor's first
    stages have few views, which alone leave a core idle."""
    stages_a, stages_b = extractor.run_stages(a, config), extractor.run_stages(b, config)
    if not extractor.side_by_side:
        yield from zip(stages_a, stages_b)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        while True:
            next_a, next_b = pool.submit(next, stages_a, None), pool.submit(next, stages_b, None)
            features_a, features_b = next_a.result(), next_b.result()
            if features_a is None or features_b is None:
                return
            yield features_a, features_b


def load_for(image: ImageSource, config: ExtractorConfig | None) -> Image:
    """Decode ``image`` under the pixel limit of an extractor's config (``max_pixels``; None: the default
    limit, for dense matchers, which have no extractor)."""
    return load_image(image) if config is None else load_image(image, max_pixels=config.max_pixels)


from localmatch.features import asift, sift  # noqa: E402,F401  (registers them)

# The learned extractors' modules import torch, so they register themselves when first asked for.
FEATURES.add_lazy("aliked", "localmatch.features.aliked")
FEATURES.add_lazy("delf", "localmatch.features.delf")
FEATURES.add_lazy("disk", "localmatch.features.disk")
FEATURES.add_lazy("keynet-affnet", "localmatch.features.keynet_affnet")
FEATURES.add_lazy("xfeat", "localmatch.features.xfeat")
