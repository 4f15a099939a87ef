"""Walk-forward evaluation: the model re-fitted fold by fold, each fold scoring only the block
after its training data, the out-of-sample blocks stitched and backtested as one series.

The way Qlib's rolling tasks evaluate. Folds split the rows after an initial training span into
``folds`` consecutive test blocks. Fold k trains on the rows before its block (``expanding``:
from the first row; ``rolling``: the last ``train_rows`` of them), minus a purge (every row whose
label ends at or after the block's first bar) and an embargo (``embargo`` more rows, the label
horizon by default); its last ``validation_fraction`` is the validation split (early stopping,
the strategy threshold), purged the same way. Each fold predicts its block with its own model
and threshold. The stitched predictions are backtested as one series; per-fold and stitched
metrics go to one MLflow run, and the registered version (the last fold's model) carries the
stitched figures, which the gates read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from training.dataset import Dataset
from training.train import (
    DEFAULT_PARAMS,
    Selection,
    _backtest,
    _prediction_scores,
    fit,
    log_inputs,
    log_selection,
    model_checksum,
    register_model,
)
from trendcast.artifacts import CHECKSUM_TAG
from trendcast.errors import InputError
from trendcast.recorder import log_backtest

Window = Literal["expanding", "rolling"]


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row positions in the dataset frame
    validation: np.ndarray
    test: np.ndarray


def walk_forward_folds(
    frame: pd.DataFrame,
    folds: int,
    *,
    window: Window = "expanding",
    embargo: int = 0,
    initial_fraction: float = 0.4,
    validation_fraction: float = 0.15,
    train_rows: int | None = None,
) -> list[Fold]:
    """Fold row positions over ``frame`` (sorted by ``as_of``, with ``label_end``). Guaranteed:
    every train and validation row's label ends before its fold's first test bar; test blocks
    are consecutive, disjoint and in time order."""
    if folds < 1:
        raise InputError(f"--folds {folds}: must be >= 1")
    if window not in ("expanding", "rolling"):
        raise InputError(f"--window {window!r}: must be expanding or rolling")
    if embargo < 0:
        raise InputError(f"--embargo {embargo}: must be >= 0")
    n = len(frame)
    first_test = int(n * initial_fraction)
    block = (n - first_test) // folds
    if block < 20:
        raise InputError(
            f"--folds {folds}: {n - first_test} out-of-sample rows make blocks of {block}; "
            "need at least 20 rows a fold (fewer folds or a longer window)"
        )
    as_of = pd.to_datetime(frame["as_of"], utc=True).to_numpy()
    label_end = pd.to_datetime(frame["label_end"], utc=True).to_numpy()
    out = []
    for k in range(folds):
        start = first_test + k * block
        stop = n if k == folds - 1 else start + block
        # purge: no label may reach the block; embargo: a further gap of rows before it
        fit_rows = np.flatnonzero(label_end[: max(0, start - embargo)] < as_of[start])
        if window == "rolling":
            fit_rows = fit_rows[-(train_rows or first_test) :]
        n_val = int(len(fit_rows) * validation_fraction)
        validation = fit_rows[len(fit_rows) - n_val :]
        train = fit_rows[: len(fit_rows) - n_val]
        if n_val:
            train = train[label_end[train] < as_of[validation[0]]]
        if len(train) < 50 or n_val < 10:
            raise InputError(
                f"fold {k + 1}: {len(train)} training and {n_val} validation rows after the "
                "purge and embargo; need at least 50 and 10 (a longer window or fewer folds)"
            )
        out.append(Fold(k + 1, train, validation, np.arange(start, stop)))
    return out


class FoldModels:
    """The folds' models as one row-wise model: each row scored by the model of the fold whose
    test block holds it, with that fold's threshold. Rows outside every block score NaN."""

    def __init__(self, features: list[str], bounds: list[tuple], models: list, thresholds: list):
        self.features = list(features)
        self.feature_names_in_ = np.array([*features, "as_of"])
        self.bounds = bounds  # (first as_of, last as_of) of each fold's block
        self.models = models
        self.thresholds = thresholds

    def _fold_of(self, inputs: pd.DataFrame) -> np.ndarray:
        as_of = pd.to_datetime(inputs["as_of"], utc=True)
        fold = np.full(len(inputs), -1)
        for k, (first, last) in enumerate(self.bounds):
            fold[((as_of >= first) & (as_of <= last)).to_numpy()] = k
        return fold

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        fold = self._fold_of(inputs)
        out = np.full(len(inputs), np.nan)
        for k, model in enumerate(self.models):
            rows = fold == k
            if rows.any():
                out[rows] = model.predict(inputs.loc[rows, self.features])
        return out

    def row_thresholds(self, inputs: pd.DataFrame) -> np.ndarray:
        fold = self._fold_of(inputs)
        table = np.append(np.asarray(self.thresholds, dtype="float64"), np.nan)
        return table[fold]  # fold -1 picks the trailing NaN


@dataclass
class WalkForwardResult:
    run_id: str
    model_name: str
    version: int | None
    folds: pd.DataFrame  # one row per fold: its windows and metrics
    metrics: dict


def walk_forward(
    engine: Engine,
    dataset: Dataset,
    *,
    symbol: str,
    interval: str,
    folds: int = 4,
    window: Window = "expanding",
    embargo: int | None = None,
    model_name: str | None = None,
    params: dict | None = None,
    register: bool = True,
) -> WalkForwardResult:
    """Evaluate walk-forward and log it to one run (see the module docstring)."""
    from trendcast.strategy import ModelThreshold, median_threshold

    params = {**DEFAULT_PARAMS, **(params or {})}
    model_name = model_name or f"{symbol}_{interval}_h{dataset.horizon}"
    embargo = dataset.horizon if embargo is None else embargo
    frame = dataset.frame.sort_values("as_of").reset_index(drop=True)
    plan = walk_forward_folds(frame, folds, window=window, embargo=embargo)
    features = dataset.features
    rows, models, thresholds, bounds, margins = [], [], [], [], []
    with mlflow.start_run(run_name=f"{symbol}_{interval}_walk_forward") as run:
        for fold in plan:
            part = frame.iloc[np.concatenate([fold.train, fold.validation, fold.test])].copy()
            part["split"] = (
                ["train"] * len(fold.train)
                + ["validation"] * len(fold.validation)
                + ["test"] * len(fold.test)
            )
            fold_set = replace(dataset, frame=part.reset_index(drop=True))
            model = fit(fold_set, params)
            validation, test = fold_set.part("validation"), fold_set.part("test")
            threshold = median_threshold(model.predict(validation[features]))
            predicted = model.predict(test[features])
            scores = _prediction_scores(test["label"].to_numpy(), predicted, "test")
            report = _backtest(
                engine,
                symbol,
                interval,
                test,
                ModelThreshold(model=model, features=features, threshold=threshold),
            )
            end, start = fold_set.selection_end, fold_set.test_start
            margins.append((start - end, end, start))
            rows.append(
                {
                    "fold": fold.index,
                    "train_start": str(part["as_of"].iloc[0]),
                    "selection_end": str(end),
                    "test_start": str(start),
                    "test_end": str(test["as_of"].max()),
                    "train_rows": len(fold.train),
                    "validation_rows": len(fold.validation),
                    "test_rows": len(fold.test),
                    "threshold": threshold,
                    **scores,
                    "backtest_sharpe": report.sharpe,
                    "backtest_cumulative_return": report.cumulative_return,
                    "backtest_max_drawdown": report.max_drawdown,
                }
            )
            for key, value in rows[-1].items():
                if isinstance(value, float) and np.isfinite(value):
                    mlflow.log_metric(f"fold_{key}", value, step=fold.index)
            models.append(model)
            thresholds.append(threshold)
            bounds.append((test["as_of"].min(), test["as_of"].max()))
        # The stitched out-of-sample series: every block, each scored by its own fold.
        oos = frame.iloc[np.concatenate([f.test for f in plan])]
        stitched = FoldModels(features, bounds, models, thresholds)
        predicted = stitched.predict(oos)
        scores = _prediction_scores(oos["label"].to_numpy(), predicted, "test")
        report = _backtest(
            engine, symbol, interval, oos, ModelThreshold(model=stitched, threshold=0.0)
        )
        last = replace(dataset, frame=fold_set.frame)
        log_inputs(last, params, symbol, interval)
        mlflow.log_params(
            {"walk_forward_folds": folds, "walk_forward_window": window, "embargo": embargo}
        )
        table = pd.DataFrame(rows)
        mlflow.log_table(table, "walk_forward/folds.json")
        mlflow.log_metrics({k: v for k, v in scores.items() if np.isfinite(v)})
        log_backtest(report, "backtest")
        # Every fold is sealed on its own; the run carries its tightest fold's instants, so
        # the gate "test window after selection" holds only if it holds for every fold.
        _, end, start = min(margins, key=lambda m: m[0])
        log_selection(report, {"selection_end": end, "test_start": start}, Selection(n_trials=1))
        checksum = model_checksum(models[-1])
        mlflow.set_tag(CHECKSUM_TAG, checksum)
        mlflow.set_tag("evaluation", "walk-forward")
        version = None
        if register:
            example = oos[features].tail(len(plan[-1].test))
            version = register_model(
                models[-1], model_name, example, models[-1].predict(example), checksum
            )
    return WalkForwardResult(run.info.run_id, model_name, version, table, scores)


def walk_forward_series(
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
    folds: int = 4,
    window: Window = "expanding",
    embargo: int | None = None,
) -> WalkForwardResult:
    """Build one series' point-in-time dataset and evaluate it walk-forward in experiment
    ``training`` of the settings' tracking server (what `trendcast train --walk-forward` does)."""
    from training.dataset import build_dataset
    from trendcast.tracking import use_mlflow

    dataset = build_dataset(
        engine, symbol, interval, settings.home / "datasets", horizon=horizon, start=start, end=end
    )
    use_mlflow(settings.tracking_uri)
    mlflow.set_experiment("training")
    return walk_forward(
        engine,
        dataset,
        symbol=symbol,
        interval=interval,
        folds=folds,
        window=window,
        embargo=embargo,
        model_name=model_name or settings.model_name,
        params=params,
    )
