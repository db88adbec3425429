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
