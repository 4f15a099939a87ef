"""The BentoML prediction service as a local-stack part (`trendcast up --with serving`)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from trendcast.config import Settings
from trendcast.mlflow_auth import READER, identity_environment
from trendcast.stack import processes

NAME = "serving"
REPO = Path(__file__).resolve().parents[2]  # serving/ lives beside trendcast/


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.bentoml_port}"


def command(settings: Settings) -> list[str]:
    return [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        "serving.service:Trendcast",
        "--host",
        settings.host,
        "--port",
        str(settings.bentoml_port),
        "--working-dir",
        str(REPO),
    ]


def probe(settings: Settings, timeout_s: float = 2.0) -> dict | None:
    """The service's readiness body once it is alive (it may be alive but not ready)."""
    try:
        if httpx.get(f"{url(settings)}/livez", timeout=timeout_s).status_code != 200:
            return None
        return httpx.get(f"{url(settings)}/readyz", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return None


def start(settings: Settings) -> processes.ProcessRecord:
    # The service runs from the repository; its settings must still find this home.
    return processes.spawn(
        settings.run_dir,
        NAME,
        command(settings),
        env={**settings.as_env(), **identity_environment(settings, READER)},
    )
