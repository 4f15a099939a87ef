"""The indicator library: pure functions on one symbol's bars, the single source of truth.

Every window is summed on its own values (``window_sums``: NumPy's sum of each sliding window,
or a compiled loop giving the same bits; never running sums), so a value at bar t depends only
on the bars in its window: computing over the full history or over a short look-back gives the
same bits, which is what makes offline and online features identical.
A value at bar t uses bars <= t only; where a window is not full the value is NaN.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from trendcast.window_sums import window_sums


def rolling_mean(x: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """Mean of the last ``n`` values at each position (NaN until ``n`` values exist), into
    ``out`` if given (no temporaries: 10M bars pass through memory once)."""
    out = np.empty(len(x)) if out is None else out
    out[: n - 1] = np.nan
    if len(x) >= n:
        window_sums(x, n, out=out[n - 1 :])
        out[n - 1 :] /= n
    return out


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last ``n`` values, from per-window sums of x
    and x² (no n-wide temporaries, so 10M bars fit in memory)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        total = window_sums(x, n)
        squares = window_sums(x * x, n)
        # max(squares - total * total / n, 0) / (n - 1), in place
        total *= total
        total /= n
        squares -= total
        np.maximum(squares, 0.0, out=squares)
        squares /= n - 1
        np.sqrt(squares, out=out[n - 1 :])
    return out


def log_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """log(close[t] / close[t - horizon])."""
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        out[horizon:] = np.log(close[horizon:] / close[:-horizon])
    return out


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Relative strength index over ``n`` changes, with simple means of gains and losses
    (Cutler's RSI: finite memory, unlike Wilder's smoothing, so look-back length cannot change
    it). 100 when the window had no loss, 50 when it had no change at all."""
    change = np.full(len(close), np.nan)
    change[1:] = np.diff(close)
    gains = rolling_mean(np.where(change > 0, change, 0.0), n)
    losses = rolling_mean(np.where(change < 0, -change, 0.0), n)
    gains[:n] = np.nan  # the first change is at bar 1: a full window ends at bar n
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, 100.0 * gains / total, 50.0)
    out[np.isnan(gains)] = np.nan
    return out


def seasonal_mean(x: np.ndarray, phase: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last ``n`` values observed at the same phase (hour of day, minute of hour),
    including the current one: the seasonal counterpart of ``rolling_mean``."""
    return seasonal_means(x, phase, (n,))[n]


def seasonal_means(
    x: np.ndarray, phase: np.ndarray, windows: tuple[int, ...]
) -> dict[int, np.ndarray]:
    """``seasonal_mean`` for several windows, grouping the values by phase once."""
    # phases are small: as int16 the stable sort is a radix sort (the same order, faster)
    small = phase
    if len(phase) and phase.min() >= 0 and phase.max() < 2**15:
        small = phase.astype(np.int16)
    order = np.argsort(small, kind="stable")
    grouped = x[order]  # each phase's values, in time order, side by side
    edges = [0, *(np.flatnonzero(np.diff(small[order])) + 1).tolist(), len(x)]
    found = {}
    for n in windows:
        means = np.empty(len(x))
        for start, stop in pairwise(edges):
            rolling_mean(grouped[start:stop], n, out=means[start:stop])
        found[n] = np.empty(len(x))
        found[n][order] = means
    return found
