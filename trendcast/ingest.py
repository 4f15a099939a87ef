"""Keep ``market.bars`` current from an exchange: fetch closed bars since the last stored one,
validate, store page by page (progress survives a failure), then find and repair holes.

Every writer takes the series' advisory lock and inserts only open times not yet stored, so two
concurrent invocations store each bar once and count it once. Holes (bars the instrument's
calendar expects but that are not stored) are recorded in ``market.holes`` and retried by every
later run, not only the span the current run fetched: after the exchange's faults stop, one plain
scheduled run restores the series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import holes, runs
from trendcast.bar_store import quarantine, write_bars
from trendcast.bars import validate_bars
from trendcast.calendars import TradingCalendar
from trendcast.db import driver_cursor
from trendcast.exchange import (
    PAGE_LIMIT,
    BinanceClient,
    BudgetExhausted,
    ExchangeError,
    parse_klines,
)
from trendcast.gaps import calendar_of, missing_in, step_offset, stored_open_times
from trendcast.history import rejected_rows
from trendcast.schema import SeriesKey
from trendcast.stages import stage


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
    conflicts: int = 0
    revised: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    holes_open: int = 0
    abandoned_runs: int = 0
    last_open_time: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RepairPolicy:
    """How far back every run rescans, and how often a hole is retried."""

    repair_bars: int = 1440
    hole_attempts: int = 5


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
        self,
        engine: Engine,
        client: BinanceClient,
        key: SeriesKey,
        source: str,
        run_id: str,
        *,
        revise: bool = False,
        policy: RepairPolicy = RepairPolicy(),
        calendar: TradingCalendar | None = None,
    ):
        self.engine, self.client, self.key, self.source = engine, client, key, source
        self.revise, self.policy = revise, policy
        self.calendar = calendar or TradingCalendar()
        self.result = SeriesResult(key.symbol, key.interval, run_id)

    def store_page(self, frame: pd.DataFrame, rejected_entries, now: pd.Timestamp) -> int:
        """Validate one page and commit it; returns bars inserted. Conflicting copies of one
        open time are all quarantined (the open time stays a hole and is refetched); a bar
        that differs from the stored one is quarantined, or applied as a revision."""
        with stage("store pages"):
            return self._store_page(frame, rejected_entries, now)

    def _store_page(self, frame: pd.DataFrame, rejected_entries, now: pd.Timestamp) -> int:
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
            written = write_bars(
                cur,
                self.key,
                checked.good,
                self.source,
                revise=self.revise,
                run_id=self.result.run_id,
            )
            quarantined = quarantine(
                cur, self.result.run_id, self.key, self.source, rejected + written.conflicts
            )
            duplicates = written.duplicates + int(exact_dups.sum())
            runs.add_counts(
                cur,
                self.result.run_id,
                rows_read=len(frame) + int(exact_dups.sum()) + len(rejected_entries),
                rows_inserted=written.inserted,
                rows_duplicate=duplicates,
                rows_quarantined=quarantined,
                rows_conflicting=len(written.conflicts),
                rows_revised=written.revised,
            )
        self.result.inserted += written.inserted
        self.result.duplicates += duplicates
        self.result.quarantined += quarantined
        self.result.conflicts += len(written.conflicts)
        self.result.revised += written.revised
        if len(checked.good):
            last = checked.good["open_time"].iloc[-1].isoformat()
            self.result.last_open_time = max(self.result.last_open_time or last, last)
        return written.inserted

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

    def scan(self, begin: pd.Timestamp, now: pd.Timestamp) -> None:
        """Record as holes the expected, closed bars missing from the repair window: the last
        ``repair_bars`` bars before the exchange's clock (never before the series' first
        stored bar or this run's start) and everything this run fetched."""
        with stage("gap scan"):
            self._scan(begin, now)

    def _scan(self, begin: pd.Timestamp, now: pd.Timestamp) -> None:
        step = step_offset(self.key.interval)
        last_closed = now - step
        with self.engine.connect() as conn:
            first = conn.execute(
                sa.text(
                    "SELECT min(open_time) FROM market.bars WHERE symbol = :s "
                    "AND interval = CAST(:i AS market.bar_interval)"
                ),
                {"s": self.key.symbol, "i": self.key.interval},
            ).scalar_one()
            floor = begin if first is None else min(begin, pd.Timestamp(first))
            window = max(floor, now - self.policy.repair_bars * step)
            start = min(begin, window)
            stored = stored_open_times(conn, self.key, start, last_closed)
        missing = missing_in(self.calendar, self.key.interval, stored, start, last_closed)
        missing = missing[missing + step <= now]
        with driver_cursor(self.engine) as cur:
            self.result.gaps_found += holes.record(cur, self.key, missing, self.result.run_id)

    def repair(self, now: pd.Timestamp) -> None:
        """Retry every open hole of the series, one span at a time; a span that fails is
        counted as an attempt with its error and the next span is still tried."""
        with driver_cursor(self.engine) as cur:
            pending = holes.open_holes(cur, self.key)
        failure: Exception | None = None
        for span in holes.spans(self.key, pending, self.calendar):
            error = None
            try:
                self.fetch_range(span.first_missing, span.last_missing, now)
            except BudgetExhausted as exc:
                failure, error = exc, str(exc)
            except ExchangeError as exc:
                error = str(exc)
                if self.client.unreachable:
                    failure = exc
            with driver_cursor(self.engine) as cur:
                still = holes.open_holes(
                    cur,
                    self.key,
                    span.first_missing.to_pydatetime(),
                    span.last_missing.to_pydatetime(),
                )
                stored = self._stored(still)
                still = still[~still.isin(stored)]
                holes.attempted(
                    cur,
                    self.key,
                    still,
                    error or "the exchange did not return the bar (or returned a bad copy)",
                    self.policy.hole_attempts,
                )
            if failure is not None:
                break
        self.settle()
        if failure is not None:
            raise failure

    def settle(self) -> None:
        """Mark holes whose bars are stored as filled; count what stays open."""
        with driver_cursor(self.engine) as cur:
            self.result.gaps_filled += holes.resolve(cur, self.key, self.calendar)
            self.result.holes_open = len(holes.open_holes(cur, self.key))

    def _stored(self, times: pd.DatetimeIndex) -> pd.DatetimeIndex:
        if times.empty:
            return times
        with self.engine.connect() as conn:
            return stored_open_times(conn, self.key, times[0], times[-1])

    def run(self, begin: pd.Timestamp, stop: pd.Timestamp, now: pd.Timestamp) -> None:
        """Fetch [begin, stop], then rescan the repair window and retry every open hole."""
        try:
            self.fetch_range(begin, stop, now)
        except (BudgetExhausted, ExchangeError):
            self.settle()  # the next run rescans and resumes after the last stored bar
            raise
        self.scan(begin, now)
        self.repair(now)


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
    revise: bool = False,
    policy: RepairPolicy = RepairPolicy(),
    abandon_after_s: float | None = None,
) -> SeriesResult:
    """Ingest one series up to the exchange's clock; always records and closes its run.
    ``abandon_after_s``: runs of this series still ``running`` after that long are marked
    ``abandoned`` first (their process died)."""
    details = {
        "exchange": client.base_url,
        "start": start and str(start),
        "end": end and str(end),
        "revise": revise,
    }
    run_id = runs.open_run(engine, kind, source, key, details)
    with engine.connect() as conn:
        calendar = calendar_of(conn, key.symbol)
    ingestor = SeriesIngestor(
        engine, client, key, source, run_id, revise=revise, policy=policy, calendar=calendar
    )
    result = ingestor.result
    try:
        if abandon_after_s is not None:
            result.abandoned_runs = runs.abandon_stale(engine, key, abandon_after_s, 0.0, run_id)
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
