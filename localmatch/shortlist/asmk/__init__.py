"""ASMK and R-ASMK: aggregated selective match kernels over a visual codebook, searched by inverted file.

The alternative to one global vector per image (:mod:`localmatch.shortlist`): each image keeps one
aggregated vector per visual word its local descriptors fall in, binarised by default (ASMK*: 16 bytes
per word for 128-d descriptors), and a query is scored against the images sharing its words.

Steps, each a small object that saves and loads without pickle (as in the ``asmk`` package):
:func:`train_codebook` -> :class:`Codebook`; :func:`aggregate` / :func:`aggregate_regions` ->
:class:`Aggregated`; :class:`InvertedFile` (add, remove, search, save, load).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localmatch.config import Config, check_flag, check_number, check_whole
from localmatch.shortlist.asmk.aggregate import Aggregated, aggregate, aggregate_regions
from localmatch.shortlist.asmk.codebook import WORD_SEARCHES, Codebook, check_word_search, train_codebook
from localmatch.shortlist.asmk.inverted_file import InvertedFile
from localmatch.shortlist.asmk.regions import REGION_PROPOSERS

#: Database representations: one global vector, ASMK, or regional ASMK for database images.
REPRESENTATIONS = ("global", "asmk", "rasmk")


@dataclass(frozen=True)
class AsmkConfig(Config):
    """ASMK settings. ``binary``, ``alpha``, ``threshold``, the assignments and ``idf`` default to the
    ``asmk`` package's HOW/FIRe recipes; they use 65536 words trained on a separate landmark set, where a
    database here trains 1024 on its own descriptors (use 65536 for collections of 100k images and more).

    Attributes:
        codebook_size: visual words trained for a database (fewer when it holds too few descriptors:
            at least 16 per word).
        binary: ASMK* (sign bits) rather than ASMK (float vectors, 8-32x more memory).
        alpha: selectivity exponent; threshold: similarities below it count 0 (``tau``).
        query_assignments / database_assignments: nearest words each descriptor is assigned to.
        query_word_search: how a query's words are found (:data:`WORD_SEARCHES`): ``"auto"`` searches an
            HNSW graph over codebooks of 16384 words or more (65536 words: about 27 ms instead of 130 ms
            for 1000 descriptors, the nearest word found for 98 % of them) and exactly below. Database
            images are always assigned exactly, so what is stored never depends on the approximation.
        idf: weight words by ``log(N / N_w) ** 2``.
        regions: R-ASMK region proposer (see :data:`REGION_PROPOSERS`) when no boxes are given:
            ``"grid"`` (whole image + R-MAC-style squares at 3 scales), ``"clusters"`` (whole image +
            keypoint-cluster boxes), ``"full"``. On multiview_dev (BENCHMARKS.md) neither proposer changes
            mAP when queries are whole views; when each query keeps a small part of its image (a centred box
            of a quarter of each side), the grid gains 0.004-0.021 over ASMK* and the clusters 0.000-0.004.
        seed: k-means seed; codebook_sample: at most this many descriptors (seeded sample) train it.
    """

    codebook_size: int = 1024
    binary: bool = True
    alpha: float = 3.0
    threshold: float = 0.0
    query_assignments: int = 5
    database_assignments: int = 1
    query_word_search: str = "auto"
    idf: bool = False
    regions: str = "grid"
    seed: int = 0
    codebook_sample: int = 500_000

    def __post_init__(self) -> None:
        for name in ("codebook_size", "query_assignments", "database_assignments", "codebook_sample"):
            check_whole(self, name, 1)
        check_flag(self, "binary", "idf")
        check_number(self, "alpha", 0)
        check_number(self, "threshold", -1, 1)
        check_whole(self, "seed", 0)
        check_word_search(self.query_word_search)
        if self.regions not in REGION_PROPOSERS:
            REGION_PROPOSERS.get(self.regions)  # raises, listing the valid names


def describe_database_image(descriptors: np.ndarray, keypoints: np.ndarray, image_size: tuple[int, int],
                            codebook: Codebook, config: AsmkConfig, *, regional: bool,
                            boxes: np.ndarray | None = None) -> Aggregated:
    """A database image's ASMK entry (``regional=False``) or R-ASMK entry over ``boxes`` or proposed regions.

    ``keypoints`` ``(N, 2)`` and ``boxes`` ``(R, 4)`` are in the image's original pixels; ``image_size`` is
    ``(width, height)``.
    """
    if not regional:
        return aggregate(descriptors, codebook, assignments=config.database_assignments, binary=config.binary)
    if boxes is None:
        boxes = REGION_PROPOSERS.get(config.regions)(image_size[0], image_size[1], keypoints)
    return aggregate_regions(descriptors, keypoints, boxes, codebook, assignments=config.database_assignments,
                             binary=config.binary)


def describe_query(descriptors: np.ndarray, codebook: Codebook, config: AsmkConfig) -> Aggregated:
    """A query's ASMK entry (multiple assignment, never regional: the query is already the object)."""
    return aggregate(descriptors, codebook, assignments=config.query_assignments, binary=config.binary,
                     word_search=config.query_word_search)


__all__ = ["Aggregated", "AsmkConfig", "Codebook", "InvertedFile", "REGION_PROPOSERS", "REPRESENTATIONS",
           "WORD_SEARCHES", "aggregate", "aggregate_regions", "describe_database_image", "describe_query",
           "train_codebook"]
