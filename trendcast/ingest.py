"""Keep ``market.bars`` current from an exchange: fetch closed bars since the last stored one,
validate, store page by page (progress survives a failure), then find and backfill gaps.

Every writer takes the series' advisory lock and inserts only open times not yet stored, so two
concurrent invocations store each bar once and count it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import runs
from trendcast.bar_store import copy_new_bars, quarantine
from trendcast.bars import validate_bars
from trendcast.db import driver_cursor
from trendcast.exchange import (
    PAGE_LIMIT,
    BinanceClient,
    BudgetExhausted,
    ExchangeError,
    parse_klines,
)
from trendcast.gaps import find_gaps, step_offset
from trendcast.history import rejected_rows
from trendcast.schema import SeriesKey


@dataclass
class SeriesResult:
    """What one invocation did for one series (the Lambda's JSON summary per symbol)."""

    symbol: str
    interval: str
    run_id: str
    status: str = "running"
    fetched: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    last_open_time: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def last_stored(engine: Engine, key: SeriesKey) -> pd.Timestamp | None:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text(
                "SELECT max(open_time) FROM market.bars WHERE symbol = :s "
                "AND interval = CAST(:i AS market.bar_interval)"
            ),
            {"s": key.symbol, "i": key.interval},
        ).scalar_one()
    return None if value is None else pd.Timestamp(value)


def closed_before(frame: pd.DataFrame, interval: str, now: pd.Timestamp) -> pd.Series:
    """True for bars whose close (open + interval) is at or before the exchange's clock."""
    return frame["open_time"] + step_offset(interval) <= now


class SeriesIngestor:
    """Fetch → validate → store for one series within one invocation's budget."""

    def __init__(
        self, engine: Engine, client: BinanceClient, key: SeriesKey, source: str, run_id: str
    ):
        self.engine, self.client, self.key, self.source = engine, client, key, source
        self.result = SeriesResult(key.symbol, key.interval, run_id)

    def store_page(self, frame: pd.DataFrame, rejected_entries, now: pd.Timestamp) -> int:
        """Validate one page and commit it; returns bars inserted."""
        frame = frame[closed_before(frame, self.key.interval, now)]
        exact_dups = frame.duplicated(
            subset=["open_time", "open", "high", "low", "close", "volume"]
        )
        frame = frame[~exact_dups].reset_index(drop=True)
        checked = validate_bars(frame, self.key.interval, now=now.to_pydatetime())
        origin = f"{self.client.base_url} {self.key.symbol} {self.key.interval}"
        rejected = list(rejected_entries) + rejected_rows(
            frame, checked.rejected_positions, checked.rejected_reasons, origin
        )
        rejected += self.client.malformed
        self.client.malformed = []
        with driver_cursor(self.engine) as cur:
            inserted = copy_new_bars(cur, self.key, checked.good, self.source)
            quarantined = quarantine(cur, self.result.run_id, self.key, self.source, rejected)
            duplicates = len(checked.good) - inserted + int(exact_dups.sum())
            runs.add_counts(
                cur,
                self.result.run_id,
                rows_read=len(frame) + int(exact_dups.sum()) + len(rejected_entries),
                rows_inserted=inserted,
                rows_duplicate=duplicates,
                rows_quarantined=quarantined,
            )
        self.result.inserted += inserted
        self.result.duplicates += duplicates
        self.result.quarantined += quarantined
        if len(checked.good):
            last = checked.good["open_time"].iloc[-1].isoformat()
            self.result.last_open_time = max(self.result.last_open_time or last, last)
        return inserted

    def fetch_range(self, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp) -> int:
        """Page through [start, end]; returns bars inserted."""
        inserted = 0
        while start <= end:
            page = self.client.klines(self.key.symbol, self.key.interval, start, end)
            self.result.fetched += page.received
            inserted += self.store_page(page.frame, page.rejected, now)
            if page.received < PAGE_LIMIT or page.frame.empty:
                break
            start = page.frame["open_time"].max() + pd.Timedelta(milliseconds=1)
        return inserted

    def run(self, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp) -> None:
        self.fetch_range(start, end, now)
        with self.engine.connect() as conn:
            gaps = find_gaps(
                conn, self.key, since=start - step_offset(self.key.interval), until=end
            )
        for gap in gaps:
            self.result.gaps_found += gap.missing
            self.result.gaps_filled += self.fetch_range(gap.first_missing, gap.last_missing, now)


def ingest_series(
    engine: Engine,
    client: BinanceClient,
    key: SeriesKey,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    lookback_bars: int = 1000,
    source: str = "exchange",
    kind: str = "ingest",
) -> SeriesResult:
    """Ingest one series up to the exchange's clock; always records and closes its run."""
    details = {"exchange": client.base_url, "start": start and str(start), "end": end and str(end)}
    run_id = runs.open_run(engine, kind, source, key, details)
    ingestor = SeriesIngestor(engine, client, key, source, run_id)
    result = ingestor.result
    try:
        now = client.server_time()
        last = last_stored(engine, key)
        step = step_offset(key.interval)
        if start is not None:
            begin = pd.Timestamp(start)
        elif last is not None:
            begin = last + step
        else:
            begin = (now - lookback_bars * step).floor("min")
        stop = min(pd.Timestamp(end), now) if end is not None else now
        ingestor.run(begin, stop, now)
        result.status = "succeeded"
    except (BudgetExhausted, ExchangeError) as exc:
        result.status = "partial" if result.inserted else "failed"
        result.error = str(exc)
        if client.malformed:  # keep the evidence even when the page never arrived
            ingestor.store_page(parse_klines([], "").frame, [], pd.Timestamp.now(tz="UTC"))
    except Exception as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        runs.close_run(engine, run_id, "failed", error=result.error)
        raise
    runs.close_run(
        engine,
        run_id,
        result.status,
        gaps_found=result.gaps_found,
        gaps_filled=result.gaps_filled,
        error=result.error,
    )
    return result
