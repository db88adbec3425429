"""Optional numba compilation for the few loops numpy cannot fuse (``pip install localmatch[fast]``).

Each compiled loop has a numpy equivalent that gives the same results; modules check :data:`AVAILABLE`
(tests and benchmarks switch their own copy of the flag off to compare the two paths).
"""

from __future__ import annotations

from typing import Callable

try:
    import numba
except ImportError:  # the optional accelerator is not installed
    numba = None

#: Whether numba is installed.
AVAILABLE = numba is not None


def compile_loop(function: Callable) -> Callable:
    """``function`` compiled by numba with the GIL released (so threads can run it side by side), cached on
    disk so that a new process does not spend a second compiling; compiled once per process when no cache
    location is writable. Returns ``function`` unchanged without numba."""
    if numba is None:
        return function
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache location
        return numba.njit(nogil=True)(function)


def compile_inline(function: Callable) -> Callable:
    """A small helper compiled to be inlined into the loops that call it (unchanged without numba)."""
    return function if numba is None else numba.njit(inline="always")(function)
