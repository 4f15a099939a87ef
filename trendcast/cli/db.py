"""`trendcast db`: the database schema (Alembic migrations)."""

from __future__ import annotations

import typer

from trendcast.cli._common import out, settings

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create the database if missing and apply migrations up to REVISION."""
    from trendcast import migrate
    from trendcast.db import database_url, ensure_database

    url = database_url("trendcast", settings())
    ensure_database(url)
    migrate.upgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the applied and the latest migration revision."""
    from trendcast import migrate
    from trendcast.db import check_connection, database_url

    url = database_url("trendcast", settings())
    check_connection(url)
    out.print(f"applied: {migrate.current_revision(url)}  latest: {migrate.head_revision()}")
