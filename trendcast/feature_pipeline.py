"""derive_indicators: new bars (from the change log) -> indicators -> feature store.

The three steps are plain functions on DataFrames, so the Mage blocks in ``mage_pipelines/``
are thin wrappers and tests and benchmarks can run the very same code without Mage.

What is new comes from the ``market.bar_changes`` outbox: every bar write adds a change row in
its own transaction, and a feature set marks the changes it consumed in the transaction that
writes its features. So a late backfill is seen wherever its open time lies, a long load that
commits late is not skipped, and a second run with nothing new writes nothing. Features are
recomputed from the earliest changed bar (with the look-back the windows need); only rows whose
values changed are written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import featurestore
from trendcast.db import driver_cursor
from trendcast.errors import TrendcastError
from trendcast.feature_sets import DEFAULT_FEATURE_SET, FeatureSet
from trendcast.gaps import step_offset
from trendcast.schema import series_key

PIPELINE = "derive_indicators"
BAR_COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]


def producer_version() -> str:
    """The git SHA of the code computing features (TRENDCAST_GIT_SHA overrides)."""
    from trendcast.config import get_settings

    if get_settings().git_sha:
        return get_settings().git_sha
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _pending(conn, fs: FeatureSet, full: bool):
    """Per series: the earliest changed open time and the change ids not yet consumed by ``fs``
    (with ``full``, every series from its first bar)."""
    pending = conn.execute(
        sa.text(
            """
            SELECT c.symbol, c.interval::text AS interval, min(c.first_open_time) AS first_new,
                   string_agg(c.id::text, ',' ORDER BY c.id) AS change_ids
            FROM market.bar_changes c
            WHERE NOT EXISTS (SELECT 1 FROM features.consumed_changes k
                              WHERE k.feature_set = :fs AND k.change_id = c.id)
            GROUP BY c.symbol, c.interval ORDER BY 1, 2
            """
        ),
        {"fs": fs.key},
    ).all()
    if not full:
        return [(r.symbol, r.interval, r.first_new, r.change_ids) for r in pending]
    ids = {(r.symbol, r.interval): r.change_ids for r in pending}
    every = conn.execute(
        sa.text("SELECT DISTINCT symbol, interval::text AS interval FROM market.bars ORDER BY 1, 2")
    ).all()
    return [(r.symbol, r.interval, None, ids.get((r.symbol, r.interval), "")) for r in every]


def load_new_bars(
    engine: Engine, fs: FeatureSet = DEFAULT_FEATURE_SET, full: bool = False
) -> pd.DataFrame:
    """Bars of every series with unconsumed changes, from the look-back before the earliest
    changed bar. Columns: symbol, interval, OHLCV, compute_from, change_ids."""
    featurestore.register(engine, fs)
    frames = []
    with engine.connect() as conn:
        for symbol, interval, first_new, change_ids in _pending(conn, fs, full):
            params = {"s": symbol, "i": interval}
            start = None
            if first_new is not None:
                start = conn.execute(
                    sa.text(
                        "SELECT min(open_time) FROM (SELECT open_time FROM market.bars "
                        "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
                        "AND open_time < :t ORDER BY open_time DESC LIMIT :n) back"
                    ),
                    {**params, "t": first_new, "n": fs.lookback_bars(interval)},
                ).scalar_one()
                start = start or first_new
            bars = pd.read_sql(
                sa.text(
                    "SELECT open_time, open, high, low, close, volume, ingest_time "
                    "FROM market.bars WHERE symbol = :s "
                    "AND interval = CAST(:i AS market.bar_interval) "
                    "AND open_time >= coalesce(CAST(:start AS timestamptz), '-infinity') "
                    "ORDER BY open_time"
                ),
                conn,
                params={**params, "start": start},
            )
            if bars.empty:
                continue
            bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
            bars["ingest_time"] = pd.to_datetime(bars["ingest_time"], utc=True)
            bars.insert(0, "interval", interval)
            bars.insert(0, "symbol", symbol)
            bars["compute_from"] = pd.Timestamp(first_new or bars["open_time"].min())
            bars["change_ids"] = change_ids
            frames.append(bars)
    if not frames:
        return pd.DataFrame(
            columns=[
                "symbol",
                "interval",
                *BAR_COLUMNS,
                "ingest_time",
                "compute_from",
                "change_ids",
            ]
        )
    return pd.concat(frames, ignore_index=True)


def compute_features(bars: pd.DataFrame, fs: FeatureSet = DEFAULT_FEATURE_SET) -> pd.DataFrame:
    """Indicators per series with the shared library; rows from ``compute_from`` on.
    Columns: symbol, interval, event_time (the bar's close), ingest_time, the features,
    change_ids. A feature row's ingest_time is the latest ingest_time of the bars up to it: the
    moment its inputs were all known, so a backfilled bar makes every later value newer."""
    frames = []
    for (symbol, interval), group in bars.groupby(["symbol", "interval"], sort=True):
        group = group.sort_values("open_time").reset_index(drop=True)
        values = fs.compute(group[BAR_COLUMNS], interval)
        keep = (group["open_time"] >= group["compute_from"]).to_numpy()
        out = values[keep].reset_index(drop=True)
        known = group["ingest_time"].cummax()[keep].to_numpy()
        out.insert(0, "ingest_time", known)
        out.insert(0, "event_time", (group["open_time"] + step_offset(interval))[keep].to_numpy())
        out.insert(0, "interval", interval)
        out.insert(0, "symbol", symbol)
        out["change_ids"] = group["change_ids"].iloc[0]
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=["symbol", "interval", "event_time", *fs.columns, "change_ids"])
    return pd.concat(frames, ignore_index=True)


class BuildFailed(TrendcastError):
    """Some series failed; the others were built. The message has the per-series summary."""

    def __init__(self, summary: dict):
        lines = [f"{f['series']}: {f['error']}" for f in summary["failed"]]
        super().__init__(
            f"derive_indicators: {len(summary['failed'])} series failed and were left "
            f"unconsumed (the next build retries them), {summary['series']} built: "
            + "; ".join(lines)
        )
        self.summary = summary


def write_features(
    engine: Engine,
    features: pd.DataFrame,
    fs: FeatureSet = DEFAULT_FEATURE_SET,
    *,
    producer: str = f"trendcast:{PIPELINE}",
    run_id: str | None = None,
) -> dict:
    """Write each series' changed rows and mark its changes consumed, in one transaction per
    series; then drop changes every feature set has consumed. A series whose write fails is
    rolled back, reported under ``failed`` and left unconsumed; the others are still built."""
    featurestore.register(engine, fs)
    version = producer_version()
    summary: dict = {
        "series": 0,
        "rows_computed": len(features),
        "rows_written": 0,
        "failed": [],
    }
    for (symbol, interval), group in features.groupby(["symbol", "interval"], sort=True):
        key = series_key(symbol, interval)
        try:
            with driver_cursor(engine) as cur:
                written = featurestore.write(
                    engine,
                    fs,
                    key,
                    group[["event_time", "ingest_time", *fs.columns]],
                    producer=producer,
                    producer_version=version,
                    run_id=run_id,
                    cursor=cur,
                )
                ids = [int(i) for i in str(group["change_ids"].iloc[0]).split(",") if i]
                if ids:
                    cur.execute(
                        "INSERT INTO features.consumed_changes (feature_set, change_id) "
                        "SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
                        (fs.key, ids),
                    )
        except Exception as exc:  # reported per series; the others must still be built
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            summary["failed"].append(
                {"series": f"{symbol} {interval}", "error": f"{type(exc).__name__}: {error}"}
            )
            continue
        summary["series"] += 1
        summary["rows_written"] += written
    prune_changes(engine)
    return summary


def summary_line(summary: dict) -> str:
    """The one-line report both runners print."""
    line = (
        f"derive_indicators: {summary['series']} series, {summary['rows_computed']:,} rows "
        f"computed, {summary['rows_written']:,} written"
    )
    if summary.get("failed"):
        line += f", {len(summary['failed'])} failed: " + "; ".join(
            f"{f['series']}: {f['error']}" for f in summary["failed"]
        )
    return line


def prune_changes(engine: Engine) -> int:
    """Delete bar changes that every registered feature set has consumed."""
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "DELETE FROM market.bar_changes c WHERE (SELECT count(*) FROM "
                "features.consumed_changes k WHERE k.change_id = c.id) >= "
                "(SELECT count(*) FROM features.feature_sets)"
            )
        ).rowcount


def build(
    engine: Engine, fs: FeatureSet = DEFAULT_FEATURE_SET, full: bool = False, **kwargs
) -> dict:
    """The whole pipeline without Mage (tests, benchmarks, and the parity check)."""
    return write_features(
        engine, compute_features(load_new_bars(engine, fs, full), fs), fs, **kwargs
    )


def online_features(
    engine: Engine, symbol: str, interval: str, fs: FeatureSet = DEFAULT_FEATURE_SET
) -> pd.Series:
    """Features of the newest stored bar computed now from market.bars with the same code
    (what serving calls when it cannot wait for the pipeline)."""
    key = series_key(symbol, interval)
    bars = (
        pd.read_sql(
            sa.text(
                "SELECT open_time, open, high, low, close, volume FROM market.bars "
                "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
                "ORDER BY open_time DESC LIMIT :n"
            ),
            engine,
            params={"s": key.symbol, "i": key.interval, "n": fs.lookback_bars(interval) + 1},
        )
        .iloc[::-1]
        .reset_index(drop=True)
    )
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    values = fs.compute(bars, interval).iloc[-1].astype(object)
    values["event_time"] = bars["open_time"].iloc[-1] + step_offset(interval)
    return values
