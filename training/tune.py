"""Grid search: every hyperparameter candidate trained and backtested on every market period,
in parallel with joblib, as nested MLflow runs under one parent; candidates ranked on a metric
across periods; the best ``register_top`` retrained on the final window and registered.

joblib's default (loky) backend runs the tasks in processes here; given a Dask
:class:`~trendcast.cluster.Placement` (``train --grid --cluster``), each candidate x period is a
Dask task with a stable key, run on the cluster's workers, which log their own nested runs.
The same parameters reach XGBoost either way (threads included), so the metrics are the same
to the bit. A task rerun after its worker died finds its earlier attempt by the key (tag
``grid_task``): a finished run is reused, a run cut short is marked KILLED and deleted, so each
candidate x period is one run. Interrupt-safe: finished child runs stay logged, runs cut short
and the parent are marked KILLED with ``grid_status=interrupted``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT as CONTEXT
from sqlalchemy.engine import Engine

from training.dataset import Dataset, build_dataset
from training.grid import GridSpec, Period
from training.train import Selection, TrainResult, dataset_source, train
from trendcast.cluster import Placement, map_unordered, task_cancelled
from trendcast.errors import InputError
from trendcast.registry import LOWER_IS_BETTER, better_first, resolve_metric, selection_metric
from trendcast.tracking import mlflow_client, use_mlflow


@dataclass
class GridResult:
    parent_run_id: str
    metric: str
    ranking: pd.DataFrame  # one row per candidate: params, per-period scores, aggregate, rank
    registered: list[TrainResult]


def _run_candidate(
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    database_url: str,
    dataset: Dataset,
    spec: GridSpec,
    candidate: int,
    params: dict,
    period: str,
    owner_pid: int,
    task_key: str = "",
) -> tuple[int, str, dict, str]:
    """One nested run (in a worker process): train and backtest ``params`` on one period."""
    import sqlalchemy as sa

    if os.getpid() != owner_pid and threading.current_thread() is threading.main_thread():
        # Ctrl-C reaches the whole process group; the parent alone decides what an interrupt
        # means (it stops the pool and marks the runs). A worker hit mid-XGBoost would
        # otherwise print its own KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    from trendcast.db import normalize_url

    use_mlflow(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    client = mlflow_client(tracking_uri)
    replaced = _earlier_attempts(client, experiment_id, parent_run_id, task_key)
    if isinstance(replaced, tuple):  # an earlier attempt finished: reuse it
        return candidate, period, *replaced
    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        result = train(
            engine,
            dataset,
            symbol=spec.symbol,
            interval=spec.interval,
            params=params,
            run_name=f"{spec.symbol}_{candidate}_{period}",
            register=False,
            parent_run_id=parent_run_id,
            tags={
                "grid_candidate": str(candidate),
                "grid_period": period,
                "grid_task": task_key,
                **({"grid_replaces": ",".join(replaced)} if replaced else {}),
            },
        )
    except BaseException:
        if task_cancelled():  # the grid stopped (Ctrl-C): cut short, like a killed run
            _mark_cut_short(client, experiment_id, parent_run_id, task_key)
        raise
    finally:
        engine.dispose()
    backtest = client.get_run(result.run_id).data.metrics
    return candidate, period, {**backtest, **result.metrics}, result.run_id


def _mark_cut_short(client: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> None:
    """This task's unfinished run KILLED (its context ended it FAILED), as an in-process
    candidate stopped by Ctrl-C is."""
    if not key:
        return
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' AND tags.grid_task = '{key}'",
    )
    for run in runs:
        if run.info.status != "FINISHED":
            client.set_terminated(run.info.run_id, status="KILLED")


def task_key(parent_run_id: str, candidate: int, period: str) -> str:
    """The stable identity of one candidate x period: the Dask key and the run's tag."""
    return f"grid-{parent_run_id}-c{candidate}-{period}"


def _earlier_attempts(
    client: MlflowClient, experiment_id: str, parent_run_id: str, key: str
) -> tuple[dict, str] | list[str]:
    """(metrics, run id) of a finished earlier attempt of task ``key``; else the ids of the
    attempts cut short (a killed worker's), now KILLED and deleted."""
    if not key:
        return []
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' AND tags.grid_task = '{key}'",
    )
    for run in earlier:
        if run.info.status == "FINISHED":
            return run.data.metrics, run.info.run_id
    for run in earlier:
        client.set_terminated(run.info.run_id, status="KILLED")
        client.delete_run(run.info.run_id)
    return [run.info.run_id for run in earlier]


def spec_digest(spec: GridSpec) -> str:
    """What decides a grid's ranking (not how many it registers): equal digests, equal rankings."""
    fields = spec.model_dump(mode="json", exclude={"register_top"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def rank_candidates(
    candidates: list[dict],
    scores: dict[tuple[int, str], float],
    periods: list[str],
    spec_metric: str,
    aggregate: str,
) -> pd.DataFrame:
    """Candidates with their per-period scores, the aggregate across periods, and the rank."""
    rows = []
    for index, params in enumerate(candidates):
        per_period = {p: scores.get((index, p), np.nan) for p in periods}
        values = np.array(list(per_period.values()), dtype=float)
        complete = bool(np.isfinite(values).all())
        if not complete:
            combined = np.nan
        elif aggregate == "min":
            # "worst period" means the highest value for a metric where lower is better
            lower = spec_metric.replace("validation_", "test_", 1) in LOWER_IS_BETTER or (
                spec_metric.replace("validation_", "", 1) in LOWER_IS_BETTER
            )
            combined = values.max() if lower else values.min()
        else:
            combined = values.mean()
        rows.append({"candidate": index, **params, **per_period, aggregate: combined})
    frame = pd.DataFrame(rows)
    order = better_first(spec_metric, frame[aggregate].tolist())
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "rank", np.where(frame[aggregate].notna(), np.arange(1, len(frame) + 1), 0))
    return frame


def _mark_interrupted(client: MlflowClient, experiment_id: str, parent_run_id: str) -> None:
    """Runs still RUNNING under the parent were cut short: KILLED, like the parent."""
    cut = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent_run_id}' AND attributes.status = 'RUNNING'"
        ),
    )
    for run in cut:
        client.set_terminated(run.info.run_id, status="KILLED")
    client.set_tag(parent_run_id, "grid_status", "interrupted")
    client.set_terminated(parent_run_id, status="KILLED")


def run_grid(
    engine: Engine,
    spec: GridSpec,
    *,
    tracking_uri: str,
    database_url: str,
    datasets_dir: Path,
    on_progress: Callable[[int, int, str], None] | None = None,
    where: Placement | None = None,
) -> GridResult:
    """Run the grid; ``on_progress(done, total, label)`` is called after each finished run;
    ``where``: a Dask placement runs the candidates there (default: joblib in-process)."""
    where = where or Placement()
    from joblib import Parallel, delayed

    # Ranked on the validation counterpart of the grid's metric: the test splits are for gates.
    metric = selection_metric(resolve_metric(spec.metric))
    candidates = spec.candidates()
    # Datasets first (cheap, and a period too short to train on fails before any run starts),
    # the final window's too: no period may reach into the registered model's test window.
    datasets = {p.name: _dataset(engine, spec, p, datasets_dir) for p in spec.periods}
    final = _dataset(engine, spec, spec.final_period(), datasets_dir)
    seen_until = check_sealed(datasets, final, spec)
    use_mlflow(tracking_uri)
    experiment_id = mlflow.set_experiment("training").experiment_id
    client = mlflow_client(tracking_uri)
    parent = client.create_run(
        experiment_id,
        run_name=f"{spec.name}_grid",
        tags={
            "grid_status": "running",
            "grid_metric": metric,
            "grid_spec": spec_digest(spec),
            "grid_placement": "dask" if where.distributed else "in-process",
            "grid_ran_on": where.describe(),
        },
    )
    parent_id = parent.info.run_id
    client.log_dict(parent_id, spec.model_dump(mode="json"), "grid/spec.json")
    client.log_param(parent_id, "candidates", len(candidates))
    client.log_param(parent_id, "periods", ",".join(datasets))
    # The periods' datasets are registered once here, before the candidates run: parallel
    # candidates logging a dataset the experiment has never seen race on MLflow's insert of it
    # (a unique-key violation that failed the run); once it exists they only link to it.
    client.log_inputs(
        parent_id,
        datasets=[
            DatasetInput(dataset_source(d)._to_mlflow_entity(), [InputTag(CONTEXT, "grid")])
            for d in datasets.values()
        ],
    )
    tasks = [(i, params, period) for i, params in enumerate(candidates) for period in datasets]
    workers = min(spec.n_jobs, len(tasks))
    thread_cap = {"n_jobs": max(1, (os.cpu_count() or 1) // workers)}
    scores: dict[tuple[int, str], float] = {}
    total = len(tasks) + spec.register_top
    results = None
    try:
        if where.distributed:
            # the rows travel inside each task, not scattered once: scattered data dies with
            # the worker holding it, and a task whose input is lost cannot be rerun
            results = map_unordered(
                where,
                _run_candidate,
                [
                    (
                        task_key(parent_id, i, period),
                        (
                            tracking_uri, experiment_id, parent_id, database_url,
                            datasets[period], spec, i, {**params, **thread_cap}, period,
                            os.getpid(), task_key(parent_id, i, period),
                        ),
                    )
                    for i, params, period in tasks
                ],
            )  # fmt: skip
        else:
            results = Parallel(n_jobs=workers, return_as="generator_unordered")(
                delayed(_run_candidate)(
                    tracking_uri,
                    experiment_id,
                    parent_id,
                    database_url,
                    datasets[period],
                    spec,
                    i,
                    {**params, **thread_cap},
                    period,
                    os.getpid(),
                    task_key(parent_id, i, period),
                )
                for i, params, period in tasks
            )
        sharpes = []
        for done, (i, period, logged, _run_id) in enumerate(results, 1):
            scores[(i, period)] = logged.get(metric, np.nan)
            sharpes.append(_per_period_sharpe(logged))
            if on_progress:
                on_progress(done, total, f"candidate {i} on {period}")
        ranking = rank_candidates(candidates, scores, list(datasets), metric, spec.aggregate)
        _log_ranking(client, parent_id, ranking, metric, spec)
        finite = [v for v in sharpes if np.isfinite(v)]
        selection = Selection(
            n_trials=len(tasks),
            seen_until=seen_until,
            trial_sharpe_variance=float(np.var(finite, ddof=1)) if len(finite) > 1 else None,
        )
        client.log_metric(parent_id, "n_trials", len(tasks))
        registered = _register_top(
            engine, spec, ranking, candidates, parent_id, final, selection, on_progress, len(tasks)
        )
    except KeyboardInterrupt:
        if where.distributed and results is not None:
            results.close()  # cancels the tasks, and waits until none runs on the cluster
        _mark_interrupted(client, experiment_id, parent_id)
        raise
    except Exception:
        client.set_tag(parent_id, "grid_status", "failed")
        client.set_terminated(parent_id, status="FAILED")
        raise
    client.set_tag(parent_id, "grid_status", "finished")
    client.set_terminated(parent_id, status="FINISHED")
    return GridResult(parent_id, metric, ranking, registered)


def _per_period_sharpe(logged: dict) -> float:
    """A trial's validation Sharpe per bar (the annualised figure over sqrt(bars per year))."""
    sharpe = logged.get("validation_backtest_sharpe", np.nan)
    ppy = logged.get("validation_backtest_periods_per_year", np.nan)
    return float(sharpe / np.sqrt(ppy)) if ppy and np.isfinite(ppy) else np.nan


def check_sealed(datasets: dict[str, Dataset], final: Dataset, spec: GridSpec) -> pd.Timestamp:
    """Refuse a grid whose periods reach into the registered model's test window: ranking on
    them would select with knowledge of the window the gates read. Returns the last instant
    any period reveals (its labels included)."""
    test_start = final.test_start
    seen = {}
    for name, dataset in datasets.items():
        seen[name] = dataset.seen_until("train", "validation", "test")
        if seen[name] >= test_start:
            raise InputError(
                f"periods.{name}: its data (labels included) runs to {seen[name]}, into the "
                f"test window of the registered model ({spec.final_period().name} is tested "
                f"from {test_start}); selection must never see that window: end the period "
                "earlier or move `final`"
            )
    return max(seen.values())


def _dataset(engine: Engine, spec: GridSpec, period: Period, directory: Path) -> Dataset:
    start, end = period.bounds()
    return build_dataset(
        engine, spec.symbol, spec.interval, directory, horizon=spec.horizon, start=start, end=end
    )


def _log_ranking(
    client: MlflowClient, parent_id: str, ranking: pd.DataFrame, metric: str, spec: GridSpec
) -> None:
    client.log_table(parent_id, ranking, "grid/ranking.json")
    best = ranking.iloc[0]
    if best["rank"]:
        client.log_metric(parent_id, f"best_{metric}", float(best[spec.aggregate]))
        client.set_tag(
            parent_id,
            "grid_best_params",
            json.dumps({k: _plain(best[k]) for k in spec.params}),
        )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _register_top(
    engine: Engine,
    spec: GridSpec,
    ranking: pd.DataFrame,
    candidates: list[dict],
    parent_id: str,
    final: Dataset,
    selection: Selection,
    on_progress: Callable[[int, int, str], None] | None,
    done: int,
) -> list[TrainResult]:
    """Retrain the best candidates on the final window and register them as versions, each
    carrying the grid's trials and sealing instant."""
    total = done + spec.register_top
    ranked = ranking[ranking["rank"] > 0].head(spec.register_top)
    if ranked.empty:
        return []
    registered = []
    for place, candidate in enumerate(ranked["candidate"], 1):
        registered.append(
            train(
                engine,
                final,
                symbol=spec.symbol,
                interval=spec.interval,
                model_name=spec.name,
                params=candidates[int(candidate)],
                run_name=f"{spec.symbol}_{spec.interval}_final_{place}",
                parent_run_id=parent_id,
                tags={"grid_candidate": str(int(candidate)), "grid_rank": str(place)},
                selection=selection,
            )
        )
        if on_progress:
            on_progress(done + place, total, f"register rank {place}")
    return registered


def logged_ranking(client: MlflowClient, parent_run_id: str) -> pd.DataFrame:
    """The ranking a grid logged (``grid/ranking.json``), as a frame."""
    table = json.loads(
        Path(client.download_artifacts(parent_run_id, "grid/ranking.json")).read_text()
    )
    return pd.DataFrame(table["data"], columns=table["columns"])


def compare_with_in_process(
    tracking_uri: str, spec: GridSpec, parent_run_id: str
) -> tuple[str, bool]:
    """Compare this grid's logged ranking with the latest finished in-process run of the same
    grid (same :func:`spec_digest`): every candidate, score and rank, exactly."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name("training")
    earlier = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.grid_spec = '{spec_digest(spec)}' AND tags.grid_placement = 'in-process' "
            "AND tags.grid_status = 'finished'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not earlier:
        return "no finished in-process run of this grid to compare with", False
    reference = earlier[0].info.run_id
    ours, theirs = logged_ranking(client, parent_run_id), logged_ranking(client, reference)
    if ours.equals(theirs):
        return (
            f"ranking equals the in-process run {reference}: {len(ours)} candidates, every "
            "score identical to the bit",
            True,
        )
    differing = [c for c in ours.columns if c not in theirs or not ours[c].equals(theirs[c])]
    return f"ranking DIFFERS from the in-process run {reference} in {differing}", False
