"""The prediction log's queue and writer against a real PostgreSQL, and against one that is not
there: rows are written in batches, or dropped and counted, and a request never waits."""

from __future__ import annotations

import socket
import time

import sqlalchemy as sa

from serving.prediction_log import Entry, PredictionLog


def entries(n: int, version: int = 1) -> list[Entry]:
    return [
        Entry(
            f"req-{i}",
            "2026-11-22T10:00:00+00:00",
            "EURUSD",
            "1h",
            "2017-10-02T12:00:00+00:00",
            "EURUSD_1h_h4",
            version,
            "production",
            False,
            {"rsi_14": 50.0 + i},
            0.001 * i,
            1.5,
        )
        for i in range(n)
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def test_rows_reach_the_table_in_batches(engine, db_url):
    log = PredictionLog(db_url.render_as_string(hide_password=False), capacity=1000, linger_s=0.1)
    try:
        log.put(entries(250))
        log.flush()
    finally:
        log.close()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT request_id, inputs, prediction, source FROM serving.predictions")
        ).all()
    assert len(rows) == 250 and log.written == 250 and log.dropped == 0
    assert {r.source for r in rows} == {"live"}
    assert sorted(r.inputs["rsi_14"] for r in rows)[:2] == [50.0, 51.0]


def test_database_down_drops_and_counts_without_blocking():
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/trendcast"
    log = PredictionLog(url, capacity=3, linger_s=0.05)
    try:
        started = time.perf_counter()
        log.put(entries(10))  # queue full or database down: either way counted, never waited
        assert time.perf_counter() - started < 0.05
        deadline = time.monotonic() + 10
        while log.dropped < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.dropped == 10 and log.written == 0
    finally:
        log.close()
