"""localmatch: do these images show the same thing, and how are they related?

The pair API::

    import localmatch
    result = localmatch.verify("a.jpg", "b.jpg")          # SIFT/RootSIFT, mutual NN, auto H/F
    result.is_match, result.num_inliers, result.geometry, result.matrix

Points and matrices are in original pixels, origin at the centre of the top-left pixel; matrices
map A to B.
"""

from localmatch.api import DEFAULT_MIN_INLIERS, verify, verify_matches
from localmatch.errors import (ConfigError, DatabaseError, GroundTruthError, ImageError, LocalmatchError,
                               UnknownNameError)
from localmatch.features import FEATURES, extract
from localmatch.geometry import GEOMETRIES, GEOMETRY_BACKENDS, RansacConfig, estimate
from localmatch.io import Image, load_image
from localmatch.matching import MATCHERS, match, match_nn_batched
from localmatch.pairs import verify_pairs
from localmatch.types import Features, Matches, Verification

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DEFAULT_MIN_INLIERS",
    "DatabaseError",
    "FEATURES",
    "Features",
    "GEOMETRIES",
    "GEOMETRY_BACKENDS",
    "GroundTruthError",
    "Image",
    "ImageError",
    "LocalmatchError",
    "MATCHERS",
    "Matches",
    "RansacConfig",
    "UnknownNameError",
    "Verification",
    "estimate",
    "extract",
    "load_image",
    "match",
    "match_nn_batched",
    "verify",
    "verify_matches",
    "verify_pairs",
]
