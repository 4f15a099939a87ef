"""Point MLflow's fluent API at one server for both tracking and the model registry.

MLflow keeps the registry URI separately (and exports both as environment variables to child
processes); setting only the tracking URI leaves ``models:/`` look-ups on whatever registry an
earlier call or the environment named, or on a local ``mlflow.db``."""

from __future__ import annotations


def use_mlflow(uri: str) -> None:
    import os

    import mlflow

    # Artifact downloads draw a progress bar per file; in CLI output and service logs it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
