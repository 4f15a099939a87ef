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
    # TRENDCAST_MLFLOW_USERNAME / _PASSWORD (auth on): MLflow's client reads its own variables.
    from trendcast.config import get_settings
    from trendcast.mlflow_auth import client_environment

    for key, value in client_environment(get_settings()).items():
        os.environ.setdefault(key, value)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
