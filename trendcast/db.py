"""Database access: URLs, engines and the checks that turn connection failures into advice.

SQLAlchemy 2.1 reads a bare ``postgresql://`` URL as psycopg 3, which we do not ship, so every URL
handed to SQLAlchemy, Alembic or MLflow goes through :func:`normalize_url` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from trendcast.config import Settings, get_settings
from trendcast.errors import DatabaseUnavailable
from trendcast.stages import stage

Which = Literal["trendcast", "mlflow"]
DRIVER = "postgresql+psycopg2"


def normalize_url(url: str | URL) -> URL:
    """Return ``url`` with the psycopg2 driver, whatever PostgreSQL spelling it came with."""
    parsed = make_url(str(url)) if isinstance(url, str) else url
    if parsed.get_backend_name() not in {"postgresql", "postgres"}:
        raise DatabaseUnavailable(
            f"database URL {masked(parsed)} is not PostgreSQL: Trendcast needs postgresql://…"
        )
    return parsed.set(drivername=DRIVER)


def masked(url: str | URL) -> str:
    """The URL as text with any password hidden, safe for logs and error messages."""
    parsed = make_url(str(url)) if isinstance(url, str) else url
    text = parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    return unquote(text)


def database_url(which: Which = "trendcast", settings: Settings | None = None) -> URL:
    """URL of the Trendcast or MLflow database, for the configured or the embedded server."""
    settings = settings or get_settings()
    if which == "mlflow" and settings.mlflow_database_url:
        return normalize_url(settings.mlflow_database_url)
    name = settings.database_name if which == "trendcast" else settings.mlflow_database_name
    if settings.database_url:
        base = normalize_url(settings.database_url)
        return base if which == "trendcast" else base.set(database=name)
    from trendcast.stack.postgres import embedded_server_url

    return embedded_server_url(settings).set(database=name)


def check_connection(url: URL, timeout_s: int = 5) -> str:
    """Connect once and return the server version, or raise with the URL and what to do."""
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": timeout_s}, poolclass=None)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        engine.dispose()
        return str(version)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {masked(url)}: {reason}. Start the local stack with "
            "`trendcast up`, or set TRENDCAST_DATABASE_URL to a server that is running."
        ) from None


def ensure_database(url: URL) -> bool:
    """Create the database named in ``url`` if it is missing; True when it was created."""
    admin = url.set(database="postgres")
    check_connection(admin)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if exists:
                return False
            conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
            return True
    finally:
        engine.dispose()


def _admin(server_url: URL, statement: str) -> None:
    """Run one statement outside a transaction on the server's ``postgres`` database."""
    admin = sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


def create_database(server_url: URL, name: str) -> URL:
    """Create database ``name`` on the server of ``server_url``; returns its URL."""
    _admin(server_url, f'CREATE DATABASE "{name}"')
    return server_url.set(database=name)


def drop_database(server_url: URL, name: str) -> None:
    """Drop database ``name`` even while clients are connected (scratch databases only)."""
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def driver_cursor(engine: Engine) -> Iterator:
    """A psycopg2 cursor in one transaction (committed on success, rolled back on any error),
    for COPY and the other driver-level calls SQLAlchemy does not wrap."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            yield cur
        with stage("commit"):
            conn.commit()
    except BaseException:
        raw.driver_connection.rollback()
        raise
    finally:
        raw.close()


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    check_connection(make_url(url))
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(settings: Settings | None = None) -> Engine:
    """A pooled engine for the Trendcast database, checked once so failures carry advice."""
    url = database_url("trendcast", settings)
    return _engine_for(url.render_as_string(hide_password=False))
