"""The ASMK inverted file: for each visual word, the images that use it and their aggregated vectors.

Scoring follows the ``asmk`` package (Tolias et al.): for a query ``Q`` and an image ``X``,

    score(Q, X) = sum over words w shared by Q and X of  idf(w) * sigma(<q_w, x_w>)  / sqrt(n(Q) n(X))

with the selectivity ``sigma(s) = s ** alpha`` for ``s >= threshold`` and 0 below; ``<., .>`` is the inner
product of unit vectors (ASMK) or ``1 - 2 hamming / D`` of sign bits (ASMK*); ``n(.)`` is the sum of
``idf`` over an image's words (its word count without idf); ``idf(w) = log(N / N_w) ** 2`` over the ``N``
images held, ``N_w`` of them using ``w`` (1 for a word no image uses), or 1 everywhere without idf.
idf and norms are computed from the current contents at search time, so scores do not depend on the
order in which images were added or removed.

Images are added to a small pending segment and removed by marking them dead; segments are merged (dead
entries dropped) when there are too many, and always before saving. Saved as one compressed ``.npz`` (no
pickle). In memory an entry costs its signature (16 bytes for 128-d ASMK*) and a 4-byte image index.
"""

from __future__ import annotations

import functools
import os
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from localmatch.files import atomic_write
from localmatch.shortlist.asmk import compiled
from localmatch.shortlist.asmk.aggregate import Aggregated

FILE_FORMAT = 1
#: merge segments when more than this many exist
MAX_SEGMENTS = 4
#: entries scored per vectorised step of a search (bounds its temporary memory)
SEARCH_CHUNK = 1 << 17
#: threads scoring the chunks of one search
SEARCH_THREADS = 2


def selectivity(sim: np.ndarray, alpha: float, threshold: float) -> np.ndarray:
    """ASMK's selectivity ``sign(s) |s| ** alpha`` for similarities ``s >= threshold``, 0 below."""
    sim = np.asarray(sim, np.float64)
    return np.where(sim >= threshold, np.sign(sim) * np.power(np.abs(sim), alpha), 0.0)


def _as_64_bit(vectors: np.ndarray) -> np.ndarray | None:
    """Packed sign bits ``(E, B) uint8`` as ``(E, B / 8) uint64`` (compared 64 bits at a time), or None when
    ``B`` is not a multiple of 8."""
    if vectors.shape[1] % 8:
        return None
    return np.ascontiguousarray(vectors).view(np.uint64)


def _summed_in_threads(score, parts: list) -> np.ndarray:
    """``sum(score(part) for part in parts)``, the parts run in ``SEARCH_THREADS`` threads (one part: here)."""
    if len(parts) == 1:
        return score(parts[0])
    with ThreadPoolExecutor(SEARCH_THREADS) as pool:
        return sum(pool.map(score, parts))


def _inconsistency(arrays: dict[str, np.ndarray], dim: int, binary: bool) -> str:
    """Why loaded inverted-file arrays cannot be one segment (types, lengths, index ranges), or ''."""
    offsets, entry_image, vectors = arrays["offsets"], arrays["entry_image"], arrays["vectors"]
    width, dtype = ((dim + 7) // 8, np.uint8) if binary else (dim, np.float32)
    if offsets.dtype != np.int64 or entry_image.dtype != np.int32 or arrays["image_ids"].dtype != np.int64:
        return "index arrays of the wrong types"
    if vectors.dtype != dtype or vectors.ndim != 2 or vectors.shape[1] != width:
        return f"vectors are {vectors.dtype} {vectors.shape}, expected {np.dtype(dtype)} (E, {width})"
    if (offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(entry_image)
            or len(vectors) != len(entry_image)):
        return "word offsets do not delimit the entries"
    if len(entry_image) and (entry_image.min() < 0 or entry_image.max() >= len(arrays["image_ids"])):
        return "entries point at images it does not hold"
    return ""


@dataclass
class _Segment:
    """Entries of some images, grouped by word: entries ``offsets[w]:offsets[w+1]`` use word ``w``."""

    image_ids: np.ndarray  # (n,) int64 external ids
    offsets: np.ndarray  # (K + 1,) int64
    entry_image: np.ndarray  # (E,) int32 local image index
    vectors: np.ndarray  # (E, B) uint8 or (E, D) float32
    alive: np.ndarray = field(init=False)  # (n,) bool, all true when made
    _entry_word: np.ndarray | None = None
    word_count: np.ndarray | None = None  # (n,) float64 entries per image, cached
    idf_norm: np.ndarray | None = None  # (n,) summed idf per image, cached for idf_version
    idf_version: int = -1

    def __post_init__(self) -> None:
        self.alive = np.ones(len(self.image_ids), bool)

    @property
    def entry_word(self) -> np.ndarray:
        if self._entry_word is None:
            self._entry_word = np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int32), np.diff(self.offsets))
        return self._entry_word

    @classmethod
    def build(cls, image_ids: np.ndarray, words: np.ndarray, entry_image: np.ndarray, vectors: np.ndarray,
              num_words: int) -> "_Segment":
        order = np.argsort(words, kind="stable")
        offsets = np.zeros(num_words + 1, np.int64)
        np.cumsum(np.bincount(words, minlength=num_words), out=offsets[1:])
        return cls(np.asarray(image_ids, np.int64), offsets, entry_image[order].astype(np.int32),
                   np.ascontiguousarray(vectors[order]), _entry_word=words[order].astype(np.int32))


class InvertedFile:
    """ASMK/ASMK* inverted file over a ``num_words`` codebook for ``dim``-dimensional descriptors.

    Image ids are the caller's (int64); each id may be held once.
    """

    def __init__(self, num_words: int, dim: int, binary: bool) -> None:
        self.num_words, self.dim, self.binary = int(num_words), int(dim), bool(binary)
        self._segments: list[_Segment] = []
        self._pending: dict[int, Aggregated] = {}
        self._where: dict[int, tuple[int, int]] = {}  # id -> (segment, local index)
        self.counts = np.zeros(self.num_words, np.int64)  # images using each word
        self._version = 0  # bumped by every add and remove (idf norms depend on all contents)

    # ---- contents ----

    def __len__(self) -> int:
        return len(self._where) + len(self._pending)

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._where or int(image_id) in self._pending

    def image_ids(self) -> np.ndarray:
        return np.array(sorted([*self._where, *self._pending]), np.int64)

    @property
    def num_entries(self) -> int:
        return int(self.counts.sum())

    def add(self, image_id: int, aggregated: Aggregated) -> None:
        """Hold one image's aggregated vectors (checked against this file's word count, size and kind)."""
        image_id = int(image_id)
        if image_id in self:
            raise ValueError(f"image {image_id} is already in the inverted file")
        if aggregated.binary != self.binary or aggregated.dim != self.dim:
            raise ValueError(f"aggregated vectors are {'binary' if aggregated.binary else 'real'} of size "
                             f"{aggregated.dim}; this inverted file holds {'binary' if self.binary else 'real'} "
                             f"of size {self.dim}")
        if len(aggregated) and (aggregated.words.min() < 0 or aggregated.words.max() >= self.num_words):
            raise ValueError(f"word ids outside 0..{self.num_words - 1}")
        self._pending[image_id] = aggregated
        self.counts[aggregated.words] += 1
        self._version += 1

    def remove(self, image_id: int) -> bool:
        """Forget one image; returns whether it was held."""
        image_id = int(image_id)
        self._version += 1
        if image_id in self._pending:
            self.counts[self._pending.pop(image_id).words] -= 1
            return True
        if image_id not in self._where:
            return False
        s, local = self._where.pop(image_id)
        segment = self._segments[s]
        segment.alive[local] = False
        self.counts -= np.bincount(segment.entry_word[segment.entry_image == local], minlength=self.num_words)
        return True

    # ---- segments ----

    def _flush(self) -> None:
        """Turn pending images into a segment; merge segments when there are too many."""
        if self._pending:
            ids = np.fromiter(self._pending, np.int64, len(self._pending))
            items = list(self._pending.values())
            words = np.concatenate([a.words for a in items]).astype(np.int64)
            entry_image = np.repeat(np.arange(len(items), dtype=np.int32), [len(a) for a in items])
            width = items[0].vectors.shape[1]
            vectors = np.concatenate([a.vectors.reshape(-1, width) for a in items])
            self._append_segment(_Segment.build(ids, words, entry_image, vectors, self.num_words))
            self._pending.clear()
        if len(self._segments) > MAX_SEGMENTS:
            sizes = [len(s.entry_image) for s in self._segments]
            largest = int(np.argmax(sizes))
            rest = sum(sizes) - sizes[largest]
            keep = [] if rest * 4 >= sizes[largest] else [largest]
            self._merge([i for i in range(len(self._segments)) if i not in keep])

    def _append_segment(self, segment: _Segment) -> None:
        s = len(self._segments)
        self._segments.append(segment)
        for local, image_id in enumerate(segment.image_ids.tolist()):
            if segment.alive[local]:
                self._where[image_id] = (s, local)

    def _merge(self, which: list[int]) -> None:
        parts = [self._segments[i] for i in which]
        others = [s for i, s in enumerate(self._segments) if i not in which]
        ids, words, images, vectors, base = [], [], [], [], 0
        for seg in parts:
            new_index = np.cumsum(seg.alive) - 1 + base
            keep = seg.alive[seg.entry_image]
            ids.append(seg.image_ids[seg.alive])
            words.append(seg.entry_word[keep].astype(np.int64))
            images.append(new_index[seg.entry_image[keep]].astype(np.int32))
            vectors.append(seg.vectors[keep])
            base += int(seg.alive.sum())
        merged = _Segment.build(np.concatenate(ids), np.concatenate(words), np.concatenate(images),
                                np.concatenate(vectors), self.num_words)
        self._segments, self._where = [], {}
        for seg in [*others, merged]:
            self._append_segment(seg)

    def compact(self) -> None:
        """One segment without dead entries (done before saving)."""
        self._flush()
        if len(self._segments) > 1 or (self._segments and not self._segments[0].alive.all()):
            self._merge(list(range(len(self._segments))))

    # ---- search ----

    def idf(self, enabled: bool) -> np.ndarray:
        """``(K,) float64`` word weights: ``log(N / N_w) ** 2`` (1 for unused words) or all 1."""
        weights = np.ones(self.num_words)
        if enabled:
            used = self.counts > 0
            weights[used] = np.log(len(self) / self.counts[used]) ** 2
        return weights

    def _selectivity_table(self, alpha: float, threshold: float) -> np.ndarray:
        """``sigma(1 - 2 h / D)`` for every Hamming distance ``h`` in ``0..D`` (binary files)."""
        return selectivity(1.0 - 2.0 * np.arange(self.dim + 1) / self.dim, alpha, threshold)

    def _norms(self, seg: _Segment, weights: np.ndarray, idf: bool) -> np.ndarray:
        """``n(X)`` of the segment's images: their word counts, or their summed idf (cached per contents)."""
        if not idf:
            if seg.word_count is None:
                seg.word_count = np.bincount(seg.entry_image, minlength=len(seg.image_ids)).astype(np.float64)
            return seg.word_count
        if seg.idf_norm is None or seg.idf_version != self._version:
            seg.idf_norm = np.bincount(seg.entry_image, weights=weights[seg.entry_word], minlength=len(seg.image_ids))
            seg.idf_version = self._version
        return seg.idf_norm

    def search(self, query: Aggregated, k: int, *, alpha: float = 3.0, threshold: float = 0.0,
               idf: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best images for an aggregated query: ``(ids (k',) int64, scores (k',) float32)``."""
        self._flush()
        if query.binary != self.binary or query.dim != self.dim:
            raise ValueError("the query was aggregated differently from the inverted file's images")
        if len(self) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        weights = self.idf(idf)
        query_norm = np.sqrt(weights[query.words].sum()) if len(query) else 1.0
        table = self._selectivity_table(alpha, threshold) if self.binary else None
        all_ids, all_scores = [], []
        for seg in self._segments:
            scores = self._segment_scores(seg, query, weights if idf else None, table, alpha, threshold)
            norm = self._norms(seg, weights, idf)
            scores = np.divide(scores, np.sqrt(norm) * query_norm, out=np.zeros_like(scores), where=norm > 0)
            all_ids.append(seg.image_ids[seg.alive])
            all_scores.append(scores[seg.alive])
        ids, scores = np.concatenate(all_ids), np.concatenate(all_scores)
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
        top = top[np.lexsort((ids[top], -scores[top]))]
        return ids[top], scores[top].astype(np.float32)

    def _segment_scores(self, seg: _Segment, query: Aggregated, word_weights: np.ndarray | None,
                        table: np.ndarray | None, alpha: float, threshold: float) -> np.ndarray:
        """Summed selectivity of the query's words against one segment: ``(n,) float64`` per image.

        Binary files whose signatures fill whole 64-bit words are scored by the compiled loop when numba is
        installed (:mod:`~localmatch.shortlist.asmk.compiled`): the query words are dealt to
        ``SEARCH_THREADS`` threads, each summing into its own scores. Otherwise, with numpy: the postings of
        each query word are contiguous; they are gathered (by concatenating the slices: faster than
        ``np.take`` of computed entry numbers) in chunks of about ``SEARCH_CHUNK`` entries, compared with the
        query word's vector repeated alongside, and scattered into per-image sums with ``bincount``. The
        chunks are shared between ``SEARCH_THREADS`` threads (numpy releases the GIL in these steps).
        """
        starts = seg.offsets[query.words]
        lengths = seg.offsets[query.words + 1] - starts
        stored, wanted = seg.vectors, query.vectors
        if table is not None:  # ASMK*: sign bits, compared 64 at a time where they fill whole words
            packed_stored, packed_wanted = _as_64_bit(stored), _as_64_bit(wanted)
            if packed_stored is not None and packed_wanted is not None:
                stored, wanted = packed_stored, packed_wanted
                if compiled.AVAILABLE:
                    return self._compiled_scores(seg, stored, query, wanted, starts, lengths, word_weights, table)
        bounds = np.searchsorted(np.cumsum(lengths), np.arange(SEARCH_CHUNK, int(lengths.sum()), SEARCH_CHUNK))
        chunks = list(zip([0, *bounds.tolist()], [*bounds.tolist(), len(lengths)]))
        score = functools.partial(self._chunk_scores, seg, stored, query, wanted, starts, lengths, word_weights,
                                  table, alpha, threshold)
        threads = SEARCH_THREADS if len(chunks) >= 2 * SEARCH_THREADS else 1
        return _summed_in_threads(score, [chunks[i::threads] for i in range(threads)])

    def _compiled_scores(self, seg: _Segment, stored: np.ndarray, query: Aggregated, wanted: np.ndarray,
                         starts: np.ndarray, lengths: np.ndarray, word_weights: np.ndarray | None,
                         table: np.ndarray) -> np.ndarray:
        """:meth:`_segment_scores` by the compiled loop, the query words dealt round-robin to the threads;
        ``stored`` and ``wanted`` are the segment's and the query's sign bits as ``uint64`` words."""
        weights = word_weights[query.words] if word_weights is not None else np.ones(len(query.words))

        def score(part: slice) -> np.ndarray:
            scores = np.zeros(len(seg.image_ids))
            compiled.add_binary_scores(stored, seg.entry_image, starts[part], lengths[part], wanted[part],
                                       weights[part], table, scores)
            return scores

        threads = SEARCH_THREADS if int(lengths.sum()) >= 2 * SEARCH_CHUNK else 1
        return _summed_in_threads(score, [slice(i, None, threads) for i in range(threads)])

    def _chunk_scores(self, seg: _Segment, stored: np.ndarray, query: Aggregated, wanted: np.ndarray,
                      starts: np.ndarray, lengths: np.ndarray, word_weights: np.ndarray | None,
                      table: np.ndarray | None, alpha: float, threshold: float,
                      chunks: list[tuple[int, int]]) -> np.ndarray:
        """Per-image sums over the query words ``a:b`` of each chunk (see :meth:`_segment_scores`);
        ``stored`` and ``wanted`` are the segment's and the query's vectors (sign bits as ``uint64`` words
        where they pack)."""
        n = len(seg.image_ids)
        scores = np.zeros(n)
        for a, b in chunks:
            lens = lengths[a:b]
            count = int(lens.sum())
            if count == 0:
                continue
            spans = list(zip(starts[a:b].tolist(), (starts[a:b] + lens).tolist()))
            gathered = np.concatenate([stored[s:e] for s, e in spans])
            images = np.concatenate([seg.entry_image[s:e] for s, e in spans])
            repeated = np.repeat(wanted[a:b], lens, axis=0)
            if table is not None:  # ASMK*: sign bits
                gathered ^= repeated
                distance = np.bitwise_count(gathered[:, 0]).astype(np.intp)
                for column in range(1, gathered.shape[1]):
                    distance += np.bitwise_count(gathered[:, column])
                contribution = np.take(table, distance)
            else:
                sim = np.einsum("ij,ij->i", gathered, repeated)
                contribution = selectivity(sim, alpha, threshold)
            if word_weights is not None:
                contribution *= np.repeat(word_weights[query.words[a:b]], lens)
            scores += np.bincount(images, weights=contribution, minlength=n)
        return scores

    # ---- saving ----

    @property
    def nbytes(self) -> int:
        """Bytes of the entries, word offsets and image ids held in memory (pending images included)."""
        held = sum(s.vectors.nbytes + s.entry_image.nbytes + s.offsets.nbytes + s.image_ids.nbytes for s in self._segments)
        return held + sum(a.vectors.nbytes + 4 * len(a) for a in self._pending.values())

    def save(self, path: str | os.PathLike) -> None:
        """Write compacted, atomically (temporary file, fsync, rename), as a zlib-compressed ``.npz`` without pickle.

        Compression matters here: image indices sorted within each word and sign bits of real residuals
        compress to about 15 bytes per entry instead of 20 (multiview_dev, 1024 words).
        """
        self.compact()
        seg = self._segments[0] if self._segments else _Segment.build(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32),
            np.zeros((0, (self.dim + 7) // 8 if self.binary else self.dim), np.uint8 if self.binary else np.float32),
            self.num_words)
        with atomic_write(path) as f:
            np.savez_compressed(f, header=np.array([FILE_FORMAT, self.num_words, self.dim, int(self.binary)], np.int64),
                                image_ids=seg.image_ids, offsets=seg.offsets, entry_image=seg.entry_image,
                                vectors=seg.vectors)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "InvertedFile":
        try:
            with np.load(path, allow_pickle=False) as data:
                version, num_words, dim, binary = data["header"].tolist()
                arrays = {key: data[key] for key in ("image_ids", "offsets", "entry_image", "vectors")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"{path}: not a readable inverted file ({e})") from None
        if version != FILE_FORMAT or len(arrays["offsets"]) != num_words + 1:
            raise ValueError(f"{path}: inverted file format {version} with {len(arrays['offsets'])} offsets "
                             f"(expected format {FILE_FORMAT}, {num_words + 1})")
        problem = _inconsistency(arrays, dim, bool(binary))
        if problem:  # the compiled scoring loop does not check bounds: refuse what would send it astray
            raise ValueError(f"{path}: inconsistent inverted file ({problem})")
        ivf = cls(num_words, dim, bool(binary))
        seg = _Segment(arrays["image_ids"], arrays["offsets"], arrays["entry_image"], arrays["vectors"])
        if len(seg.image_ids):
            ivf._append_segment(seg)
            ivf.counts = np.diff(seg.offsets).astype(np.int64)
        return ivf
