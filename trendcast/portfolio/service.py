"""What the `trendcast portfolio` commands do: backtest a config walk-forward on the stored
streams (recorded in PostgreSQL and MLflow), apply the latest weights to the paper
deployments' capital, show targets against actual capital, and check members against their
backtest band (flag, propose or substitute, audited and alerted)."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError
from trendcast.portfolio import store
from trendcast.portfolio.allocate import CASH
from trendcast.portfolio.config import Member, PortfolioConfig, parse_config
from trendcast.portfolio.evaluate import PortfolioReport, evaluate
from trendcast.trading.capital import set_capital

log = logging.getLogger("trendcast.portfolio")

EXPERIMENT = "portfolios"
OUT_OF_BAND = "member_out_of_band"


def backtest(
    engine: Engine,
    config: PortfolioConfig,
    actor: str,
    tracking_uri: str | None = None,
    where=None,
) -> tuple[PortfolioReport, int, str | None]:
    """Walk the portfolio forward on its members' stored streams; record the run (and, with
    a tracking URI, an MLflow run in ``portfolios`` with the config and the weights).
    ``where``: a Dask :class:`~trendcast.cluster.Placement` fits the rebalances as tasks."""
    members = store.active_members(engine, config)
    frame = store.member_frame(engine, members)
    if where is not None and where.distributed:
        from trendcast.portfolio.distributed import walks_on

        report = evaluate(frame, config, walks_on(where, frame, config))
    else:
        report = evaluate(frame, config)
    run_id = None
    if tracking_uri:
        from trendcast.recorder import record_portfolio

        run_id = record_portfolio(report, tracking_uri, EXPERIMENT)
    return report, store.save_run(engine, report, actor, run_id), run_id


def _config_of(engine: Engine, name: str) -> tuple[PortfolioConfig, dict]:
    run = store.latest_run(engine, name)
    return parse_config(run["config"], f"portfolio {name}"), run


def targets(engine: Engine, name: str) -> pd.DataFrame:
    """Per member: its latest weight, the capital that makes, its deployment and the capital
    that deployment holds now."""
    config, run = _config_of(engine, name)
    weights = run["report"]["latest_weights"]
    specs = {m.name: m for m in store.active_members(engine, config)}
    rows = []
    with engine.connect() as conn:
        for member, weight in weights.items():
            if member == CASH:
                continue
            spec = specs.get(member)
            deployment = spec.deployment if spec else None
            actual = None
            if deployment:
                actual = conn.execute(
                    sa.text("SELECT capital FROM trading.deployments WHERE name = :n"),
                    {"n": deployment},
                ).scalar()
            rows.append(
                {
                    "member": member,
                    "weight": float(weight),
                    "target_capital": float(weight) * config.capital,
                    "deployment": deployment,
                    "actual_capital": actual,
                }
            )
    rows.append(
        {
            "member": CASH,
            "weight": float(weights.get(CASH, 0.0)),
            "target_capital": float(weights.get(CASH, 0.0)) * config.capital,
            "deployment": None,
            "actual_capital": None,
        }
    )
    return pd.DataFrame(rows)


#: A deployment's capital must stay above zero (trading.deployments CHECK): a zero weight
#: leaves the deployment at this floor instead (it then holds no meaningful position).
MIN_CAPITAL = 1e-6


def apply(engine: Engine, name: str, actor: str, reason: str) -> pd.DataFrame:
    """Set each paper deployment's capital to its member's target, in one transaction, each
    change audited (who, when, from, to, weight, reason). Live deployments are refused: their
    capital moves with money, not with a command."""
    if not reason.strip():
        raise InputError("reason: must say why the capital moves")
    table = targets(engine, name)
    deployed = table[table["deployment"].notna()]
    if deployed.empty:
        raise InputError(f"portfolio {name!r}: no member names a deployment to apply to")
    with engine.begin() as conn:
        for row in deployed.itertuples():
            current = conn.execute(
                sa.text(
                    "SELECT id, capital, broker, stage FROM trading.deployments WHERE name = :n "
                    "FOR UPDATE"
                ),
                {"n": row.deployment},
            ).first()
            if current is None:
                raise InputError(f"member {row.member}: deployment {row.deployment!r} not found")
            if current.broker != "paper" or current.stage == "live":
                raise InputError(
                    f"member {row.member}: deployment {row.deployment!r} is {current.stage} on "
                    f"{current.broker}; portfolio apply sets paper deployments only (a venue "
                    "account's capital is its balance: move the money at the venue)"
                )
            capital = max(row.target_capital, MIN_CAPITAL)
            set_capital(
                conn, row.deployment, capital, actor, reason, {"portfolio": name, "why": reason}
            )
            store.event(
                conn,
                name,
                "apply",
                reason,
                actor,
                member=row.member,
                deployment=row.deployment,
                details={
                    "from_capital": current.capital,
                    "to_capital": capital,
                    "weight": row.weight,
                },
            )
    return targets(engine, name)


def _alert(engine: Engine, portfolio: str, verdict, message: str, action: str, webhook) -> bool:
    from trendcast.drift import notify

    values = {
        "model_name": f"portfolio:{portfolio}",
        "model_version": 0,
        "source": "live",
        "date": dt.datetime.now(dt.UTC).date(),
        "rule": OUT_OF_BAND,
        "severity": "severe",
        "action": action,
        "metric": "portfolio_band",
        "feature": verdict.member,
        "value": float(verdict.run_length),
        "threshold": float(verdict.edge),
        "run_length": int(verdict.run_length),
        "message": message,
    }
    with engine.begin() as conn:
        new = conn.execute(
            sa.text(
                "INSERT INTO monitoring.alerts (model_name, model_version, source, date, rule, "
                "severity, action, metric, feature, value, threshold, run_length, message) "
                "VALUES (:model_name, :model_version, :source, :date, :rule, :severity, "
                ":action, :metric, :feature, :value, :threshold, :run_length, :message) "
                "ON CONFLICT (model_name, model_version, source, date, rule, feature) "
                "DO NOTHING RETURNING id"
            ),
            values,
        ).first()
    if new is None:
        return False
    notify(engine, [{**values, "id": new.id}], webhook)
    return True


def live_stream(engine: Engine, member: Member) -> pd.Series:
    """The member's live returns: its deployment's recorded equity, as a stored stream."""
    from trendcast.portfolio import streams

    if not member.deployment:
        return pd.Series(dtype=float)
    streams.record_deployment(engine, member.deployment)
    return streams.deployment_returns(engine, member.deployment)


def check(
    engine: Engine,
    name: str,
    actor: str,
    webhook: str | None = None,
    live: dict[str, pd.Series] | None = None,
) -> list[dict]:
    """Judge each active member's live returns against its backtest band; flag those out of
    it for K days, and substitute (``auto_substitute``) or propose the best bench candidate
    that passes the gates. ``live`` overrides the deployments' streams (member -> returns)."""
    from trendcast.portfolio.substitution import best_candidate, judge

    config, _ = _config_of(engine, name)
    rule = config.substitution
    members = store.active_members(engine, config)
    bench = {}
    for candidate in config.bench:
        series = store.stream_for(engine, candidate)
        if series is not None:
            bench[candidate.name] = series
    outcomes = []
    for member in members:
        returns = (live or {}).get(member.name)
        if returns is None:
            returns = live_stream(engine, member)
        backtest = store.stream_for(engine, member)
        if returns is None or returns.empty or backtest is None:
            continue
        verdict = judge(member.name, returns, backtest, rule, config.periods_per_year)
        if not verdict.flagged:
            continue
        in_use = {m.name for m in members}
        best, gates = best_candidate(bench, rule, config.periods_per_year, exclude=in_use)
        outcome = _act(engine, config, member, verdict, best, gates, actor, webhook)
        outcomes.append(outcome)
    return outcomes


def _act(engine, config, member, verdict, best, gates, actor, webhook) -> dict:
    rule = config.substitution
    band = (
        f"rolling {rule.window}-day Sharpe below {verdict.edge:.2f}"
        if rule.metric == "rolling_sharpe"
        else f"drawdown deeper than {verdict.edge:.1%}"
    )
    what = f"{member.name}: {band} for {verdict.run_length} days (K={rule.days})"
    substitute = rule.auto_substitute and best is not None
    kind = "substitute" if substitute else ("propose" if best else "flag")
    details = {
        "run_length": verdict.run_length,
        "edge": verdict.edge,
        "flagged_on": verdict.flagged_on,
        "candidate": best,
        "gates": gates.get(best, {}) if best else {},
    }
    with engine.begin() as conn:
        status = "replaced" if substitute else "flagged"
        conn.execute(
            sa.text(
                "UPDATE portfolio.members SET status = :s, replaced_by = :b, updated_at = now() "
                "WHERE portfolio = :p AND name = :n"
            ),
            {"s": status, "b": best if substitute else None, "p": config.name, "n": member.name},
        )
        if substitute:
            conn.execute(
                sa.text(
                    "UPDATE portfolio.members SET status = 'active', updated_at = now() "
                    "WHERE portfolio = :p AND name = :n"
                ),
                {"p": config.name, "n": best},
            )
        store.event(
            conn,
            config.name,
            kind,
            what,
            actor,
            member=member.name,
            deployment=member.deployment,
            details=details,
        )
    if substitute:
        action = f"{best} replaced {member.name}; rerun `trendcast portfolio backtest` and apply"
    elif best:
        action = f"replace {member.name} with {best} (passes the gates), or set auto_substitute"
    else:
        action = f"no bench candidate passes the gates: review {member.name} by hand"
    _alert(engine, config.name, verdict, what, action, webhook)
    return {"member": member.name, "action": kind, "candidate": best, "why": what}


def actor() -> str:
    """Who acts: ``TRENDCAST_USER`` or the login (as alias moves record it)."""
    import getpass

    from trendcast.config import get_settings

    return get_settings().user or getpass.getuser()
