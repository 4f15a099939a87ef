"""Strategy deployments on a real PostgreSQL: the paper broker traded bar by bar equals the
vectorised backtest, crash recovery never duplicates an order, and each risk limit trips at its
threshold."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast.errors import InputError
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES
from trendcast.trading import deployments as store
from trendcast.trading.lifecycle import create, run_pending, stop
from trendcast.trading.reconcile import reconcile

HOUR = pd.Timedelta(hours=1)
N_BARS = 900


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame.iloc[:N_BARS].reset_index(drop=True)


@pytest.fixture
def bars(engine, eurusd) -> pd.DataFrame:
    load_frame(engine, eurusd, symbol="EURUSD", interval="1h", source="test", origin="test")
    return eurusd


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def deploy(engine, bars, strategy="sma-crossover", params=None, start_row=600, **kw):
    return create(
        engine,
        name=unique(strategy),
        strategy=strategy,
        params=params or {},
        model=kw.pop("model", None),
        symbols=["EURUSD"],
        interval="1h",
        broker="paper",
        capital=kw.pop("capital", 10_000.0),
        risk=kw.pop("risk", {}),
        start=pd.Timestamp(bars["open_time"].iloc[start_row]),
        warmup=kw.pop("warmup", 300),
        **kw,
    )


def orders(engine, dep) -> pd.DataFrame:
    return pd.read_sql(
        sa.text("SELECT * FROM trading.orders WHERE deployment_id = :d ORDER BY id"),
        engine,
        params={"d": dep.id},
    )


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("buy-and-hold", {}),
        ("sma-crossover", {"fast": 5, "slow": 20}),
        ("sma-crossover", {"fast": 5, "slow": 20, "allow_short": True}),  # reversals
    ],
)
def test_paper_bar_by_bar_equals_the_vectorised_backtest(engine, bars, strategy, params):
    dep = deploy(engine, bars, strategy, params)
    summary = run_pending(engine, dep.name, bars=150)
    assert summary.steps == 150
    result = reconcile(engine, dep.name)
    assert result.bars == 150
    assert result.fills_live == result.fills_backtest > 0
    assert result.max_equity_diff <= 1e-9, result.differences[:3]
    assert result.max_fill_price_diff <= 1e-9 and result.max_fill_quantity_diff <= 1e-9
    assert result.equal
    # the account moved: a flat line would compare equal trivially
    equity = result.equity["live"].to_numpy()
    assert np.ptp(equity) > 1.0
    # intended vs executed: the intent is the decision close, the fill the next open +- cost
    fills = pd.read_sql(
        sa.text("SELECT * FROM trading.fills WHERE deployment_id = :d"),
        engine,
        params={"d": dep.id},
    )
    assert (fills["price"] != fills["intended_price"]).all()
    assert fills["venue_trade_id"].is_unique


def test_a_restart_does_not_step_or_order_twice(engine, bars):
    dep = deploy(engine, bars, "sma-crossover", {"fast": 5, "slow": 20})
    run_pending(engine, dep.name, bars=100)
    before = orders(engine, dep)
    again = run_pending(engine, dep.name, bars=0 or None, until=bars["open_time"].iloc[699])
    assert again.steps == 0  # bars up to 699 were stepped already (rows 600..699)
    assert len(orders(engine, dep)) == len(before)
    more = run_pending(engine, dep.name, bars=50)
    assert more.steps == 50
    assert reconcile(engine, dep.name).equal


def test_a_drawdown_limit_kills_at_its_threshold(engine, bars):
    probe = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, probe.name, bars=60)
    balances = pd.read_sql(
        sa.text(
            "SELECT bar_time, drawdown FROM trading.balances WHERE deployment_id = :d "
            "ORDER BY bar_time"
        ),
        engine,
        params={"d": probe.id},
    )
    worst = float(balances["drawdown"].max())
    first_bar = balances.loc[balances["drawdown"].idxmax(), "bar_time"]
    assert worst > 0
    # just above the worst drawdown: never trips
    above = deploy(engine, bars, "buy-and-hold", risk={"max_drawdown": worst * (1 + 1e-9)})
    assert run_pending(engine, above.name, bars=60).stopped is None
    # exactly at it: trips at that bar, flattens and stops, audited and alerted
    at = deploy(engine, bars, "buy-and-hold", risk={"max_drawdown": worst})
    summary = run_pending(engine, at.name, bars=60)
    assert summary.stopped and "drawdown" in summary.stopped
    assert pd.Timestamp(summary.last["bar"]) <= pd.Timestamp(first_bar)
    dep = store.get(engine, at.name)
    assert (dep.state, dep.stage) == ("killed", "stopped")
    flat = orders(engine, at)
    assert flat["purpose"].iloc[-1] == "flatten"
    assert [e["kind"] for e in store.events(engine, dep, ("kill_switch",))] == ["kill_switch"]
    with engine.connect() as conn:
        alerts = (
            conn.execute(
                sa.text("SELECT rule FROM monitoring.alerts WHERE model_name = :m"),
                {"m": dep.alert_name},
            )
            .scalars()
            .all()
        )
    assert "kill_switch" in alerts
    with pytest.raises(store.DeploymentStopped, match="killed"):
        run_pending(engine, at.name, bars=1)


def test_a_daily_loss_limit_kills_at_its_threshold(engine, bars):
    probe = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, probe.name, bars=60)
    eq = pd.read_sql(
        sa.text(
            "SELECT bar_time, equity FROM trading.balances WHERE deployment_id = :d "
            "ORDER BY bar_time"
        ),
        engine,
        params={"d": probe.id},
    )
    eq["day"] = pd.to_datetime(eq["bar_time"], utc=True).dt.floor("D")
    start = eq.groupby("day")["equity"].last().shift(1).fillna(probe.capital)
    loss = 1 - eq["equity"] / eq["day"].map(start)
    worst = float(loss.max())
    assert worst > 0
    above = deploy(engine, bars, "buy-and-hold", risk={"daily_loss": worst * (1 + 1e-9)})
    assert run_pending(engine, above.name, bars=60).stopped is None
    at = deploy(engine, bars, "buy-and-hold", risk={"daily_loss": worst})
    summary = run_pending(engine, at.name, bars=60)
    assert summary.stopped and "daily loss" in summary.stopped


def test_position_and_notional_limits_block_the_entry_at_their_threshold(engine, bars):
    probe = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, probe.name, bars=2)
    entry = orders(engine, probe).iloc[0]
    size, notional = float(entry["quantity"]), float(entry["quantity"] * entry["intended_price"])
    at = deploy(engine, bars, "buy-and-hold", risk={"max_position": size})
    run_pending(engine, at.name, bars=2)
    assert len(orders(engine, at)) == 1  # exactly at the limit: sent
    below = deploy(engine, bars, "buy-and-hold", risk={"max_position": size * (1 - 1e-9)})
    run_pending(engine, below.name, bars=2)
    assert orders(engine, below).empty
    blocked = store.events(engine, store.get(engine, below.name), ("order_blocked",))
    assert blocked and blocked[0]["details"]["limit"] == "max_position"
    cap = deploy(engine, bars, "buy-and-hold", risk={"max_notional": notional * (1 - 1e-9)})
    run_pending(engine, cap.name, bars=2)
    assert orders(engine, cap).empty
    # the reconciliation names the blocked order as the reason the backtest differs
    result = reconcile(engine, below.name)
    assert result.differences and not result.unexplained
    assert "order_blocked" in result.differences[0]["explained_by"]


def test_stop_flatten_and_hand_over_are_explicit_and_audited(engine, bars):
    flat = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, flat.name, bars=5)
    with pytest.raises(InputError, match="exactly one of --flatten or --hand-over"):
        stop(engine, flat.name, flatten=False, hand_over=False)
    lines = stop(engine, flat.name, flatten=True, hand_over=False)
    assert lines and lines[0].startswith("flatten EURUSD")
    assert orders(engine, flat)["purpose"].iloc[-1] == "flatten"
    kept = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, kept.name, bars=5)
    lines = stop(engine, kept.name, flatten=False, hand_over=True)
    assert lines[0].startswith("handed over EURUSD")
    dep = store.get(engine, kept.name)
    assert dep.state == "stopped"
    assert store.events(engine, dep, ("stopped",))[0]["details"]["handed_over"]["EURUSD"] > 0


def test_a_bar_older_than_two_intervals_is_not_traded(engine, bars):
    newest = pd.Timestamp(bars["open_time"].iloc[-1]).to_pydatetime()
    closed = newest + HOUR
    # live runs step every missed bar; the newest closed exactly two intervals ago is decided
    fresh = deploy(engine, bars, "buy-and-hold", start_row=N_BARS - 3)
    run_pending(engine, fresh.name, clock=lambda: closed + 2 * HOUR)
    assert len(orders(engine, fresh)) == 1
    assert pd.Timestamp(orders(engine, fresh)["bar_time"].iloc[0]) == pd.Timestamp(newest)
    # a microsecond later every one is stale: no decision, no order, each reason recorded
    dep = deploy(engine, bars, "buy-and-hold", start_row=N_BARS - 3)
    run_pending(engine, dep.name, clock=lambda: closed + 2 * HOUR + pd.Timedelta(1, "us"))
    decided = pd.read_sql(
        sa.text("SELECT bar_time, skipped FROM trading.decisions WHERE deployment_id = :d "
                "ORDER BY bar_time"),
        engine,
        params={"d": dep.id},
    )  # fmt: skip
    assert len(decided) == 3 and decided["skipped"].str.startswith("stale").all()
    assert pd.Timestamp(decided["bar_time"].iloc[-1]) == pd.Timestamp(newest)
    assert orders(engine, dep).empty
    balances = pd.read_sql(
        sa.text("SELECT count(*) AS n FROM trading.balances WHERE deployment_id = :d"),
        engine,
        params={"d": dep.id},
    )
    assert balances["n"].iloc[0] == 3  # every missed bar is snapshot all the same


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "nope"}, "strategy 'nope': unknown"),
        ({"params": {"fast": 30, "slow": 20}}, "need 1 <= fast < slow"),
        ({"risk": {"max_drawdown": 1.5}}, "max_drawdown=1.5: must be"),
        ({"risk": {"max_loss": 0.1}}, r"risk limit\(s\) \['max_loss'\]: unknown"),
        ({"capital": 0}, "--capital 0: must be > 0"),
        ({"broker": "ib"}, "--broker 'ib': must be one of paper, binance"),
        ({"symbols": ["NOPE"]}, "--symbols NOPE: no stored 1h bars"),
        ({"strategy": "model-threshold"}, "--model: the model-threshold strategy needs"),
        ({"model": "noalias"}, "--model 'noalias': must be MODEL@ALIAS"),
        (
            {"params": {"stop_loss": 0.01}, "strategy": "model-threshold", "model": "m@a"},
            "stop_loss / take_profit",
        ),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(engine, bars, kwargs, message):
    values = {
        "name": unique("bad"),
        "strategy": "sma-crossover",
        "params": {},
        "model": None,
        "symbols": ["EURUSD"],
        "interval": "1h",
        "broker": "paper",
        "capital": 1000.0,
        "risk": {},
    }
    with pytest.raises(InputError, match=message):
        create(engine, **{**values, **kwargs})
    with engine.connect() as conn:
        assert not conn.execute(
            sa.text("SELECT 1 FROM trading.deployments WHERE name = :n"), {"n": values["name"]}
        ).first()


@pytest.mark.parametrize("point", ["after_submit", "before_submit"])
def test_kill_9_around_submit_then_restart_never_duplicates_an_order(engine, bars, env, point):
    from conftest import run_cli

    dep = deploy(engine, bars, "sma-crossover", {"fast": 5, "slow": 20})
    killed = run_cli(
        "deploy",
        "run",
        dep.name,
        "--bars",
        "60",
        env={**env, "TRENDCAST_DEPLOY_FAULT_POINT": point},
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILL, exactly at the fault point
    intents = orders(engine, dep)
    assert len(intents) == 1 and intents["status"].iloc[0] == "intended"
    with engine.connect() as conn:
        at_venue = conn.execute(
            sa.text("SELECT count(*) FROM trading.paper_orders WHERE account LIKE :a"),
            {"a": f"{dep.name}/%"},
        ).scalar_one()
    assert at_venue == (1 if point == "after_submit" else 0)

    resumed = run_cli("deploy", "run", dep.name, "--bars", "60", env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = orders(engine, dep)
    with engine.connect() as conn:
        venue = (
            conn.execute(
                sa.text("SELECT client_order_id FROM trading.paper_orders WHERE account LIKE :a"),
                {"a": f"{dep.name}/%"},
            )
            .scalars()
            .all()
        )
    assert sorted(venue) == sorted(after["client_order_id"])  # one venue order per intent
    assert intents["client_order_id"].iloc[0] in venue
    assert set(after["status"]) <= {"filled", "new"}
    result = reconcile(engine, dep.name)
    assert result.equal, result.differences[:3]
    shown = run_cli("deploy", "reconcile", dep.name, env=env)
    assert shown.returncode == 0 and "equal" in shown.stdout, shown.stdout + shown.stderr


def _gates(engine, name, days, trades, tolerance):
    from trendcast.trading.promotion import Thresholds, gates

    return gates(engine, store.get(engine, name), Thresholds(days, trades, tolerance))


def test_promotion_gates_pass_at_their_boundaries_and_fail_just_beyond(engine, bars):
    from trendcast.trading.promotion import PromotionRefused, promote

    dep = deploy(engine, bars, "sma-crossover", {"fast": 5, "slow": 20})
    run_pending(engine, dep.name, bars=150)
    with engine.connect() as conn:
        span, n_fills, worst = conn.execute(
            sa.text(
                "SELECT (SELECT max(bar_time) - min(bar_time) FROM trading.balances WHERE "
                "deployment_id = :d), (SELECT count(*) FROM trading.fills WHERE deployment_id "
                "= :d), (SELECT max(abs(slippage)) FROM trading.fills WHERE deployment_id = :d)"
            ),
            {"d": dep.id},
        ).one()
    days = span.total_seconds() / 86400
    at = _gates(engine, dep.name, days, n_fills, 0.0)
    assert all(ok for ok, _ in at.values()), at
    beyond = _gates(engine, dep.name, days + 1e-6, n_fills + 1, 0.0)
    failed = [gate for gate, (ok, _) in beyond.items() if not ok]
    assert failed == [f"demo days >= {days + 1e-6:g}", f"demo trades >= {n_fills + 1}"]
    # slippage: a band exactly at the worst fill passes, just below it fails
    for band, passes in ((worst, True), (worst * (1 - 1e-9), False)):
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE trading.deployments SET risk = jsonb_set(risk, "
                        "'{slippage_band}', to_jsonb(CAST(:b AS double precision))) "
                        "WHERE id = :d"),
                {"b": band, "d": dep.id},
            )  # fmt: skip
        result = _gates(engine, dep.name, days, n_fills, 0.0)
        assert [ok for gate, (ok, _) in result.items() if gate.startswith("slippage")] == [passes]
    # every gate failing is named in the refusal; nothing moves, the attempt is audited
    from trendcast.trading.promotion import Thresholds

    class Live:
        binance_api_key = "k"
        binance_api_secret = "s"
        binance_base_url = "https://api.binance.com"

    with pytest.raises(PromotionRefused) as refused:
        promote(engine, dep.name, "live", Live(), Thresholds(days + 1, n_fills + 1, 0.0))
    message = str(refused.value)
    assert "demo days" in message and "demo trades" in message and "slippage" in message
    assert "live needs the binance broker (this deployment uses paper)" in message
    assert "API_KEY" not in message  # the keys given are not named as missing
    events = store.events(engine, store.get(engine, dep.name), ("promotion",))
    assert events[-1]["details"]["passed"] is False
    assert store.get(engine, dep.name).stage == "demo"


def test_equity_gate_and_unreconciled_orders_gate(engine, bars):
    from trendcast.trading.broker import VenueUnavailable
    from trendcast.trading.lifecycle import make_broker
    from trendcast.trading.runner import Runner

    # a blocked entry leaves the backtest's path: the equity gap is the gate's figure
    below = deploy(engine, bars, "buy-and-hold", risk={"max_notional": 1.0})
    run_pending(engine, below.name, bars=48)
    gap = reconcile(engine, below.name).max_equity_diff
    assert gap > 0
    at = _gates(engine, below.name, 0, 0, gap)
    assert at[f"equity within {gap:g} of the backtest"][0]
    under = _gates(engine, below.name, 0, 0, gap * (1 - 1e-9))
    assert not under[f"equity within {gap * (1 - 1e-9):g} of the backtest"][0]

    class Down:  # the venue stops answering after accepting nothing
        name = "paper"

        def __init__(self, inner):
            self.inner = inner

        def submit(self, order):
            raise VenueUnavailable("connection reset by peer")

        def __getattr__(self, item):
            return getattr(self.inner, item)

    dep = deploy(engine, bars, "buy-and-hold")
    record = store.get(engine, dep.name)
    runner = Runner(engine, record, Down(make_broker(engine, record)), replayed=True)
    with pytest.raises(VenueUnavailable):
        runner.step(runner.pending_bars()[0])
    assert orders(engine, dep)["status"].tolist() == ["unknown"]
    result = _gates(engine, dep.name, 0, 0, 1.0)
    assert not result["no unreconciled orders"][0]
    with engine.connect() as conn:
        rules = (
            conn.execute(
                sa.text("SELECT rule FROM monitoring.alerts WHERE model_name = :m"),
                {"m": record.alert_name},
            )
            .scalars()
            .all()
        )
    assert rules == ["venue_unreachable"]
    # the venue is back: the next run asks it, sends the order it never got, and moves on
    run_pending(engine, dep.name, bars=3)
    assert orders(engine, dep)["status"].iloc[0] == "filled"
    assert _gates(engine, dep.name, 0, 0, 1.0)["no unreconciled orders"][0]
    assert reconcile(engine, dep.name).equal


def test_a_running_deployment_that_stopped_stepping_is_alerted(engine, bars):
    from trendcast.trading.lifecycle import check_running

    dep = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, dep.name, bars=1)
    stepped = store.get(engine, dep.name).last_step_at
    on_time = check_running(engine, stepped + 2 * HOUR)  # exactly two intervals: on time
    assert dep.name not in on_time
    assert dep.name in check_running(engine, stepped + 2 * HOUR + pd.Timedelta(1, "s"))
    with engine.connect() as conn:
        rule = conn.execute(
            sa.text("SELECT rule FROM monitoring.alerts WHERE model_name = :m"),
            {"m": f"deploy:{dep.name}"},
        ).scalar_one()
    assert rule == "deployment_down"


def test_two_symbols_trade_as_two_sleeves_each_equal_to_its_backtest(engine, bars):
    from trendcast.synth import synth_bars

    syn = synth_bars(N_BARS, interval="1h", start=str(bars["open_time"].iloc[0].date()), seed=5)
    load_frame(engine, syn, symbol="SYN", interval="1h", source="test", origin="test")
    dep = create(
        engine, name=unique("pair"), strategy="sma-crossover", params={"fast": 5, "slow": 20},
        model=None, symbols=["EURUSD", "SYN"], interval="1h", broker="paper",
        capital=20_000.0, risk={}, start=pd.Timestamp(bars["open_time"].iloc[600]), warmup=300,
    )  # fmt: skip
    assert dep.sleeve_capital == 10_000.0
    run_pending(engine, dep.name, bars=120)  # SYN trades at weekends, EURUSD does not
    result = reconcile(engine, dep.name)
    traded = orders(engine, dep).groupby("symbol").size()
    assert set(traded.index) == {"EURUSD", "SYN"}
    assert result.fills_live == result.fills_backtest
    assert result.max_equity_diff <= 1e-9 and result.max_fill_price_diff <= 1e-9
    assert result.equal, result.differences[:3]


def test_cli_status_list_stop_and_bad_input(engine, bars, env):
    from conftest import run_cli

    dep = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, dep.name, bars=3)
    shown = run_cli("deploy", "status", dep.name, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"{dep.name}: stage demo, state running" in shown.stdout
    assert "positions {'EURUSD':" in shown.stdout and "fills 1" in shown.stdout
    listed = run_cli("deploy", "list", env=env)
    assert dep.name in listed.stdout and "demo" in listed.stdout
    stopped = run_cli("deploy", "stop", dep.name, "--flatten", env=env)
    assert stopped.returncode == 0 and "flatten EURUSD" in stopped.stdout, stopped.stderr
    with pytest.raises(store.DeploymentStopped, match=f"deployment {dep.name} is stopped"):
        run_pending(engine, dep.name, bars=1)
    bad = run_cli("deploy", "create", unique("x"), "--strategy", "buy-and-hold", "--symbols",
                  "EURUSD", "--capital", "-5", env=env)  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: --capital -5.0: must be > 0"


def test_slippage_beyond_the_band_is_alerted_once_per_day_and_symbol(engine, bars):
    probe = deploy(engine, bars, "buy-and-hold")
    run_pending(engine, probe.name, bars=2)
    with engine.connect() as conn:
        slipped = conn.execute(
            sa.text("SELECT slippage FROM trading.fills WHERE deployment_id = :d"),
            {"d": probe.id},
        ).scalar_one()
    assert slipped > 0  # the entry filled above the decision close
    for band, alerted in ((slipped, False), (slipped * (1 - 1e-9), True)):
        dep = deploy(engine, bars, "buy-and-hold", risk={"slippage_band": band})
        run_pending(engine, dep.name, bars=2)
        with engine.connect() as conn:
            rules = conn.execute(
                sa.text("SELECT rule, value, threshold FROM monitoring.alerts "
                        "WHERE model_name = :m"),
                {"m": f"deploy:{dep.name}"},
            ).all()  # fmt: skip
        assert [r.rule for r in rules] == (["slippage"] if alerted else [])


def _idle(engine, dep) -> bool:
    """Flat at the last stepped bar and no order sent there (its cash is free)."""
    dep = store.get(engine, dep.name)
    with engine.connect() as conn:
        parts = conn.execute(
            sa.text(
                "SELECT positions FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalar()
        sent = conn.execute(
            sa.text(
                "SELECT count(*) FROM trading.orders WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalar()
    return parts["EURUSD"]["shares"] == 0 and sent == 0


def _step_until(engine, dep, idle: bool, limit: int = 150) -> None:
    for _ in range(limit):
        if _idle(engine, dep) == idle:
            return
        run_pending(engine, dep.name, bars=1)
    raise AssertionError(f"never {'idle' if idle else 'invested'} within {limit} bars")


def _paper_cash(engine, dep) -> float:
    with engine.connect() as conn:
        return float(
            conn.execute(
                sa.text("SELECT cash FROM trading.paper_accounts WHERE account = :a"),
                {"a": f"{dep.name}/EURUSD"},
            ).scalar_one()
        )


def test_a_capital_transfer_reaches_the_account_and_reconciles_exactly(engine, bars):
    from trendcast.trading.capital import set_capital

    dep = deploy(engine, bars, "sma-crossover", {"fast": 5, "slow": 20}, capital=10_000.0)
    run_pending(engine, dep.name, bars=20)
    _step_until(engine, dep, idle=True)
    before = store.get(engine, dep.name)
    free = float(
        pd.read_sql(
            sa.text("SELECT cash FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"),
            engine,
            params={"d": dep.id, "b": before.last_bar},
        )["cash"].iloc[0]
    )
    # a withdrawal beyond the free cash is refused by name and writes nothing
    too_much = pytest.raises(InputError, match=rf"{dep.name}.*exceeds the free cash")
    with too_much, engine.begin() as conn:
        set_capital(conn, dep.name, before.capital - free - 1.0, "tester", "too much")
    assert store.get(engine, dep.name).capital == before.capital
    assert store.events(engine, before, ("capital",)) == []
    # a deposit between runs: in the event log, in the paper account from the next bar stepped
    with engine.begin() as conn:
        set_capital(conn, dep.name, 25_000.0, "tester", "top up")
    logged = store.events(engine, before, ("capital",))
    assert len(logged) == 1 and logged[0]["actor"] == "tester"
    assert logged[0]["details"]["amount"] == pytest.approx(15_000.0)
    assert logged[0]["details"]["reason"] == "top up"
    paper_before = _paper_cash(engine, dep)
    run_pending(engine, dep.name, bars=1)
    applied = store.events(engine, before, ("transfer_applied",))
    assert len(applied) == 1 and applied[0]["subject"] == str(logged[0]["id"])
    next_bar = store.get(engine, dep.name).last_bar
    assert pd.Timestamp(applied[0]["details"]["bar"]) == pd.Timestamp(next_bar)
    if _idle(engine, dep):  # flat through that open: the account holds exactly 15,000 more
        assert _paper_cash(engine, dep) == pytest.approx(paper_before + 15_000.0, abs=1e-9)
    # the next entry is sized from the new equity (~25,000, not ~10,000)
    _step_until(engine, dep, idle=False)
    run_pending(engine, dep.name, bars=60)
    entries = orders(engine, dep)
    after = entries[(entries["purpose"] == "entry") & (entries["bar_time"] >= next_bar)]
    assert len(after) > 0 and after["quote_quantity"].iloc[0] > 20_000
    # a running invested sleeve has no free cash: any withdrawal is refused
    if not _idle(engine, dep):
        with pytest.raises(InputError, match="reduce positions"), engine.begin() as conn:
            set_capital(conn, dep.name, 24_000.0, "tester", "invested")
    # a withdrawal of free cash, then the backtest equals the account across both transfers
    _step_until(engine, dep, idle=True)
    with engine.begin() as conn:
        set_capital(conn, dep.name, store.get(conn, dep.name).capital - 5_000.0, "tester", "out")
    run_pending(engine, dep.name, bars=60)
    assert len(store.events(engine, before, ("transfer_applied",))) == 2
    result = reconcile(engine, dep.name)
    assert result.fills_live == result.fills_backtest > 0
    assert result.max_equity_diff <= 1e-9, result.differences[:3]
    assert result.max_fill_price_diff <= 1e-9 and result.max_fill_quantity_diff <= 1e-9
    assert result.equal
    # the paper account's cash is the money put in less what its fills cost
    with engine.connect() as conn:
        spent = conn.execute(
            sa.text(
                "SELECT coalesce(sum(CASE WHEN side = 'buy' THEN quantity ELSE -quantity END "
                "* price + fee), 0) FROM trading.paper_fills WHERE account = :a"
            ),
            {"a": f"{dep.name}/EURUSD"},
        ).scalar()
    assert _paper_cash(engine, dep) == pytest.approx(10_000 + 15_000 - 5_000 - spent, abs=1e-6)


def test_a_binance_deployment_takes_no_capital_transfer(engine, bars):
    from trendcast.trading.capital import set_capital

    dep = deploy(engine, bars, "buy-and-hold")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE trading.deployments SET broker = 'binance' WHERE id = :d"),
            {"d": dep.id},
        )
    with pytest.raises(InputError, match="venue's balance"), engine.begin() as conn:
        set_capital(conn, dep.name, 20_000.0, "tester", "more")
    assert store.get(engine, dep.name).capital == 10_000.0
