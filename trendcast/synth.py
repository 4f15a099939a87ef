"""Synthetic bars for benchmarks and scale tests: a random walk with regime changes.

Never real data: loaders store these with source ``synthetic`` and default symbols start ``SYN``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trendcast.schema import INTERVALS


@dataclass(frozen=True)
class Regime:
    name: str
    drift: float  # per-bar log drift
    vol: float  # per-bar log volatility


REGIMES = (
    Regime("calm-bull", 2e-5, 6e-4),
    Regime("calm-bear", -2e-5, 7e-4),
    Regime("sideways", 0.0, 4e-4),
    Regime("turbulent", -1e-5, 2e-3),
)


def synth_bars(
    n_bars: int,
    *,
    interval: str = "1m",
    start: str = "2020-01-01",
    seed: int = 7,
    start_price: float = 100.0,
    mean_regime_bars: int = 5_000,
) -> pd.DataFrame:
    """``n_bars`` consistent OHLCV bars (high ≥ max(open, close), low ≤ min(open, close)).

    Regimes switch as a Markov chain with mean duration ``mean_regime_bars``; the returned frame
    carries a ``regime`` column so tests can check the generator, which loaders ignore.
    """
    length = INTERVALS[interval]
    if length is None:
        raise ValueError("synthetic bars need a fixed-length interval, not 1M")
    rng = np.random.default_rng(seed)
    switches = rng.random(n_bars) < 1.0 / mean_regime_bars
    regime_idx = np.cumsum(switches * rng.integers(1, len(REGIMES), n_bars)) % len(REGIMES)
    drift = np.array([r.drift for r in REGIMES])[regime_idx]
    vol = np.array([r.vol for r in REGIMES])[regime_idx]
    log_ret = drift + vol * rng.standard_normal(n_bars)
    close = start_price * np.exp(np.cumsum(log_ret))
    open_ = np.empty(n_bars)
    open_[0] = start_price
    open_[1:] = close[:-1] * np.exp(0.1 * vol[1:] * rng.standard_normal(n_bars - 1))
    wick = np.abs(rng.standard_normal((2, n_bars))) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(mean=3.0, sigma=0.5, size=n_bars) * (vol / 6e-4)
    start_ts = pd.Timestamp(start, tz="UTC").floor(length)
    open_time = pd.date_range(start_ts, periods=n_bars, freq=length, unit="ns")
    return pd.DataFrame(
        {
            "open_time": open_time,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume.round(6),
            "trades": rng.poisson(50, n_bars).astype("int64"),
            "regime": np.array([r.name for r in REGIMES])[regime_idx],
        }
    )


def write_bars(frame: pd.DataFrame, path) -> None:
    """Write by suffix: Parquet (``.parquet``/``.pq``) or CSV with epoch-millisecond times."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        out = frame.assign(open_time=frame["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        out.to_csv(path, index=False)
