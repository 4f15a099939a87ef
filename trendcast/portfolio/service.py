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
    a tracking URI, an MLflow run in ``portfolios`` with the config and the weights). The
    live streams of the members' deployments are recorded first, from their equity, so a
    deployed member goes on past its backtest with what it really earned.
    ``where``: a Dask :class:`~trendcast.cluster.Placement` fits the rebalances as tasks."""
    members = store.active_members(engine, config)
    record_live(engine, members, actor)
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


def record_live(engine: Engine, members: list[Member], actor: str) -> None:
    """Store each member's deployment's live stream (a deployment not created yet, or not
    stepped yet, has none)."""
    from trendcast.portfolio import streams
    from trendcast.trading.deployments import DeploymentNotFound

    for name in sorted({m.deployment for m in members if m.deployment}):
        try:
            streams.record_deployment(engine, name, actor)
        except DeploymentNotFound:
            log.info("deployment %s: not created yet, no live stream", name)


def _config_of(engine: Engine, name: str) -> tuple[PortfolioConfig, dict]:
    run = store.latest_run(engine, name)
    return parse_config(run["config"], f"portfolio {name}"), run


#: A deployment keeps at least this equity: a zero weight withdraws down to it (a paper
#: account with no money at all has no return, and its loss limits divide by its equity).
MIN_EQUITY = 1e-6
#: Capital within this of its target is at its target (floats, and cents nobody moves).
TOLERANCE = 1e-6


def _replacements(engine: Engine, name: str) -> dict[str, Member]:
    """Members replaced since they were backtested: name -> the bench member replacing it."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT m.name, b.spec FROM portfolio.members m JOIN portfolio.members b "
                "ON b.portfolio = m.portfolio AND b.name = m.replaced_by "
                "WHERE m.portfolio = :p AND m.status = 'replaced'"
            ),
            {"p": name},
        ).all()
    return {r.name: Member.model_validate(r.spec) for r in rows}


def _slots(engine: Engine, config: PortfolioConfig, weights: dict) -> list[dict]:
    """(member, weight, spec, note) per member of the latest weights; a member substituted
    after that backtest hands its weight to its replacement and keeps none itself, so an
    applied substitution moves the capital at the next apply, not at the next backtest."""
    specs = {m.name: m for m in (*config.members, *config.bench)}
    replaced = _replacements(engine, config.name)
    slots = []
    for member, weight in weights.items():
        if member == CASH:
            continue
        new = replaced.get(member)
        if new is not None and new.name not in weights:
            slots.append({"member": member, "weight": 0.0, "spec": specs.get(member),
                          "note": f"replaced by {new.name}"})  # fmt: skip
            slots.append({"member": new.name, "weight": float(weight), "spec": new,
                          "note": f"replaces {member}"})  # fmt: skip
        else:
            slots.append({"member": member, "weight": float(weight), "spec": specs.get(member),
                          "note": ""})  # fmt: skip
    return slots


def _move(target: float, held) -> tuple[float, float]:
    """(amount to transfer now, remainder pending) to bring ``held`` to ``target``: a cut
    takes what is free now and leaves the rest pending until positions close."""
    gap = max(target, MIN_EQUITY) - held.equity
    if abs(gap) <= TOLERANCE * max(1.0, abs(target)):
        return 0.0, 0.0
    if gap > 0:
        return gap, 0.0
    now = min(-gap, max(0.0, held.withdrawable - MIN_EQUITY))
    if now <= TOLERANCE:
        return 0.0, -gap
    return -now, -gap - now


def targets(engine: Engine, name: str) -> pd.DataFrame:
    """Per member: its latest weight, the capital that makes, its deployment, what that
    deployment holds (equity at its last bar plus transfers not yet in it), the capital put
    in, what `apply` would move now and what would stay pending, and whether it is at its
    target."""
    from trendcast.trading import capital as money
    from trendcast.trading import deployments as trading

    config, run = _config_of(engine, name)
    weights = run["report"]["latest_weights"]
    rows = []
    with engine.connect() as conn:
        for slot in _slots(engine, config, weights):
            spec = slot["spec"]
            row = {
                "member": slot["member"],
                "weight": slot["weight"],
                "target_capital": slot["weight"] * config.capital,
                "deployment": spec.deployment if spec else None,
                "actual_capital": None,
                "capital_in": None,
                "to_move": None,
                "pending": None,
                "state": "",
                "note": slot["note"],
            }
            if row["deployment"]:
                try:
                    dep = trading.get(conn, row["deployment"])
                except trading.DeploymentNotFound:
                    row["state"] = "no such deployment"
                else:
                    held = money.holding(conn, dep)
                    now, pending = _move(row["target_capital"], held)
                    row.update(
                        actual_capital=held.equity,
                        capital_in=dep.capital,
                        to_move=now,
                        pending=pending,
                        state=_state(now, pending),
                    )
            rows.append(row)
    cash = float(weights.get(CASH, 0.0))
    rows.append({"member": CASH, "weight": cash, "target_capital": cash * config.capital,
                 "deployment": None, "actual_capital": None, "capital_in": None,
                 "to_move": None, "pending": None, "state": "", "note": ""})  # fmt: skip
    return pd.DataFrame(rows)


def _state(now: float, pending: float) -> str:
    if pending > 0:
        return "pending: positions open" if now == 0 else "apply: partly pending"
    return "matched" if now == 0 else "apply to match"


def apply(engine: Engine, name: str, actor: str, reason: str) -> pd.DataFrame:
    """Bring each paper deployment to its member's target (weight x capital) by a transfer
    of the difference with what it holds (its equity, not the capital once put in), in one
    transaction, each after the deployment's running bar step, each audited (who, when,
    from, to, amount, weight, pending, reason). A cut takes only the free cash; the rest
    stays pending (audited, shown by `status`) until positions close and `apply` runs again.
    A deployment at its target moves nothing (applying twice moves money once). Live and
    venue deployments are refused: their capital moves with money, not with a command."""
    from trendcast.trading import capital as money
    from trendcast.trading import deployments as trading

    if not reason.strip():
        raise InputError("reason: must say why the capital moves")
    config, run = _config_of(engine, name)
    slots = _slots(engine, config, run["report"]["latest_weights"])
    deployed = [s for s in slots if s["spec"] is not None and s["spec"].deployment]
    if not deployed:
        raise InputError(f"portfolio {name!r}: no member names a deployment to apply to")
    with engine.begin() as conn:
        for slot in deployed:
            member, deployment = slot["member"], slot["spec"].deployment
            money.hold_steps(conn, deployment)  # before the row lock: the step takes it last
            current = conn.execute(
                sa.text("SELECT broker, stage FROM trading.deployments WHERE name = :n FOR UPDATE"),
                {"n": deployment},
            ).first()
            if current is None:
                raise InputError(f"member {member}: deployment {deployment!r} not found")
            if current.broker != "paper" or current.stage == "live":
                raise InputError(
                    f"member {member}: deployment {deployment!r} is {current.stage} on "
                    f"{current.broker}; portfolio apply sets paper deployments only (a venue "
                    "account's capital is its balance: move the money at the venue)"
                )
            dep = trading.get(conn, deployment)
            held = money.holding(conn, dep)
            target = slot["weight"] * config.capital
            now, pending = _move(target, held)
            if now == 0 and pending == 0:
                continue
            if now:
                money.transfer(conn, deployment, now, actor, reason,
                               {"portfolio": name, "why": reason})  # fmt: skip
            store.event(
                conn,
                name,
                "apply",
                reason,
                actor,
                member=member,
                deployment=deployment,
                details={
                    "from_capital": dep.capital,
                    "to_capital": dep.capital + now,
                    "weight": slot["weight"],
                    "target": target,
                    "equity_before": held.equity,
                    "amount": now,
                    "pending": pending,
                    "free_cash": held.withdrawable,
                    "substitution": slot["note"] or None,  # applied before the next backtest
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
        action = (
            f"{best} replaced {member.name}: `trendcast portfolio apply` gives it "
            f"{member.name}'s weight now; the next `portfolio backtest` refits"
        )
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
