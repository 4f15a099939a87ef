"""The MLflow tracking server: PostgreSQL backend store, proxied artifacts (local dir or S3).

One uvicorn worker and no job runner: the defaults start seven job consumers (~3 GB) that a
2-core laptop cannot spare, and with one worker alias look-ups take ~6 ms instead of ~50 ms.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import URL

from trendcast import mlflow_auth
from trendcast.config import Settings
from trendcast.db import database_url, ensure_database
from trendcast.stack import processes

NAME = "mlflow"


def command(settings: Settings) -> list[str]:
    """The server's command line. It never holds the backend URL: that carries the database
    password, and command lines are public (``ps``, ``/proc/*/cmdline``, our process records);
    :func:`environment` hands it to this child alone."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        str(settings.mlflow_workers),
        *(["--app-name", "trendcast-auth"] if settings.mlflow_auth else []),
    ]


def environment(settings: Settings) -> dict[str, str]:
    # `mlflow server` execs uvicorn by name: the venv's bin must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    return {
        **settings.as_env(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # `mlflow server --backend-store-uri` reads this variable; the child's environment is
        # readable only by its user, unlike its command line.
        "MLFLOW_BACKEND_STORE_URI": database_url("mlflow", settings).render_as_string(
            hide_password=False
        ),
        **(mlflow_auth.server_environment(settings) if settings.mlflow_auth else {}),
    }


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.mlflow_port}"


def _credentials(settings: Settings) -> tuple[str, str] | None:
    """Who asks the server its version: the configured MLflow user, else (local stack with
    auth) the read-only identity; /version needs a login when auth is on."""
    if not settings.mlflow_auth:
        return None
    variables = mlflow_auth.client_environment(settings)
    if not variables:
        try:
            variables = mlflow_auth.identity_environment(settings, mlflow_auth.READER)
        except OSError:  # the passwords are not written yet: the server has not started
            return None
    if not variables:
        return None
    return variables["MLFLOW_TRACKING_USERNAME"], variables["MLFLOW_TRACKING_PASSWORD"]


def probe(settings: Settings, timeout_s: float = 2.0) -> str | None:
    """The server's version when it answers /health, else None."""
    try:
        with httpx.Client(timeout=timeout_s, auth=_credentials(settings)) as client:
            if client.get(f"{url(settings)}/health").status_code != 200:
                return None
            version = client.get(f"{url(settings)}/version")
            return version.text.strip() if version.status_code == 200 else "unknown"
    except httpx.HTTPError:
        return None


def prepare(settings: Settings) -> None:
    """Create the backend database and the local artifact folder if missing."""
    ensure_database(database_url("mlflow", settings))
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(parents=True, exist_ok=True)


def start(settings: Settings) -> processes.ProcessRecord:
    prepare(settings)
    return processes.spawn(settings.run_dir, NAME, command(settings), environment(settings))


@contextmanager
def throwaway(
    server_url: URL, home: Path, timeout_s: float = 120.0, auth: bool = False
) -> Iterator[tuple[str, processes.ProcessRecord]]:
    """A private MLflow tracking server on a free port, its backend store a new database on
    ``server_url``'s PostgreSQL and its artifacts under ``home``; stopped and dropped after.
    For tests and benchmarks; yields the URL and the process record. ``auth``: with the
    trendcast-auth app and the standard users (passwords under ``home/mlflow-auth``)."""
    import socket
    import time
    import uuid

    from trendcast.db import create_database, drop_database
    from trendcast.errors import TrendcastError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = create_database(server_url, f"mlflow_scratch_{uuid.uuid4().hex[:10]}")
    settings = Settings(
        home=home,
        mlflow_port=port,
        database_url=server_url.render_as_string(hide_password=False),
        mlflow_database_url=store.render_as_string(hide_password=False),
        mlflow_auth=auth,
    )
    record = processes.spawn(settings.run_dir, NAME, command(settings), environment(settings))
    try:
        deadline = time.monotonic() + timeout_s
        while probe(settings) is None:
            if not processes.is_alive(record) or time.monotonic() > deadline:
                raise TrendcastError(
                    f"throwaway MLflow did not start; {record.log}:\n"
                    + Path(record.log).read_text(errors="replace")[-2000:]
                )
            time.sleep(0.5)
        yield url(settings), record
    finally:
        processes.stop(settings.run_dir, NAME)
        drop_database(server_url, store.database)
