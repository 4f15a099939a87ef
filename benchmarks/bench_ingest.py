"""Ingestion: one Lambda invocation for 20 symbols, with 1 and with 1,000 new bars each, against
the exchange replay on loopback.

Baseline, measured in the same run: a naive ingester that GETs each symbol's klines and INSERTs
the closed ones row by row with ON CONFLICT DO NOTHING (no validation, no gap repair, no run
records).
Like for like: each runs on its own fresh database on the same server, pre-loaded with the same
history; each first does one warm-up invocation (one new bar per symbol, so connections, pools
and caches are warm for both), then the clock moves on and the measured invocation fetches and
stores the same new bars. Rows written and errors are counted separately for both, and both
databases must end holding the same bars.
Target (issue 3): the 20 x 1 case in <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import httpx
import pandas as pd
import sqlalchemy as sa

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
from ingestion_lambda.handler import handler
from trendcast import migrate, stages
from trendcast.config import get_settings
from trendcast.db import create_database, drop_database, get_engine
from trendcast.history import load_frame
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.synth import synth_bars

HISTORY = 3_000
MAX_NEW = 1_000
WARM_BARS = 1


def naive_ingest(engine: sa.Engine, url: str, symbols: list[str], start: pd.Timestamp):
    """GET each symbol's klines from ``start`` and INSERT the closed ones one row at a time,
    committing per symbol; returns (rows written, rows skipped as already stored, symbols that
    failed)."""
    written = skipped = errors = 0
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with httpx.Client() as client:
            now_ms = client.get(f"{url}/api/v3/time").json()["serverTime"]
            for symbol in symbols:
                params = {
                    "symbol": symbol,
                    "interval": "1m",
                    "limit": 1000,
                    "startTime": int(start.value // 1_000_000),
                }
                try:
                    klines = client.get(f"{url}/api/v3/klines", params=params).json()
                    with conn.cursor() as cur:
                        for k in klines:
                            if k[6] >= now_ms:  # still open: its values will change
                                continue
                            cur.execute(
                                "INSERT INTO market.bars (symbol, interval, open_time, open, "
                                "high, low, close, volume, trades, source) VALUES (%s, '1m', "
                                "to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, 'naive') "
                                "ON CONFLICT DO NOTHING",
                                (symbol, k[0], k[1], k[2], k[3], k[4], k[5], k[8]),
                            )
                            written += cur.rowcount
                            skipped += 1 - cur.rowcount
                    conn.commit()
                except Exception:  # a naive ingester counts the failure and moves on
                    conn.rollback()
                    errors += 1
    finally:
        raw.close()
    return written, skipped, errors


def stored_bars(engine: sa.Engine) -> pd.DataFrame:
    """Every stored bar's values (not its source or ingest time), in a fixed order."""
    with engine.connect() as conn:
        return pd.read_sql(
            "SELECT symbol, open_time, open, high, low, close, volume, trades FROM market.bars "
            "ORDER BY symbol, open_time",
            conn,
        )


def fresh_database(server: sa.URL, bars: pd.DataFrame, symbols: list[str]) -> sa.URL:
    """A migrated database on the benchmark's server holding ``bars`` for every symbol."""
    url = create_database(server, f"trendcast_ingest_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    for symbol in symbols:
        load_frame(engine, bars, symbol=symbol, interval="1m", source="bench", origin="bench")
    engine.dispose()
    return url


def case(rec: Recorder, server: sa.URL, symbols: list[str], new_bars: int) -> None:
    total = HISTORY + WARM_BARS + MAX_NEW
    bars = synth_bars(total, interval="1m", seed=3)
    measured_from = total - new_bars  # first bar the measured invocations fetch
    history_end = measured_from - WARM_BARS  # bars stored before the warm-up
    closes = bars["open_time"] + pd.Timedelta(minutes=1)
    clock = ReplayClock(closes.iloc[measured_from - 1], speed=0.0)
    replay = Replay({s: bars for s in symbols}, "1m", clock)
    http, exchange = start_in_thread(replay)
    ours_db = fresh_database(server, bars.iloc[:history_end], symbols)
    naive_db = fresh_database(server, bars.iloc[:history_end], symbols)
    naive_engine = sa.create_engine(naive_db)
    try:
        os.environ.update(
            TRENDCAST_DATABASE_URL=ours_db.render_as_string(hide_password=False),
            TRENDCAST_EXCHANGE_URL=exchange,
            TRENDCAST_SYMBOLS=",".join(symbols),
            TRENDCAST_INTERVALS="1m",
        )
        get_settings.cache_clear()
        warm = handler({}, None)
        assert warm["status"] == "succeeded" and warm["inserted"] == WARM_BARS * len(symbols), warm
        warm_naive = naive_ingest(
            naive_engine, exchange, symbols, bars["open_time"].iloc[history_end]
        )
        assert warm_naive == (WARM_BARS * len(symbols), 0, 0), warm_naive

        clock.set(closes.iloc[total - 1])
        name = f"{len(symbols)} x {new_bars:,}"
        with rec.phase(f"handler, {name} new bars"), stages.recording() as spent:
            began = time.perf_counter()
            summary = handler({}, None)
            ours_s = time.perf_counter() - began
        with rec.phase(f"naive GET + row INSERT, {name} new bars"):
            began = time.perf_counter()
            written, skipped, errors = naive_ingest(
                naive_engine, exchange, symbols, bars["open_time"].iloc[measured_from]
            )
            naive_s = time.perf_counter() - began
        ours_errors = sum(1 for s in summary["series"] if s["status"] != "succeeded")
        ours_engine = sa.create_engine(ours_db)
        same = stored_bars(ours_engine).equals(stored_bars(naive_engine))
        ours_engine.dispose()
    finally:
        naive_engine.dispose()
        get_engine().dispose()
        http.shutdown()
        http.server_close()
        for db in (ours_db, naive_db):
            drop_database(server, db.database)

    k = f"{new_bars}"
    label = f"{name} new bars"
    rec.figure(f"ours_{k}_s", ours_s, "s", label=f"handler time, {label}")
    rec.figure(
        f"ours_{k}_rate", summary["inserted"] / ours_s, "bars/s", label=f"handler rate, {label}"
    )
    rec.figure(
        f"ours_{k}_inserted", summary["inserted"], "bars", label=f"handler, {label}: written"
    )
    rec.figure(f"ours_{k}_errors", ours_errors, "series", label=f"handler, {label}: failed series")
    rec.figure(f"naive_{k}_s", naive_s, "s", label=f"naive time, {label}", role="baseline")
    rec.figure(
        f"naive_{k}_written", written, "bars", label=f"naive, {label}: written", role="baseline"
    )
    rec.figure(
        f"naive_{k}_skipped",
        skipped,
        "bars",
        label=f"naive, {label}: already stored",
        role="baseline",
    )
    rec.figure(
        f"naive_{k}_errors",
        errors,
        "symbols",
        label=f"naive, {label}: failed symbols",
        role="baseline",
    )
    rec.figure(f"speedup_{k}", naive_s / ours_s, "x", label=f"naive time / handler time, {label}")
    rec.figure(
        f"same_rows_{k}",
        "yes" if same and summary["inserted"] == written == new_bars * len(symbols) else "NO",
        label=f"{label}: both wrote every new bar and hold the same bars",
        role="check",
    )
    # Top-level stages do not overlap: exchange requests, pages stored (validation, COPY,
    # quarantine, run counts, commit) and the gap scan; the rest is run records, the calendar,
    # the last stored bar, hole bookkeeping and Python.
    parts = {
        "exchange": ("exchange request", "exchange requests"),
        "store": ("store pages", "store pages (validate, write, quarantine, commit)"),
        "scan": ("gap scan", "scan the repair window for gaps"),
    }
    for part, (stage_name, what) in parts.items():
        rec.figure(
            f"stage_{k}_{part}_s",
            spent.get(stage_name, 0.0),
            "s",
            label=f"handler stage, {label}: {what}",
        )
    rest = ours_s - sum(spent.get(stage_name, 0.0) for stage_name, _ in parts.values())
    rec.figure(
        f"stage_{k}_rest_s",
        rest,
        "s",
        label=f"handler stage, {label}: the rest (run records, calendar, last bar, holes)",
    )
    rec.figure(
        f"stage_{k}_commit_s",
        spent.get("commit", 0.0),
        "s",
        label=f"handler stage, {label}: of all that, commits of pages, gaps and holes",
    )
    if new_bars == 1:
        rec.target("one_bar", f"handler time, {label}", ours_s, "<=", 2.0, " s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    args = parser.parse_args()
    symbols = [f"SYN{i:02d}" for i in range(args.symbols)]
    rec = Recorder(
        "ingest",
        "Ingestion: one Lambda invocation against the exchange replay",
        script=__file__,
        description=(
            "One `ingestion_lambda` handler invocation for every symbol, with one and with a "
            "thousand new one-minute bars each, against the exchange replay on loopback "
            "(validation, gap repair, run records, the `bar_changes` outbox, durable commits). "
            "Baseline: a naive ingester (GET each symbol's klines, INSERT row by row with ON "
            "CONFLICT DO NOTHING, commit per symbol). Each runs on its own fresh database on the "
            "same server with the same history; both do one warm-up invocation (one new bar per "
            "symbol) before the measured one; rows written and errors are counted separately, "
            "and both databases must end with the same bars."
        ),
        params={"symbols": args.symbols, "history_bars": HISTORY, "warm_up": "one invocation"},
    )
    with scratch_database() as server:
        for new_bars in (1, MAX_NEW):
            case(rec, server, symbols, new_bars)
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
