"""Training on a Dask cluster (``trendcast train --distributed``): the point-in-time training set
exported as Parquet partitioned by symbol, read by the workers, and the regressor fitted with
``xgboost.dask``; the fitted booster becomes a plain ``XGBRegressor``, so the run logs,
registers (sha256), verifies and serves exactly like a locally trained one.

Equal to a local model within tolerance, not to the bit: ``hist`` builds its quantile sketch
per worker partition and merges them, so split candidates can differ in the last bins. On the
same cluster shape and the same partitions the result is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xgboost as xgb

from training.dataset import Dataset
from training.train import DEFAULT_PARAMS

#: Columns the workers read: the features, the label and the split.
_KEEP = ("label", "split")


def export_training_set(dataset: Dataset, directory: Path) -> Path:
    """The dataset's rows as ``directory/<fingerprint>/symbol=S/part-0.parquet``: immutable
    (a fingerprint's export is written once), one folder per symbol, row order kept."""
    target = Path(directory) / dataset.snapshot.fingerprint[:16]
    done = target / "_SUCCESS"
    if done.exists():
        return target
    columns = ["symbol", *dataset.features, *_KEEP]
    frame = dataset.frame[columns]
    for symbol, rows in frame.groupby("symbol", sort=True):
        folder = target / f"symbol={symbol}"
        folder.mkdir(parents=True, exist_ok=True)
        rows.drop(columns="symbol").to_parquet(folder / "part-0.parquet", index=False)
    done.write_text(dataset.snapshot.fingerprint)
    return target


def fit_on_cluster(client, export: Path, dataset: Dataset, params: dict) -> xgb.XGBRegressor:
    """Fit the regressor with ``xgboost.dask`` on the exported rows (train split, early stopping
    on validation), returned as a plain ``XGBRegressor`` with its evaluation history."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    features = dataset.features
    settings = {**DEFAULT_PARAMS, **params}
    with client.as_current():
        frame = dd.read_parquet(str(export), columns=[*features, *_KEEP])
        train = frame[frame["split"] == "train"]
        validation = frame[frame["split"] == "validation"]
        model = dxgb.DaskXGBRegressor(**settings)
        model.client = client
        model.fit(
            train[features],
            train["label"],
            eval_set=[(validation[features], validation["label"])],
            verbose=False,
        )
    local = xgb.XGBRegressor(**settings)
    local.load_model(bytearray(model.get_booster().save_raw("ubj")))
    local.evals_result_ = model.evals_result()
    return local


def same_rows(dataset: Dataset, export: Path) -> bool:
    """The export holds exactly the dataset's rows (what the workers train on)."""
    back = pd.read_parquet(export)
    return len(back) == len(dataset.frame)
