"""Real market history that installs from PyPI, so the demo needs no network beyond it.

- EURUSD 1h: 6,225 bars (2017, ask side), gym-anytrading 2.0.0 (MIT).
- GOOGL 1d: 2,335 bars (2009-05 to 2018-08), gym-anytrading 2.0.0 (MIT).
- AAPL, MSFT, IBM 1d: 3,270 bars each (2000-03 to 2013-03, unadjusted), bokeh-sampledata
  (public domain, Quandl WIKI prices).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trendcast.errors import TrendcastError


@dataclass(frozen=True)
class SampleSeries:
    symbol: str
    interval: str
    source: str
    licence: str
    reader: Callable[[], tuple[pd.DataFrame, str]]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TrendcastError(
            f"sample data package {name!r} is not installed: run `make setup` (it is in .venv)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _gym_anytrading(filename: str, time_column: str, fmt: str) -> tuple[pd.DataFrame, str]:
    path = _package_dir("gym_anytrading") / "datasets" / "data" / filename
    raw = pd.read_csv(path)
    frame = pd.DataFrame(
        {
            "open_time": pd.to_datetime(raw[time_column], format=fmt, utc=True),
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "volume": raw["Volume"].astype("float64"),
        }
    )
    return frame, str(path)


def _bokeh_stocks(ticker: str) -> tuple[pd.DataFrame, str]:
    path = _package_dir("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    raw = pd.read_csv(path).rename(columns=str.lower)
    raw = raw[raw["ticker"] == ticker]
    frame = pd.DataFrame(
        {
            "open_time": pd.to_datetime(raw["date"], format="ISO8601", utc=True),
            "open": raw["open"],
            "high": raw["high"],
            "low": raw["low"],
            "close": raw["close"],
            "volume": raw["volume"].astype("float64"),
        }
    ).reset_index(drop=True)
    return frame, f"{path}#{ticker}"


SAMPLES: tuple[SampleSeries, ...] = (
    SampleSeries(
        "EURUSD",
        "1h",
        "gym-anytrading",
        "MIT",
        lambda: _gym_anytrading("FOREX_EURUSD_1H_ASK.csv", "Time", "%d.%m.%Y %H:%M:%S.%f"),
    ),
    SampleSeries(
        "GOOGL",
        "1d",
        "gym-anytrading",
        "MIT",
        lambda: _gym_anytrading("STOCKS_GOOGL.csv", "Date", "%Y-%m-%d"),
    ),
    *(
        SampleSeries(t, "1d", "bokeh-sampledata", "public domain", lambda t=t: _bokeh_stocks(t))
        for t in ("AAPL", "MSFT", "IBM")
    ),
)


def choose(symbols: list[str] | None) -> list[SampleSeries]:
    """The samples named (all when none); an unknown name is an error listing the known ones."""
    chosen = [s for s in SAMPLES if not symbols or s.symbol in symbols]
    if symbols and len(chosen) != len(set(symbols)):
        known = ", ".join(s.symbol for s in SAMPLES)
        raise TrendcastError(f"--symbol: unknown sample symbol in {symbols}; known: {known}")
    return chosen


def load_samples(engine, samples: list[SampleSeries], cutoff: pd.Timestamp | None = None):
    """Load each sample (bars opening before ``cutoff`` only, when given); yields each load's
    summary as it finishes."""
    from trendcast.history import load_frame

    for sample in samples:
        frame, origin = sample.reader()
        if cutoff is not None:
            frame = frame[frame["open_time"] < cutoff].reset_index(drop=True)
        yield load_frame(
            engine,
            frame,
            symbol=sample.symbol,
            interval=sample.interval,
            source=sample.source,
            origin=origin,
        )
