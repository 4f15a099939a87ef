"""Portfolio commands on a real PostgreSQL: backtests record versioned return streams, a
portfolio backtest runs on them, `apply` sets paper deployments' capital (audited), `status`
shows targets against actual capital, `check` flags, proposes or substitutes a member whose
live equity leaves its backtest band (audited and alerted), and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import run_cli

MEMBERS = [
    {"name": "sma-EURUSD", "strategy": "sma-crossover", "symbols": ["EURUSD"]},
    {"name": "sma-GOOGL", "strategy": "sma-crossover", "symbols": ["GOOGL"]},
    {"name": "bh-GOOGL", "strategy": "buy-and-hold", "symbols": ["GOOGL"]},
    {"name": "bh-EURUSD", "strategy": "buy-and-hold", "symbols": ["EURUSD"]},
]


@pytest.fixture(scope="module")
def streams(db_url, tmp_path_factory):
    """Bars of two samples and their sma-crossover backtests (streams + buy-and-hold)."""
    import os

    from trendcast.config import get_settings

    home = tmp_path_factory.mktemp("pfhome")
    env = {
        **os.environ,
        "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TRENDCAST_HOME": str(home),
        "TRENDCAST_USER": "portfolio-tester",
        "COLUMNS": "200",
    }
    get_settings.cache_clear()
    loaded = run_cli("load-sample", "-s", "EURUSD", "-s", "GOOGL", env=env)
    assert loaded.returncode == 0, loaded.stderr
    tested = run_cli("backtest", "--symbols", "EURUSD,GOOGL", env=env)
    assert tested.returncode == 0, tested.stderr + tested.stdout
    # other parameters are another member (a bench candidate below)
    other = run_cli("backtest", "--symbols", "GOOGL", "-p", "fast=5", "-p", "slow=30", env=env)
    assert other.returncode == 0, other.stderr
    return env, home


def _config(home, name: str, **extra) -> str:
    raw = {
        "name": name,
        "method": "hrp",
        "capital": 100_000,
        "lookback_days": 120,
        "min_history_days": 30,
        "risk": {"max_weight": 0.6},
        "members": [dict(m) for m in MEMBERS],
        **extra,
    }
    path = home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_backtests_record_versioned_streams(streams, db_url):
    env, _ = streams
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT source, strategy, symbols, version, days FROM portfolio.streams "
                "ORDER BY strategy, symbols"
            )
        ).all()
    kinds = {(r.source, r.strategy, r.symbols[0]) for r in rows}
    assert kinds >= {
        ("backtest", "sma-crossover", "EURUSD"),
        ("backtest", "sma-crossover", "GOOGL"),
        ("benchmark", "buy-and-hold", "EURUSD"),
        ("benchmark", "buy-and-hold", "GOOGL"),
    }
    # the same backtest again stores nothing new
    assert run_cli("backtest", "--symbols", "GOOGL", env=env).returncode == 0
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT params, count(*) AS n, max(version) AS v FROM portfolio.streams WHERE "
                "strategy = 'sma-crossover' AND symbols = '{GOOGL}' GROUP BY params"
            )
        ).all()
        # a daily return is the close-to-close change of the backtest's equity
        days = conn.execute(
            sa.text(
                "SELECT r.day, r.ret FROM portfolio.stream_returns r JOIN portfolio.streams s "
                "ON s.id = r.stream_id WHERE s.source = 'benchmark' AND s.symbols = '{GOOGL}' "
                "ORDER BY r.day LIMIT 3"
            )
        ).all()
    assert len(counts) == 2 and all((c.n, c.v) == (1, 1) for c in counts)
    listed = run_cli("portfolio", "streams", env=env)
    assert listed.returncode == 0 and listed.stdout.count("sma-crossover") >= 3, listed.stdout
    closes = pd.read_sql(
        "SELECT open_time, close FROM market.bars WHERE symbol = 'GOOGL' ORDER BY open_time "
        "LIMIT 4",
        engine,
    )
    # buy-and-hold buys at the second bar's open: on the third day it moves with the close
    assert days[0].ret == 0
    expected = closes["close"].iloc[2] / closes["close"].iloc[1] - 1
    assert days[2].ret == pytest.approx(expected, rel=1e-3)
    engine.dispose()


def test_portfolio_backtest_records_the_run(streams, db_url):
    env, home = streams
    done = run_cli(
        "portfolio",
        "backtest",
        "--config",
        _config(home, "p-run"),
        "--no-mlflow",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["method"] == "hrp" and report["rebalances"] >= 5
    assert set(report["summary"]) >= {"portfolio", "equal_weight"}
    assert any(k.startswith("best member (") for k in report["summary"])
    weights = report["latest_weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert max(v for k, v in weights.items() if k != "cash") <= 0.6 + 1e-9
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT rebalance, sum(weight) AS total FROM portfolio.run_weights "
                "WHERE run_id = :r GROUP BY rebalance"
            ),
            {"r": report["run"]},
        ).all()
        series = (
            conn.execute(
                sa.text("SELECT DISTINCT series FROM portfolio.run_returns WHERE run_id = :r"),
                {"r": report["run"]},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert len(stored) == report["rebalances"]
    assert all(abs(s.total - 1) < 1e-9 for s in stored)
    assert {"portfolio", "equal_weight", "sma-GOOGL"} <= set(series)


def test_bad_config_and_missing_streams_are_one_line(streams, tmp_path):
    env, _ = streams
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"name": "x", "method": "hrp", "members": MEMBERS, "risk": {"max_weight": 2}}
        )
    )
    done = run_cli("portfolio", "backtest", "--config", str(bad), "--no-mlflow", env=env)
    assert done.returncode == 1
    assert "risk.max_weight" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    unknown = [*MEMBERS, {"name": "ghost", "strategy": "sma-crossover", "symbols": ["IBM"]}]
    path = tmp_path / "ghost.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "members": unknown}))
    missing = run_cli("portfolio", "backtest", "--config", str(path), "--no-mlflow", env=env)
    assert missing.returncode == 1 and "['ghost']" in missing.stderr, missing.stderr
    never = run_cli("portfolio", "status", "never-ran", env=env)
    assert never.returncode == 1 and "never backtested" in never.stderr


def _deployment(conn, name: str, capital: float, stage: str = "demo") -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO trading.deployments (name, strategy, params, symbols, interval, broker, "
            "stage, capital, created_by) VALUES (:n, 'sma-crossover', '{}', '{EURUSD}', '1h', "
            "'paper', :s, :c, 'test') RETURNING id"
        ),
        {"n": name, "s": stage, "c": capital},
    ).scalar_one()


def test_apply_sets_paper_capital_and_is_audited(streams, db_url):
    env, home = streams
    members = [dict(m) for m in MEMBERS]
    members[0]["deployment"] = "pf-dep-a"
    members[1]["deployment"] = "pf-dep-b"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        _deployment(conn, "pf-dep-a", 5_000)
        _deployment(conn, "pf-dep-b", 7_000)
    config = _config(home, "p-apply", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    before = run_cli("portfolio", "status", "p-apply", env=env)
    assert before.returncode == 0 and "5,000.00" in before.stdout and "7,000.00" in before.stdout
    refused = run_cli("portfolio", "apply", "p-apply", "--reason", " ", env=env)
    assert refused.returncode == 1 and "reason" in refused.stderr
    done = run_cli("portfolio", "apply", "p-apply", "--reason", "monthly rebalance", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    with engine.connect() as conn:
        run = conn.execute(
            sa.text(
                "SELECT report FROM portfolio.runs WHERE portfolio = 'p-apply' "
                "ORDER BY id DESC LIMIT 1"
            )
        ).scalar_one()
        capital = dict(
            conn.execute(
                sa.text("SELECT name, capital FROM trading.deployments WHERE name LIKE 'pf-dep-%'")
            ).all()
        )
        events = conn.execute(
            sa.text(
                "SELECT deployment, details, reason, actor FROM portfolio.events "
                "WHERE portfolio = 'p-apply' AND kind = 'apply' ORDER BY deployment"
            )
        ).all()
        logged = conn.execute(
            sa.text(
                "SELECT d.name, e.details, e.actor FROM trading.events e JOIN "
                "trading.deployments d ON d.id = e.deployment_id WHERE e.kind = 'capital' "
                "ORDER BY d.name"
            )
        ).all()
    assert [e.name for e in logged] == ["pf-dep-a", "pf-dep-b"]
    assert logged[0].details["portfolio"] == "p-apply" and logged[0].actor == "portfolio-tester"
    weights = run["latest_weights"]
    assert capital["pf-dep-a"] == pytest.approx(max(weights["sma-EURUSD"] * 100_000, 1e-6))
    assert capital["pf-dep-b"] == pytest.approx(max(weights["sma-GOOGL"] * 100_000, 1e-6))
    assert [e.deployment for e in events] == ["pf-dep-a", "pf-dep-b"]
    assert events[0].details["from_capital"] == 5_000
    assert events[0].details["to_capital"] == pytest.approx(capital["pf-dep-a"])
    assert {(e.reason, e.actor) for e in events} == {("monthly rebalance", "portfolio-tester")}
    # a live deployment is never resized by a portfolio: all-or-nothing
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE trading.deployments SET stage = 'live' WHERE name = 'pf-dep-b'")
        )
        conn.execute(
            sa.text("UPDATE trading.deployments SET capital = 1234 WHERE name = 'pf-dep-a'")
        )
    live = run_cli("portfolio", "apply", "p-apply", "--reason", "again", env=env)
    assert live.returncode == 1 and "pf-dep-b" in live.stderr and "live" in live.stderr
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT capital FROM trading.deployments WHERE name = 'pf-dep-a'")
            ).scalar()
            == 1234
        )
    engine.dispose()


@pytest.mark.parametrize("auto", (False, True))
def test_check_flags_and_substitutes_a_decaying_member(streams, db_url, auto):
    """A deployment whose live equity falls every day for K days leaves its band: proposed
    (alert only) without auto_substitute, replaced by the bench's best with it."""
    env, home = streams
    name = f"p-sub-{int(auto)}"
    dep = f"pf-live-{int(auto)}"
    members = [dict(m) for m in MEMBERS]
    members[0]["deployment"] = dep
    bench = [
        {"name": "bench-bh-GOOGL", "strategy": "buy-and-hold", "symbols": ["GOOGL"]},
        {
            "name": "bench-sma-GOOGL",
            "strategy": "sma-crossover",
            "symbols": ["GOOGL"],
            "params": {"fast": 5, "slow": 30},
        },
    ]
    members = [m for m in members if m["name"] != "bh-GOOGL"]
    sub = {
        "metric": "drawdown",
        "days": 3,
        "quantile": 0.05,
        "auto_substitute": auto,
        "min_sharpe": -5,
        "max_drawdown": 0.99,
    }
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        dep_id = _deployment(conn, dep, 10_000)
        # live equity: flat for 30 days, then down 20 % a day for 3 days
        days = pd.date_range("2024-01-01", periods=33, freq="D", tz="UTC")
        equity = np.r_[np.full(30, 10_000.0), 10_000 * 0.8 ** np.arange(1, 4)]
        for day, value in zip(days, equity, strict=True):
            conn.execute(
                sa.text(
                    "INSERT INTO trading.balances (deployment_id, bar_time, equity, cash, "
                    "peak, drawdown) VALUES (:d, :t, :e, :e, 10000, 0)"
                ),
                {"d": dep_id, "t": day.to_pydatetime(), "e": float(value)},
            )
    config = _config(home, name, members=members, bench=bench, substitution=sub)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    checked = run_cli("portfolio", "check", name, env=env)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    action = "substitute" if auto else "propose"
    assert f"{action}: sma-EURUSD" in checked.stdout and "for 3 days (K=3)" in checked.stdout
    with engine.connect() as conn:
        status = dict(
            conn.execute(
                sa.text("SELECT name, status FROM portfolio.members WHERE portfolio = :p"),
                {"p": name},
            ).all()
        )
        event = conn.execute(
            sa.text("SELECT kind, details, actor FROM portfolio.events WHERE portfolio = :p"),
            {"p": name},
        ).one()
        alert = conn.execute(
            sa.text(
                "SELECT feature, run_length, action FROM monitoring.alerts "
                "WHERE model_name = :m AND rule = 'member_out_of_band'"
            ),
            {"m": f"portfolio:{name}"},
        ).one()
        stream = conn.execute(
            sa.text(
                "SELECT days FROM portfolio.streams WHERE source = 'deployment' "
                "AND inputs->>'deployment' = :d"
            ),
            {"d": dep},
        ).scalar()
    candidate = event.details["candidate"]
    assert candidate in ("bench-bh-GOOGL", "bench-sma-GOOGL")
    assert event.kind == action and event.actor == "portfolio-tester"
    assert (alert.feature, alert.run_length) == ("sma-EURUSD", 3)
    assert stream == 33  # the live stream was stored from trading.balances
    if auto:
        assert status["sma-EURUSD"] == "replaced" and status[candidate] == "active"
        # in effect at the next apply: the replacement takes the member's weight, the member's
        # deployment is cut to the floor, audited
        weight = _weights(engine, name)["sma-EURUSD"]
        applied = run_cli("portfolio", "apply", name, "--reason", "substituted", env=env)
        assert applied.returncode == 0, applied.stderr + applied.stdout
        shown = run_cli("portfolio", "status", name, env=env).stdout
        assert f"{candidate} (replaces sma-EURUSD)" in shown, shown
        assert f"{weight:.1%}" in shown.split(f"{candidate} (replaces")[1].splitlines()[0]
        with engine.connect() as conn:
            moved = conn.execute(
                sa.text(
                    "SELECT member, details FROM portfolio.events WHERE portfolio = :p "
                    "AND kind = 'apply'"
                ),
                {"p": name},
            ).one()
            capital = conn.execute(
                sa.text("SELECT capital FROM trading.deployments WHERE name = :n"), {"n": dep}
            ).scalar_one()
        assert moved.member == "sma-EURUSD" and moved.details["target"] == 0
        assert moved.details["substitution"] == f"replaced by {candidate}"
        assert capital == pytest.approx(1e-6)
        again = run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", "--json", env=env)
        weights = json.loads(again.stdout)["latest_weights"]
        assert "sma-EURUSD" not in weights and candidate in weights
    else:
        assert status["sma-EURUSD"] == "flagged" and status[candidate] == "bench"
        assert f"replace sma-EURUSD with {candidate}" in alert.action
    engine.dispose()


@pytest.mark.slow
def test_backtest_is_logged_to_mlflow_with_config_and_weights(streams, mlflow_url):
    from mlflow.tracking import MlflowClient

    env, home = streams
    env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    done = run_cli("portfolio", "backtest", "-c", _config(home, "p-mlflow"), "--json", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    run_id = json.loads(done.stdout)["mlflow_run_id"]  # stdout stays JSON while MLflow logs
    client = MlflowClient(mlflow_url)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "portfolios"
    assert run.data.params["method"] == "hrp" and run.data.params["portfolio"] == "p-mlflow"
    for key in (
        "portfolio_sharpe",
        "portfolio_deflated_sharpe",
        "equal_weight_sharpe",
        "best_member_sharpe",
        "portfolio_max_drawdown",
        "turnover_per_year",
    ):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"portfolio_config.json", "weights.csv", "portfolio_report.json"} <= artifacts
    local = client.download_artifacts(run_id, "weights.csv", str(home))
    weights = pd.read_csv(local, index_col=0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)


def test_apply_moves_cash_into_a_running_paper_deployment(streams, db_url):
    """`apply` between runs: the transfer is in the event log, the next entries are sized on
    the new equity, reconcile stays exact; a withdrawal from an invested sleeve is refused and
    writes nothing."""
    from trendcast.trading import deployments as trading
    from trendcast.trading.lifecycle import create, run_pending
    from trendcast.trading.reconcile import reconcile

    env, home = streams
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        times = (
            conn.execute(
                sa.text(
                    "SELECT open_time FROM market.bars WHERE symbol = 'EURUSD' AND "
                    "interval = '1h' ORDER BY open_time LIMIT 700"
                )
            )
            .scalars()
            .all()
        )

    def deployment(name, strategy, params, capital):
        create(
            engine,
            name=name,
            strategy=strategy,
            params=params,
            model=None,
            symbols=["EURUSD"],
            interval="1h",
            broker="paper",
            capital=capital,
            risk={},
            start=pd.Timestamp(times[400]),
            warmup=300,
        )
        run_pending(engine, name, bars=40)
        return trading.get(engine, name)

    sma = deployment("pf-xfer-sma", "sma-crossover", {"fast": 5, "slow": 20}, 10.0)
    config = _config(home, "p-xfer")
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    with engine.connect() as conn:
        weights = conn.execute(
            sa.text(
                "SELECT report -> 'latest_weights' FROM portfolio.runs WHERE portfolio = "
                "'p-xfer' ORDER BY id DESC LIMIT 1"
            )
        ).scalar_one()
    members = [dict(m) for m in MEMBERS]
    funded = max(members, key=lambda m: weights.get(m["name"], 0.0))  # a weight well above 0
    funded["deployment"] = sma.name
    config = _config(home, "p-xfer", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    done = run_cli("portfolio", "apply", "p-xfer", "--reason", "fund it", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    after = trading.get(engine, sma.name)
    assert after.capital > 1_000  # the weight of 100,000, far above the 10 it had
    logged = trading.events(engine, sma, ("capital",))
    assert len(logged) == 1 and logged[0]["actor"] == "portfolio-tester"
    assert logged[0]["details"]["amount"] == pytest.approx(after.capital - 10.0)
    assert logged[0]["details"]["why"] == "fund it"
    run_pending(engine, sma.name, bars=120)
    assert len(trading.events(engine, sma, ("transfer_applied",))) == 1
    with engine.connect() as conn:
        entries = (
            conn.execute(
                sa.text(
                    "SELECT quote_quantity FROM trading.orders WHERE deployment_id = :d AND "
                    "purpose = 'entry' AND bar_time > :b ORDER BY bar_time"
                ),
                {"d": sma.id, "b": sma.last_bar},
            )
            .scalars()
            .all()
        )
    assert entries and entries[0] > 100  # sized on the new equity, not on the 10 it had
    result = reconcile(engine, sma.name)
    assert result.fills_live == result.fills_backtest > 0
    assert result.max_equity_diff <= 1e-9 and result.equal, result.differences[:3]

    # buy-and-hold is always invested: no free cash, so a cut moves nothing and is pending
    held = deployment("pf-xfer-bh", "buy-and-hold", {}, 10_000_000.0)
    members = [dict(m) for m in MEMBERS]
    members[3]["deployment"] = held.name
    config = _config(home, "p-xfer-out", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    cut = run_cli("portfolio", "apply", "p-xfer-out", "--reason", "cut", env=env)
    assert cut.returncode == 0, cut.stderr + cut.stdout
    assert "pending: positions open" in cut.stdout
    assert trading.get(engine, held.name).capital == 10_000_000.0
    assert trading.events(engine, held, ("capital",)) == []
    with engine.connect() as conn:
        event = conn.execute(
            sa.text("SELECT kind, details FROM portfolio.events WHERE portfolio = 'p-xfer-out'")
        ).one()
        equity = conn.execute(
            sa.text(
                "SELECT equity FROM trading.balances WHERE deployment_id = :d "
                "ORDER BY bar_time DESC LIMIT 1"
            ),
            {"d": held.id},
        ).scalar_one()
    assert event.kind == "apply" and event.details["amount"] == 0
    assert event.details["pending"] == pytest.approx(equity - event.details["target"])
    engine.dispose()


def _times(engine) -> list:
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.text(
                    "SELECT open_time FROM market.bars WHERE symbol = 'EURUSD' AND "
                    "interval = '1h' ORDER BY open_time LIMIT 700"
                )
            )
            .scalars()
            .all()
        )


def _running(engine, name: str, capital: float, bars: int, risk: dict | None = None):
    """A paper sma-crossover deployment on EURUSD, stepped ``bars`` bars."""
    from trendcast.trading import deployments as trading
    from trendcast.trading.lifecycle import create, run_pending

    times = _times(engine)
    create(
        engine,
        name=name,
        strategy="sma-crossover",
        params={"fast": 5, "slow": 20},
        model=None,
        symbols=["EURUSD"],
        interval="1h",
        broker="paper",
        capital=capital,
        risk=risk or {},
        start=pd.Timestamp(times[400]),
        warmup=300,
    )
    run_pending(engine, name, bars=bars)
    return trading.get(engine, name)


def _flat(engine, name: str) -> tuple[bool, float]:
    """(flat at the last bar with no order sent there, equity at the last bar)."""
    from trendcast.trading import deployments as trading

    dep = trading.get(engine, name)
    with engine.connect() as conn:
        balance = conn.execute(
            sa.text(
                "SELECT positions, equity FROM trading.balances WHERE deployment_id = :d "
                "AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).one()
        sent = conn.execute(
            sa.text(
                "SELECT count(*) FROM trading.orders WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalar()
    return balance.positions["EURUSD"]["shares"] == 0 and sent == 0, float(balance.equity)


def _step_until(engine, name: str, done, limit: int = 250) -> float:
    from trendcast.trading.lifecycle import run_pending

    for _ in range(limit):
        flat, equity = _flat(engine, name)
        if done(flat, equity):
            return equity
        run_pending(engine, name, bars=1)
    raise AssertionError(f"{name}: the state sought never came within {limit} bars")


def _weights(engine, name: str) -> dict:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT report -> 'latest_weights' FROM portfolio.runs WHERE portfolio = :p "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"p": name},
        ).scalar_one()


@pytest.mark.parametrize("outcome", ("loss", "gain"))
def test_a_zero_weight_member_is_withdrawn_to_the_floor_after_a_loss_or_a_gain(
    streams, db_url, outcome
):
    """The target is compared with what the deployment holds (its equity), not with the
    capital once put in: after a loss the whole equity leaves (not the capital, which the
    account no longer has), after a gain the gains leave too (the capital put in goes below
    zero). Applying twice moves money once; the reconcile stays exact, and the cut trips no
    loss limit (the peak and the day's first equity scale with it)."""
    from trendcast.trading import deployments as trading
    from trendcast.trading.lifecycle import run_pending
    from trendcast.trading.reconcile import reconcile

    env, home = streams
    engine = sa.create_engine(db_url)
    name = f"pf-zero-{outcome}"
    _running(engine, name, 10_000.0, bars=20, risk={"max_drawdown": 0.2, "daily_loss": 0.2})
    want = (lambda e: e < 10_000) if outcome == "loss" else (lambda e: e > 10_000)
    equity = _step_until(engine, name, lambda flat, e: flat and want(e))
    members = [dict(m) for m in MEMBERS]
    members[0].update(deployment=name, max_weight=0.0)
    portfolio = f"p-zero-{outcome}"
    config = _config(home, portfolio, members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    assert _weights(engine, portfolio)["sma-EURUSD"] == 0
    before = run_cli("portfolio", "status", portfolio, env=env)
    assert "apply to match" in before.stdout and f"{equity:,.2f}" in before.stdout, before.stdout
    done = run_cli("portfolio", "apply", portfolio, "--reason", "cut to zero", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "matched" in done.stdout and "pending:" not in done.stdout
    dep = trading.get(engine, name)
    logged = trading.events(engine, dep, ("capital",))
    assert len(logged) == 1 and logged[0]["subject"] == "withdrawal"
    assert logged[0]["details"]["amount"] == pytest.approx(-(equity - 1e-6), abs=1e-9)
    assert dep.capital == pytest.approx(10_000 - equity + 1e-6, abs=1e-9)
    assert (dep.capital < 0) == (outcome == "gain")
    again = run_cli("portfolio", "apply", portfolio, "--reason", "cut to zero", env=env)
    assert again.returncode == 0, again.stderr + again.stdout
    assert len(trading.events(engine, dep, ("capital",))) == 1  # no second transfer
    with engine.connect() as conn:
        applied = conn.execute(
            sa.text("SELECT count(*) FROM portfolio.events WHERE portfolio = :p"), {"p": portfolio}
        ).scalar()
    assert applied == 1
    run_pending(engine, name, bars=60)
    assert len(trading.events(engine, dep, ("transfer_applied",))) == 1
    assert trading.get(engine, name).state == "running"  # not killed by its own cut
    with engine.connect() as conn:
        worst = conn.execute(
            sa.text("SELECT max(drawdown) FROM trading.balances WHERE deployment_id = :d"),
            {"d": dep.id},
        ).scalar_one()
    assert worst < 0.2
    result = reconcile(engine, name)
    assert result.max_equity_diff <= 1e-9 and result.equal, result.differences[:3]
    _, left = _flat(engine, name)
    assert 0 < left < 1e-4  # the floor (and what it earned since), never nothing
    engine.dispose()


def test_a_cut_beyond_the_free_cash_is_pending_until_the_position_closes(streams, db_url):
    """Invested at the last bar: the cut moves nothing, is audited with its pending remainder
    and shown by `status`; once flat, `apply` takes it (reconcile exact)."""
    from trendcast.trading import deployments as trading
    from trendcast.trading.reconcile import reconcile

    env, home = streams
    engine = sa.create_engine(db_url)
    name = "pf-pending"
    _running(engine, name, 10_000.0, bars=20)
    equity = _step_until(engine, name, lambda flat, e: not flat)
    members = [dict(m) for m in MEMBERS]
    members[0].update(deployment=name, max_weight=0.0)
    config = _config(home, "p-pending", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    cut = run_cli("portfolio", "apply", "p-pending", "--reason", "cut", env=env)
    assert cut.returncode == 0, cut.stderr + cut.stdout
    shown = run_cli("portfolio", "status", "p-pending", env=env)
    assert "pending: positions open" in shown.stdout, shown.stdout
    dep = trading.get(engine, name)
    assert dep.capital == 10_000 and trading.events(engine, dep, ("capital",)) == []
    with engine.connect() as conn:
        event = conn.execute(
            sa.text("SELECT details FROM portfolio.events WHERE portfolio = 'p-pending'")
        ).scalar_one()
    assert event["amount"] == 0 and event["pending"] == pytest.approx(equity - 1e-6)
    held = _step_until(engine, name, lambda flat, e: flat)
    taken = run_cli("portfolio", "apply", "p-pending", "--reason", "cut, flat now", env=env)
    assert taken.returncode == 0 and "matched" in taken.stdout, taken.stdout
    logged = trading.events(engine, dep, ("capital",))
    assert len(logged) == 1 and logged[0]["details"]["amount"] == pytest.approx(-(held - 1e-6))
    from trendcast.trading.lifecycle import run_pending

    run_pending(engine, name, bars=30)
    result = reconcile(engine, name)
    assert result.max_equity_diff <= 1e-9 and result.equal, result.differences[:3]
    engine.dispose()


def test_apply_waits_for_a_bar_step_in_progress(streams, db_url):
    """A runner paused in the middle of a bar (after funding, before its snapshot is
    committed): `apply` waits for the step to end, so its transfer takes effect from the next
    bar, and the reconcile stays exact."""
    import threading
    import time

    from trendcast.trading import deployments as trading
    from trendcast.trading.lifecycle import run_pending
    from trendcast.trading.reconcile import reconcile

    env, home = streams
    engine = sa.create_engine(db_url)
    name = "pf-midbar"
    dep = _running(engine, name, 10.0, bars=30)
    config = _config(home, "p-midbar")
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    weights = _weights(engine, "p-midbar")
    members = [dict(m) for m in MEMBERS]
    funded = max(members, key=lambda m: weights.get(m["name"], 0.0))  # a weight well above 0
    funded["deployment"] = name
    config = _config(home, "p-midbar", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0

    def waiting(kind: str) -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = :k"),
                    {"k": kind},
                ).scalar()
            )

    def until(check, what: str) -> None:
        for _ in range(300):
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"never {what}")

    blocker = engine.connect()
    blocker.execute(
        sa.text("SELECT 1 FROM trading.positions WHERE deployment_id = :d FOR UPDATE"),
        {"d": dep.id},
    )  # the step's snapshot writes this row: it stops there, inside its step
    out = {}
    step = threading.Thread(target=lambda: out.update(step=run_pending(engine, name, bars=1)))
    step.start()
    until(lambda: waiting("transactionid") or waiting("tuple"), "paused mid-step")
    applying = threading.Thread(
        target=lambda: out.update(
            apply=run_cli("portfolio", "apply", "p-midbar", "--reason", "mid-bar", env=env)
        )
    )
    applying.start()
    until(lambda: waiting("advisory"), "waiting for the step")
    assert trading.events(engine, dep, ("capital",)) == []  # nothing moved mid-step
    blocker.rollback()
    blocker.close()
    step.join(120)
    applying.join(120)
    assert out["apply"].returncode == 0, out["apply"].stderr + out["apply"].stdout
    stepped = out["step"].last["bar"]
    logged = trading.events(engine, dep, ("capital",))
    assert len(logged) == 1 and logged[0]["details"]["amount"] > 1_000, out["apply"].stdout
    assert pd.Timestamp(logged[0]["details"]["after_bar"]) == stepped  # the bar just stepped
    run_pending(engine, name, bars=40)
    assert len(trading.events(engine, dep, ("transfer_applied",))) == 1
    result = reconcile(engine, name)
    assert result.max_equity_diff <= 1e-9 and result.equal, result.differences[:3]
    engine.dispose()


def test_a_deployed_member_goes_on_with_its_live_returns(streams, db_url):
    """`portfolio backtest` records the member's deployment's live stream and appends it
    after the backtest's last day; a deposit is no return (time-weighted)."""
    from trendcast.portfolio import store
    from trendcast.portfolio.config import Member

    env, home = streams
    engine = sa.create_engine(db_url)
    plain = Member(name="sma-EURUSD", strategy="sma-crossover", symbols=["EURUSD"])
    backtest = store.stream_for(engine, plain)
    last = backtest.index[-1]
    times = [(last + pd.Timedelta(days=k + 1, hours=12)).tz_localize("UTC") for k in range(10)]
    equity = [10_000 * 1.01**k for k in range(5)]
    equity += [(equity[-1] * 1.01 + 5_000) * 1.01**k for k in range(5)]
    with engine.begin() as conn:
        dep_id = _deployment(conn, "pf-live-ext", 10_000)
        for when, value in zip(times, equity, strict=True):
            conn.execute(
                sa.text(
                    "INSERT INTO trading.balances (deployment_id, bar_time, equity, cash, "
                    "peak, drawdown) VALUES (:d, :t, :e, :e, :e, 0)"
                ),
                {"d": dep_id, "t": when.to_pydatetime(), "e": value},
            )
        conn.execute(
            sa.text(
                "INSERT INTO trading.events (deployment_id, kind, subject, details, actor) "
                "VALUES (:d, 'capital', 'deposit', CAST(:x AS jsonb), 'test')"
            ),
            {"d": dep_id, "x": json.dumps({"amount": 5_000, "after_bar": times[4].isoformat()})},
        )
    members = [dict(m) for m in MEMBERS]
    members[0]["deployment"] = "pf-live-ext"
    config = _config(home, "p-live-ext", members=members)
    assert run_cli("portfolio", "backtest", "-c", config, "--no-mlflow", env=env).returncode == 0
    deployed = Member(**members[0])
    spliced = store.stream_for(engine, deployed, live=True)
    pd.testing.assert_series_equal(spliced[: len(backtest)], backtest, check_names=False)
    live = spliced[len(backtest) :]
    assert list(live.index) == [t.tz_localize(None).normalize() for t in times]
    np.testing.assert_allclose(live.to_numpy(), [0.0] + [0.01] * 9, atol=1e-12)
    frame = store.member_frame(engine, [deployed, Member(**MEMBERS[1])])
    assert frame["sma-EURUSD"].last_valid_index() == live.index[-1]
    engine.dispose()
