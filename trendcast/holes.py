"""``market.holes``: every bar the calendar expects that is not stored, until it is repaired.

A hole is recorded once (one row per missing open time) and retried by every later ingestion
run of its series, whatever span that run fetches, so a bar withheld at the end of one run is
never forgotten. Statuses: ``open`` (to retry), ``filled`` (the bar is stored), ``closed-market``
(the instrument's calendar no longer expects it), ``unfillable`` (still missing after
``TRENDCAST_INGEST_HOLE_ATTEMPTS`` attempts; kept for the record, retried no more).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trendcast.calendars import TradingCalendar
from trendcast.gaps import Gap, runs_of
from trendcast.schema import SeriesKey

STATUSES = ("open", "filled", "closed-market", "unfillable")


def record(cur, key: SeriesKey, times: pd.DatetimeIndex, run_id: str | None) -> int:
    """Record missing open times as open holes; returns how many were new."""
    if times.empty:
        return 0
    cur.execute(
        "INSERT INTO market.holes (symbol, interval, open_time, run_id) "
        "SELECT %s, %s, unnest(%s::timestamptz[]), %s ON CONFLICT DO NOTHING",
        (key.symbol, key.interval, [t.to_pydatetime() for t in times], run_id),
    )
    return cur.rowcount


def open_holes(cur, key: SeriesKey, first=None, last=None) -> pd.DatetimeIndex:
    """Open times of the series' open holes (within [first, last] when given), oldest first."""
    cur.execute(
        "SELECT open_time FROM market.holes WHERE symbol = %s AND interval = %s "
        "AND status = 'open' AND open_time >= coalesce(%s::timestamptz, '-infinity') "
        "AND open_time <= coalesce(%s::timestamptz, 'infinity') ORDER BY open_time",
        (key.symbol, key.interval, first, last),
    )
    return pd.DatetimeIndex(pd.to_datetime([r[0] for r in cur.fetchall()], utc=True)).as_unit("ns")


def attempted(
    cur, key: SeriesKey, times: pd.DatetimeIndex, error: str | None, max_attempts: int
) -> None:
    """Count one repair attempt on holes still open; past ``max_attempts`` they are unfillable."""
    if times.empty:
        return
    cur.execute(
        "UPDATE market.holes SET attempts = attempts + 1, last_attempt = now(), "
        "last_error = %s, status = CASE WHEN attempts + 1 >= %s THEN 'unfillable' ELSE status END, "
        "resolved_at = CASE WHEN attempts + 1 >= %s THEN now() END "
        "WHERE symbol = %s AND interval = %s AND status = 'open' "
        "AND open_time = ANY(%s::timestamptz[])",
        (
            error,
            max_attempts,
            max_attempts,
            key.symbol,
            key.interval,
            [t.to_pydatetime() for t in times],
        ),
    )


def resolve(cur, key: SeriesKey, calendar: TradingCalendar) -> int:
    """Close open holes whose bar is now stored (``filled``; returns how many) or that the
    calendar no longer expects (``closed-market``)."""
    cur.execute(
        "UPDATE market.holes h SET status = 'filled', resolved_at = now() "
        "WHERE h.symbol = %s AND h.interval = %s AND h.status = 'open' AND EXISTS ("
        "SELECT 1 FROM market.bars b WHERE b.symbol = h.symbol AND b.interval = h.interval "
        "AND b.open_time = h.open_time)",
        (key.symbol, key.interval),
    )
    filled = cur.rowcount
    remaining = open_holes(cur, key)
    if len(remaining):
        expected = calendar.open_times(key.interval, remaining[0], remaining[-1])
        closed = remaining[~remaining.isin(expected)]
        if len(closed):
            cur.execute(
                "UPDATE market.holes SET status = 'closed-market', resolved_at = now() "
                "WHERE symbol = %s AND interval = %s AND status = 'open' "
                "AND open_time = ANY(%s::timestamptz[])",
                (key.symbol, key.interval, [t.to_pydatetime() for t in closed]),
            )
    return filled


def spans(key: SeriesKey, times: pd.DatetimeIndex, calendar: TradingCalendar) -> list[Gap]:
    """Open holes grouped into runs of consecutive expected bars (one fetch each)."""
    return runs_of(key, times, calendar)


@dataclass(frozen=True)
class HoleSpan:
    """A run of holes of one status (what ``trendcast gaps --status`` lists)."""

    symbol: str
    interval: str
    status: str
    first: pd.Timestamp
    last: pd.Timestamp
    bars: int
    attempts: int
    first_seen: pd.Timestamp
    last_attempt: pd.Timestamp | None
    last_error: str | None

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "status": self.status,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "bars": self.bars,
            "attempts": self.attempts,
            "first_seen": self.first_seen.isoformat(),
            "last_attempt": self.last_attempt.isoformat() if self.last_attempt else None,
            "last_error": self.last_error,
        }


def listing(
    conn: Connection,
    symbol: str | None = None,
    interval: str | None = None,
    status: str | None = None,
) -> list[HoleSpan]:
    """Recorded holes, consecutive open times of one status and attempt count merged."""
    frame = pd.read_sql(
        sa.text(
            "SELECT symbol, interval::text AS interval, open_time, status, attempts, first_seen, "
            "last_attempt, last_error FROM market.holes "
            "WHERE (CAST(:s AS text) IS NULL OR symbol = :s) "
            "AND (CAST(:i AS text) IS NULL OR interval::text = :i) "
            "AND (CAST(:st AS text) IS NULL OR status = :st) "
            "ORDER BY symbol, interval, open_time"
        ),
        conn,
        params={"s": symbol, "i": interval, "st": status},
    )
    spans_out: list[HoleSpan] = []
    if frame.empty:
        return spans_out
    for col in ("open_time", "first_seen", "last_attempt"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    from trendcast.gaps import step_offset

    for (sym, ivl), group in frame.groupby(["symbol", "interval"], sort=True):
        step = step_offset(ivl)
        new_span = (
            (group["status"] != group["status"].shift())
            | (group["attempts"] != group["attempts"].shift())
            | (group["open_time"] - group["open_time"].shift() > _as_delta(step, group))
        )
        for _, span in group.groupby(new_span.cumsum()):
            spans_out.append(
                HoleSpan(
                    sym,
                    ivl,
                    span["status"].iloc[0],
                    span["open_time"].iloc[0],
                    span["open_time"].iloc[-1],
                    len(span),
                    int(span["attempts"].iloc[0]),
                    span["first_seen"].min(),
                    None if span["last_attempt"].isna().all() else span["last_attempt"].max(),
                    _last(span["last_error"]),
                )
            )
    return spans_out


def _last(values: pd.Series) -> str | None:
    present = values.dropna()
    return None if present.empty else str(present.iloc[-1])


def _as_delta(step, group: pd.DataFrame) -> pd.Timedelta:
    """Merge holes at most one step apart (months: 31 days)."""
    return step if isinstance(step, pd.Timedelta) else pd.Timedelta(days=31)
