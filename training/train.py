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


def _direction_scores(
    model: xgb.XGBClassifier, test: pd.DataFrame, features: list[str], prefix: str = "test"
) -> dict:
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
    if prefix == "test":
        mlflow.log_dict(report, "classification_report.json")
    return {
        f"{prefix}_accuracy": float(report["accuracy"]),
        f"{prefix}_up_precision": float(report["up"]["precision"]),
        f"{prefix}_up_recall": float(report["up"]["recall"]),
        f"{prefix}_macro_f1": float(report["macro avg"]["f1-score"]),
    }


def _prediction_scores(actual: np.ndarray, predicted: np.ndarray, prefix: str) -> dict:
    return {
        f"{prefix}_mse": metrics.mse(actual, predicted),
        f"{prefix}_mae": metrics.mae(actual, predicted),
        f"{prefix}_ic": metrics.information_coefficient(predicted, actual),
        f"{prefix}_rank_ic": metrics.rank_information_coefficient(predicted, actual),
        f"{prefix}_direction_accuracy": float(np.mean(np.sign(predicted) == np.sign(actual))),
    }


@dataclass(frozen=True)
class Selection:
    """What chose this model before its test window: how many trials (candidate x period)
    were looked at, the last instant any of them saw, and how their Sharpe ratios varied
    (per period, the deflated Sharpe's yardstick). One plain training run is one trial."""

    n_trials: int = 1
    seen_until: pd.Timestamp | None = None
    trial_sharpe_variance: float | None = None


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
    selection: Selection | None = None,
    fitter=None,
    direction_fitter=None,
) -> TrainResult:
    """One training run: regressor + direction classifier, everything logged to MLflow.

    Sealed selection: the model is fitted on train (early stopping on validation), the
    strategy threshold on validation predictions, and every ``validation_*`` metric is what a
    search may rank on; the test split is scored once, at the end, for the gates. The run logs
    ``selection_end`` (the last instant fitting or ``selection`` saw) and ``test_start``.

    ``register=False`` (grid candidates) logs and backtests but registers no version;
    ``parent_run_id`` nests the run under a grid's parent run; ``fitter(dataset, params)``
    fits the regressor instead of :func:`fit`, ``direction_fitter(dataset, params)`` the
    classifier instead of :func:`fit_direction` (``train --distributed``: on a Dask cluster)."""
    from trendcast.strategy import ModelThreshold, median_threshold

    selection = selection or Selection()
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
        log_inputs(dataset, params, symbol, interval)
        model = (fitter or fit)(dataset, params)
        for step, value in enumerate(model.evals_result()["validation_0"]["rmse"]):
            mlflow.log_metric("validation_rmse", value, step=step)
        validation = dataset.part("validation")
        val_predicted = model.predict(validation[features])
        predicted = model.predict(test[features])
        actual = test["label"].to_numpy()
        scores = {
            **_prediction_scores(actual, predicted, "test"),
            "best_iteration": float(model.best_iteration),
        }
        validation_scores = _prediction_scores(
            validation["label"].to_numpy(), val_predicted, "validation"
        )
        direction = (direction_fitter or fit_direction)(dataset, params)
        scores |= _direction_scores(direction, test, features)
        validation_scores |= _direction_scores(direction, validation, features, "validation")
        mlflow.log_metrics(scores | validation_scores)
        importance = dict(zip(features, map(float, model.feature_importances_), strict=True))
        mlflow.log_dict(importance, "feature_importance.json")
        _log_plots(importance, actual, predicted)
        checksum = model_checksum(model)
        mlflow.set_tag(CHECKSUM_TAG, checksum)
        version = None
        if register:  # grid candidates only rank: their models are retrained when registered
            version = register_model(model, model_name, test[features], predicted, checksum)
            mlflow.xgboost.log_model(direction, name="direction_model")
        # The strategy's one fitted parameter comes from validation predictions, never test.
        strategy = ModelThreshold(
            model=model,
            features=features,
            threshold=median_threshold(val_predicted),
        )
        val_report = _backtest(engine, symbol, interval, validation, strategy)
        report = _backtest(engine, symbol, interval, test, strategy)
        sealed = seal(dataset, selection)
        log_backtest(report)
        log_backtest(val_report, prefix="validation_backtest", artifacts=False)
        log_selection(report, sealed, selection)
        if version is not None:
            record_model_stream(engine, model_name, version, symbol, interval, val_report, report)
    return TrainResult(run.info.run_id, model_name, version, checksum, scores | validation_scores)


def record_model_stream(engine, model_name, version, symbol, interval, *reports) -> None:
    """The version's strategy returns (validation then test backtest, daily) as a portfolio
    stream: a portfolio member ``model-threshold`` with ``NAME@ALIAS`` reads the stream of
    the version the alias points at."""
    from trendcast.portfolio.streams import StreamKey, daily_returns, record

    parts = pd.concat([daily_returns(r.equity) for r in reports])
    returns = (1.0 + parts).groupby(level=0).prod() - 1.0  # a day split by the cut, compounded
    record(
        engine,
        StreamKey("model-threshold", {}, (symbol,), f"{model_name}@v{version}"),
        returns,
        "training",
        interval=interval,
        inputs={"run_id": mlflow.active_run().info.run_id, "costs": reports[-1].costs},
    )


def register_model(
    model: xgb.XGBModel,
    model_name: str,
    example: pd.DataFrame,
    predicted: np.ndarray,
    checksum: str,
) -> int:
    """Log the regressor to the active run and register it, tagged with its SHA-256."""
    info = mlflow.xgboost.log_model(
        model,
        name="model",
        model_format="ubj",
        registered_model_name=model_name,
        signature=infer_signature(example, predicted),
        input_example=example.head(3),
    )
    version = int(info.registered_model_version)
    mlflow_client(mlflow.get_tracking_uri()).set_model_version_tag(
        model_name, str(version), CHECKSUM_TAG, checksum
    )
    return version


def seal(dataset: Dataset, selection: Selection) -> dict[str, pd.Timestamp]:
    """The selection's last seen instant and the test window's first: the test must come after."""
    ends = [dataset.selection_end]
    if selection.seen_until is not None:
        ends.append(pd.Timestamp(selection.seen_until))
    return {"selection_end": max(ends), "test_start": dataset.test_start}


def log_selection(report, sealed: dict[str, pd.Timestamp], selection: Selection) -> None:
    """Trials, the sealing instants and the deflated Sharpe ratio of the test backtest."""
    per_period = report.sharpe / np.sqrt(report.periods_per_year)
    dsr = metrics.deflated_sharpe_ratio(
        per_period,
        report.n_returns,
        selection.n_trials,
        selection.trial_sharpe_variance,
        report.skewness,
        report.kurtosis,
    )
    mlflow.set_tags({k: v.isoformat() for k, v in sealed.items()})
    values = {
        "n_trials": float(selection.n_trials),
        "selection_end_ts": sealed["selection_end"].timestamp(),
        "test_start_ts": sealed["test_start"].timestamp(),
        "backtest_dsr": dsr,
    }
    mlflow.log_metrics({k: v for k, v in values.items() if np.isfinite(v)})


def _backtest(engine: Engine, symbol: str, interval: str, part: pd.DataFrame, strategy):
    """``strategy`` on the bars of one split, with the instrument's costs and calendar."""
    from trendcast.costs import market_terms
    from trendcast.report import run_report

    bars = _split_bars(engine, symbol, interval, part)
    terms = market_terms(engine, symbol, interval, float(bars["close"].iloc[0]))
    return run_report(
        bars,
        strategy,
        terms.costs.costs,
        symbol=symbol,
        interval=interval,
        periods_per_year=terms.periods_per_year,
    )


def log_inputs(dataset: Dataset, params: dict, symbol: str, interval: str) -> None:
    """Params, provenance tags, the dataset snapshot and the PSI reference of the active run."""
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
    mlflow.log_input(dataset_source(dataset), "training")
    _log_reference(dataset)


def dataset_source(dataset: Dataset):
    """The snapshot as an MLflow dataset. Our snapshot fingerprint is the digest: MLflow's own
    digest code breaks on pandas 3 string columns, and ours already identifies the exact rows."""
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways"
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(
            dataset.frame,
            source=str(dataset.snapshot.path),
            name=dataset.snapshot.path.name,
            targets="label",
            digest=dataset.snapshot.fingerprint[:16],
        )


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
    where=None,
) -> TrainResult:
    """Build the point-in-time dataset of one series and train on it in experiment
    ``training`` of the settings' tracking server (what `trendcast train` does); ``where``
    (a Dask placement): export it as Parquet and fit both models there with xgboost.dask."""
    from training.dataset import build_dataset

    dataset = build_dataset(
        engine, symbol, interval, settings.home / "datasets", horizon=horizon, start=start, end=end
    )
    use_mlflow(settings.tracking_uri)
    mlflow.set_experiment("training")
    fitter, direction_fitter, tags = None, None, None
    if where is not None and where.distributed:
        from training.distributed import export_location, export_training_set, fit_on_cluster

        endpoint = settings.s3_endpoint_url
        export = export_training_set(dataset, export_location(settings), endpoint)
        fitter = lambda data, chosen: fit_on_cluster(  # noqa: E731
            where.client, export, data, chosen, endpoint
        )
        direction_fitter = lambda data, chosen: fit_on_cluster(  # noqa: E731
            where.client, export, data, chosen, endpoint, direction=True
        )
        tags = {"trained_on": where.describe().removeprefix("ran on "), "export": export}
    return train(
        engine,
        dataset,
        symbol=symbol,
        interval=interval,
        model_name=model_name or settings.model_name,
        params=params,
        tags=tags,
        fitter=fitter,
        direction_fitter=direction_fitter,
    )


def _log_reference(dataset: Dataset) -> None:
    """The training split's features: the reference distribution the drift monitor bins PSI on."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_ARTIFACT.rsplit("/", 1)[1]
        dataset.part("train")[dataset.features].to_parquet(path, index=False)
        mlflow.log_artifact(str(path), REFERENCE_ARTIFACT.rsplit("/", 1)[0])


def _split_bars(engine: Engine, symbol: str, interval: str, test: pd.DataFrame) -> pd.DataFrame:
    """One split's bars with their point-in-time features (open_time = close - interval)."""
    import sqlalchemy as sa

    from trendcast.gaps import step_offset

    bars = pd.read_sql(
        sa.text(
            "SELECT open_time, open, high, low, close, volume FROM market.bars "
            "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
            "AND open_time >= :a AND open_time <= :b ORDER BY open_time"
        ),
        engine,
        params={
            "s": symbol,
            "i": interval,
            "a": (test["as_of"].min() - step_offset(interval)).to_pydatetime(),
            "b": (test["as_of"].max() - step_offset(interval)).to_pydatetime(),
        },
    )
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    keyed = test.drop(columns=["label", "label_end"], errors="ignore")  # never the future
    keyed = keyed.assign(open_time=pd.to_datetime(test["as_of"], utc=True) - step_offset(interval))
    return bars.merge(keyed, on="open_time", how="inner")
