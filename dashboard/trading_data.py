"""Read-only data of the Trading page: deployments, positions, orders with their fills, equity
snapshots, the audit log, and the reconciliation with the backtest (cached)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.data import TTL_S, client, engine, query

#: Events that count as a failure for "days since the last failure".
FAILURES = ("kill_switch", "order_rejected", "venue_unreachable", "order_expired",
            "model_refused")  # fmt: skip


@st.cache_data(ttl=TTL_S, show_spinner=False)
def deployments() -> pd.DataFrame:
    return query(
        "SELECT d.id, d.name, d.strategy, d.model_name, d.model_alias, "
        "array_to_string(d.symbols, ',') AS symbols, d.interval, d.broker, d.stage, d.state, "
        "d.state_reason, d.capital, d.created_by, d.created_at, d.start_bar, d.last_bar, "
        "d.last_step_at, b.equity, b.drawdown FROM trading.deployments d LEFT JOIN LATERAL "
        "(SELECT equity, drawdown FROM trading.balances WHERE deployment_id = d.id "
        "ORDER BY bar_time DESC LIMIT 1) b ON true ORDER BY d.name"
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def positions(deployment_id: int) -> pd.DataFrame:
    return query(
        "SELECT symbol, quantity, updated_at FROM trading.positions WHERE deployment_id = :d "
        "ORDER BY symbol",
        d=deployment_id,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def orders(deployment_id: int) -> pd.DataFrame:
    """Orders with their (volume-weighted) execution: intended against executed price."""
    return query(
        "SELECT o.client_order_id, o.symbol, o.bar_time, o.purpose, o.side, o.quantity, "
        "o.intended_price, o.status, o.reason, f.executed_price, f.filled, f.fee, f.slippage "
        "FROM trading.orders o LEFT JOIN LATERAL (SELECT sum(price * quantity) / "
        "nullif(sum(quantity), 0) AS executed_price, sum(quantity) AS filled, sum(fee) AS fee, "
        "avg(slippage) AS slippage FROM trading.fills WHERE order_id = o.id) f ON true "
        "WHERE o.deployment_id = :d ORDER BY o.id DESC",
        d=deployment_id,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def fills(deployment_id: int) -> pd.DataFrame:
    return query(
        "SELECT symbol, side, quantity, price, intended_price, slippage, fee, time "
        "FROM trading.fills WHERE deployment_id = :d ORDER BY time",
        d=deployment_id,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def balances(deployment_id: int) -> pd.DataFrame:
    frame = query(
        "SELECT bar_time, equity, cash, peak, drawdown FROM trading.balances "
        "WHERE deployment_id = :d ORDER BY bar_time",
        d=deployment_id,
    )
    frame["bar_time"] = pd.to_datetime(frame["bar_time"], utc=True)
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def events(deployment_id: int, limit: int = 200) -> pd.DataFrame:
    return query(
        "SELECT at, kind, subject, actor, details::text AS details FROM trading.events "
        "WHERE deployment_id = :d ORDER BY id DESC LIMIT :n",
        d=deployment_id,
        n=limit,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def last_failure(deployment_id: int) -> pd.Timestamp | None:
    found = query(
        "SELECT max(at) AS at FROM trading.events WHERE deployment_id = :d AND kind = ANY(:k)",
        d=deployment_id,
        k=list(FAILURES),
    )["at"].iloc[0]
    return None if pd.isna(found) else pd.Timestamp(found)


@st.cache_data(ttl=300, show_spinner="Backtesting the same bars…")
def backtest_equity(name: str, has_model: bool) -> tuple[pd.DataFrame | None, str | None]:
    """(bar_time, live, backtest) from ``trendcast.trading.reconcile``, or why not."""
    from trendcast.trading.reconcile import reconcile

    try:
        result = reconcile(engine(), name, client=client() if has_model else None)
    except Exception as exc:  # the page shows live data even when the backtest cannot run
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    frame = result.equity.reset_index(names="bar_time")
    summary = (
        f"max relative equity difference {result.max_equity_diff:.2e}; fills live "
        f"{result.fills_live} / backtest {result.fills_backtest}; "
        + ("equal" if result.equal else f"{len(result.unexplained)} unexplained difference(s)")
    )
    return frame, summary
