"""Ingestion: one Lambda invocation for 20 symbols, with 1 and with 1,000 new bars each,
against the exchange replay on loopback and a fresh database.

Baseline, measured in the same run: a naive handler that GETs each symbol's klines and INSERTs
them row by row with ON CONFLICT DO NOTHING (no validation, no gap repair, no run records).
Target (issue 3): the 20 x 1 case in <= 2 s.
"""

from __future__ import annotations

import os
import sys
import time

import httpx
import pandas as pd
import sqlalchemy as sa

from benchmarks._harness import banner, scratch_database
from ingestion_lambda.handler import handler
from trendcast.config import get_settings
from trendcast.history import load_frame
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.synth import synth_bars

SYMBOLS = [f"SYN{i:02d}" for i in range(20)]
HISTORY = 3_000


def naive_ingest(engine: sa.Engine, url: str, start: pd.Timestamp) -> int:
    rows = 0
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur, httpx.Client() as client:
            for symbol in SYMBOLS:
                params = {
                    "symbol": symbol,
                    "interval": "1m",
                    "limit": 1000,
                    "startTime": int(start.value // 1_000_000),
                }
                for k in client.get(f"{url}/api/v3/klines", params=params).json():
                    cur.execute(
                        "INSERT INTO market.bars (symbol, interval, open_time, open, high, low, "
                        "close, volume, trades, source) VALUES (%s, '1m', "
                        "to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, 'naive') "
                        "ON CONFLICT DO NOTHING",
                        (symbol, k[0], k[1], k[2], k[3], k[4], k[5], k[8]),
                    )
                    rows += 1
        raw.driver_connection.commit()
    finally:
        raw.close()
    return rows


def case(new_bars: int) -> tuple[float, int, float]:
    bars = synth_bars(HISTORY + 1000, interval="1m", seed=3)
    history_end = HISTORY + 1000 - new_bars
    clock = bars["open_time"].iloc[HISTORY + 1000 - 1] + pd.Timedelta(minutes=1)
    replay = Replay({s: bars for s in SYMBOLS}, "1m", ReplayClock(clock, speed=0.0))
    server, url = start_in_thread(replay)
    try:
        with scratch_database() as db:
            os.environ.update(
                TRENDCAST_DATABASE_URL=db.render_as_string(hide_password=False),
                TRENDCAST_EXCHANGE_URL=url,
                TRENDCAST_SYMBOLS=",".join(SYMBOLS),
                TRENDCAST_INTERVALS="1m",
            )
            get_settings.cache_clear()
            engine = sa.create_engine(db)
            for symbol in SYMBOLS:
                load_frame(
                    engine,
                    bars.iloc[:history_end],
                    symbol=symbol,
                    interval="1m",
                    source="bench",
                    origin="bench",
                )
            began = time.perf_counter()
            summary = handler({}, None)
            ours = time.perf_counter() - began
            assert summary["status"] == "succeeded", summary
            inserted = summary["inserted"]
            assert inserted == new_bars * len(SYMBOLS), summary
            began = time.perf_counter()
            naive_ingest(engine, url, bars["open_time"].iloc[history_end])
            naive = time.perf_counter() - began
            engine.dispose()
    finally:
        server.shutdown()
        server.server_close()
    return ours, inserted, naive


def main() -> int:
    banner("bench_ingest: one invocation, 20 symbols, replay on loopback")
    results = {}
    for new_bars in (1, 1000):
        ours, inserted, naive = case(new_bars)
        results[new_bars] = ours
        print(
            f"   20 x {new_bars:>5,} new bars: handler {ours:6.2f} s ({inserted / ours:>9,.0f} "
            f"bars/s); naive GET + row INSERT {naive:6.2f} s; ratio {naive / ours:5.2f}x"
        )
    met = results[1] <= 2.0
    print(f"   target 20 x 1 in <= 2 s: {'met' if met else 'MISSED'} ({results[1]:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
