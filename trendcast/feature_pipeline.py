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


def _series_bars(
    conn, fs: FeatureSet, symbol: str, interval: str, first_new, change_ids: str
) -> pd.DataFrame | None:
    """One series' bars from the look-back before its earliest changed bar (None: no bars)."""
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
        return None
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    bars["ingest_time"] = pd.to_datetime(bars["ingest_time"], utc=True)
    bars.insert(0, "interval", interval)
    bars.insert(0, "symbol", symbol)
    bars["compute_from"] = pd.Timestamp(first_new or bars["open_time"].min())
    bars["change_ids"] = change_ids
    return bars


def load_new_bars(
    engine: Engine, fs: FeatureSet = DEFAULT_FEATURE_SET, full: bool = False
) -> pd.DataFrame:
    """Bars of every series with unconsumed changes, from the look-back before the earliest
    changed bar. Columns: symbol, interval, OHLCV, compute_from, change_ids."""
    featurestore.register(engine, fs)
    frames = []
    with engine.connect() as conn:
        for symbol, interval, first_new, change_ids in _pending(conn, fs, full):
            bars = _series_bars(conn, fs, symbol, interval, first_new, change_ids)
            if bars is not None:
                frames.append(bars)
    if not frames:
        return bars_frame()
    return pd.concat(frames, ignore_index=True)


def bars_frame() -> pd.DataFrame:
    """An empty frame of :func:`load_new_bars`' columns."""
    return pd.DataFrame(
        columns=["symbol", "interval", *BAR_COLUMNS, "ingest_time", "compute_from", "change_ids"]
    )


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
    summary = _write_series(engine, features, fs, producer=producer, run_id=run_id)
    prune_changes(engine)
    return summary


def _write_series(
    engine: Engine, features: pd.DataFrame, fs: FeatureSet, *, producer: str, run_id: str | None
) -> dict:
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
    engine: Engine,
    fs: FeatureSet = DEFAULT_FEATURE_SET,
    full: bool = False,
    *,
    where=None,
    database_url: str | None = None,
    **kwargs,
) -> dict:
    """The whole pipeline without Mage (tests, benchmarks, and the parity check).

    ``where``: a Dask :class:`~trendcast.cluster.Placement` builds each series as a task on
    its workers (which reach the database at ``database_url``): each series still reads,
    computes and writes in one transaction of its own, so the rows are the rows an in-process
    build writes, and a rerun writes nothing."""
    if where is None or not where.distributed:
        return write_features(
            engine, compute_features(load_new_bars(engine, fs, full), fs), fs, **kwargs
        )
    import uuid

    from trendcast.cluster import map_unordered

    featurestore.register(engine, fs)
    with engine.connect() as conn:
        pending = _pending(conn, fs, full)
    run = uuid.uuid4().hex[:12]
    tasks = [(f"features-{run}-{p[0]}-{p[1]}", (database_url, fs, *p, kwargs)) for p in pending]
    parts = {s["key"]: s for s in map_unordered(where, _build_series_on_worker, tasks)}
    summary: dict = {"series": 0, "rows_computed": 0, "rows_written": 0, "failed": []}
    for symbol, interval, *_ in pending:  # merged in series order, like an in-process build
        part = parts[(symbol, interval)]
        for field in ("series", "rows_computed", "rows_written"):
            summary[field] += part[field]
        summary["failed"] += part["failed"]
    prune_changes(engine)
    return summary


def _build_series_on_worker(
    database_url: str, fs: FeatureSet, symbol, interval, first_new, change_ids, kwargs
) -> dict:
    """One series read, computed and written on a Dask worker (one transaction)."""
    from trendcast.db import normalize_url

    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            bars = _series_bars(conn, fs, symbol, interval, first_new, change_ids)
        features = compute_features(bars if bars is not None else bars_frame(), fs)
        summary = _write_series(
            engine,
            features,
            fs,
            producer=kwargs.get("producer", f"trendcast:{PIPELINE}"),
            run_id=kwargs.get("run_id"),
        )
    finally:
        engine.dispose()
    return {**summary, "key": (symbol, interval)}


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
