"""Matchers, chosen by name.

Sparse matchers take two :class:`~localmatch.types.Features` and return :class:`~localmatch.types.Matches`:
``nn`` (mutual nearest neighbour + ratio test, any features), ``lightglue`` (DISK, ALIKED) and
``lighterglue`` (XFeat). Dense matchers take two images and return
:class:`~localmatch.types.Correspondences` directly: ``loftr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from localmatch.config import Config, build_config
from localmatch.errors import ConfigError
from localmatch.matching.nn import NNConfig, match_nn, match_nn_batched, quantize, quantized
from localmatch.registry import Registry
from localmatch.types import Features, Matches


@dataclass(frozen=True)
class Matcher:
    """A registered matcher.

    Attributes:
        run: sparse: ``(Features, Features, config) -> Matches``; dense: ``(Image, Image, config) -> Correspondences``.
        dense: whether it matches images (no features).
        accepts: extractor names (``Features.extractor``) it can match; empty means any.
    """

    name: str
    config_type: type[Config]
    run: Callable[..., Any]
    dense: bool = False
    accepts: tuple[str, ...] = ()

    def make_config(self, config: Config | dict | None = None, **overrides: Any) -> Config:
        """The config from an instance, a dict or keyword overrides of the defaults."""
        return build_config(self.config_type, config, overrides, self.name)

    def check(self, features_a: Features, features_b: Features) -> None:
        if features_a.extractor != features_b.extractor:
            raise ConfigError(f"cannot match {features_a.extractor} features with {features_b.extractor} features")
        if self.accepts and features_a.extractor not in self.accepts:
            raise ConfigError(f"matcher {self.name!r} works with {', '.join(self.accepts)} features, "
                             f"not {features_a.extractor}")


MATCHERS: Registry[Matcher] = Registry("matcher")


def _nn(features_a: Features, features_b: Features, config: NNConfig) -> Matches:
    return match_nn(quantized(features_a), quantized(features_b), config, features_a.extractor)


MATCHERS.add("nn", Matcher("nn", NNConfig, _nn))
# The networks' modules import torch, so they register their matchers when first asked for.
MATCHERS.add_lazy("lightglue", "localmatch.matching.lightglue")
MATCHERS.add_lazy("lighterglue", "localmatch.matching.lightglue")
MATCHERS.add_lazy("loftr", "localmatch.matching.loftr")


#: The matcher for features when none is named: the LightGlue trained for them, else mutual NN. Mutual NN on
#: DISK, ALIKED or XFeat descriptors verifies fewer pairs of one scene and, for XFeat, pairs of different
#: places (BENCHMARKS.md, "The default matcher of learned features").
DEFAULT_MATCHER = {"disk": "lightglue", "aliked": "lightglue", "xfeat": "lighterglue"}


def default_matcher(features: str) -> str:
    """The matcher used for ``features`` (an extractor name, or :attr:`Features.extractor`) when none is named."""
    return DEFAULT_MATCHER.get(features, "nn")


def match(features_a: Features, features_b: Features, matcher: str | None = None,
          config: Config | dict | None = None, **overrides: Any) -> Matches:
    """Match the features of two images with a registered sparse matcher (see ``MATCHERS.names()``); by
    default the one their extractor is matched with (:func:`default_matcher`)."""
    matcher = matcher or default_matcher(features_a.extractor)
    m = MATCHERS.get(matcher)
    if m.dense:
        raise ValueError(f"{matcher!r} matches images, not features: use localmatch.verify(a, b, matcher={matcher!r})")
    m.check(features_a, features_b)
    return m.run(features_a, features_b, m.make_config(config, **overrides))


__all__ = ["DEFAULT_MATCHER", "MATCHERS", "Matcher", "NNConfig", "default_matcher", "match", "match_nn",
           "match_nn_batched", "quantize", "quantized"]
