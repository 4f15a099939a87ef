"""What is stored: the bar series with their spans, and the bars of one series for a period.
Read-only queries shared by the commands that list, gap-check and backtest stored series."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

BAR_SERIES_COLUMNS = ("symbol", "interval", "bars", "first", "last", "sources", "quarantined")


def bar_series(engine: Engine) -> list[tuple]:
    """Per stored series: symbol, interval, bars, first and last open time (UTC, to the
    minute), sources, quarantined rows; ordered by symbol and interval."""
    query = sa.text(
        """
        SELECT b.symbol, b.interval, count(*) AS bars,
               to_char(min(open_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS first,
               to_char(max(open_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS last,
               string_agg(DISTINCT source, ',') AS sources,
               (SELECT count(*) FROM market.quarantine q
                 WHERE q.symbol = b.symbol AND q.interval = b.interval::text) AS quarantined
        FROM market.bars b GROUP BY b.symbol, b.interval ORDER BY b.symbol, b.interval
        """
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query).all()]


def stored_series(
    conn: Connection, symbol: str | None = None, interval: str | None = None
) -> list[tuple[str, str]]:
    """(symbol, interval) of every stored series, optionally only one symbol or interval."""
    return [
        (s, i)
        for s, i in conn.execute(
            sa.text(
                "SELECT DISTINCT symbol, interval::text FROM market.bars "
                "WHERE (CAST(:s AS text) IS NULL OR symbol = :s) "
                "AND (CAST(:i AS text) IS NULL OR interval::text = :i) ORDER BY 1, 2"
            ),
            {"s": symbol, "i": interval},
        ).all()
    ]


def read_bars(
    engine: Engine, symbol: str, interval: str, start: str | None = None, end: str | None = None
) -> pd.DataFrame:
    """OHLCV bars of one series with open times in [start, end] (inclusive, either open)."""
    frame = pd.read_sql(
        sa.text(
            "SELECT open_time, open, high, low, close, volume FROM market.bars "
            "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
            "AND open_time >= coalesce(CAST(:a AS timestamptz), '-infinity') "
            "AND open_time <= coalesce(CAST(:b AS timestamptz), 'infinity') "
            "ORDER BY open_time"
        ),
        engine,
        params={"s": symbol, "i": interval, "a": start, "b": end},
    )
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    return frame
