"""Ingestion against the exchange replay over real HTTP and a real PostgreSQL.

The ground truth is the replayed file itself: after the faults clear, market.bars must hold
exactly the file's closed bars in the window, no bar lost, duplicated or altered.
"""

from __future__ import annotations

import threading
import time

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from ingestion_lambda.handler import handler
from trendcast.config import get_settings
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.sample_data import SAMPLES

WINDOW_START = pd.Timestamp("2017-09-18T00:00Z")  # a Monday
CLOCK = pd.Timestamp("2017-09-20T05:30Z")  # the 05:00 bar is still open


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame


@pytest.fixture
def replay(eurusd, engine, monkeypatch):
    """A frozen-clock replay serving the EURUSD sample, wired into the settings."""
    rep = Replay({"EURUSD": eurusd}, "1h", ReplayClock(CLOCK, speed=0.0))
    server, url = start_in_thread(rep)
    monkeypatch.setenv("TRENDCAST_EXCHANGE_URL", url)
    monkeypatch.setenv("TRENDCAST_EXCHANGE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("TRENDCAST_SYMBOLS", "EURUSD")
    monkeypatch.setenv("TRENDCAST_INTERVALS", "1h")
    get_settings.cache_clear()
    rep.url = url
    yield rep
    server.shutdown()
    server.server_close()
    get_settings.cache_clear()


def truth(eurusd: pd.DataFrame, start=WINDOW_START, clock=CLOCK) -> pd.DataFrame:
    closed = eurusd["open_time"] + pd.Timedelta(hours=1) <= clock
    frame = eurusd[(eurusd["open_time"] >= start) & closed]
    return frame[["open_time", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def stored(engine) -> pd.DataFrame:
    return pd.read_sql(
        "SELECT open_time, open, high, low, close, volume FROM market.bars "
        "WHERE symbol = 'EURUSD' ORDER BY open_time",
        engine,
    )


def assert_equals_truth(engine, eurusd, **kwargs) -> None:
    pd.testing.assert_frame_equal(stored(engine), truth(eurusd, **kwargs), check_dtype=False)


def queue(rep: Replay, *faults: dict) -> None:
    response = httpx.post(f"{rep.url}/replay/faults", json={"faults": list(faults)})
    assert response.status_code == 200, response.text


def run(**event) -> dict:
    return handler({"start": WINDOW_START.isoformat(), **event}, None)


def runs(engine) -> pd.DataFrame:
    return pd.read_sql("SELECT * FROM market.ingestion_runs ORDER BY started_at", engine)


def quarantine_reasons(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT reason FROM market.quarantine")).scalars())


def test_first_run_stores_exactly_the_closed_bars(replay, engine, eurusd):
    summary = run()
    assert summary["status"] == "succeeded"
    assert_equals_truth(engine, eurusd)
    series = summary["series"][0]
    assert series["inserted"] == len(truth(eurusd))
    assert series["last_open_time"] == "2017-09-20T04:00:00+00:00"  # never the open 05:00 bar
    run_row = runs(engine).iloc[0]
    assert run_row["status"] == "succeeded" and run_row["rows_inserted"] == series["inserted"]
    assert run_row["finished_at"] is not None


def test_scheduled_event_resumes_from_the_last_stored_bar(replay, engine, eurusd):
    run()
    replay.clock.set(pd.Timestamp("2017-09-20T09:10Z"))
    scheduled = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": "2017-09-20T09:10:00Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/trendcast-ingest"],
        "detail": {},
    }
    summary = handler(scheduled, None)
    assert summary["series"][0]["inserted"] == 4  # 05:00 .. 08:00 closed since
    assert_equals_truth(engine, eurusd, clock=pd.Timestamp("2017-09-20T09:10Z"))


def test_rerunning_the_same_window_changes_nothing(replay, engine, eurusd):
    run()
    before = pd.read_sql("SELECT * FROM market.bars ORDER BY open_time", engine)
    again = run()
    assert again["series"][0]["inserted"] == 0
    assert again["series"][0]["duplicates"] == len(before)
    after = pd.read_sql("SELECT * FROM market.bars ORDER BY open_time", engine)
    pd.testing.assert_frame_equal(before, after)  # ingest_time included: nothing rewritten


FAULTS = {
    "429": ([{"kind": "429", "retry_after": 1}], None),
    "500": ([{"kind": "500"}, {"kind": "500"}], None),
    "slow": ([{"kind": "slow", "delay_s": 2}], None),
    "malformed": ([{"kind": "malformed"}], "malformed JSON"),
    "duplicate": ([{"kind": "duplicate"}], None),
    "shuffle": ([{"kind": "shuffle"}], None),
    "drop": ([{"kind": "drop", "index": 5}], None),
    "bad_bar": ([{"kind": "bad_bar", "index": 3}], "high < low"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_leave_exactly_the_ground_truth(replay, engine, eurusd, name):
    faults, reason = FAULTS[name]
    queue(replay, *faults)  # consumed by klines requests, one fault per request
    began = time.monotonic()
    summary = run()
    elapsed = time.monotonic() - began
    assert summary["status"] == "succeeded", summary
    assert_equals_truth(engine, eurusd)
    reasons = quarantine_reasons(engine)
    if reason:
        assert len(reasons) == 1 and reason in reasons[0]
    else:
        assert reasons == []
    series = summary["series"][0]
    if name == "429":
        assert elapsed >= 1.0  # Retry-After honoured
    if name in {"drop", "bad_bar"}:
        assert (series["gaps_found"], series["gaps_filled"]) == (1, 1)
    if name == "duplicate":
        assert series["duplicates"] > 0
    assert runs(engine)["status"].tolist() == ["succeeded"]
    assert run()["series"][0]["inserted"] == 0  # and nothing more to do afterwards


def test_persistent_failure_keeps_partial_progress_and_next_run_resumes(replay, engine, eurusd):
    start = pd.Timestamp("2017-06-05T00:00Z")  # > 1,000 bars before the clock: two pages
    queue(replay, {"kind": "none"}, *[{"kind": "500"}] * 6)  # page 1 passes, page 2 fails
    summary = run(start=start.isoformat())
    series = summary["series"][0]
    assert series["status"] == "partial" and "HTTP 500" in series["error"]
    assert series["inserted"] == 1000
    assert len(stored(engine)) == 1000
    recorded = runs(engine).iloc[0]
    assert recorded["status"] == "partial" and "HTTP 500" in recorded["error"]
    resumed = handler({}, None)  # scheduled: resumes after the last stored bar
    assert resumed["status"] == "succeeded"
    assert_equals_truth(engine, eurusd, start=start)


def test_two_concurrent_invocations_equal_one(replay, engine, eurusd):
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(run())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_equals_truth(engine, eurusd)
    assert sum(r["series"][0]["inserted"] for r in results) == len(truth(eurusd))
    assert len(runs(engine)) == 2


def test_unreachable_exchange_records_failed_runs(engine, monkeypatch):
    monkeypatch.setenv("TRENDCAST_EXCHANGE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TRENDCAST_INGEST_BUDGET_S", "3")
    monkeypatch.setenv("TRENDCAST_SYMBOLS", "EURUSD,GBPUSD")
    get_settings.cache_clear()
    summary = handler({}, None)
    assert summary["status"] == "failed"
    assert "http://127.0.0.1:9" in summary["error"]
    recorded = runs(engine)
    assert recorded["status"].tolist() == ["failed", "failed"]
    assert recorded["finished_at"].notna().all()


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"symbols": ["btc"]}, "symbol 'btc'"),
        ({"intervals": ["2d"]}, "interval '2d'"),
        ({"start": "yesterday-ish"}, "event field 'start'"),
        ({"symbols": "EURUSD"}, "event field 'symbols'"),
    ],
)
def test_bad_events_are_rejected_with_the_field(replay, engine, event, message):
    summary = handler(event, None)
    assert summary["status"] == "rejected" and message in summary["error"]
    assert runs(engine).empty


def test_database_credentials_from_secrets_manager(db_url, monkeypatch):
    import json

    import boto3
    from moto import mock_aws

    from ingestion_lambda.handler import database_url_from_secret

    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(
            Name="trendcast/db",
            SecretString=json.dumps(
                {"username": "ingest", "password": "p@ss", "host": "db.internal", "port": 5433}
            ),
        )["ARN"]
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        url = database_url_from_secret(arn)
    assert url == "postgresql+psycopg2://ingest:p%40ss@db.internal:5433/trendcast"
