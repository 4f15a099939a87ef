"""Train an XGBoost regressor on a point-in-time dataset, log everything to MLflow, register
the version with its artifact's SHA-256, backtest it and log the report to the same run."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sqlalchemy.engine import Engine

from training.dataset import Dataset
from trendcast import metrics
from trendcast.feature_pipeline import producer_version
from trendcast.feature_sets import DEFAULT_FEATURE_SET

# Run artifact holding the training split's features (the drift monitor's PSI reference).
REFERENCE_ARTIFACT = "reference/train_features.parquet"

DEFAULT_PARAMS = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "early_stopping_rounds": 30,
    "random_state": 7,
    "n_jobs": 2,
    "tree_method": "hist",
}


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    version: int
    checksum: str
    metrics: dict


def model_checksum(model: xgb.XGBRegressor) -> str:
    """SHA-256 of the model as XGBoost serialises it (what serving verifies)."""
    return hashlib.sha256(bytes(model.get_booster().save_raw("ubj"))).hexdigest()


def fit(dataset: Dataset, params: dict | None = None) -> xgb.XGBRegressor:
    """Fit on the train split with early stopping on validation; the test split is untouched."""
    model = xgb.XGBRegressor(**{**DEFAULT_PARAMS, **(params or {})})
    train_part, val = dataset.part("train"), dataset.part("validation")
    model.fit(
        train_part[dataset.features],
        train_part["label"],
        eval_set=[(val[dataset.features], val["label"])],
        verbose=False,
    )
    return model


def train(
    engine: Engine,
    dataset: Dataset,
    *,
    symbol: str,
    interval: str,
    model_name: str | None = None,
    params: dict | None = None,
    run_name: str | None = None,
) -> TrainResult:
    from trendcast.report import run_report
    from trendcast.strategy import ModelThreshold

    params = {**DEFAULT_PARAMS, **(params or {})}
    model_name = model_name or f"{symbol}_{interval}_h{dataset.horizon}"
    test = dataset.part("test")
    features = dataset.features
    with mlflow.start_run(run_name=run_name or f"{symbol}_{interval}") as run:
        mlflow.log_params(
            {
                **params,
                "symbol": symbol,
                "interval": interval,
                "horizon": dataset.horizon,
                "feature_set": DEFAULT_FEATURE_SET.key,
            }
        )
        mlflow.set_tags(
            {
                "dataset_fingerprint": dataset.snapshot.fingerprint,
                "feature_set_fingerprint": DEFAULT_FEATURE_SET.fingerprint,
                "git_sha": producer_version(),
            }
        )
        mlflow.log_input(
            mlflow.data.from_pandas(dataset.frame, name=dataset.snapshot.path.name), "training"
        )
        _log_reference(dataset)
        model = fit(dataset, params)
        for step, value in enumerate(model.evals_result()["validation_0"]["rmse"]):
            mlflow.log_metric("validation_rmse", value, step=step)
        predicted = model.predict(test[features])
        actual = test["label"].to_numpy()
        scores = {
            "test_mse": metrics.mse(actual, predicted),
            "test_mae": metrics.mae(actual, predicted),
            "test_ic": metrics.information_coefficient(predicted, actual),
            "test_rank_ic": metrics.rank_information_coefficient(predicted, actual),
            "test_direction_accuracy": float(np.mean(np.sign(predicted) == np.sign(actual))),
            "best_iteration": float(model.best_iteration),
        }
        mlflow.log_metrics(scores)
        importance = dict(zip(features, map(float, model.feature_importances_), strict=True))
        mlflow.log_dict(importance, "feature_importance.json")
        checksum = model_checksum(model)
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            registered_model_name=model_name,
            signature=infer_signature(test[features], predicted),
            input_example=test[features].head(3),
        )
        version = int(info.registered_model_version)
        MlflowClient().set_model_version_tag(model_name, str(version), "sha256", checksum)
        bars = _test_bars(engine, symbol, interval, test)
        report = run_report(
            bars.assign(prediction=model.predict(bars[features])),
            ModelThreshold(threshold=float(np.quantile(np.abs(predicted), 0.5))),
            symbol=symbol,
            interval=interval,
        )
        numbers = {
            k: v for k, v in report.as_dict().items() if isinstance(v, float) and np.isfinite(v)
        }
        mlflow.log_metrics({f"backtest_{k}": v for k, v in numbers.items()})
        mlflow.log_dict(report.as_dict(), "backtest/report.json")
        for name, figure in report.figures().items():
            mlflow.log_figure(figure, f"backtest/{name}.html")
    return TrainResult(run.info.run_id, model_name, version, checksum, scores)


def _log_reference(dataset: Dataset) -> None:
    """The training split's features: the reference distribution the drift monitor bins PSI on."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_ARTIFACT.rsplit("/", 1)[1]
        dataset.part("train")[dataset.features].to_parquet(path, index=False)
        mlflow.log_artifact(str(path), REFERENCE_ARTIFACT.rsplit("/", 1)[0])


def _test_bars(engine: Engine, symbol: str, interval: str, test: pd.DataFrame) -> pd.DataFrame:
    """The test period's bars with their point-in-time features (open_time = close - interval)."""
    import sqlalchemy as sa

    from trendcast.gaps import step_offset

    bars = pd.read_sql(
        sa.text(
            "SELECT open_time, open, high, low, close, volume FROM market.bars "
            "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
            "AND open_time >= :a ORDER BY open_time"
        ),
        engine,
        params={
            "s": symbol,
            "i": interval,
            "a": (test["as_of"].min() - step_offset(interval)).to_pydatetime(),
        },
    )
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    keyed = test.assign(open_time=pd.to_datetime(test["as_of"], utc=True) - step_offset(interval))
    return bars.merge(keyed, on="open_time", how="inner")
