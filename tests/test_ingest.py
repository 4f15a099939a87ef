"""Ingestion against the exchange replay over real HTTP and a real PostgreSQL.

The ground truth is the replayed file itself: after the faults clear, market.bars must hold
exactly the file's closed bars in the window, no bar lost, duplicated or altered.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
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


# --- Holes, conflicts, revisions, events, abandoned runs (issue 14) --------------------------


def holes_table(engine) -> pd.DataFrame:
    return pd.read_sql(
        "SELECT open_time, status, attempts, last_error FROM market.holes ORDER BY open_time",
        engine,
    )


def clear_faults(rep: Replay) -> None:
    assert httpx.delete(f"{rep.url}/replay/faults").status_code == 200


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ([{"kind": "418", "retry_after": 0.3}], None),
        ([{"kind": "html"}], "malformed JSON"),
        ([{"kind": "reset"}], None),
        ([{"kind": "empty"}], None),
    ],
    ids=["418", "html", "reset", "empty"],
)
def test_new_fault_kinds_leave_exactly_the_ground_truth(replay, engine, eurusd, faults, reason):
    queue(replay, *faults)
    summary = run()
    assert summary["status"] == "succeeded", summary
    assert_equals_truth(engine, eurusd)
    reasons = quarantine_reasons(engine)
    assert (len(reasons) == 1 and reason in reasons[0]) if reason else reasons == []
    assert summary["series"][0]["holes_open"] == 0


def test_conflicting_copies_in_one_response_are_both_quarantined_and_refetched(
    replay, engine, eurusd
):
    queue(replay, {"kind": "conflicting_duplicate", "index": 7})
    summary = run()
    assert_equals_truth(engine, eurusd)  # the real bar, refetched; never the fake copy
    reasons = quarantine_reasons(engine)
    assert len(reasons) == 2 and all("conflicting duplicate" in r for r in reasons)
    assert (summary["series"][0]["gaps_found"], summary["series"][0]["gaps_filled"]) == (1, 1)
    assert holes_table(engine)["status"].tolist() == ["filled"]


def test_a_bar_withheld_past_the_repair_is_fetched_by_the_next_scheduled_run(
    replay, engine, eurusd
):
    # withheld on the page and on the repair request: the first run must leave a recorded hole
    queue(replay, {"kind": "withhold", "index": 10, "requests": 2})
    first = run()["series"][0]
    assert first["holes_open"] == 1 and first["gaps_filled"] == 0
    hole = holes_table(engine).iloc[0]
    assert (hole["status"], hole["attempts"]) == ("open", 1)
    assert len(stored(engine)) == len(truth(eurusd)) - 1
    # a plain scheduled run (no --start) fetches nothing new but repairs the old hole
    second = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert second["series"][0]["gaps_filled"] == 1
    assert_equals_truth(engine, eurusd)
    assert holes_table(engine)["status"].tolist() == ["filled"]
    shown = run_cli_gaps_status()
    assert "filled" in shown and "EURUSD" in shown


def run_cli_gaps_status() -> str:
    import os

    from conftest import run_cli

    result = run_cli("gaps", "--status", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_one_failed_repair_does_not_drop_the_others_and_holes_give_up_after_n(
    replay, engine, eurusd, monkeypatch
):
    monkeypatch.setenv("TRENDCAST_INGEST_HOLE_ATTEMPTS", "3")
    get_settings.cache_clear()
    bars = truth(eurusd)["open_time"]
    a, b = (int(bars.iloc[i].value // 1_000_000) for i in (3, 30))
    # two holes far apart, withheld from the page and from their repair: both stay open
    queue(replay, {"kind": "withhold", "open_times": [a, b], "requests": 2})
    run()
    assert holes_table(engine)[["status", "attempts"]].values.tolist() == [["open", 1]] * 2
    # next run: its own page passes, the repair of the first hole gets an empty page
    queue(replay, {"kind": "none"}, {"kind": "empty"})
    summary = handler({}, None)["series"][0]
    assert (summary["gaps_filled"], summary["holes_open"]) == (1, 1)
    table = holes_table(engine)
    assert table["status"].tolist() == ["open", "filled"]
    assert table["attempts"].tolist() == [2, 1]
    # the first bar disappears from the exchange for good: unfillable after 3 attempts
    data = replay.series["EURUSD"]
    keep = data.open_ms != a
    data.open_ms, data.ohlcv, data.trades = data.open_ms[keep], data.ohlcv[keep], data.trades[keep]
    handler({}, None)
    assert holes_table(engine)["status"].tolist() == ["unfillable", "filled"]
    before = replay.requests
    assert handler({}, None)["series"][0]["holes_open"] == 0
    assert replay.requests - before == 1  # only its own page: the unfillable hole is left alone


def test_fx_weekend_is_never_a_hole(replay, engine, eurusd):
    replay.clock.set(pd.Timestamp("2017-09-25T03:30Z"))  # Monday morning, after a weekend
    summary = run(start="2017-09-21T00:00:00+00:00")["series"][0]
    assert summary["gaps_found"] == 0 and summary["holes_open"] == 0
    assert holes_table(engine).empty
    assert_equals_truth(
        engine, eurusd, start=pd.Timestamp("2017-09-21T00:00Z"), clock=replay.clock.now()
    )


@pytest.mark.parametrize("seed", [14, 2])
def test_seeded_random_faults_then_one_clean_scheduled_run_restore_the_exchange(
    replay, engine, eurusd, seed
):
    from trendcast.replay import random_faults

    start = pd.Timestamp("2017-05-01T00:00Z")  # ~2,500 bars: three pages per full fetch
    faults = random_faults(seed=seed, count=40, rate=0.6)
    queue(replay, *faults)
    for _ in range(4):  # faulty runs, as the schedule would make them
        handler({"start": start.isoformat()}, None)
        replay.clock.advance(3 * 3600)
    pending = httpx.get(f"{replay.url}/replay/state").json()["pending_faults"]
    consumed = faults[: len(faults) - pending]
    assert sum(f["kind"] != "none" for f in consumed) >= 6  # the faults really happened
    clear_faults(replay)  # the exchange behaves again
    replay.clock.advance(3600)
    clean = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert clean["status"] == "succeeded", clean
    got, want = stored(engine), truth(eurusd, start=start, clock=replay.clock.now())
    lost = set(want["open_time"]) - set(got["open_time"])
    assert not lost, f"{len(lost)} bars lost"
    assert not got["open_time"].duplicated().any()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)  # 0 wrong


def correct_close(replay: Replay, open_time: pd.Timestamp, factor: float) -> None:
    """The exchange corrects one bar's close (and high, to stay a valid bar)."""
    data = replay.series["EURUSD"]
    i = int(np.searchsorted(data.open_ms, int(open_time.value // 1_000_000)))
    data.ohlcv = data.ohlcv.copy()
    close = data.ohlcv[i, 3] * factor
    data.ohlcv[i, 3] = close
    data.ohlcv[i, 1] = max(data.ohlcv[i, 1], close)


def test_a_changed_bar_is_a_conflict_by_default_and_a_revision_on_request(replay, engine, eurusd):
    run()
    target = truth(eurusd).iloc[5]["open_time"]
    before = pd.read_sql("SELECT * FROM market.bars ORDER BY open_time", engine)
    correct_close(replay, target, 1.0005)
    conflicted = run()["series"][0]
    assert (conflicted["conflicts"], conflicted["duplicates"]) == (1, len(before) - 1)
    assert quarantine_reasons(engine) == ["conflicts with stored bar"]
    pd.testing.assert_frame_equal(
        before, pd.read_sql("SELECT * FROM market.bars ORDER BY open_time", engine)
    )
    assert runs(engine)["rows_conflicting"].tolist() == [0, 1]

    revised = run(revise=True)["series"][0]
    assert (revised["revised"], revised["conflicts"]) == (1, 0)
    new = replay.series["EURUSD"].ohlcv
    with engine.connect() as conn:
        rev = conn.execute(sa.text("SELECT * FROM market.bar_revisions")).one()
        bar = conn.execute(
            sa.text("SELECT close, ingest_time FROM market.bars WHERE open_time = :t"),
            {"t": target},
        ).one()
    old_close = before.set_index("open_time").loc[target, "close"]
    assert rev.old_close == old_close and rev.new_close == bar.close != old_close
    i = int(np.searchsorted(replay.series["EURUSD"].open_ms, int(target.value // 1_000_000)))
    assert bar.close == new[i, 3]
    assert bar.ingest_time == rev.known_at > before["ingest_time"].max()
    assert runs(engine)["rows_revised"].tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"start": {}}, "event field 'start': Value error, must be an ISO 8601 time string"),
        ({"start": []}, "event field 'start'"),
        ({"start": True}, "event field 'start'"),
        ({"start": 1505692800000}, "must be an ISO 8601 time string, got int"),
        ({"symbols": []}, "event field 'symbols'"),
        ({"intervals": []}, "event field 'intervals'"),
        ({"symbols": [1]}, "event field 'symbols.0'"),
        ({"revise": "yes"}, "event field 'revise'"),
        (
            {"start": "2017-09-19T00:00Z", "end": "2017-09-18T00:00Z"},
            "must be before end",
        ),
        (
            {"start": "2099-01-01T00:00Z"},
            "event field 'start': 2099-01-01 00:00:00+00:00 is beyond",
        ),
        ({"end": "2099-01-01T00:00Z"}, "event field 'end'"),
        ({"start": "2007-09-18T00:00Z"}, "more than TRENDCAST_INGEST_MAX_WINDOW_BARS=20,000"),
        ({"symbols": ["GBPUSD"]}, "event field 'symbols': 'GBPUSD' is not listed"),
    ],
)
def test_bad_events_are_rejected_before_anything_is_written(replay, engine, event, message):
    summary = handler(event, None)
    assert summary["status"] == "rejected", summary
    assert message in summary["error"]
    assert runs(engine).empty


@pytest.mark.parametrize("event", [[], True, "start"])
def test_an_event_that_is_not_an_object_is_rejected(replay, engine, event):
    summary = handler(event, None)
    assert summary == {
        "status": "rejected",
        "error": f"event: must be a JSON object, got {type(event).__name__}",
    }
    assert runs(engine).empty


def test_a_killed_ingestion_is_marked_abandoned_by_the_next_run(replay, engine, env, monkeypatch):
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO

    child_env = {**env, "TRENDCAST_EXCHANGE_URL": replay.url, "TRENDCAST_INGEST_BUDGET_S": "1"}
    queue(replay, {"kind": "slow", "delay_s": 30})  # the child hangs on its first page
    child = subprocess.Popen(
        [sys.executable, "-c", "from ingestion_lambda.handler import handler; handler({})"],
        env=child_env,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while runs(engine).empty and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert runs(engine)["status"].tolist() == ["running"]
    clear_faults(replay)
    monkeypatch.setenv("TRENDCAST_INGEST_BUDGET_S", "1")
    monkeypatch.setenv("TRENDCAST_INGEST_ABANDON_MARGIN_S", "0.5")
    get_settings.cache_clear()
    time.sleep(1.6)  # past budget + margin
    summary = handler({}, None)
    assert summary["series"][0]["abandoned_runs"] == 1
    recorded = runs(engine)
    assert recorded["status"].tolist()[0] == "abandoned"
    assert "abandoned" in recorded["error"].iloc[0]
    from trendcast.runs import ingestion_note

    assert "1 abandoned run(s) (EURUSD 1h x1)" in ingestion_note(engine.url)
