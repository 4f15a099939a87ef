"""The prediction log against a real PostgreSQL: rows are written in batches; a burst, a slow
database, a database stopped under load and a journal left by a killed process all end with
every prediction stored exactly once; rows are dropped (and counted) only past the journal's
disk budget; a request never waits."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.prediction_log import Entry, PredictionLog
from trendcast import migrate
from trendcast.db import create_database


def entries(n: int, version: int = 1, request: str | None = None, shadow=False) -> list[Entry]:
    request = request or uuid.uuid4().hex
    return [
        Entry(
            request,
            "2026-11-22T10:00:00+00:00",
            "EURUSD",
            "1h",
            "2017-10-02T12:00:00+00:00",
            "EURUSD_1h_h4",
            version,
            "production" if not shadow else "challenger",
            shadow,
            {"rsi_14": 50.0 + i},
            0.001 * i,
            1.5,
            i,
        )
        for i in range(n)
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def counts(engine) -> tuple[int, int]:
    """(rows, distinct log keys) in serving.predictions."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text("SELECT count(*), count(DISTINCT log_key) FROM serving.predictions")
            ).one()
        )


def test_rows_reach_the_table_in_batches(engine, db_url, tmp_path):
    log = PredictionLog(
        db_url.render_as_string(hide_password=False), 1000, tmp_path / "journal", linger_s=0.1
    )
    try:
        log.put(entries(250))
        assert log.flush()
    finally:
        log.close()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT request_id, inputs, prediction, source FROM serving.predictions")
        ).all()
    assert len(rows) == 250 and log.written == 250 and log.dropped == 0
    assert {r.source for r in rows} == {"live"}
    assert sorted(r.inputs["rsi_14"] for r in rows)[:2] == [50.0, 51.0]


def test_every_field_lands_as_sent_whatever_characters_it_holds(engine, db_url, tmp_path):
    """Rows go in by COPY's text format: a model name, alias or symbol with a tab, a newline, a
    carriage return or a backslash (and a JSON value that needs escaping) must land as sent,
    not split the row, shift a column or lose the batch."""
    hostile = "m\tname\\with\nall\rof\\N them"
    entry = Entry(
        uuid.uuid4().hex,
        "2026-11-22T10:00:00.123456+00:00",
        "EUR\tUSD",
        None,
        None,
        hostile,
        7,
        "alias\\N",
        True,
        {"rsi_14": -1.25e-300, 'quote"back\\slash': 3.4028234663852886e38},
        -0.000123456789,
        0.25,
        3,
    )
    log = PredictionLog(
        db_url.render_as_string(hide_password=False), 1000, tmp_path / "journal", linger_s=0.05
    )
    try:
        log.put([entry])
        assert log.flush()
    finally:
        log.close()
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM serving.predictions")).mappings().one()
    assert (row["model_name"], row["alias"], row["symbol"]) == (hostile, "alias\\N", "EUR\tUSD")
    assert row["interval"] is None and row["event_time"] is None
    assert row["shadow"] is True and row["model_version"] == 7
    assert {k: float(v) for k, v in row["inputs"].items()} == entry.inputs  # jsonb: numeric
    assert row["prediction"] == entry.prediction and row["latency_ms"] == 0.25
    assert row["predicted_at"].isoformat() == entry.predicted_at
    assert row["log_key"] == entry.log_key and log.spilled == 0 and log.dropped == 0


def test_a_burst_of_40_requests_of_1000_rows_loses_nothing(engine, db_url, tmp_path):
    """The issue's burst: 40 requests of 1,000 rows (and their shadow scores) in 2 s; before the
    journal the queue overflowed and 6,000 rows were dropped."""
    log = PredictionLog(db_url.render_as_string(hide_password=False), 50_000, tmp_path / "j")
    try:
        for _ in range(40):
            request = uuid.uuid4().hex
            log.put(entries(1000, request=request) + entries(1000, 2, request, shadow=True))
            time.sleep(0.05)
        assert log.flush(timeout_s=120)
    finally:
        log.close()
    assert log.dropped == 0
    assert counts(engine) == (80_000, 80_000)


def test_database_down_journals_without_blocking_and_drops_only_past_the_budget(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/trendcast"
    budget = 40_000  # room for ~200 of the 300 rows (a journal line is ~200 bytes)
    log = PredictionLog(url, 3, tmp_path / "journal", spill_bytes=budget, linger_s=0.05)
    try:
        started = time.perf_counter()
        for _ in range(10):
            log.put(entries(30))  # 300 rows: the first ~100 fit the journal's budget
        handed = time.perf_counter() - started
        deadline = time.monotonic() + 20
        while log.spilled + log.dropped < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        log.close()
    assert handed < 0.05  # the request path never waits on the database or the disk
    assert log.written == 0 and log.spilled + log.dropped == 300
    assert log.spilled > 100 and log.dropped > 0
    journal = sum(p.stat().st_size for p in (tmp_path / "journal").glob("*.copy"))
    assert budget - 400 < journal <= budget  # full to the budget, never past it
    assert (
        len(b"".join(p.read_bytes() for p in (tmp_path / "journal").glob("*.copy")).split(b"\n"))
        - 1
        == log.spilled
    )


@pytest.fixture
def own_server(tmp_path_factory):
    """A PostgreSQL of this test's own, which it may stop and start again."""
    import pgserver

    home = Path(tempfile.mkdtemp(prefix="tcpl"))  # short: the socket lives under it
    server = pgserver.get_server(home / "pg", cleanup_mode="stop")
    admin = sa.engine.make_url(server.get_uri()).set(drivername="postgresql+psycopg2")
    url = create_database(admin, "predictions")
    migrate.upgrade(url)
    try:
        yield server, url
    finally:
        from pgserver._commands import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None
        with contextlib.suppress(Exception):  # already stopped
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=home / "pg", user=user, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(list(args), pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None, timeout=60)


@pytest.mark.slow
def test_postgres_stopped_30s_under_load_every_prediction_lands_exactly_once(own_server, tmp_path):
    """Requests keep coming while PostgreSQL is down for 30 s; after it is back every row is in
    the table once (the journal is replayed; a replayed segment adds nothing twice)."""
    server, url = own_server
    pgdata = server.pgdata
    engine = sa.create_engine(url)
    log = PredictionLog(
        url.render_as_string(hide_password=False),
        50_000,
        tmp_path / "journal",
        linger_s=0.05,
        retry_s=0.5,
    )
    sent, waits, stop = [0], [], threading.Event()

    def load() -> None:
        while not stop.is_set():
            batch = entries(20)
            started = time.perf_counter()
            log.put(batch)
            waits.append(time.perf_counter() - started)
            sent[0] += len(batch)
            time.sleep(0.01)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(2)
        _pg_ctl(pgdata, "-w", "-m", "immediate", "stop")
        time.sleep(30)
        assert log.spilled > 0 and log.dropped == 0
        server.ensure_postgres_running()  # the same data directory and socket
        time.sleep(3)
    finally:
        stop.set()
        worker.join()
    try:
        assert log.flush(timeout_s=120), f"backlog {log.backlog()}"
    finally:
        log.close()
    assert log.dropped == 0
    assert counts(engine) == (sent[0], sent[0])
    assert max(waits) < 0.05
    assert not list((tmp_path / "journal").glob("*.copy"))  # replayed and removed
    engine.dispose()


def test_slow_database_spills_and_then_lands_every_row_once(engine, db_url, tmp_path):
    """The table is locked (a long migration, a vacuum full): the writer waits, the journal
    takes the rows, and they land once the lock is gone."""
    log = PredictionLog(
        db_url.render_as_string(hide_password=False), 50_000, tmp_path / "j", linger_s=0.05
    )
    locker = engine.connect()
    transaction = locker.begin()
    locker.execute(sa.text("LOCK TABLE serving.predictions IN ACCESS EXCLUSIVE MODE"))
    try:
        for _ in range(30):
            log.put(entries(100))
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while log.spilled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.spilled > 0 and log.written == 0
    finally:
        transaction.rollback()
        locker.close()
    try:
        assert log.flush(timeout_s=60)
    finally:
        log.close()
    assert log.dropped == 0 and counts(engine) == (3000, 3000)


def test_a_journal_left_by_a_killed_process_is_replayed_once(engine, db_url, tmp_path):
    """Rows journaled by a process that died before the database came back are stored by the
    next one; the same segment replayed twice adds nothing."""
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/trendcast"
    dead = PredictionLog(down, 10, tmp_path / "journal", linger_s=0.05)
    dead.put(entries(500))
    deadline = time.monotonic() + 10
    while dead.spilled < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    dead.close(timeout_s=1)
    (segment,) = (tmp_path / "journal").glob("*.copy")
    shutil.copy(segment, tmp_path / "journal" / f"9{segment.name}")  # as if replayed twice
    with open(segment, "ab") as handle:
        handle.write(b'["cut short by kill -9", ')  # a line the crash cut in half
    log = PredictionLog(db_url.render_as_string(hide_password=False), 10, tmp_path / "journal")
    try:
        deadline = time.monotonic() + 30
        while list((tmp_path / "journal").glob("*.copy")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log.close()
    assert counts(engine) == (500, 500)


def _wait_for_no_segments(directory: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while list(directory.glob("*.copy")) + list(directory.glob("*.jsonl")):
        assert time.monotonic() < deadline, f"segments left: {sorted(os.listdir(directory))}"
        time.sleep(0.1)


def test_a_journal_left_by_the_previous_version_is_replayed(engine, db_url, tmp_path):
    """Segments journaled before the log wrote COPY text (JSON lines, ``*.jsonl``) are still
    stored, each row once, with its inputs as they were sent."""
    import json

    journal = tmp_path / "journal"
    journal.mkdir()
    old = entries(40, request="before-the-upgrade")
    lines = [json.dumps(e.values(), separators=(",", ":")) for e in old]
    (journal / "1-1.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:30])  # cut short
    log = PredictionLog(db_url.render_as_string(hide_password=False), 10, journal)
    try:
        _wait_for_no_segments(journal)
    finally:
        log.close()
    assert counts(engine) == (40, 40)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.text("SELECT log_key, inputs FROM serving.predictions")).all()
        )
    assert stored == {e.log_key: e.inputs for e in old}


def test_a_segment_postgresql_refuses_is_set_aside_and_the_next_ones_land(engine, db_url, tmp_path):
    """A journal segment with a row PostgreSQL refuses (malformed by hand, a version that is
    not a number) would fail every replay after it: it is renamed ``*.rejected``, kept whole for
    an operator and counted; the segments after it land."""
    journal = tmp_path / "journal"
    journal.mkdir()
    first, last = entries(30), entries(20)
    bad = entries(5)[0].copy_line().replace("\t1\tproduction\t", "\tone\tproduction\t")
    (journal / "1-1.copy").write_text("".join(e.copy_line() for e in first))
    (journal / "2-1.copy").write_text(entries(4)[1].copy_line() + bad)
    (journal / "3-1.copy").write_text("".join(e.copy_line() for e in last))
    log = PredictionLog(db_url.render_as_string(hide_password=False), 10, journal)
    try:
        _wait_for_no_segments(journal)
        assert log.flush(timeout_s=5)
    finally:
        log.close()
    assert counts(engine) == (50, 50)
    assert log.rejected == 2 and log.dropped == 0
    (rejected,) = journal.glob("*.rejected")
    assert rejected.name == "2-1.rejected" and rejected.read_text().endswith(bad)


def test_rows_rendered_by_the_service_parse_back_to_what_was_sent(engine, db_url, tmp_path):
    """The request path's renderer (``copy_lines``: orjson for the inputs, the clock formatted
    once a second): every value, the timestamp and the key reach the table as given."""
    from datetime import UTC, datetime

    from serving.prediction_log import copy_lines, new_request_id, utc_now_text

    request_id = new_request_id()
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert request_id != new_request_id()
    before = datetime.now(UTC)
    at = utc_now_text()
    assert before <= datetime.fromisoformat(at) <= datetime.now(UTC)
    inputs = [
        {"rsi_14": 1e-05, "ret_1": -0.0, "atr": 3.4e38, "big": 2**70, "small": 5e-324},
        {"rsi_14": 0.1, "ret_1": 123456789.125, "atr": 1, "big": -(2**63), "small": -1e300},
    ]
    text = copy_lines(
        request_id,
        at,
        [("EURUSD", "1h", "2017-10-02T12:00:00+00:00"), (None, None, None)],
        ("EURUSD_1h_h4", 7, "production"),
        False,
        inputs,
        [0.25, -1.5e-7],
        2.5,
    )
    log = PredictionLog(db_url.render_as_string(hide_password=False), 10, tmp_path / "journal")
    try:
        log.put_text(text, 2)
        assert log.flush()
    finally:
        log.close()
    with engine.connect() as conn:
        stored = (
            conn.execute(sa.text("SELECT * FROM serving.predictions ORDER BY log_key"))
            .mappings()
            .all()
        )
    assert [r["log_key"] for r in stored] == [f"{request_id}:0:p", f"{request_id}:1:p"]
    # jsonb keeps numbers as numeric (3.4e38 comes back as an integer): equal as numbers
    assert [{k: float(v) for k, v in r["inputs"].items()} for r in stored] == [
        {k: float(v) for k, v in row.items()} for row in inputs
    ]
    assert stored[0]["inputs"]["big"] == 2**70 and stored[1]["inputs"]["big"] == -(2**63)
    assert [r["prediction"] for r in stored] == [0.25, -1.5e-7]
    assert stored[0]["predicted_at"] == datetime.fromisoformat(at)
    assert (stored[0]["symbol"], stored[1]["symbol"], stored[1]["event_time"]) == (
        "EURUSD",
        None,
        None,
    )
    assert {(r["model_name"], r["model_version"], r["alias"], r["shadow"]) for r in stored} == {
        ("EURUSD_1h_h4", 7, "production", False)
    }
