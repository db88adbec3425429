"""Mutual nearest neighbour matching with Lowe's ratio test, by matrix products.

Descriptors are unit vectors, so squared distance is ``2 - 2 a.b``; all similarities of a pair come
from one matrix product. The product runs on int8-quantised descriptors (``torch._int_mm``, about 4x
faster than a float32 GEMM on a CPU core); the quantisation error of a similarity is about 1e-3,
far below the margins the ratio test works with. Before torch is loaded, or without int8 support, the
same integers come from a float32 product (see :data:`FLOAT_ENTRIES_FIRST`).
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from localmatch.config import Config, check_flag, check_number
from localmatch.matching import compiled
from localmatch.types import Features, Matches

#: Lowe's ratio per descriptor type. Learned descriptors are less spread out: at 0.8 ALIKED keeps almost no
#: match between two UKBench views where LightGlue finds 300 inliers, so they get a looser test; at 0.95
#: every non-matching UKBench pair passed a fundamental-matrix check with 17-23 chance inliers.
#: ASIFT keeps SIFT's 0.8: at 0.9 its 8192 features per image gave 32-43 chance inliers to a fundamental
#: matrix on 40 of 40 pairs of different multiview_dev scenes (at 0.8: at most 13).
DEFAULT_RATIO = {"rootsift": 0.8, "sift": 0.8, "asift": 0.8}
LEARNED_RATIO = 0.9
_INT_MIN = np.iinfo(np.int32).min
_ROW_CHUNK = 256  # rows of the similarity matrix computed at once (keeps a chunk in cache)

#: Similarity entries computed by numpy's float32 product before the matcher imports torch for its int8
#: one. Importing torch takes about 1 s; its int8 product then saves about 2.5e-9 s per entry on one core
#: (match + verify of two images' ~1850 RootSIFT: 2.5 against 11 ms). Rent before buying: a process that
#: matches few pairs and needs torch for nothing else (``localmatch verify`` with SIFT) never imports it,
#: and one that matches many imports it after about 120 such pairs, when numpy's extra time has reached
#: the import's. A process that has imported torch already (learned features, the database's CNN, the
#: re-ranker) uses it at once. Both products give the same integers, so matches never depend on which ran.
FLOAT_ENTRIES_FIRST = 400_000_000

_float_entries = 0


@dataclass(frozen=True)
class NNConfig(Config):
    """Options of the mutual-NN + ratio matcher.

    Attributes:
        ratio: keep a match when ``d1 < ratio * d2`` (nearest over second-nearest distance);
            1.0 turns the test off; None takes the features' default (:data:`DEFAULT_RATIO`).
        mutual: keep only pairs that are each other's nearest neighbour.
    """

    ratio: float | None = None
    mutual: bool = True

    def __post_init__(self) -> None:
        check_number(self, "ratio", 0, 1, low_open=True, optional=True)
        check_flag(self, "mutual")

    def ratio_for(self, extractor: str | None) -> float:
        if self.ratio is not None:
            return self.ratio
        return LEARNED_RATIO if extractor is None else DEFAULT_RATIO.get(extractor, LEARNED_RATIO)


@dataclass(frozen=True, eq=False)
class QuantizedDescriptors:
    """Descriptors as int8, ready for the matcher; ``values ~= descriptors * scale``.

    Attributes:
        values: ``(N, D) int8``.
        scale: the factor that was applied before rounding.
    """

    values: np.ndarray
    scale: float

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def dequantized(self) -> np.ndarray:
        """``(N, D) float32`` descriptors as stored: ``values / scale``."""
        return self.values.astype(np.float32) / np.float32(self.scale)


def quantize(descriptors: np.ndarray) -> QuantizedDescriptors:
    """Quantise ``(N, D)`` float descriptors (unit rows) to int8 with one scale for the set."""
    descriptors = np.asarray(descriptors, dtype=np.float32)
    peak = float(np.abs(descriptors).max(initial=0.0))
    scale = 127.0 / peak if peak > 0 else 1.0
    values = np.clip(np.rint(descriptors * scale), -127, 127).astype(np.int8)
    return QuantizedDescriptors(values, scale)


_QUANTIZED: "weakref.WeakKeyDictionary[Features, QuantizedDescriptors]" = weakref.WeakKeyDictionary()


def quantized(features: Features) -> QuantizedDescriptors:
    """``features.descriptors`` quantised, once per :class:`Features` object (features are not modified
    after extraction, so the int8 copy stays valid; it is dropped with the features)."""
    cached = _QUANTIZED.get(features)
    if cached is None:
        cached = _QUANTIZED[features] = quantize(features.descriptors)
    return cached


def match_nn(desc_a: np.ndarray | QuantizedDescriptors, desc_b: np.ndarray | QuantizedDescriptors,
             config: NNConfig = NNConfig(), extractor: str | None = "rootsift") -> Matches:
    """Match ``(N, D)`` descriptors of A with ``(M, D)`` descriptors of B.

    Returns:
        :class:`Matches` with ``indices (K, 2)`` (A index, B index), ordered by A index, and
        ``scores = 1 - d1/d2`` (1 when B has a single descriptor).
    """
    qa = desc_a if isinstance(desc_a, QuantizedDescriptors) else quantize(desc_a)
    return match_nn_batched(qa, [desc_b], config, extractor)[0]


def match_nn_batched(desc_a: np.ndarray | QuantizedDescriptors,
                     candidates: Sequence[np.ndarray | QuantizedDescriptors],
                     config: NNConfig = NNConfig(), extractor: str | None = "rootsift") -> list[Matches]:
    """Match one query against many candidates in one call (the re-ranker's form).

    The query is quantised once; each candidate costs one int8 matrix product plus row/column
    reductions, with no per-descriptor Python work.

    Args:
        desc_a: ``(N, D)`` query descriptors (or already quantised).
        candidates: ``(M_k, D)`` descriptors per candidate (or already quantised).
        extractor: what made the descriptors, for the default ratio (see :data:`DEFAULT_RATIO`).

    Returns:
        One :class:`Matches` per candidate, in order.
    """
    qa = desc_a if isinstance(desc_a, QuantizedDescriptors) else quantize(desc_a)
    out = []
    for desc_b in candidates:
        qb = desc_b if isinstance(desc_b, QuantizedDescriptors) else quantize(desc_b)
        if len(qa) == 0 or len(qb) == 0:
            out.append(Matches.empty())
            continue
        if qa.values.shape[1] != qb.values.shape[1]:
            raise ValueError(f"descriptor sizes differ: {qa.values.shape[1]} vs {qb.values.shape[1]}")
        out.append(_match_pair(qa, qb, config.ratio_for(extractor), config.mutual))
    return out


def _match_pair(qa: QuantizedDescriptors, qb: QuantizedDescriptors, ratio: float, mutual: bool) -> Matches:
    n, m = len(qa), len(qb)
    nearest = np.empty(n, np.int64)
    best = np.empty(n, np.int32)
    second = np.full(n, _INT_MIN, np.int32)
    column_best = np.full(m, _INT_MIN, np.int32)
    similarity = _similarity_product(qb.values, n * m)
    reduce_block = compiled.reduce_block if compiled.use_compiled(n * m) else _reduce_block
    for start in range(0, n, _ROW_CHUNK):
        reduce_block(similarity(qa.values[start:start + _ROW_CHUNK]), start, nearest, best, second, column_best)
    inv = 1.0 / (qa.scale * qb.scale)
    d1_sq = np.maximum(2.0 - 2.0 * best * inv, 0.0)
    d2_sq = np.where(second == _INT_MIN, 4.0, np.maximum(2.0 - 2.0 * second * inv, 0.0))
    keep = d1_sq < (ratio ** 2) * d2_sq if ratio < 1.0 else np.ones(n, bool)
    if mutual:
        keep &= best >= column_best[nearest]
    idx_a = np.flatnonzero(keep)
    idx_b = nearest[idx_a]
    # Ties can make two A points the best of one B point; keep the first.
    if len(idx_b) and np.bincount(idx_b, minlength=m).max() > 1:
        _, first = np.unique(idx_b, return_index=True)
        first.sort()
        idx_a, idx_b = idx_a[first], idx_b[first]
    distance_ratio = np.sqrt(d1_sq[idx_a] / np.maximum(d2_sq[idx_a], 1e-12))
    return Matches(np.stack([idx_a, idx_b], axis=1).astype(np.int64), (1.0 - distance_ratio).astype(np.float32))


def _reduce_block(sim: np.ndarray, start: int, nearest: np.ndarray, best: np.ndarray, second: np.ndarray,
                  column_best: np.ndarray) -> None:
    """numpy's form of :func:`localmatch.matching.compiled.reduce_block` (same arguments and results);
    overwrites ``sim``."""
    rows = np.arange(len(sim))
    j = sim.argmax(axis=1)
    b = sim[rows, j]
    np.maximum(column_best, sim.max(axis=0), out=column_best)
    if sim.shape[1] > 1:
        sim[rows, j] = _INT_MIN
        second[start:start + len(sim)] = sim.max(axis=1)
    nearest[start:start + len(sim)] = j
    best[start:start + len(sim)] = b


def _similarity_product(b: np.ndarray, entries: int) -> Callable[[np.ndarray], np.ndarray]:
    """``a -> a @ b.T``: ``(r, D) int8`` rows of A against ``b``, ``(m, D) int8``, as a writable
    ``(r, m) int32`` array, for a pair of ``entries`` similarities: torch's int8 kernel, or numpy's float
    product until torch is worth importing (:data:`FLOAT_ENTRIES_FIRST`) or where the kernel refuses."""
    if not _torch_is_worth_it(entries):
        return _float_product(b)
    import torch

    if not hasattr(torch, "_int_mm"):  # an old torch
        return _float_product(b)
    b_t = torch.from_numpy(b).T  # a transposed view: the int8 kernel reads it as fast as a contiguous copy

    def int8_product(a: np.ndarray) -> np.ndarray:
        try:
            return torch._int_mm(torch.from_numpy(a), b_t).numpy()
        except RuntimeError:  # a shape the int8 kernel refuses
            return _float_product(b)(a)

    return int8_product


def _torch_is_worth_it(entries: int) -> bool:
    """Whether torch is loaded, or numpy has computed :data:`FLOAT_ENTRIES_FIRST` entries; when not, the
    pair's ``entries`` count towards them."""
    global _float_entries
    if "torch" in sys.modules or _float_entries >= FLOAT_ENTRIES_FIRST:
        return True
    _float_entries += entries  # not locked: threads may lose a few counts, which only delays the switch
    return False


def _float_product(b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``a -> a @ b.T`` in floating point, exactly torch's int8 integers: each sum of ``D`` products of
    int8 values is an integer of at most ``D * 127**2``, which float32 holds exactly up to ``D = 1040``
    in any order of addition (float64 beyond)."""
    dtype: type[np.floating] = np.float32 if b.shape[1] * 127 ** 2 < 2 ** 24 else np.float64
    b_t = b.astype(dtype).T
    return lambda a: (a.astype(dtype) @ b_t).astype(np.int32)
