"""Orders still working at the venue, and fills that came late: what keeps a deployment from
sending a second order while one is open (a delayed fill would otherwise double the exposure)
and what tells reconcile why the live account traded later than the backtest."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trendcast.trading import deployments as store
from trendcast.trading.broker import TERMINAL


def open_orders_unknown(engine: Engine, dep: store.Deployment) -> list[str]:
    """Client ids of orders whose outcome is not final (unreconciled)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT client_order_id FROM trading.orders WHERE deployment_id = :d "
                    "AND status NOT IN :final ORDER BY id"
                ).bindparams(sa.bindparam("final", expanding=True)),
                {"d": dep.id, "final": sorted(TERMINAL)},
            ).scalars()
        )


def open_order(engine: Engine, deployment_id: int, symbol: str) -> str | None:
    """The client id of a sleeve's oldest order not yet final (as last synced): while one is
    open the runner sends nothing new for the sleeve, or a delayed entry could fill twice."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT client_order_id FROM trading.orders WHERE deployment_id = :d "
                "AND symbol = :s AND status NOT IN :final ORDER BY id LIMIT 1"
            ).bindparams(sa.bindparam("final", expanding=True)),
            {"d": deployment_id, "s": symbol, "final": sorted(TERMINAL)},
        ).scalar()


def late_fill(conn: Connection, dep: store.Deployment, symbol: str, order, fill) -> None:
    """Audit (``late_fill``) a fill that landed on a bar after the one its order was meant for
    (the first stored bar after its decision bar; a weekend gap is not late): the backtest
    traded it earlier. ``order`` needs ``bar_time``; ``fill`` is the broker's ``Fill``."""
    following = conn.execute(
        sa.text(
            "SELECT open_time FROM market.bars WHERE symbol = :s AND "
            "interval = CAST(:i AS market.bar_interval) AND open_time > :b "
            "ORDER BY open_time LIMIT 2"
        ),
        {"s": symbol, "i": dep.interval, "b": order.bar_time},
    ).scalars()
    meant, after = [*following, None, None][:2]
    if meant is None or after is None or pd.Timestamp(fill.time) < pd.Timestamp(after):
        return
    store.event(
        conn,
        dep.id,
        "late_fill",
        fill.client_order_id,
        {
            # dated by the decision bar, like the order's other events
            "bar": pd.Timestamp(order.bar_time).isoformat(),
            "meant_for": pd.Timestamp(meant).isoformat(),
            "time": pd.Timestamp(fill.time).isoformat(),
            "reason": f"filled at {pd.Timestamp(fill.time)}, meant for {pd.Timestamp(meant)}",
        },
    )
