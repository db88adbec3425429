"""Verifying a list of image pairs in one run, each image's features extracted once.

``localmatch verify A B`` pays for starting Python, torch and the first matching each time (about 2 s),
and extracts both images again even when they appear in other pairs. :func:`verify_pairs` verifies a
whole list in one process, keeping the features of recently used images in a cache.

A pairs file (:func:`read_pairs`) holds two image paths per line, as hloc's ``pairs.txt`` does: separated
by a tab, or by white space on lines without a tab; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from localmatch.api import DEFAULT_MIN_INLIERS, retry_in_stages, verify
from localmatch.config import Config
from localmatch.errors import ImageError, LocalmatchError
from localmatch.features import FEATURES, extract, load_for
from localmatch.geometry import RansacConfig
from localmatch.matching import MATCHERS, default_matcher
from localmatch.refine import check_refinable, refine_homography
from localmatch.types import Features, Verification

#: Images whose features :func:`verify_pairs` keeps (about 1.3 MB each at the default 2048 RootSIFT).
DEFAULT_CACHE_SIZE = 256


class PairsFileError(LocalmatchError, ValueError):
    """A pairs file that cannot be read, or a line of it that does not hold two paths."""


@dataclass(frozen=True)
class PairResult:
    """One pair of :func:`verify_pairs`: its verification, or why it could not be verified.

    Attributes:
        image_a, image_b: the paths as given.
        verification: the result of :func:`localmatch.verify`, or None when an image could not be used.
        error: the reason (an :class:`~localmatch.errors.ImageError`'s message), or None.
    """

    image_a: str
    image_b: str
    verification: Verification | None
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``image_a``, ``image_b``, the verification's keys (None when it failed), ``error``."""
        if self.verification is not None:
            fields = self.verification.to_dict()
        else:
            fields = dict.fromkeys(("num_matches", "num_inliers", "geometry", "matrix", "is_match", "score",
                                    "features", "refined"))
        return {"image_a": self.image_a, "image_b": self.image_b, **fields, "error": self.error}


def read_pairs(path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The pairs listed in a pairs file, relative paths joined to ``images_root`` when it is given.

    Raises:
        PairsFileError: the file cannot be read, or a line does not hold exactly two paths.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:  # "-sig": without the byte-order mark Windows editors write
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PairsFileError(f"{os.fspath(path)}: cannot read the pairs file ({e})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if len(fields) != 2 or not all(fields):
            raise PairsFileError(f"{os.fspath(path)}, line {number}: expected two image paths, got {line!r}")
        if images_root is not None:
            fields = [os.path.join(images_root, f) for f in fields]
        pairs.append((fields[0], fields[1]))
    return pairs


def verify_pairs(
    pairs: Iterable[tuple[str | os.PathLike, str | os.PathLike]],
    *,
    features: str = "sift",
    matcher: str | None = None,
    geometry: str = "auto",
    backend: str = "opencv",
    min_inliers: int = DEFAULT_MIN_INLIERS,
    feature_config: Config | dict | None = None,
    matcher_config: Config | dict | None = None,
    ransac: RansacConfig | dict | None = None,
    fallback_features: str | None = None,
    refine: bool = False,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> Iterator[PairResult]:
    """:func:`localmatch.verify` for each pair of image paths, in order, in one process.

    The features of the ``cache_size`` most recently used images are kept, so an image that comes back
    in a later pair is not decoded or extracted again (list the pairs grouped by image to make the most
    of it); two new images are extracted side by side where the extractor gains from it. A dense matcher
    (``loftr``) takes the images themselves: nothing is cached for it. ``fallback_features`` retries a
    pair that does not verify as :func:`localmatch.verify` does, decoding its two images again; ``refine``
    decodes the one it warps again to refine a verified homography that tilts A (with their cached features).

    Arguments other than ``pairs`` and ``cache_size`` are :func:`localmatch.verify`'s.

    Yields:
        :class:`PairResult` per pair. A pair with an image that cannot be used gets its ``error`` and
        the run goes on (the image is not tried again while it is in the cache).

    Raises:
        UnknownNameError: before any work, for an unknown features, matcher or fallback name.
    """
    if cache_size < 2:
        raise ValueError(f"cache_size must be at least 2 (the two images of a pair), got {cache_size}")
    matcher = matcher or default_matcher(features)
    m = MATCHERS.get(matcher)
    extractor = FEATURES.get(features)
    if fallback_features is not None:
        FEATURES.get(fallback_features)
    if refine:
        check_refinable(m)
    config = None if m.dense else extractor.make_config(feature_config)
    options: dict[str, Any] = dict(geometry=geometry, backend=backend, min_inliers=min_inliers, ransac=ransac)
    cache: OrderedDict[str, Features | ImageError] = OrderedDict()

    def extract_or_error(path: str) -> Features | ImageError:
        try:
            return extract(path, features, config)
        except ImageError as e:
            return e

    def cached_features(a: str, b: str, pool: ThreadPoolExecutor) -> tuple[Features, Features]:
        missing = [p for p in dict.fromkeys((a, b)) if p not in cache]
        run = pool.map if extractor.side_by_side else map
        cache.update(zip(missing, run(extract_or_error, missing)))
        found_a, found_b = cache[a], cache[b]
        for path in (a, b):
            cache.move_to_end(path)
        while len(cache) > cache_size:
            cache.popitem(last=False)
        return _raised_if_error(found_a), _raised_if_error(found_b)

    def verify_one(a: str, b: str, pool: ThreadPoolExecutor) -> Verification:
        if m.dense:
            return verify(a, b, matcher=matcher, matcher_config=matcher_config, fallback_features=fallback_features,
                          **options)
        features_a, features_b = cached_features(a, b, pool)
        result = verify(features_a, features_b, matcher=matcher, matcher_config=matcher_config, **options)
        if not result.is_match and fallback_features is not None:
            retry = retry_in_stages(load_for(a, config), load_for(b, config), fallback_features, **options)
            result = result if retry is None else retry
        if not refine:
            return result
        return refine_homography(result, features_a, features_b, a, b,
                                 features=features, feature_config=config, matcher=m, matcher_config=matcher_config,
                                 backend=backend, ransac=ransac, min_inliers=min_inliers)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for a, b in pairs:
            a, b = os.fspath(a), os.fspath(b)
            try:
                result = verify_one(a, b, pool)
            except ImageError as e:
                yield PairResult(a, b, None, str(e))
                continue
            yield PairResult(a, b, result)


def _raised_if_error(found: Features | ImageError) -> Features:
    """The cached features of an image, or its cached decoding error raised anew (a fresh traceback)."""
    if isinstance(found, ImageError):
        raise ImageError(found.source, found.reason)
    return found
