"""Data commands as a user runs them (issue 14): unreadable files, a wrong interval, conflicts
and revisions, the instrument registry, calendar-aware gaps and the holes' status."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import run_cli

from trendcast.sample_data import SAMPLES
from trendcast.synth import synth_bars, write_bars


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def assert_refused(result, *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def truncated_gz(tmp_path):
    path = tmp_path / "bars.csv.gz"
    csv = synth_bars(2_000, interval="1m").to_csv(index=False).encode()
    path.write_bytes(gzip.compress(csv)[:-4000])
    return path


def corrupt_parquet(tmp_path):
    path = tmp_path / "bars.parquet"
    write_bars(synth_bars(500, interval="1m"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\0" * 64 + data[-8:])
    return path


def utf16_csv(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(synth_bars(50, interval="1m").to_csv(index=False).encode("utf-16"))
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (truncated_gz, "compressed file ends early"),
        (corrupt_parquet, "not a readable Parquet file"),
        (utf16_csv, "not UTF-8"),
    ],
    ids=["truncated-gz", "corrupt-parquet", "utf-16"],
)
def test_unreadable_files_are_one_line_errors_and_write_nothing(
    engine, env, tmp_path, make, problem
):
    path = make(tmp_path)
    result = run_cli("load-history", str(path), "-s", "SYN", "-i", "1m", env=env)
    assert_refused(result, str(path), problem)
    assert count(engine, "market.ingestion_runs") == count(engine, "market.bars") == 0


def test_a_file_spaced_unlike_its_interval_is_refused_naming_both(engine, env, tmp_path):
    path = tmp_path / "hourly.csv"
    write_bars(synth_bars(3_000, interval="1h"), path)
    result = run_cli("load-history", str(path), "-s", "SYN", "-i", "1m", env=env)
    assert_refused(result, str(path), "1 hour apart (most common spacing)", "1m means 1 minute")
    assert count(engine, "market.bars") == 0


def test_a_changed_bar_is_a_conflict_and_loads_with_revise(engine, env, tmp_path):
    bars = synth_bars(100, interval="1h")
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_bars(bars, first)
    changed = bars.copy()
    changed.loc[40, "close"] = changed.loc[40, "low"]  # still a valid bar, another close
    write_bars(changed, second)
    assert run_cli("load-history", str(first), "-s", "SYN", "-i", "1h", env=env).returncode == 0
    conflict = run_cli("load-history", str(second), "-s", "SYN", "-i", "1h", env=env)
    assert conflict.returncode == 0, conflict.stderr
    assert "duplicates 99, quarantined 1, conflicts 1, revised 0" in conflict.stdout
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT reason FROM market.quarantine")).scalar_one()
        close = conn.execute(
            sa.text("SELECT close FROM market.bars WHERE open_time = :t"),
            {"t": bars.loc[40, "open_time"]},
        ).scalar_one()
    assert reason == "conflicts with stored bar" and close == bars.loc[40, "close"]
    revised = run_cli(
        "load-history", str(second), "-s", "SYN", "-i", "1h", "--revise", "--json", env=env
    )
    summary = json.loads(revised.stdout)
    assert (summary["revised"], summary["conflicts"], summary["inserted"]) == (1, 0, 0)
    assert count(engine, "market.bar_revisions") == 1


def test_instruments_list_show_and_set(engine, env):
    listed = json.loads(run_cli("instruments", "list", "--json", env=env).stdout)
    assert {i["symbol"]: i["calendar"] for i in listed}["EURUSD"] == "FX"
    made = run_cli("instruments", "set", "XAUUSD", "--asset-class", "fx", env=env)
    assert made.returncode == 0, made.stderr
    shown = json.loads(run_cli("instruments", "show", "XAUUSD", env=env).stdout)
    assert (shown["calendar"], shown["cost_profile"], shown["registered"]) == ("FX", "fx", True)
    bad = run_cli(
        "instruments", "set", "XAUUSD", "--asset-class", "fx", "--calendar", "XXXX", env=env
    )
    assert_refused(bad, "calendar 'XXXX': not a known calendar")
    unknown = run_cli("instruments", "show", "DOGEUSDT", env=env)
    assert json.loads(unknown.stdout)["calendar"] == "24/7"
    assert "trendcast instruments set DOGEUSDT" in unknown.stderr


def test_gaps_count_only_what_the_calendar_expects(engine, env, tmp_path):
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    week = frame[(frame["open_time"] >= "2017-09-14") & (frame["open_time"] < "2017-09-21")]
    hole = week["open_time"] == pd.Timestamp("2017-09-19T10:00Z")  # a Tuesday morning
    path = tmp_path / "eurusd.csv"
    write_bars(week[~hole], path)
    assert run_cli("load-history", str(path), "-s", "EURUSD", "-i", "1h", env=env).returncode == 0
    gaps = json.loads(run_cli("gaps", "--json", env=env).stdout)
    assert gaps == [
        {
            "symbol": "EURUSD",
            "interval": "1h",
            "first_missing": "2017-09-19T10:00:00+00:00",
            "last_missing": "2017-09-19T10:00:00+00:00",
            "missing": 1,
        }
    ]  # the weekend between Friday 21:00 and Sunday 21:00 UTC is no gap
    # the same bars under an unregistered symbol: 24/7, the weekend counts, and a warning
    assert run_cli("load-history", str(path), "-s", "EURX", "-i", "1h", env=env).returncode == 0
    unregistered = run_cli("gaps", "-s", "EURX", "--json", env=env)
    assert sum(g["missing"] for g in json.loads(unregistered.stdout)) == 1 + 48
    assert "trendcast instruments set EURX" in unregistered.stderr


def test_gaps_status_lists_recorded_holes(engine, env):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO market.holes (symbol, interval, open_time, attempts, status, "
                "last_error) VALUES ('BTCUSDT', '1m', '2024-01-01T00:00Z', 5, 'unfillable', "
                "'the exchange did not return the bar'), "
                "('BTCUSDT', '1m', '2024-01-01T00:01Z', 5, 'unfillable', "
                "'the exchange did not return the bar')"
            )
        )
    shown = json.loads(run_cli("gaps", "--status", "--json", env=env).stdout)
    assert [(h["status"], h["bars"], h["attempts"]) for h in shown] == [("unfillable", 2, 5)]
    assert run_cli("gaps", "--status", "--only", "open", "--json", env=env).stdout.strip() == "[]"
    assert_refused(run_cli("gaps", "--status", "--only", "lost", env=env), "--only 'lost'")


def test_data_health_counts_only_bars_the_calendar_expects(engine, env):
    from dashboard.data import health_of

    frame = pd.DataFrame(
        {
            "symbol": ["EURUSD", "BTCUSDT"],
            "interval": ["1h", "1h"],
            "bars": [1, 1],
            "last_open": [pd.Timestamp("2017-09-22T20:00Z")] * 2,  # Friday's last FX bar
        }
    )
    sunday = pd.Timestamp("2017-09-24T12:00Z")  # the FX market is closed until 21:00 UTC
    with engine.connect() as conn:
        health = health_of(conn, frame, sunday).set_index("symbol")
    assert health.loc["EURUSD", "bars_overdue"] == 0 and health.loc["EURUSD", "fresh"]
    assert health.loc["BTCUSDT", "bars_overdue"] == 39 and not health.loc["BTCUSDT", "fresh"]
    assert health.loc["EURUSD", "calendar"] == "FX"


def test_freshness_uses_the_replays_clock_when_it_serves_the_data(env, monkeypatch):
    from dashboard.data import exchange_clock
    from trendcast.config import get_settings
    from trendcast.replay import Replay, ReplayClock, start_in_thread

    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    clock = pd.Timestamp("2017-10-02T05:00Z")
    server, url = start_in_thread(Replay({"EURUSD": frame}, "1h", ReplayClock(clock, 0.0)))
    try:
        monkeypatch.delenv("TRENDCAST_EXCHANGE_URL", raising=False)
        monkeypatch.setenv("TRENDCAST_REPLAY_PORT", url.rsplit(":", 1)[1])
        get_settings.cache_clear()
        assert exchange_clock() == (clock, "exchange replay")
        monkeypatch.setenv("TRENDCAST_EXCHANGE_URL", "https://api.binance.com")
        get_settings.cache_clear()
        now, name = exchange_clock()
        assert name == "wall clock" and now > pd.Timestamp("2026-01-01T00:00Z")
    finally:
        server.shutdown()
        server.server_close()
        get_settings.cache_clear()
