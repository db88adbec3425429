"""Mending the damaged images a check finds: :meth:`Database.repair` and ``localmatch index check --repair``.

Each damaged image (see :mod:`localmatch.database.check`) is indexed again from its file, as
``localmatch index remove`` followed by ``localmatch index add`` would, but in one transaction: the new rows
and record are stored and the damaged record deleted together, so an interrupted repair leaves either
the damaged entry or the mended one, never neither. The mended image gets a new id. Its R-ASMK region
boxes are kept, unless they are what is damaged (the region proposer's are used then).

An image whose file is gone, unreadable or no longer an image is left as it is, and reported: searches
already leave it out, and restoring its file and repairing again mends it. Damage that is not one image's
(SQLite's own, an array file cut short, a damaged codebook or shortlist index) is not mended here; the
check's problems say what to do for each.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from localmatch.database.check import CheckReport, DamagedImage, _undecodable, check_database, stored_path
from localmatch.errors import DatabaseError, ImageError
from localmatch.io import decode_bytes

if TYPE_CHECKING:
    import numpy as np

    from localmatch.database import Database


@dataclass(frozen=True)
class RepairedImage:
    """A damaged image indexed again from its file.

    Attributes:
        image_id: the damaged entry's id (now deleted).
        path: its file.
        new_id: the id it is stored under now; that of the image already holding the same bytes when another
            path had them (the damaged entry is then only deleted, as adding a copy would skip it).
    """

    image_id: int
    path: str
    new_id: int


@dataclass
class RepairReport:
    """What :meth:`Database.repair` did.

    Attributes:
        check: the full check made before repairing (its ``damaged`` are the images tried).
        repaired: damaged images indexed again.
        left: damaged images left as they were, each with why it could not be indexed again.
    """

    check: CheckReport
    repaired: list[RepairedImage] = field(default_factory=list)
    left: list[DamagedImage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing damaged is left: every damaged image was mended and the check found no other problem."""
        return not self.left and not self.check.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "check": self.check.to_dict(), "repaired": [asdict(r) for r in self.repaired],
                "left": [asdict(d) for d in self.left]}


def repair_database(db: "Database", *, progress: bool = False) -> RepairReport:
    """Check ``db`` fully, then index each damaged image again from its file (see the module's docstring)."""
    report = RepairReport(check_database(db, progress=progress))
    for damaged in report.check.damaged:
        try:
            new_id = _index_again(db, damaged.image_id)
        except (OSError, ImageError, DatabaseError, sqlite3.DatabaseError) as e:  # OSError: storing it (disk full)
            why = e.reason if isinstance(e, ImageError) else str(e)
            report.left.append(DamagedImage(damaged.image_id, damaged.path, f"{damaged.reason}; not repaired: {why}"))
        else:
            report.repaired.append(RepairedImage(damaged.image_id, damaged.path, new_id))
    if report.repaired:
        db._save_index()
    return report


def _index_again(db: "Database", image_id: int) -> int:
    """Store the file of damaged image ``image_id`` again and delete the damaged entry, in one transaction;
    returns the id its content is stored under now."""
    row = db._db.execute("SELECT CAST(path AS BLOB) FROM images WHERE id = ?", (image_id,)).fetchone()
    path = None if row is None else stored_path(row[0])
    if path is None or _undecodable(path):
        raise DatabaseError("its stored path is damaged, so its file is not known")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatabaseError(f"its file cannot be read ({e.strerror or e})") from e
    digest = hashlib.sha256(data).hexdigest()
    holder = db._db.execute("SELECT id FROM images WHERE content_hash = ? AND id != ?", (digest, image_id)).fetchone()
    if holder is not None:  # another path holds these bytes: adding this file would skip it as a copy
        with db._transaction():
            db._delete_images([image_id])
            db._set_meta(generation=db._meta_int("generation") + 1)
        return int(holder[0])
    image = decode_bytes(data, path, max_pixels=db.feature_config.max_pixels)
    db._commit_image(path, digest, image, _sound_boxes(db, image_id))  # deletes what ``path`` held, this entry
    return int(db._db.execute("SELECT id FROM images WHERE content_hash = ?", (digest,)).fetchone()[0])


def _sound_boxes(db: "Database", image_id: int) -> "np.ndarray | None":
    """The image's stored region boxes when it has sound ones, else None (the region proposer's are used)."""
    boxes = db._boxes_of(image_id)
    if boxes is None:
        return None
    try:
        return db._check_boxes({"": boxes})[""]
    except DatabaseError:
        return None
