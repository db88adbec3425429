"""Checking a database folder for damage: :meth:`Database.check` and ``localmatch index check``.

Opening a database and searching it already refuse what they can see is broken (a damaged SQLite file, an
array file cut short), and re-ranking leaves out a candidate whose rows differ from their checksum. What
they cannot see is damage in the images no search has re-ranked yet (a bit flipped inside an image's rows of
``keypoints.f32``, ``descriptors.i8`` or ``global.f16`` by a failing disk or a bad copy), or in what they
never read (a global descriptor serves the shortlist from the faiss index built from it). A check reads
everything once and reports, without changing anything:

- SQLite's own consistency (``PRAGMA integrity_check``; ``quick_check`` when ``quick``);
- that each array file holds the rows the database committed;
- each image's record: a size, scales, row ranges inside what was committed, no rows shared with another
  image, finite region boxes;
- unless ``quick``, each image's rows against the CRC-32 recorded when it was added. Images added before
  session 28 have none; their keypoints and global descriptor are checked for values no extractor makes
  (keypoints not finite or outside the image, a global descriptor not of unit length);
- the files the search uses beside them: the codebook (which a search cannot do without), and the caches
  (faiss index, inverted file), which are rebuilt when next used and so, when unreadable, are reported as
  notes, not damage; unless ``quick``, the faiss index and the codebook are compared with the CRC-32 recorded
  when they were written (since session 29), since a readable one that differs would be used as it is (the
  inverted file, a zip, carries CRCs of its own that loading it checks).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from localmatch.database.store import RECORD_COLUMNS, ImageRecord, checksum_mismatch
from localmatch.files import file_crc32
from localmatch.shortlist.asmk import Codebook, InvertedFile
from localmatch.shortlist.index import ShortlistIndex

if TYPE_CHECKING:
    from localmatch.database import Database

#: how far (pixels) a stored keypoint may lie outside its image, whose pixel centres run from 0 to size - 1
KEYPOINT_MARGIN = 1.0
#: how far a stored global descriptor's length may be from 1 (they are unit vectors, or zero for an image with
#: nothing to describe; float16 storage moves the length by about 1e-5)
GLOBAL_NORM_TOLERANCE = 1e-2


@dataclass(frozen=True)
class DamagedImage:
    """An image whose stored record or rows are damaged: remove it (by id) and add its file again, or let
    :meth:`Database.repair` do that."""

    image_id: int
    path: str
    reason: str


@dataclass
class CheckReport:
    """What :meth:`Database.check` found.

    Attributes:
        images: images in the database.
        checksummed: images whose rows were compared with their recorded CRC-32 (0 with ``quick``).
        damaged: images whose record or rows are damaged (search would use wrong features for them).
        problems: damage that is not one image's: SQLite's own check, an array file cut short, an unreadable
            codebook.
        notes: what is not damage and needs nothing done: caches rebuilt when next used, images stored
            without a checksum.
    """

    path: str
    images: int = 0
    checksummed: int = 0
    damaged: list[DamagedImage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def check_database(db: "Database", *, quick: bool = False, progress: bool = False) -> CheckReport:
    """Check ``db`` (see the module's docstring) in one read transaction, so that a writer adding images
    meanwhile changes nothing that is checked."""
    report = CheckReport(str(db.path))
    connection = db._db
    connection.execute("BEGIN")
    try:
        _check_sqlite(connection, quick, report)
        try:
            rows = _image_rows(db)
        except sqlite3.DatabaseError as e:  # a malformed page: SQLite's own check has said where
            from localmatch.database import DB_FILE  # (it imports this module)

            report.problems.append(f"{db.path / DB_FILE}: the images table cannot be read ({e})")
            return report
        report.images = len(rows)
        committed = {"keypoints": db._meta_int("feature_rows"), "descriptors": db._meta_int("feature_rows"),
                     "global": db._meta_int("global_rows")}
        file_rows = {name: array.rows() for name, array in db._arrays.items()}  # once, not per image
        for name, array in db._arrays.items():
            if file_rows[name] < committed[name]:
                report.problems.append(f"{array.path}: holds {file_rows[name]} rows where the database committed "
                                       f"{committed[name]}: the file was cut short")
        damaged: dict[int, str] = {}
        _check_records(db, rows, committed, damaged)
        _check_regions(db, damaged, report)
        if not quick:
            for row in tqdm(rows, desc="checking", unit="img", disable=not progress):
                if row.image_id not in damaged:
                    reason = _check_rows(db, row, file_rows)
                    if reason:
                        damaged[row.image_id] = reason
            report.checksummed = sum(1 for row in rows if row.checksum is not None and row.image_id not in damaged)
            unchecksummed = sum(1 for row in rows if row.checksum is None)
            if unchecksummed:
                report.notes.append(f"{unchecksummed} images were added before localmatch kept checksums: only "
                                    "their values were checked")
        paths = {row.image_id: _printable(row.path or "") for row in rows}
        report.damaged = [DamagedImage(image_id, paths[image_id], reason) for image_id, reason in sorted(damaged.items())]
    finally:
        connection.execute("ROLLBACK")
    _check_search_files(db, quick, report)  # outside the snapshot: a writer may replace them while they are read
    return report


def _check_sqlite(connection: sqlite3.Connection, quick: bool, report: CheckReport) -> None:
    pragma = "quick_check" if quick else "integrity_check"
    found = [str(row[0]) for row in connection.execute(f"PRAGMA {pragma}(20)")]
    if found != ["ok"]:  # lines such as "Page 7 is never used", under a header naming the schema
        lines = [line for text in found for line in text.splitlines() if line and not line.startswith("***")]
        report.problems += [f"SQLite {pragma}: {line}" for line in lines]


def _image_rows(db: "Database") -> list[ImageRecord]:
    """Every image's record as stored, damaged ones included, checksum None where none was kept. A path's bytes
    that are not UTF-8 (damaged text, which reading it as text would raise on) come back as lone surrogates
    (``surrogateescape``)."""
    checksum = "checksum" if db.keeps_checksums else "NULL"
    rows = db._db.execute(
        f"SELECT id, CAST(path AS BLOB), {RECORD_COLUMNS}, {checksum} FROM images ORDER BY id").fetchall()
    # _make: a damaged record may hold None (or another type) in any field, the path included
    return [ImageRecord._make((row[0], stored_path(row[1]), *row[2:])) for row in rows]


def stored_path(blob: bytes | None) -> str | None:
    """A path column read ``CAST(path AS BLOB)``, as text; bytes that are not UTF-8 (damage) become lone
    surrogates (``surrogateescape``; see :func:`_undecodable`)."""
    return None if blob is None else bytes(blob).decode("utf-8", "surrogateescape")


def _undecodable(path: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in path)


def _printable(path: str) -> str:
    """``path`` with bytes that were not UTF-8 shown as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _check_records(db: "Database", rows: list[ImageRecord], committed: dict[str, int], damaged: dict[int, str]) -> None:
    """What each record says of its image, and that no two images' rows overlap."""
    for row in rows:
        image_id, path, width, height, n, feature_row, scale, working_scale, global_row, checksum = row
        if None in row[:9]:
            damaged[image_id] = "its record holds NULL where a value must be"
        elif _undecodable(path):
            damaged[image_id] = "its path is not UTF-8 text (damaged bytes)"
        elif not all(isinstance(v, int) for v in (width, height, n, feature_row, global_row)) or width < 1 or height < 1:
            damaged[image_id] = f"its record gives a size of {width} x {height} pixels"
        elif not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in (scale, working_scale)):
            damaged[image_id] = f"its record gives a descriptor scale of {scale} and a working scale of {working_scale}"
        elif n < 0 or feature_row < 0 or feature_row + n > committed["keypoints"]:
            damaged[image_id] = (f"its features lie at rows {feature_row} to {feature_row + n}, past the "
                                 f"{committed['keypoints']} the database committed")
        elif (db.representation == "global" or global_row != -1) and not 0 <= global_row < committed["global"]:
            damaged[image_id] = f"its global descriptor lies at row {global_row} of {committed['global']} committed"
        elif checksum is not None and not isinstance(checksum, int):
            damaged[image_id] = f"its record holds {checksum!r} where a checksum must be"
    valid = [row for row in rows if row.image_id not in damaged]
    _flag_shared_rows([(row.feature_row, row.feature_row + row.num_features, row.image_id)
                       for row in valid if row.num_features > 0], "feature", damaged)
    _flag_shared_rows([(row.global_row, row.global_row + 1, row.image_id)
                       for row in valid if row.global_row >= 0], "global descriptor", damaged)


def _flag_shared_rows(spans: list[tuple[int, int, int]], what: str, damaged: dict[int, str]) -> None:
    """Images whose ``[start, end)`` rows overlap another image's: every image has rows of its own."""
    reach, owner = -1, -1  # the furthest end of the spans before, and whose span it is
    for start, end, image_id in sorted(spans):
        if start < reach:
            damaged.setdefault(image_id, f"its {what} rows overlap those of image {owner}")
            damaged.setdefault(owner, f"its {what} rows overlap those of image {image_id}")
        if end > reach:
            reach, owner = end, image_id


def _check_regions(db: "Database", damaged: dict[int, str], report: CheckReport) -> None:
    rows = db._db.execute("SELECT image_id, image_id IN (SELECT id FROM images), x0, y0, x1, y1 FROM regions").fetchall()
    orphans = {image_id for image_id, known, *_ in rows if not known}
    if orphans:
        report.notes.append(f"the regions table holds boxes of {len(orphans)} images that are not in the database "
                            "(unused)")
    for image_id, known, *box in rows:
        if not known:
            continue
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
            damaged.setdefault(image_id, f"one of its region boxes is {box}")


def _check_rows(db: "Database", row: ImageRecord, file_rows: dict[str, int]) -> str:
    """Why the image's stored rows are damaged ("" when they are not); ``file_rows``: rows each array file
    holds."""
    image_id, _, width, height, n, feature_row, _, _, global_row, checksum = row
    if feature_row + n > min(file_rows["keypoints"], file_rows["descriptors"]) or \
            global_row >= 0 and global_row >= file_rows["global"]:
        return "its rows lie past the end of a file that was cut short"
    keypoints, descriptors, stored_global = db._stored_rows(row)
    if checksum is not None:
        return checksum_mismatch(keypoints, descriptors, stored_global, checksum)
    if not np.isfinite(keypoints).all():
        return "keypoints that are not finite numbers"
    x, y = keypoints[:, 0], keypoints[:, 1]
    outside = (x < -KEYPOINT_MARGIN) | (x > width - 1 + KEYPOINT_MARGIN) | (y < -KEYPOINT_MARGIN) | \
        (y > height - 1 + KEYPOINT_MARGIN)
    if outside.any():
        return f"{int(outside.sum())} keypoints outside the image's {width} x {height} pixels"
    if stored_global is not None:
        length = np.linalg.norm(stored_global.astype(np.float32), axis=1)
        if off_unit_length(length)[0]:
            return f"a global descriptor of length {length[0]:g} where 1 was written"
    return ""


def off_unit_length(lengths: np.ndarray) -> np.ndarray:
    """Which of these global descriptor ``lengths`` no descriptor is stored with: neither 1 (within
    :data:`GLOBAL_NORM_TOLERANCE`) nor 0 (an image with nothing to describe); NaN included."""
    return ~(np.abs(lengths - 1) <= GLOBAL_NORM_TOLERANCE) & (lengths != 0)


def _saved_file_damage(db: "Database", path: Path, crc_key: str) -> str:
    """Why the file at ``path`` differs from the CRC-32 recorded under ``crc_key`` ("" when it does not, or
    when there is no file or no record). A writer forgets the record before it replaces the file and records
    the new one after, so a record and a file that stay the same around the reading belong together; when
    they change meanwhile, the reading is done again."""
    def state() -> tuple:
        row = db._db.execute("SELECT value FROM meta WHERE key = ?", (crc_key,)).fetchone()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None, None
        recorded = int(row[0]) if row and str(row[0]).isdigit() else None
        return recorded, (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    for _ in range(3):
        recorded, file = before = state()
        if recorded is None or file is None:
            return ""
        try:
            found = file_crc32(path)
        except FileNotFoundError:  # replaced meanwhile
            continue
        if state() == before:
            return "" if found == recorded else (f"{path}: differs from what was written (CRC-32 {found:08x}, "
                                                 f"recorded {recorded:08x})")
    return ""  # a writer kept replacing it: it is as new as it gets


def _check_search_files(db: "Database", quick: bool, report: CheckReport) -> None:
    """The files beside the arrays: an unreadable codebook stops searches; the rest are caches, rebuilt when
    unreadable. Unless ``quick``, the shortlist index and the codebook are compared with the CRC-32 recorded
    when they were written (files written before session 29 have none): searches would use a damaged one."""
    from localmatch.database import (ASMK_FILE, CODEBOOK_FILE, CODEBOOK_FILE_CRC, INDEX_FILE,  # (it imports
                                     INDEX_FILE_CRC)  # this module)

    if db.representation == "global":
        path = db.path / INDEX_FILE
        if path.exists():
            try:
                ShortlistIndex.load(path, db.global_dim, db.index_kind, mapped=True)
            except (OSError, RuntimeError, ValueError) as e:
                report.notes.append(f"{path}: unreadable ({e}); it is rebuilt when the database is next opened")
                return
            damage = "" if quick else _saved_file_damage(db, path, INDEX_FILE_CRC)
            if damage:
                report.problems.append(f"{damage}: searches would use wrong vectors; delete it, and it is built "
                                       "again from global.f16 when the database is next opened")
        return
    path = db.path / CODEBOOK_FILE
    if not path.exists():
        if db._codebook_version() == "-1":  # given when the database was made
            report.problems.append(f"{path}: the codebook given when the database was made is missing; the next "
                                   "change to the database trains one on its own descriptors instead")
        elif report.images:
            report.notes.append(f"{path}: no codebook yet; it is trained when the database is next changed")
        return
    try:
        codebook = Codebook.load(path)
    except ValueError as e:
        report.problems.append(f"{e}: searches fail until it is trained again (Database.train_codebook)")
        return
    if codebook.dim != db.descriptor_dim:
        report.problems.append(f"{path}: {codebook.dim}-d words for {db.descriptor_dim}-d descriptors")
    elif damage := "" if quick else _saved_file_damage(db, path, CODEBOOK_FILE_CRC):
        given = db._codebook_version() == "-1"
        report.problems.append(f"{damage}: searches would use wrong words; " + (
            "it was given when the database was made: make the database again with that file, or train one on "
            "its descriptors (Database.train_codebook)" if given else "train it again (Database.train_codebook)"))
    path = db.path / ASMK_FILE
    if path.exists():
        try:
            InvertedFile.load(path)
        except ValueError as e:
            report.notes.append(f"{e}; it is rebuilt when next used")
