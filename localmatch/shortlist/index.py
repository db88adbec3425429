"""The faiss index over global descriptors: exact inner product by default; LSH, IVF or HNSW for large sets.

Memory per image in RAM, for ``D``-dimensional float32 vectors (D = 3328 for the default gem+vlad):
``flat`` 4D bytes (13.3 KB), ``lsh`` 4D + 256 bytes (a 2048-bit sketch; plus 4 * 2048 * D bytes once
for the rotation, 27 MB), ``ivf`` 4D + 8 bytes, ``hnsw`` 4D + about 2 * 32 * 4 bytes of graph links;
plus 8 bytes of id each. Saved with faiss's own binary format (no pickle).

Growing a collection does not rebuild the index: new vectors are added to it (``add``), and ``lsh`` and
``ivf``, whose sketch thresholds and lists were learned from the vectors held at build time, are rebuilt
only once the collection has doubled since (``wants_rebuild``). A saved index can be memory-mapped instead
of read (``load(..., mapped=True)``); vectors added to it then wait beside the map. Removing never copies
or rebuilds anything: the removed vectors are hidden from search (which asks faiss for as many more results
as are hidden and drops them) and stay stored until the index is saved, which drops them from a ``flat``
index; faiss cannot remove from the other kinds as we hold them, so those keep them (``hidden``) until they
are rebuilt.

With ``whiten`` set, the vectors are PCA-whitened (see :mod:`localmatch.shortlist.whitening`) to at most
that many dimensions before they are indexed, by a transform learned on the vectors held at build time
(once there are at least ``MIN_WHITENING_VECTORS``) and kept inside the faiss index, which applies it to
queries too; like ``lsh`` and ``ivf``, a whitened index is rebuilt once the collection has doubled.

``lsh`` is the one for large collections: every image is scanned by the Hamming distance of its sign
sketch (a random rotation of the vector to 2048 dimensions, each thresholded at its median over the
vectors indexed), and the ``refine * k`` best are re-scored exactly, so the scores it returns are true inner
products and below ``refine * k`` images it is exact. At 100k images of 3328 dimensions it answers in about
4 ms against 90-170 ms for ``flat`` (BENCHMARKS.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import faiss
import numpy as np

from localmatch.errors import UnknownNameError
from localmatch.files import atomic_path
from localmatch.shortlist.whitening import Whitening, learn_whitening

INDEX_KINDS = ("flat", "lsh", "ivf", "hnsw")
#: Kinds that learn from the vectors they are built with (sketch thresholds, inverted lists).
TRAINED_KINDS = ("lsh", "ivf")
#: Kinds faiss can take vectors out of; the others hide removed vectors until they are rebuilt. (An IVF index
#: can remove, but not under the ``IndexIDMap`` that holds our ids: it keeps the old positions in its lists
#: while the id map closes its gaps, so every later result gets the wrong id.)
DROPPING_KINDS = ("flat",)
LSH_BITS = 2048
LSH_TRAINING_VECTORS = 20000
#: Fewer vectors than this are indexed as they are, even when whitening is asked for.
MIN_WHITENING_VECTORS = 64
#: Whether this faiss can memory-map a saved index (``load(..., mapped=True)``); an older one reads it.
CAN_MAP = hasattr(faiss, "IO_FLAG_MMAP_IFC")


class ShortlistIndex:
    """Inner-product search over unit vectors with caller-chosen int64 ids.

    Args:
        dim: vector size.
        kind: ``"flat"`` (exact), ``"lsh"`` (2048-bit sign sketches scanned by Hamming distance, the best
            ``refine * k`` re-scored exactly), ``"ivf"`` (inverted file over ``4 sqrt(N)`` lists, ``nprobe``
            of them searched; exact below 624 vectors) or ``"hnsw"`` (graph with 32 links, ``ef_search``).
        refine: ``lsh`` re-scores ``refine * k`` candidates exactly for a top ``k``.
        whiten: PCA-whiten to at most this many dimensions (0: index the vectors as they are).
    """

    def __init__(self, dim: int, kind: str = "flat", *, nprobe: int = 16, ef_search: int = 128,
                 refine: int = 10, whiten: int = 0) -> None:
        if kind not in INDEX_KINDS:
            raise UnknownNameError("index kind", kind, list(INDEX_KINDS))
        if whiten < 0:
            raise ValueError(f"whiten must be 0 (off) or a number of dimensions, not {whiten}")
        self.dim, self.kind, self.nprobe, self.ef_search, self.refine = dim, kind, nprobe, ef_search, refine
        self.whiten = whiten
        self._index: faiss.IndexIDMap | None = None
        #: how many vectors the index was built (and, for lsh, ivf and whitening, trained) on
        self.built_with = 0
        # the mapped file and what identified it when it was mapped (device, inode, size, modification time);
        # None when the vectors are in memory
        self._mapped_file: tuple[Path, tuple[int, ...]] | None = None
        # vectors added to a mapped index: an exact index beside it (in its whitened space, if whitened) and
        # the vectors as given, to merge into it when it has to be copied anyway
        self._recent: faiss.IndexIDMap | None = None
        self._recent_vectors: list[np.ndarray] = []
        # sorted ids of removed vectors still stored in the index proper, left out of every search
        self._hidden = np.zeros(0, np.int64)

    @property
    def mapped(self) -> bool:
        """Whether the stored vectors are a read-only memory map of the file the index was loaded from."""
        return self._mapped_file is not None

    @property
    def _built(self) -> faiss.IndexIDMap:
        """The index proper; only asked for once it has been built or loaded."""
        if self._index is None:
            raise RuntimeError("the shortlist index has not been built or loaded")
        return self._index

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Replace the contents with ``(N, D)`` vectors and their ``(N,)`` ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        whitening = self._learn_whitening(vectors)
        dims = self.dim if whitening is None else whitening.dims
        # what the kind learns from, in the space it indexes (only trained kinds need it)
        training = np.zeros((0, dims), np.float32)
        if self.kind in TRAINED_KINDS:
            training = vectors if whitening is None else whitening.apply(vectors)
        inner = self._empty_index(dims, training)
        if whitening is not None:
            inner = faiss.IndexPreTransform(inner)
            for transform in reversed(whitening.as_faiss()):
                inner.prepend_transform(transform)
        self._index, self._mapped_file = faiss.IndexIDMap(inner), None
        self._forget_recent()
        self._hidden = np.zeros(0, np.int64)
        self.built_with = len(vectors)
        self.add(vectors, ids)  # through the whitening transform, if any

    def _learn_whitening(self, vectors: np.ndarray) -> Whitening | None:
        if not self.whiten or len(vectors) < MIN_WHITENING_VECTORS:
            return None
        try:
            return learn_whitening(vectors, self.whiten)
        except ValueError:  # all vectors equal: nothing to learn
            return None

    def _empty_index(self, dim: int, training: np.ndarray) -> faiss.Index:
        """The kind's empty index over ``dim``-d vectors; :data:`TRAINED_KINDS` learn from the ``(N, dim)``
        ``training`` vectors (the others are given none)."""
        if self.kind == "lsh":
            return self._sketch_and_refine(training)
        if self.kind == "hnsw":
            return faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        if self.kind == "ivf" and len(training) >= 39 * 16:
            n = len(training)
            nlist = int(min(4 * np.sqrt(n), n // 39))
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.cp.seed = 0
            inner.train(training)
            return inner
        return faiss.IndexFlatIP(dim)

    def _pretransform(self) -> faiss.IndexPreTransform | None:
        """The whitening wrapper inside the id map, if the built index is whitened."""
        inner = None if self._index is None else faiss.downcast_index(self._index.index)
        return inner if isinstance(inner, faiss.IndexPreTransform) else None

    @property
    def whitened_dims(self) -> int:
        """Dimensions the vectors are whitened to in the built index (0: not whitened)."""
        pretransform = self._pretransform()
        return 0 if pretransform is None else int(pretransform.index.d)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add ``(N, D)`` vectors with their ``(N,)`` ids (not already held) to a built index.

        A mapped index keeps what is added beside the map, searched exactly, so that adding a few vectors
        to a large saved index neither copies it nor waits for it to be read."""
        if self._index is None:
            raise ValueError("the index is not built yet")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(vectors):
            return
        if self.hidden and np.isin(ids, self._hidden).any():  # they would stay hidden with the old vectors
            raise ValueError("ids removed from this index cannot be added again before it is rebuilt")
        if not self.mapped:
            self._index.add_with_ids(vectors, ids)
            return
        if self._recent is None:
            self._recent = faiss.IndexIDMap(faiss.IndexFlatIP(self.whitened_dims or self.dim))
        self._recent.add_with_ids(self._whitened(vectors), ids)
        self._recent_vectors.append(vectors)

    def _whitened(self, vectors: np.ndarray) -> np.ndarray:
        """``(N, D)`` vectors in the space the index holds them in: through its whitening, if any."""
        pretransform = self._pretransform()
        if pretransform is None:
            return vectors
        for i in range(pretransform.chain.size()):
            vectors = faiss.downcast_VectorTransform(pretransform.chain.at(i)).apply(vectors)
        return np.ascontiguousarray(vectors, np.float32)

    def _recent_ids(self) -> np.ndarray:
        return np.zeros(0, np.int64) if self._recent is None else faiss.vector_to_array(self._recent.id_map)

    def _forget_recent(self) -> None:
        self._recent, self._recent_vectors = None, []

    def remove(self, ids: np.ndarray) -> None:
        """Remove the vectors of ``ids`` (those not held are ignored), without copying or rebuilding: vectors
        added beside a map are dropped, an in-memory ``flat`` index drops them too, and otherwise (a mapped
        file, or another kind) they are hidden from search until :meth:`save` or a rebuild."""
        ids = np.unique(np.asarray(ids, np.int64))
        if len(ids) == 0 or self._index is None:
            return
        recent_ids = self._recent_ids()
        dropped = np.isin(recent_ids, ids)
        if dropped.any():
            vectors = np.concatenate(self._recent_vectors)[~dropped]
            self._forget_recent()
            self.add(vectors, recent_ids[~dropped])
        stored = np.intersect1d(ids, faiss.vector_to_array(self._index.id_map), assume_unique=True)
        if self.kind in DROPPING_KINDS and not self.mapped:
            self._index.remove_ids(stored)  # a memmove of the vectors in memory
        else:
            self._hidden = np.union1d(self._hidden, stored)

    @property
    def hidden(self) -> int:
        """How many removed vectors are still stored, hidden from search (see :meth:`remove`)."""
        return len(self._hidden)

    @property
    def hidden_after_save(self) -> int:
        """How many removed vectors :meth:`save` would still write: kinds faiss cannot remove from keep them
        until they are rebuilt."""
        return 0 if self.kind in DROPPING_KINDS else self.hidden

    def _own_storage(self) -> None:
        """Copy a mapped index's vectors into memory (faiss cannot shrink or grow a view of a file: it aborts
        the process on trying), with the vectors added beside them merged in; then drop the hidden vectors
        where faiss can."""
        if self.mapped:
            self._index, self._mapped_file = self._read_mapped_file(), None
            if self._recent is not None:
                self._index.add_with_ids(np.concatenate(self._recent_vectors), self._recent_ids())
            self._forget_recent()
        if self.hidden and not self.hidden_after_save:
            self._built.remove_ids(self._hidden)
            self._hidden = np.zeros(0, np.int64)

    def _read_mapped_file(self) -> faiss.Index:
        """The mapped index, read into memory: from its file while that is still the file mapped (1 s for
        1.3 GB), else (it was replaced) through faiss's serialisation of the map (19 s for 1.3 GB: faiss grows
        its buffer as it writes)."""
        if self._mapped_file is not None and not self.file_replaced():
            try:
                return faiss.read_index(str(self._mapped_file[0]))
            except RuntimeError:  # replaced between the check and the read
                pass
        return faiss.deserialize_index(faiss.serialize_index(self._index))

    def file_replaced(self) -> bool:
        """Whether the file a mapped index maps has been replaced (or removed) since it was mapped."""
        if self._mapped_file is None:
            return False
        path, identity = self._mapped_file
        try:
            return _file_identity(path) != identity
        except OSError:
            return True

    def ids(self) -> np.ndarray:
        """``(N,) int64`` ids held (not removed), in insertion order."""
        if self._index is None:
            return np.zeros(0, np.int64)
        stored = faiss.vector_to_array(self._index.id_map)
        if self.hidden:
            stored = stored[~np.isin(stored, self._hidden)]
        return np.concatenate([stored, self._recent_ids()])

    def wants_rebuild(self, size: int) -> bool:
        """Whether to rebuild rather than grow to ``size`` vectors: ``lsh``, ``ivf`` and whitened indexes once
        the collection has doubled since they were trained (their thresholds, lists or whitening would no
        longer fit it), and an index that should be whitened once there are enough vectors to learn from."""
        doubled = size > 2 * max(self.built_with, 1)
        if doubled and (self.kind in TRAINED_KINDS or self.whitened_dims > 0):
            return True
        could_whiten = self.whiten > 0 and not self.whitened_dims and size >= MIN_WHITENING_VECTORS
        return could_whiten and (self.built_with < MIN_WHITENING_VECTORS or doubled)

    def _sketch_and_refine(self, vectors: np.ndarray) -> faiss.IndexRefine:
        """An empty LSH index whose bit thresholds are the medians over (a seeded sample of) ``vectors``."""
        dim = vectors.shape[1]
        sketch = faiss.IndexLSH(dim, LSH_BITS, True, True)  # random rotation, trained thresholds
        sketch.metric_type = faiss.METRIC_INNER_PRODUCT  # what the exact re-scoring uses; the scan is Hamming
        if len(vectors) > LSH_TRAINING_VECTORS:
            sample = np.random.default_rng(0).choice(len(vectors), LSH_TRAINING_VECTORS, replace=False)
            vectors = vectors[np.sort(sample)]
        sketch.train(vectors if len(vectors) else np.zeros((1, dim), np.float32))
        return faiss.IndexRefine(sketch, faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        if self._index is None:
            return 0
        return int(self._index.ntotal) - self.hidden + (0 if self._recent is None else int(self._recent.ntotal))

    def _tune(self, k: int, wanted: int) -> None:
        """Set the search depth for a top ``k`` that is asked of faiss as its top ``wanted`` (``k`` plus the
        hidden vectors, at most all it holds)."""
        pretransform = self._pretransform()
        inner = faiss.downcast_index(self._built.index if pretransform is None else pretransform.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.ef_search
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = self.nprobe
        elif isinstance(inner, faiss.IndexRefine):
            # the sketch's best refine * k candidates plus the hidden ones are re-scored (not refine times the
            # hidden ones too); never ask it for more than it holds: faiss's IndexRefine then returns only -1s
            candidates = self.refine * k + wanted - k
            inner.k_factor = min(candidates, self._built.ntotal + 0.5) / wanted

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by inner product for one ``(D,)`` query: ``(ids (k',), scores (k',))``, best first."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.ascontiguousarray(query, np.float32).reshape(1, -1)
        ids, scores = self._search_stored(query, k)
        if self._recent is None:
            return ids, scores
        recent_ids, recent_scores = _top(self._recent, self._whitened(query), k)
        ids, scores = np.concatenate([ids, recent_ids]), np.concatenate([scores, recent_scores])
        best = np.argsort(-scores, kind="stable")[:k]
        return ids[best], scores[best]

    def _search_stored(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of the index proper (not what waits beside a map) for a ``(1, D)`` query: faiss is
        asked for as many more as are hidden, and those are dropped."""
        wanted = min(k + self.hidden, int(self._built.ntotal))
        if wanted == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        self._tune(min(k, wanted), wanted)
        ids, scores = _top(self._built, query, wanted)
        if self.hidden:
            visible = ~np.isin(ids, self._hidden)
            ids, scores = ids[visible][:k], scores[visible][:k]
        return ids, scores

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename). A mapped index is first copied into memory and
        merged with what waits beside it, and hidden vectors are dropped where faiss can (:attr:`hidden`
        tells how many remain stored: their ids are in the file, and whoever loads it must remove them
        again)."""
        self._own_storage()
        with atomic_path(path) as tmp:
            try:
                faiss.write_index(self._index, str(tmp))
            except RuntimeError as e:  # faiss's write error ends with the system's reason: "(No space left on device)"
                why = re.search(r"\(([^()]*)\)\s*$", str(e))
                raise OSError(f"{tmp}: faiss cannot write the index: {why.group(1) if why else e}") from e

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, kind: str, built_with: int | None = None,
             whiten: int = 0, *, mapped: bool = False) -> "ShortlistIndex":
        """Read a saved index; ``built_with`` as recorded when it was built (default: the vectors it holds).

        With ``mapped``, the vectors (all but an ``ivf`` index's lists) are memory-mapped from the file instead
        of read: opening takes milliseconds whatever the size (a second for 1.3 GB read) and processes
        searching the same file share its pages. What :meth:`add` adds is kept beside the map and searched
        exactly (so for ``ivf``, ``hnsw`` and ``lsh`` it is found at least as well as if it were inside), what
        :meth:`remove` removes from the map is hidden, and :meth:`save` first copies the map into memory and
        merges the rest in. The file must not be changed in place while mapped; :meth:`save` replaces it,
        which is safe.
        """
        index = cls(dim, kind, whiten=whiten)
        mapped = mapped and CAN_MAP
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mapped else 0
        identity = _file_identity(path) if mapped else ()  # before reading: a file replaced meanwhile then differs
        loaded = faiss.read_index(str(path), flags)
        if loaded.d != dim or not isinstance(loaded, faiss.IndexIDMap):
            raise ValueError(f"{path}: not an id-mapped index of dimension {dim}")
        index._index = loaded
        if mapped:
            index._mapped_file = (Path(path), identity)
        index.built_with = int(loaded.ntotal) if built_with is None else built_with
        return index


def _file_identity(path: str | os.PathLike) -> tuple[int, ...]:
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _top(index: faiss.Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``min(k, ntotal)`` of a faiss index for one ``(1, d)`` query: ``(ids, scores)``, best first."""
    k = min(k, int(index.ntotal))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores, ids = index.search(query, k)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]
