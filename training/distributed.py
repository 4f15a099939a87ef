"""Training on a Dask cluster (``trendcast train --distributed``): the point-in-time training set
exported as Parquet partitioned by symbol, read by the workers, and both models (the regressor
and the direction classifier) fitted with ``xgboost.dask`` on the same rows; each fitted
booster becomes a plain ``XGBRegressor`` / ``XGBClassifier``, so the run logs, registers
(sha256), verifies and serves exactly like a locally trained one.

Equal to a local model within tolerance, not to the bit: ``hist`` builds its quantile sketch
per worker partition and merges them, so split candidates can differ in the last bins. On the
same cluster shape and the same partitions the result is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import xgboost as xgb

from training.dataset import Dataset
from training.train import DEFAULT_PARAMS

#: Columns the workers read: the features, the label and the split.
_KEEP = ("label", "split")


def export_location(settings) -> str:
    """Where exports go: ``<artifacts s3://…>/exports`` when artifacts live in S3 (the workers of
    a remote cluster read them there), else ``<home>/exports``."""
    artifacts = settings.artifacts_uri or ""
    if artifacts.startswith("s3://"):
        return f"{artifacts.rstrip('/')}/exports"
    return str(settings.home / "exports")


def filesystem(location: str, endpoint_url: str | None = None):
    """(pyarrow filesystem, path on it) of a folder or an ``s3://bucket/prefix`` location;
    S3 credentials come from the environment's default chain (a task role on AWS)."""
    import pyarrow.fs as pafs

    if location.startswith("s3://"):
        return pafs.S3FileSystem(endpoint_override=endpoint_url), location[5:].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def export_training_set(dataset: Dataset, location: str, endpoint_url: str | None = None) -> str:
    """The dataset's rows as ``<location>/<fingerprint>/symbol=S/part-0.parquet``: immutable
    (a fingerprint's export is written once, ``<fingerprint>.done`` beside it last: readers see
    only Parquet files inside), one folder per symbol, row
    order kept. Returns the export's location (``s3://…`` or a folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, root = filesystem(location, endpoint_url)
    target = f"{root}/{dataset.snapshot.fingerprint[:16]}"
    shown = f"s3://{target}" if location.startswith("s3://") else target
    if fs.get_file_info(f"{target}.done").type != pa.fs.FileType.NotFound:
        return shown
    frame = dataset.frame[["symbol", *dataset.features, *_KEEP]]
    for symbol, rows in frame.groupby("symbol", sort=True):
        folder = f"{target}/symbol={symbol}"
        if not location.startswith("s3://"):  # S3 has no folders (no marker objects either)
            fs.create_dir(folder, recursive=True)
        table = pa.Table.from_pandas(rows.drop(columns="symbol"), preserve_index=False)
        pq.write_table(table, f"{folder}/part-0.parquet", filesystem=fs)
    with fs.open_output_stream(f"{target}.done") as marker:
        marker.write(dataset.snapshot.fingerprint.encode())
    return shown


def fit_on_cluster(
    client,
    export: str,
    dataset: Dataset,
    params: dict,
    endpoint_url: str | None = None,
    direction: bool = False,
) -> xgb.XGBRegressor | xgb.XGBClassifier:
    """Fit the regressor (``direction``: the direction classifier, label > 0, as
    :func:`training.train.fit_direction`) with ``xgboost.dask`` on the exported rows (train
    split, early stopping on validation), returned as a plain XGBoost model with its evaluation
    history."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    features = dataset.features
    settings = {**DEFAULT_PARAMS, **params}
    if direction:
        settings["eval_metric"] = "logloss"
    with client.as_current():
        fs, path = filesystem(export, endpoint_url)
        frame = dd.read_parquet(path, columns=[*features, *_KEEP], filesystem=fs)
        # materialised on the workers here, in this synchronous context: xgboost.dask runs its
        # own work asynchronously and cannot plan a Parquet read there
        train, validation = client.persist(
            [frame[frame["split"] == "train"], frame[frame["split"] == "validation"]]
        )

        def target(part):
            return (part["label"] > 0).astype(int) if direction else part["label"]

        model = (dxgb.DaskXGBClassifier if direction else dxgb.DaskXGBRegressor)(**settings)
        model.client = client
        model.fit(
            train[features],
            target(train),
            eval_set=[(validation[features], target(validation))],
            verbose=False,
        )
    local = (xgb.XGBClassifier if direction else xgb.XGBRegressor)(**settings)
    local.load_model(bytearray(model.get_booster().save_raw("ubj")))
    local.evals_result_ = model.evals_result()
    return local
