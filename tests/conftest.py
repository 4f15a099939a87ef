"""Shared fixtures: one real PostgreSQL per test session, a fresh database for this run.

The server is an embedded pgserver in a temporary folder, or the one named by
``TRENDCAST_TEST_DATABASE_URL``. Either way this run creates its own database, migrates it, and
drops it at the end, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from trendcast import migrate
from trendcast.config import Settings, get_settings
from trendcast.db import create_database, drop_database, normalize_url
from trendcast.stack.postgres import throwaway_server

REPO = Path(__file__).resolve().parents[1]

# No test talks to a real venue: the binance broker's default base URL (Binance's public
# testnet) is replaced for the whole session by a closed loopback port; tests that trade point
# the broker at their exchange replay. tests/test_binance_replay.py checks this holds.
os.environ["TRENDCAST_BINANCE_BASE_URL"] = "http://127.0.0.1:9"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[URL]:
    """URL of a running PostgreSQL server (database ``postgres``)."""
    external = Settings().test_database_url
    if external:
        yield normalize_url(external).set(database="postgres")
        return
    home = Path(tempfile.mkdtemp(prefix="tcpg"))
    server, url = throwaway_server(home / "pg")
    try:
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def db_url(pg_server_url: URL) -> Iterator[URL]:
    """A migrated database that exists only for this test run."""
    url = create_database(pg_server_url, f"trendcast_test_{uuid.uuid4().hex[:10]}")
    migrate.upgrade(url)
    try:
        yield url
    finally:
        drop_database(pg_server_url, url.database)


@pytest.fixture
def env(db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing Trendcast at the test database and a private home folder."""
    values = {
        "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TRENDCAST_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",  # keep rich from wrapping the lines tests read
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield {**os.environ, **values}
    get_settings.cache_clear()


@pytest.fixture
def engine(db_url: URL, env) -> Iterator[sa.Engine]:
    """Engine on the test database; market, monitoring and trading tables are emptied before
    each test."""
    eng = sa.create_engine(db_url)
    with eng.begin() as conn:
        tables = (
            conn.execute(sa.text("SELECT table_name FROM features.feature_sets")).scalars().all()
        )
        for name in tables:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(
            sa.text(
                "TRUNCATE market.bars, market.quarantine, market.ingestion_runs, market.holes, "
                "market.bar_revisions, "
                "market.bar_changes, features.feature_sets, registry.alias_events, "
                "serving.predictions, monitoring.drift_metrics, monitoring.alerts, "
                "trading.deployments, trading.paper_accounts CASCADE"
            )
        )
        conn.execute(
            sa.text("TRUNCATE portfolio.portfolios, portfolio.streams, portfolio.events CASCADE")
        )
    yield eng
    eng.dispose()


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``trendcast`` command as a user would, capturing its output."""
    exe = Path(sys.executable).with_name("trendcast")
    return subprocess.run(
        [str(exe), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def running_mlflow(pg_server_url: URL, home: Path):
    """A real MLflow tracking server of our own (see ``mlflow_server.throwaway``)."""
    from trendcast.stack import mlflow_server

    return mlflow_server.throwaway(pg_server_url, home)


@pytest.fixture(scope="session")
def mlflow_url(pg_server_url: URL, tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server (PostgreSQL backend, local artifacts) for this run."""
    with running_mlflow(pg_server_url, tmp_path_factory.mktemp("mlflow")) as (url, _):
        yield url
