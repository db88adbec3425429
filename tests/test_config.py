"""Options are checked when a config is made: a bad value fails at once, naming the option and the rule."""

from __future__ import annotations

import numpy as np
import pytest

import localmatch
from localmatch.config import build_config
from localmatch.errors import ConfigError
from localmatch.features.asift import AsiftConfig
from localmatch.features.sift import SiftConfig
from localmatch.geometry import RansacConfig
from localmatch.matching.nn import NNConfig
from localmatch.shortlist.asmk import AsmkConfig


@pytest.mark.parametrize("config_type, options, message", [
    (SiftConfig, {"max_features": 0}, "SiftConfig.max_features must be a whole number >= 1, not 0"),
    (SiftConfig, {"max_features": 1.5}, "max_features must be a whole number"),
    (SiftConfig, {"max_side": -5}, "SiftConfig.max_side must be a whole number >= 0 or None, not -5"),
    (SiftConfig, {"upright": "yes"}, "SiftConfig.upright must be True or False"),
    (SiftConfig, {"contrast_threshold": -0.1}, "contrast_threshold must be a number >= 0"),
    (SiftConfig, {"max_pixels": True}, "max_pixels must be a whole number"),
    (AsiftConfig, {"max_tilt": -1}, "AsiftConfig.max_tilt must be a whole number >= 0"),
    # a negative or > 1 ratio used to turn the ratio test off without a word
    (NNConfig, {"ratio": -1}, r"NNConfig.ratio must be a number in \(0, 1\] or None, not -1"),
    (NNConfig, {"ratio": 2.0}, r"NNConfig.ratio must be a number in \(0, 1\]"),
    # OpenCV took a negative threshold as if it were positive
    (RansacConfig, {"threshold": -1}, "RansacConfig.threshold must be a number > 0, not -1"),
    (RansacConfig, {"threshold": float("nan")}, "threshold must be a number > 0"),
    (RansacConfig, {"confidence": 1.0}, r"confidence must be a number in \(0, 1\)"),
    (RansacConfig, {"max_iterations": 0}, "max_iterations must be a whole number >= 1"),
    (AsmkConfig, {"codebook_size": 0}, "AsmkConfig.codebook_size must be a whole number >= 1, not 0"),
    (AsmkConfig, {"alpha": -3}, "alpha must be a number >= 0"),
])
def test_bad_values_raise_config_errors_naming_the_option(config_type, options, message):
    with pytest.raises(ConfigError, match=message):
        build_config(config_type, options, {}, "test")


def test_good_values_of_every_kind_are_accepted():
    assert SiftConfig(max_features=np.int64(10), max_side=None, contrast_threshold=0).max_features == 10
    assert SiftConfig(max_side=0).max_side == 0  # 0, like None, keeps the original size
    assert NNConfig(ratio=1.0).ratio == 1.0 and NNConfig(ratio=np.float32(0.5)).ratio == 0.5
    assert RansacConfig(threshold=0.5, confidence=0.99, seed=3).seed == 3
    assert AsmkConfig(codebook_size=64, threshold=-0.5).codebook_size == 64


def test_learned_and_dense_matcher_options_are_checked():
    pytest.importorskip("torch")
    from localmatch.features._torch import LearnedConfig
    from localmatch.matching.lightglue import LightGlueConfig
    from localmatch.matching.loftr import LoFTRConfig

    with pytest.raises(ConfigError, match="LearnedConfig.device must be one of auto, cpu, cuda, not 'tpu'"):
        LearnedConfig(device="tpu")
    with pytest.raises(ConfigError, match="detection_threshold must be a number >= 0 or None"):
        LearnedConfig(detection_threshold=-1)
    assert LightGlueConfig(depth_confidence=-1, width_confidence=0.99).depth_confidence == -1  # -1: off
    with pytest.raises(ConfigError, match="LightGlueConfig.filter_threshold"):
        LightGlueConfig(filter_threshold=1.5)
    with pytest.raises(ConfigError, match="LoFTRConfig.pretrained must be one of outdoor, indoor, indoor_new, none"):
        LoFTRConfig(pretrained="x")


def test_the_public_calls_check_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="max_features"):
        localmatch.extract(tmp_path / "never-read.jpg", max_features=-1)
    with pytest.raises(ConfigError, match="min_inliers must be a whole number >= 1, not 0"):
        localmatch.verify(tmp_path / "never-read.jpg", tmp_path / "never-read.jpg", min_inliers=0)


def test_search_and_dedup_arguments_are_checked_before_any_work(tmp_path):
    """A shortlist of 0 or -1 was taken as k candidates, and rerank="no" or mirror="no" as true."""
    from localmatch.database import Database
    from localmatch.dedup import find_duplicates

    with pytest.raises(ConfigError, match="readonly must be True or False, not 'no'"):
        Database(tmp_path / "db", readonly="no")
    with Database(tmp_path / "db") as db:
        for options, message in (({"shortlist": 0}, "shortlist .* whole number >= 1, not 0"),
                                 ({"shortlist": 2.5}, "shortlist .* not 2.5"),
                                 ({"rerank": "no"}, "rerank must be True or False, not 'no'")):
            with pytest.raises(ConfigError, match=message):
                db.search(tmp_path / "never-read.jpg", **options)
    for options, message in (({"shortlist": -1}, "shortlist .* not -1"), ({"mirror": "no"}, "mirror must be True")):
        with pytest.raises(ConfigError, match=message):
            find_duplicates([tmp_path / "never-read.jpg"], **options)
