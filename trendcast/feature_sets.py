"""Named, versioned feature sets built from the indicator library.

A feature set's fingerprint hashes its parameters and the code of every function it calls
(docstrings and comments aside); the store refuses to write a changed definition under an old
version, so a changed definition is always a new version, never an overwrite.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from trendcast import indicators as ind
from trendcast import window_sums
from trendcast.schema import INTERVALS

SMA_WINDOWS = (7, 25, 99)
RETURN_HORIZONS = (1, 5, 20, 60)


def phase_of(open_time: pd.Series, interval: str) -> tuple[np.ndarray, int]:
    """Seasonal phase of each bar and bars per cycle: minute of hour for intervals under an
    hour, hour of day up to a day, day of week beyond."""
    length = INTERVALS[interval] or timedelta(days=30)
    times = pd.DatetimeIndex(open_time)
    if length < timedelta(hours=1):
        return times.minute.to_numpy(), max(1, int(timedelta(hours=1) / length))
    if length < timedelta(days=1):
        return times.hour.to_numpy(), max(1, int(timedelta(days=1) / length))
    return times.day_of_week.to_numpy(), 7


def core_v1(bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """The 20 features of ``core`` v1 for one symbol's bars sorted by open_time."""
    close = bars["close"].to_numpy(dtype="float64")
    high = bars["high"].to_numpy(dtype="float64")
    low = bars["low"].to_numpy(dtype="float64")
    volume = bars["volume"].to_numpy(dtype="float64")
    phase, _ = phase_of(bars["open_time"], interval)
    sma = {n: ind.rolling_mean(close, n) for n in SMA_WINDOWS}
    out: dict[str, np.ndarray] = {}
    for n in SMA_WINDOWS:
        out[f"sma_{n}_ratio"] = close / sma[n] - 1.0
    out["sma_7_25_diff"] = (sma[7] - sma[25]) / close
    out["sma_25_99_diff"] = (sma[25] - sma[99]) / close
    out["sma_7_99_diff"] = (sma[7] - sma[99]) / close
    seasonal = ind.seasonal_means(close, phase, SMA_WINDOWS)
    for n in SMA_WINDOWS:
        out[f"seas_sma_{n}_ratio"] = close / seasonal[n] - 1.0
    for h in RETURN_HORIZONS:
        out[f"logret_{h}"] = ind.log_return(close, h)
    out["vol_20"] = ind.rolling_std(out["logret_1"], 20)
    out["vol_60"] = ind.rolling_std(out["logret_1"], 60)
    out["rsi_14"] = ind.rsi(close, 14)
    mean_volume = ind.rolling_mean(volume, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 0/0 (no volume in the whole window, e.g. an idle market) counts as "as usual"
        out["volume_ratio_20"] = np.where(mean_volume > 0, volume / mean_volume, 1.0)
        out["volume_ratio_20"][np.isnan(mean_volume)] = np.nan
        span = high - low
        out["close_position"] = np.where(span > 0, (close - low) / span, 0.5)
    out["hl_range"] = (high - low) / close
    out["hl_range_20"] = ind.rolling_mean(out["hl_range"], 20)
    # copy=False: one block per column, not a 20-column copy (a second of 10M bars)
    return pd.DataFrame(out, index=bars.index, copy=False)


@dataclass(frozen=True)
class FeatureSet:
    """A versioned list of features and the function that computes them."""

    name: str
    version: int
    columns: tuple[str, ...]
    function: object
    seasonal_windows: tuple[int, ...] = SMA_WINDOWS
    plain_lookback: int = 100  # the longest plain window (99-bar SMA) plus one for returns
    # Fingerprints of earlier code for this version that computes the same bits (checked
    # against a frozen copy of that code in tests/test_indicators.py): a faster implementation
    # is not a new definition, so a store registered under one of them keeps accepting writes.
    same_bits_as: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}_v{self.version}"

    def lookback_bars(self, interval: str) -> int:
        """Bars before the first new bar that every window needs, with 50 % slack for gaps
        (a weekend has no bars, so 99 same-hour observations span more calendar time)."""
        _, per_cycle = phase_of(pd.Series(pd.to_datetime([0], utc=True)), interval)
        seasonal = max(self.seasonal_windows) * per_cycle
        return int(max(self.plain_lookback, seasonal) * 1.5)

    def compute(self, bars: pd.DataFrame, interval: str) -> pd.DataFrame:
        frame = self.function(bars, interval)
        assert tuple(frame.columns) == self.columns, "feature function and columns disagree"
        return frame

    @property
    def fingerprint(self) -> str:
        parts = [self.key, ",".join(self.columns), repr(SMA_WINDOWS), repr(RETURN_HORIZONS)]
        for func in (self.function, phase_of, *_indicator_functions()):
            parts.append(_code_without_docstrings(func))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _indicator_functions():
    found = []
    for module in (ind, window_sums):
        found += [obj for _, obj in sorted(vars(module).items()) if inspect.isfunction(obj)]
    return found


def _code_without_docstrings(func) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body.pop(0)
    return ast.dump(tree)


CORE_V1 = FeatureSet(
    name="core",
    version=1,
    columns=(
        "sma_7_ratio",
        "sma_25_ratio",
        "sma_99_ratio",
        "sma_7_25_diff",
        "sma_25_99_diff",
        "sma_7_99_diff",
        "seas_sma_7_ratio",
        "seas_sma_25_ratio",
        "seas_sma_99_ratio",
        "logret_1",
        "logret_5",
        "logret_20",
        "logret_60",
        "vol_20",
        "vol_60",
        "rsi_14",
        "volume_ratio_20",
        "close_position",
        "hl_range",
        "hl_range_20",
    ),
    function=core_v1,
    same_bits_as=("39eb3e89b61d7098",),  # NumPy-only window sums, before the compiled kernel
)

DEFAULT_FEATURE_SET = CORE_V1
