"""Matchers, chosen by name: each takes two :class:`~localmatch.types.Features` and a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from localmatch.config import Config, build_config
from localmatch.matching.nn import NNConfig, match_nn, match_nn_batched, quantize
from localmatch.registry import Registry
from localmatch.types import Features, Matches


@dataclass(frozen=True)
class Matcher:
    name: str
    config_type: type[Config]
    run: Callable[[Features, Features, Any], Matches]

    def make_config(self, config: Config | dict | None = None, **overrides: Any) -> Config:
        """The config from an instance, a dict or keyword overrides of the defaults."""
        return build_config(self.config_type, config, overrides, self.name)


MATCHERS: Registry[Matcher] = Registry("matcher")


def _nn(features_a: Features, features_b: Features, config: NNConfig) -> Matches:
    _check_compatible(features_a, features_b)
    return match_nn(features_a.descriptors, features_b.descriptors, config)


def _check_compatible(features_a: Features, features_b: Features) -> None:
    if features_a.extractor != features_b.extractor:
        raise ValueError(f"cannot match {features_a.extractor} features with {features_b.extractor} features")


MATCHERS.add("nn", Matcher("nn", NNConfig, _nn))


def match(features_a: Features, features_b: Features, matcher: str = "nn",
          config: Config | dict | None = None, **overrides: Any) -> Matches:
    """Match the features of two images with a registered matcher (see ``MATCHERS.names()``)."""
    m = MATCHERS.get(matcher)
    return m.run(features_a, features_b, m.make_config(config, **overrides))


__all__ = ["MATCHERS", "Matcher", "NNConfig", "match", "match_nn", "match_nn_batched", "quantize"]
