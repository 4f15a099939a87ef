"""The point-in-time feature store.

Layout: one wide table per feature set version, ``features.<name>_v<N>``, keyed by (symbol,
interval, event_time, ingest_time). Rows are only ever appended: a value that changes (a bar
backfilled late shifts every window after it) is a new row with a later ingest_time, never an
update, so "what was known at time T" stays answerable.

A row is visible at ``as_of`` when event_time <= as_of AND ingest_time <= as_of. Reads move the
candidate rows with one binary COPY per symbol and join in NumPy, which is where the speed comes
from (see benchmarks/bench_features.py).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import pgcopy
from trendcast.db import driver_cursor
from trendcast.errors import InputError
from trendcast.feature_sets import FeatureSet
from trendcast.schema import SeriesKey


def table(fs: FeatureSet) -> str:
    return f"features.{fs.key}"


def register(engine: Engine, fs: FeatureSet) -> None:
    """Create the feature set's table on first use; refuse a changed definition."""
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('features.register'))"))
        row = conn.execute(
            sa.text("SELECT fingerprint FROM features.feature_sets WHERE key = :key"),
            {"key": fs.key},
        ).first()
        if row is not None:
            if row.fingerprint != fs.fingerprint and row.fingerprint not in fs.same_bits_as:
                raise InputError(
                    f"feature set {fs.key}: its definition changed (fingerprint {row.fingerprint} "
                    f"stored, {fs.fingerprint} now); a changed definition needs a new version"
                )
            return
        columns = ",\n".join(f'"{c}" double precision NOT NULL' for c in fs.columns)
        conn.execute(
            sa.text(
                f"""
                CREATE TABLE {table(fs)} (
                    symbol            text COLLATE "C"    NOT NULL,
                    interval          market.bar_interval NOT NULL,
                    event_time        timestamptz         NOT NULL,
                    ingest_time       timestamptz         NOT NULL DEFAULT now(),
                    producer          text                NOT NULL,
                    producer_version  text                NOT NULL,
                    run_id            text,
                    {columns},
                    PRIMARY KEY (symbol, interval, event_time, ingest_time)
                )
                """
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO features.feature_sets (key, name, version, fingerprint, columns, "
                "table_name) VALUES (:key, :name, :version, :fp, :columns, :table)"
            ),
            {
                "key": fs.key,
                "name": fs.name,
                "version": fs.version,
                "fp": fs.fingerprint,
                "columns": json.dumps(list(fs.columns)),
                "table": table(fs),
            },
        )


def _row_dtype(n_features: int) -> np.dtype:
    fields = [
        ("count", ">i2"),
        ("e_len", ">i4"),
        ("event", ">i8"),
        ("i_len", ">i4"),
        ("ingest", ">i8"),
    ]
    for i in range(n_features):
        fields += [(f"l{i}", ">i4"), (f"f{i}", ">f8")]
    return np.dtype(fields)


def _copy_out(cur, query: str, params: tuple, n_features: int) -> np.ndarray:
    """Run ``COPY (query) TO STDOUT (FORMAT binary)`` for rows of (event_time, ingest_time,
    n float8 features) and return them as a NumPy record array (no NULLs allowed)."""
    return pgcopy.copy_out(cur, query, params, _row_dtype(n_features))


def _features_matrix(rows: np.ndarray, n_features: int) -> np.ndarray:
    if not len(rows):
        return np.empty((0, n_features))
    return np.column_stack([rows[f"f{i}"].astype("float64") for i in range(n_features)])


def _column_list(fs: FeatureSet) -> str:
    return ", ".join(f'"{c}"' for c in fs.columns)


def latest_rows(cur, fs: FeatureSet, key: SeriesKey, since: pd.Timestamp | None):
    """The current (latest-ingested) row per event_time, for event_time >= since:
    event times (ns), ingest times (µs since 2000-01-01, as stored) and values."""
    query = (
        f"SELECT DISTINCT ON (event_time) event_time, ingest_time, {_column_list(fs)} "
        f"FROM {table(fs)} WHERE symbol = %s AND interval = %s AND event_time >= %s "
        "ORDER BY event_time, ingest_time DESC"
    )
    since = since if since is not None else pd.Timestamp("1970-01-01", tz="UTC")
    rows = _copy_out(cur, query, (key.symbol, key.interval, since.to_pydatetime()), len(fs.columns))
    return (
        pgcopy.from_pg_time(rows["event"]),
        rows["ingest"].astype("int64"),
        _features_matrix(rows, len(fs.columns)),
    )


def write(
    engine: Engine,
    fs: FeatureSet,
    key: SeriesKey,
    frame: pd.DataFrame,
    *,
    producer: str,
    producer_version: str,
    run_id: str | None = None,
    cursor=None,
) -> int:
    """Append rows whose values differ from the current ones (new event times included);
    identical rows are skipped, so writes are idempotent. Returns rows written.
    ``frame``: event_time (UTC), the feature set's columns and optionally ingest_time (when
    the values became known; default: this transaction's time)."""
    if frame.empty:
        return 0
    if cursor is None:
        with driver_cursor(engine) as cur:
            return write(
                engine,
                fs,
                key,
                frame,
                producer=producer,
                producer_version=producer_version,
                run_id=run_id,
                cursor=cur,
            )
    cur = cursor
    cur.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"{table(fs)}/{key.symbol}/{key.interval}",),
    )
    events = frame["event_time"].to_numpy(dtype="datetime64[ns]").view("int64")
    values = frame[list(fs.columns)].to_numpy(dtype="float64")
    cur.execute("SELECT now()")
    now_us = pd.Timestamp(cur.fetchone()[0]).value // 1000 - pgcopy.PG_EPOCH_US
    if "ingest_time" in frame:
        ingest_us = frame["ingest_time"].to_numpy(dtype="datetime64[ns]").view("int64") // 1000
        ingest_us = ingest_us - pgcopy.PG_EPOCH_US
    else:
        ingest_us = np.full(len(frame), now_us, dtype="int64")
    stored_events, stored_ingest, stored_values = latest_rows(
        cur, fs, key, frame["event_time"].min()
    )
    changed = np.ones(len(frame), dtype=bool)
    if len(stored_events):
        pos = np.searchsorted(stored_events, events)
        pos_clipped = np.minimum(pos, len(stored_events) - 1)
        present = stored_events[pos_clipped] == events
        same = present.copy()
        same[present] = np.all(
            stored_values[pos_clipped[present]].view("int64") == values[present].view("int64"),
            axis=1,
        )
        changed = ~same
        # A new version of a value the store already holds becomes visible from now on, never
        # earlier: its inputs may claim an older ingest_time (history loaded late with
        # --known-at close), but an as-of read before this write must still return what the
        # store held then. And its key can never collide with the stored version's.
        replaced = present & changed
        ingest_us[replaced] = np.maximum(
            np.maximum(ingest_us[replaced], now_us), stored_ingest[pos_clipped[replaced]] + 1
        )
    if not changed.any():
        return 0
    texts = {
        "symbol": key.symbol.encode(),
        "interval": key.interval.encode(),
        "producer": producer.encode(),
        "pv": producer_version.encode(),
        "run": (run_id or str(uuid.uuid4())).encode(),
    }
    fields = [("count", ">i2")]
    for name, value in texts.items():
        fields += [(f"{name}_len", ">i4"), (name, f"S{len(value)}")]
    fields += [("e_len", ">i4"), ("event", ">i8")]
    fields += [("i_len", ">i4"), ("ingest", ">i8")]
    for i in range(len(fs.columns)):
        fields += [(f"l{i}", ">i4"), (f"f{i}", ">f8")]
    rows = np.empty(int(changed.sum()), dtype=np.dtype(fields))
    rows["count"] = 7 + len(fs.columns)
    rows["i_len"] = 8
    rows["ingest"] = ingest_us[changed]
    for name, value in texts.items():
        rows[f"{name}_len"] = len(value)
        rows[name] = value
    rows["e_len"] = 8
    rows["event"] = pgcopy.to_pg_time(events[changed])
    for i in range(len(fs.columns)):
        rows[f"l{i}"] = 8
        rows[f"f{i}"] = values[changed, i]
    columns = "symbol, interval, producer, producer_version, run_id, event_time, "
    columns += "ingest_time, " + _column_list(fs)
    pgcopy.copy_in(
        cur, f"COPY {table(fs)} ({columns}) FROM STDIN WITH (FORMAT binary)", rows.tobytes()
    )
    return int(changed.sum())


def get_latest(engine: Engine, fs: FeatureSet, symbol: str, interval: str) -> pd.Series | None:
    """The newest feature row for online serving: latest event_time, latest version of it."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    f"SELECT event_time, ingest_time, {_column_list(fs)} FROM {table(fs)} "
                    "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
                    "ORDER BY event_time DESC, ingest_time DESC LIMIT 1"
                ),
                {"s": symbol, "i": interval},
            )
            .mappings()
            .first()
        )
    return None if row is None else pd.Series(dict(row))


def get_point_in_time(
    engine: Engine,
    fs: FeatureSet,
    entities: pd.DataFrame,
    interval: str,
    features: list[str] | None = None,
) -> pd.DataFrame:
    """For each (symbol, as_of) row of ``entities``, the latest feature values with
    event_time <= as_of AND ingest_time <= as_of (NaN where nothing was known yet).
    Returns ``entities`` with event_time and the features appended, in the input order."""
    wanted = list(features or fs.columns)
    unknown = [f for f in wanted if f not in fs.columns]
    if unknown:
        raise InputError(f"features {unknown}: not in feature set {fs.key}")
    index = [fs.columns.index(f) for f in wanted]
    as_of = pd.to_datetime(entities["as_of"], utc=True).to_numpy(dtype="datetime64[ns]")
    as_of_ns = as_of.view("int64")
    # one row per feature: each becomes a column by a contiguous copy, not a strided one
    result = np.full((len(wanted), len(entities)), np.nan)
    event_out = np.full(len(entities), np.iinfo("int64").min)
    # integer codes: comparing a million symbol strings once per symbol took seconds
    codes, symbols = pd.factorize(entities["symbol"])
    with driver_cursor(engine) as cur:
        for code, symbol in enumerate(symbols):
            positions = np.flatnonzero(codes == code)
            times = as_of_ns[positions]
            events, ingests, values = _visible_candidates(cur, fs, symbol, interval, times)
            picked = _as_of_pick(events, ingests, times)
            ok = picked >= 0
            result[:, positions[ok]] = values[picked[ok]][:, index].T
            event_out[positions[ok]] = events[picked[ok]]
    out = entities.copy()
    out["event_time"] = pd.to_datetime(
        np.where(
            event_out == np.iinfo("int64").min,
            np.datetime64("NaT"),
            event_out.astype("datetime64[ns]"),
        ),
        utc=True,
    )
    for j, name in enumerate(wanted):
        out[name] = result[j]
    return out


def _visible_candidates(cur, fs: FeatureSet, symbol: str, interval: str, times: np.ndarray):
    """Rows that can answer some as_of in ``times``: from the newest row visible at the earliest
    as_of onwards, up to the latest as_of."""
    # PostgreSQL keeps microseconds: round the window outwards so no candidate is lost.
    first = pd.Timestamp(int(times.min()), tz="UTC").floor("us").to_pydatetime()
    last = pd.Timestamp(int(times.max()), tz="UTC").ceil("us").to_pydatetime()
    cur.execute(
        f"SELECT coalesce(max(event_time), '-infinity') FROM {table(fs)} WHERE symbol = %s "
        "AND interval = %s AND event_time <= %s AND ingest_time <= %s",
        (symbol, interval, first, first),
    )
    floor = cur.fetchone()[0]
    rows = _copy_out(
        cur,
        f"SELECT event_time, ingest_time, {_column_list(fs)} FROM {table(fs)} "
        "WHERE symbol = %s AND interval = %s AND event_time >= %s AND event_time <= %s "
        "AND ingest_time <= %s",
        (symbol, interval, floor, last, last),
        len(fs.columns),
    )
    return (
        pgcopy.from_pg_time(rows["event"]),
        pgcopy.from_pg_time(rows["ingest"]),
        _features_matrix(rows, len(fs.columns)),
    )


def _as_of_pick(events: np.ndarray, ingests: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the row answering each time (-1 if none): among rows with
    max(event, ingest) <= t, the greatest (event, ingest). Rows become visible at
    max(event, ingest) and stay visible, so a running argmax over visibility order does it."""
    if not len(events):
        return np.full(len(times), -1)
    visible_from = np.maximum(events, ingests)
    order = np.lexsort((ingests, events))  # rank rows by (event, ingest)
    rank = np.empty(len(events), dtype=np.int64)
    rank[order] = np.arange(len(events))
    by_visibility = np.argsort(visible_from, kind="stable")
    best_rank = np.maximum.accumulate(rank[by_visibility])
    count = np.searchsorted(visible_from[by_visibility], times, side="right")
    picked = np.full(len(times), -1)
    ok = count > 0
    picked[ok] = order[best_rank[count[ok] - 1]]
    return picked


@dataclass(frozen=True)
class TrainingSnapshot:
    path: Path
    fingerprint: str
    rows: int
    feature_set: str


def export_training_set(
    engine: Engine,
    fs: FeatureSet,
    entities: pd.DataFrame,
    interval: str,
    directory: Path,
    features: list[str] | None = None,
) -> TrainingSnapshot:
    """Point-in-time features for ``entities`` written once as Parquet, named by a content
    fingerprint (data + feature set version and definition), for MLflow to log."""
    frame = get_point_in_time(engine, fs, entities, interval, features)
    digest = hashlib.sha256()
    digest.update(f"{fs.key}:{fs.fingerprint}".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    fingerprint = digest.hexdigest()[:20]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{fs.key}-{fingerprint}.parquet"
    if not path.exists():  # immutable: the same content is never rewritten
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return TrainingSnapshot(path, fingerprint, len(frame), fs.key)
