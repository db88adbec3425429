"""The faiss index over global descriptors: exact inner product by default, IVF or HNSW for large sets.

Memory per image in RAM, for ``D``-dimensional float32 vectors (D = 2048 for VLAD): ``flat`` 4D bytes
(8 KB), ``ivf`` 4D + 8 bytes (8 KB), ``hnsw`` 4D + about 2 * 32 * 4 bytes of graph links (8.4 KB); plus
8 bytes of id each. Saved with faiss's own binary format (no pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from localmatch.errors import UnknownNameError

INDEX_KINDS = ("flat", "ivf", "hnsw")


class ShortlistIndex:
    """Inner-product search over unit vectors with caller-chosen int64 ids.

    Args:
        dim: vector size.
        kind: ``"flat"`` (exact), ``"ivf"`` (inverted file over ``4 sqrt(N)`` lists, ``nprobe`` of them
            searched; exact below 624 vectors) or ``"hnsw"`` (graph with 32 links, ``ef_search``).
    """

    def __init__(self, dim: int, kind: str = "flat", *, nprobe: int = 16, ef_search: int = 128) -> None:
        if kind not in INDEX_KINDS:
            raise UnknownNameError("index kind", kind, list(INDEX_KINDS))
        self.dim, self.kind, self.nprobe, self.ef_search = dim, kind, nprobe, ef_search
        self._index: faiss.IndexIDMap | None = None

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Replace the contents with ``(N, D)`` vectors and their ``(N,)`` ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        n = len(vectors)
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
        elif self.kind == "ivf" and n >= 39 * 16:
            nlist = int(min(4 * np.sqrt(n), n // 39))
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.cp.seed = 0
            inner.train(vectors)
        else:
            inner = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIDMap(inner)
        if n:
            index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._index = index

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def _tune(self) -> None:
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.ef_search
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = self.nprobe

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product for one ``(D,)`` query: ``(ids (k',), scores (k',))``, best first."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        self._tune()
        scores, ids = self._index.search(np.ascontiguousarray(query, np.float32).reshape(1, -1), min(k, len(self)))
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, kind: str) -> "ShortlistIndex":
        index = cls(dim, kind)
        loaded = faiss.read_index(str(path))
        if loaded.d != dim:
            raise ValueError(f"{path}: index has dimension {loaded.d}, expected {dim}")
        index._index = loaded
        return index
