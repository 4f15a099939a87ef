"""The portfolio's rows in PostgreSQL: members' return streams read into one frame, runs
with their weights and returns, and the audit events. SQL lives here, the math elsewhere."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError
from trendcast.portfolio import streams
from trendcast.portfolio.config import Member, PortfolioConfig, member_id


def alias_version(conn, model: str) -> tuple[str, int | None]:
    """``NAME@ALIAS`` -> (NAME, the version the last recorded alias move put it on)."""
    name, _, alias = model.partition("@")
    if not alias:
        raise InputError(f"model {model!r}: must be written NAME@ALIAS")
    version = conn.execute(
        sa.text(
            "SELECT to_version FROM registry.alias_events WHERE model_name = :m AND alias = :a "
            "ORDER BY id DESC LIMIT 1"
        ),
        {"m": name, "a": alias},
    ).scalar()
    return name, version


def stream_for(engine: Engine, member: Member, live: bool = False) -> pd.Series | None:
    """The member's backtest stream, newest version: a model member's from the training
    backtest of the version its alias points at; buy-and-hold's from the benchmarks.

    ``live``: a member trading on a deployment goes on with that deployment's stored live
    returns after the backtest's last day, so a member that trades is never taken for one
    whose stream has ended (the backtest keeps the days both cover)."""
    backtest = _backtest_stream(engine, member)
    if not live or not member.deployment:
        return backtest
    traded = streams.latest_deployment(engine, member.deployment)
    if traded is None or traded.empty:
        return backtest
    if backtest is None or backtest.empty:
        return traded
    after = traded[traded.index > backtest.index[-1]]
    return pd.concat([backtest, after]) if len(after) else backtest


def _backtest_stream(engine: Engine, member: Member) -> pd.Series | None:
    if member.model:
        with engine.connect() as conn:
            name, version = alias_version(conn, member.model)
        if version is None:
            return None
        mid = member_id(member.strategy, {}, member.symbols, f"{name}@v{version}")
        return streams.latest(engine, mid, ("training", "backtest"))
    sources = ("benchmark", "backtest") if member.strategy == "buy-and-hold" else ("backtest",)
    return streams.latest(engine, member.member_id, sources)


def active_members(engine: Engine, config: PortfolioConfig) -> list[Member]:
    """The config's members as they stand after substitutions (replacements from the bench)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, spec, status, role FROM portfolio.members WHERE portfolio = :p"),
            {"p": config.name},
        ).all()
    if not rows:
        return list(config.members)
    status = {r.name: r.status for r in rows}
    kept = [m for m in config.members if status.get(m.name, "active") != "replaced"]
    known = {m.name for m in kept}
    promoted = [
        Member.model_validate(r.spec)
        for r in rows
        if r.role == "bench" and r.status in ("active", "flagged") and r.name not in known
    ]
    return kept + promoted


def member_frame(engine: Engine, members: list[Member]) -> pd.DataFrame:
    """Days x members of daily returns (a deployed member's backtest followed by its live
    returns); refuses naming every member without a stream."""
    found, missing = {}, []
    for member in members:
        series = stream_for(engine, member, live=True)
        if series is None or series.empty:
            missing.append(member.name)
        else:
            found[member.name] = series
    if missing:
        raise InputError(
            f"members {missing}: no recorded return stream (run `trendcast backtest --strategy "
            "S --symbols X` for a strategy, train and promote for a model member)"
        )
    return pd.DataFrame(found).sort_index()


def save_portfolio(conn, config: PortfolioConfig, actor: str) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO portfolio.portfolios (name, config, fingerprint, created_by) VALUES "
            "(:n, CAST(:c AS jsonb), :f, :a) ON CONFLICT (name) DO UPDATE SET config = "
            "EXCLUDED.config, fingerprint = EXCLUDED.fingerprint, updated_at = now()"
        ),
        {"n": config.name, "c": config.model_dump_json(), "f": config.fingerprint(), "a": actor},
    )
    for role, group in (("member", config.members), ("bench", config.bench)):
        for member in group:
            conn.execute(
                sa.text(
                    "INSERT INTO portfolio.members (portfolio, name, member_id, spec, role, "
                    "status) VALUES (:p, :n, :m, CAST(:s AS jsonb), :r, :st) ON CONFLICT "
                    "(portfolio, name) DO UPDATE SET spec = EXCLUDED.spec, member_id = "
                    "EXCLUDED.member_id, role = EXCLUDED.role"
                ),
                {
                    "p": config.name,
                    "n": member.name,
                    "m": member.member_id,
                    "s": member.model_dump_json(),
                    "r": role,
                    "st": "active" if role == "member" else "bench",
                },
            )


def save_run(engine: Engine, report, actor: str, mlflow_run_id: str | None) -> int:
    """The run, its weights and its daily returns, in one transaction."""
    config = report.config
    with engine.begin() as conn:
        save_portfolio(conn, config, actor)
        run_id = conn.execute(
            sa.text(
                "INSERT INTO portfolio.runs (portfolio, method, config, report, mlflow_run_id, "
                "created_by) VALUES (:p, :m, CAST(:c AS jsonb), CAST(:r AS jsonb), :ml, :a) "
                "RETURNING id"
            ),
            {
                "p": config.name,
                "m": config.method,
                "c": config.model_dump_json(),
                "r": json.dumps(report.as_dict(), default=str),
                "ml": mlflow_run_id,
                "a": actor,
            },
        ).scalar_one()
        weights = report.run.weights.stack().rename("weight").reset_index()
        weights.columns = ["rebalance", "member", "weight"]
        conn.execute(
            sa.text(
                "INSERT INTO portfolio.run_weights (run_id, rebalance, member, weight) "
                "VALUES (:r, :d, :m, :w)"
            ),
            [
                {"r": run_id, "d": row.rebalance.date(), "m": row.member, "w": float(row.weight)}
                for row in weights.itertuples()
            ],
        )
        for series, values in report.series().items():
            values = values.dropna()
            conn.execute(
                sa.text(
                    "INSERT INTO portfolio.run_returns (run_id, series, day, ret) SELECT :r, :s, "
                    "unnest(CAST(:d AS date[])), unnest(CAST(:v AS float8[]))"
                ),
                {
                    "r": run_id,
                    "s": series,
                    "d": [d.date() for d in values.index],
                    "v": [float(v) for v in values.to_numpy()],
                },
            )
    return int(run_id)


def latest_run(engine: Engine, name: str) -> dict:
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT id, config, report, created_at FROM portfolio.runs "
                    "WHERE portfolio = :p ORDER BY id DESC LIMIT 1"
                ),
                {"p": name},
            )
            .mappings()
            .first()
        )
    if row is None:
        raise InputError(
            f"portfolio {name!r}: never backtested (run `trendcast portfolio backtest --config "
            "FILE` first)"
        )
    return dict(row)


def event(conn, portfolio: str, kind: str, reason: str, actor: str, **fields) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO portfolio.events (portfolio, kind, member, deployment, details, "
            "reason, actor) VALUES (:p, :k, :m, :d, CAST(:x AS jsonb), :r, :a)"
        ),
        {
            "p": portfolio,
            "k": kind,
            "m": fields.get("member"),
            "d": fields.get("deployment"),
            "x": json.dumps(fields.get("details", {}), default=str),
            "r": reason,
            "a": actor,
        },
    )


def list_streams(engine: Engine) -> pd.DataFrame:
    """Every stored stream version: member id, source, version, what made it, its days."""
    with engine.connect() as conn:
        return pd.read_sql(
            sa.text(
                "SELECT member_id, source, version, strategy, params, symbols, model, interval, "
                "first_day, last_day, days, created_by, created_at FROM portfolio.streams "
                "ORDER BY strategy, symbols, member_id, source, version"
            ),
            conn,
        )


def record_deployments(engine: Engine, actor: str) -> list[tuple[str, int | None, bool]]:
    """Each deployment's live stream from its recorded equity: (name, version, new)."""
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM trading.deployments ORDER BY name"))
        names = names.scalars().all()
    done = []
    for name in names:
        kept = streams.record_deployment(engine, name, actor)
        done.append((name, *(kept or (None, False))))
    return done
