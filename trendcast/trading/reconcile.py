"""Backtest-live parity: the deployment's recorded fills and equity against the vectorised
backtest of the same strategy, model versions (as served, bar by bar), costs and bars.

The backtest starts where the deployment's account started (``start_bar``) with the strategy
seeing the same warm-up history, each symbol on its own share of the capital. Every recorded
fill is matched with the backtest's trade at the same bar (signed quantity and price), and the
equity snapshot of every bar with the backtest's equity at that bar. A difference beyond
``tolerance`` (relative) is *explained* when the audit log records, at or before its bar, an
event that makes the live account leave the backtest's path (a skipped decision or one waiting
on an open order, a blocked, rejected or expired order, a late fill, the kill switch, a stop, a
refused model); otherwise unexplained.
A capital transfer is no difference: the backtest receives the same cash at the close of the
bar the runner put it in the account, so both still agree within the tolerance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.backtest import Costs, run
from trendcast.errors import InputError
from trendcast.strategy import make_strategy
from trendcast.trading import deployments as store
from trendcast.trading.inputs import (
    ServedModels,
    decided_versions,
    load_verified,
    strategy_frame,
)

TOLERANCE = 1e-9
#: Events after which the live account may rightly leave the backtest's path.
DIVERGING = (
    "decision_skipped",
    "decision_waiting",
    "late_fill",
    "order_blocked",
    "order_rejected",
    "order_expired",
    "order_partially_filled",
    "kill_switch",
    "stopped",
    "model_refused",
    "venue_unreachable",
)


@dataclass
class Reconciliation:
    deployment: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    bars: int = 0
    fills_live: int = 0  # bars with executions (a reversal's legs count once, like the backtest)
    fills_backtest: int = 0
    max_equity_diff: float = 0.0  # relative
    max_fill_price_diff: float = 0.0
    max_fill_quantity_diff: float = 0.0
    differences: list[dict] = field(default_factory=list)
    versions: dict[int, bool] = field(default_factory=dict)  # version -> move on record
    equity: pd.DataFrame | None = None  # bar_time, live, backtest

    @property
    def unexplained(self) -> list[dict]:
        return [d for d in self.differences if not d.get("explained_by")]

    @property
    def equal(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {
            "deployment": self.deployment,
            "start": str(self.start),
            "end": str(self.end),
            "bars": self.bars,
            "fills_live": self.fills_live,
            "fills_backtest": self.fills_backtest,
            "max_equity_diff": self.max_equity_diff,
            "max_fill_price_diff": self.max_fill_price_diff,
            "max_fill_quantity_diff": self.max_fill_quantity_diff,
            "equal": self.equal,
            "differences": self.differences,
            "unexplained": len(self.unexplained),
            "model_versions": self.versions,
        }


def _rel(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def _versions_on_record(engine: Engine, dep: store.Deployment, versions) -> dict[int, bool]:
    with engine.connect() as conn:
        moved = set(
            conn.execute(
                sa.text(
                    "SELECT DISTINCT to_version FROM registry.alias_events WHERE "
                    "model_name = :m AND alias = :a"
                ),
                {"m": dep.model_name, "a": dep.model_alias},
            ).scalars()
        )
    return {int(v): int(v) in moved for v in sorted(set(versions))}


def backtest_deployment(
    engine: Engine, dep: store.Deployment, end: pd.Timestamp, client=None
) -> tuple[dict[str, object], dict[int, bool]]:
    """Per symbol, the backtest result from the deployment's start bar to ``end``."""
    results, on_record = {}, {}
    with engine.connect() as conn:
        moves = store.transfers(conn, dep)
        initial = store.initial_capital(conn, dep)
    for symbol in dep.symbols:
        models, versions = None, {}
        if dep.model_name:
            versions = decided_versions(engine, dep.id, symbol)
            models = ServedModels(dep.model_name)
            for version in sorted(set(versions.values())):
                models.models[version] = load_verified(client, dep.model_name, version)
            on_record |= _versions_on_record(engine, dep, versions.values())
        frame = strategy_frame(
            engine,
            symbol,
            dep.interval,
            dep.history_start,
            end,
            dt.datetime.now(dt.UTC),
            models,
            versions,
        )
        times = pd.DatetimeIndex(frame["open_time"])
        start = pd.Timestamp(dep.start_bar).tz_convert("UTC")
        if start not in times:
            raise InputError(f"{dep.name}: its start bar {start} is not stored for {symbol}")
        begin = int(times.get_loc(start))
        # each transfer enters the backtest as cash at the close of the first bar it is in
        # effect, as the runner funds the account there before deciding
        flows = np.zeros(len(frame))
        for move in moves:
            due = np.flatnonzero([move.effective(t) for t in times[begin:]])
            if len(due):
                flows[begin + int(due[0])] += move.amount / len(dep.symbols)
        strategy = make_strategy(dep.strategy, model=models, **dep.params)
        results[symbol] = run(
            frame,
            strategy,
            Costs(**dep.costs[symbol]),
            capital=initial / len(dep.symbols),
            max_position=float(dep.risk.get("max_weight") or 1.0),
            trade_from=begin,
            flows=flows,
        )
    return results, on_record


def reconcile(
    engine: Engine,
    name: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    client=None,
    tolerance: float = TOLERANCE,
) -> Reconciliation:
    """Compare the deployment's fills and equity in [start, end] with its backtest."""
    dep = store.get(engine, name)
    if dep.last_bar is None:
        raise InputError(f"deployment {name}: has not traded a bar yet")
    end = pd.Timestamp(end) if end is not None else pd.Timestamp(dep.last_bar)
    end = min(end, pd.Timestamp(dep.last_bar))
    first = pd.Timestamp(dep.start_bar)
    start = max(pd.Timestamp(start), first) if start is not None else first
    if end < start:
        raise InputError(f"--start {start} / --end {end}: the period holds no traded bar")
    if dep.model_name and client is None:
        from trendcast.tracking import mlflow_client

        client = mlflow_client()
    results, on_record = backtest_deployment(engine, dep, end, client)
    out = Reconciliation(name, start, end, versions=on_record)
    with engine.connect() as conn:
        balances = pd.read_sql(
            sa.text(
                "SELECT bar_time, equity FROM trading.balances WHERE deployment_id = :d "
                "AND bar_time BETWEEN :a AND :b ORDER BY bar_time"
            ),
            conn,
            params={"d": dep.id, "a": start, "b": end},
        )
        fills = pd.read_sql(
            sa.text(
                "SELECT symbol, side, quantity, price, time FROM trading.fills WHERE "
                "deployment_id = :d AND time BETWEEN :a AND :b ORDER BY time, id"
            ),
            conn,
            params={"d": dep.id, "a": start, "b": end},
        )
        events = pd.read_sql(
            sa.text(
                "SELECT kind, subject, details, at FROM trading.events WHERE "
                "deployment_id = :d AND kind = ANY(:k) ORDER BY id"
            ),
            conn,
            params={"d": dep.id, "k": list(DIVERGING)},
        )
    balances["bar_time"] = pd.to_datetime(balances["bar_time"], utc=True)
    fills["time"] = pd.to_datetime(fills["time"], utc=True)

    # equity: the sum of the symbols' backtests at each recorded bar
    curves = [r.equity_series for r in results.values()]
    total = pd.concat(curves, axis=1).ffill().sum(axis=1)
    live = balances.set_index("bar_time")["equity"]
    bt = total.reindex(live.index)
    out.bars = len(live)
    out.equity = pd.DataFrame({"live": live, "backtest": bt})
    for when, a, b in zip(live.index, live.to_numpy(), bt.to_numpy(), strict=True):
        diff = _rel(a, b) if np.isfinite(b) else np.inf
        out.max_equity_diff = max(out.max_equity_diff, diff)
        if diff > tolerance:
            out.differences.append(
                {"kind": "equity", "bar": when, "live": a, "backtest": b, "relative": diff}
            )

    # fills: the backtest's trades are the changes of its held shares at each bar's open
    expected = []
    for symbol, result in results.items():
        held = np.concatenate([[0.0], result.position])
        times = pd.DatetimeIndex(result.open_time).tz_localize("UTC")
        costs = Costs(**dep.costs[symbol])
        cost = costs.spread / 2 + costs.slippage
        bars = strategy_frame(
            engine, symbol, dep.interval, times[0], times[-1], dt.datetime.now(dt.UTC), None, {}
        )
        opens = bars.set_index("open_time")["open"]
        # a live venue stamps a fill a moment after the open it traded at: a fill belongs to
        # the bar whose open is the latest at or before its time
        mine = fills["symbol"] == symbol
        index = np.searchsorted(times.to_numpy(), fills.loc[mine, "time"].to_numpy(), "right")
        fills.loc[mine, "time"] = times[np.clip(index - 1, 0, len(times) - 1)]
        for i, when in enumerate(times):
            delta = held[i + 1] - held[i]
            if delta != 0 and start <= when <= end:
                direction = np.sign(delta)
                expected.append((symbol, when, delta, opens[when] * (1 + cost * direction)))
    out.fills_backtest = len(expected)
    fills["signed"] = np.where(fills["side"] == "buy", fills["quantity"], -fills["quantity"])
    fills["notional"] = fills["signed"] * fills["price"]
    grouped = fills.groupby(["symbol", "time"]).agg(
        signed=("signed", "sum"), notional=("notional", "sum")
    )
    out.fills_live = len(grouped)  # executions per bar: a reversal's legs are one trade
    seen = set()
    for symbol, when, delta, price in expected:
        key = (symbol, when)
        seen.add(key)
        if key not in grouped.index:
            out.differences.append(
                {"kind": "fill_missing", "symbol": symbol, "bar": when, "backtest_quantity": delta}
            )
            continue
        got = grouped.loc[key]
        q = _rel(got.signed, delta)
        # several legs at one open (an exit and an entry) net out in quantity; compare the
        # quantity-weighted price only when the legs do not reverse
        p = _rel(got.notional / got.signed, price) if got.signed != 0 else 0.0
        out.max_fill_quantity_diff = max(out.max_fill_quantity_diff, q)
        out.max_fill_price_diff = max(out.max_fill_price_diff, p)
        if q > tolerance or p > tolerance:
            out.differences.append(
                {
                    "kind": "fill",
                    "symbol": symbol,
                    "bar": when,
                    "live_quantity": got.signed,
                    "backtest_quantity": delta,
                    "quantity_diff": q,
                    "price_diff": p,
                }
            )
    for key in grouped.index:
        if key not in seen:
            out.differences.append(
                {
                    "kind": "fill_extra",
                    "symbol": key[0],
                    "bar": key[1],
                    "live_quantity": grouped.loc[key].signed,
                }
            )
    _explain(out, events)
    return out


def _explain(out: Reconciliation, events: pd.DataFrame) -> None:
    """Attach to each difference the first diverging event recorded at or before its bar."""
    if events.empty:
        return
    marks = []
    for row in events.itertuples():
        details = row.details or {}
        bar = details.get("bar")
        when = pd.Timestamp(bar) if bar else pd.Timestamp(row.at)
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        marks.append(
            (
                when,
                f"{row.kind} ({row.subject or ''}: "
                f"{details.get('reason') or details.get('limit') or ''})",
            )
        )
    marks.sort(key=lambda m: m[0])
    for diff in out.differences:
        bar = pd.Timestamp(diff["bar"])
        before = [m for m in marks if m[0] <= bar]
        if before:
            diff["explained_by"] = before[0][1]
