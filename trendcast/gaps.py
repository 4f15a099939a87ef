"""Gaps in a stored bar series: runs of bars the instrument's calendar expects but that are not
stored. Market closures (FX and stock weekends, holidays) are never gaps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trendcast.calendars import TradingCalendar
from trendcast.schema import INTERVALS, SeriesKey


@dataclass(frozen=True)
class Gap:
    """A run of consecutive expected bars that are missing."""

    symbol: str
    interval: str
    first_missing: pd.Timestamp
    last_missing: pd.Timestamp
    missing: int


def step_offset(interval: str) -> pd.DateOffset | pd.Timedelta:
    length = INTERVALS[interval]
    return pd.DateOffset(months=1) if length is None else pd.Timedelta(length)


def stored_open_times(
    conn: Connection, key: SeriesKey, since: datetime | None = None, until: datetime | None = None
) -> pd.DatetimeIndex:
    """Open times stored for ``key`` in [since, until] (UTC, sorted)."""
    rows = conn.execute(
        sa.text(
            "SELECT open_time FROM market.bars WHERE symbol = :symbol "
            "AND interval = CAST(:interval AS market.bar_interval) "
            "AND open_time >= coalesce(CAST(:since AS timestamptz), '-infinity') "
            "AND open_time <= coalesce(CAST(:until AS timestamptz), 'infinity') "
            "ORDER BY open_time"
        ),
        {"symbol": key.symbol, "interval": key.interval, "since": since, "until": until},
    ).scalars()
    return pd.DatetimeIndex(pd.to_datetime(list(rows), utc=True)).as_unit("ns")


def calendar_of(conn: Connection, symbol: str) -> TradingCalendar:
    """The calendar the instrument registry names (24/7 with a warning when unregistered)."""
    from trendcast.instruments import get_instrument

    return get_instrument(conn, symbol).trading_calendar


def missing_in(
    calendar: TradingCalendar, interval: str, stored: pd.DatetimeIndex, start, end
) -> pd.DatetimeIndex:
    """Expected open times in [start, end] that ``stored`` lacks."""
    if pd.Timestamp(start) > pd.Timestamp(end):
        return pd.DatetimeIndex([], tz="UTC")
    expected = calendar.open_times(interval, start, end)
    return expected[~expected.isin(stored)]


def runs_of(key: SeriesKey, missing: pd.DatetimeIndex, calendar: TradingCalendar) -> list[Gap]:
    """Group missing open times into runs of consecutive expected bars."""
    if missing.empty:
        return []
    expected = calendar.open_times(key.interval, missing[0], missing[-1])
    position = expected.get_indexer(missing)
    breaks = np.flatnonzero(np.diff(position) != 1) + 1
    gaps = []
    for chunk in np.split(np.arange(len(missing)), breaks):
        gaps.append(
            Gap(key.symbol, key.interval, missing[chunk[0]], missing[chunk[-1]], len(chunk))
        )
    return gaps


def find_gaps(
    conn: Connection,
    key: SeriesKey,
    since: datetime | None = None,
    until: datetime | None = None,
    calendar: TradingCalendar | None = None,
) -> list[Gap]:
    """Runs of expected-but-missing bars between the first and last stored bar of ``key`` whose
    open times lie in [since, until]; the calendar defaults to the instrument's."""
    stored = stored_open_times(conn, key, since, until)
    if len(stored) < 2:
        return []
    calendar = calendar or calendar_of(conn, key.symbol)
    return runs_of(key, missing_in(calendar, key.interval, stored, stored[0], stored[-1]), calendar)


def find_stored_gaps(
    engine, symbol: str | None = None, interval: str | None = None, since=None
) -> list[Gap]:
    """Calendar-aware gaps of every stored series (or one symbol / interval), after ``since``."""
    from trendcast.catalog import stored_series
    from trendcast.schema import series_key

    with engine.connect() as conn:
        return [
            g
            for s, i in stored_series(conn, symbol, interval)
            for g in find_gaps(conn, series_key(s, i), since=since)
        ]
