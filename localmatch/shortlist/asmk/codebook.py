"""The visual vocabulary of ASMK: k-means centroids of local descriptors and nearest-word assignment.

A codebook is trained with faiss k-means (seeded, so the same sample gives the same words) and saved as
a plain ``.npy`` array of ``(K, D) float32`` centroids. Assignment is an exact L2 search over the
centroids (faiss ``IndexFlatL2``), ``k`` nearest words per descriptor, or, for queries against large
codebooks, an approximate search through a faiss HNSW graph over the centroids. The graph is built on
first use and, for codebooks of :data:`APPROXIMATE_FROM_WORDS` words or more, saved beside the centroids
in faiss's own format (``.hnsw``) so that a new process does not rebuild it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import faiss
import numpy as np

from localmatch.errors import ConfigError
from localmatch.files import atomic_write

log = logging.getLogger(__name__)

#: The trainer makes fewer words rather than fit a word to fewer training points than this.
MIN_POINTS_PER_WORD = 16

#: How :meth:`Codebook.assign` finds the nearest words: ``"exact"`` (flat L2), ``"hnsw"`` (approximate),
#: ``"auto"`` (approximate from :data:`APPROXIMATE_FROM_WORDS` words up, exact below).
WORD_SEARCHES = ("auto", "exact", "hnsw")
APPROXIMATE_FROM_WORDS = 16384
#: HNSW graph: links per word, search depth while building and while assigning. On a 65536-word
#: RootSIFT codebook this finds the exact nearest word for 97-98 % of descriptors in about a fifth of the
#: exact search's time (see BENCHMARKS.md); building the graph takes about 4 s on 2 cores, so
#: :meth:`Codebook.save` saves it too.
HNSW_LINKS, HNSW_BUILD_DEPTH, HNSW_SEARCH_DEPTH = 16, 80, 32


def check_word_search(name: str) -> None:
    """Raise ``ConfigError`` (a ``ValueError``) listing :data:`WORD_SEARCHES` unless ``name`` is one of them."""
    if name not in WORD_SEARCHES:
        raise ConfigError(f"unknown word search {name!r}; valid: {', '.join(WORD_SEARCHES)}")


class Codebook:
    """``(K, D) float32`` centroids and the index that assigns descriptors to them."""

    def __init__(self, centroids: np.ndarray) -> None:
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        if centroids.ndim != 2 or len(centroids) == 0:
            raise ValueError(f"codebook centroids must be a non-empty (K, D) array, got shape {centroids.shape}")
        self.centroids = centroids
        self._index = faiss.IndexFlatL2(centroids.shape[1])
        self._index.add(centroids)
        self._graph: faiss.IndexHNSWFlat | None = None
        self._graph_lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.centroids)

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def assign(self, descriptors: np.ndarray, k: int = 1, *, search: str = "exact") -> np.ndarray:
        """``(N, k) int64`` ids of the ``k`` nearest words of each ``(N, D)`` descriptor, nearest first.

        ``search`` is one of :data:`WORD_SEARCHES`. The approximate search is deterministic for a given
        codebook but may return a near word instead of the nearest one.
        """
        check_word_search(search)
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32).reshape(-1, self.dim)
        k = min(k, self.size)
        if len(descriptors) == 0:
            return np.zeros((0, k), np.int64)
        if search == "exact" or (search == "auto" and self.size < APPROXIMATE_FROM_WORDS):
            return self._index.search(descriptors, k)[1]
        graph = self._hnsw()
        _, words = graph.search(descriptors, k, params=faiss.SearchParametersHNSW(efSearch=max(HNSW_SEARCH_DEPTH, k)))
        missed = (words < 0).any(axis=1)  # the graph walk found fewer than k words: search those exactly
        if missed.any():
            words[missed] = self._index.search(descriptors[missed], k)[1]
        return words

    def _hnsw(self) -> faiss.IndexHNSWFlat:
        with self._graph_lock:
            if self._graph is None:
                graph = faiss.IndexHNSWFlat(self.dim, HNSW_LINKS)
                graph.hnsw.efConstruction = HNSW_BUILD_DEPTH
                graph.add(self.centroids)
                self._graph = graph
            return self._graph

    def save(self, path: str | os.PathLike) -> None:
        """Write the centroids as ``.npy`` atomically (temporary file, fsync, rename), and the HNSW graph
        next to it (:func:`graph_path`) for codebooks of :data:`APPROXIMATE_FROM_WORDS` words or more."""
        graph_file = graph_path(path)
        graph_file.unlink(missing_ok=True)  # never leave the graph of other words beside these
        with atomic_write(path) as f:
            np.save(f, self.centroids, allow_pickle=False)
        if self.size >= APPROXIMATE_FROM_WORDS:
            with atomic_write(graph_file) as f:
                f.write(faiss.serialize_index(self._hnsw()).tobytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Codebook":
        """Read a ``.npy`` codebook, and its saved HNSW graph when there is one that holds these words."""
        try:
            centroids = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable codebook ({e})") from None
        if centroids.dtype != np.float32 or centroids.ndim != 2:
            raise ValueError(f"{path}: a codebook is a (K, D) float32 array, found {centroids.dtype} {centroids.shape}")
        if not np.isfinite(centroids).all():
            raise ValueError(f"{path}: the codebook holds values that are not finite numbers (a damaged file?)")
        codebook, graph_file = cls(centroids), graph_path(path)
        if graph_file.exists():
            codebook._graph = _read_graph(graph_file, codebook.centroids)
        return codebook


def graph_path(path: str | os.PathLike) -> Path:
    """Where the HNSW graph of the codebook saved at ``path`` goes: ``words.npy`` -> ``words.hnsw``."""
    return Path(path).with_suffix(".hnsw")


def _read_graph(path: Path, centroids: np.ndarray) -> faiss.IndexHNSWFlat | None:
    """The saved graph, or None (it is then rebuilt when needed) when it is unreadable or holds other words."""
    try:
        graph = faiss.deserialize_index(np.fromfile(path, np.uint8))  # returns the concrete index type
        same_shape = isinstance(graph, faiss.IndexHNSWFlat) and (graph.ntotal, graph.d) == centroids.shape
        if same_shape and np.array_equal(graph.reconstruct_n(0, graph.ntotal), centroids):
            return graph
        reason = "it holds other words"
    except (RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    log.warning("%s: ignoring the saved HNSW graph (%s); it is rebuilt on first use", path, reason)
    return None


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
