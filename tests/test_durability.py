"""Durability (issue 14): a history load or an ingestion that reported success survives kill -9
of the PostgreSQL server right after it returned.

The test runs its own embedded server (never the session's), loads, ingests, then SIGKILLs the
postmaster and every backend at once (no shutdown checkpoint, shared memory lost), restarts
the server on the same data directory and counts. With ``synchronous_commit = off`` a commit is
acknowledged before its WAL is flushed, and a kill right after the return loses it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast import migrate
from trendcast.config import get_settings
from trendcast.db import create_database
from trendcast.history import load_frame
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.synth import synth_bars


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_9(postmaster: int) -> None:
    """SIGKILL the postmaster and its backends, walwriter and checkpointer together."""
    victims = [postmaster, *children_of(postmaster)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in victims) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def own_server():
    import pgserver
    from pgserver.postgres_server import PostgresServer

    home = Path(tempfile.mkdtemp(prefix="tcdur"))
    pgdata = (home / "pg").resolve()
    server = pgserver.get_server(pgdata, cleanup_mode=None)

    def restart():
        PostgresServer._instances.pop(pgdata, None)
        return pgserver.get_server(pgdata, cleanup_mode="stop")

    try:
        yield server, restart
    finally:
        live = PostgresServer._instances.get(pgdata)
        if live is not None:  # the restarted server, or the first one if the test failed early
            live.cleanup_mode = "stop"
            live.cleanup()
        shutil.rmtree(home, ignore_errors=True)


def url_of(server):
    return sa.engine.URL.create(
        "postgresql+psycopg2",
        username="postgres",
        database="postgres",
        query={"host": str(server.get_postmaster_info().socket_dir)},
    )


def test_a_load_and_an_ingestion_that_returned_survive_kill_9(own_server, monkeypatch):
    server, restart = own_server
    url = create_database(url_of(server), "durable")
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    bars = synth_bars(20_000, interval="1m", start="2021-01-01")
    replay = Replay({"SYN": bars}, "1m", ReplayClock(pd.Timestamp("2021-01-10T00:00Z"), 0.0))
    http, base = start_in_thread(replay)
    monkeypatch.setenv("TRENDCAST_DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRENDCAST_EXCHANGE_URL", base)
    get_settings.cache_clear()
    from ingestion_lambda.handler import handler

    try:  # nothing stored: the last 1,000 closed bars (07:20 .. 23:59 on 9 January)
        result = handler({"symbols": ["SYN"], "intervals": ["1m"]}, None)
    finally:
        http.shutdown()
        http.server_close()
        get_settings.cache_clear()
    assert result["status"] == "succeeded" and result["inserted"] == 1_000, result
    history = bars[bars["open_time"] < pd.Timestamp("2021-01-09T07:20Z")]
    summary = load_frame(engine, history, symbol="SYN", interval="1m", source="t", origin="t")
    assert summary.inserted == 11_960
    kill_9(server.get_pid())  # right after the load returned
    engine.dispose()

    restarted = restart()
    engine = sa.create_engine(url.set(query={"host": url_of(restarted).query["host"]}))
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM market.bars")).scalar_one()
        assert stored == 1_000 + 11_960
        statuses = conn.execute(
            sa.text("SELECT kind, status FROM market.ingestion_runs ORDER BY started_at")
        ).all()
    assert [tuple(s) for s in statuses] == [("ingest", "succeeded"), ("load-history", "succeeded")]
    engine.dispose()
