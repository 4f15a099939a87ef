"""Gaps in a stored bar series: runs of missing bars between two stored ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trendcast.schema import INTERVALS, SeriesKey


@dataclass(frozen=True)
class Gap:
    symbol: str
    interval: str
    after: pd.Timestamp  # last stored bar before the hole
    before: pd.Timestamp  # first stored bar after the hole
    missing: int

    @property
    def first_missing(self) -> pd.Timestamp:
        return self.after + step_offset(self.interval)

    @property
    def last_missing(self) -> pd.Timestamp:
        return self.before - step_offset(self.interval)


def step_offset(interval: str) -> pd.DateOffset | pd.Timedelta:
    length = INTERVALS[interval]
    return pd.DateOffset(months=1) if length is None else pd.Timedelta(length)


def _pg_interval(interval: str) -> str:
    length = INTERVALS[interval]
    return "1 month" if length is None else f"{int(length.total_seconds())} seconds"


def find_gaps(
    conn: Connection,
    key: SeriesKey,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Gap]:
    """Holes between consecutive stored bars of ``key`` whose open times lie in [since, until]."""
    rows = conn.execute(
        sa.text(
            """
            SELECT open_time, next_time,
                   (SELECT count(*) FROM generate_series(open_time + CAST(:step AS interval),
                        next_time - CAST(:step AS interval), CAST(:step AS interval))) AS missing
            FROM (
                SELECT open_time, lead(open_time) OVER (ORDER BY open_time) AS next_time
                FROM market.bars
                WHERE symbol = :symbol AND interval = CAST(:interval AS market.bar_interval)
                  AND open_time >= coalesce(CAST(:since AS timestamptz), '-infinity')
                  AND open_time <= coalesce(CAST(:until AS timestamptz), 'infinity')
            ) pairs
            WHERE next_time > open_time + CAST(:step AS interval)
            ORDER BY open_time
            """
        ),
        {
            "symbol": key.symbol,
            "interval": key.interval,
            "step": _pg_interval(key.interval),
            "since": since,
            "until": until,
        },
    ).all()
    return [
        Gap(
            key.symbol,
            key.interval,
            pd.Timestamp(r.open_time),
            pd.Timestamp(r.next_time),
            r.missing,
        )
        for r in rows
    ]


def find_stored_gaps(
    engine, symbol: str | None = None, interval: str | None = None, since=None
) -> list[Gap]:
    """Gaps of every stored series (or one symbol / interval), after ``since`` when given."""
    from trendcast.catalog import stored_series
    from trendcast.schema import series_key

    with engine.connect() as conn:
        return [
            g
            for s, i in stored_series(conn, symbol, interval)
            for g in find_gaps(conn, series_key(s, i), since=since)
        ]
