"""HEIF (HEIC) images are decoded in a child process, so that a crash of libheif is an ImageError.

libheif is compiled code that can end the process on a corrupt file: pi-heif 1.4.0 (libheif 1.23.0), the
newest decoder-only build on PyPI, dies of a segmentation fault when one byte of a HEIC file's ``iinf``
box is changed. In-process, a collection build would stop there without naming the file, and stop again
when resumed. So one long-lived child Python decodes HEIF files for the whole process, with the same
:func:`localmatch.io.decode_here` (pillow-heif plugin, orientation, bit depth) as every other format: it
starts with the first HEIF file (about 0.2 s), serves one file at a time (a lock), and is started again
after a crash, which becomes :class:`~localmatch.errors.ImageError` naming the file. Passing the file and
its pixels through the pipes costs about 50 ms for a 12 MP photograph, which takes 0.6 s to decode
(bench/heif_decode.py).

Protocol (no pickle): the parent writes ``max_pixels``, the length of the source's name and the length
of the file (three little-endian uint64), the name (UTF-8), then the file's bytes; the child answers a
status byte, then for 0: height and width (uint32) and ``H * W * 3`` bytes of RGB; for 1: a uint64 length
and the reason (UTF-8).
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, cast

import numpy as np

from localmatch.child import child_command, describe_crash
from localmatch.errors import ImageError
from localmatch.io import decode_here

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("<QQQ")  # max_pixels, len(name), len(data)
_PIXELS = struct.Struct("<II")  # height, width
_LENGTH = struct.Struct("<Q")


class _Child:
    """The running child, started on first use."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """No child yet, and a lock no thread holds: what a forked process starts from (its parent's child
        is not its own to talk to)."""
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def running(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            if not sys.executable:
                raise OSError("Python does not know its own executable (sys.executable is empty)")
            self.process = subprocess.Popen(child_command(__name__, "child_main"), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE)
        return self.process

    def stop(self) -> None:
        """End the child (it also ends by itself when this process closes its end of the pipe)."""
        process, self.process = self.process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_child = _Child()
atexit.register(_child.stop)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_child.forget)


def decode_in_child(data: bytes, source: str, max_pixels: int) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB of the HEIF file ``data``, decoded by the child.

    Raises:
        ImageError: what the decoder says of the file, or that it crashed on it; ``source`` names it.
    """
    name = source.encode("utf-8", "replace")
    with _child.lock:
        try:
            process = _child.running()
        except OSError as e:  # no Python to start (an embedded interpreter, say): decode here, unprotected
            log.warning("%s: decoded in this process: the HEIF decoding process cannot start (%s)", source, e)
            return decode_here(io.BytesIO(data), source, max_pixels)
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(_REQUEST.pack(max_pixels, len(name), len(data)) + name)
            process.stdin.write(data)
            process.stdin.flush()
            status = _read(process.stdout, 1)[0]
            if status != 0:
                reason = _read(process.stdout, _LENGTH.unpack(_read(process.stdout, _LENGTH.size))[0])
                raise ImageError(source, reason.decode("utf-8", "replace"))
            height, width = _PIXELS.unpack(_read(process.stdout, _PIXELS.size))
            pixels = np.empty((height, width, 3), np.uint8)
            if cast(io.BufferedIOBase, process.stdout).readinto(pixels.data.cast("B")) != pixels.nbytes:
                raise EOFError
        except (OSError, EOFError):  # BrokenPipeError, or Windows' EINVAL, writing to a child that has ended
            _child.stop()  # it ended mid-request: the next file gets a new one
            code = process.returncode
            how = describe_crash(code) if code is not None else "it stopped answering"
            raise ImageError(source, f"the HEIF decoder (libheif) crashed on it ({how}); the file is corrupt") from None
        except ImageError:
            raise
        except BaseException:  # interrupted mid-request (Ctrl-C): its reply would be read as the next file's
            _child.stop()
            raise
    return pixels


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def child_main() -> None:
    """Run in the child: answer requests until the parent closes the pipe. The protocol has the real standard
    output to itself; anything compiled code prints there goes to standard error instead. Ctrl-C is the
    parent's to handle: it ends the child by closing the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        while _answer(requests, replies):
            pass
    except BrokenPipeError:  # the parent stopped listening mid-reply
        pass


def _answer(requests: IO[bytes], replies: IO[bytes]) -> bool:
    """Decode one requested file and reply; False when the parent has closed the pipe."""
    header = requests.read(_REQUEST.size)
    if len(header) < _REQUEST.size:
        return False
    max_pixels, name_size, data_size = _REQUEST.unpack(header)
    source = requests.read(name_size).decode("utf-8", "replace")
    data = requests.read(data_size)
    try:
        pixels = decode_here(io.BytesIO(data), source, max_pixels)
    except ImageError as e:
        reply = e.reason.encode()
    except Exception as e:  # an unforeseen failure is still this file's, not the child's end
        reply = f"the HEIF decoder failed ({type(e).__name__}: {e})".encode()
    else:
        replies.write(b"\0" + _PIXELS.pack(*pixels.shape[:2]))
        replies.write(np.ascontiguousarray(pixels, np.uint8).data)
        replies.flush()
        return True
    replies.write(b"\1" + _LENGTH.pack(len(reply)) + reply)
    replies.flush()
    return True
