"""Optional numba compilation for the few loops numpy cannot fuse (``pip install localmatch[fast]``).

Each compiled loop has a numpy equivalent that gives the same results; modules check :data:`AVAILABLE`
(tests and benchmarks switch their own copy of the flag off to compare the two paths). numba is imported
and a loop compiled (or loaded from numba's disk cache) on the loop's first call, so that importing
localmatch does not pay numba's import time.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from typing import Callable

#: Whether numba is installed.
AVAILABLE = importlib.util.find_spec("numba") is not None


def compile_loop(function: Callable) -> Callable:
    """``function``, compiled by numba on first call with the GIL released (so threads can run it side by
    side) and cached on disk, or compiled once per process when no cache location is writable. Returns
    ``function`` unchanged without numba. The function may call only numpy and builtins."""
    if not AVAILABLE:
        return function
    compiled: list[Callable] = []
    lock = threading.Lock()

    @functools.wraps(function)
    def run(*args):
        if not compiled:
            with lock:
                if not compiled:
                    compiled.append(_njit(function))
        return compiled[0](*args)

    return run


def _njit(function: Callable) -> Callable:
    import numba

    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache location
        return numba.njit(nogil=True)(function)
