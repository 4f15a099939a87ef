"""Training against a real MLflow server: what a run logs, registration with a checksum tag,
reproducibility, the time split, and a leakage check."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from training.dataset import build_dataset
from training.train import fit, train
from trendcast import feature_pipeline
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES
from trendcast.tracking import use_mlflow

pytestmark = pytest.mark.slow


@pytest.fixture
def dataset(engine, tmp_path):
    frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    load_frame(engine, frame, symbol="EURUSD", interval="1h", source="test", origin=origin)
    feature_pipeline.build(engine)
    return build_dataset(engine, "EURUSD", "1h", tmp_path / "snapshots", horizon=4)


def test_split_is_by_time_with_a_purge_gap(dataset):
    train_part, val, test = (dataset.part(s) for s in ("train", "validation", "test"))
    assert train_part["as_of"].max() < val["as_of"].min()
    assert val["as_of"].max() < test["as_of"].min()
    gap = (val["as_of"].min() - train_part["as_of"].max()) / np.timedelta64(1, "h")
    assert gap > dataset.horizon  # no label window crosses into the next split
    assert not dataset.frame[dataset.features].isna().any().any()


def test_run_logs_registers_and_reproduces(dataset, engine, mlflow_url):
    use_mlflow(mlflow_url)
    mlflow.set_experiment("training-tests")
    params = {"n_estimators": 40}

    def retrain():
        return train(
            engine,
            dataset,
            symbol="EURUSD",
            interval="1h",
            params=params,
            model_name="EURUSD_test_model",
        )

    first = retrain()
    client = MlflowClient(mlflow_url)
    run = client.get_run(first.run_id)
    for key in (
        "test_mse",
        "test_mae",
        "test_ic",
        "test_rank_ic",
        "test_direction_accuracy",
        "backtest_sharpe",
        "backtest_max_drawdown",
        "backtest_cumulative_return",
        "backtest_benchmark_cumulative_return",
        "test_accuracy",
        "test_up_precision",
        "test_macro_f1",
    ):
        assert key in run.data.metrics, key
    assert 0.3 < run.data.metrics["test_accuracy"] < 0.7  # a direction guess, not a leak
    artifacts = {
        f.path
        for folder in ("", "plots", "backtest", "reference")
        for f in client.list_artifacts(first.run_id, folder)
    }
    assert {
        "classification_report.json",
        "feature_importance.json",
        "plots/feature_importance.html",
        "plots/predicted_vs_actual.html",
        "backtest/report.json",
        "reference/train_features.parquet",
    } <= artifacts
    logged = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{first.run_id}'"
    )
    assert {m.name for m in logged} == {"model", "direction_model"}
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == dataset.snapshot.fingerprint[:16]
    assert run.data.tags["dataset_fingerprint"] == dataset.snapshot.fingerprint
    assert len(run.data.tags["git_sha"]) >= 7
    assert run.info.run_name == "EURUSD_1h"
    assert len(client.get_metric_history(first.run_id, "validation_rmse")) > 1
    version = client.get_model_version("EURUSD_test_model", str(first.version))
    assert version.tags["sha256"] == first.checksum
    second = retrain()
    assert second.version == first.version + 1
    assert second.checksum == first.checksum  # same snapshot, same seed: the same model bytes
    loaded = mlflow.xgboost.load_model(f"models:/EURUSD_test_model/{first.version}")
    test = dataset.part("test")
    reference = fit(dataset, params).predict(test[dataset.features])
    assert np.array_equal(loaded.predict(test[dataset.features]), reference)


def test_shuffled_future_labels_do_not_change_validation(dataset):
    """Leakage check: labels after the validation period (the test split) must not reach the
    fit. Shuffling them leaves the validation curve identical; a split that leaked would not."""
    honest = fit(dataset, {"n_estimators": 60}).evals_result()["validation_0"]["rmse"]
    frame = dataset.frame.copy()
    future = frame["split"] == "test"
    frame.loc[future, "label"] = np.random.default_rng(0).permutation(
        frame.loc[future, "label"].to_numpy()
    )
    shuffled = fit(replace(dataset, frame=frame), {"n_estimators": 60})
    assert shuffled.evals_result()["validation_0"]["rmse"] == honest
