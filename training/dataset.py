"""Point-in-time training sets: features as known at each bar's close, labelled with the
forward log return over ``horizon`` bars, split by time with a purge gap of ``horizon`` bars so
no label window reaches into the next split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import featurestore
from trendcast.errors import InputError
from trendcast.feature_sets import DEFAULT_FEATURE_SET, FeatureSet
from trendcast.gaps import step_offset
from trendcast.labels import forward_log_returns
from trendcast.schema import series_key


@dataclass
class Dataset:
    frame: pd.DataFrame  # symbol, as_of, event_time, features..., label, split
    features: list[str]
    snapshot: featurestore.TrainingSnapshot
    horizon: int

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]

    def seen_until(self, *splits: str) -> pd.Timestamp:
        """The last instant the rows of ``splits`` reveal: their latest label's end (the close
        ``horizon`` bars after the row). Selection that used these rows saw up to here."""
        rows = self.frame[self.frame["split"].isin(splits)]
        return pd.Timestamp(rows["label_end"].max())

    @property
    def selection_end(self) -> pd.Timestamp:
        """What fitting saw: train (the fit), validation (early stopping, the threshold)."""
        return self.seen_until("train", "validation")

    @property
    def test_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.part("test")["as_of"].min())


def build_dataset(
    engine: Engine,
    symbol: str,
    interval: str,
    directory: Path,
    *,
    horizon: int = 4,
    fs: FeatureSet = DEFAULT_FEATURE_SET,
    start: str | None = None,
    end: str | None = None,
    fractions: tuple[float, float] = (0.7, 0.15),
) -> Dataset:
    key = series_key(symbol, interval)
    bars = pd.read_sql(
        sa.text(
            "SELECT open_time, close FROM market.bars WHERE symbol = :s "
            "AND interval = CAST(:i AS market.bar_interval) "
            "AND open_time >= coalesce(CAST(:a AS timestamptz), '-infinity') "
            "AND open_time <= coalesce(CAST(:b AS timestamptz), 'infinity') ORDER BY open_time"
        ),
        engine,
        params={"s": key.symbol, "i": key.interval, "a": start, "b": end},
    )
    if len(bars) < 10 * horizon + 100:
        raise InputError(f"{symbol} {interval}: {len(bars)} bars, too few to train on")
    label = forward_log_returns(bars["close"].to_numpy(dtype="float64"), horizon)
    as_of = pd.to_datetime(bars["open_time"], utc=True) + step_offset(interval)
    entities = pd.DataFrame({"symbol": key.symbol, "as_of": as_of})
    snapshot = featurestore.export_training_set(engine, fs, entities, interval, directory)
    frame = pd.read_parquet(snapshot.path)
    frame["label"] = label
    # when each label is known: the close of the bar ``horizon`` positions later
    label_end = as_of.shift(-horizon)
    frame["label_end"] = pd.to_datetime(label_end.to_numpy(), utc=True)
    frame = frame.dropna(subset=[*fs.columns, "label"]).reset_index(drop=True)
    n = len(frame)
    if n < 10 * horizon + 100:
        window = f" between {start or 'the first bar'} and {end or 'the last bar'}"
        raise InputError(
            f"{symbol} {interval}{window}: {n} bars have every {fs.key} feature and a label, "
            f"too few to train on (need {10 * horizon + 100}); the longest feature windows "
            "need history before the period (run `trendcast features build` after loading it)"
        )
    train_end = int(n * fractions[0])
    val_end = int(n * (fractions[0] + fractions[1]))
    split = np.full(n, "purged", dtype=object)
    split[: train_end - horizon] = "train"
    split[train_end : val_end - horizon] = "validation"
    split[val_end:] = "test"
    frame["split"] = split
    frame = frame[frame["split"] != "purged"].reset_index(drop=True)
    return Dataset(frame, list(fs.columns), snapshot, horizon)
