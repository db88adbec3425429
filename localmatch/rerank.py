"""Re-ranking a shortlist: batched matching and threaded verification from cached features.


The query's descriptors are quantised once; candidates are split into one chunk per worker thread,
and each worker matches its chunk with int8 matrix products and fits a model to each candidate. The
matrix products, numpy reductions and OpenCV/pycolmap RANSAC all release the GIL, so the workers run
on all cores. Nothing here calls the pair API in a loop.

A matcher that costs far more per pair (LightGlue, LoFTR) verifies only the head of the list that ``nn``
re-ranked (:func:`rerank_candidates`, ``matcher_top``).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from localmatch.api import correspondences_of, matched_points, verify_correspondences
from localmatch.config import Config, require_whole
from localmatch.errors import ImageError
from localmatch.geometry import RansacConfig
from localmatch.io import Image, load_image
from localmatch.matching import MATCHERS
from localmatch.matching.nn import NNConfig, QuantizedDescriptors, match_nn_batched, quantized
from localmatch.types import Correspondences, Features, Hit, Verification

log = logging.getLogger(__name__)


#: Model fitted when re-ranking: landmarks and objects are seldom planar, so the fundamental matrix
#: (measured on multiview_dev: mAP 0.887 against 0.873 with homographies).
DEFAULT_RERANK_GEOMETRY = "fundamental"
#: Candidates that a matcher other than ``nn`` verifies again, at the head of the list that ``nn`` re-ranked
#: first. LightGlue costs 0.2-1 s per pair on 2 CPU cores against ``nn``'s 2 ms. On multiview_dev (17 queries,
#: 78 candidates each) the top 20 gave the mAP of the matcher over the whole list, for ALIKED + LightGlue
#: (0.969; ``nn`` alone 0.917) and XFeat + LighterGlue (0.917; ``nn`` alone 0.863, the top 10 0.877), in 3-4
#: times less time (BENCHMARKS.md, "Re-ranking in two passes").
DEFAULT_MATCHER_TOP = 20


@dataclass(frozen=True, eq=False)
class Candidate:
    """Stored features of one database image.

    Attributes:
        keypoints: ``(N, 2) float32`` original pixels.
        descriptors: int8 descriptors with their scale.
        working_scale: see :class:`~localmatch.types.Features`.
        image_size: ``(width, height)``.
    """

    image_id: int
    path: str
    keypoints: np.ndarray
    descriptors: QuantizedDescriptors
    working_scale: float
    image_size: tuple[int, int]

    def as_features(self, extractor: str) -> Features:
        """The stored features as :class:`Features` (descriptors dequantised; no scales or orientations)."""
        n = len(self.keypoints)
        zeros = np.zeros(n, np.float32)
        return Features(np.array(self.keypoints, np.float32), zeros, zeros, zeros, self.descriptors.dequantized(),
                        self.image_size, extractor, self.working_scale)


def verify_candidates(query: Features, candidates: Sequence[Candidate], *, matcher: str = "nn",
                      matcher_config: Config | dict | None = None, geometry: str = DEFAULT_RERANK_GEOMETRY,
                      backend: str = "opencv", min_inliers: int = 15, ransac: RansacConfig | dict | None = None,
                      threads: int | None = None, query_image: Image | None = None) -> list[Verification]:
    """Verify every candidate against the query; one :class:`Verification` per candidate, in order.

    ``nn`` runs batched over chunks of candidates; LightGlue runs pair by pair on the stored features
    (dequantised); a dense matcher (``loftr``) needs ``query_image`` and re-reads each candidate's image
    from its stored path (no cached features: the full network runs per pair). RANSAC and the matrix
    products release the GIL, so chunks run in ``threads`` worker threads (default: all cores).
    """
    if not candidates:
        return []
    # Many pairs: worth torch's import time for its int8 product at once (see nn.FLOAT_ENTRIES_FIRST).
    import torch

    m = MATCHERS.get(matcher)
    cfg = m.make_config(matcher_config)
    options: dict[str, Any] = dict(geometry=geometry, backend=backend, min_inliers=min_inliers, ransac=ransac, only_matches=True)
    q = quantized(query) if matcher == "nn" else None
    workers = max(1, min(threads or os.cpu_count() or 1, len(candidates)))
    if matcher != "nn":
        workers = 1  # the networks use torch's own threads

    def run(chunk: list[int]) -> list[tuple[int, Verification]]:
        if workers > 1:
            # One torch thread per worker: the workers already fill the cores, and each int8 product
            # spreading over all of them as well left 2 cores running 4 threads (0.27 s against 0.23 s
            # per 100 candidates here). Torch's thread count is per thread; restored below.
            torch.set_num_threads(1)
        if q is not None:  # the nn matcher
            assert isinstance(cfg, NNConfig)
            all_matches = match_nn_batched(q, [candidates[i].descriptors for i in chunk], cfg, query.extractor)
            pairs = [matched_points(query.keypoints, candidates[i].keypoints, mt, query.working_scale,
                                    candidates[i].working_scale)
                     for i, mt in zip(chunk, all_matches)]
        elif m.dense:
            if query_image is None:
                raise ValueError(f"re-ranking with {matcher!r} needs the query image")
            pairs = [_dense_pair(m, cfg, query_image, candidates[i]) for i in chunk]
        else:
            pairs = []
            for i in chunk:
                stored = candidates[i].as_features(query.extractor)
                m.check(query, stored)
                pairs.append(correspondences_of(query, stored, m.run(query, stored, cfg)))
        return [(i, verify_correspondences(p, **options)) for i, p in zip(chunk, pairs)]

    chunks = [list(range(i, len(candidates), workers)) for i in range(workers)]
    if workers == 1:
        done = [run(chunks[0])]
    else:
        default_threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(run, chunks))
        finally:
            torch.set_num_threads(default_threads)  # threads started later would inherit the workers' 1
    results: list[Verification | None] = [None] * len(candidates)
    for part in done:
        for i, v in part:
            results[i] = v
    return results  # type: ignore[return-value]


def _dense_pair(m, cfg, query_image: Image, candidate: Candidate) -> Correspondences:
    try:
        image = load_image(candidate.path)
    except ImageError as e:  # the file moved or changed since it was indexed
        log.warning("cannot re-rank with %s: %s", m.name, e)
        return Correspondences(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
    return m.run(query_image, image, cfg)


def rerank_candidates(query: Features, candidates: Sequence[Candidate], global_scores: np.ndarray, *,
                      matcher: str = "nn", matcher_top: int | None = DEFAULT_MATCHER_TOP,
                      matcher_config: Config | dict | None = None, min_inliers: int = 15,
                      query_image: Image | None = None, **verify_options) -> list[Hit]:
    """The candidates re-ranked by verification: :func:`verify_candidates`, then :func:`fuse_ranking`.

    With ``matcher="nn"`` or ``matcher_top=None`` every candidate is verified with ``matcher``. With another
    matcher, in two passes: every candidate with ``nn`` (int8 products, about 2 ms a pair), then the first
    ``matcher_top`` of the list that pass ranks with ``matcher``, whose verification replaces ``nn``'s for
    them; the others keep ``nn``'s, so one that ``nn`` verified still ranks among the verified by its inliers.
    ``global_scores``: ``(len(candidates),)``, the shortlist's. ``verify_options`` are
    :func:`verify_candidates`'s ``geometry``, ``backend``, ``ransac`` and ``threads``, used by both passes;
    ``matcher_config`` is ``matcher``'s alone.
    """
    check_matcher_top(matcher_top)
    if matcher == "nn" or matcher_top is None or matcher_top >= len(candidates):
        results = verify_candidates(query, candidates, matcher=matcher, matcher_config=matcher_config,
                                    min_inliers=min_inliers, query_image=query_image, **verify_options)
    else:
        results = verify_candidates(query, candidates, min_inliers=min_inliers, **verify_options)
        head = _ranked(global_scores, results, min_inliers)[:matcher_top]
        again = verify_candidates(query, [candidates[i] for i in head], matcher=matcher,
                                  matcher_config=matcher_config, min_inliers=min_inliers, query_image=query_image,
                                  **verify_options)
        for i, result in zip(head, again):
            results[i] = result
    return fuse_ranking(candidates, global_scores, results, min_inliers)


def check_matcher_top(matcher_top: int | None) -> None:
    """``matcher_top`` must be a whole number >= 1, or None for every candidate."""
    require_whole(matcher_top, "matcher_top (candidates the matcher verifies after nn)", 1, optional=True)


def _ranked(global_scores: np.ndarray, results: Sequence[Verification], min_inliers: int) -> list[int]:
    """Candidate indices best first: verified ones by inliers (ties by global score), then the rest by global score."""
    def key(i: int):
        verified = results[i].num_inliers >= min_inliers
        return (0 if verified else 1, -results[i].num_inliers if verified else 0, -float(global_scores[i]))

    return sorted(range(len(results)), key=key)


def fuse_ranking(candidates: Sequence[Candidate], global_scores: np.ndarray,
                 results: Sequence[Verification], min_inliers: int) -> list[Hit]:
    """Verified candidates by inliers (ties by global score), then the rest by global score, as Hits."""
    hits = []
    for rank, i in enumerate(_ranked(global_scores, results, min_inliers), start=1):
        r, g = results[i], float(global_scores[i])
        verified = r.num_inliers >= min_inliers
        score = (r.num_inliers if verified else 0) + (g + 1) / 4
        hits.append(Hit(candidates[i].path, candidates[i].image_id, rank, score, g, r.num_inliers,
                        r.geometry, r.matrix, verified))
    return hits
