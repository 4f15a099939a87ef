"""The database itself enforces the bar rules, whatever writes to it; migrations round-trip."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from trendcast import migrate
from trendcast.db import create_database, drop_database

INSERT = (
    "INSERT INTO market.bars (symbol, interval, open_time, open, high, low, close, volume, "
    "source) VALUES (:symbol, :interval, '2024-01-01', :open, :high, :low, :close, :volume, 't')"
)
GOOD = {
    "symbol": "ABC",
    "interval": "1h",
    "open": 10,
    "high": 12,
    "low": 9,
    "close": 11,
    "volume": 1,
}


@pytest.mark.parametrize(
    "change",
    [
        {"high": 10.5},  # below close
        {"low": 10.5},  # above open
        {"high": float("nan")},
        {"close": float("inf")},
        {"open": -1},
        {"volume": -0.1},
        {"symbol": "abc"},
        {"interval": "7m"},
    ],
    ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values()))),
)
def test_constraints_reject_bad_bars(engine, change):
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.execute(sa.text(INSERT), {**GOOD, **change})


def test_primary_key_rejects_a_second_bar_at_the_same_time(engine):
    with engine.begin() as conn:
        conn.execute(sa.text(INSERT), GOOD)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(INSERT), GOOD)


def test_migrations_upgrade_downgrade_upgrade(pg_server_url):
    url = create_database(pg_server_url, f"trendcast_mig_{uuid.uuid4().hex[:8]}")
    try:
        migrate.upgrade(url)
        assert migrate.current_revision(url) == migrate.head_revision()
        migrate.downgrade(url, "base")
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'market'")
            ).scalars()
            assert set(tables) == {
                "bars",
                "quarantine",
                "ingestion_runs",
                "bar_changes",
                "instruments",
                "holes",
                "bar_revisions",
            }
        engine.dispose()
    finally:
        drop_database(pg_server_url, url.database)
