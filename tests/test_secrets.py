"""Secrets stay where only their owner can read them: never on a command line (``ps``,
``/proc/*/cmdline``, our process records), never written into ``os.environ`` by us."""

from __future__ import annotations

import json
import os
import socket
import uuid

import psutil
import pytest
from conftest import run_cli

from trendcast.config import get_settings
from trendcast.db import drop_database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_lines_with(secret: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if secret in line:
            found.append(f"pid {proc.info['pid']}: {line[:200]}")
    return found


@pytest.mark.slow
def test_the_stack_never_puts_the_database_password_on_a_command_line(
    tmp_path, db_url, pg_server_url
):
    password = f"pw-{uuid.uuid4().hex}"  # the embedded server trusts local users: any works
    home = tmp_path / "h"
    mlflow_db = db_url.set(database=f"{db_url.database}_mlflow", password=password)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env.update(
        TRENDCAST_HOME=str(home),
        TRENDCAST_DATABASE_URL=db_url.set(password=password).render_as_string(hide_password=False),
        TRENDCAST_MLFLOW_DATABASE_URL=mlflow_db.render_as_string(hide_password=False),
        TRENDCAST_MLFLOW_PORT=str(free_port()),
        TRENDCAST_REPLAY_PORT=str(free_port()),
        TRENDCAST_STREAMLIT_PORT=str(free_port()),
        COLUMNS="200",
    )
    try:
        up = run_cli("up", "--with", "replay", "--with", "dashboard", env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        started = {p.stem: json.loads(p.read_text()) for p in (home / "run").glob("*.json")}
        assert {"mlflow", "replay", "dashboard"} <= set(started)
        assert all(psutil.pid_exists(r["pid"]) for r in started.values())
        assert command_lines_with(password) == []
        for name, record in started.items():
            assert password not in json.dumps(record), f"{name}'s process record holds it"
        # The MLflow server still reached its backend store: it answers with the stack up.
        status = run_cli("status", "--json", env=env)
        parts = {p["name"]: p for p in json.loads(status.stdout)}
        assert parts["mlflow"]["state"] == "up"
    finally:
        run_cli("down", env=env)
        drop_database(pg_server_url, mlflow_db.database)


def test_the_lambda_keeps_the_decrypted_database_url_in_memory(db_url, env, monkeypatch):
    import boto3
    from moto import mock_aws

    from ingestion_lambda import handler as lambda_handler

    password = f"pw-{uuid.uuid4().hex}"
    url = db_url.set(password=password).render_as_string(hide_password=False)
    monkeypatch.delenv("TRENDCAST_DATABASE_URL")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="trendcast/db", SecretString=json.dumps({"url": url})
        )["ARN"]
        monkeypatch.setenv("TRENDCAST_DATABASE_SECRET_ARN", arn)
        get_settings.cache_clear()
        settings = lambda_handler._settings()
    assert settings.database_url == url  # the handler uses the secret's URL…
    leaked = [k for k, v in os.environ.items() if password in v]
    assert leaked == [], f"written to os.environ: {leaked}"  # …without publishing it
    assert get_settings().database_url is None  # nor into the process-wide settings
