"""Strategy return streams: the daily returns of a backtest or a deployment, stored once per
version. A stream belongs to a member id (strategy, parameters, assets, model) and a source
(``backtest``, ``benchmark`` for buy-and-hold, ``training`` for a model's own backtest,
``deployment`` for live equity); its fingerprint hashes the returns and the inputs that made
them, so recording the same thing twice adds nothing and changed inputs add a version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError
from trendcast.portfolio.config import member_id


def daily_returns(equity: pd.Series) -> pd.Series:
    """Close-to-close daily returns of an equity curve (UTC days; the last value of each day),
    the first day measured from the curve's first point."""
    if equity is None or len(equity) < 2:
        return pd.Series(dtype=float)
    index = pd.DatetimeIndex(equity.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    curve = pd.Series(equity.to_numpy(dtype=float), index=index)
    daily = curve.resample("1D").last().dropna()
    base = pd.concat([pd.Series([curve.iloc[0]]), pd.Series(daily.to_numpy())])
    values = base.to_numpy()
    returns = values[1:] / values[:-1] - 1.0
    days = daily.index.tz_localize(None).normalize()
    return pd.Series(returns, index=days, name="ret")


@dataclass(frozen=True)
class StreamKey:
    strategy: str
    params: dict
    symbols: tuple[str, ...]
    model: str | None = None

    @property
    def member_id(self) -> str:
        return member_id(self.strategy, self.params, list(self.symbols), self.model)


def fingerprint(returns: pd.Series, inputs: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(inputs, sort_keys=True, default=str).encode())
    h.update(np.asarray(returns.index.astype("int64")).tobytes())
    h.update(np.round(returns.to_numpy(dtype=float), 12).tobytes())
    return h.hexdigest()[:24]


def record(
    engine: Engine,
    key: StreamKey,
    returns: pd.Series,
    source: str,
    *,
    interval: str | None = None,
    inputs: dict | None = None,
    actor: str = "trendcast",
) -> tuple[int, bool]:
    """Store ``returns`` as a version of ``key``'s stream from ``source``; returns (version,
    whether it is new). Nothing is written for an empty series."""
    returns = returns.dropna()
    if returns.empty:
        raise InputError(f"stream {key.strategy} {','.join(key.symbols)}: no daily return")
    inputs = inputs or {}
    mid = key.member_id
    fp = fingerprint(returns, {**inputs, "source": source, "interval": interval})
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:m))"), {"m": mid})
        known = conn.execute(
            sa.text(
                "SELECT version FROM portfolio.streams WHERE member_id = :m AND source = :s "
                "AND fingerprint = :f"
            ),
            {"m": mid, "s": source, "f": fp},
        ).scalar()
        if known is not None:
            return int(known), False
        version = conn.execute(
            sa.text(
                "SELECT coalesce(max(version), 0) + 1 FROM portfolio.streams "
                "WHERE member_id = :m AND source = :s"
            ),
            {"m": mid, "s": source},
        ).scalar_one()
        stream_id = conn.execute(
            sa.text(
                "INSERT INTO portfolio.streams (member_id, version, fingerprint, source, "
                "strategy, params, symbols, model, interval, first_day, last_day, days, inputs, "
                "created_by) VALUES (:m, :v, :f, :s, :strategy, CAST(:params AS jsonb), "
                ":symbols, :model, :interval, :first, :last, :days, CAST(:inputs AS jsonb), "
                ":actor) RETURNING id"
            ),
            {
                "m": mid,
                "v": version,
                "f": fp,
                "s": source,
                "strategy": key.strategy,
                "params": json.dumps(key.params, default=str),
                "symbols": list(key.symbols),
                "model": key.model,
                "interval": interval,
                "first": returns.index[0].date(),
                "last": returns.index[-1].date(),
                "days": len(returns),
                "inputs": json.dumps(inputs, default=str),
                "actor": actor,
            },
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO portfolio.stream_returns (stream_id, day, ret) "
                "SELECT :id, unnest(CAST(:days AS date[])), unnest(CAST(:rets AS float8[]))"
            ),
            {
                "id": stream_id,
                "days": [d.date() for d in returns.index],
                "rets": [float(r) for r in returns.to_numpy()],
            },
        )
    return int(version), True


def record_report(engine: Engine, report, actor: str = "trendcast", model: str | None = None):
    """A backtest report's strategy stream and its buy-and-hold benchmark stream."""
    inputs = {"costs": report.costs, "start": report.start, "end": report.end}
    params = {k: v for k, v in report.params.items() if k != "round_trip_cost"}
    if model is not None:
        params = {}  # a model's strategy is named by the model version, not its fitted knobs
    source = "training" if model is not None else "backtest"
    kept = record(
        engine,
        StreamKey(report.strategy, params, (report.symbol,), model),
        daily_returns(report.equity),
        source,
        interval=report.interval,
        inputs=inputs,
        actor=actor,
    )
    if report.benchmark is not None and model is None:
        record(
            engine,
            StreamKey("buy-and-hold", {}, (report.symbol,), None),
            daily_returns(report.benchmark),
            "benchmark",
            interval=report.interval,
            inputs=inputs,
            actor=actor,
        )
    return kept


def _returns(conn, stream_id: int) -> pd.Series:
    rows = conn.execute(
        sa.text("SELECT day, ret FROM portfolio.stream_returns WHERE stream_id = :i ORDER BY day"),
        {"i": stream_id},
    ).all()
    return pd.Series(
        [r.ret for r in rows], index=pd.DatetimeIndex([r.day for r in rows]), dtype=float
    )


def latest(engine: Engine, mid: str, sources: tuple[str, ...]) -> pd.Series | None:
    """The newest version of ``mid``'s stream from the first of ``sources`` that has one."""
    with engine.connect() as conn:
        for source in sources:
            stream = conn.execute(
                sa.text(
                    "SELECT id FROM portfolio.streams WHERE member_id = :m AND source = :s "
                    "ORDER BY version DESC LIMIT 1"
                ),
                {"m": mid, "s": source},
            ).scalar()
            if stream is not None:
                return _returns(conn, stream)
    return None


def deployment_returns(engine: Engine, deployment: str) -> pd.Series:
    """A deployment's daily returns from its recorded equity (``trading.balances``), net of
    the capital moved in or out: a bar's return is its equity less the transfers that entered
    the account at it, over the previous bar's equity (time-weighted), so a deposit or a
    withdrawal is no gain or loss of the strategy."""
    from trendcast.trading import deployments as trading

    with engine.connect() as conn:
        dep = trading.get(conn, deployment)
        moves = trading.transfers(conn, dep)
        rows = conn.execute(
            sa.text(
                "SELECT bar_time, equity FROM trading.balances WHERE deployment_id = :d "
                "ORDER BY bar_time"
            ),
            {"d": dep.id},
        ).all()
    if len(rows) < 2:
        return pd.Series(dtype=float)
    times = pd.DatetimeIndex([r.bar_time for r in rows]).tz_convert("UTC")
    equity = np.array([float(r.equity) for r in rows])
    growth = np.ones(len(rows))
    for i in range(1, len(rows)):
        moved = sum(
            t.amount for t in moves if t.effective(times[i]) and not t.effective(times[i - 1])
        )
        if equity[i - 1] > 0:
            growth[i] = (equity[i] - moved) / equity[i - 1]
    return daily_returns(pd.Series(np.cumprod(growth), index=times))


def latest_deployment(engine: Engine, deployment: str) -> pd.Series | None:
    """The newest stored live stream of ``deployment`` (``record_deployment``)."""
    with engine.connect() as conn:
        stream = conn.execute(
            sa.text(
                "SELECT id FROM portfolio.streams WHERE source = 'deployment' "
                "AND inputs ->> 'deployment' = :d ORDER BY id DESC LIMIT 1"
            ),
            {"d": deployment},
        ).scalar()
        return None if stream is None else _returns(conn, stream)


def record_deployment(engine: Engine, deployment: str, actor: str = "trendcast"):
    """Store a deployment's live stream under its (strategy, params, symbols, model alias)."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT strategy, params, symbols, model_name, model_alias, interval "
                    "FROM trading.deployments WHERE name = :n"
                ),
                {"n": deployment},
            )
            .mappings()
            .first()
        )
    if row is None:
        raise InputError(f"deployment {deployment!r}: not found")
    returns = deployment_returns(engine, deployment)
    if returns.empty:
        return None
    model = f"{row['model_name']}@{row['model_alias']}" if row["model_name"] else None
    key = StreamKey(row["strategy"], dict(row["params"]), tuple(row["symbols"]), model)
    return record(
        engine,
        key,
        returns,
        "deployment",
        interval=row["interval"],
        inputs={"deployment": deployment},
        actor=actor,
    )
