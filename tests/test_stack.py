"""End to end: the README's demo path on a fresh home (`up`, load, `status`, `down`).

Starts a real embedded PostgreSQL and a real MLflow tracking server on free ports, so it is
marked slow; `make test` runs it, `make test-fast` does not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from conftest import run_cli

from trendcast import migrate
from trendcast.db import drop_database
from trendcast.registry import Gates

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def records(home) -> dict[str, dict]:
    run_dir = home / "run"
    return {p.stem: json.loads(p.read_text()) for p in run_dir.glob("*.json")}


def alive(record: dict) -> bool:
    try:
        proc = psutil.Process(record["pid"])
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def status(env) -> tuple[int, dict[str, dict]]:
    result = run_cli("status", "--json", env=env)
    return result.returncode, {p["name"]: p for p in json.loads(result.stdout)}


@pytest.fixture
def stack_env(tmp_path):
    home = tmp_path / "h"  # short: the embedded server's socket lives under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env.update(
        TRENDCAST_HOME=str(home),
        TRENDCAST_MLFLOW_PORT=str(free_port()),
        TRENDCAST_REPLAY_PORT=str(free_port()),
        TRENDCAST_BENTOML_PORT=str(free_port()),
        TRENDCAST_STREAMLIT_PORT=str(free_port()),
        TRENDCAST_SERVING_POLL_S="1",
        COLUMNS="200",
    )
    yield env, home
    run_cli("down", env=env)  # never leave servers behind, even when the test fails


def bar_count(env, symbol: str) -> int:
    listing = run_cli("bars", env=env).stdout
    line = next(line for line in listing.splitlines() if f" {symbol} " in line)
    return int(line.split("│")[3].strip().replace(",", ""))


def test_demo_path_up_load_status_down(stack_env):
    env, home = stack_env
    up = run_cli("up", "--with", "replay", env=env)
    assert up.returncode == 0, up.stderr + up.stdout
    started = records(home)
    assert set(started) == {"postgres", "mlflow", "replay"}
    assert all(alive(r) for r in started.values())

    code, parts = status(env)
    assert code == 0
    assert parts["postgres"]["state"] == "up"
    assert f"schema {migrate.head_revision()}" in parts["postgres"]["detail"]
    assert parts["mlflow"]["state"] == "up" and parts["mlflow"]["version"].startswith("MLflow 3.")
    mlflow_url = parts["mlflow"]["url"]
    experiments = httpx.post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 10}, timeout=10
    )
    assert experiments.status_code == 200  # the tracking server really serves its API

    assert parts["replay"]["state"] == "up"

    loaded = run_cli("load-sample", "--until", "2017-10-02T00:00Z", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "EURUSD 1h (gym-anytrading): read 4,683, inserted 4,683" in loaded.stdout
    assert bar_count(env, "EURUSD") == 4683

    # The live path: the replay's clock runs an hour of data a second; new bars arrive.
    first = run_cli("ingest", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "succeeded"
    time.sleep(3)
    second = json.loads(run_cli("ingest", "--json", env=env).stdout)
    assert second["series"][0]["inserted"] >= 2
    assert bar_count(env, "EURUSD") > 4683
    # The FX calendar expects every bar the sample lacks none of: no hole left open.
    assert second["series"][0]["holes_open"] == 0
    holes = run_cli("gaps", "--status", "--only", "open", "--json", env=env)
    assert holes.returncode == 0 and json.loads(holes.stdout) == []
    listed = json.loads(run_cli("instruments", "list", "--json", env=env).stdout)
    assert next(i for i in listed if i["symbol"] == "EURUSD")["calendar"] == "FX"

    # Features: the Mage pipeline turns every stored bar into a feature row.
    built = run_cli("features", "build", env=env)
    assert built.returncode == 0, built.stderr + built.stdout
    shown = run_cli("features", "show", "--symbol", "EURUSD", env=env)
    assert shown.returncode == 0 and "rsi_14" in shown.stdout
    again = run_cli("features", "build", "--runner", "python", env=env)
    assert "0 written" in again.stdout  # nothing new since the Mage run

    # Backtest every stored series and log the reports to the tracking server.
    tested = run_cli("backtest", "--symbols", "all", "--log-to-mlflow", env=env)
    assert tested.returncode == 0, tested.stderr + tested.stdout
    found = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "backtests"},
        timeout=10,
    ).json()["experiment"]
    logged = httpx.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [found["experiment_id"]], "max_results": 50},
        timeout=10,
    ).json()["runs"]
    assert {r["info"]["run_name"] for r in logged} >= {"EURUSD_sma-crossover", "AAPL_sma-crossover"}
    metrics = {m["key"] for m in logged[0]["data"]["metrics"]}
    assert {"backtest_sharpe", "backtest_max_drawdown", "backtest_cumulative_return"} <= metrics

    # The demo's grid (fewer trees), then promotion: the default gates refuse with exit 1 and
    # name every gate that fails; the demo then forces the move with a reason, audited.
    grid = yaml.safe_load((REPO / "training/grids/demo.yaml").read_text())
    grid["params"]["n_estimators"] = [30]
    grid_file = home.parent / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    trained = run_cli("train", "--grid", str(grid_file), env=env)
    assert trained.returncode == 0, trained.stderr + trained.stdout
    assert "rank 1: EURUSD_1h_h4 version 1" in trained.stdout
    assert "rank 2: EURUSD_1h_h4 version 2" in trained.stdout
    # The demo's second grid run: on a two-worker local Dask cluster, ranked exactly alike.
    env["TRENDCAST_DASK_SCHEDULER_PORT"] = str(free_port())
    clustered = run_cli("up", "--with", "cluster", "--workers", "2", env=env)
    assert clustered.returncode == 0, clustered.stderr + clustered.stdout
    spread = run_cli(
        "train", "--grid", str(grid_file), "--cluster", "--register-top", "0",
        "--compare-in-process", env=env,
    )  # fmt: skip
    assert spread.returncode == 0, spread.stderr + spread.stdout
    assert "grid ran on dask tcp://127.0.0.1:" in spread.stdout
    assert "ranking equals the in-process run" in spread.stdout
    described = json.loads(run_cli("models", "EURUSD_1h_h4", "--json", env=env).stdout)
    assert len(described) == 2  # the cluster run registered nothing
    first = next(v for v in described if v["version"] == 1)
    assert first["n_trials"] == 8 and first["selection_end"] < first["test_start"]
    assert first["cost_profile"] == "fx" and 6_150 < first["periods_per_year"] < 6_300
    failing = [g for g, r in Gates().evaluate(first["metrics"]).items() if not r["passed"]]
    assert failing, "the demo model passes the default gates: update the README and the demo"
    gated = run_cli("promote", "EURUSD_1h_h4", "--version", "1", env=env)
    assert gated.returncode == 1, gated.stdout
    assert "not promoted to 'production': failed" in gated.stderr
    assert all(g in gated.stderr for g in failing), (failing, gated.stderr)
    reason = ["--force", "--reason", "demo data"]
    best = run_cli("promote", "EURUSD_1h_h4", "-v", "1", *reason, env=env)
    assert best.returncode == 0, best.stderr
    assert "FORCED past failing gates" in best.stdout
    runner_up = run_cli("promote", "EURUSD_1h_h4", "-v", "2", "-a", "challenger", *reason, env=env)
    assert runner_up.returncode == 0, runner_up.stderr
    listed = run_cli("models", env=env).stdout
    aliases = {
        line.split("│")[2].strip(): line.split("│")[3]
        for line in listed.splitlines()
        if "EURUSD_1h_h4" in line
    }
    assert sorted(a.strip() for a in aliases.values()) == ["challenger", "production"]
    audit = run_cli("alias-history", "EURUSD_1h_h4", env=env)
    assert "promote" in audit.stdout and "demo data" in audit.stdout

    # Serving: the production version answers both endpoints; promoting the challenger swaps it.
    served = run_cli("up", "--with", "serving", env=env)
    assert served.returncode == 0, served.stderr + served.stdout
    latest = run_cli("predict", "--symbols", "EURUSD", env=env)
    assert latest.returncode == 0, latest.stderr
    assert "EURUSD 1h bar closing 2017-10-02" in latest.stdout
    assert "(EURUSD_1h_h4 version 1, production)" in latest.stdout
    example = run_cli("predict", "--example", env=env)
    assert "3 row(s):" in example.stdout and "version 1)" in example.stdout, example.stderr
    swap = run_cli("promote", "EURUSD_1h_h4", "-v", "2", *reason, env=env)
    assert "EURUSD_1h_h4@production: 1 -> 2" in swap.stdout, swap.stderr
    waited = run_cli("predict", "--wait-for-alias", "production", "-s", "EURUSD", env=env)
    assert waited.returncode == 0, waited.stderr
    assert "served after" in waited.stdout and "version 2, production" in waited.stdout
    started = records(home)
    assert set(started) == {"postgres", "mlflow", "replay", "serving", "cluster", "cluster-workers"}

    # Deployment: the production model on paper over replayed days equals its backtest, and
    # going live is refused for want of the binance broker and live keys.
    demo = "demo-eurusd"
    made = run_cli(
        "deploy", "create", demo, "--strategy", "model-threshold",
        "--model", "EURUSD_1h_h4@production", "--symbols", "EURUSD", "--capital", "10000",
        "--start", "2017-09-25T00:00:00Z", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    traded = run_cli("deploy", "run", demo, "--until", "2017-09-29T20:00:00Z", env=env)
    assert traded.returncode == 0, traded.stderr
    assert f"{demo}: 117 bar(s) stepped" in traded.stdout
    checked = run_cli("deploy", "reconcile", demo, "--json", env=env)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    report = json.loads(checked.stdout)
    assert report["equal"] and report["bars"] == 117 and report["max_equity_diff"] <= 1e-9
    assert report["fills_live"] == report["fills_backtest"] > 0
    kept = run_cli(
        "deploy",
        "create",
        demo,
        "--strategy",
        "x",
        "--symbols",
        "EURUSD",
        "--capital",
        "1",
        "--exist-ok",
        env=env,
    )
    assert kept.returncode == 0 and "exists" in kept.stdout
    refused = run_cli("deploy", "promote", demo, "--to", "live", env=env)
    assert refused.returncode == 1
    assert "live needs the binance broker" in refused.stderr
    assert "TRENDCAST_BINANCE_API_KEY is not set" in refused.stderr

    # Portfolio: the demo's strategies on the streams the backtests and training recorded.
    portfolio = run_cli(
        "portfolio", "backtest", "--config", str(REPO / "portfolios/demo.yaml"), "--json", env=env
    )
    assert portfolio.returncode == 0, portfolio.stderr + portfolio.stdout
    built = json.loads(portfolio.stdout)
    assert built["rebalances"] > 100 and abs(sum(built["latest_weights"].values()) - 1) < 1e-9
    assert {"portfolio", "equal_weight", "model-EURUSD", "sma-IBM"} <= set(built["summary"])
    assert all(v <= 0.4 + 1e-9 for k, v in built["latest_weights"].items() if k != "cash")
    found = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "portfolios"},
        timeout=10,
    )
    assert found.status_code == 200
    # applied to the paper deployment the model member names: it gets the difference between
    # its target and its equity, audited; status then shows it matched (or, when the demo
    # deployment held a position at its last bar and the weight asks for a cut, the pending
    # remainder); it trades on with the new cash and reconciles exactly
    weight = built["latest_weights"]["model-EURUSD"]
    held = json.loads(run_cli("deploy", "status", demo, "--json", env=env).stdout)
    before, equity = held["deployment"], held["balance"]["equity"]
    applied = run_cli("portfolio", "apply", "demo", "--reason", "demo rebalance", env=env)
    assert applied.returncode == 0, applied.stderr + applied.stdout
    shown = run_cli("portfolio", "status", "demo", env=env)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "demo-eurusd" in line)
    target = max(weight * 100_000, 1e-6)
    after = json.loads(run_cli("deploy", "status", demo, "--json", env=env).stdout)["deployment"]
    moved = after["capital"] - before["capital"]
    if "matched" in row:
        assert row.count(f"{target:,.2f}") >= 2, (target, row)  # target == actual
        assert moved == pytest.approx(target - equity, abs=1e-6)
    else:  # a cut beyond the free cash: what is free moved, the rest shown pending
        assert "pending: positions open" in row or "partly pending" in row, row
        assert target < equity and -moved < equity - target
    ran = run_cli("deploy", "run", demo, "--until", "2017-10-02T00:00:00Z", env=env)
    assert ran.returncode == 0, ran.stderr
    rechecked = json.loads(run_cli("deploy", "reconcile", demo, "--json", env=env).stdout)
    assert rechecked["equal"] and rechecked["max_equity_diff"] <= 1e-9, rechecked
    checked = run_cli("portfolio", "check", "demo", env=env)
    assert checked.returncode == 0, checked.stderr + checked.stdout

    again = run_cli("up", env=env)  # idempotent: reuses both processes
    assert again.returncode == 0
    assert records(home) == started

    # MLflow stopped behind our back: status says so and exits non-zero; up restarts it.
    os.killpg(started["mlflow"]["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 20
    while alive(started["mlflow"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    code, parts = status(env)
    assert code == 1 and parts["mlflow"]["state"] == "down" and parts["postgres"]["state"] == "up"
    assert run_cli("up", env=env).returncode == 0
    assert records(home)["postgres"] == started["postgres"]
    assert records(home)["mlflow"]["pid"] != started["mlflow"]["pid"]
    assert bar_count(env, "EURUSD") > 4683  # data survived

    final = records(home)
    down = run_cli("down", env=env)
    assert down.returncode == 0
    assert all(
        name in down.stdout
        for name in ("serving", "replay", "mlflow", "postgres", "cluster", "cluster-workers")
    )
    assert not any(alive(r) for r in final.values())
    assert records(home) == {}
    code, parts = status(env)
    assert code == 1 and parts["postgres"]["state"] == "down"


def test_external_database_is_used_as_is_and_never_stopped(stack_env, db_url, pg_server_url):
    env, home = stack_env
    mlflow_db = db_url.set(database=f"{db_url.database}_mlflow")
    env = {
        **env,
        "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TRENDCAST_MLFLOW_DATABASE_URL": mlflow_db.render_as_string(hide_password=False),
    }
    try:
        up = run_cli("up", env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        assert set(records(home)) == {"mlflow"}  # no embedded server started
        code, parts = status(env)
        assert code == 0 and parts["postgres"]["state"] == "external"
        down = run_cli("down", env=env)
        assert "postgres" not in down.stdout
        code, parts = status(env)
        assert parts["postgres"]["state"] == "external" and parts["mlflow"]["state"] == "down"
        assert code == 1
    finally:
        run_cli("down", env=env)
        drop_database(pg_server_url, mlflow_db.database)
