"""Point MLflow's fluent API at one server for both tracking and the model registry, and build
the one kind of ``MlflowClient`` every unit uses.

MLflow keeps the registry URI separately (and exports both as environment variables to child
processes); setting only the tracking URI leaves ``models:/`` look-ups on whatever registry an
earlier call or the environment named, or on a local ``mlflow.db``."""

from __future__ import annotations

import os


def use_mlflow(uri: str, *, retries: int | None = None, timeout_s: float | None = None) -> None:
    """Point tracking and registry at ``uri``; optionally bound MLflow's HTTP retries and timeout
    (a long-lived poller must notice an outage within a poll, not after minutes of backoff).

    MLflow reads these knobs only from its own environment variables, at request time, so this
    call (never an import) sets them for this process."""
    import mlflow

    # Artifact downloads draw a progress bar per file; in CLI output and service logs it is noise.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    if retries is not None:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    if timeout_s is not None:
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(timeout_s))
    # TRENDCAST_MLFLOW_USERNAME / _PASSWORD (auth on): MLflow's client reads its own variables.
    from trendcast.config import get_settings
    from trendcast.mlflow_auth import client_environment

    for key, value in client_environment(get_settings()).items():
        os.environ.setdefault(key, value)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def mlflow_client(uri: str | None = None, **knobs):
    """The MLflow client for ``uri`` (default: the settings' tracking URI), tracking and registry
    on the same server, with the fluent API pointed there too."""
    from mlflow import MlflowClient

    if uri is None:
        from trendcast.config import get_settings

        uri = get_settings().tracking_uri
    use_mlflow(uri, **knobs)
    return MlflowClient(uri, registry_uri=uri)
