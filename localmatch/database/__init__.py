"""A searchable image database: local features, a global shortlist, verified re-ranking.

On disk (one folder):

- ``localmatch.sqlite``: SQLite in WAL mode. ``meta`` (format version, settings, committed lengths of
  the arrays, a generation counter) and ``images`` (path as given, content hash, size, row offsets, and the
  CRC-32 of the image's rows in the arrays; NULL for images added before session 28, which kept none).
- ``keypoints.f32``, ``descriptors.i8``, ``global.f16``: append-only arrays (see :mod:`.store`).
- ``shortlist.faiss``: a cache of the faiss index, rebuilt from ``global.f16`` when stale or unreadable (its
  CRC-32, and the codebook's, are kept in ``meta`` when written, for :meth:`Database.check`). It may lag the
  images table by up to ``SAVED_INDEX_MAX_LAG`` of the collection: whoever opens the database maps the file,
  adds the vectors it lacks beside the map and hides those of removed images from search.
- with ``representation="asmk"`` or ``"rasmk"``, instead of global descriptors (``global_row`` is -1 and
  there is no ``shortlist.faiss``; databases made before session 9 kept both, unused, and a writer deletes
  that file): ``codebook.npy`` (visual words, trained on the stored descriptors; with 16384 words or more
  also ``codebook.hnsw``, the faiss HNSW graph a query's words are found with) and ``asmk.npz``, a cache of
  the inverted file brought up to date with the images table (images added or removed since it was saved
  are added or removed).
- ``write.lock``: locked (:mod:`.lock`) by the one process allowed to write.

An image is committed by one SQLite transaction after its bytes are on disk (fsync), so a process
killed at any moment leaves a database holding exactly the images committed before the kill.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shlex
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Concatenate, Iterable, Iterator, Mapping, ParamSpec, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from tqdm import tqdm

from localmatch.api import DEFAULT_MIN_INLIERS, check_min_inliers
from localmatch.config import Config, build_config, require_flag, require_whole
from localmatch.database.check import CheckReport, DamagedImage, check_database, off_unit_length
from localmatch.database.lock import FileLock
from localmatch.database.repair import RepairReport, repair_database
from localmatch.database.store import RECORD_COLUMNS, AppendOnlyArray, ArraySpec, ImageRecord, checksum_mismatch
from localmatch.errors import ConfigError, DatabaseError, ImageError, UnknownNameError
from localmatch.files import file_crc32
from localmatch.features import FEATURES
from localmatch.geometry import RansacConfig
from localmatch.io import Image, ImageSource, crop, decode_bytes, load_image, working_scale
from localmatch.matching import default_matcher
from localmatch.matching.nn import QuantizedDescriptors, quantize
from localmatch.rerank import (DEFAULT_MATCHER_TOP, DEFAULT_RERANK_GEOMETRY, Candidate, check_matcher_top,
                               rerank_candidates)
from localmatch.shortlist import DEFAULT_GLOBAL_DESCRIPTOR, FALLBACK_GLOBAL_DESCRIPTOR, get_global_descriptor
from localmatch.shortlist.asmk import (REPRESENTATIONS, AsmkConfig, Codebook, InvertedFile, describe_database_image,
                                       describe_query, train_codebook)
from localmatch.shortlist.asmk.codebook import graph_path
from localmatch.shortlist.index import INDEX_KINDS, ShortlistIndex
from localmatch.types import Features, Hit

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

FORMAT_VERSION = 1
#: What reading a damaged SQLite file raises: SQLite's errors, and UnicodeDecodeError for damaged text.
_UNREADABLE = (sqlite3.DatabaseError, UnicodeDecodeError)
DB_FILE = "localmatch.sqlite"
INDEX_FILE = "shortlist.faiss"
CODEBOOK_FILE = "codebook.npy"
ASMK_FILE = "asmk.npz"
LOCK_FILE = "write.lock"
#: meta keys of the CRC-32 of the saved shortlist index and codebook, recorded when they are written
INDEX_FILE_CRC, CODEBOOK_FILE_CRC = "index_crc32", "codebook_crc32"
#: The saved faiss index is rewritten only once it lags the images table by more than this share of the
#: collection (or was rebuilt). The file holds every vector (1.3 GB at 100k images: 3-4 s to write); whoever
#: opens the database maps it and adds the vectors it lacks beside the map, by image id (see
#: ``Database._current_index`` and ``ShortlistIndex.add``), so a lagging or stale file costs at most reading
#: that share of ``global.f16``, never results.
SAVED_INDEX_MAX_LAG = 0.125
#: Ids bound per ``IN (...)`` query: SQLite builds before 3.32 allow 999 variables a statement, and a shortlist or
#: :meth:`Database.candidates` may name more images than that.
_MOST_SQL_VARIABLES = 999
#: What a folder is searched for (case ignored): what photographs are saved as, browsers' .jfif included, and
#: phones' HEIC (decoded with the optional pillow-heif plugin; without it each is reported, not passed over).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff",
                  ".webp", ".bmp", ".gif", ".avif", ".heic", ".heif", ".jp2", ".j2k")


@dataclass
class AddReport:
    """What :meth:`Database.add` did: paths added, skipped as already indexed, and failures.

    Attributes:
        same_as: for each skipped path, the stored path of the image with the same bytes (the path itself
            when it was added before under that name; another one for a byte-identical copy).
        replaced: paths whose old entry was removed: the file had changed since it was added (its new content
            is added, or was found stored under another path), or other boxes were given for it.
    """

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    same_as: dict[str, str] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)


def expand_image_paths(items: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, and the image files under folders (sorted, recursive), as text paths, each file once
    (by its first spelling).

    Under a folder, hidden files and folders (names starting with ".": ``.thumbnails/``, macOS's
    ``._IMG_0001.jpg`` resource forks) are left out, as git and most photo tools do; name one to take it.
    """
    out: list[str] = []
    for item in items:
        path = os.fspath(item)
        if os.path.isdir(path):
            out.extend(os.path.join(path, os.path.relpath(f, path)) for f in sorted(image_files_under(path)))
        else:
            out.append(path)
    return _one_spelling_per_file(out)


def image_files_under(folder: str) -> Iterator[Path]:
    """The image files under ``folder`` (recursive, by :data:`IMAGE_SUFFIXES` in any case, hidden files and
    folders left out), in the file system's order, found as the walk goes (``any(...)`` stops at the first)."""
    return (p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _one_spelling_per_file(paths: list[str]) -> list[str]:
    """``paths`` without later spellings of a file already listed (``a.jpg`` and ``./a.jpg``, a folder and a
    file in it, a symbolic link to it): one file is not a copy of itself. Hard links, two names of one
    file's data, both stay."""
    seen: set[str] = set()
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def _names_the_file(method: Callable[Concatenate[Database, P], T]) -> Callable[Concatenate[Database, P], T]:
    """A :class:`Database` method whose SQLite errors (a damaged file: a malformed page, a path no longer
    UTF-8; a failing disk) become a DatabaseError naming the file."""
    @functools.wraps(method)
    def named(self: Database, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except _UNREADABLE as e:
            raise DatabaseError(f"{self.path / DB_FILE}: SQLite cannot read or write it ({e})") from e
    return named


def remove_command(path: str | os.PathLike, image_ids: Iterable[int]) -> str:
    """The command line that removes these images from the database at ``path`` (quoted for the shell)."""
    return f"localmatch index remove {shlex.quote(str(path))} {' '.join(str(i) for i in image_ids)}"


def _reason(error: Exception) -> str:
    """What went wrong, without the errno's number: "No space left on device"."""
    return getattr(error, "strerror", None) or str(error)


def _from_crop(hit: Hit, offset: tuple[int, int]) -> Hit:
    """``hit`` of a query cropped at ``offset`` ``(x0, y0)``, its matrix taking the whole query image's pixels:
    ``M @ T`` with ``T`` the translation by ``-offset`` (for a homography, affine map or fundamental matrix
    alike, since a whole-image point ``p`` is ``p - offset`` in the crop)."""
    if hit.matrix is None:
        return hit
    to_crop = np.array([[1.0, 0.0, -offset[0]], [0.0, 1.0, -offset[1]], [0.0, 0.0, 1.0]])
    return dataclasses.replace(hit, matrix=hit.matrix @ to_crop)


def _storable(path: str) -> bool:
    """Whether SQLite can keep ``path`` as text: Python spells a file name that is not valid UTF-8 (bytes
    from a Latin-1 system, say) with lone surrogates, which UTF-8 cannot encode."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Database:
    """Create or open an image database folder.

    Args:
        path: the folder; created (with the settings below) when it does not exist or is empty.
        readonly: open for searching only (no write lock; many readers may search at once).
        features: local feature extractor name for a new database (default ``"sift"``).
        feature_config: its options (dict or config) for a new database.
        global_descriptor: shortlist descriptor name for a new database (default ``"gem+vlad"``;
            ``"gem"``, ``"vlad"``).
        index: ``"flat"`` (exact inner product, default), ``"lsh"``, ``"ivf"`` or ``"hnsw"`` for large
            collections (see :mod:`localmatch.shortlist.index`).
        whitening: for a new database, PCA-whiten the global descriptors in the index to at most this many
            dimensions, learned on the database's own vectors once it holds 64 images and again as it doubles
            (see :mod:`localmatch.shortlist.whitening`); 0 or None: off, the default: on multiview_dev's 79
            images the default gem+vlad scored mAP 0.936 either way before re-ranking and 0.947 whitened
            against 0.953 raw after it (GeM alone: 0.924 / 0.945 against 0.918 / 0.934).
        representation: what shortlists a query: ``"global"`` (one vector per image in faiss, default),
            ``"asmk"`` (ASMK* inverted file over a visual codebook) or ``"rasmk"`` (regional ASMK*: database
            images aggregated over regions, see ``asmk_config.regions`` and the ``boxes`` of :meth:`add`).
            Global descriptors are stored in every case (duplicate finding uses them).
        asmk_config: :class:`~localmatch.shortlist.asmk.AsmkConfig` options (dict) for a new database.
        codebook: a ``.npy`` codebook (``(K, D) float32``) to use instead of training one on the stored
            descriptors (by default one is trained when first needed and again as the database doubles,
            see :meth:`train_codebook`).

    Settings of an existing database are read from it; giving different ones raises DatabaseError.
    Use as a context manager, or call :meth:`close`, to release the write lock.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, features: str | None = None,
                 feature_config: dict | None = None, global_descriptor: str | None = None,
                 index: str | None = None, representation: str | None = None, asmk_config: dict | None = None,
                 codebook: str | os.PathLike | None = None, whitening: int | None = None) -> None:
        require_flag(readonly, "readonly")
        self.path = Path(path)
        self.readonly = readonly
        self._write_lock: FileLock | None = None
        #: vectors added to or removed from the in-memory index since it matched the saved file (inf: rebuilt)
        self._index_unsaved = 0.0
        if self.path.exists() and not self.path.is_dir():
            raise DatabaseError(f"{self.path}: a file, not a database folder")
        exists = (self.path / DB_FILE).exists()
        if not exists and readonly:
            raise DatabaseError(f"{self.path}: no localmatch database here")
        if not exists and self.path.exists() and any(self.path.iterdir()):
            raise DatabaseError(f"{self.path}: folder is not empty and holds no localmatch database")
        made_folder = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if not readonly:
            self._take_write_lock()
        self._connection: sqlite3.Connection | None = None
        self._index: ShortlistIndex | None = None
        self._asmk: InvertedFile | None = None
        self._checksums_known = False
        #: ids of images found damaged when read, each warned about once
        self._damage_reported: set[int] = set()
        try:
            self._open(exists, features, feature_config, global_descriptor, index, representation, asmk_config,
                       codebook, whitening)
        except BaseException:
            if exists:
                self.close()  # release the lock; nothing was changed
            else:  # a bad setting must not leave a half-made database behind
                self._discard_unfinished(made_folder)
            raise
        self._index_generation = -1
        self._asmk_generation = -1
        self._codebook: Codebook | None = None
        self._codebook_loaded = ""

    @property
    def _db(self) -> sqlite3.Connection:
        """The SQLite connection; using a closed database is an error that says so."""
        if self._connection is None:
            raise DatabaseError(f"{self.path}: the database is closed")
        return self._connection

    # ---- opening, settings, locking ----

    @_names_the_file
    def _open(self, exists: bool, features, feature_config, global_descriptor, index, representation, asmk_config,
              codebook, whitening) -> None:
        """Connect to SQLite, create the tables and settings of a new database, read the settings, and (for a
        writer) cut off what a killed writer appended to the arrays but never committed."""
        try:
            self._connection = sqlite3.connect(self.path / DB_FILE, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        except _UNREADABLE as e:  # not SQLite, or a damaged file
            raise DatabaseError(f"{self.path / DB_FILE}: cannot open the SQLite database ({e})") from None
        if not exists:
            self._create(features or "sift", feature_config or {}, global_descriptor, index or "flat",
                         representation or "global", asmk_config or {}, codebook, whitening or 0)
        self._load_settings(features, feature_config, global_descriptor, index, representation, asmk_config,
                            whitening)
        self._arrays = {
            "keypoints": AppendOnlyArray(self.path, ArraySpec("keypoints.f32", np.float32, 2)),
            "descriptors": AppendOnlyArray(self.path, ArraySpec("descriptors.i8", np.int8, self.descriptor_dim)),
            "global": AppendOnlyArray(self.path, ArraySpec("global.f16", np.float16, self.global_dim)),
        }
        if not self.readonly:
            if not self.keeps_checksums:  # made before session 28: images added from now on get one
                self._db.execute("ALTER TABLE images ADD COLUMN checksum INTEGER")
            self._arrays["keypoints"].truncate(self._meta_int("feature_rows"))
            self._arrays["descriptors"].truncate(self._meta_int("feature_rows"))
            self._arrays["global"].truncate(self._meta_int("global_rows"))
            if self.representation != "global":  # made before session 9, which kept a global index unused
                (self.path / INDEX_FILE).unlink(missing_ok=True)

    @property
    def keeps_checksums(self) -> bool:
        """Whether the images table has the ``checksum`` column (databases made before session 28 gain it when
        a writer first opens them; their older images keep none)."""
        return any(row[1] == "checksum" for row in self._db.execute("PRAGMA table_info(images)"))

    def _take_write_lock(self) -> None:
        self._write_lock = FileLock.try_acquire(self.path / LOCK_FILE)
        if self._write_lock is None:
            raise DatabaseError(f"{self.path}: another process is writing to this database "
                                "(open it with readonly=True to search)")

    def _discard_unfinished(self, made_folder: bool) -> None:
        """Undo a creation that failed: the folder was empty (or absent), so what is in it now is ours."""
        self.close()
        for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", LOCK_FILE, CODEBOOK_FILE):
            (self.path / name).unlink(missing_ok=True)
        graph_path(self.path / CODEBOOK_FILE).unlink(missing_ok=True)
        if made_folder:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def _create(self, features: str, feature_config: dict, global_descriptor: str | None, index: str,
                representation: str, asmk_config: dict, codebook: str | os.PathLike | None, whitening: int) -> None:
        extractor = FEATURES.get(features)
        if isinstance(whitening, bool) or not isinstance(whitening, (int, np.integer)) or whitening < 0:
            raise DatabaseError(f"whitening must be a number of dimensions (0: off), not {whitening!r}")
        cfg = build_config(extractor.config_type, feature_config, {}, features)
        if index not in INDEX_KINDS:
            raise UnknownNameError("index kind", index, list(INDEX_KINDS))
        if representation not in REPRESENTATIONS:
            raise UnknownNameError("representation", representation, list(REPRESENTATIONS))
        asmk = build_config(AsmkConfig, asmk_config, {}, "asmk")
        probe = extractor.run(load_image(np.full((16, 16), 128, np.uint8)), cfg)
        if global_descriptor is None:
            default = get_global_descriptor(DEFAULT_GLOBAL_DESCRIPTOR)
            accepted = not default.accepts or probe.extractor in default.accepts
            global_descriptor = DEFAULT_GLOBAL_DESCRIPTOR if accepted else FALLBACK_GLOBAL_DESCRIPTOR
        descriptor = get_global_descriptor(global_descriptor)
        if descriptor.accepts and probe.extractor not in descriptor.accepts:
            raise DatabaseError(f"global descriptor {global_descriptor!r} aggregates {', '.join(descriptor.accepts)} "
                                f"features, not {probe.extractor}")
        meta = {
            "format_version": FORMAT_VERSION, "features": features, "feature_config": json.dumps(cfg.to_dict()),
            "descriptor_dim": probe.descriptor_dim, "extractor": probe.extractor, "global_descriptor": global_descriptor,
            "global_dim": descriptor.dim, "index": index, "feature_rows": 0, "global_rows": 0, "generation": 0,
            "representation": representation, "asmk_config": json.dumps(asmk.to_dict()), "codebook_descriptors": 0,
            "whitening": int(whitening),
        }
        if codebook is not None:
            try:
                given = Codebook.load(codebook)
            except ValueError as e:
                raise DatabaseError(str(e)) from None
            if given.dim != probe.descriptor_dim:
                raise DatabaseError(f"{codebook}: codebook of {given.dim}-d words for {probe.descriptor_dim}-d "
                                    f"{probe.extractor} descriptors")
            given.save(self.path / CODEBOOK_FILE)
            meta["codebook_descriptors"] = -1  # given: never retrained automatically
            meta[CODEBOOK_FILE_CRC] = file_crc32(self.path / CODEBOOK_FILE)
        with self._transaction():
            self._db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, "
                "content_hash TEXT NOT NULL UNIQUE, width INTEGER NOT NULL, height INTEGER NOT NULL, "
                "num_features INTEGER NOT NULL, feature_row INTEGER NOT NULL, descriptor_scale REAL NOT NULL, "
                "working_scale REAL NOT NULL, global_row INTEGER NOT NULL, checksum INTEGER)")
            self._db.execute("CREATE INDEX images_path ON images(path)")
            self._db.execute("CREATE TABLE regions (image_id INTEGER NOT NULL, x0 REAL NOT NULL, y0 REAL NOT NULL, "
                             "x1 REAL NOT NULL, y1 REAL NOT NULL)")
            self._db.execute("CREATE INDEX regions_image ON regions(image_id)")
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])

    def _load_settings(self, features, feature_config, global_descriptor, index, representation, asmk_config,
                       whitening) -> None:
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
        except _UNREADABLE as e:
            raise DatabaseError(f"{self.path}: not a readable localmatch database ({e})") from None
        try:
            version = int(meta.get("format_version", -1))
        except ValueError:  # damaged
            version = -1
        if version != FORMAT_VERSION:
            raise DatabaseError(f"{self.path}: format version {version}; this localmatch reads version {FORMAT_VERSION}")
        try:
            self._read_stored_settings(meta)
        except UnknownNameError:  # an extractor this process has not registered, say
            raise
        except (KeyError, ValueError, TypeError) as e:
            raise DatabaseError(f"{self.path / DB_FILE}: its stored settings cannot be read, the file is damaged "
                                f"({type(e).__name__}: {e})") from None
        given = {"features": (features, self.features), "global_descriptor": (global_descriptor, self.global_descriptor_name),
                 "index": (index, self.index_kind), "representation": (representation, self.representation),
                 "whitening": (whitening, self.whitening)}
        for name, (wanted, stored) in given.items():
            if wanted is not None and wanted != stored:
                raise DatabaseError(f"{self.path}: the database uses {name}={stored!r}, not {wanted!r}")
        if feature_config and build_config(type(self.feature_config), feature_config, {}, self.features) != self.feature_config:
            raise DatabaseError(f"{self.path}: the database was built with other feature options ({meta['feature_config']})")
        if asmk_config and build_config(AsmkConfig, asmk_config, {}, "asmk") != self.asmk_config:
            raise DatabaseError(f"{self.path}: the database was built with other ASMK options ({meta['asmk_config']})")

    def _read_stored_settings(self, meta: dict[str, str]) -> None:
        """Set the settings attributes from the ``meta`` table; KeyError, ValueError or TypeError where a value
        is missing or unreadable."""
        self.features = meta["features"]
        self.feature_config = FEATURES.get(self.features).config_type.from_stored(json.loads(meta["feature_config"]))
        self.descriptor_dim = int(meta["descriptor_dim"])
        #: ``Features.extractor`` of the stored features ("rootsift"...)
        self.extractor = meta["extractor"]
        self.global_descriptor_name = meta["global_descriptor"]
        self.global_dim = int(meta["global_dim"])
        self.index_kind = meta["index"]
        #: dimensions the index whitens global descriptors to (0: off)
        self.whitening = int(meta.get("whitening", 0))
        self.representation = meta.get("representation", "global")
        self.asmk_config = build_config(AsmkConfig, json.loads(meta.get("asmk_config", "{}")), {}, "asmk")
        self._descriptor = get_global_descriptor(self.global_descriptor_name)
        for key in ("feature_rows", "global_rows", "generation"):
            int(meta[key])  # read as they are needed (_meta_int)

    def _meta_int(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or not str(row[0]).lstrip("-").isdigit():
            raise sqlite3.DatabaseError(f"the setting {key!r} is missing or not a number: the file is damaged")
        return int(row[0])

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    if exc_type is None:
                        db.execute("COMMIT")  # fails on a full disk, say
                finally:
                    if db.in_transaction:  # after an error, or a failed COMMIT that SQLite did not undo itself
                        db.execute("ROLLBACK")
                return False

        return _Tx()

    def close(self) -> None:
        """Save the shortlist index if it was rebuilt (or lags the images table too much), and release the
        index's memory (or map) and the write lock."""
        try:
            if self._connection is not None and not self.readonly and self._index_unsaved:
                self._save_faiss_index()
        except OSError as e:  # a cache: what the images table holds is safe, and the next user catches up
            log.warning("%s: the search index could not be saved (%s); it is brought up to date when next used",
                        self.path, _reason(e))
        finally:
            self._index = self._asmk = None
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._write_lock is not None:
                self._write_lock.release()
                self._write_lock = None

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_names_the_file
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    # ---- writing ----

    def _require_writable(self) -> None:
        if self.readonly:
            raise DatabaseError(f"{self.path}: opened read-only")

    @_names_the_file
    def add(self, paths: Iterable[str | os.PathLike], *, progress: bool | None = None,
            boxes: Mapping[str, ArrayLike] | None = None) -> AddReport:
        """Add image files (and the images under folders); already indexed content is skipped.

        Each image is committed on its own, so an interrupted call keeps what it finished and a new call
        resumes. Images that cannot be decoded are reported in ``AddReport.failed`` (path, reason) and
        the batch goes on.

        Args:
            progress: show a progress bar (default: when stderr is a terminal).
            boxes: for ``representation="rasmk"``: regions ``(R, 4)`` ``(x0, y0, x1, y1)`` in original
                pixels per path (as given), for example from an object detector, used instead of the
                region proposer for those images (include the whole image as a box to keep it). Other
                boxes for an image already indexed under that path replace its regions (the image is
                indexed again); boxes for paths not being added are reported in a warning.
        """
        self._require_writable()
        boxes = self._check_boxes(boxes)
        report = AddReport()
        files = expand_image_paths(paths)
        unused = sorted(set(boxes) - set(files))
        if unused:  # most likely spelt otherwise than the paths given
            log.warning("boxes given for %d paths that are not being added, for example %r; they are not used",
                        len(unused), unused[0])
        show = sys.stderr.isatty() if progress is None else progress
        for path in tqdm(files, desc="indexing", unit="img", disable=not show):
            if not _storable(path):
                report.failed.append((path, "the file name is not valid UTF-8, which the database stores paths "
                                            "as (rename the file)"))
                log.info("%r: file name not valid UTF-8", path)
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                report.failed.append((path, f"cannot read: {e.strerror or e}"))
                log.info("%s: cannot read (%s)", path, e)
                continue
            digest = hashlib.sha256(data).hexdigest()
            stored = self._db.execute("SELECT id, path FROM images WHERE content_hash = ?", (digest,)).fetchone()
            if stored and not (stored[1] == path and self._other_boxes(stored[0], boxes.get(path))):
                report.skipped.append(path)
                report.same_as[path] = stored[1]
                stale = self._ids_under(path, other_than=digest)  # the file now holds what another path holds
                if stale:
                    with self._transaction():
                        self._delete_images(stale)
                        self._set_meta(generation=self._meta_int("generation") + 1)
                    report.replaced.append(path)
                continue
            try:
                image = decode_bytes(data, path, max_pixels=self.feature_config.max_pixels)
            except ImageError as e:
                report.failed.append((path, e.reason))
                log.info("skipped %s", e)
                continue
            try:
                removed = self._commit_image(path, digest, image, boxes.get(path))
            except (OSError, sqlite3.OperationalError) as e:  # a full disk, say
                raise DatabaseError(f"{self.path}: cannot store {path} ({_reason(e)}); the {len(report.added)} "
                                    "images added before it are kept, and adding again resumes") from e
            if removed:
                report.replaced.append(path)
            report.added.append(path)
        if report.added or report.replaced:
            try:
                self._save_index()
            except OSError as e:
                raise DatabaseError(f"{self.path}: {len(report.added)} images were added, but the search index "
                                    f"could not be saved ({_reason(e)}); it is brought up to date from them when "
                                    "next used") from e
        log.info("added %d, skipped %d, failed %d", len(report.added), len(report.skipped), len(report.failed))
        return report

    def _check_boxes(self, boxes: Mapping[str, ArrayLike] | None) -> dict[str, np.ndarray]:
        if not boxes:
            return {}
        if self.representation != "rasmk":
            raise DatabaseError(f"{self.path}: region boxes are used by representation='rasmk' only, "
                                f"this database uses {self.representation!r}")
        checked = {}
        for path, value in boxes.items():
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                array = np.zeros((0, 0))
            if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0 or not np.isfinite(array).all() \
                    or (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
                raise DatabaseError(f"{path}: boxes must be a non-empty (R, 4) array of finite (x0, y0, x1, y1) with x0 <= x1 "
                                 f"and y0 <= y1, got shape {array.shape}")
            checked[os.fspath(path)] = array
        return checked

    def _commit_image(self, path: str, digest: str, image, boxes: np.ndarray | None = None) -> int:
        """Store one image; in the same transaction, remove what was stored under ``path`` before (a file
        changed since it was added, or given other boxes). Returns how many such entries were removed."""
        features = FEATURES.get(self.features).run(image, self.feature_config)
        q = quantize(features.descriptors)
        feature_row, global_rows = self._meta_int("feature_rows"), self._meta_int("global_rows")
        # the record's checksum (store.image_checksum), chained over the bytes each append writes
        checksum = self._arrays["keypoints"].append(feature_row, features.keypoints)
        checksum = self._arrays["descriptors"].append(feature_row, q.values, checksum)
        global_row = -1  # ASMK databases shortlist with the local features alone
        if self.representation == "global":
            global_row, global_rows = global_rows, global_rows + 1
            checksum = self._arrays["global"].append(
                global_row, self._descriptor.describe(image, features).astype(np.float16), checksum)
        with self._transaction():
            stale = self._delete_images(self._ids_under(path))  # a changed file, or the same with other boxes
            self._db.execute(
                "INSERT INTO images (path, content_hash, width, height, num_features, feature_row, descriptor_scale,"
                " working_scale, global_row, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, digest, image.width, image.height, len(features), feature_row, q.scale,
                 features.working_scale, global_row, checksum))
            if boxes is not None:
                image_id = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                self._db.executemany("INSERT INTO regions VALUES (?, ?, ?, ?, ?)",
                                     [(image_id, *map(float, box)) for box in boxes])
            self._set_meta(feature_rows=feature_row + len(features), global_rows=global_rows,
                           generation=self._meta_int("generation") + 1)
        return stale

    def _other_boxes(self, image_id: int, boxes: np.ndarray | None) -> bool:
        """``boxes`` were given and differ from the regions stored for the image."""
        stored = self._boxes_of(image_id)
        return boxes is not None and (stored is None or not np.array_equal(stored, boxes.astype(np.float32)))

    def _ids_under(self, path: str, other_than: str | None = None) -> list[int]:
        """Ids of the images stored under ``path``, except the one whose content hash is ``other_than``."""
        return [i for (i,) in self._db.execute("SELECT id FROM images WHERE path = ? AND content_hash IS NOT ?",
                                                (path, other_than)).fetchall()]

    def _delete_images(self, image_ids: Iterable[int]) -> int:
        """Inside a transaction: delete images' rows (their arrays' rows stay, unreferenced); the caller
        moves the generation on. Returns how many were deleted."""
        deleted = 0
        for image_id in image_ids:
            self._db.execute("DELETE FROM regions WHERE image_id = ?", (image_id,))
            deleted += self._db.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount
        return deleted

    def _set_meta(self, **values) -> None:
        self._db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(str(v), k) for k, v in values.items()])

    @_names_the_file
    def remove(self, items: Iterable[str | int]) -> int:
        """Remove images by path (as added) or id; returns how many were removed."""
        self._require_writable()
        removed = 0
        with self._transaction():
            for item in items:
                if isinstance(item, (int, np.integer)):
                    column = "id"
                elif _storable(item):
                    column = "path"
                else:
                    continue  # no stored path can be spelt so
                removed += self._delete_images(
                    i for (i,) in self._db.execute(f"SELECT id FROM images WHERE {column} = ?", (item,)).fetchall())
            if removed:
                self._set_meta(generation=self._meta_int("generation") + 1)
        if removed:
            self._save_index()
        return removed

    # ---- the shortlist index ----

    def _rows(self, where: str = "", args: tuple = ()) -> list[ImageRecord]:
        """Image records in id order, checksum None for images stored without one."""
        if not self._checksums_known:  # the column, once there, stays; a writer may add it while we read
            self._checksums_known = self.keeps_checksums
        checksum = "checksum" if self._checksums_known else "NULL"
        rows = self._db.execute(
            f"SELECT id, path, {RECORD_COLUMNS}, {checksum} FROM images {where} ORDER BY id", args).fetchall()
        if any(None in row[:9] for row in rows):  # those columns are NOT NULL: a damaged record reads as NULL
            raise sqlite3.DatabaseError("a row of the images table holds NULL where a value must be: the file is damaged")
        return [ImageRecord._make(row) for row in rows]

    def _global_vectors(self, rows: list[ImageRecord]) -> np.ndarray:
        """``(len(rows), D) float32`` stored global descriptors of image rows, for the shortlist index.

        One that is not of unit length (or zero) is damaged, and is given as zeros with a warning: a bit flipped
        in a float16's exponent (0.09 -> 5720) otherwise put its image first in every shortlist."""
        if not rows:
            return np.zeros((0, self.global_dim), np.float32)
        global_rows = np.array([r.global_row for r in rows], np.int64)
        stored = self._arrays["global"].read(0, int(global_rows.max()) + 1)
        vectors = np.asarray(stored[global_rows], np.float32)
        lengths = np.linalg.norm(vectors, axis=1)
        for i in np.flatnonzero(off_unit_length(lengths)):
            vectors[i] = 0
            self._warn_damaged(rows[i], f"its stored global descriptor has length {lengths[i]:g} where 1 was written",
                               "It scores 0 in every shortlist")
        return vectors

    def _build_index(self, rows: list[ImageRecord]) -> ShortlistIndex:
        index = ShortlistIndex(self.global_dim, self.index_kind, whiten=self.whitening)
        index.build(self._global_vectors(rows), np.array([r.image_id for r in rows], np.int64))
        return index

    def _current_index(self) -> ShortlistIndex:
        """The shortlist index over the images table as it is now: the one in memory or the saved one brought
        up to date (new images added, removed ones taken out), rebuilt when that cannot be done in place."""
        generation = self._meta_int("generation")
        if self._index is not None and self._index_generation == generation:
            return self._index
        wanted = np.array(self._db.execute("SELECT id FROM images ORDER BY id").fetchall(), np.int64).reshape(-1)
        # a reader maps the file again once a writer has replaced it, rather than keep the old one's disk
        # space and an ever longer list of vectors beside it; a writer's own index is newer than the file
        index: ShortlistIndex | None
        if self._index is not None and not (self.readonly and self._index.file_replaced()):
            index = self._index
        else:  # an empty index is falsy, hence the explicit None tests
            index, self._index_unsaved = self._load_saved_index(), 0.0
        if index is None or not self._update_index(index, wanted):
            index, self._index_unsaved = self._build_index(self._rows()), float("inf")
        self._index, self._index_generation = index, generation
        return index

    def _update_index(self, index: ShortlistIndex, wanted: np.ndarray) -> bool:
        """Bring ``index`` to hold exactly the images of the ascending ``wanted`` ids; False when it has to be
        rebuilt instead. Image ids are never reused and grow (so what the index lacks is at the end of the
        table), and an image's vector never changes."""
        if index.wants_rebuild(len(wanted)):
            return False
        held = index.ids()
        if np.array_equal(held, wanted):  # the common case: the file is up to date
            return True
        gone = np.setdiff1d(held, wanted, assume_unique=True)
        index.remove(gone)  # hidden from search, not copied or rebuilt
        new = set(np.setdiff1d(wanted, held, assume_unique=True).tolist())
        added = [r for r in self._rows("WHERE id >= ?", (min(new),)) if r.image_id in new] if new else []
        index.add(self._global_vectors(added), np.array([r.image_id for r in added], np.int64))
        self._index_unsaved += len(gone) + len(added)
        return True

    def _load_saved_index(self) -> ShortlistIndex | None:
        path = self.path / INDEX_FILE
        if not path.exists():
            return None
        built_with = self._db.execute("SELECT value FROM meta WHERE key = 'index_built_with'").fetchone()
        try:
            # mapped: it opens in milliseconds, processes share its pages, and what is added is kept beside it
            return ShortlistIndex.load(path, self.global_dim, self.index_kind,
                                       None if built_with is None else int(built_with[0]), whiten=self.whitening,
                                       mapped=True)
        except (OSError, RuntimeError, ValueError) as e:
            log.warning("%s: unreadable, rebuilding (%s)", path, e)
            return None

    def _save_faiss_index(self) -> None:
        """Write the faiss index (atomically) and how many vectors it was built with, when it was rebuilt or
        lags the saved file by more than ``SAVED_INDEX_MAX_LAG``. An index that would keep removed vectors
        in the file (``lsh`` and ``hnsw`` cannot drop them) is rebuilt first."""
        index = self._current_index()
        if self._index_unsaved > SAVED_INDEX_MAX_LAG * max(len(index), 1):
            if index.hidden_after_save:
                index = self._index = self._build_index(self._rows())
            self._save_recorded(INDEX_FILE_CRC, self.path / INDEX_FILE, index.save,
                                index_built_with=index.built_with)
            self._index_unsaved = 0.0

    def _save_recorded(self, crc_key: str, path: Path, save: Callable[[Path], None], **meta) -> None:
        """``save(path)``, then record the file's CRC-32 under ``crc_key`` (and ``meta``) for :meth:`check`.
        The old CRC is forgotten first, so that a check that sees the same CRC before and after reading the
        file never compares a new file with an old CRC (see ``check._saved_file_damage``)."""
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key = ?", (crc_key,))
        save(path)
        meta[crc_key] = file_crc32(path)  # read back from the page cache: 0.3 s for 1.3 GB (100k images)
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])

    def _save_index(self) -> None:
        """Bring the index caches up to date after a change: the faiss index (see
        :meth:`_save_faiss_index`), or for ASMK representations the codebook and inverted file."""
        if self.representation == "global":
            self._save_faiss_index()
        else:
            self._maybe_retrain_codebook()
            inverted_file = self._current_asmk()
            if inverted_file is not None:
                inverted_file.save(self.path / ASMK_FILE)

    # ---- the ASMK codebook and inverted file ----

    def _stored_descriptors(self, row: ImageRecord) -> np.ndarray:
        """``(N, D) float32`` descriptors of an image as stored (int8 values / scale)."""
        descriptors = self._arrays["descriptors"].read(row.feature_row, row.num_features)
        return QuantizedDescriptors(descriptors, row.descriptor_scale).dequantized()

    def _codebook_version(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'codebook_descriptors'").fetchone()
        return "none" if row is None else row[0]

    def _current_codebook(self) -> Codebook | None:
        """The codebook in the folder (None when none was trained yet), reloaded when it changed."""
        version = self._codebook_version()
        if self._codebook is None or self._codebook_loaded != version:
            path = self.path / CODEBOOK_FILE
            if not path.exists():
                return None
            try:
                self._codebook = Codebook.load(path)
            except ValueError as e:
                raise DatabaseError(str(e)) from None
            self._codebook_loaded = version
            self._asmk = None
        return self._codebook

    @_names_the_file
    def train_codebook(self, size: int | None = None) -> Codebook:
        """Train the visual codebook on the stored descriptors and rebuild the inverted file with it.

        k-means (faiss, ``asmk_config.seed``) over at most ``asmk_config.codebook_sample`` descriptors drawn
        evenly from all images (seeded). ``size`` defaults to ``asmk_config.codebook_size``; fewer words are
        made when there are fewer than 16 descriptors per word.

        :meth:`add` and :meth:`remove` call it when the database has no codebook, and again each time the
        stored descriptors have doubled since the last training, until one was trained on
        ``codebook_sample`` descriptors: a codebook fitted to a few images splits the descriptors of one
        scene point between words and centres words on them, which measurably hurts those images
        (multiview_dev: 0.28 mAP for the 30 images a codebook was trained on alone, 0.76 once trained on
        all 79). Call it yourself after a large collection has changed a lot.
        """
        self._require_writable()
        rows = self._rows()
        total = sum(r.num_features for r in rows)
        if total == 0:
            raise DatabaseError(f"{self.path}: no stored descriptors to train a codebook on")
        keep = min(1.0, self.asmk_config.codebook_sample / total)
        rng = np.random.default_rng(self.asmk_config.seed)
        sample = []
        for row in rows:
            descriptors = self._stored_descriptors(row)
            sample.append(descriptors if keep >= 1.0 else descriptors[rng.random(len(descriptors)) < keep])
        codebook = train_codebook(np.concatenate(sample), size or self.asmk_config.codebook_size,
                                  seed=self.asmk_config.seed)
        (self.path / ASMK_FILE).unlink(missing_ok=True)
        self._save_recorded(CODEBOOK_FILE_CRC, self.path / CODEBOOK_FILE, codebook.save, codebook_descriptors=total)
        log.info("trained a %d-word codebook on %d descriptors", codebook.size, sum(len(s) for s in sample))
        # the saved words and graph are these: keep them rather than read them back
        self._codebook, self._codebook_loaded, self._asmk = codebook, self._codebook_version(), None
        return codebook

    def _maybe_retrain_codebook(self) -> None:
        trained_on = int(self._codebook_version())
        total = int(self._db.execute("SELECT COALESCE(SUM(num_features), 0) FROM images").fetchone()[0])
        codebook = self._current_codebook()
        if total == 0:
            return
        growing = 0 <= trained_on < self.asmk_config.codebook_sample and total >= 2 * trained_on
        if codebook is None or growing:
            self.train_codebook()

    def _boxes_of(self, image_id: int) -> np.ndarray | None:
        rows = self._db.execute("SELECT x0, y0, x1, y1 FROM regions WHERE image_id = ?", (image_id,)).fetchall()
        return np.array(rows, np.float32) if rows else None

    def _aggregated(self, image: Candidate, codebook: Codebook):
        return describe_database_image(
            image.descriptors.dequantized(), image.keypoints, image.image_size, codebook, self.asmk_config,
            regional=self.representation == "rasmk",
            boxes=self._boxes_of(image.image_id) if self.representation == "rasmk" else None)

    def _current_asmk(self) -> InvertedFile | None:
        """The inverted file holding exactly the images in the table (None before a codebook exists)."""
        generation = self._meta_int("generation")
        codebook = self._current_codebook()
        if codebook is None:
            return None
        if self._asmk is not None and self._asmk_generation == generation:
            return self._asmk
        inverted_file = self._asmk or self._load_saved_asmk(codebook)
        rows = self._rows()
        held = set(inverted_file.image_ids().tolist())
        for gone in held - {r.image_id for r in rows}:
            inverted_file.remove(gone)
        for image in self._sound_candidates(row for row in rows if row.image_id not in held):  # damaged ones left out
            inverted_file.add(image.image_id, self._aggregated(image, codebook))
        self._asmk, self._asmk_generation = inverted_file, generation
        return inverted_file

    def _load_saved_asmk(self, codebook: Codebook) -> InvertedFile:
        path = self.path / ASMK_FILE
        empty = InvertedFile(codebook.size, codebook.dim, self.asmk_config.binary)
        if not path.exists():
            return empty
        try:
            saved = InvertedFile.load(path)
        except ValueError as e:
            log.warning("%s; rebuilding it", e)
            return empty
        if (saved.num_words, saved.dim, saved.binary) != (empty.num_words, empty.dim, empty.binary):
            log.warning("%s: made with another codebook; rebuilding it", path)
            return empty
        return saved

    # ---- reading ----

    def _candidate(self, row: ImageRecord) -> Candidate:
        """The image's stored features; rows that differ from their recorded checksum raise DatabaseError rather
        than be matched as if they were the image's."""
        candidate, damage = self._read_candidate(row)
        if damage:
            raise DatabaseError(self._damaged(row, damage))
        return candidate

    def _read_candidate(self, row: ImageRecord) -> tuple[Candidate, str]:
        """The image's stored features, and why they are damaged ("" when they match the checksum recorded when
        the image was added, or none was)."""
        keypoints, descriptors, stored_global = self._stored_rows(row)
        candidate = Candidate(image_id=row.image_id, path=row.path, keypoints=keypoints,
                              descriptors=QuantizedDescriptors(np.array(descriptors), row.descriptor_scale),
                              working_scale=row.working_scale, image_size=(row.width, row.height))
        if row.checksum is None:
            return candidate, ""
        return candidate, checksum_mismatch(keypoints, descriptors, stored_global, row.checksum)

    def _stored_rows(self, row: ImageRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Memory-mapped views of the image's rows as the record of ``row`` locates them: ``(N, 2) float32``
        keypoints, ``(N, D) int8`` descriptors and the ``(1, G) float16`` global descriptor (None where the
        database keeps none)."""
        n, feature_row, global_row = row.num_features, row.feature_row, row.global_row
        keypoints = self._arrays["keypoints"].read(feature_row, n)
        descriptors = self._arrays["descriptors"].read(feature_row, n)
        return keypoints, descriptors, self._arrays["global"].read(global_row, 1) if global_row >= 0 else None

    def _damaged(self, row: ImageRecord, reason: str) -> str:
        """What to say of the image of ``row`` found damaged when read: what is wrong, and how to mend it."""
        return (f"{self.path}: image {row.image_id} ({row.path}) is damaged: {reason}. Remove it "
                f"({remove_command(self.path, [row.image_id])}) and add its file again; localmatch index check lists "
                "every damaged image")

    def _warn_damaged(self, row: ImageRecord, reason: str, consequence: str) -> None:
        """Log :meth:`_damaged` and its ``consequence`` once per image while the database is open (searches read
        the same images again)."""
        if row.image_id not in self._damage_reported:
            self._damage_reported.add(row.image_id)
            log.warning("%s. %s", self._damaged(row, reason), consequence)

    def _sound_candidates(self, rows: Iterable[ImageRecord]) -> list[Candidate]:
        """The candidates of ``rows`` whose stored features are intact, in order; each damaged image is left out
        and logged (once per image while the database is open), so one bad image cannot fail every search. A
        file cut short still raises DatabaseError: that is the whole database's damage."""
        candidates = []
        for row in rows:
            candidate, damage = self._read_candidate(row)
            if damage:
                self._warn_damaged(row, damage, "It is left out of searches")
            else:
                candidates.append(candidate)
        return candidates

    @_names_the_file
    def images(self) -> list[tuple[int, str]]:
        """``(id, path)`` of every image, in the order they were added."""
        return [(r.image_id, r.path) for r in self._rows()]

    @_names_the_file
    def global_of(self, image_id: int) -> np.ndarray:
        """The stored ``(D,) float32`` global descriptor of an image (``representation="global"`` only)."""
        self._require_global("global descriptors")
        rows = self._rows("WHERE id = ?", (int(image_id),))
        if not rows:
            raise KeyError(image_id)
        return self._arrays["global"].read(rows[0].global_row, 1)[0].astype(np.float32)

    def _require_global(self, what: str) -> None:
        if self.representation != "global":
            raise DatabaseError(f"{self.path}: this database shortlists with {self.representation!r} and keeps no "
                                f"{what}; use shortlist_for() or search()")

    @_names_the_file
    def features_of(self, image_id: int) -> Candidate:
        """An image's stored features. Raises KeyError for an id not in the database, and DatabaseError when its
        stored rows differ from what was written (see :meth:`check`)."""
        rows = self._rows("WHERE id = ?", (int(image_id),))
        if not rows:
            raise KeyError(image_id)
        return self._candidate(rows[0])

    @_names_the_file
    def candidates(self, image_ids: Iterable[int]) -> list[Candidate]:
        """The stored features of these images, in the order given, for re-ranking them yourself
        (:func:`~localmatch.rerank.rerank_candidates`, :func:`~localmatch.rerank.verify_candidates`). Ids not in
        the database (removed since a shortlist gave them) are left out, and so are images whose stored rows
        differ from what was written, with a warning logged once per image (:meth:`check` lists them all)."""
        ids = [int(i) for i in image_ids]
        by_id = self._rows_for(np.array(ids, np.int64))
        return self._sound_candidates(by_id[i] for i in ids if i in by_id)

    def query_features(self, query: ImageSource | Features, *,
                       with_global: bool = True) -> tuple[Features, np.ndarray | None]:
        """The query's local features and global descriptor (None when not ``with_global``), made the way
        the database's were."""
        if isinstance(query, Features):
            if query.extractor != self.extractor:
                raise ConfigError(f"{self.path}: the query's {query.extractor} features cannot be searched among this "
                                  f"database's {self.extractor} features")
            if with_global and self._descriptor.needs_pixels:
                raise ConfigError(f"{self.path}: its {self.global_descriptor_name!r} shortlist describes the image's "
                                  "pixels: search with the image, not its features")
            return query, self._descriptor.describe(None, query) if with_global else None
        return self._describe_query(load_image(query, max_pixels=self.feature_config.max_pixels), with_global,
                                    self.feature_config)

    def _describe_query(self, image: Image, with_global: bool, config: Config) -> tuple[Features, np.ndarray | None]:
        features = FEATURES.get(self.features).run(image, config)
        return features, self._descriptor.describe(image, features) if with_global else None

    def _part_config(self, whole: Image, part: Image) -> Config:
        """The feature config that describes ``part`` of ``whole`` at the scale ``whole`` itself is described at
        (``max_side`` shrunk in proportion), as the database's images are: a crop of a large photograph
        described at its own resolution has finer features than the database keeps (multiview_dev, query
        boxes of half of each side: ASMK mAP 0.751 against 0.737, BENCHMARKS.md)."""
        scale = working_scale(whole.size, self.feature_config.max_side)
        if scale == 1:
            return self.feature_config
        return self.feature_config.replace(max_side=max(1, round(max(part.size) * scale)))

    @_names_the_file
    def search(self, query: ImageSource | Features, k: int = 10, *, shortlist: int = 100, rerank: bool = True,
               matcher: str | None = None, matcher_config: dict | None = None,
               matcher_top: int | None = DEFAULT_MATCHER_TOP, geometry: str = DEFAULT_RERANK_GEOMETRY,
               backend: str = "opencv", min_inliers: int = DEFAULT_MIN_INLIERS,
               ransac: RansacConfig | dict | None = None, threads: int | None = None,
               box: ArrayLike | None = None) -> list[Hit]:
        """The ``k`` database images most likely to show what the query shows.

        The global index returns ``shortlist`` candidates; with ``rerank`` each is matched against the
        query with its stored features and verified; verified candidates (``num_inliers >= min_inliers``)
        come first by inliers (ties by global score), then the others by global score. ``matcher`` picks the
        re-ranking matcher: ``"nn"`` (batched), ``"lightglue"``/``"lighterglue"`` for learned features, or
        ``"loftr"`` (dense; re-reads each candidate's image, so every pair costs a network pass); by default
        the features' own (:func:`~localmatch.matching.default_matcher`): ``"nn"`` for SIFT, the LightGlue
        trained for the database's learned features. A matcher other than ``"nn"`` verifies only the first
        ``matcher_top`` candidates of the list that ``"nn"`` re-ranked first (None: every candidate, at
        0.2-1 s per pair on 2 CPU cores for LightGlue; see :func:`~localmatch.rerank.rerank_candidates`).
        Each candidate's stored rows are compared with the checksum recorded when it was added before they are
        matched: a damaged candidate is left out of the hits, and a warning names it (once per image while the
        database is open; :meth:`check` finds them all).

        ``box`` ``(x0, y0, x1, y1)`` in the query's original pixels searches with that part of the query image
        alone (an object in a cluttered photo; see :func:`~localmatch.io.crop` for the convention), described
        at the scale the whole image would be. The hits' matrices still map the whole query image's original
        pixels to the database image's.
        """
        require_whole(k, "k (results per query)", 1)
        require_flag(rerank, "rerank")
        if rerank:
            require_whole(shortlist, "shortlist (candidates re-ranked)", 1)
            check_min_inliers(min_inliers)
            check_matcher_top(matcher_top)
        matcher = matcher or default_matcher(self.features)
        image = None if isinstance(query, Features) else load_image(query, max_pixels=self.feature_config.max_pixels)
        # ASMK databases shortlist with the local features alone: no global descriptor on their query path
        with_global = self.representation == "global"
        offset = None
        if box is None:
            features, vector = self.query_features(query if image is None else image, with_global=with_global)
        elif image is None:
            raise ConfigError(f"{self.path}: a box crops the query image: search with the image, not its features")
        else:
            whole = image
            image, offset = crop(whole, box)
            features, vector = self._describe_query(image, with_global, self._part_config(whole, image))
        ids, scores = self.shortlist_for(features, vector, max(k, shortlist if rerank else k))
        by_id = self._rows_for(ids)
        if len(by_id) < len(ids):
            keep = np.array([int(i) in by_id for i in ids], bool)
            ids, scores = ids[keep], scores[keep]
        if not rerank:
            return [Hit(by_id[i][1], int(i), rank + 1, float(s), float(s)) for rank, (i, s) in enumerate(zip(ids[:k], scores))]
        candidates = self._sound_candidates(by_id[i] for i in ids)
        if len(candidates) < len(ids):  # damaged images were left out
            score_of = dict(zip(ids.tolist(), scores.tolist()))
            scores = np.array([score_of[c.image_id] for c in candidates], np.float32)
        hits = rerank_candidates(features, candidates, scores, matcher=matcher, matcher_top=matcher_top,
                                 matcher_config=matcher_config, min_inliers=min_inliers, query_image=image,
                                 geometry=geometry, backend=backend, ransac=ransac, threads=threads)[:k]
        return hits if offset is None else [_from_crop(hit, offset) for hit in hits]

    @_names_the_file
    def shortlist(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images whose global descriptors are nearest to ``vector``: ``(ids, scores)``, best first
        (``representation="global"`` only; :meth:`shortlist_for` takes any)."""
        self._require_global("global index")
        return self._current_index().search(vector, k)

    @_names_the_file
    def shortlist_for(self, features: Features, vector: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best candidates by the database's representation: ``(ids, scores)``, best first.

        ``global``: :meth:`shortlist` with ``vector``; ``asmk``/``rasmk``: the ASMK* score of the query's
        local ``features`` (multiple assignment, see ``asmk_config``) against the inverted file. An image whose score
        is not positive (score 0: it shares no visual word with the query) is no candidate, so there may be
        fewer than ``k``, and none for a query without features.
        """
        if self.representation == "global":
            if vector is None:
                raise ConfigError(f"{self.path}: a global shortlist needs the query's global descriptor, not None")
            return self.shortlist(vector, k)
        inverted_file, codebook = self._current_asmk(), self._current_codebook()
        if inverted_file is None or codebook is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cfg = self.asmk_config
        query = describe_query(np.asarray(features.descriptors, np.float32), codebook, cfg)
        ids, scores = inverted_file.search(query, k, alpha=cfg.alpha, threshold=cfg.threshold, idf=cfg.idf)
        shared = scores > 0
        return ids[shared], scores[shared]

    def _rows_for(self, ids: np.ndarray) -> dict[int, ImageRecord]:
        """The images table's row of each id the shortlist gave, by id. An id without one (removed by a writer
        since the shortlist was searched, or a damaged row) is left out."""
        by_id: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), _MOST_SQL_VARIABLES):
            chunk = tuple(int(i) for i in ids[start:start + _MOST_SQL_VARIABLES])
            marks = ",".join("?" * len(chunk))
            by_id.update((r.image_id, r) for r in self._rows(f"WHERE id IN ({marks})", chunk))
        return by_id

    @_names_the_file
    def check(self, *, quick: bool = False, progress: bool | None = None) -> CheckReport:
        """Look for damage that opening and searching cannot see, such as a bit flipped in an image's stored
        features, and change nothing (:mod:`localmatch.database.check` lists what is checked).

        Every image's rows are read and compared with the CRC-32 recorded when it was added: about as long as
        reading the arrays' files. ``quick`` checks the records and files alone. Images in
        ``CheckReport.damaged`` are best removed (:meth:`remove`, by id) and their files added again, which
        :meth:`repair` does.

        Args:
            progress: show a progress bar (default: when stderr is a terminal).
        """
        require_flag(quick, "quick")
        return check_database(self, quick=quick, progress=sys.stderr.isatty() if progress is None else progress)

    @_names_the_file
    def repair(self, *, progress: bool | None = None) -> RepairReport:
        """Check fully, then index each damaged image again from its file, in one transaction per image that
        stores it anew and deletes the damaged entry (so it gets a new id; :mod:`localmatch.database.repair`).
        Images whose file is gone or no longer decodes are left as they are and listed in
        ``RepairReport.left``; damage that is not one image's (``RepairReport.check.problems``) is not mended.

        Args:
            progress: show the check's progress bar (default: when stderr is a terminal).
        """
        self._require_writable()
        return repair_database(self, progress=sys.stderr.isatty() if progress is None else progress)

    @_names_the_file
    def info(self) -> dict:
        """Images, local features and bytes on disk (total and per image)."""
        n = len(self)
        num_features = int(self._db.execute("SELECT COALESCE(SUM(num_features), 0) FROM images").fetchone()[0])
        files = [self.path / DB_FILE, self.path / INDEX_FILE, self.path / CODEBOOK_FILE,
                 graph_path(self.path / CODEBOOK_FILE), self.path / ASMK_FILE, *[a.path for a in self._arrays.values()]]
        files += [self.path / (DB_FILE + "-wal")]
        total = sum(f.stat().st_size for f in files if f.exists())
        return {"path": str(self.path), "images": n, "features": num_features, "bytes": total,
                "bytes_per_image": total / n if n else 0.0, "local_features": self.features,
                "format_version": FORMAT_VERSION, "representation": self.representation,
                **(self._global_info() if self.representation == "global" else self._asmk_info(n))}

    def _global_info(self) -> dict:
        info = {"global_descriptor": self.global_descriptor_name, "global_dim": self.global_dim,
                "index": self.index_kind, "whitening": self.whitening}
        if self.whitening:  # what was learned: 0 below MIN_WHITENING_VECTORS images, at most one fewer than held
            info["whitened_dims"] = self._current_index().whitened_dims
        return info

    def _asmk_info(self, n: int) -> dict:
        codebook = self._current_codebook()
        path = self.path / ASMK_FILE
        size = path.stat().st_size if path.exists() else 0
        return {"asmk_config": self.asmk_config.to_dict(), "codebook_words": codebook.size if codebook else 0,
                "asmk_bytes": size, "asmk_bytes_per_image": size / n if n else 0.0}
