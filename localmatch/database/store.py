"""Append-only arrays of local features and global descriptors, addressed by row offsets.

Three flat binary files grow at their ends: ``keypoints.f32`` (rows of 2 float32), ``descriptors.i8``
(rows of D int8) and ``global.f16`` (rows of G float16). Offsets and committed lengths live in SQLite;
bytes past the committed length (left by a killed writer) are never read and are cut off when the next
writer opens. Readers memory-map the files; nothing is unpickled. Each image's record in SQLite keeps the
CRC-32 (:func:`crc32`) of the rows written for it, which ``Database.check`` compares them with.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from localmatch.errors import DatabaseError


#: The images table's columns that locate an image's rows and say how to read them, as ``Database._rows`` and
#: ``check`` select them between ``id, path`` and ``checksum``.
RECORD_COLUMNS = "width, height, num_features, feature_row, descriptor_scale, working_scale, global_row"


class ImageRecord(NamedTuple):
    """One image's row of the images table: ``id, path``, the :data:`RECORD_COLUMNS`, then ``checksum``.

    Attributes:
        image_id: the image's id (never reused).
        path: the image file's path as it was added.
        width, height: the original image's size in pixels.
        num_features: how many keypoint and descriptor rows the image has.
        feature_row: its first row in ``keypoints.f32`` and ``descriptors.i8``.
        descriptor_scale: what its int8 descriptors were multiplied by when stored.
        working_scale: working-image pixels per original pixel at extraction.
        global_row: its row in ``global.f16``, -1 where the database keeps no global descriptors.
        checksum: CRC-32 of its stored rows (:func:`image_checksum`), None for images added before
            checksums were kept.

    ``Database.check`` reads damaged records too, so a value may be None or of another type there.
    """

    image_id: int
    path: str
    width: int
    height: int
    num_features: int
    feature_row: int
    descriptor_scale: float
    working_scale: float
    global_row: int
    checksum: int | None


def crc32(values: np.ndarray, crc: int = 0) -> int:
    """CRC-32 of an array's bytes in C order, continuing ``crc`` (so one image's rows of several files chain)."""
    return zlib.crc32(np.ascontiguousarray(values).data, crc)


def image_checksum(keypoints: np.ndarray, descriptors: np.ndarray, global_row: np.ndarray | None) -> int:
    """What an image's record keeps of its stored rows: their CRC-32, chained in the order ``Database.add``
    appends them (keypoints, descriptors, then the global descriptor where the database keeps one)."""
    crc = crc32(descriptors, crc32(keypoints))
    return crc if global_row is None else crc32(global_row, crc)


def checksum_mismatch(keypoints: np.ndarray, descriptors: np.ndarray, global_row: np.ndarray | None,
                      recorded: int) -> str:
    """Why an image's stored rows are not the ones written for it ("" when their checksum is ``recorded``)."""
    found = image_checksum(keypoints, descriptors, global_row)
    return "" if found == recorded else (f"its stored features differ from what was written (CRC-32 {found:08x}, "
                                         f"recorded {recorded:08x})")


@dataclass(frozen=True)
class ArraySpec:
    file_name: str
    dtype: npt.DTypeLike
    row: int  # values per row

    @property
    def row_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.row


class AppendOnlyArray:
    """One growing ``(rows, row)`` array on disk."""

    def __init__(self, folder: Path, spec: ArraySpec) -> None:
        self.path = folder / spec.file_name
        self.spec = spec
        self._map: np.ndarray | None = None
        self._mapped_rows = -1
        self.path.touch(exist_ok=True)

    def truncate(self, rows: int) -> None:
        """Drop everything past ``rows`` (uncommitted bytes of a killed writer).

        A file holding fewer than ``rows`` rows lost committed data (cut short by a copy or a full disk):
        that raises ``DatabaseError`` and changes nothing, where growing the file would hand out zeros.
        """
        with open(self.path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if size < rows * self.spec.row_bytes:
                raise self._short(size, rows)
            f.truncate(rows * self.spec.row_bytes)

    def append(self, start_row: int, values: np.ndarray, crc: int = 0) -> int:
        """Write ``values`` at ``start_row`` (the committed end) and make them durable; returns the CRC-32 of
        the bytes written, continuing ``crc``."""
        data = np.ascontiguousarray(values, dtype=self.spec.dtype).reshape(-1, self.spec.row)
        with open(self.path, "r+b") as f:
            f.seek(start_row * self.spec.row_bytes)
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())
        return crc32(data, crc)

    def read(self, start_row: int, count: int) -> np.ndarray:
        """A read-only ``(count, row)`` view (memory-mapped)."""
        end = start_row + count
        if end > self._mapped_rows:
            size = self.path.stat().st_size // self.spec.row_bytes
            if end > size:
                raise self._short(size * self.spec.row_bytes, end)
            self._map = np.memmap(self.path, dtype=self.spec.dtype, mode="r", shape=(size, self.spec.row)) if size else None
            self._mapped_rows = size
        if count == 0:
            return np.zeros((0, self.spec.row), self.spec.dtype)
        assert self._map is not None  # mapped above: the file holds at least end > 0 rows
        return self._map[start_row:end]

    def _short(self, size_bytes: int, rows: int) -> DatabaseError:
        return DatabaseError(f"{self.path}: holds {size_bytes // self.spec.row_bytes} rows where the database "
                             f"committed at least {rows}: the file was cut short (an incomplete copy or restore?), "
                             "so data stored in it is lost; restore the folder from a whole copy")

    def nbytes(self) -> int:
        return self.path.stat().st_size

    def rows(self) -> int:
        """Whole rows the file holds now (committed or not)."""
        return self.nbytes() // self.spec.row_bytes
