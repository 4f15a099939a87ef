"""Read-only data access for the dashboard: every query runs as the database role
``trendcast_reader`` in read-only transactions, and is cached for ``TTL_S`` seconds.

Pure helpers (no Streamlit) sit next to the cached wrappers so tests can call them directly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine

from trendcast.artifacts import BACKTEST_REPORT, backtest_figure
from trendcast.config import Settings, get_settings
from trendcast.db import database_url, normalize_url
from trendcast.tracking import mlflow_client

TTL_S = 30
READER_ROLE = "trendcast_reader"


def reader_engine(settings: Settings | None = None) -> Engine:
    """An engine whose sessions cannot write: ``TRENDCAST_DASHBOARD_DATABASE_URL`` (a
    read-only login role) when set, else the Trendcast database with every session switched
    to role ``trendcast_reader`` (SELECT only) and ``default_transaction_read_only`` on."""
    settings = settings or get_settings()
    options = "-c default_transaction_read_only=on"
    if settings.dashboard_database_url:
        url = normalize_url(settings.dashboard_database_url)
    else:
        url = database_url("trendcast", settings)
        options = f"-c role={READER_ROLE} {options}"
    return sa.create_engine(
        url, connect_args={"options": options, "connect_timeout": 5}, pool_pre_ping=True
    )


@st.cache_resource
def engine() -> Engine:
    return reader_engine()


@st.cache_data(ttl=300)
def periods_per_year(symbol: str, interval: str) -> float:
    """Bars per year of the instrument's calendar: the Sharpe annualisation everywhere."""
    from trendcast.instruments import get_instrument

    return get_instrument(engine(), symbol, warn=False).periods_per_year(interval)


def query(sql: str, **params: Any) -> pd.DataFrame:
    with engine().connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


# --- MLflow --------------------------------------------------------------------------------------


def tracking_uri() -> str:
    return get_settings().tracking_uri


@st.cache_data(ttl=10, show_spinner=False)
def mlflow_up() -> bool:
    import httpx

    try:
        return httpx.get(f"{tracking_uri()}/health", timeout=1.5).status_code == 200
    except httpx.HTTPError:
        return False


def client():
    """The MLflow client; the dashboard must never wait long for MLflow: no retry storm, short
    timeouts."""
    settings = get_settings()
    return mlflow_client(
        tracking_uri(),
        retries=settings.dashboard_mlflow_retries,
        timeout_s=settings.mlflow_timeout_s,
    )


def model_link(name: str, version: int | str | None = None) -> str:
    base = f"{tracking_uri()}/#/models/{name}"
    return f"{base}/versions/{version}" if version is not None else base


@st.cache_data(ttl=TTL_S, show_spinner=False)
def registry() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(models with their aliases, versions with key metrics and params)."""
    from trendcast.governance import OUTSIDE, check_move

    c = client()
    models, versions = [], []
    for model in c.search_registered_models():
        aliases = dict(model.aliases or {})
        verdicts = {a: check_move(engine(), model.name, a, int(v)) for a, v in aliases.items()}
        models.append(
            {
                "model": model.name,
                "aliases": ", ".join(f"{a} → v{v}" for a, v in sorted(aliases.items())) or "-",
                "audit": "; ".join(
                    f"{a}: {OUTSIDE}, not served"
                    for a, v in sorted(verdicts.items())
                    if not v.audited
                )
                or "every alias move on record",
                "link": model_link(model.name),
            }
        )
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        for mv in c.search_model_versions(f"name = '{model.name}'"):
            run = c.get_run(mv.run_id) if mv.run_id else None
            m = run.data.metrics if run else {}
            p = run.data.params if run else {}
            versions.append(
                {
                    "model": model.name,
                    "version": int(mv.version),
                    "aliases": ", ".join(sorted(by_version.get(str(mv.version), []))),
                    "algorithm": p.get("algorithm", "xgboost"),
                    "horizon": int(p["horizon"]) if "horizon" in p else None,
                    "test_ic": m.get("test_ic"),
                    "test_mse": m.get("test_mse"),
                    "backtest_sharpe": m.get("backtest_sharpe"),
                    "backtest_max_drawdown": m.get("backtest_max_drawdown"),
                    "backtest_return": m.get("backtest_cumulative_return"),
                    "buy_and_hold": m.get("backtest_benchmark_cumulative_return"),
                    "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    "run_id": mv.run_id,
                    "link": model_link(model.name, mv.version),
                }
            )
    versions_frame = pd.DataFrame(versions)
    if not versions_frame.empty:
        versions_frame = versions_frame.sort_values(["model", "version"], ascending=[True, False])
    return pd.DataFrame(models), versions_frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def backtest_runs() -> pd.DataFrame:
    """Runs that logged a backtest report (experiments `backtests` and `training`)."""
    c = client()
    rows = []
    for name in ("backtests", "training"):
        experiment = c.get_experiment_by_name(name)
        if experiment is None:
            continue
        for run in c.search_runs([experiment.experiment_id], max_results=500):
            m, p = run.data.metrics, run.data.params
            if "backtest_sharpe" not in m:
                continue
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "experiment": name,
                    "run": run.info.run_name,
                    "symbol": p.get("symbol", ""),
                    "interval": p.get("interval", ""),
                    "strategy": p.get("strategy", "model-threshold"),
                    "return": m.get("backtest_cumulative_return"),
                    "buy_and_hold": m.get("backtest_benchmark_cumulative_return"),
                    "sharpe": m.get("backtest_sharpe"),
                    "max_drawdown": m.get("backtest_max_drawdown"),
                    "trades": None
                    if m.get("backtest_trades") is None
                    else int(m["backtest_trades"]),
                    "costs": p.get("cost_profile", ""),
                    "bars_per_year": m.get("backtest_periods_per_year"),
                    "started": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
                }
            )
    frame = pd.DataFrame(rows)
    return frame.sort_values("started", ascending=False) if not frame.empty else frame


def _artifact_text(run_id: str, path: str) -> str | None:
    import mlflow

    try:
        client()
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")
    except Exception:  # a missing artifact is an empty state, not a crash
        return None


@st.cache_data(ttl=300, show_spinner=False)
def backtest_report(run_id: str) -> dict | None:
    text = _artifact_text(run_id, BACKTEST_REPORT)
    return json.loads(text) if text else None


def figure_from_html(html: str):
    """The plotly figure inside an HTML file written by ``fig.write_html`` (how MLflow logs
    figures): its data and layout are the JSON arguments of ``Plotly.newPlot``."""
    import plotly.graph_objects as go

    match = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*", html)
    if not match:
        return None
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(html, match.end())
    rest = html[end:].lstrip().lstrip(",").lstrip()
    layout, _ = decoder.raw_decode(rest)
    return go.Figure(data=data, layout=layout)


@st.cache_data(ttl=300, show_spinner=False)
def backtest_figure_json(run_id: str, name: str) -> str | None:
    html = _artifact_text(run_id, backtest_figure(name))
    if not html:
        return None
    fig = figure_from_html(html)
    return fig.to_json() if fig is not None else None


# --- Predictions and outcomes --------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def prediction_catalog() -> pd.DataFrame:
    return query(
        "SELECT model_name, model_version, alias, source, symbol, interval, count(*) AS rows, "
        "min(event_time) AS first, max(event_time) AS last FROM serving.predictions "
        "WHERE symbol IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4"
    )


def horizon_of(name: str, version: int, versions: pd.DataFrame | None) -> int:
    """The model's label horizon: its run's `horizon` param, else the `_hN` name suffix."""
    if versions is not None and not versions.empty:
        hit = versions[(versions["model"] == name) & (versions["version"] == version)]
        if not hit.empty and pd.notna(hit["horizon"].iloc[0]):
            return int(hit["horizon"].iloc[0])
    match = re.search(r"_h(\d+)$", name)
    return int(match.group(1)) if match else 1


@st.cache_data(ttl=TTL_S, show_spinner=False)
def predictions(
    model_name: str, versions: tuple[int, ...], aliases: tuple[str, ...] | None, symbol: str,
    start: pd.Timestamp, sources: tuple[str, ...],
) -> pd.DataFrame:  # fmt: skip
    frame = query(
        "SELECT DISTINCT ON (source, event_time) event_time, prediction, model_version, alias, "
        "source, interval FROM serving.predictions WHERE model_name = :n "
        "AND model_version = ANY(:v) "
        "AND (CAST(:aliases AS text[]) IS NULL OR alias = ANY(:aliases)) "
        "AND symbol = :s AND event_time >= :t AND source = ANY(:src) "
        "ORDER BY source, event_time, predicted_at DESC",
        n=model_name,
        v=list(versions),
        aliases=list(aliases) if aliases else None,
        s=symbol,
        t=start.to_pydatetime(),
        src=list(sources),
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame.sort_values("event_time").reset_index(drop=True)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def closes(symbol: str, interval: str, start: pd.Timestamp) -> pd.DataFrame:
    """Bars from ``start`` on, event_time = close time."""
    from trendcast.gaps import step_offset

    step = step_offset(interval)
    frame = query(
        "SELECT open_time, close FROM market.bars WHERE symbol = :s "
        "AND interval = CAST(:i AS market.bar_interval) AND open_time >= :t ORDER BY open_time",
        s=symbol,
        i=interval,
        t=(start - step).to_pydatetime(),
    )
    frame["event_time"] = pd.to_datetime(frame["open_time"], utc=True) + step
    return frame


def outcomes(preds: pd.DataFrame, bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Predictions joined with the realised forward log return (the training label)."""
    from trendcast.labels import forward_log_returns

    bars = bars.assign(realised=forward_log_returns(bars["close"].to_numpy(), horizon))
    return preds.merge(bars[["event_time", "close", "realised"]], on="event_time", how="left")


def strategy_curve(
    joined: pd.DataFrame, bars: pd.DataFrame, threshold: float, allow_short: bool = False
) -> pd.DataFrame:
    """Equity, drawdown of the model-threshold strategy on these predictions (close to close,
    no costs: the drift monitor's Sharpe) from the first prediction on."""
    from trendcast.drift import strategy_returns
    from trendcast.metrics import drawdowns

    frame = bars.merge(joined[["event_time", "prediction"]], on="event_time", how="left")
    if not frame["prediction"].notna().any():
        return pd.DataFrame(columns=["event_time", "return", "equity", "drawdown"])
    frame = frame[frame["event_time"] >= frame.loc[frame["prediction"].notna(), "event_time"].min()]
    r = strategy_returns(
        frame["close"].to_numpy(), frame["prediction"].to_numpy(), threshold, allow_short
    )
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return pd.DataFrame(
        {
            "event_time": frame["event_time"].to_numpy(),
            "return": np.concatenate(([np.nan], r)),
            "equity": equity,
            "drawdown": drawdowns(equity),
        }
    )


# --- Drift ---------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def drift_catalog() -> pd.DataFrame:
    return query(
        "SELECT model_name, model_version, source, min(date) AS first, max(date) AS last, "
        "count(DISTINCT date) AS days FROM monitoring.drift_metrics GROUP BY 1, 2, 3 "
        "ORDER BY 1, 2 DESC, 3"
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def drift_metrics(model_name: str, version: int, source: str) -> pd.DataFrame:
    frame = query(
        "SELECT date, metric, feature, value, n FROM monitoring.drift_metrics "
        "WHERE model_name = :n AND model_version = :v AND source = :s ORDER BY date",
        n=model_name,
        v=version,
        s=source,
    )
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alerts(status: str | None = "open", limit: int = 500) -> pd.DataFrame:
    return query(
        "SELECT date, severity, rule, model_name, model_version, source, feature, value, "
        "threshold, run_length, action, message, status, notified, raised_at, resolved_at "
        "FROM monitoring.alerts WHERE (CAST(:st AS text) IS NULL OR status = :st) "
        "ORDER BY date DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'severe' THEN 1 ELSE 2 "
        "END, rule, feature LIMIT :k",
        st=status,
        k=limit,
    )


# --- Registry audit ------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alias_events() -> pd.DataFrame:
    frame = query(
        "SELECT moved_at, model_name, alias, action, from_version, to_version, moved_by, forced, "
        "reason, gate_results FROM registry.alias_events ORDER BY id DESC LIMIT 500"
    )
    if frame.empty:
        return frame
    frame["gates"] = [gate_summary(g) for g in frame.pop("gate_results")]
    return frame


def gate_summary(results: dict | str | None) -> str:
    if isinstance(results, str):
        results = json.loads(results)
    if not results:
        return "-"
    parts = []
    for gate, result in results.items():
        value = result.get("value")
        shown = f"{value:.3g}" if isinstance(value, (int, float)) else "no metric"
        parts.append(f"{'✓' if result.get('passed') else '✗'} {gate} ({shown})")
    return "; ".join(parts)


# --- Data health ---------------------------------------------------------------------------------


def exchange_clock(settings: Settings | None = None) -> tuple[pd.Timestamp, str]:
    """The clock freshness is measured against: the exchange replay's when it serves the data
    (its clock runs in data time), else the wall clock."""
    settings = settings or get_settings()
    now = pd.Timestamp.now(tz="UTC")
    if settings.exchange_url is not None:
        return now, "wall clock"
    try:
        import httpx

        body = httpx.get(f"{settings.exchange}/api/v3/time", timeout=1.0).json()
        return pd.Timestamp(int(body["serverTime"]), unit="ms", tz="UTC"), "exchange replay"
    except Exception:  # replay not running: the wall clock
        return now, "wall clock"


def health_of(conn, frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Per series: the age of its last bar, how many bars its calendar expected since (a
    weekend or holiday counts none), and the calendar-aware gaps. Pure: tests call it."""
    from trendcast.gaps import calendar_of, find_gaps, step_offset
    from trendcast.schema import series_key

    ages, overdue, gaps, missing, calendars = [], [], [], [], []
    for row in frame.itertuples():
        key = series_key(row.symbol, row.interval)
        calendar = calendar_of(conn, row.symbol)
        step = step_offset(row.interval)
        last_open = pd.Timestamp(row.last_open).tz_convert("UTC")
        closed = last_open + step
        ages.append(now - closed)
        expected = calendar.open_times(row.interval, last_open + step, now)
        overdue.append(int((expected + step <= now).sum()))
        found = find_gaps(conn, key, calendar=calendar)
        gaps.append(len(found))
        missing.append(sum(g.missing for g in found))
        calendars.append(calendar.name)
    frame = frame.copy()
    frame["calendar"] = calendars
    frame["last_bar_age"] = [str(a).split(".")[0] for a in ages]
    frame["bars_overdue"] = overdue
    frame["fresh"] = [x <= 1 for x in overdue]
    frame["gaps"] = gaps
    frame["missing_bars"] = missing
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def series_health() -> pd.DataFrame:
    """Per series: bars, last bar, its age, bars overdue by its calendar, gaps."""
    frame = query(
        "SELECT symbol, interval::text AS interval, count(*) AS bars, max(open_time) AS last_open "
        "FROM market.bars GROUP BY 1, 2 ORDER BY 1, 2"
    )
    if frame.empty:
        return frame
    now, _ = exchange_clock()
    with engine().connect() as conn:
        return health_of(conn, frame, now)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def holes_by_status() -> pd.DataFrame:
    """Recorded holes per series and status, with the most attempts and the last error."""
    return query(
        "SELECT symbol, interval::text AS interval, status, count(*) AS bars, "
        "max(attempts) AS attempts, max(last_attempt) AS last_attempt, "
        "(array_agg(last_error ORDER BY last_attempt DESC NULLS LAST))[1] AS last_error "
        "FROM market.holes GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def quarantine_by_reason() -> pd.DataFrame:
    return query(
        "SELECT coalesce(symbol, '?') AS symbol, reason, count(*) AS rows, "
        "max(received_at) AS last FROM market.quarantine GROUP BY 1, 2 ORDER BY 3 DESC"
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def ingestion_runs(limit: int = 100) -> pd.DataFrame:
    return query(
        "SELECT started_at, kind, source, symbol, interval, status, rows_read, rows_inserted, "
        "rows_duplicate, rows_conflicting, rows_revised, rows_quarantined, gaps_found, "
        "gaps_filled, error "
        "FROM market.ingestion_runs ORDER BY started_at DESC LIMIT :k",
        k=limit,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def live_feed() -> pd.DataFrame:
    """Per series, over live ingestion runs: bars expected, missing from the feed (gaps found)
    and refilled (gap backfill). Bars inserted include the refilled ones."""
    frame = query(
        "SELECT symbol, interval, count(*) AS runs, sum(rows_inserted) AS inserted, "
        "sum(gaps_found) AS missing, sum(gaps_filled) AS refilled, "
        "sum(rows_quarantined) AS quarantined FROM market.ingestion_runs WHERE kind = 'ingest' "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    if frame.empty:
        return frame
    expected = frame["inserted"] + frame["missing"] - frame["refilled"]
    frame["missing_share"] = np.where(expected > 0, frame["missing"] / expected.clip(lower=1), 0.0)
    frame["refilled_share"] = np.where(
        frame["missing"] > 0, frame["refilled"] / frame["missing"].clip(lower=1), np.nan
    )
    return frame


# --- portfolio -----------------------------------------------------------------------------------


@st.cache_data(ttl=30)
def portfolio_runs() -> pd.DataFrame:
    """The newest run of every portfolio."""
    return query(
        "SELECT DISTINCT ON (portfolio) id, portfolio, method, config, report, created_at, "
        "created_by FROM portfolio.runs ORDER BY portfolio, id DESC"
    )


@st.cache_data(ttl=30)
def portfolio_weights(run_id: int) -> pd.DataFrame:
    frame = query(
        "SELECT rebalance, member, weight FROM portfolio.run_weights WHERE run_id = :r", r=run_id
    )
    return frame.pivot(index="rebalance", columns="member", values="weight").sort_index()


@st.cache_data(ttl=30)
def portfolio_returns(run_id: int) -> pd.DataFrame:
    frame = query("SELECT series, day, ret FROM portfolio.run_returns WHERE run_id = :r", r=run_id)
    return frame.pivot(index="day", columns="series", values="ret").sort_index()


@st.cache_data(ttl=30)
def portfolio_members(name: str) -> pd.DataFrame:
    return query(
        "SELECT name, role, status, replaced_by, spec->>'strategy' AS strategy, "
        "spec->'symbols' AS symbols, spec->>'model' AS model, spec->>'deployment' AS deployment, "
        "updated_at FROM portfolio.members WHERE portfolio = :p ORDER BY role DESC, name",
        p=name,
    )


@st.cache_data(ttl=30)
def portfolio_events(name: str) -> pd.DataFrame:
    return query(
        "SELECT at, kind, member, deployment, reason, actor, details FROM portfolio.events "
        "WHERE portfolio = :p ORDER BY id DESC LIMIT 500",
        p=name,
    )


@st.cache_data(ttl=30)
def portfolio_bands(name: str, run_id: int) -> pd.DataFrame:
    """Per member with a deployment: each live day's statistic and the band edge its backtest
    (the member's returns in the run) sets, by the portfolio's substitution rule."""
    from trendcast.portfolio.config import Substitution
    from trendcast.portfolio.substitution import band, live_statistic

    run = portfolio_runs()
    config = run[run["portfolio"] == name].iloc[0]["config"]
    rule = Substitution(**config["substitution"])
    ppy = float(config["periods_per_year"])
    returns = portfolio_returns(run_id)
    members = portfolio_members(name)
    frames = []
    for row in members.itertuples():
        if not isinstance(row.deployment, str) or row.name not in returns:
            continue
        live = query(
            "SELECT r.day, r.ret FROM portfolio.stream_returns r JOIN portfolio.streams s ON "
            "s.id = r.stream_id WHERE s.id = (SELECT id FROM portfolio.streams WHERE source = "
            "'deployment' AND inputs->>'deployment' = :d ORDER BY id DESC LIMIT 1) ORDER BY r.day",
            d=row.deployment,
        )
        if live.empty:
            continue
        series = pd.Series(live["ret"].to_numpy(), index=pd.DatetimeIndex(live["day"]))
        edge = band(returns[row.name].dropna(), rule, ppy)
        stat = live_statistic(series, rule, ppy)
        frames.append(
            pd.DataFrame({"member": row.name, "day": stat.index, "value": stat, "edge": edge})
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
