"""A compiled reduction of a similarity block for the mutual-NN matcher, when numba is installed.

For each row of an int32 similarity block the matcher needs the best value, its first column, the second
best value, and for each column the best value over all rows. numpy takes three passes over the block
(argmax, column max, max with the best masked), each from the level-2/3 cache; the loop below reads each
row twice while it sits in the level-1 cache, with every inner loop vectorised (int32 lanes throughout:
an int64 accumulator would halve the lanes): 0.9 against numpy's 1.3 ms per 2048 x 2048 pair on one core,
next to the 2.7 ms int8 product, with exactly the numpy path's integers.
"""

from __future__ import annotations

import numpy as np

from localmatch import jit

#: Whether the compiled reduction can run here (tests and benchmarks switch it off to compare).
AVAILABLE = jit.AVAILABLE

#: Similarity entries numpy reduces before the compiled loop is loaded. Loading it (numba's import, then
#: the loop from numba's cache) takes about 0.7 s; it then saves about 0.04 ms per 256 x 2048 block
#: (0.3 ms per 2048 x 2048 pair), about 7e-11 s per entry. Rent before buying: a process that matches few
#: pairs (one ``localmatch verify``, a search) never pays for numba, and one that matches many loads it
#: once numpy's extra time has reached the loading time (about 2500 pairs of 2048 features), which never
#: costs more than twice the better choice made in hindsight. Tests and benchmarks set it to 0.
NUMPY_ENTRIES_FIRST = 10_000_000_000

_numpy_entries = 0


def use_compiled(entries: int) -> bool:
    """Whether to reduce the next block (``entries`` similarities) with the compiled loop; when not,
    the block counts towards :data:`NUMPY_ENTRIES_FIRST`."""
    global _numpy_entries
    if not AVAILABLE:
        return False
    if _numpy_entries >= NUMPY_ENTRIES_FIRST:
        return True
    _numpy_entries += entries  # not locked: threads may lose a few counts, which only delays the switch
    return False


_LOWEST = np.int32(np.iinfo(np.int32).min)


def _reduce_block(sim, start, nearest, best, second, column_best):
    """Reduce rows ``start .. start + len(sim)`` of a similarity matrix.

    Args:
        sim: ``(r, m) int32`` C-contiguous block, rows ``start ..`` of the matrix (``m >= 1``).
        start: index of the block's first row.
        nearest: ``(n,) int64`` out: first column holding each row's best value.
        best: ``(n,) int32`` out: each row's best value.
        second: ``(n,) int32`` out: each row's second value (equal to ``best`` when it occurs twice; the
            int32 minimum when ``m == 1``).
        column_best: ``(m,) int32`` in/out: best value per column, raised by this block's rows.
    """
    rows, m = sim.shape
    outside = np.int32(m)
    for i in range(rows):
        row = sim[i]
        top = _LOWEST
        for j in range(m):
            value = row[j]
            top = max(top, value)
            column_best[j] = max(column_best[j], value)
        first = outside
        runner_up = _LOWEST
        ties = np.int32(0)
        for j in range(m):  # branch-free, so that it vectorises
            value = row[j]
            hit = value == top
            first = min(first, np.int32(j) if hit else outside)
            runner_up = max(runner_up, _LOWEST if hit else value)
            ties += np.int32(hit)
        nearest[start + i] = first
        best[start + i] = top
        second[start + i] = top if ties > 1 else runner_up


_reduce_block = jit.compile_loop(_reduce_block)


def reduce_block(sim: np.ndarray, start: int, nearest: np.ndarray, best: np.ndarray, second: np.ndarray,
                 column_best: np.ndarray) -> None:
    """The compiled reduction (arguments as :func:`_reduce_block`); releases the GIL. Only call when
    :data:`AVAILABLE`."""
    _reduce_block(np.ascontiguousarray(sim, np.int32), start, nearest, best, second, column_best)
