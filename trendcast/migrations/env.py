"""Alembic environment: runs Trendcast's migrations against the URL the caller configured."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from trendcast.db import database_url, normalize_url

config = context.config


def _url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    url = normalize_url(configured) if configured else database_url("trendcast")
    return url.render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, version_table_schema="public")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
