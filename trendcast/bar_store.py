"""Write bars to ``market.bars`` fast and atomically.

One transaction per load: take the series' advisory lock, read which open times are already
stored, binary-COPY only the new bars straight into ``market.bars``, quarantine the rejected rows
and record the run. A crash leaves nothing half-written; a re-load inserts nothing.

Why not a staging table and ``INSERT … ON CONFLICT DO NOTHING``? Measured here on 2M bars:
the speculative insertion behind ON CONFLICT costs ~2.7x a plain insert (21 s vs 7.7 s). The
advisory lock makes the anti-join exact for every writer that takes it (history load and the
ingestion Lambda); a writer that does not gets a unique violation and a rolled-back load,
never a duplicate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from psycopg2.extras import Json, execute_values
from sqlalchemy.engine import Engine

from trendcast import pgcopy
from trendcast.bars import NUMERIC_COLUMNS
from trendcast.db import driver_cursor
from trendcast.schema import SeriesKey

COPY_CHUNK_ROWS = 500_000
_FLOATS = NUMERIC_COLUMNS
COPY_COLUMNS = ("symbol", "interval", "open_time", *NUMERIC_COLUMNS, "trades", "source")


@dataclass(frozen=True)
class Rejected:
    """A row that broke a rule: where it came from, why, and its values as received."""

    reason: str
    payload: dict


@dataclass
class LoadSummary:
    run_id: str
    symbol: str
    interval: str
    source: str
    read: int
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    first_open_time: str | None = None
    last_open_time: str | None = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def series_lock_key(key: SeriesKey) -> str:
    """Text hashed into the advisory lock every writer of a series takes."""
    return f"market.bars/{key.symbol}/{key.interval}"


def known_at_close(bars: pd.DataFrame, interval: str) -> pd.Series:
    """Ingest times for history: each bar as known when it closed (open time + interval)."""
    from trendcast.gaps import step_offset

    return bars["open_time"] + step_offset(interval)


def copy_payload(
    bars: pd.DataFrame, key: SeriesKey, source: str, with_ingest_time: bool = False
) -> bytes:
    """PostgreSQL binary COPY rows for ``COPY_COLUMNS`` (plus ingest_time when asked), built as
    one NumPy record array (symbol, interval and source are constant per load, so every row has
    the same width)."""
    n = len(bars)
    has_trades = "trades" in bars and bars["trades"].notna().all()
    texts = {
        name: value.encode()
        for name, value in (("symbol", key.symbol), ("interval", key.interval), ("source", source))
    }
    fields = [("count", ">i2")]
    fields += [("symbol_len", ">i4"), ("symbol", f"S{len(texts['symbol'])}")]
    fields += [("interval_len", ">i4"), ("interval", f"S{len(texts['interval'])}")]
    fields += [("t_len", ">i4"), ("t", ">i8")]
    for name in _FLOATS:
        fields += [(f"{name}_len", ">i4"), (name, ">f8")]
    fields += [("trades_len", ">i4")] + ([("trades", ">i8")] if has_trades else [])
    fields += [("source_len", ">i4"), ("source", f"S{len(texts['source'])}")]
    if with_ingest_time:
        fields += [("ingest_len", ">i4"), ("ingest", ">i8")]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["count"] = len(COPY_COLUMNS) + int(with_ingest_time)
    if with_ingest_time:
        rows["ingest_len"] = 8
        ingest = known_at_close(bars, key.interval).to_numpy(dtype="datetime64[ns]").view("int64")
        rows["ingest"] = pgcopy.to_pg_time(ingest)
    for name, value in texts.items():
        rows[f"{name}_len"] = len(value)
        rows[name] = value
    rows["t_len"] = 8
    ns = bars["open_time"].to_numpy(dtype="datetime64[ns]").view("int64")
    rows["t"] = pgcopy.to_pg_time(ns)
    for name in _FLOATS:
        rows[f"{name}_len"] = 8
        rows[name] = bars[name].to_numpy(dtype="float64")
    if has_trades:
        rows["trades_len"] = 8
        rows["trades"] = bars["trades"].to_numpy(dtype="int64")
    else:
        rows["trades_len"] = -1  # NULL: a length of -1 and no bytes
    return rows.tobytes()


def _chunks(bars: pd.DataFrame, size: int) -> Iterable[pd.DataFrame]:
    for start in range(0, len(bars), size):
        yield bars.iloc[start : start + size]


def store_bars(
    engine: Engine,
    key: SeriesKey,
    bars: pd.DataFrame,
    rejected: list[Rejected],
    *,
    source: str,
    kind: str,
    read: int,
    details: dict | None = None,
    on_progress: Callable[[int], None] | None = None,
    known_at: str = "close",
) -> LoadSummary:
    """Insert valid ``bars`` and quarantine ``rejected`` in one transaction; record the run."""
    summary = LoadSummary(
        run_id=str(uuid.uuid4()),
        symbol=key.symbol,
        interval=key.interval,
        source=source,
        read=read,
        details=details or {},
    )
    if len(bars):
        summary.first_open_time = bars["open_time"].iloc[0].isoformat()
        summary.last_open_time = bars["open_time"].iloc[-1].isoformat()
    with driver_cursor(engine) as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(
            "INSERT INTO market.ingestion_runs (run_id, kind, source, symbol, interval, "
            "rows_read, details) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (summary.run_id, kind, source, key.symbol, key.interval, read, Json(details or {})),
        )
        if len(bars):
            summary.inserted = copy_new_bars(cur, key, bars, source, on_progress, known_at)
        summary.duplicates = len(bars) - summary.inserted
        summary.quarantined = quarantine(cur, summary.run_id, key, source, rejected)
        cur.execute(
            "UPDATE market.ingestion_runs SET finished_at = clock_timestamp(), "
            "status = 'succeeded', rows_inserted = %s, rows_duplicate = %s, "
            "rows_quarantined = %s WHERE run_id = %s",
            (summary.inserted, summary.duplicates, summary.quarantined, summary.run_id),
        )
    return summary


def _stored_open_times(cur, key: SeriesKey, bars: pd.DataFrame) -> np.ndarray:
    """Open times (µs since 2000-01-01, sorted) already stored within the span of ``bars``."""
    rows = pgcopy.copy_out(
        cur,
        "SELECT open_time FROM market.bars WHERE symbol = %s AND interval = %s "
        "AND open_time BETWEEN %s AND %s ORDER BY open_time",
        (key.symbol, key.interval, bars["open_time"].iloc[0], bars["open_time"].iloc[-1]),
        np.dtype([("n", ">i2"), ("len", ">i4"), ("t", ">i8")]),
    )
    return rows["t"].astype("int64")


def copy_new_bars(
    cur,
    key: SeriesKey,
    bars: pd.DataFrame,
    source: str,
    on_progress=None,
    known_at: str = "now",
) -> int:
    """Inside the caller's transaction: take the series lock, COPY the bars not yet stored;
    returns how many were inserted. ``bars`` must be validated and sorted by open_time.
    ``known_at``: "now" stamps ingest_time with the transaction time (live data); "close"
    with each bar's close (history, which the exchange published as each bar closed)."""
    if bars.empty:
        return 0
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (series_lock_key(key),))
    stored = _stored_open_times(cur, key, bars)
    if len(stored):
        t_us = bars["open_time"].to_numpy(dtype="datetime64[ns]").view("int64") // 1000
        is_new = ~np.isin(t_us - pgcopy.PG_EPOCH_US, stored, assume_unique=True)
        if on_progress:
            on_progress(int((~is_new).sum()))
        bars = bars.loc[is_new]
    groups = [bars]
    if "trades" in bars and bars["trades"].isna().any():  # COPY rows need one width per group
        groups = [bars[bars["trades"].notna()], bars[bars["trades"].isna()].drop(columns="trades")]
    if bars.empty:
        return 0
    cur.execute(
        "INSERT INTO market.bar_changes (symbol, interval, first_open_time, last_open_time, bars) "
        "VALUES (%s, %s, %s, %s, %s)",
        (
            key.symbol,
            key.interval,
            bars["open_time"].iloc[0].to_pydatetime(),
            bars["open_time"].iloc[-1].to_pydatetime(),
            len(bars),
        ),
    )
    with_ingest = known_at == "close"
    columns = ", ".join(COPY_COLUMNS) + (", ingest_time" if with_ingest else "")
    copy_sql = f"COPY market.bars ({columns}) FROM STDIN WITH (FORMAT binary)"
    for group in groups:
        for chunk in _chunks(group, COPY_CHUNK_ROWS):
            # Each COPY statement is a complete binary stream: header, rows, trailer.
            body = copy_payload(chunk, key, source, with_ingest_time=with_ingest)
            pgcopy.copy_in(cur, copy_sql, body)
            if on_progress:
                on_progress(len(chunk))
    return len(bars)


def quarantine(
    cur, run_id: str | None, key: SeriesKey | None, source: str, rejected: list[Rejected]
) -> int:
    """Insert rejected rows into market.quarantine (inside the caller's transaction)."""
    if not rejected:
        return 0
    rows = [
        (
            run_id,
            source,
            key.symbol,
            key.interval,
            item.reason,
            json.dumps(item.payload, default=str),
        )
        for item in rejected
    ]
    execute_values(
        cur,
        "INSERT INTO market.quarantine (run_id, source, symbol, interval, reason, payload) "
        "VALUES %s",
        rows,
        template="(%s, %s, %s, %s, %s, %s::jsonb)",
        page_size=5000,
    )
    return len(rows)
