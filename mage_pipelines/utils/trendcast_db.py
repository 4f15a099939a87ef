"""Shared by the blocks: the Trendcast engine from io_config.yaml, and pipeline variables."""

from __future__ import annotations

import os

import sqlalchemy as sa
from mage_ai.io.config import ConfigFileLoader
from mage_ai.settings.repo import get_repo_path
from sqlalchemy.engine import Engine

from trendcast.db import get_engine, normalize_url

URL_KEY = "TRENDCAST_DATABASE_URL"


def database_url(profile: str = "default") -> str | None:
    """The database URL of ``profile`` in io_config.yaml, or None when it is empty."""
    config = ConfigFileLoader(os.path.join(get_repo_path(), "io_config.yaml"), profile)
    url = str(config.get(URL_KEY) or "").strip()
    return None if url in {"", "None"} else url


def trendcast_engine() -> Engine:
    """An engine for io_config.yaml's URL, else trendcast.db.get_engine() (settings, embedded)."""
    url = database_url()
    return get_engine() if url is None else sa.create_engine(normalize_url(url))


def flag(value: object) -> bool:
    """A pipeline variable as a bool: runtime variables may arrive as text ("true", "0")."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
