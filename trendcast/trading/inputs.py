"""What a deployment's strategy sees: bars, features and model scores, built the same way for the
live runner and for the reconciliation backtest, so the two cannot disagree by construction.

* Bars: ``market.bars`` from the deployment's ``history_start`` (the warm-up the strategy needs,
  fixed at creation, so a path-dependent strategy starts from the same state in both).
* Features: the feature store's rows for each bar's close (event time), as known by the given
  instant (ingest time at or before it): the runner passes "now", the decision time.
* Model scores: every row is scored by the model version that was served when that row was
  decided (``trading.decisions``); warm-up rows by the first decision's version. A
  ``ServedModels`` instance is the strategy's model: its inputs are the features plus that
  version column, so its scores are row-wise (the backtest engine checks it).
* Models are resolved from the alias, verified like the service does (the artifact's SHA-256
  against the version's tag, and the alias move on record in ``registry.alias_events``).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.artifacts import CHECKSUM_TAG, sha256_file
from trendcast.errors import TrendcastError
from trendcast.feature_sets import DEFAULT_FEATURE_SET, FeatureSet
from trendcast.featurestore import table
from trendcast.gaps import step_offset

VERSION = "model_version__served"


class ModelRefused(TrendcastError):
    """The alias points at a version that cannot be served (bad checksum, unaudited move)."""


@dataclass
class VerifiedModel:
    version: int
    features: list[str]
    booster: object
    iterations: tuple[int, int]
    checksum: str

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(matrix, iteration_range=self.iterations)


def load_verified(client, name: str, version: int) -> VerifiedModel:
    """Download a version, check its SHA-256 tag and load the native booster."""
    import mlflow
    import xgboost as xgb
    import yaml

    found = client.get_model_version(name, str(version))
    expected = (found.tags or {}).get(CHECKSUM_TAG)
    if expected is None:
        raise ModelRefused(f"{name} version {version}: no {CHECKSUM_TAG} tag to verify")
    with tempfile.TemporaryDirectory(prefix="trendcast-deploy-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        )
        spec = yaml.safe_load((local / "MLmodel").read_text())
        data = local / spec["flavors"]["xgboost"]["data"]
        actual = sha256_file(data)
        if actual != expected:
            raise ModelRefused(
                f"{name} version {version}: artifact sha256 {actual[:12]}… does not match the "
                f"registered {expected[:12]}…; refusing to trade on it"
            )
        booster = xgb.Booster()
        booster.load_model(str(data))
    booster.set_param({"nthread": 1})
    best = booster.attr("best_iteration")
    iterations = (0, int(best) + 1) if best is not None else (0, 0)
    return VerifiedModel(
        int(version), list(booster.feature_names or []), booster, iterations, actual
    )


@dataclass
class ServedModels:
    """The strategy's model: scores each row with the version served when it was decided."""

    name: str
    models: dict[int, VerifiedModel] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        first = next(iter(self.models.values()))
        return first.features

    @property
    def feature_names_in_(self) -> list[str]:
        return [*self.features, VERSION]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        versions = frame[VERSION].to_numpy()
        for version in pd.unique(versions):
            rows = np.flatnonzero(versions == version)
            model = self.models[int(version)]
            matrix = frame[model.features].to_numpy(dtype=np.float32)[rows]
            out[rows] = model.predict(matrix)
        return out


def resolve_alias(client, engine: Engine, name: str, alias: str) -> int:
    """The version ``alias`` points at, refused when the move is not on record (alerted like
    the service does)."""
    from trendcast.governance import check_move, raise_alert
    from trendcast.registry import alias_version

    version = alias_version(client, name, alias)
    if version is None:
        raise ModelRefused(f"{name}@{alias}: the alias is not set")
    verdict = check_move(engine, name, alias, version)
    if not verdict.audited:
        from trendcast.config import get_settings

        raise_alert(engine, verdict, get_settings().alert_webhook)
        raise ModelRefused(verdict.reason)
    return version


def read_bars(engine: Engine, symbol: str, interval: str, start, end) -> pd.DataFrame:
    from trendcast.catalog import read_bars as read

    frame = read(engine, symbol, interval, str(start) if start is not None else None, str(end))
    return frame


def features_known_by(
    engine: Engine,
    symbol: str,
    interval: str,
    closes: pd.Series,
    columns: list[str],
    known_by: dt.datetime,
    fs: FeatureSet = DEFAULT_FEATURE_SET,
) -> pd.DataFrame:
    """For each bar close, the feature row with that event time as known at ``known_by``
    (latest ingest time at or before it); NaN where none was known."""
    if closes.empty:
        return pd.DataFrame(columns=columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    try:
        found = pd.read_sql(
            sa.text(
                f"SELECT DISTINCT ON (event_time) event_time, {quoted} FROM {table(fs)} "
                "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
                "AND event_time >= :a AND event_time <= :b AND ingest_time <= :k "
                "ORDER BY event_time, ingest_time DESC"
            ),
            engine,
            params={
                "s": symbol,
                "i": interval,
                "a": closes.min().to_pydatetime(),
                "b": closes.max().to_pydatetime(),
                "k": known_by,
            },
        )
    except sa.exc.ProgrammingError as exc:  # the feature table does not exist yet
        raise TrendcastError(
            f"feature set {fs.key}: not built (run `trendcast features build`): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    found["event_time"] = pd.to_datetime(found["event_time"], utc=True)
    joined = pd.DataFrame({"event_time": closes.to_numpy()}).merge(
        found, on="event_time", how="left"
    )
    return joined[columns]


def strategy_frame(
    engine: Engine,
    symbol: str,
    interval: str,
    history_start,
    end,
    known_by: dt.datetime,
    models: ServedModels | None,
    versions: dict[pd.Timestamp, int],
) -> pd.DataFrame:
    """Bars from ``history_start`` to ``end`` (inclusive) with, for a model strategy, the
    features known by ``known_by`` and the served version of each row."""
    frame = read_bars(engine, symbol, interval, history_start, end)
    if models is None or frame.empty:
        return frame
    closes = frame["open_time"] + step_offset(interval)
    features = features_known_by(engine, symbol, interval, closes, models.features, known_by)
    for column in models.features:
        frame[column] = features[column].to_numpy(dtype="float64")
    frame[VERSION] = version_column(frame["open_time"], versions)
    return frame


def version_column(open_times: pd.Series, versions: dict[pd.Timestamp, int]) -> np.ndarray:
    """Each bar's served version: its decision's, else the previous decision's; warm-up bars
    before the first decision take the first decision's version."""
    served = pd.Series(
        [versions.get(pd.Timestamp(t)) for t in open_times], index=open_times, dtype="float64"
    )
    served = served.ffill().bfill()
    if served.isna().any():
        raise TrendcastError("no model version is recorded for these bars")
    return served.to_numpy(dtype="int64")


def decided_versions(engine: Engine, deployment_id: int, symbol: str) -> dict[pd.Timestamp, int]:
    """The model version each of a deployment's decisions on ``symbol`` was scored with."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT bar_time, model_version FROM trading.decisions WHERE "
                "deployment_id = :d AND symbol = :s AND model_version IS NOT NULL"
            ),
            {"d": deployment_id, "s": symbol},
        ).all()
    return {pd.Timestamp(r.bar_time).tz_convert("UTC"): int(r.model_version) for r in rows}
