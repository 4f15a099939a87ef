"""The ``trendcast`` command as a user runs it: summaries, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from conftest import run_cli

from trendcast.synth import synth_bars, write_bars


def stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM market.bars")).scalar_one()


def test_load_history_prints_a_summary_and_reload_inserts_nothing(engine, env, tmp_path):
    path = tmp_path / "bars.csv"
    write_bars(synth_bars(1_000, interval="5m"), path)
    first = run_cli("load-history", str(path), "--symbol", "SYN", "--interval", "5m", env=env)
    assert first.returncode == 0, first.stderr
    assert "read 1,000, inserted 1,000, duplicates 0, quarantined 0" in first.stdout
    again = run_cli("load-history", str(path), "-s", "SYN", "-i", "5m", "--json", env=env)
    summary = json.loads(again.stdout)
    assert (summary["inserted"], summary["duplicates"]) == (0, 1000)
    assert stored(engine) == 1000


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["-s", "SYN", "-i", "1h"], None, "no such file"),
        (["-s", "SYN", "-i", "1h"], "", "file is empty"),
        (["-s", "SYN", "-i", "1h"], "a,b\n1,2\n", "missing column(s)"),
        (
            ["-s", "SYN", "-i", "1h"],
            "time,open,high,low,close,volume\nx,1,2,3,4,5\n",
            "no parseable timestamp",
        ),
        (["-s", "syn", "-i", "1h"], "time,open,high,low,close,volume\n", "symbol 'syn'"),
        (["-s", "SYN", "-i", "2d"], "time,open,high,low,close,volume\n", "interval '2d'"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(
    engine, env, tmp_path, args, content, message
):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_text(content)
    result = run_cli("load-history", str(path), *args, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert stored(engine) == 0


def test_unreachable_database_names_the_url_and_what_to_do(env, tmp_path):
    path = tmp_path / "bars.csv"
    write_bars(synth_bars(10, interval="1h"), path)
    bad = {**env, "TRENDCAST_DATABASE_URL": "postgresql://trader:s3cret@127.0.0.1:1/trendcast"}
    result = run_cli("load-history", str(path), "-s", "SYN", "-i", "1h", env=bad)
    assert result.returncode == 1
    assert (
        "cannot reach PostgreSQL at postgresql://trader:***@127.0.0.1:1/trendcast" in result.stderr
    )
    assert "trendcast up" in result.stderr and "TRENDCAST_DATABASE_URL" in result.stderr
    assert "s3cret" not in result.stderr


def test_embedded_database_not_running_says_so(env, tmp_path):
    no_db = {k: v for k, v in env.items() if k != "TRENDCAST_DATABASE_URL"}
    result = run_cli("bars", env=no_db)
    assert result.returncode == 1
    assert "embedded PostgreSQL" in result.stderr and "is not running" in result.stderr


def test_load_sample_and_bars_listing(engine, env):
    result = run_cli("load-sample", env=env)
    assert result.returncode == 0, result.stderr
    listing = run_cli("bars", env=env)
    for symbol, interval, bars in [
        ("EURUSD", "1h", "6,225"),
        ("GOOGL", "1d", "2,335"),
        ("AAPL", "1d", "3,270"),
        ("MSFT", "1d", "3,270"),
        ("IBM", "1d", "3,270"),
    ]:
        line = next(line for line in listing.stdout.splitlines() if f" {symbol} " in line)
        assert interval in line and bars in line
    again = run_cli("load-sample", "--symbol", "EURUSD", env=env)
    assert "inserted 0, duplicates 6,225" in again.stdout


def test_synth_writes_reproducible_files(env, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path in (a, b):
        result = run_cli("synth", str(path), "--bars", "2000", "--seed", "3", env=env)
        assert result.returncode == 0, result.stderr
    assert a.read_bytes() == b.read_bytes()
    bad = run_cli("synth", str(tmp_path / "x.txt"), env=env)
    assert bad.returncode == 1 and "must end in .parquet or .csv" in bad.stderr


def test_backtest_every_stored_series_as_json_and_table(engine, env):
    assert run_cli("load-sample", env=env).returncode == 0
    result = run_cli(
        "backtest",
        "--strategy",
        "sma-crossover",
        "-p",
        "fast=7",
        "-p",
        "slow=25",
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert {r["symbol"] for r in reports} == {"EURUSD", "GOOGL", "AAPL", "MSFT", "IBM"}
    for report in reports:
        assert report["params"] == {"fast": 7, "slow": 25, "allow_short": False}
        assert report["passes"] == all(report["gates"].values())
    table = run_cli("backtest", "--symbols", "EURUSD", "--fee", "0", env=env)
    assert table.returncode == 0 and "EURUSD" in table.stdout and "GOOGL" not in table.stdout
    bad = run_cli("backtest", "--strategy", "martingale", env=env)
    assert bad.returncode == 1 and "strategy 'martingale': unknown" in bad.stderr
    bad_param = run_cli("backtest", "-p", "fast", env=env)
    assert bad_param.returncode == 1 and "expected NAME=VALUE" in bad_param.stderr
