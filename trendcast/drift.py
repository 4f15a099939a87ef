"""The drift monitor: is each served model still earning its place?

Per served model version and prediction source ('live' from the service, 'backfill' scored
on the feature store's history), for one UTC day D:

* ``ic``, ``rank_ic``, ``mse`` of day D's predictions against the realised forward log return
  (the training label, ``trendcast.labels.forward_log_returns``), and ``ic_5d``, the mean of the
  daily ICs of D-4 .. D;
* ``psi`` per feature of the prediction inputs of the last ``psi_window_days`` days against the
  training split's features (bins from the reference), and ``prediction_psi`` of the
  predictions against the model's predictions on that reference; ``prediction_mean`` and
  ``prediction_std`` of day D;
* ``sharpe_5d``, ``sharpe_20d``: annualised Sharpe of the model-threshold strategy (the training
  backtest's threshold) run on the predictions, close to close without costs, over the bars of
  the last 5 and 20 days.

Rows go to ``monitoring.drift_metrics`` (upserted: a rerun replaces, never duplicates). Then the
alert rules (``RULES``, the response matrix) are evaluated on the stored history; alerts go to
``monitoring.alerts``, the log and an optional Slack-compatible webhook.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast import metrics
from trendcast.artifacts import BACKTEST_REPORT, REFERENCE_ARTIFACT
from trendcast.errors import InputError
from trendcast.gaps import step_offset
from trendcast.labels import forward_log_returns
from trendcast.strategy import DEFAULT_THRESHOLD, logged_threshold

log = logging.getLogger("trendcast.drift")

SOURCES = ("live", "backfill")
SHARPE_WINDOWS = (5, 20)
IC_AVERAGE_DAYS = 5
#: Fewer rows than this in the PSI window and the PSI is stored as NULL (too noisy to read).
PSI_MIN_ROWS = 30
PSI_BINS = 10


# ---------------------------------------------------------------------------------------------
# Alert rules: the response matrix
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``metric`` compared with ``threshold`` (``below``: value < threshold, else value >
    threshold) on ``days`` consecutive observed days ending at the evaluated day."""

    name: str
    family: str
    severity: str
    metric: str
    threshold: float
    below: bool
    days: int
    action: str
    per_feature: bool = False

    def breached(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value < self.threshold if self.below else value > self.threshold

    def describe(self) -> str:
        op = "<" if self.below else ">"
        run = f" for {self.days} days running" if self.days > 1 else ""
        return f"{self.metric} {op} {self.threshold:g}{run}"


#: Highest severity first within each family: only the highest breached level of a family
#: (per feature for PSI) is open at a time.
RULES: tuple[Rule, ...] = (
    Rule("ic_critical", "ic", "critical", "ic", 0.0, True, 3,
         "pause: stop acting on the model's signals (roll back or pause serving)"),
    Rule("ic_severe", "ic", "severe", "ic_5d", 0.01, True, 1,
         "investigate: compare with the challenger, prepare a retrain"),
    Rule("ic_warning", "ic", "warning", "ic", 0.02, True, 5,
         "watch: the edge is thinning"),
    Rule("psi_severe", "psi", "severe", "psi", 0.25, False, 1,
         "retrain on recent data", per_feature=True),
    Rule("psi_warning", "psi", "warning", "psi", 0.10, False, 1,
         "watch the feature's source and definition", per_feature=True),
    Rule("prediction_psi_severe", "prediction_psi", "severe", "prediction_psi", 0.25, False, 1,
         "retrain on recent data"),
    Rule("prediction_psi_warning", "prediction_psi", "warning", "prediction_psi", 0.10, False, 1,
         "watch the prediction distribution"),
    Rule("sharpe_severe", "sharpe", "severe", "sharpe_20d", 0.0, True, 5,
         "review: consider rolling back to the previous version"),
    Rule("sharpe_warning", "sharpe", "warning", "sharpe_20d", 0.5, True, 10,
         "watch: live strategy returns below target"),
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    rule: Rule
    feature: str
    value: float
    run_length: int

    @property
    def message(self) -> str:
        what = f"{self.rule.metric}[{self.feature}]" if self.feature else self.rule.metric
        return (
            f"{what} = {self.value:.4g} ({self.rule.describe()}; {self.run_length} day(s) running)"
        )


def run_length(values: list[float | None], rule: Rule) -> int:
    """Consecutive breaches counted back from the last value (days without a value are not
    in ``values``: a run counts observed days, so a market's weekend does not break it)."""
    count = 0
    for value in reversed(values):
        if not rule.breached(value):
            break
        count += 1
    return count


def evaluate_rules(history: pd.DataFrame, date: dt.date) -> list[Finding]:
    """Rules breached on ``date`` given the stored daily metrics ``history`` (columns date,
    metric, feature, value) of one model version and source. Only the highest breached
    severity of each family (and feature) is returned."""
    found: dict[tuple[str, str], Finding] = {}
    if history.empty:
        return []
    frame = history[history["date"] <= date]
    for rule in RULES:
        rows = frame[frame["metric"] == rule.metric]
        for feature, group in rows.groupby("feature", sort=True):
            group = group.sort_values("date")
            if group["date"].iloc[-1] != date:
                continue  # nothing observed on the evaluated day
            values = [None if pd.isna(v) else float(v) for v in group["value"]]
            length = run_length(values, rule)
            key = (rule.family, str(feature))
            if length >= rule.days and key not in found:
                found[key] = Finding(rule, str(feature), values[-1], length)
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def strategy_returns(
    close: np.ndarray, prediction: np.ndarray, threshold: float, allow_short: bool = False
) -> np.ndarray:
    """Per-bar returns of the model-threshold strategy: the position decided at bar t's close
    (``ModelThreshold.signals``; flat where there is no prediction) times the close-to-close
    return of the next bar. One fewer return than bars; no costs."""
    from trendcast.strategy import ModelThreshold

    close = np.asarray(close, dtype="float64")
    if len(close) < 2:
        return np.array([], dtype="float64")
    position = ModelThreshold(threshold=threshold, allow_short=allow_short).signals(
        pd.DataFrame({"prediction": np.asarray(prediction, dtype="float64")})
    )
    return position[:-1] * (close[1:] / close[:-1] - 1.0)


@dataclass
class ModelInfo:
    """What the monitor needs to know about one model version."""

    name: str
    version: int
    symbol: str
    interval: str
    horizon: int
    features: list[str]
    reference: pd.DataFrame  # the training split's features
    reference_predictions: np.ndarray
    threshold: float = DEFAULT_THRESHOLD
    allow_short: bool = False
    model: object = field(default=None, repr=False)


def _day_bounds(date: dt.date, days: int = 1) -> tuple[pd.Timestamp, pd.Timestamp]:
    end = pd.Timestamp(date, tz="UTC") + pd.Timedelta(days=1)
    return end - pd.Timedelta(days=days), end


def load_predictions(
    engine: Engine, name: str, version: int, source: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Predictions with event_time in [start, end), one per (symbol, interval, event_time)
    (the latest; production and challenger on the same version score the same row twice)."""
    frame = pd.read_sql(
        sa.text(
            "SELECT DISTINCT ON (symbol, interval, event_time) symbol, interval, event_time, "
            "prediction, inputs FROM serving.predictions WHERE model_name = :n "
            "AND model_version = :v AND source = :s AND event_time >= :a AND event_time < :b "
            "AND symbol IS NOT NULL ORDER BY symbol, interval, event_time, predicted_at DESC"
        ),
        engine,
        params={"n": name, "v": version, "s": source, "a": start, "b": end},
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame.sort_values("event_time").reset_index(drop=True)


def load_bars(
    engine: Engine, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp, after: int
) -> pd.DataFrame:
    """Bars closing in [start, end) plus the next ``after`` bars (for forward returns), with
    event_time = the bar's close (what a prediction's event_time refers to)."""
    step = step_offset(interval)
    frame = pd.read_sql(
        sa.text(
            "(SELECT open_time, close FROM market.bars WHERE symbol = :s "
            "AND interval = CAST(:i AS market.bar_interval) AND open_time >= :a "
            "AND open_time < :b) UNION ALL (SELECT open_time, close FROM market.bars "
            "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
            "AND open_time >= :b ORDER BY open_time LIMIT :k) ORDER BY open_time"
        ),
        engine,
        params={
            "s": symbol,
            "i": interval,
            "a": (start - step).to_pydatetime(),
            "b": (end - step).to_pydatetime(),
            "k": after,
        },
    )
    frame["event_time"] = pd.to_datetime(frame["open_time"], utc=True) + step
    return frame


def _inputs_frame(inputs: Iterable, features: list[str]) -> pd.DataFrame:
    rows = [json.loads(x) if isinstance(x, str) else (x or {}) for x in inputs]
    frame = pd.DataFrame(rows)
    for name in features:
        if name not in frame:
            frame[name] = np.nan
    return frame[features].apply(pd.to_numeric, errors="coerce")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _periods_per_year(engine: Engine, joined, interval: str) -> float:
    """The instrument calendar's bars per year (FX 1h ~6,234, not 8,760)."""
    from trendcast.instruments import get_instrument

    symbol = joined["symbol"].iloc[0] if len(joined) else None
    if symbol is None:
        return metrics.periods_per_year(interval)
    return get_instrument(engine, str(symbol)).periods_per_year(interval)


def compute_day(
    engine: Engine, info: ModelInfo, source: str, date: dt.date, psi_window_days: int = 20
) -> list[dict]:
    """The day's metric rows for one model version and source ([] when it has no predictions
    that day)."""
    window = max(psi_window_days, max(SHARPE_WINDOWS), IC_AVERAGE_DAYS)
    start, end = _day_bounds(date, window)
    preds = load_predictions(engine, info.name, info.version, source, start, end)
    day_start, _ = _day_bounds(date)
    if not (preds["event_time"] >= day_start).any():
        return []
    realised_parts = []
    bars_by_symbol = {}
    for (symbol, interval), group in preds.groupby(["symbol", "interval"]):
        bars = load_bars(engine, symbol, interval, start, end, info.horizon)
        bars["realised"] = forward_log_returns(bars["close"].to_numpy(), info.horizon)
        bars_by_symbol[(symbol, interval)] = bars
        realised_parts.append(
            group.merge(bars[["event_time", "close", "realised"]], on="event_time", how="left")
        )
    joined = pd.concat(realised_parts, ignore_index=True).sort_values("event_time")
    rows: list[dict] = []

    def put(metric: str, value: float, n: int, feature: str = "") -> None:
        rows.append(
            {
                "metric": metric,
                "feature": feature,
                "value": _finite(value),
                "n": int(n),
            }
        )

    day = joined[joined["event_time"] >= day_start]
    pred, real = day["prediction"].to_numpy(float), day["realised"].to_numpy(float)
    pairs = int(np.sum(~np.isnan(real)))
    put("ic", metrics.information_coefficient(pred, real), pairs)
    put("rank_ic", metrics.rank_information_coefficient(pred, real), pairs)
    put("mse", metrics.mse(real, pred), pairs)
    daily_ic = []
    for offset in range(IC_AVERAGE_DAYS):
        a, b = _day_bounds(date - dt.timedelta(days=offset))
        part = joined[(joined["event_time"] >= a) & (joined["event_time"] < b)]
        daily_ic.append(
            metrics.information_coefficient(
                part["prediction"].to_numpy(float), part["realised"].to_numpy(float)
            )
        )
    observed = [x for x in daily_ic if math.isfinite(x)]
    put("ic_5d", float(np.mean(observed)) if observed else math.nan, len(observed))
    put("prediction_mean", float(np.mean(pred)), len(pred))
    put("prediction_std", float(np.std(pred, ddof=1)) if len(pred) > 1 else math.nan, len(pred))

    psi_start, _ = _day_bounds(date, psi_window_days)
    recent = joined[joined["event_time"] >= psi_start]
    inputs = _inputs_frame(recent["inputs"], info.features)
    for name in info.features:
        column = inputs[name].dropna()
        value = (
            metrics.psi(info.reference[name], column, PSI_BINS)
            if len(column) >= PSI_MIN_ROWS
            else math.nan
        )
        put("psi", value, len(column), name)
    n_recent = len(recent)
    put(
        "prediction_psi",
        metrics.psi(info.reference_predictions, recent["prediction"], PSI_BINS)
        if n_recent >= PSI_MIN_ROWS
        else math.nan,
        n_recent,
    )

    for days in SHARPE_WINDOWS:
        a, _ = _day_bounds(date, days)
        returns = []
        for (symbol, interval), bars in bars_by_symbol.items():
            scored = bars[(bars["event_time"] >= a) & (bars["event_time"] < end)].merge(
                preds[(preds["symbol"] == symbol) & (preds["interval"] == interval)][
                    ["event_time", "prediction"]
                ],
                on="event_time",
                how="left",
            )
            if scored["prediction"].notna().any():  # from the window's first prediction on
                first = scored.loc[scored["prediction"].notna(), "event_time"].min()
                scored = scored[scored["event_time"] >= first]
            returns.append(
                strategy_returns(
                    scored["close"].to_numpy(),
                    scored["prediction"].to_numpy(),
                    info.threshold,
                    info.allow_short,
                )
            )
        r = np.concatenate(returns) if returns else np.array([])
        put(
            f"sharpe_{days}d",
            metrics.sharpe_ratio(r, _periods_per_year(engine, joined, info.interval)),
            len(r),
        )
    symbol = joined["symbol"].iloc[0]
    interval = joined["interval"].iloc[0]
    for row in rows:
        row.update(
            model_name=info.name,
            model_version=info.version,
            source=source,
            date=date,
            symbol=symbol,
            interval=interval,
        )
    return rows


def store_metrics(engine: Engine, rows: list[dict]) -> None:
    """Upsert: a rerun of the same day replaces its values."""
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO monitoring.drift_metrics (model_name, model_version, source, date, "
                "metric, feature, value, n, symbol, interval) VALUES (:model_name, "
                ":model_version, :source, :date, :metric, :feature, :value, :n, :symbol, "
                ":interval) ON CONFLICT (model_name, model_version, source, date, metric, "
                "feature) DO UPDATE SET value = EXCLUDED.value, n = EXCLUDED.n, "
                "symbol = EXCLUDED.symbol, interval = EXCLUDED.interval, computed_at = now()"
            ),
            rows,
        )


def metric_history(
    engine: Engine, name: str, version: int, source: str, until: dt.date
) -> pd.DataFrame:
    longest = max(rule.days for rule in RULES)
    frame = pd.read_sql(
        sa.text(
            "SELECT date, metric, feature, value FROM monitoring.drift_metrics "
            "WHERE model_name = :n AND model_version = :v AND source = :s AND date <= :d "
            "AND date IN (SELECT DISTINCT date FROM monitoring.drift_metrics WHERE "
            "model_name = :n AND model_version = :v AND source = :s AND date <= :d "
            "ORDER BY date DESC LIMIT :k)"
        ),
        engine,
        params={"n": name, "v": version, "s": source, "d": until, "k": longest + 1},
    )
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


# ---------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------


def alert_text(alert: dict) -> str:
    return (
        f"[{alert['severity'].upper()}] {alert['model_name']} v{alert['model_version']} "
        f"({alert['source']} predictions) {alert['date']}: {alert['message']}. "
        f"Action: {alert['action']}"
    )


def post_webhook(url: str, alert: dict, attempts: int = 3, timeout_s: float = 5.0) -> None:
    """POST a Slack-compatible message (``{"text": ...}``), retrying connection errors and
    5xx/429 answers with exponential backoff; raises after the last attempt."""
    import httpx
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

    class Retryable(Exception):
        pass

    @retry(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception_type((httpx.TransportError, Retryable)),
        reraise=True,
    )
    def send() -> None:
        response = httpx.post(url, json={"text": alert_text(alert)}, timeout=timeout_s)
        if response.status_code >= 500 or response.status_code == 429:
            raise Retryable(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")

    send()


def record_alerts(
    engine: Engine,
    name: str,
    version: int,
    source: str,
    date: dt.date,
    findings: list[Finding],
) -> list[dict]:
    """Open an alert per new finding (a finding whose rule and feature already has an open
    alert updates it), resolve open alerts of this model version and source that no longer
    hold. Returns the alerts opened now (to notify)."""
    opened = []
    held = {(f.rule.name, f.feature) for f in findings}
    with engine.begin() as conn:
        open_rows = (
            conn.execute(
                sa.text(
                    "SELECT id, rule, feature, date FROM monitoring.alerts WHERE model_name = :n "
                    "AND model_version = :v AND source = :s AND status = 'open' AND date <= :d"
                ),
                {"n": name, "v": version, "s": source, "d": date},
            )
            .mappings()
            .all()
        )
        open_keys = {(r["rule"], r["feature"]) for r in open_rows}
        for row in open_rows:
            if (row["rule"], row["feature"]) not in held and row["date"] <= date:
                conn.execute(
                    sa.text(
                        "UPDATE monitoring.alerts SET status = 'resolved', resolved_at = now() "
                        "WHERE id = :id"
                    ),
                    {"id": row["id"]},
                )
        for finding in findings:
            rule = finding.rule
            values = {
                "model_name": name,
                "model_version": version,
                "source": source,
                "date": date,
                "rule": rule.name,
                "severity": rule.severity,
                "action": rule.action,
                "metric": rule.metric,
                "feature": finding.feature,
                "value": finding.value,
                "threshold": rule.threshold,
                "run_length": finding.run_length,
                "message": finding.message,
            }
            if (rule.name, finding.feature) in open_keys:
                kept = conn.execute(
                    sa.text(
                        "UPDATE monitoring.alerts SET value = :value, run_length = :run_length, "
                        "message = :message WHERE model_name = :model_name AND "
                        "model_version = :model_version AND source = :source AND rule = :rule "
                        "AND feature = :feature AND status = 'open' "
                        "RETURNING id, date, notified"
                    ),
                    values,
                ).first()
                if kept is not None and kept.notified == "failed":  # retry a failed delivery
                    opened.append({**values, "date": kept.date, "id": kept.id})
                continue
            new = conn.execute(
                sa.text(
                    "INSERT INTO monitoring.alerts (model_name, model_version, source, date, "
                    "rule, severity, action, metric, feature, value, threshold, run_length, "
                    "message) VALUES (:model_name, :model_version, :source, :date, :rule, "
                    ":severity, :action, :metric, :feature, :value, :threshold, :run_length, "
                    ":message) ON CONFLICT (model_name, model_version, source, date, rule, "
                    "feature) DO UPDATE SET value = EXCLUDED.value, status = 'open', "
                    "resolved_at = NULL, run_length = EXCLUDED.run_length, "
                    "message = EXCLUDED.message RETURNING id, (xmax = 0) AS inserted, notified"
                ),
                values,
            ).one()
            if new.inserted or new.notified == "failed":
                opened.append({**values, "id": new.id})
    return opened


def notify(engine: Engine, alerts: list[dict], webhook: str | None, attempts: int = 3) -> None:
    """Log every alert; post each to the webhook when one is set. A failing webhook is logged
    and recorded on the alert (``notified = 'failed'``), never raised."""
    for alert in alerts:
        level = logging.ERROR if alert["severity"] != "warning" else logging.WARNING
        log.log(level, alert_text(alert))
        if not webhook:
            continue
        status, error = "sent", None
        try:
            post_webhook(webhook, alert, attempts)
        except Exception as exc:  # a broken webhook must not fail the monitoring job
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            log.warning("alert webhook failed after %d attempt(s): %s", attempts, error)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE monitoring.alerts SET notified = :s, notify_error = :e WHERE id = :id"
                ),
                {"s": status, "e": error, "id": alert["id"]},
            )


# ---------------------------------------------------------------------------------------------
# Models: MLflow look-ups, backfill scoring
# ---------------------------------------------------------------------------------------------


def load_model_info(client, name: str, version: int) -> ModelInfo:
    """Horizon, series, threshold, PSI reference and reference predictions of a version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        raise InputError(f"model {name!r} has no version {version} in the registry") from None
    run = client.get_run(found.run_id)
    params = run.data.params
    missing = [p for p in ("symbol", "interval", "horizon") if p not in params]
    if missing:
        raise InputError(f"{name} v{version}: run {found.run_id} lacks params {missing}")
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=found.run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=client.tracking_uri
        )
    except MlflowException:
        raise InputError(
            f"{name} v{version}: run {found.run_id} has no {REFERENCE_ARTIFACT} (PSI reference); "
            "retrain it with this version of `trendcast train`"
        ) from None
    reference = pd.read_parquet(path)
    model = mlflow.xgboost.load_model(f"models:/{name}/{version}")
    features = list(getattr(model, "feature_names_in_", reference.columns))
    try:
        report = mlflow.artifacts.load_dict(f"runs:/{found.run_id}/{BACKTEST_REPORT}")
    except MlflowException:
        report = None
    threshold, allow_short = logged_threshold(report if isinstance(report, dict) else None)
    if report is None:
        log.info("%s v%s: no backtest report, default threshold %g", name, version, threshold)
    return ModelInfo(
        name=name,
        version=int(version),
        symbol=params["symbol"],
        interval=params["interval"],
        horizon=int(params["horizon"]),
        features=features,
        reference=reference,
        reference_predictions=np.asarray(model.predict(reference[features]), dtype="float64"),
        threshold=threshold,
        allow_short=allow_short,
        model=model,
    )


def served_versions(client, aliases: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(model, alias, version) for every registered model's served ``aliases`` (the settings'
    model and shadow alias)."""
    found = []
    for model in client.search_registered_models():
        for alias, version in sorted((model.aliases or {}).items()):
            if alias in aliases:
                found.append((model.name, alias, int(version)))
    return found


def backfill_predictions(
    engine: Engine,
    info: ModelInfo,
    alias: str,
    start: dt.date,
    end: dt.date,
    *,
    primary_alias: str,
) -> int:
    """Score the version on the feature store's point-in-time history of bars closing in
    [start, end] (whole UTC days) and write the rows to serving.predictions with source
    'backfill' (replacing the version's earlier backfill rows of that window)."""
    from trendcast.feature_sets import DEFAULT_FEATURE_SET
    from trendcast.featurestore import get_point_in_time

    a, _ = _day_bounds(start)
    _, b = _day_bounds(end)
    step = step_offset(info.interval)
    bars = pd.read_sql(
        sa.text(
            "SELECT open_time FROM market.bars WHERE symbol = :s AND "
            "interval = CAST(:i AS market.bar_interval) AND open_time >= :a AND open_time < :b "
            "ORDER BY open_time"
        ),
        engine,
        params={
            "s": info.symbol,
            "i": info.interval,
            "a": (a - step).to_pydatetime(),
            "b": (b - step).to_pydatetime(),
        },
    )
    as_of = pd.to_datetime(bars["open_time"], utc=True) + step
    entities = pd.DataFrame({"symbol": info.symbol, "as_of": as_of})
    frame = get_point_in_time(engine, DEFAULT_FEATURE_SET, entities, info.interval, info.features)
    frame = frame.dropna(subset=info.features).reset_index(drop=True)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "DELETE FROM serving.predictions WHERE source = 'backfill' AND model_name = :n "
                "AND model_version = :v AND alias = :al AND symbol = :s AND event_time >= :a "
                "AND event_time < :b"
            ),
            {"n": info.name, "v": info.version, "al": alias, "s": info.symbol, "a": a, "b": b},
        )
        if frame.empty:
            return 0
        predicted = info.model.predict(frame[info.features])
        rows = [
            {
                "request_id": f"backfill:{info.name}:{info.version}:{alias}:{t.isoformat()}",
                "t": t.to_pydatetime(),
                "symbol": info.symbol,
                "interval": info.interval,
                "n": info.name,
                "v": info.version,
                "alias": alias,
                "shadow": alias != primary_alias,
                "inputs": json.dumps(dict(zip(info.features, map(float, values), strict=True))),
                "p": float(p),
            }
            for t, values, p in zip(
                pd.to_datetime(frame["as_of"], utc=True),
                frame[info.features].to_numpy(),
                predicted,
                strict=True,
            )
        ]
        conn.execute(
            sa.text(
                "INSERT INTO serving.predictions (request_id, predicted_at, symbol, interval, "
                "event_time, model_name, model_version, alias, shadow, source, inputs, "
                "prediction) VALUES (:request_id, :t, :symbol, :interval, :t, :n, :v, :alias, "
                ":shadow, 'backfill', CAST(:inputs AS jsonb), :p)"
            ),
            rows,
        )
    return len(rows)


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------


@dataclass
class DaySummary:
    date: dt.date
    model_name: str
    model_version: int
    source: str
    metrics: dict[str, float | None]
    alerts: list[dict]


def versions_with_predictions(engine: Engine, date: dt.date) -> list[tuple[str, int, str]]:
    a, b = _day_bounds(date)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT DISTINCT model_name, model_version, source FROM serving.predictions "
                "WHERE event_time >= :a AND event_time < :b AND symbol IS NOT NULL ORDER BY 1, 2, 3"
            ),
            {"a": a, "b": b},
        ).all()
    return [(r[0], int(r[1]), r[2]) for r in rows]


def run_day(
    engine: Engine,
    date: dt.date,
    model_info: Callable[[str, int], ModelInfo],
    *,
    psi_window_days: int = 20,
    webhook: str | None = None,
    attempts: int = 3,
    notify_sources: tuple[str, ...] = SOURCES,
) -> list[DaySummary]:
    """Compute, store and alert for every model version with predictions on ``date``."""
    summaries = []
    for name, version, source in versions_with_predictions(engine, date):
        try:
            info = model_info(name, version)
        except InputError as exc:  # one unusable version must not stop the others' monitoring
            log.error("%s v%s skipped on %s: %s", name, version, date, exc)
            continue
        rows = compute_day(engine, info, source, date, psi_window_days)
        store_metrics(engine, rows)
        findings = evaluate_rules(metric_history(engine, name, version, source, date), date)
        opened = record_alerts(engine, name, version, source, date, findings)
        notify(engine, opened, webhook if source in notify_sources else None, attempts)
        summaries.append(
            DaySummary(
                date,
                name,
                version,
                source,
                {r["metric"]: r["value"] for r in rows if not r["feature"]},
                opened,
            )
        )
    return summaries
