"""The sum of every ``n``-wide window of a series, each window summed on its own values.

The reference is NumPy's ``sliding_window_view(x, n).sum(axis=1)``: NumPy adds a window with
its pairwise summation (eight running partial sums combined as a tree, the remainder added last,
starting from 0.0; windows over 128 values are split in halves, a case left to NumPy). The
compiled kernel repeats exactly those additions in the same order for each window, so both give
the same bits; it is faster because it sums a block of neighbouring windows side by side (SIMD
across windows, never across the additions of one window, so no addition is reordered).
Running sums are never used: a value must not depend on where the series starts.

Numba is optional (the light core runs without it): below ``COMPILED_FROM`` values, or without
Numba, the NumPy reference runs, so short look-backs never pay the compile time (seconds, once
per process; bench_features measures it) and both paths give the same bits
(tests/test_indicators.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from trendcast.lazy_kernel import LazyKernel

# Below this many values NumPy is fast enough and the first call's compile would dominate.
COMPILED_FROM = 20_000
_BLOCK = 256  # windows summed side by side: their partial sums stay in L1
_WIDEST = 128  # NumPy splits wider windows in halves; those stay on the NumPy path


def window_sums_numpy(x: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """The reference: NumPy's own sum of each window (len(x) - n + 1 values)."""
    return np.sum(sliding_window_view(x, n), axis=1, out=out)


def window_sums(x: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """Sum of each ``n``-wide window of ``x`` (float64, len(x) >= n): ``len(x) - n + 1``
    values (into ``out`` if given), bit-identical to ``window_sums_numpy``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if len(x) >= COMPILED_FROM and n <= _WIDEST and (out is None or out.flags.c_contiguous):
        kernel = compiled()
        if kernel is not None:
            return kernel(x, n, np.empty(len(x) - n + 1) if out is None else out)
    return window_sums_numpy(x, n, out)


#: The compiled kernel (compiled on first use), or None without Numba or with
#: ``TRENDCAST_NO_NUMBA=1`` (the NumPy path gives the same bits).
compiled: LazyKernel[Callable[[np.ndarray, int, np.ndarray], np.ndarray]] = LazyKernel(
    lambda: _build()
)


def _build() -> Callable[[np.ndarray, int, np.ndarray], np.ndarray]:
    import numba

    njit = numba.njit(nogil=True, cache=False, fastmath=False, error_model="numpy")

    @njit
    def sums(x, n, out):
        # per window, NumPy's pairwise_sum for float64 (n <= 128), blocks of windows at once
        m = len(x) - n + 1
        a0, a1, a2, a3 = np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK)
        a4, a5, a6, a7 = np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK)
        res = np.empty(_BLOCK)
        tail = n - (n % 8)
        for b0 in range(0, m, _BLOCK):
            w = min(_BLOCK, m - b0)
            if n < 8:
                res[:w] = 0.0
                for i in range(n):
                    seg = x[b0 + i : b0 + i + w]
                    for k in range(w):
                        res[k] += seg[k]
            else:
                a0[:w] = x[b0 : b0 + w]
                a1[:w] = x[b0 + 1 : b0 + 1 + w]
                a2[:w] = x[b0 + 2 : b0 + 2 + w]
                a3[:w] = x[b0 + 3 : b0 + 3 + w]
                a4[:w] = x[b0 + 4 : b0 + 4 + w]
                a5[:w] = x[b0 + 5 : b0 + 5 + w]
                a6[:w] = x[b0 + 6 : b0 + 6 + w]
                a7[:w] = x[b0 + 7 : b0 + 7 + w]
                for i in range(8, tail, 8):
                    seg = x[b0 + i : b0 + i + 8 + w]
                    for k in range(w):
                        a0[k] += seg[k]
                        a1[k] += seg[k + 1]
                        a2[k] += seg[k + 2]
                        a3[k] += seg[k + 3]
                        a4[k] += seg[k + 4]
                        a5[k] += seg[k + 5]
                        a6[k] += seg[k + 6]
                        a7[k] += seg[k + 7]
                for k in range(w):
                    res[k] = ((a0[k] + a1[k]) + (a2[k] + a3[k])) + (
                        (a4[k] + a5[k]) + (a6[k] + a7[k])
                    )
                for i in range(tail, n):
                    seg = x[b0 + i : b0 + i + w]
                    for k in range(w):
                        res[k] += seg[k]
            for k in range(w):
                out[b0 + k] = 0.0 + res[k]  # NumPy's reduction starts from 0.0
        return out

    return sums
