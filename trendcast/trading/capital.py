"""A paper deployment's capital change as an audited transfer of cash into or out of its account.

The new capital is recorded with the amount moved (a ``capital`` event: who, when, from, to,
amount, reason) and is in effect at the close of the first bar the runner steps after the last
one it stepped: the runner deposits it into (or withdraws it from) the paper account there,
after that open's fills and before the decision, so the strategy sizes ``weight x equity`` on
the new equity, and ``deploy reconcile`` gives the backtest the same cash at that bar. Binance
deployments are refused: their capital is the venue's balance, moved at the venue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trendcast.errors import InputError
from trendcast.trading import deployments as store

#: Advisory-lock namespace of a deployment's bar step (the second key is its id).
STEP_LOCK = 0x54435354


@contextmanager
def stepping(engine: Engine, deployment_id: int) -> Iterator[None]:
    """Held by the runner for one whole bar step (on a connection of its own): a capital
    change waits for the step to end, so its ``after_bar`` is the bar just stepped and the
    step never sees half of it (funded at one bar, counted at another)."""
    key = {"n": STEP_LOCK, "d": deployment_id}
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:n, :d)"), key)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:n, :d)"), key)
            conn.commit()


def hold_steps(conn: Connection, name: str) -> int | None:
    """Wait for the deployment's running bar step to end and keep the next one from starting
    until the caller's transaction ends. Take it before any row lock on the deployment (the
    step updates that row before it lets go). Returns the deployment's id."""
    dep_id = conn.execute(
        sa.text("SELECT id FROM trading.deployments WHERE name = :n"), {"n": name}
    ).scalar()
    if dep_id is not None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:n, :d)"), {"n": STEP_LOCK, "d": dep_id})
    return dep_id


def unapplied(conn: Connection, dep: store.Deployment) -> float:
    """The transfers recorded but not yet in the account at the last stepped bar."""
    if dep.last_bar is None:
        return 0.0  # every transfer so far is in the capital the first bar starts from
    last = pd.Timestamp(dep.last_bar).tz_convert("UTC")
    return sum(t.amount for t in store.transfers(conn, dep) if not t.effective(last))


def free_cash(conn: Connection, dep: store.Deployment) -> dict[str, float]:
    """Per symbol, the cash a withdrawal may take: the sleeve's cash at the last stepped bar
    plus its share of the transfers not yet applied (two withdrawals never take the same
    cash), or none when it holds a position or sent orders at that bar (its cash then changes
    at the next open, before the withdrawal would take effect): reduce positions first."""
    if dep.last_bar is None:
        return {s: dep.sleeve_capital for s in dep.symbols}
    pending = unapplied(conn, dep) / len(dep.symbols)
    parts = (
        conn.execute(
            sa.text(
                "SELECT positions FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalar()
        or {}
    )
    busy = set(
        conn.execute(
            sa.text(
                "SELECT DISTINCT symbol FROM trading.orders WHERE deployment_id = :d "
                "AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalars()
    )
    free = {}
    for symbol in dep.symbols:
        part = parts.get(symbol) or {}
        flat = float(part.get("shares") or 0.0) == 0.0 and symbol not in busy
        free[symbol] = max(0.0, float(part.get("cash") or 0.0) + pending) if flat else 0.0
    return free


@dataclass(frozen=True)
class Holding:
    """What a paper deployment holds: its equity at the last stepped bar plus the transfers
    not yet applied (what it will have once they are, before any further gain or loss), and
    how much of it a withdrawal may take now (split equally: the poorest sleeve bounds it)."""

    equity: float
    withdrawable: float


def holding(conn: Connection, dep: store.Deployment) -> Holding:
    free = free_cash(conn, dep)
    withdrawable = min(free.values()) * len(dep.symbols)
    equity = None
    if dep.last_bar is not None:
        equity = conn.execute(
            sa.text(
                "SELECT equity FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": dep.last_bar},
        ).scalar()
    if equity is None:  # never stepped: what was put in
        return Holding(dep.capital, withdrawable)
    return Holding(float(equity) + unapplied(conn, dep), withdrawable)


def set_capital(
    conn: Connection,
    name: str,
    capital: float,
    actor: str,
    reason: str,
    details: dict | None = None,
) -> float:
    """Move a paper deployment to ``capital`` put in (inside the caller's transaction);
    returns the amount transferred. A withdrawal beyond the free cash is refused and writes
    nothing."""
    if not capital > 0:
        raise InputError(f"capital {capital}: must be > 0")
    hold_steps(conn, name)
    dep = store.get(conn, name)
    return transfer(conn, name, float(capital) - dep.capital, actor, reason, details)


def transfer(
    conn: Connection,
    name: str,
    amount: float,
    actor: str,
    reason: str,
    details: dict | None = None,
) -> float:
    """Move ``amount`` into (> 0) or out of (< 0) a paper deployment, inside the caller's
    transaction, after its running bar step. The capital (the money put in, net) moves by the
    amount, and may fall to zero or below once gains are taken out. A withdrawal beyond the
    free cash is refused and writes nothing."""
    if not reason.strip():
        raise InputError("reason: must say why the capital moves")
    hold_steps(conn, name)
    conn.execute(
        sa.text("SELECT 1 FROM trading.deployments WHERE name = :n FOR UPDATE"), {"n": name}
    )
    dep = store.get(conn, name)
    if dep.broker != "paper":
        raise InputError(
            f"deployment {name!r}: broker {dep.broker}: its capital is the venue's balance; "
            "move the money at the venue (only paper deployments take a capital transfer)"
        )
    if dep.state in ("stopped", "killed"):
        raise InputError(f"deployment {name!r}: is {dep.state}; its capital no longer moves")
    amount = float(amount)
    if amount < 0:
        share = -amount / len(dep.symbols)
        free = free_cash(conn, dep)
        short = [s for s in dep.symbols if share > free[s] + 1e-9]
        if short:
            raise InputError(
                f"deployment {name!r}: withdrawal {-amount:,.2f} ({share:,.2f} per symbol) "
                f"exceeds the free cash of {', '.join(f'{s} ({free[s]:,.2f})' for s in short)}; "
                "a withdrawal takes only the cash of sleeves that hold no position and sent no "
                "order at the last bar: reduce positions first"
            )
    capital = dep.capital + amount
    conn.execute(
        sa.text("UPDATE trading.deployments SET capital = :c WHERE id = :d"),
        {"c": capital, "d": dep.id},
    )
    conn.execute(
        sa.text(
            "INSERT INTO trading.events (deployment_id, kind, subject, details, actor) "
            "VALUES (:d, 'capital', :s, CAST(:x AS jsonb), :a)"
        ),
        {
            "d": dep.id,
            "s": "deposit" if amount >= 0 else "withdrawal",
            "x": json.dumps(
                {
                    "from": dep.capital,
                    "to": capital,
                    "amount": amount,
                    # in effect at the close of the first bar stepped after this one
                    "after_bar": dep.last_bar.isoformat() if dep.last_bar else None,
                    "reason": reason,
                    **(details or {}),
                }
            ),
            "a": actor,
        },
    )
    return amount


def shifted(conn: Connection, dep: store.Deployment, then, bar) -> float:
    """A reference equity (``then``: (bar_time, value), or ``None`` for the capital put in)
    carried to ``bar`` across the money moved in or out between them, so that a transfer is no
    gain or loss for the peak and the day's first equity: each transfer scales the reference
    by the ratio it changed the account's equity by (its equity at the bar the transfer was
    made after, plus the amount, over that equity), so the drawdown and the day's loss keep
    their size as a fraction: a sleeve cut to almost nothing after a loss is not taken for one
    that lost almost everything. Without that equity (or with none left) it adds the amount."""
    moves = store.transfers(conn, dep)
    if then is None:
        return store.capital_at(store.initial_capital(conn, dep), moves, bar)
    when, value = pd.Timestamp(then[0]), float(then[1])
    for move in moves:
        if not move.effective(bar) or move.effective(when):
            continue
        base = conn.execute(
            sa.text(
                "SELECT equity FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"
            ),
            {"d": dep.id, "b": move.after_bar},
        ).scalar()
        if base is not None and base > 0 and base + move.amount > 0:
            value *= (base + move.amount) / base
        else:
            value += move.amount
    return value


def fund(engine: Engine, dep: store.Deployment, broker, bar) -> None:
    """Move the transfers in effect at ``bar`` into the venue's account (after the open's
    fills, before the decision sizes on them), once each: the ``transfer_applied`` event is
    written in the same transaction as the cash. A venue without ``transfer`` is skipped."""
    transfer = getattr(broker, "transfer", None)
    if transfer is None:
        return
    n = len(dep.symbols)
    with engine.begin() as conn:
        done = set(
            conn.execute(
                sa.text(
                    "SELECT subject FROM trading.events WHERE deployment_id = :d "
                    "AND kind = 'transfer_applied'"
                ),
                {"d": dep.id},
            ).scalars()
        )
        for move in store.transfers(conn, dep):
            if str(move.id) in done or not move.effective(bar):
                continue
            for symbol in dep.symbols:
                transfer(conn, symbol, move.amount / n)
            store.event(
                conn,
                dep.id,
                "transfer_applied",
                str(move.id),
                {"amount": move.amount, "bar": bar, "venue": broker.name},
            )
