"""The exchange replay as a local-stack part (`trendcast up --with replay`)."""

from __future__ import annotations

import sys

import httpx

from trendcast.config import Settings
from trendcast.stack import processes

NAME = "replay"


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.replay_port}"


def command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trendcast.cli",
        "exchange-replay",
        "--host",
        settings.host,
        "--port",
        str(settings.replay_port),
        "--start",
        settings.replay_start,
        "--speed",
        str(settings.replay_speed),
    ]


def probe(settings: Settings, timeout_s: float = 2.0) -> dict | None:
    """The replay's state when it answers, else None."""
    try:
        response = httpx.get(f"{url(settings)}/replay/state", timeout=timeout_s)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def start(settings: Settings) -> processes.ProcessRecord:
    return processes.spawn(settings.run_dir, NAME, command(settings), settings.as_env())
