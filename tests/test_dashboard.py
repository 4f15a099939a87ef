"""The dashboard and the drift monitor end to end on demo-like data: real EURUSD bars, features,
a small trained model in a real MLflow server, `trendcast drift run --backfill` through the CLI,
then every page under Streamlit's AppTest and in headless Chromium (screenshots saved under
tests/artifacts/)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, run_cli
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

PAGES = {
    # url path: (page file, a title the page shows, minimum plotly charts on demo data)
    "": ("performance.py", "Model performance", 4),
    "drift": ("drift.py", "Drift", 3),
    "registry": ("registry.py", "Registry", 1),
    "data_health": ("data_health.py", "Data health", 1),
    "backtests": ("backtests.py", "Backtests", 2),
    "trading": ("trading.py", "Trading", 3),
    "portfolio": ("portfolio.py", "Portfolio", 4),
}
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
BACKFILL = ("2017-09-01", "2017-09-30")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo(db_url, mlflow_url, tmp_path_factory):
    """Demo-like state: EURUSD 1h up to 2017-10-02, its features, EURUSD_1h_h4 trained small
    and forced to production (audited), drift backfilled for September 2017."""
    from training.dataset import build_dataset
    from training.train import train
    from trendcast import feature_pipeline, registry
    from trendcast.config import get_settings
    from trendcast.history import load_frame
    from trendcast.sample_data import SAMPLES
    from trendcast.tracking import use_mlflow

    home = tmp_path_factory.mktemp("dash")
    values = {
        "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TRENDCAST_HOME": str(home / "home"),
        "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url,
        "COLUMNS": "200",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            for name in conn.execute(sa.text("SELECT table_name FROM features.feature_sets")):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name[0]}"))
            conn.execute(
                sa.text(
                    "TRUNCATE market.bars, market.quarantine, market.ingestion_runs, "
                    "market.bar_changes, features.feature_sets, registry.alias_events, "
                    "serving.predictions, monitoring.drift_metrics, monitoring.alerts CASCADE"
                )
            )
        sample = next(s for s in SAMPLES if s.symbol == "EURUSD")
        frame, origin = sample.reader()
        frame = frame[frame["open_time"] < "2017-10-02"].reset_index(drop=True)
        load_frame(engine, frame, symbol="EURUSD", interval="1h", source="test", origin=origin)
        feature_pipeline.build(engine)
        with engine.begin() as conn:  # one live ingestion run that met a gap and a bad bar
            conn.execute(
                sa.text(
                    "INSERT INTO market.ingestion_runs (run_id, kind, source, symbol, interval, "
                    "finished_at, status, rows_read, rows_inserted, rows_quarantined, "
                    "gaps_found, gaps_filled) VALUES ('00000000-0000-0000-0000-000000000001', "
                    "'ingest', 'exchange', 'EURUSD', '1h', now(), 'succeeded', 50, 48, 1, 3, 2);"
                    "INSERT INTO market.quarantine (run_id, source, symbol, interval, reason, "
                    "payload) VALUES ('00000000-0000-0000-0000-000000000001', 'exchange', "
                    "'EURUSD', '1h', 'high < max(open, close)', '{\"row\": 7}')"
                )
            )
        dataset = build_dataset(engine, "EURUSD", "1h", home / "snapshots", horizon=4)
        use_mlflow(mlflow_url)
        mlflow.set_experiment("training")
        name = f"EURUSD_1h_h4_dash{os.getpid()}"
        result = train(
            engine,
            dataset,
            symbol="EURUSD",
            interval="1h",
            model_name=name,
            params={"n_estimators": 30},
        )
        client = MlflowClient(mlflow_url)
        registry.promote(
            client, engine, name, result.version, "production", force=True, reason="dashboard test"
        )
        # a paper deployment traded over a week of September (the Trading page)
        from trendcast.trading.lifecycle import create, run_pending

        deployment = create(
            engine, name=f"dash-{os.getpid()}", strategy="sma-crossover",
            params={"fast": 5, "slow": 20}, model=None, symbols=["EURUSD"], interval="1h",
            broker="paper", capital=10_000.0, risk={"slippage_band": 0.01},
            start=pd.Timestamp("2017-09-18", tz="UTC"), warmup=200,
        )  # fmt: skip
        run_pending(engine, deployment.name, bars=100)
        env = {**os.environ}
        backfill = run_cli("drift", "run", "--backfill", *BACKFILL, env=env)
        assert backfill.returncode == 0, backfill.stderr
        _portfolio(engine, env, home, name)
        yield {
            "engine": engine,
            "env": env,
            "name": name,
            "home": home,
            "cli": backfill,
            "deployment": deployment.name,
        }
        engine.dispose()
    get_settings.cache_clear()


def _portfolio(engine, env, home, model_name: str) -> None:
    """A portfolio of the SMA crossover, buy-and-hold and the model on EURUSD, backtested
    walk-forward; the SMA member's paper deployment falls for 3 days and is flagged."""
    import numpy as np
    import yaml

    tested = run_cli("backtest", "--symbols", "EURUSD", env=env)
    assert tested.returncode == 0, tested.stderr
    with engine.begin() as conn:
        dep = conn.execute(
            sa.text(
                "INSERT INTO trading.deployments (name, strategy, symbols, interval, broker, "
                "capital, created_by) VALUES ('dash-sma', 'sma-crossover', '{EURUSD}', '1h', "
                "'paper', 10000, 'test') RETURNING id"
            )
        ).scalar_one()
        equity = np.r_[10_000 * 1.001 ** np.arange(40), 10_000 * 1.04 * 0.9 ** np.arange(1, 4)]
        for i, value in enumerate(equity):
            conn.execute(
                sa.text(
                    "INSERT INTO trading.balances (deployment_id, bar_time, equity, cash, peak, "
                    "drawdown) VALUES (:d, :t, :e, :e, :e, 0)"
                ),
                {"d": dep, "t": dt.datetime(2017, 10, 2, tzinfo=dt.UTC) + dt.timedelta(days=i),
                 "e": float(value)},
            )  # fmt: skip
    config = {
        "name": "dash",
        "method": "hrp",
        "lookback_days": 120,
        "min_history_days": 30,
        "members": [
            {"name": "sma-EURUSD", "strategy": "sma-crossover", "symbols": ["EURUSD"],
             "deployment": "dash-sma"},
            {"name": "bh-EURUSD", "strategy": "buy-and-hold", "symbols": ["EURUSD"]},
            {"name": "model-EURUSD", "strategy": "model-threshold", "symbols": ["EURUSD"],
             "model": f"{model_name}@production"},
        ],
        "substitution": {"metric": "drawdown", "days": 3},
    }  # fmt: skip
    path = home / "dash-portfolio.yaml"
    path.write_text(yaml.safe_dump(config))
    built = run_cli("portfolio", "backtest", "--config", str(path), env=env)
    assert built.returncode == 0, built.stderr + built.stdout
    checked = run_cli("portfolio", "check", "dash", env=env)
    assert checked.returncode == 0 and "flag: sma-EURUSD" in checked.stdout, checked.stdout


def test_backfill_writes_predictions_and_daily_metrics(demo):
    engine, name = demo["engine"], demo["name"]
    assert f"{name}@production (v1):" in demo["cli"].stdout
    with engine.connect() as conn:
        sources = conn.execute(
            sa.text("SELECT DISTINCT source, alias FROM serving.predictions WHERE model_name = :n"),
            {"n": name},
        ).all()
        days = conn.execute(
            sa.text(
                "SELECT count(DISTINCT date), count(*) FROM monitoring.drift_metrics "
                "WHERE model_name = :n AND source = 'backfill'"
            ),
            {"n": name},
        ).one()
        psi_features = conn.execute(
            sa.text(
                "SELECT count(DISTINCT feature) FROM monitoring.drift_metrics "
                "WHERE metric = 'psi' AND value IS NOT NULL"
            )
        ).scalar()
    assert sources == [("backfill", "production")]
    assert days[0] >= 20  # September's trading days (FX is closed at weekends)
    assert psi_features == 20
    # Idempotent: a second backfill replaces rows, never adds.
    counts = sa.text(
        "SELECT (SELECT count(*) FROM monitoring.drift_metrics), "
        "(SELECT count(*) FROM serving.predictions), (SELECT count(*) FROM monitoring.alerts)"
    )
    with engine.connect() as conn:
        before = conn.execute(counts).one()
    again = run_cli("drift", "run", "--backfill", *BACKFILL, env=demo["env"])
    assert again.returncode == 0, again.stderr
    with engine.connect() as conn:
        assert conn.execute(counts).one() == before


def test_drift_run_for_a_day_and_bad_input(demo):
    done = run_cli("drift", "run", "--date", "2017-09-15", env=demo["env"])
    assert done.returncode == 0, done.stderr
    assert f"2017-09-15 {demo['name']} v1 (backfill): ic " in done.stdout
    empty = run_cli("drift", "run", "--date", "2017-09-16", env=demo["env"])  # a Saturday
    assert "no predictions logged" in empty.stdout
    scheduled = run_cli("drift", "run", "--every", "1s", "--times", "2", env=demo["env"])
    assert scheduled.returncode == 0, scheduled.stderr
    assert scheduled.stdout.count("no predictions logged for that day") == 2  # yesterday, twice
    bad = run_cli("drift", "run", "--date", "15/09/2017", env=demo["env"])
    assert bad.returncode == 1
    assert "--date '15/09/2017': must be a date written YYYY-MM-DD" in bad.stderr
    backwards = run_cli("drift", "run", "--backfill", "2017-09-30", "2017-09-01", env=demo["env"])
    assert backwards.returncode == 1 and "END must not be before START" in backwards.stderr


def _apptest(page: str):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "dashboard" / "pages" / page), default_timeout=60)
    at.run()
    return at


def test_registry_page_marks_an_alias_moved_outside_trendcast(demo, mlflow_url):
    client = MlflowClient(mlflow_url)
    name = demo["name"]
    version = client.get_model_version_by_alias(name, "production").version
    at = _apptest("registry.py")
    assert not at.error and "dashboard test" in at.dataframe[-1].value["reason"].tolist()
    rogue = client.copy_model_version(f"models:/{name}/{version}", name)
    client.set_registered_model_alias(name, "challenger", rogue.version)  # behind our back
    try:
        at = _apptest("registry.py")
        assert not at.exception
        (error,) = at.error
        assert f"{name}: challenger: moved outside Trendcast, not served" in error.value
        backfill = run_cli("drift", "run", "--backfill", *BACKFILL, env=demo["env"])
        assert backfill.returncode == 0, backfill.stderr
        assert f"{name}@challenger -> version {rogue.version} was moved outside" in (
            " ".join(backfill.stderr.split())
        )
        assert f"{name}@challenger" not in backfill.stdout  # skipped, not scored
    finally:
        client.delete_registered_model_alias(name, "challenger")


@pytest.mark.parametrize("path", list(PAGES))
def test_each_page_renders_demo_data(demo, path):
    page, title, charts = PAGES[path]
    at = _apptest(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == title
    assert len(at.get("plotly_chart")) >= charts
    assert not at.info, [i.value for i in at.info]  # no empty state: real data everywhere
    assert not at.warning, [w.value for w in at.warning]


def test_backtests_table_shows_trades_and_costs_for_every_run(demo):
    at = _apptest("backtests.py")
    table = at.dataframe[0].value
    assert table["trades"].notna().all(), table  # never None beside a report that says 24
    assert (table["costs"] == "fx").any()
    chosen = table.iloc[0]
    trades = next(m for m in at.metric if m.label == "Trades")
    assert trades.value == f"{int(chosen['trades']):,}"


def test_performance_page_says_when_live_predictions_have_no_outcome_yet(demo):
    """Live predictions of the last bar (its outcome is not known yet) next to the backfill:
    the page says there is nothing to score yet and which command makes some, instead of nan,
    and the alias choice starts at production even when a challenger sorts first."""
    engine, name = demo["engine"], demo["name"]
    with engine.connect() as conn:
        last = conn.execute(
            sa.text("SELECT max(event_time) FROM serving.predictions WHERE model_name = :n"),
            {"n": name},
        ).scalar_one()
    rows = [
        {"rid": str(uuid.uuid4()), "t": last, "alias": alias, "v": 1}
        for alias in ("production", "challenger")
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO serving.predictions (request_id, predicted_at, symbol, interval, "
                "event_time, model_name, model_version, alias, source, inputs, prediction) "
                "VALUES (:rid, now(), 'EURUSD', '1h', :t, :n, :v, :alias, 'live', "
                "CAST('{}' AS jsonb), 0.001)"
            ),
            [{**r, "n": name} for r in rows],
        )
    try:
        at = _apptest("performance.py")
        assert not at.exception, [e.value for e in at.exception]
        assert at.selectbox[2].value == "production"  # preselected, though challenger sorts first
        shown = {m.label: m.value for m in at.metric}
        assert shown["MSE (live)"] == "none yet" and shown["IC (live)"] == "none yet"
        assert shown["IC (backfill)"] not in ("nan", "none yet")
        captions = " ".join(c.value for c in at.caption)
        assert "No live prediction has a realised outcome yet" in captions
        assert "trendcast predict --symbols SYMBOL" in captions
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM serving.predictions WHERE request_id = ANY(:r)"),
                {"r": [r["rid"] for r in rows]},
            )


def test_trading_page_shows_the_deployment_against_its_backtest(demo):
    at = _apptest("trading.py")
    at.selectbox[0].set_value(demo["deployment"]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Stage"] == "demo" and shown["Kill switch"] == "armed"
    assert "Days without failure" in shown
    captions = " ".join(c.value for c in at.caption)
    assert "equal" in captions and "fills live" in captions, captions
    orders = at.dataframe[2].value
    assert len(orders) and {"intended_price", "executed_price", "slippage"} <= set(orders.columns)
    assert (orders["executed_price"] != orders["intended_price"]).all()


def test_performance_page_switches_model_choice(demo):
    at = _apptest("performance.py")
    at.radio[0].set_value("version").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 4
    at.radio[0].set_value("algorithm").run()
    assert not at.exception
    assert at.selectbox[2].value == "xgboost"


def _a_real_number(demo, path: str) -> str:
    """One figure each page must show, computed here from the database (or MLflow)."""
    engine = demo["engine"]
    with engine.connect() as conn:
        if path == "":
            last = conn.execute(
                sa.text("SELECT max(event_time) FROM serving.predictions WHERE model_name = :n"),
                {"n": demo["name"]},
            ).scalar_one()
            first = conn.execute(
                sa.text("SELECT min(event_time) FROM serving.predictions WHERE model_name = :n"),
                {"n": demo["name"]},
            ).scalar_one()
            start = max(first, last - dt.timedelta(days=30)).date()
            count = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT (source, event_time)) FROM serving.predictions "
                    "WHERE model_name = :n AND event_time >= :t AND alias = 'production'"
                ),
                {"n": demo["name"], "t": dt.datetime.combine(start, dt.time(), dt.UTC)},
            ).scalar_one()
            return f"{count:,} predictions of {demo['name']}"
        if path == "drift":
            count = conn.execute(
                sa.text("SELECT count(*) FROM monitoring.alerts WHERE status = 'open'")
            ).scalar_one()
            return f"Open alerts ({min(count, 500)})"
        if path == "registry":
            (reason,) = conn.execute(
                sa.text("SELECT reason FROM registry.alias_events WHERE model_name = :n"),
                {"n": demo["name"]},
            ).one()
            return reason
        if path == "portfolio":
            report = conn.execute(
                sa.text("SELECT report FROM portfolio.runs ORDER BY id DESC LIMIT 1")
            ).scalar_one()
            return f"Rebalances\n\n{report['rebalances']:,}\n"
        if path == "data_health":
            count = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT DISTINCT symbol, interval FROM market.bars) s"
                )
            ).scalar_one()
            return f"Series\n\n{count}\n"
        if path == "trading":
            equity = conn.execute(
                sa.text(
                    "SELECT b.equity FROM trading.balances b JOIN trading.deployments d ON "
                    "d.id = b.deployment_id WHERE d.name = :n ORDER BY b.bar_time DESC LIMIT 1"
                ),
                {"n": demo["deployment"]},
            ).scalar_one()
            return f"Equity\n\n{equity:,.2f}\n"
    client = MlflowClient(os.environ["TRENDCAST_MLFLOW_TRACKING_URI"])
    runs = [  # the newest run with a backtest report, which the page selects first
        run
        for name in ("backtests", "training")
        if (experiment := client.get_experiment_by_name(name)) is not None
        for run in client.search_runs([experiment.experiment_id], max_results=500)
        if "backtest_sharpe" in run.data.metrics
    ]
    newest = max(runs, key=lambda r: r.info.start_time)
    trades = int(newest.data.metrics["backtest_trades"])
    return f"Trades\n\n{trades:,}\n"


def test_every_page_in_a_real_browser(demo):
    """Headless Chromium against the running dashboard: every page draws its plotly charts and
    shows no exception; screenshots go to tests/artifacts/."""
    import json

    from playwright.sync_api import sync_playwright

    from trendcast.config import Settings
    from trendcast.stack import dashboard_server, processes

    assert CHROMIUM.exists(), "run `make browser` (apt-get install chromium)"
    port = _free_port()
    env = {**demo["env"], "TRENDCAST_HOME": str(demo["home"] / "stack")}
    env["TRENDCAST_STREAMLIT_PORT"] = str(port)
    settings = Settings(home=demo["home"] / "stack", streamlit_port=port)
    started = run_cli("dashboard", env=env)  # detached, like `trendcast up --with dashboard`
    assert started.returncode == 0, started.stderr
    assert f"dashboard: up, http://127.0.0.1:{port}" in started.stdout
    record = processes.read_record(settings.run_dir, dashboard_server.NAME)
    try:
        status = run_cli("status", "--json", env=env)
        parts = {p["name"]: p for p in json.loads(status.stdout)}
        assert parts["dashboard"]["state"] == "up"
        assert httpx.get(dashboard_server.url(settings), timeout=5).status_code == 200
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2400})
                for path, (_, title, charts) in PAGES.items():
                    began = time.monotonic()
                    page.goto(f"{dashboard_server.url(settings)}/{path}")
                    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
                    page.wait_for_function(
                        f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                        timeout=30_000,
                    )
                    page.wait_for_selector(
                        "[data-testid='stStatusWidget']", state="detached", timeout=30_000
                    )
                    print(f"page /{path}: charts drawn {time.monotonic() - began:.2f} s after goto")
                    page.wait_for_timeout(1500)  # let the data grids paint for the screenshot
                    shot = ARTIFACTS / f"dashboard-{path or 'performance'}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    print(f"screenshot: {shot}")
                    assert page.locator("[data-testid='stException']").count() == 0, path
                    assert page.locator(".js-plotly-plot .main-svg").count() >= charts, path
                    shown = page.locator("[data-testid='stMain']").inner_text()
                    expected = _a_real_number(demo, path)
                    assert expected in shown, (path, expected)
            finally:
                browser.close()
    finally:
        stopped = run_cli("down", env=env)
    assert "stopped: dashboard" in stopped.stdout
    assert not processes.is_alive(record)
