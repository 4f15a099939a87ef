"""Train an XGBoost regressor on a point-in-time dataset, log everything to MLflow, register
the version with its artifact's SHA-256, backtest it and log the report to the same run."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature
from sqlalchemy.engine import Engine

from training.dataset import Dataset
from trendcast import metrics
from trendcast.artifacts import CHECKSUM_TAG, REFERENCE_ARTIFACT, sha256_file
from trendcast.feature_pipeline import producer_version
from trendcast.feature_sets import DEFAULT_FEATURE_SET
from trendcast.recorder import log_backtest
from trendcast.tracking import mlflow_client, use_mlflow

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
    version: int | None  # None when the run was not registered (grid candidates)
    checksum: str
    metrics: dict


def model_checksum(model: xgb.XGBModel) -> str:
    """SHA-256 of the model file exactly as the MLflow xgboost flavor stores it (``model.ubj``,
    written by the same ``save_model``): serving hashes the downloaded file and compares."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.ubj"
        model.save_model(path)
        return sha256_file(path)


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


def fit_direction(dataset: Dataset, params: dict | None = None) -> xgb.XGBClassifier:
    """The direction classifier (label > 0), same features, split and early stopping."""
    model = xgb.XGBClassifier(**{**DEFAULT_PARAMS, **(params or {}), "eval_metric": "logloss"})
    train_part, val = dataset.part("train"), dataset.part("validation")
    model.fit(
        train_part[dataset.features],
        (train_part["label"] > 0).astype(int),
        eval_set=[(val[dataset.features], (val["label"] > 0).astype(int))],
        verbose=False,
    )
    return model


def _direction_scores(model: xgb.XGBClassifier, test: pd.DataFrame, features: list[str]) -> dict:
    from sklearn.metrics import classification_report

    actual = (test["label"] > 0).astype(int).to_numpy()
    predicted = model.predict(test[features])
    report = classification_report(
        actual,
        predicted,
        labels=[0, 1],
        target_names=["down", "up"],
        output_dict=True,
        zero_division=0,
    )
    mlflow.log_dict(report, "classification_report.json")
    return {
        "test_accuracy": float(report["accuracy"]),
        "test_up_precision": float(report["up"]["precision"]),
        "test_up_recall": float(report["up"]["recall"]),
        "test_macro_f1": float(report["macro avg"]["f1-score"]),
    }


def _log_plots(importance: dict[str, float], actual: np.ndarray, predicted: np.ndarray) -> None:
    import plotly.graph_objects as go

    ranked = sorted(importance.items(), key=lambda kv: kv[1])
    bars = go.Figure(go.Bar(x=[v for _, v in ranked], y=[k for k, _ in ranked], orientation="h"))
    bars.update_layout(title="Feature importance (gain share)", height=520)
    mlflow.log_figure(bars, "plots/feature_importance.html")
    scatter = go.Figure(go.Scattergl(x=predicted, y=actual, mode="markers", opacity=0.5))
    scatter.update_layout(
        title="Test split: predicted vs realised forward return",
        xaxis_title="predicted",
        yaxis_title="realised",
    )
    mlflow.log_figure(scatter, "plots/predicted_vs_actual.html")


def train(
    engine: Engine,
    dataset: Dataset,
    *,
    symbol: str,
    interval: str,
    model_name: str | None = None,
    params: dict | None = None,
    run_name: str | None = None,
    register: bool = True,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """One training run: regressor + direction classifier, everything logged to MLflow.

    ``register=False`` (grid candidates) logs and backtests but registers no version;
    ``parent_run_id`` nests the run under a grid's parent run."""
    from trendcast.report import run_report
    from trendcast.strategy import ModelThreshold, median_threshold

    params = {**DEFAULT_PARAMS, **(params or {})}
    model_name = model_name or f"{symbol}_{interval}_h{dataset.horizon}"
    test = dataset.part("test")
    features = dataset.features
    with mlflow.start_run(
        run_name=run_name or f"{symbol}_{interval}",
        nested=parent_run_id is not None,
        parent_run_id=parent_run_id,
        tags=tags,
    ) as run:
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
        # Our snapshot fingerprint is the digest: MLflow's own digest code breaks on pandas 3
        # string columns, and ours already identifies the exact rows.
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways"
            warnings.simplefilter("ignore", UserWarning)
            source = mlflow.data.from_pandas(
                dataset.frame,
                source=str(dataset.snapshot.path),
                name=dataset.snapshot.path.name,
                targets="label",
                digest=dataset.snapshot.fingerprint[:16],
            )
        mlflow.log_input(source, "training")
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
        direction = fit_direction(dataset, params)
        scores |= _direction_scores(direction, test, features)
        mlflow.log_metrics(scores)
        importance = dict(zip(features, map(float, model.feature_importances_), strict=True))
        mlflow.log_dict(importance, "feature_importance.json")
        _log_plots(importance, actual, predicted)
        checksum = model_checksum(model)
        mlflow.set_tag(CHECKSUM_TAG, checksum)
        version = None
        if register:  # grid candidates only rank: their models are retrained when registered
            info = mlflow.xgboost.log_model(
                model,
                name="model",
                model_format="ubj",
                registered_model_name=model_name,
                signature=infer_signature(test[features], predicted),
                input_example=test[features].head(3),
            )
            mlflow.xgboost.log_model(direction, name="direction_model")
            version = int(info.registered_model_version)
            mlflow_client(mlflow.get_tracking_uri()).set_model_version_tag(
                model_name, str(version), CHECKSUM_TAG, checksum
            )
        bars = _test_bars(engine, symbol, interval, test)
        report = run_report(
            bars.assign(prediction=model.predict(bars[features])),
            ModelThreshold(threshold=median_threshold(predicted)),
            symbol=symbol,
            interval=interval,
        )
        log_backtest(report)
    return TrainResult(run.info.run_id, model_name, version, checksum, scores)


def train_series(
    engine: Engine,
    settings,
    symbol: str,
    interval: str,
    *,
    horizon: int = 4,
    start: str | None = None,
    end: str | None = None,
    model_name: str | None = None,
    params: dict | None = None,
) -> TrainResult:
    """Build the point-in-time dataset of one series and train on it in experiment
    ``training`` of the settings' tracking server (what `trendcast train` does)."""
    from training.dataset import build_dataset

    dataset = build_dataset(
        engine, symbol, interval, settings.home / "datasets", horizon=horizon, start=start, end=end
    )
    use_mlflow(settings.tracking_uri)
    mlflow.set_experiment("training")
    return train(
        engine,
        dataset,
        symbol=symbol,
        interval=interval,
        model_name=model_name or settings.model_name,
        params=params,
    )


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
