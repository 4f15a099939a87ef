"""Walk-forward evaluation: folds that never let a label reach their test block, and a real
walk-forward run against MLflow whose stitched out-of-sample figures the gates read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from mlflow import MlflowClient

from training.evaluate import walk_forward_folds
from trendcast import feature_pipeline
from trendcast.errors import InputError
from trendcast.history import load_frame
from trendcast.registry import Gates
from trendcast.sample_data import SAMPLES


def _frame(n: int = 2_000, horizon: int = 4) -> pd.DataFrame:
    # hourly rows with weekend holes, like FX: the label ends `horizon` rows later
    times = pd.date_range("2020-01-06", periods=n * 2, freq="h", tz="UTC")
    times = times[times.dayofweek < 5][:n]
    as_of = pd.Series(times)
    return pd.DataFrame({"as_of": as_of, "label_end": as_of.shift(-horizon)}).dropna()


@pytest.mark.parametrize("window", ["expanding", "rolling"])
@pytest.mark.parametrize("embargo", [0, 4, 30])
def test_folds_purge_embargo_and_never_overlap(window, embargo):
    frame = _frame()
    folds = walk_forward_folds(frame, 5, window=window, embargo=embargo)
    as_of = frame["as_of"].to_numpy()
    label_end = frame["label_end"].to_numpy()
    blocks = np.concatenate([f.test for f in folds])
    assert (np.diff(blocks) == 1).all() and blocks[-1] == len(frame) - 1  # consecutive, to the end
    for fold in folds:
        first = fold.test[0]
        fitted = np.concatenate([fold.train, fold.validation])
        assert label_end[fitted].max() < as_of[first]  # purge: no label reaches the block
        assert fitted.max() < first - embargo  # embargo: a gap of rows before it
        assert label_end[fold.train].max() < as_of[fold.validation[0]]  # purged inside too
        if window == "expanding":
            assert fold.train[0] == 0
    if window == "rolling":
        sizes = [len(f.train) + len(f.validation) for f in folds]  # a fixed window, less purges
        assert max(sizes) <= int(len(frame) * 0.4)  # the first fold loses its embargo too
        assert max(sizes[1:]) - min(sizes[1:]) <= 4


def test_fold_errors_name_the_option():
    with pytest.raises(InputError, match="--folds 0: must be >= 1"):
        walk_forward_folds(_frame(), 0)
    with pytest.raises(InputError, match=r"--folds 200: .* need at least 20 rows a fold"):
        walk_forward_folds(_frame(), 200)
    with pytest.raises(InputError, match="--window 'sliding'"):
        walk_forward_folds(_frame(), 3, window="sliding")


@pytest.mark.slow
def test_walk_forward_run_logs_folds_and_gates_read_the_stitched_figures(engine, env, mlflow_url):
    frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    load_frame(engine, frame, symbol="EURUSD", interval="1h", source="test", origin=origin)
    feature_pipeline.build(engine)
    name = f"EURUSD_wf_{os.getpid()}"
    cli_env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    result = run_cli(
        "train", "--symbol", "EURUSD", "--walk-forward", "--folds", "3", "--model-name", name,
        "-p", "n_estimators=40", env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "stitched out-of-sample" in result.stdout
    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    (version,) = client.search_model_versions(f"name = '{name}'")
    run = client.get_run(version.run_id)
    history = client.get_metric_history(run.info.run_id, "fold_test_ic")
    assert sorted(m.step for m in history) == [1, 2, 3]
    path = client.download_artifacts(run.info.run_id, "walk_forward/folds.json")
    folds = json.loads(Path(path).read_text())
    table = pd.DataFrame(folds["data"], columns=folds["columns"])
    assert (table["selection_end"] < table["test_start"]).all()
    assert (table["test_start"].iloc[1:].to_numpy() > table["test_end"].iloc[:-1].to_numpy()).all()
    m = run.data.metrics
    # the stitched backtest covers every block as one series
    assert m["backtest_bars"] >= table["test_rows"].sum()
    assert {"test_ic", "backtest_sharpe", "backtest_dsr", "n_trials"} <= set(m)
    assert m["selection_end_ts"] < m["test_start_ts"]
    results = Gates().evaluate(m)
    assert results["test window after selection"]["passed"] is True
    assert results["backtest sharpe >= 1.0"]["value"] == m["backtest_sharpe"]
    assert run.data.params["walk_forward_folds"] == "3"
