"""A deployment on the ``binance`` broker, traded bar by bar by the runner against the exchange
replay over HTTP (signed requests, the replay's matching engine), reconciles with the vectorised
backtest of the same bars within 1e-9: the issue's parity for the binance broker."""

from __future__ import annotations

import uuid

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast.config import get_settings
from trendcast.history import load_frame
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.sample_data import SAMPLES
from trendcast.trading.lifecycle import create, run_pending
from trendcast.trading.reconcile import reconcile

HOUR = pd.Timedelta(hours=1)
#: The runner's reaction time after a bar closes, in replay data time; the replay's fill grace
#: (10 min) lets such an order fill at the bar that just opened, as the backtest assumes.
LATENCY = pd.Timedelta(minutes=5)
N_BARS, START_ROW, STEPS = 900, 600, 120


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame.iloc[:N_BARS].reset_index(drop=True)


@pytest.fixture
def venue(engine, eurusd, monkeypatch):
    load_frame(engine, eurusd, symbol="EURUSD", interval="1h", source="test", origin="test")
    rep = Replay(
        {"EURUSD": eurusd},
        "1h",
        ReplayClock(eurusd["open_time"].iloc[START_ROW], speed=0.0),
        fill_grace_s=LATENCY.total_seconds() * 2,
    )
    server, url = start_in_thread(rep)
    rep.url = url
    key, secret = f"key-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    answer = httpx.post(
        f"{url}/replay/accounts",
        json={"api_key": key, "api_secret": secret, "balances": {"USD": 10_000.0}},
    )
    assert answer.status_code == 200
    rep.keys = {
        "TRENDCAST_BINANCE_BASE_URL": url,
        "TRENDCAST_BINANCE_API_KEY": key,
        "TRENDCAST_BINANCE_API_SECRET": secret,
    }
    monkeypatch.setenv("TRENDCAST_BINANCE_BASE_URL", url)
    monkeypatch.setenv("TRENDCAST_BINANCE_API_KEY", key)
    monkeypatch.setenv("TRENDCAST_BINANCE_API_SECRET", secret)
    get_settings.cache_clear()
    yield rep
    server.shutdown()
    server.server_close()
    get_settings.cache_clear()


def deploy_and_step(engine, eurusd, venue, strategy, params, steps):
    """Create a binance deployment, align the replay's costs with it, step ``steps`` bars."""
    dep = create(
        engine,
        name=f"bn-{strategy}-{uuid.uuid4().hex[:6]}",
        strategy=strategy,
        params=params,
        model=None,
        symbols=["EURUSD"],
        interval="1h",
        broker="binance",
        capital=10_000.0,
        risk={},
        start=pd.Timestamp(eurusd["open_time"].iloc[START_ROW]),
        warmup=300,
    )
    costs = dep.costs["EURUSD"]
    execution = {"fee": costs["fee"], "slippage": costs["spread"] / 2 + costs["slippage"]}
    assert httpx.post(f"{venue.url}/replay/execution", json=execution).status_code == 200
    for row in range(START_ROW, START_ROW + steps):
        bar = eurusd["open_time"].iloc[row]
        venue.clock.set(bar + HOUR + LATENCY)  # bar `row` closed a moment ago
        assert run_pending(engine, dep.name, bars=1).steps == 1
    return dep


def venue_orders(venue) -> int:
    accounts = httpx.get(f"{venue.url}/replay/accounts").json()["accounts"]
    return sum(a["orders"] for a in accounts.values())


def our_orders(engine, dep) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(
            sa.text("SELECT * FROM trading.orders WHERE deployment_id = :d ORDER BY id"),
            conn,
            params={"d": dep.id},
        )


@pytest.mark.parametrize(
    ("strategy", "params", "stamp"),
    [
        ("buy-and-hold", {}, "open"),
        ("sma-crossover", {"fast": 5, "slow": 20}, "open"),
        # fills stamped when the order arrived (5 min after the open it trades at), as a live
        # venue stamps them: the runner must still count them in the bar they belong to
        ("sma-crossover", {"fast": 5, "slow": 20}, "arrival"),
    ],
)
def test_binance_deployment_against_the_replay_equals_the_backtest(
    engine, eurusd, venue, strategy, params, stamp
):
    assert httpx.post(f"{venue.url}/replay/execution", json={"fill_stamp": stamp}).is_success
    dep = deploy_and_step(engine, eurusd, venue, strategy, params, STEPS)
    result = reconcile(engine, dep.name)
    assert result.bars == STEPS
    assert result.fills_live == result.fills_backtest >= (1 if strategy == "buy-and-hold" else 4)
    assert result.max_equity_diff <= 1e-9, result.differences[:3]
    assert result.max_fill_price_diff <= 1e-9 and result.max_fill_quantity_diff <= 1e-9
    assert result.equal
    # the fills on record are the venue's: its trade ids, at the bar opens the replay served
    with engine.connect() as conn:
        fills = pd.read_sql(
            sa.text("SELECT venue_trade_id, time FROM trading.fills WHERE deployment_id = :d"),
            conn,
            params={"d": dep.id},
        )
    account = httpx.get(f"{venue.url}/replay/accounts").json()["accounts"]
    [seen] = [a for a in account.values() if a["trades"]]
    assert seen["trades"] == len(fills) == result.fills_live
    opens = set(eurusd["open_time"])
    stamped = set(pd.to_datetime(fills["time"], utc=True))
    assert stamped <= opens if stamp == "open" else not stamped & opens


def test_recoverable_venue_faults_leave_the_deployment_on_the_backtest(engine, eurusd, venue):
    """A connection lost after the submit, a 5xx after placing, a 429 and a duplicate answer:
    the broker finds each order by its client id, the venue holds exactly one order per
    intent, and fills and equity still equal the backtest."""
    faults = [
        {"kind": "lost"},
        {"kind": "500", "placed": True},
        {"kind": "429", "retry_after": 0.05},
        {"kind": "duplicate"},
    ]
    assert httpx.post(f"{venue.url}/replay/order-faults", json={"faults": faults}).is_success
    dep = deploy_and_step(engine, eurusd, venue, "sma-crossover", {"fast": 5, "slow": 20}, 80)
    assert httpx.get(f"{venue.url}/replay/order-faults").json()["faults"] == []  # all struck
    ours = our_orders(engine, dep)
    assert len(ours) >= 3 and venue_orders(venue) == len(ours)  # no duplicate order
    assert set(ours["status"]) == {"filled"}
    result = reconcile(engine, dep.name)
    assert result.equal and result.max_equity_diff <= 1e-9


@pytest.mark.parametrize(
    ("fault", "event"),
    [
        ({"kind": "reject", "msg": "Market is closed."}, "order_rejected"),
        ({"kind": "partial", "ratio": 0.5, "expire_rest": True}, "order_expired"),
    ],
)
def test_a_diverging_fault_is_the_recorded_reason_for_every_difference(
    engine, eurusd, venue, fault, event
):
    assert httpx.post(f"{venue.url}/replay/order-faults", json={"faults": [fault]}).is_success
    dep = deploy_and_step(engine, eurusd, venue, "buy-and-hold", {}, 30)
    result = reconcile(engine, dep.name)
    assert not result.equal and result.differences
    assert result.unexplained == []
    assert all(d["explained_by"].startswith(event) for d in result.differences)


@pytest.mark.slow
def test_kill_9_after_the_venue_took_the_order_then_restart_never_duplicates_it(
    engine, eurusd, venue, env
):
    """`deploy run` dies by SIGKILL right after the replay accepted an order and before the
    runner recorded it; the restarted run finds the order by its client id at the venue
    instead of sending it again, and the deployment still equals the backtest."""
    from conftest import run_cli

    dep = deploy_and_step(engine, eurusd, venue, "buy-and-hold", {}, 0)
    venue.clock.set(eurusd["open_time"].iloc[START_ROW] + HOUR + LATENCY)
    child = {**env, **venue.keys}
    killed = run_cli(
        "deploy", "run", dep.name, "--bars", "1",
        env={**child, "TRENDCAST_DEPLOY_FAULT_POINT": "after_submit"},
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr  # the entry was sent, then SIGKILL
    intents = our_orders(engine, dep)
    assert len(intents) == 1 and intents["status"].iloc[0] == "intended"
    assert venue_orders(venue) == 1  # the venue has it; our record does not know yet

    resumed = run_cli("deploy", "run", dep.name, "--bars", "1", env=child)
    assert resumed.returncode == 0, resumed.stderr
    after = our_orders(engine, dep)
    assert list(after["client_order_id"]) == list(intents["client_order_id"])
    assert list(after["status"]) == ["filled"] and venue_orders(venue) == 1
    for row in range(START_ROW + 1, START_ROW + 30):  # and on it goes, on the backtest's path
        venue.clock.set(eurusd["open_time"].iloc[row] + HOUR + LATENCY)
        assert run_pending(engine, dep.name, bars=1).steps == 1
    result = reconcile(engine, dep.name)
    assert result.equal and result.bars == 30, result.differences[:3]
    assert venue_orders(venue) == len(our_orders(engine, dep)) == 1


def events_of(engine, dep, kind) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT subject, details FROM trading.events WHERE deployment_id = :d "
                "AND kind = :k ORDER BY id"
            ),
            {"d": dep.id, "k": kind},
        ).all()
    return [{"subject": r.subject, **r.details} for r in rows]


@pytest.mark.parametrize("late", [1, 2])
def test_a_delayed_entry_is_never_entered_twice(engine, eurusd, venue, late):
    """The venue fills the entry ``late`` bars after its bar: while it is open the runner sends
    nothing for the sleeve (the decision waits, naming the order), the late fill is counted in
    the next decision, and reconcile explains every difference by the recorded events."""
    delayed = {"kind": "delayed", "bars": late}
    assert httpx.post(f"{venue.url}/replay/order-faults", json={"faults": [delayed]}).is_success
    dep = deploy_and_step(engine, eurusd, venue, "buy-and-hold", {}, 8)
    ours = our_orders(engine, dep)
    # one order at the venue and on record: the entry, filled once, late
    assert list(ours["purpose"]) == ["entry"] and list(ours["status"]) == ["filled"]
    assert venue_orders(venue) == 1
    entry = ours["client_order_id"].iloc[0]
    start = pd.Timestamp(eurusd["open_time"].iloc[START_ROW])
    [late_fill] = events_of(engine, dep, "late_fill")
    assert late_fill["subject"] == entry
    assert pd.Timestamp(late_fill["time"]) == start + (1 + late) * HOUR
    # the bars decided while the entry was open waited on it, naming it
    waiting = events_of(engine, dep, "decision_waiting")
    assert [pd.Timestamp(w["bar"]) for w in waiting] == [start + i * HOUR for i in range(1, late)]
    assert all(w["order"] == entry for w in waiting)
    with engine.connect() as conn:
        decisions = pd.read_sql(
            sa.text(
                "SELECT bar_time, target, skipped FROM trading.decisions "
                "WHERE deployment_id = :d ORDER BY bar_time"
            ),
            conn,
            params={"d": dep.id},
        )
    # the waiting bars' decisions say so; once the entry was final, deciding resumed (holding)
    assert list(decisions["skipped"].notna()) == [False] + [True] * (late - 1) + [False] * (
        8 - late
    )
    assert decisions["skipped"].dropna().str.startswith(f"waiting: order {entry}").all()
    assert (decisions.loc[decisions["skipped"].isna(), "target"] == 1.0).all()
    result = reconcile(engine, dep.name)
    assert not result.equal and result.differences  # the backtest entered `late` bars earlier
    assert result.unexplained == []
    assert {d["kind"] for d in result.differences} >= {"fill_missing", "fill_extra", "equity"}
    assert all(d["explained_by"].startswith("late_fill") for d in result.differences)
