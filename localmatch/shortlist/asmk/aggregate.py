"""ASMK aggregation: one vector per visual word of an image, and its regional form (R-ASMK).

ASMK (Tolias et al., ICCV 2013): the residuals ``x - c(w)`` of an image's descriptors assigned to word
``w`` are summed; the sum is L2-normalised (ASMK) or reduced to the signs of its components, packed
8 per byte (ASMK*, ``np.packbits(v > 0)``, most significant bit first).

R-ASMK (Teichmann et al., CVPR 2019): residual sums are made per region, each region's sums are divided
by the L2 norm of that region's whole VLAD vector, and the regional sums are added per word before the
same normalisation or binarisation; an image keeps one entry per word, so memory stays ASMK's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localmatch.shortlist.asmk.codebook import Codebook

#: Added to a norm before dividing, as the ``asmk`` package does.
NORM_EPS = 1e-6
#: R-ASMK divides sums made smaller by the regional normalisation, so only guards against zero.
TINY = 1e-12


@dataclass(frozen=True)
class Aggregated:
    """An image's ASMK representation: one entry per visual word it uses.

    Attributes:
        words: ``(M,) int32`` visual word ids, increasing.
        vectors: ``(M, D) float32`` unit vectors (ASMK), or ``(M, ceil(D / 8)) uint8`` packed sign bits
            (ASMK*).
        binary: which of the two ``vectors`` holds.
        dim: descriptor size ``D`` (bits per binary vector).
    """

    words: np.ndarray
    vectors: np.ndarray
    binary: bool
    dim: int

    def __len__(self) -> int:
        return len(self.words)

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + self.vectors.nbytes)


def _finish(words: np.ndarray, sums: np.ndarray, binary: bool, eps: float = NORM_EPS) -> Aggregated:
    dim = sums.shape[1]
    if binary:
        vectors = np.packbits(sums > 0, axis=1)
    else:
        vectors = (sums / (np.linalg.norm(sums, axis=1, keepdims=True) + eps)).astype(np.float32)
    return Aggregated(words.astype(np.int32), np.ascontiguousarray(vectors), binary, dim)


def _sum_by_key(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``keys`` (increasing) and the sums of the ``rows`` sharing each key."""
    if len(keys) == 0:
        return keys, np.zeros((0, rows.shape[1]), np.float32)
    order = np.argsort(keys, kind="stable")
    unique, starts = np.unique(keys[order], return_index=True)
    return unique, np.add.reduceat(rows[order], starts, axis=0)


def _residuals(descriptors: np.ndarray, words: np.ndarray, codebook: Codebook) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened ``(descriptor row, word, residual)`` for each of the ``(N, k)`` assignments."""
    rows = np.repeat(np.arange(len(words)), words.shape[1])
    flat = words.reshape(-1)
    return rows, flat, descriptors[rows] - codebook.centroids[flat]


def aggregate(descriptors: np.ndarray, codebook: Codebook, *, assignments: int = 1, binary: bool = True,
              word_search: str = "exact") -> Aggregated:
    """ASMK (``binary=False``) or ASMK* representation of one image's ``(N, D)`` descriptors.

    Each descriptor is assigned to its ``assignments`` nearest words (multiple assignment: 5 for queries,
    1 for database images is usual), found by ``word_search`` (see :meth:`Codebook.assign`). An image
    without descriptors gives an empty result.
    """
    descriptors = np.asarray(descriptors, dtype=np.float32).reshape(-1, codebook.dim)
    words = codebook.assign(descriptors, assignments, search=word_search)
    _, flat, residuals = _residuals(descriptors, words, codebook)
    unique, sums = _sum_by_key(flat, residuals)
    return _finish(unique, sums, binary)


def aggregate_regions(descriptors: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray, codebook: Codebook, *,
                      assignments: int = 1, binary: bool = True) -> Aggregated:
    """R-ASMK (``binary=False``) or R-ASMK* representation of one image.

    Args:
        descriptors: ``(N, D)``.
        keypoints: ``(N, 2)`` ``(x, y)`` in the same pixel coordinates as ``boxes``.
        boxes: ``(R, 4)`` regions ``(x0, y0, x1, y1)``, inclusive of their edges. A descriptor counts in
            every region that holds its keypoint; regions holding none are ignored.
    """
    descriptors = np.asarray(descriptors, dtype=np.float32).reshape(-1, codebook.dim)
    keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(keypoints) != len(descriptors):
        raise ValueError(f"{len(keypoints)} keypoints for {len(descriptors)} descriptors")
    words = codebook.assign(descriptors, assignments)
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = ((x[None] >= boxes[:, :1]) & (x[None] <= boxes[:, 2:3]) &
              (y[None] >= boxes[:, 1:2]) & (y[None] <= boxes[:, 3:4]))  # (R, N)
    region, member = np.nonzero(inside)
    k = words.shape[1]
    member_words = words[member]  # (P, k)
    region = np.repeat(region, k)
    flat = member_words.reshape(-1)
    residuals = descriptors[np.repeat(member, k)] - codebook.centroids[flat]
    keys, sums = _sum_by_key(region.astype(np.int64) * codebook.size + flat, residuals)
    key_region, key_word = keys // codebook.size, keys % codebook.size
    region_norm = np.sqrt(np.bincount(key_region, weights=np.einsum("ij,ij->i", sums, sums), minlength=len(boxes)))
    sums = sums / np.maximum(region_norm[key_region, None], TINY)
    unique, summed = _sum_by_key(key_word, sums.astype(np.float32))
    return _finish(unique, summed, binary, TINY)
