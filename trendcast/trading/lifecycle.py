"""A deployment's life: create (validated, costs and warm-up fixed), run, status, stop.

What is fixed at creation is what the reconciliation needs to rebuild the backtest: the bar
the account starts at (``start_bar``), the first bar the strategy sees (``history_start``,
``warmup`` bars earlier) and each symbol's cost fractions (an FX spread in pips is a fraction
of the price level, which would otherwise drift with the price).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError, TrendcastError
from trendcast.strategy import make_strategy
from trendcast.trading import deployments as store
from trendcast.trading.broker import Broker

DEFAULT_WARMUP = 500


def parse_model(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    if text.count("@") != 1 or not all(text.split("@")):
        raise InputError(f"--model {text!r}: must be MODEL@ALIAS, e.g. EURUSD_1h_h4@production")
    name, alias = text.split("@")
    return name, alias


def create(
    engine: Engine,
    *,
    name: str,
    strategy: str,
    params: dict,
    model: str | None,
    symbols: list[str],
    interval: str,
    broker: str,
    capital: float,
    risk: dict,
    start: pd.Timestamp | None = None,
    warmup: int = DEFAULT_WARMUP,
    client=None,
) -> store.Deployment:
    """Validate and record a deployment (stage ``demo``); nothing is written on bad input."""
    from trendcast.costs import market_terms

    if not store.NAME.fullmatch(name or ""):
        raise InputError(f"name {name!r}: letters, digits, '_', '.', '-' (≤ 63), not leading")
    if broker not in store.BROKERS:
        raise InputError(f"--broker {broker!r}: must be one of {', '.join(store.BROKERS)}")
    if not capital > 0:
        raise InputError(f"--capital {capital}: must be > 0")
    if warmup < 0:
        raise InputError(f"--warmup {warmup}: must be >= 0")
    symbols = [s.strip().upper() for s in symbols if s.strip()]
    if not symbols or len(set(symbols)) != len(symbols):
        raise InputError("--symbols: give one or more distinct symbols, e.g. EURUSD,BTCUSDT")
    chosen = make_strategy(strategy, **params)  # unknown strategy or parameter: refused here
    if chosen.params.get("stop_loss") or chosen.params.get("take_profit"):
        raise InputError(
            "stop_loss / take_profit: intrabar stops are not traded by deployments yet; "
            "deploy the strategy without them"
        )
    model_name, alias = parse_model(model)
    if strategy == "model-threshold" and model_name is None:
        raise InputError("--model: the model-threshold strategy needs MODEL@ALIAS")
    if strategy != "model-threshold" and model_name is not None:
        raise InputError(f"--model: strategy {strategy} uses no model")
    risk = store.check_risk(risk)
    if model_name is not None:
        from trendcast.trading.inputs import load_verified, resolve_alias

        version = resolve_alias(client, engine, model_name, alias)
        load_verified(client, model_name, version)  # refuse a bad artifact now, not at run
        if "threshold" not in params:  # the threshold the model was backtested with
            params = {**params, "threshold": logged_threshold_of(client, model_name, version)}
    costs, starts, histories = {}, [], []
    with engine.connect() as conn:
        for symbol in symbols:
            bars = conn.execute(
                sa.text(
                    "SELECT open_time, close FROM market.bars WHERE symbol = :s AND "
                    "interval = CAST(:i AS market.bar_interval) AND "
                    "(CAST(:t AS timestamptz) IS NULL OR open_time >= :t) "
                    "ORDER BY open_time LIMIT 1"
                    if start is not None
                    else "SELECT open_time, close FROM market.bars WHERE symbol = :s AND "
                    "interval = CAST(:i AS market.bar_interval) ORDER BY open_time DESC LIMIT 1"
                ),
                {"s": symbol, "i": interval, "t": start},
            ).first()
            if bars is None:
                when = f" at or after {start}" if start is not None else ""
                raise InputError(f"--symbols {symbol}: no stored {interval} bars{when}")
            starts.append(pd.Timestamp(bars.open_time))
            history = conn.execute(
                sa.text(
                    "SELECT min(open_time) FROM (SELECT open_time FROM market.bars WHERE "
                    "symbol = :s AND interval = CAST(:i AS market.bar_interval) AND "
                    "open_time <= :t ORDER BY open_time DESC LIMIT :n) w"
                ),
                {"s": symbol, "i": interval, "t": bars.open_time, "n": warmup + 1},
            ).scalar_one()
            histories.append(pd.Timestamp(history))
            terms = market_terms(conn, symbol, interval, float(bars.close))
            c = terms.costs.costs
            costs[symbol] = {
                "fee": c.fee,
                "spread": c.spread,
                "slippage": c.slippage,
                "profile": c.profile,
            }
    return store.insert(
        engine,
        {
            "name": name,
            "strategy": strategy,
            "params": chosen.get_params() | params,
            "model_name": model_name,
            "model_alias": alias,
            "symbols": symbols,
            "interval": interval,
            "broker": broker,
            "capital": float(capital),
            "risk": risk,
            "costs": costs,
            "history_start": max(histories).to_pydatetime(),
            "start_bar": max(starts).to_pydatetime(),
            "created_by": store.who(),
        },
    )


def logged_threshold_of(client, name: str, version: int) -> float:
    """The model-threshold strategy's threshold in the version's logged backtest report."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from trendcast.artifacts import BACKTEST_REPORT
    from trendcast.strategy import logged_threshold

    run_id = client.get_model_version(name, str(version)).run_id
    try:
        report = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BACKTEST_REPORT}")
    except MlflowException:
        report = None
    return logged_threshold(report if isinstance(report, dict) else None)[0]


def make_broker(engine: Engine, dep: store.Deployment, settings=None) -> Broker:
    """The deployment's venue: the paper book, or Binance's API from the settings."""
    if dep.broker == "paper":
        from trendcast.backtest import Costs
        from trendcast.trading.paper import PaperBroker

        with engine.connect() as conn:  # a sleeve opens with the capital first funded
            first = store.initial_capital(conn, dep) / len(dep.symbols)
        return PaperBroker(
            engine,
            dep.name,
            dep.interval,
            {s: Costs(**dep.costs[s]) for s in dep.symbols},
            {s: first for s in dep.symbols},
        )
    try:
        from trendcast.trading import binance
    except ImportError:
        raise TrendcastError(
            "broker binance: trendcast.trading.binance is not installed in this build"
        ) from None
    from trendcast.config import get_settings

    settings = settings or get_settings()
    factory = getattr(binance.BinanceBroker, "from_settings", None)
    return factory(settings) if factory else binance.BinanceBroker(settings)


@dataclass
class RunSummary:
    steps: int
    last: dict | None
    stopped: str | None = None


def runner_for(engine: Engine, name: str, *, replayed: bool, clock=None, client=None):
    from trendcast.trading.runner import Runner

    dep = store.get(engine, name)
    if client is None and dep.model_name:
        from trendcast.tracking import mlflow_client

        client = mlflow_client()
    return Runner(
        engine, dep, make_broker(engine, dep), client=client, clock=clock, replayed=replayed
    )


def run_pending(
    engine: Engine,
    name: str,
    *,
    bars: int | None = None,
    until: pd.Timestamp | None = None,
    clock=None,
    client=None,
    on_step=None,
) -> RunSummary:
    """Reconcile with the venue, then step every stored bar not yet stepped (at most ``bars``,
    up to ``until``); replayed runs (``bars`` / ``until``) step stored history as if live, with
    no staleness guard."""
    runner = runner_for(
        engine, name, replayed=bars is not None or until is not None, clock=clock, client=client
    )
    if runner.dep.state in ("stopped", "killed"):
        raise store.DeploymentStopped(
            f"deployment {name} is {runner.dep.state}: {runner.dep.state_reason}"
        )
    runner.sync()
    # live, every missed bar is stepped too: its balance is snapshot and, closed more than two
    # intervals ago, its decision is skipped as stale with the reason recorded, so a runner
    # that was down leaves an explained gap in the reconciliation, not a silent one
    pending = runner.pending_bars(until, bars)
    last = None
    for bar in pending:
        last = runner.step(bar)
        if on_step is not None:
            on_step(last)
        if "killed" in last:
            return RunSummary(len(pending), last, last["killed"])
    return RunSummary(len(pending), last)


def stop(engine: Engine, name: str, *, flatten: bool, hand_over: bool) -> list[str]:
    """Stop trading: ``flatten`` closes every position at the next open; ``hand_over`` leaves
    them to the account's owner. Exactly one must be chosen; both are audited."""
    if flatten == hand_over:
        raise InputError("deploy stop: choose exactly one of --flatten or --hand-over")
    runner = runner_for(engine, name, replayed=True)
    dep = runner.dep
    if dep.state in ("stopped", "killed"):
        raise InputError(f"deployment {name}: already {dep.state}")
    runner.sync()
    bar = pd.Timestamp(dep.last_bar or dep.start_bar)
    with engine.connect() as conn:
        sleeves = {s: runner.sleeve(conn, s) for s in dep.symbols}
    held = {s: v[1] for s, v in sleeves.items() if v[1] != 0}
    if flatten:
        runner.flatten(
            bar,
            sleeves,
            runner._closes(bar),
            kind="stopped",
            reason="stopped by operator (flatten)",
        )
        return [f"flatten {s} {q:+.8g} at the next open" for s, q in held.items()]
    store.set_state(
        engine,
        dep,
        "stopped",
        "stopped by operator (hand-over)",
        "stopped",
        {"handed_over": held},
        stage="stopped",
    )
    return [f"handed over {s} {q:+.8g}" for s, q in held.items()]


def status(engine: Engine, name: str) -> dict:
    """The deployment, its positions, last balance, recent orders and open alerts."""
    dep = store.get(engine, name)
    with engine.connect() as conn:
        balance = conn.execute(
            sa.text(
                "SELECT bar_time, equity, cash, drawdown FROM trading.balances WHERE "
                "deployment_id = :d ORDER BY bar_time DESC LIMIT 1"
            ),
            {"d": dep.id},
        ).first()
        positions = conn.execute(
            sa.text(
                "SELECT symbol, quantity FROM trading.positions WHERE deployment_id = :d "
                "ORDER BY symbol"
            ),
            {"d": dep.id},
        ).all()
        counts = dict(
            conn.execute(
                sa.text(
                    "SELECT status, count(*) FROM trading.orders WHERE deployment_id = :d "
                    "GROUP BY status"
                ),
                {"d": dep.id},
            ).all()
        )
        fills = conn.execute(
            sa.text("SELECT count(*) FROM trading.fills WHERE deployment_id = :d"),
            {"d": dep.id},
        ).scalar_one()
    return {
        "deployment": dep,
        "balance": dict(balance._mapping) if balance else None,
        "positions": {r.symbol: float(r.quantity) for r in positions},
        "orders": counts,
        "fills": int(fills),
        "late": is_late(dep),
    }


def is_late(dep: store.Deployment, now: dt.datetime | None = None) -> bool:
    """A running deployment that has not stepped for more than two intervals."""
    from trendcast.gaps import step_offset

    if dep.state != "running" or dep.last_step_at is None:
        return False
    now = now or dt.datetime.now(dt.UTC)
    return now - dep.last_step_at > 2 * pd.Timedelta(step_offset(dep.interval))


def check_running(engine: Engine, now: dt.datetime | None = None) -> list[str]:
    """Alert on every deployment that should be running but has not stepped (its runner is
    down); returns their names."""
    late = [d for d in store.list_all(engine) if is_late(d, now)]
    for dep in late:
        store.alert(
            engine,
            dep,
            "deployment_down",
            f"{dep.name}: running but last stepped at {dep.last_step_at:%Y-%m-%d %H:%M} UTC",
            action=f"restart `trendcast deploy run {dep.name} --scheduled`",
        )
    return [d.name for d in late]
