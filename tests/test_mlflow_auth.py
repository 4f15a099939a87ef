"""MLflow with authentication (``TRENDCAST_MLFLOW_AUTH=1``): a real server running the
trendcast-auth app. Readers and data scientists cannot move an alias (403, nothing moves); the
promotion identity can, through `promote`, and the audit row names it."""

from __future__ import annotations

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trendcast.config import get_settings
from trendcast.mlflow_auth import PROMOTER, READER, SCIENTIST
from trendcast.registry import alias_version, history, promote
from trendcast.stack import mlflow_server

pytestmark = pytest.mark.slow

NAME = "EURUSD_1h_auth"


@pytest.fixture(scope="module")
def server(pg_server_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-auth")
    with mlflow_server.throwaway(pg_server_url, home, auth=True) as (url, _):
        yield url, home / "mlflow-auth"


def _as(monkeypatch, folder, user: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", (folder / f"{user}.password").read_text())


def test_only_the_promotion_identity_moves_an_alias(server, engine, monkeypatch):
    url, folder = server
    client = MlflowClient(url, registry_uri=url)
    assert httpx.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1").status_code == 401

    _as(monkeypatch, folder, SCIENTIST)  # data scientists log runs and register versions
    experiment = client.create_experiment("auth-tests")
    run = client.create_run(experiment)
    for key, value in {
        "backtest_sharpe": 1.5,
        "backtest_max_drawdown": 0.1,
        "backtest_cumulative_return": 0.3,
        "backtest_benchmark_cumulative_return": 0.1,
        "test_ic": 0.05,
        "backtest_dsr": 0.97,
        "selection_end_ts": 1_500_000_000.0,
        "test_start_ts": 1_500_003_600.0,
    }.items():
        client.log_metric(run.info.run_id, key, value)  # fmt: skip
    client.create_registered_model(NAME)
    version = client.create_model_version(
        NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    ).version
    with pytest.raises(MlflowException, match="only the promotion identity"):
        client.set_registered_model_alias(NAME, "production", version)  # owns the model, still no

    _as(monkeypatch, folder, READER)  # the service, the dashboard, the drift job
    with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
        client.set_registered_model_alias(NAME, "production", version)
    assert client.get_model_version(NAME, version).version == version  # but it reads
    assert alias_version(client, NAME, "production") is None  # nothing moved

    _as(monkeypatch, folder, PROMOTER)
    monkeypatch.setenv("TRENDCAST_USER", "carol")
    monkeypatch.setenv("TRENDCAST_MLFLOW_USERNAME", PROMOTER)
    get_settings.cache_clear()
    try:
        move = promote(client, engine, NAME, int(version), "production")
    finally:
        get_settings.cache_clear()
    assert alias_version(client, NAME, "production") == int(version)
    (row,) = history(engine, NAME)
    assert row["moved_by"] == f"carol as {PROMOTER}" == move.moved_by


def test_status_names_the_version_of_a_server_with_auth(server):
    """`trendcast status` asks /version, which needs a login with auth on: the local stack's
    read-only identity answers it (it said "unknown")."""
    import mlflow

    url, folder = server
    settings = get_settings().model_copy(
        update={
            "home": folder.parent,
            "mlflow_port": int(url.rsplit(":", 1)[1]),
            "mlflow_auth": True,
        }
    )
    assert mlflow_server.probe(settings) == mlflow.__version__


def test_passwords_stay_off_the_command_line_and_out_of_reach(server):
    import psutil

    _, folder = server
    lines = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
        if "trendcast-auth" in " ".join(p.info["cmdline"] or [])
    ]
    assert lines, "the auth server's process was not found"
    assert folder.stat().st_mode & 0o077 == 0  # the user store and the passwords: owner only
    for user in (READER, PROMOTER, SCIENTIST, "admin"):
        path = folder / f"{user}.password"
        assert path.stat().st_mode & 0o077 == 0  # owner-only
        assert all(path.read_text() not in line for line in lines)


def test_a_container_style_start_takes_everything_from_the_environment(pg_server_url, tmp_path):
    """What the ECS task does: no config file, the users in the MLflow database itself, every
    password from the environment (Secrets Manager fills it), none on the command line."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import uuid

    import sqlalchemy as sa

    from trendcast.db import create_database, drop_database

    store = create_database(pg_server_url, f"mlflow_auth_{uuid.uuid4().hex[:8]}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_AUTH")}
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_BACKEND_STORE_URI=store.render_as_string(hide_password=False),
        MLFLOW_AUTH_ADMIN_PASSWORD=uuid.uuid4().hex,
        MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex,
        TRENDCAST_MLFLOW_READER_PASSWORD=uuid.uuid4().hex,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "trendcast-auth",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--artifacts-destination", str(tmp_path / "artifacts")]  # fmt: skip
    log = open(tmp_path / "mlflow.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None, (tmp_path / "mlflow.log").read_text()[-2000:]
        reader = (READER, env["TRENDCAST_MLFLOW_READER_PASSWORD"])
        assert httpx.get(search, auth=reader, timeout=10).status_code == 200
        assert httpx.get(search, auth=(READER, "wrong"), timeout=10).status_code == 401
        assert httpx.get(search, timeout=10).status_code == 401
        engine = sa.create_engine(store)
        with engine.connect() as conn:  # the users live in the MLflow database
            users = set(conn.execute(sa.text("SELECT username FROM users")).scalars())
        engine.dispose()
        assert users == {"admin", READER}  # only identities whose password was given
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # mlflow server and its uvicorn
        process.wait(timeout=30)
        log.close()
        drop_database(pg_server_url, store.database)
