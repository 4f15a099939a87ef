"""The Streamlit dashboard as a local-stack part (`trendcast up --with dashboard`,
`trendcast dashboard`)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from trendcast.config import Settings
from trendcast.mlflow_auth import READER, identity_environment
from trendcast.stack import processes

NAME = "dashboard"
APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.streamlit_port}"


def command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        settings.host,
        "--server.port",
        str(settings.streamlit_port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


def probe(settings: Settings, timeout_s: float = 2.0) -> str | None:
    """'ok' when Streamlit answers its health check, else None."""
    try:
        response = httpx.get(f"{url(settings)}/_stcore/health", timeout=timeout_s)
        return "ok" if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


def start(settings: Settings) -> processes.ProcessRecord:
    # The home as an absolute path: the dashboard finds the embedded PostgreSQL through it.
    return processes.spawn(
        settings.run_dir,
        NAME,
        command(settings),
        {**settings.as_env(), **identity_environment(settings, READER)},
    )
