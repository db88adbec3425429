"""An exclusive lock on a file, taken without waiting: who holds it is the database's one writer.

POSIX uses ``flock`` on the whole file; Windows, which has no ``fcntl``, locks the file's first byte with
``msvcrt.locking``. Either lock is released by :meth:`FileLock.release` or when the process exits, so a
writer that was killed does not leave the database locked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

if sys.platform == "win32":
    import msvcrt

    def _lock(file: IO[str]) -> bool:
        file.seek(0)
        try:
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:  # another process holds it
            return False
        return True

    def _unlock(file: IO[str]) -> None:
        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(file: IO[str]) -> bool:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            return False
        return True

    def _unlock(file: IO[str]) -> None:
        fcntl.flock(file, fcntl.LOCK_UN)


class FileLock:
    """An exclusive lock held on ``path`` (created if absent) until :meth:`release`."""

    def __init__(self, file: IO[str]) -> None:
        self._file: IO[str] | None = file

    @classmethod
    def try_acquire(cls, path: Path) -> FileLock | None:
        """The lock on ``path``, or None at once when another process holds it."""
        file = open(path, "a+")
        if not _lock(file):
            file.close()
            return None
        return cls(file)

    def release(self) -> None:
        """Let the next writer in; releasing twice does nothing."""
        if self._file is not None:
            _unlock(self._file)
            self._file.close()
            self._file = None
