"""A frozen copy of the indicator library and ``core`` v1 as they were before the compiled
window sums (commit 33d53d9): the bits every later implementation must reproduce.

The original docstring follows.

The indicator library: pure functions on one symbol's bars, the single source of truth.

Every window is reduced on its own values (NumPy sliding windows, never running sums), so a
value at bar t depends only on the bars in its window: computing over the full history or over a
short look-back gives the same bits, which is what makes offline and online features identical.
A value at bar t uses bars <= t only; where a window is not full the value is NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from trendcast.feature_sets import RETURN_HORIZONS, SMA_WINDOWS, phase_of


def rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last ``n`` values at each position (NaN until ``n`` values exist)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = sliding_window_view(x, n).sum(axis=1) / n
    return out


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last ``n`` values, from per-window sums of x
    and x² (no n-wide temporaries, so 10M bars fit in memory)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        total = sliding_window_view(x, n).sum(axis=1)
        squares = sliding_window_view(x * x, n).sum(axis=1)
        variance = np.maximum(squares - total * total / n, 0.0) / (n - 1)
        out[n - 1 :] = np.sqrt(variance)
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
    out = np.full(len(x), np.nan)
    order = np.argsort(phase, kind="stable")
    sorted_phase = phase[order]
    bounds = np.flatnonzero(np.diff(sorted_phase)) + 1
    for group in np.split(order, bounds):
        out[group] = rolling_mean(x[group], n)
    return out


def core_v1_reference(bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """The 20 features of ``core`` v1 for one symbol's bars sorted by open_time."""
    close = bars["close"].to_numpy(dtype="float64")
    high = bars["high"].to_numpy(dtype="float64")
    low = bars["low"].to_numpy(dtype="float64")
    volume = bars["volume"].to_numpy(dtype="float64")
    phase, _ = phase_of(bars["open_time"], interval)
    sma = {n: rolling_mean(close, n) for n in SMA_WINDOWS}
    out: dict[str, np.ndarray] = {}
    for n in SMA_WINDOWS:
        out[f"sma_{n}_ratio"] = close / sma[n] - 1.0
    out["sma_7_25_diff"] = (sma[7] - sma[25]) / close
    out["sma_25_99_diff"] = (sma[25] - sma[99]) / close
    out["sma_7_99_diff"] = (sma[7] - sma[99]) / close
    for n in SMA_WINDOWS:
        out[f"seas_sma_{n}_ratio"] = close / seasonal_mean(close, phase, n) - 1.0
    for h in RETURN_HORIZONS:
        out[f"logret_{h}"] = log_return(close, h)
    out["vol_20"] = rolling_std(out["logret_1"], 20)
    out["vol_60"] = rolling_std(out["logret_1"], 60)
    out["rsi_14"] = rsi(close, 14)
    mean_volume = rolling_mean(volume, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 0/0 (no volume in the whole window, e.g. an idle market) counts as "as usual"
        out["volume_ratio_20"] = np.where(mean_volume > 0, volume / mean_volume, 1.0)
        out["volume_ratio_20"][np.isnan(mean_volume)] = np.nan
        span = high - low
        out["close_position"] = np.where(span > 0, (close - low) / span, 0.5)
    out["hl_range"] = (high - low) / close
    out["hl_range_20"] = rolling_mean(out["hl_range"], 20)
    return pd.DataFrame(out, index=bars.index)
