"""Write bars to ``market.bars`` fast and atomically.

One transaction per load: take the series' advisory lock, read the bars already stored in the
span, binary-COPY only the new bars straight into ``market.bars`` (a large load's payload is
built piece by piece on a producer thread while the server ingests the previous piece, so the
client's work overlaps the server's), quarantine the rejected rows
and the bars that differ from the stored ones (or, asked to revise, keep the replaced values in
``market.bar_revisions``), and record the run. A crash leaves nothing half-written; a re-load
inserts nothing.

Why not a staging table and ``INSERT … ON CONFLICT DO NOTHING``? The speculative insertion
behind ON CONFLICT costs a multiple of a plain insert (benchmarks/bench_load.py measures that
design as its reference figure in every run). The
advisory lock makes the anti-join exact for every writer that takes it (history load and the
ingestion Lambda); a writer that does not gets a unique violation and a rolled-back load,
never a duplicate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from psycopg2.extras import Json, execute_values
from sqlalchemy.engine import Engine

from trendcast import pgcopy
from trendcast.bars import NUMERIC_COLUMNS
from trendcast.db import driver_cursor
from trendcast.schema import SeriesKey
from trendcast.stages import stage

#: Rows per piece of a COPY stream: the client builds the next piece while the server ingests
#: this one (a piece is a few MB; at most a few wait, so memory stays small).
COPY_CHUNK_ROWS = 50_000
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
    conflicts: int = 0
    revised: int = 0
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


@dataclass
class WriteResult:
    """What one write did: new bars inserted, identical ones skipped, bars that differ from the
    stored ones either returned as conflicts (to quarantine) or applied as revisions."""

    inserted: int = 0
    duplicates: int = 0
    revised: int = 0
    conflicts: list[Rejected] = field(default_factory=list)


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
    revise: bool = False,
) -> LoadSummary:
    """Insert valid ``bars`` and quarantine ``rejected`` in one transaction; record the run.

    The commit is synchronous (the server's default): a load that reported success survives a
    crash of PostgreSQL right after it returned (see benchmarks/bench_durability.py for the
    cost). A bar that differs from the stored one is quarantined as ``conflicts with stored
    bar``, or with ``revise`` applied as a revision (see :func:`write_bars`)."""
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
        cur.execute(
            "INSERT INTO market.ingestion_runs (run_id, kind, source, symbol, interval, "
            "rows_read, details) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (summary.run_id, kind, source, key.symbol, key.interval, read, Json(details or {})),
        )
        result = WriteResult()
        if len(bars):
            result = write_bars(
                cur,
                key,
                bars,
                source,
                on_progress=on_progress,
                known_at=known_at,
                revise=revise,
                run_id=summary.run_id,
            )
        summary.inserted, summary.duplicates = result.inserted, result.duplicates
        summary.revised, summary.conflicts = result.revised, len(result.conflicts)
        summary.quarantined = quarantine(
            cur, summary.run_id, key, source, rejected + result.conflicts
        )
        cur.execute(
            "UPDATE market.ingestion_runs SET finished_at = clock_timestamp(), "
            "status = 'succeeded', rows_inserted = %s, rows_duplicate = %s, "
            "rows_quarantined = %s, rows_conflicting = %s, rows_revised = %s WHERE run_id = %s",
            (
                summary.inserted,
                summary.duplicates,
                summary.quarantined,
                summary.conflicts,
                summary.revised,
                summary.run_id,
            ),
        )
    return summary


_STORED_DTYPE = np.dtype(
    [("n", ">i2"), ("t_len", ">i4"), ("t", ">i8")]
    + [item for name in _FLOATS for item in ((f"{name}_len", ">i4"), (name, ">f8"))]
)


def _stored_bars(cur, key: SeriesKey, bars: pd.DataFrame) -> np.ndarray:
    """Stored bars within the span of ``bars`` (open time as µs since 2000-01-01, OHLCV),
    sorted by open time, moved by one binary COPY."""
    return pgcopy.copy_out(
        cur,
        "SELECT open_time, open, high, low, close, volume FROM market.bars "
        "WHERE symbol = %s AND interval = %s AND open_time BETWEEN %s AND %s ORDER BY open_time",
        (key.symbol, key.interval, bars["open_time"].iloc[0], bars["open_time"].iloc[-1]),
        _STORED_DTYPE,
    )


def _conflict(key: SeriesKey, row: pd.Series, stored: np.void, source: str) -> Rejected:
    return Rejected(
        "conflicts with stored bar",
        {
            "origin": source,
            "symbol": key.symbol,
            "interval": key.interval,
            "open_time": row["open_time"].isoformat(),
            "values": {name: float(row[name]) for name in _FLOATS},
            "stored": {name: float(stored[name]) for name in _FLOATS},
        },
    )


def write_bars(
    cur,
    key: SeriesKey,
    bars: pd.DataFrame,
    source: str,
    on_progress=None,
    known_at: str = "now",
    revise: bool = False,
    run_id: str | None = None,
) -> WriteResult:
    """Inside the caller's transaction: take the series lock, COPY the bars not yet stored,
    skip the ones stored with the same OHLCV, and handle the ones that differ: returned as
    ``conflicts`` (the caller quarantines them), or with ``revise`` applied as revisions (old
    and new values in ``market.bar_revisions``, the new values in ``market.bars`` with this
    transaction's time as ``ingest_time``, a change row for the feature pipeline).
    ``bars`` must be validated and sorted by open_time. ``known_at``: "now" stamps new bars'
    ingest_time with the transaction time (live data); "close" with each bar's close (history,
    which the exchange published as each bar closed)."""
    result = WriteResult()
    if bars.empty:
        return result
    with stage("lock and read the stored span"):
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (series_lock_key(key),)
        )
        stored = _stored_bars(cur, key, bars)
    if len(stored):
        t_us = bars["open_time"].to_numpy(dtype="datetime64[ns]").view("int64") // 1000
        t_us = t_us - pgcopy.PG_EPOCH_US
        stored_t = stored["t"].astype("int64")
        pos = np.minimum(np.searchsorted(stored_t, t_us), len(stored_t) - 1)
        present = stored_t[pos] == t_us
        same = present.copy()
        for name in _FLOATS:
            incoming = bars[name].to_numpy(dtype="float64")
            same[present] &= stored[name][pos[present]].astype("float64") == incoming[present]
        differs = present & ~same
        result.duplicates = int(same.sum())
        if on_progress:
            on_progress(int(present.sum()))
        if differs.any():
            changed = bars.loc[differs]
            if revise:
                result.revised = _revise(cur, key, changed, source, run_id)
            else:
                result.conflicts = [
                    _conflict(key, row, stored[p], source)
                    for (_, row), p in zip(changed.iterrows(), pos[differs], strict=True)
                ]
        bars = bars.loc[~present]
    if bars.empty:
        return result
    groups = [bars]
    if "trades" in bars and bars["trades"].isna().any():  # COPY rows need one width per group
        groups = [bars[bars["trades"].notna()], bars[bars["trades"].isna()].drop(columns="trades")]
    _record_change(cur, key, bars)
    with_ingest = known_at == "close"
    columns = ", ".join(COPY_COLUMNS) + (", ingest_time" if with_ingest else "")
    copy_sql = f"COPY market.bars ({columns}) FROM STDIN WITH (FORMAT binary)"
    for group in groups:
        with stage("COPY"):
            if len(group) <= COPY_CHUNK_ROWS:  # one piece: no producer thread to start
                with stage("build COPY payload"):
                    body = copy_payload(group, key, source, with_ingest_time=with_ingest)
                pgcopy.copy_in(cur, copy_sql, body)
                if on_progress:
                    on_progress(len(group))
            else:
                pieces = _payload_pieces(group, key, source, with_ingest)
                pgcopy.copy_in_stream(cur, copy_sql, pieces, on_progress)
    result.inserted = len(bars)
    return result


def _payload_pieces(
    bars: pd.DataFrame, key: SeriesKey, source: str, with_ingest: bool
) -> Iterator[tuple[bytes, int]]:
    """COPY rows for ``bars`` a chunk at a time (run on the COPY's producer thread)."""
    for chunk in _chunks(bars, COPY_CHUNK_ROWS):
        with stage("build COPY payload"):
            body = copy_payload(chunk, key, source, with_ingest_time=with_ingest)
        yield body, len(chunk)


def copy_new_bars(
    cur, key: SeriesKey, bars: pd.DataFrame, source: str, on_progress=None, known_at: str = "now"
) -> int:
    """Insert only the bars not yet stored (conflicts left to the caller); returns inserted."""
    return write_bars(cur, key, bars, source, on_progress, known_at).inserted


def _record_change(cur, key: SeriesKey, bars: pd.DataFrame) -> None:
    """The outbox row the feature pipeline consumes (same transaction as the bars)."""
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


def _revise(cur, key: SeriesKey, changed: pd.DataFrame, source: str, run_id: str | None) -> int:
    """Apply ``changed`` bars over the stored ones, keeping the replaced values."""
    rows = [
        (r.open_time.to_pydatetime(), r.open, r.high, r.low, r.close, r.volume)
        for r in changed.itertuples(index=False)
    ]
    values = ",".join(
        cur.mogrify(
            "(%s::timestamptz, %s::float8, %s::float8, %s::float8, %s::float8, %s::float8)", row
        ).decode()
        for row in rows
    )
    incoming = f"(VALUES {values}) AS v(open_time, open, high, low, close, volume)"
    cur.execute(
        "INSERT INTO market.bar_revisions (symbol, interval, open_time, old_open, old_high, "
        "old_low, old_close, old_volume, old_source, old_ingest_time, new_open, new_high, "
        "new_low, new_close, new_volume, new_source, known_at, run_id) "
        "SELECT b.symbol, b.interval, b.open_time, b.open, b.high, b.low, b.close, b.volume, "
        "b.source, b.ingest_time, v.open, v.high, v.low, v.close, v.volume, %s, now(), %s "
        f"FROM market.bars b JOIN {incoming} ON b.open_time = v.open_time "
        "WHERE b.symbol = %s AND b.interval = %s",
        (source, run_id, key.symbol, key.interval),
    )
    cur.execute(
        "UPDATE market.bars b SET open = v.open, high = v.high, low = v.low, close = v.close, "
        "volume = v.volume, source = %s, ingest_time = now() "
        f"FROM {incoming} WHERE b.symbol = %s AND b.interval = %s AND b.open_time = v.open_time",
        (source, key.symbol, key.interval),
    )
    _record_change(cur, key, changed)
    return len(rows)


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
