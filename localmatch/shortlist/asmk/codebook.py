"""The visual vocabulary of ASMK: k-means centroids of local descriptors and nearest-word assignment.

A codebook is trained with faiss k-means (seeded, so the same sample gives the same words) and saved as
a plain ``.npy`` array of ``(K, D) float32`` centroids. Assignment is an exact L2 search over the
centroids (faiss ``IndexFlatL2``), ``k`` nearest words per descriptor.
"""

from __future__ import annotations

import os

import faiss
import numpy as np

from localmatch.files import atomic_write

#: The trainer makes fewer words rather than fit a word to fewer training points than this.
MIN_POINTS_PER_WORD = 16


class Codebook:
    """``(K, D) float32`` centroids and the index that assigns descriptors to them."""

    def __init__(self, centroids: np.ndarray) -> None:
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        if centroids.ndim != 2 or len(centroids) == 0:
            raise ValueError(f"codebook centroids must be a non-empty (K, D) array, got shape {centroids.shape}")
        self.centroids = centroids
        self._index = faiss.IndexFlatL2(centroids.shape[1])
        self._index.add(centroids)

    @property
    def size(self) -> int:
        return len(self.centroids)

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def assign(self, descriptors: np.ndarray, k: int = 1) -> np.ndarray:
        """``(N, k) int64`` ids of the ``k`` nearest words of each ``(N, D)`` descriptor, nearest first."""
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32).reshape(-1, self.dim)
        k = min(k, self.size)
        if len(descriptors) == 0:
            return np.zeros((0, k), np.int64)
        _, words = self._index.search(descriptors, k)
        return words

    def save(self, path: str | os.PathLike) -> None:
        """Write the centroids as ``.npy`` atomically (temporary file, fsync, rename)."""
        with atomic_write(path) as f:
            np.save(f, self.centroids, allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Codebook":
        try:
            centroids = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable codebook ({e})") from None
        if centroids.dtype != np.float32 or centroids.ndim != 2:
            raise ValueError(f"{path}: a codebook is a (K, D) float32 array, found {centroids.dtype} {centroids.shape}")
        return cls(centroids)


def train_codebook(descriptors: np.ndarray, size: int, *, seed: int = 0, iterations: int = 20,
                   max_points_per_word: int = 256) -> Codebook:
    """k-means over ``(N, D)`` descriptors (faiss, seeded).

    ``size`` words are asked for; with fewer than ``MIN_POINTS_PER_WORD * size`` descriptors the codebook is
    made smaller (``N // MIN_POINTS_PER_WORD`` words, at least 1) rather than fitting words to single points.
    faiss samples at most ``max_points_per_word * size`` descriptors (seeded) to train.
    """
    data = np.ascontiguousarray(descriptors, dtype=np.float32)
    if data.ndim != 2 or len(data) == 0:
        raise ValueError(f"no descriptors to train a codebook on (shape {data.shape})")
    k = max(1, min(int(size), len(data) // MIN_POINTS_PER_WORD))
    kmeans = faiss.Kmeans(data.shape[1], k, niter=iterations, seed=seed, verbose=False,
                          max_points_per_centroid=max_points_per_word, min_points_per_centroid=1)
    kmeans.train(data)
    return Codebook(kmeans.centroids)
