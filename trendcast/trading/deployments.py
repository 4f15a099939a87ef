"""Deployment records (``trading.deployments``), their audited event log and their alerts.

Every state change of a deployment, an order, the kill switch or a promotion is one row of
``trading.events`` written in the transaction that makes the change, so the log and the state
never disagree. Alerts go to ``monitoring.alerts`` (and the webhook) through the drift
monitor's notifier, under the model name ``deploy:NAME``, one per rule, symbol and day.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trendcast.errors import InputError, TrendcastError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
BROKERS = ("paper", "binance")
#: Risk limits a deployment may set, with their rule (``None``: the limit is off).
RISK_LIMITS = {
    "max_position": "largest absolute position per symbol, base units (> 0)",
    "max_notional": "largest absolute position value per symbol, quote currency (> 0)",
    "daily_loss": "loss from the UTC day's first equity that flattens and stops, fraction (0, 1)",
    "max_drawdown": "drawdown from the equity peak that flattens and stops, fraction (0, 1)",
    "slippage_band": "realised slippage per fill beyond which an alert is raised, fraction",
    "max_weight": "largest target weight per symbol, (0, 1] (the backtest's max_position)",
}
DEFAULT_RISK = {"slippage_band": 0.002, "max_weight": 1.0}


class DeploymentNotFound(InputError):
    """No deployment has this name."""


@dataclass
class Deployment:
    id: int
    name: str
    strategy: str
    params: dict[str, Any]
    model_name: str | None
    model_alias: str | None
    symbols: list[str]
    interval: str
    broker: str
    stage: str
    capital: float
    risk: dict[str, float]
    costs: dict[str, dict]
    state: str
    state_reason: str | None
    created_by: str
    created_at: dt.datetime
    history_start: dt.datetime | None = None
    start_bar: dt.datetime | None = None
    last_bar: dt.datetime | None = None
    last_step_at: dt.datetime | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sleeve_capital(self) -> float:
        """Each symbol trades its equal share of the capital, as its own backtest does."""
        return self.capital / len(self.symbols)

    @property
    def alert_name(self) -> str:
        return f"deploy:{self.name}"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "extra"}


def who() -> str:
    from trendcast.config import get_settings

    return get_settings().user or getpass.getuser()


def check_risk(risk: dict[str, Any]) -> dict[str, float]:
    """The limits with their defaults; an unknown or out-of-range limit is refused by name."""
    unknown = sorted(set(risk) - set(RISK_LIMITS))
    if unknown:
        raise InputError(f"risk limit(s) {unknown}: unknown; known: {sorted(RISK_LIMITS)}")
    out = {**DEFAULT_RISK}
    for key, value in risk.items():
        if value is None:
            continue
        value = float(value)
        fraction = key in ("daily_loss", "max_drawdown")
        if not value > 0 or (fraction and not value < 1) or (key == "max_weight" and value > 1):
            raise InputError(f"{key}={value}: must be the {RISK_LIMITS[key]}")
        out[key] = value
    return out


def _row(row) -> Deployment:
    m = dict(row._mapping)
    return Deployment(
        id=m["id"],
        name=m["name"],
        strategy=m["strategy"],
        params=m["params"] or {},
        model_name=m["model_name"],
        model_alias=m["model_alias"],
        symbols=list(m["symbols"]),
        interval=m["interval"],
        broker=m["broker"],
        stage=m["stage"],
        capital=float(m["capital"]),
        risk=m["risk"] or {},
        costs=m["costs"] or {},
        state=m["state"],
        state_reason=m["state_reason"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        history_start=m["history_start"],
        start_bar=m["start_bar"],
        last_bar=m["last_bar"],
        last_step_at=m["last_step_at"],
    )


def get(engine: Engine | Connection, name: str) -> Deployment:
    query = sa.text("SELECT * FROM trading.deployments WHERE name = :n")
    if isinstance(engine, Connection):
        row = engine.execute(query, {"n": name}).first()
    else:
        with engine.connect() as conn:
            row = conn.execute(query, {"n": name}).first()
    if row is None:
        raise DeploymentNotFound(f"deployment {name!r}: not found (see `trendcast deploy list`)")
    return _row(row)


def list_all(engine: Engine) -> list[Deployment]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM trading.deployments ORDER BY name")).all()
    return [_row(r) for r in rows]


def insert(engine: Engine, values: dict[str, Any]) -> Deployment:
    """Record a new deployment (and its ``created`` event); a taken name is refused."""
    with engine.begin() as conn:
        taken = conn.execute(
            sa.text("SELECT 1 FROM trading.deployments WHERE name = :n"), {"n": values["name"]}
        ).first()
        if taken:
            raise InputError(f"deployment {values['name']!r}: the name is taken")
        new_id = conn.execute(
            sa.text(
                "INSERT INTO trading.deployments (name, strategy, params, model_name, "
                "model_alias, symbols, interval, broker, stage, capital, risk, costs, "
                "history_start, start_bar, created_by) VALUES (:name, :strategy, "
                "CAST(:params AS jsonb), :model_name, :model_alias, :symbols, :interval, "
                ":broker, 'demo', :capital, CAST(:risk AS jsonb), CAST(:costs AS jsonb), "
                ":history_start, :start_bar, :created_by) RETURNING id"
            ),
            {
                **values,
                "params": json.dumps(values["params"]),
                "risk": json.dumps(values["risk"]),
                "costs": json.dumps(values["costs"]),
            },
        ).scalar_one()
        event(conn, new_id, "created", None, {k: str(v) for k, v in values.items()})
    return get(engine, values["name"])


def event(
    conn: Connection,
    deployment_id: int,
    kind: str,
    subject: str | None,
    details: dict,
    actor: str | None = None,
) -> None:
    """Append one row to the deployment's audit log (inside the caller's transaction)."""
    conn.execute(
        sa.text(
            "INSERT INTO trading.events (deployment_id, kind, subject, details, actor) "
            "VALUES (:d, :k, :s, CAST(:j AS jsonb), :a)"
        ),
        {
            "d": deployment_id,
            "k": kind,
            "s": subject,
            "j": json.dumps(details, default=str),
            "a": actor or who(),
        },
    )


def set_state(
    engine: Engine,
    dep: Deployment,
    state: str,
    reason: str | None,
    kind: str,
    details: dict | None = None,
    stage: str | None = None,
) -> None:
    """Change the deployment's state (and stage), audited in the same transaction."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE trading.deployments SET state = :s, state_reason = :r, "
                "stage = coalesce(:g, stage) WHERE id = :id"
            ),
            {"s": state, "r": reason, "g": stage, "id": dep.id},
        )
        event(
            conn,
            dep.id,
            kind,
            None,
            {"from": dep.state, "to": state, "reason": reason, "stage": stage, **(details or {})},
        )
    dep.state, dep.state_reason = state, reason
    if stage:
        dep.stage = stage


def events(engine: Engine, dep: Deployment, kinds: tuple[str, ...] | None = None) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, kind, subject, details, actor, at FROM trading.events "
                "WHERE deployment_id = :d AND (CAST(:k AS text[]) IS NULL OR kind = ANY(:k)) "
                "ORDER BY id"
            ),
            {"d": dep.id, "k": list(kinds) if kinds else None},
        ).all()
    return [dict(r._mapping) for r in rows]


def alert(
    engine: Engine,
    dep: Deployment,
    rule: str,
    message: str,
    *,
    severity: str = "critical",
    action: str,
    value: float | None = None,
    threshold: float = 0.0,
    symbol: str = "",
    model_version: int | None = None,
) -> bool:
    """Open an alert (once per deployment, rule, symbol and day) and notify the webhook."""
    from trendcast.config import get_settings
    from trendcast.drift import notify

    values = {
        "model_name": dep.alert_name,
        "model_version": int(model_version or 0),
        "source": "live",
        "date": dt.datetime.now(dt.UTC).date(),
        "rule": rule,
        "severity": severity,
        "action": action,
        "metric": rule,
        "feature": symbol,
        "value": value,
        "threshold": float(threshold),
        "message": message,
    }
    with engine.begin() as conn:
        new = conn.execute(
            sa.text(
                "INSERT INTO monitoring.alerts (model_name, model_version, source, date, rule, "
                "severity, action, metric, feature, value, threshold, message) VALUES "
                "(:model_name, :model_version, :source, :date, :rule, :severity, :action, "
                ":metric, :feature, :value, :threshold, :message) ON CONFLICT (model_name, "
                "model_version, source, date, rule, feature) DO NOTHING RETURNING id"
            ),
            values,
        ).first()
    if new is None:
        return False
    settings = get_settings()
    notify(
        engine, [{**values, "id": new.id}], settings.alert_webhook, settings.alert_webhook_attempts
    )
    return True


@dataclass(frozen=True)
class Transfer:
    """Cash moved into (> 0) or out of (< 0) a deployment, split equally over its sleeves,
    effective at the close of the first bar after ``after_bar`` (``None``: from the start)."""

    id: int
    amount: float
    after_bar: dt.datetime | None

    def effective(self, bar) -> bool:
        """Whether the transfer is in the account at ``bar``'s close."""
        return self.after_bar is None or bar > self.after_bar


def transfers(conn: Connection, dep: Deployment) -> list[Transfer]:
    """The deployment's capital transfers (its ``capital`` events that carry an amount)."""
    import pandas as pd

    rows = conn.execute(
        sa.text(
            "SELECT id, details FROM trading.events WHERE deployment_id = :d AND kind = 'capital' "
            "AND details ->> 'amount' IS NOT NULL ORDER BY id"
        ),
        {"d": dep.id},
    ).all()
    out = []
    for row in rows:
        after = row.details.get("after_bar")
        after = pd.Timestamp(after).tz_convert("UTC") if after else None
        out.append(Transfer(row.id, float(row.details["amount"]), after))
    return out


def initial_capital(conn: Connection, dep: Deployment) -> float:
    """The capital the deployment was funded with (its capital less every transfer since)."""
    return dep.capital - sum(t.amount for t in transfers(conn, dep))


def capital_at(initial: float, moves: list[Transfer], bar) -> float:
    """The money put in by ``bar``'s close: the initial capital plus the transfers in effect."""
    return initial + sum(t.amount for t in moves if bar is None or t.effective(bar))


class DeploymentStopped(TrendcastError):
    """The deployment is stopped or killed: it does not trade."""
