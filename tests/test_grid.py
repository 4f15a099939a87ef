"""`trendcast train --grid`: the grid file's validation, a real grid against a real MLflow server
(nested runs, ranking, registration of the best), and Ctrl-C in the middle of a grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from mlflow import MlflowClient

from training.grid import load_grid
from training.tune import rank_candidates
from trendcast import feature_pipeline
from trendcast.errors import InputError
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES

GRID = {
    "symbol": "EURUSD",
    "interval": "1h",
    "horizon": 4,
    "metric": "ic",
    "periods": [
        {"name": "q1", "start": "2017-06-01", "end": "2017-09-01"},
        {"name": "q2", "start": "2017-09-01", "end": "2017-11-01"},
    ],
    "params": {"max_depth": [2, 3], "n_estimators": [25]},
    "final": {"name": "h2", "start": "2017-06-01", "end": "2017-12-31"},
    "register_top": 1,
    "n_jobs": 2,
}


def write_grid(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, **changes}))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"params": {"max_dpth": [2]}}, "params: max_dpth: not an XGBoost parameter"),
        ({"params": {"n_jobs": [4]}}, "params: n_jobs: set by the run"),
        ({"params": {"max_depth": []}}, "params: max_depth: needs at least one value"),
        ({"interval": "7m"}, "interval: must be one of"),
        ({"periods": []}, "periods: List should have at least 1 item"),
        ({"horizon": 0}, "horizon: Input should be greater than or equal to 1"),
        (
            {"periods": [{"name": "a", "start": "2017-05-01", "end": "2017-04-01"}]},
            "periods.0: start 2017-05-01 00:00:00 must be before end",
        ),
        ({"periods": [{"name": "a"}, {"name": "a"}]}, "names must be unique"),
        ({"aggregate": "median"}, "aggregate: Input should be 'mean' or 'min'"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_grid_file_errors_name_the_field(tmp_path, changes, message):
    with pytest.raises(InputError, match="grid.yaml: .*" + message.replace("(", r"\(")):
        load_grid(write_grid(tmp_path, **changes))


def test_grid_expands_every_combination_and_spans_the_periods(tmp_path):
    spec = load_grid(
        write_grid(tmp_path, params={"max_depth": [2, 3], "learning_rate": [0.1, 0.3]}, final=None)
    )
    assert spec.candidates() == [
        {"learning_rate": 0.1, "max_depth": 2},
        {"learning_rate": 0.1, "max_depth": 3},
        {"learning_rate": 0.3, "max_depth": 2},
        {"learning_rate": 0.3, "max_depth": 3},
    ]
    final = spec.final_period()
    assert (final.start.month, final.end.month) == (6, 11)
    assert spec.name == "EURUSD_1h_h4"


def test_ranking_aggregates_across_periods_and_respects_direction():
    candidates = [{"d": 2}, {"d": 3}, {"d": 4}]
    scores = {(0, "a"): 1.0, (0, "b"): -1.0, (1, "a"): 0.2, (1, "b"): 0.1, (2, "a"): 0.5}
    by_mean = rank_candidates(candidates, scores, ["a", "b"], "backtest_sharpe", "mean")
    assert by_mean["candidate"].tolist() == [1, 0, 2]  # 2 lacks a period: unranked, last
    assert by_mean["rank"].tolist() == [1, 2, 0]
    by_min = rank_candidates(candidates, scores, ["a", "b"], "backtest_sharpe", "min")
    assert by_min["candidate"].tolist()[:2] == [1, 0]
    mse = {(0, "a"): 0.5, (0, "b"): 0.5, (1, "a"): 0.1, (1, "b"): 0.9, (2, "a"): 0.2, (2, "b"): 0.2}
    lowest_first = rank_candidates(candidates, mse, ["a", "b"], "test_mse", "min")
    assert lowest_first["candidate"].tolist() == [2, 0, 1]  # worst period: 0.2, 0.5, 0.9


def test_cli_grid_error_is_one_line(env, tmp_path):
    result = run_cli("train", "--grid", str(write_grid(tmp_path, horizon=-1)), env=env)
    assert result.returncode == 1
    assert "horizon: Input should be greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def eurusd(engine):
    frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    load_frame(engine, frame, symbol="EURUSD", interval="1h", source="test", origin=origin)
    feature_pipeline.build(engine)
    return engine


def _grid_children(client: MlflowClient, parent_id: str) -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def _parents(client: MlflowClient) -> set[str]:
    experiment = client.get_experiment_by_name("training")
    if experiment is None:
        return set()
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.grid_metric != ''")
    return {r.info.run_id for r in runs}


@pytest.mark.slow
def test_grid_runs_nested_ranks_and_registers_the_best(eurusd, env, mlflow_url, tmp_path):
    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    before = _parents(client)
    name = f"EURUSD_grid_{os.getpid()}"
    cli_env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    result = run_cli("train", "--grid", str(write_grid(tmp_path, model_name=name)), env=cli_env)
    assert result.returncode == 0, result.stderr
    (parent_id,) = _parents(client) - before
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["grid_status"] == "finished"
    assert parent.data.tags["grid_metric"] == "validation_ic"  # never the test split
    children = _grid_children(client, parent_id)
    candidates = [c for c in children if "grid_period" in c.data.tags]
    assert sorted((c.data.params["max_depth"], c.data.tags["grid_period"]) for c in candidates) == [
        ("2", "q1"),
        ("2", "q2"),
        ("3", "q1"),
        ("3", "q2"),
    ]
    assert all(
        "validation_ic" in c.data.metrics and c.info.status == "FINISHED" for c in candidates
    )
    table = json.loads(Path(client.download_artifacts(parent_id, "grid/ranking.json")).read_text())
    ranking = pd.DataFrame(table["data"], columns=table["columns"])
    best = ranking.sort_values("rank").iloc[0]
    means = {
        d: sum(
            c.data.metrics["validation_ic"] for c in candidates if c.data.params["max_depth"] == d
        )
        / 2
        for d in ("2", "3")
    }
    assert str(int(best["max_depth"])) == max(means, key=means.get)
    assert parent.data.metrics["best_validation_ic"] == pytest.approx(max(means.values()))
    assert parent.data.metrics["n_trials"] == 4
    (registered,) = [c for c in children if c.data.tags.get("grid_rank") == "1"]
    assert registered.data.params["max_depth"] == str(int(best["max_depth"]))
    (model_version,) = client.search_model_versions(f"name = '{name}'")
    assert model_version.run_id == registered.info.run_id
    # sealed: everything the selection saw ends before the registered model's test window
    sealed = registered.data.metrics
    assert sealed["n_trials"] == 4
    assert sealed["selection_end_ts"] < sealed["test_start_ts"]
    assert registered.data.tags["selection_end"] < registered.data.tags["test_start"]
    assert 0 <= sealed["backtest_dsr"] <= 1
    assert registered.data.params["cost_profile"] == "fx"
    assert 6_150 < sealed["backtest_periods_per_year"] < 6_300  # the FX week, not 24/7
    assert model_version.tags["sha256"] == registered.data.tags["sha256"]
    assert f"rank 1: {name} version 1" in result.stdout


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_marks_the_grid(eurusd, env, mlflow_url, tmp_path):
    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    before = _parents(client)
    grid = write_grid(
        tmp_path,
        model_name=f"EURUSD_interrupted_{os.getpid()}",
        # 40 candidates x the periods: far more runs than a poll starved of CPU can miss
        params={
            "max_depth": [2, 3, 4, 5, 6],
            "min_child_weight": [1, 2, 3, 4, 5, 6, 7, 8],
            "n_estimators": [25],
        },
    )
    tasks = 40 * len(GRID["periods"])
    exe = Path(sys.executable).with_name("trendcast")
    process = subprocess.Popen(
        [str(exe), "train", "--grid", str(grid)],
        env={**os.environ, **env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A terminal's process gets Ctrl-C with the default disposition; one started by a
        # background job (CI under `cmd &`) inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt, so the grid would run to its end.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 180
        finished = []
        while time.monotonic() < deadline and not finished:
            new = _parents(client) - before
            if new:
                (parent_id,) = new
                finished = [
                    c for c in _grid_children(client, parent_id) if c.info.status == "FINISHED"
                ]
            time.sleep(0.3)
        assert finished, "no grid run finished within 180 s"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    parent = client.get_run(parent_id)
    assert parent.info.status == "KILLED" and parent.data.tags["grid_status"] == "interrupted"
    children = _grid_children(client, parent_id)
    assert {c.info.run_id for c in finished} <= {
        c.info.run_id for c in children if c.info.status == "FINISHED"
    }
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert len(children) < tasks  # it really stopped early


@pytest.mark.slow
def test_a_period_without_features_is_refused_before_any_run(eurusd, env, mlflow_url, tmp_path):
    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    before = _parents(client)
    early = write_grid(
        tmp_path, periods=[{"name": "jan", "start": "2017-01-01", "end": "2017-02-01"}]
    )
    result = run_cli(
        "train", "--grid", str(early), env={**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    )
    assert result.returncode == 1
    assert "EURUSD 1h between 2017-01-01T00:00:00" in result.stderr
    assert "too few to train on" in result.stderr
    assert _parents(client) == before  # nothing logged for a grid that cannot run


@pytest.mark.slow
def test_a_period_reaching_the_final_test_window_is_refused(eurusd, env, mlflow_url, tmp_path):
    """Model selection must never see the window the gates read: a grid whose period overlaps
    the final model's test split is refused before anything runs, naming the period."""
    client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
    before = _parents(client)
    leaky = write_grid(
        tmp_path,
        periods=[
            {"name": "q1", "start": "2017-06-01", "end": "2017-09-01"},
            {"name": "late", "start": "2017-09-01", "end": "2017-12-31"},
        ],
    )
    result = run_cli(
        "train", "--grid", str(leaky), env={**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    )
    assert result.returncode == 1
    assert "periods.late: its data (labels included) runs to" in result.stderr
    assert "into the test window of the registered model (h2 is tested from" in result.stderr
    assert "Traceback" not in result.stderr
    assert _parents(client) == before
