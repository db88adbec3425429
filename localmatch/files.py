"""Writing files so that a crash leaves the old file or the new one, never half of one; their checksums."""

from __future__ import annotations

import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (``path.tmp``) for the caller to write; on success it is synced and
    renamed over ``path``. On failure (a full disk, say) it is deleted, so that it does not keep the space,
    and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """:func:`atomic_path` with the temporary file opened for writing."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def file_crc32(path: str | os.PathLike) -> int:
    """CRC-32 (zlib's) of a file's bytes, read 16 MB at a time."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc
