"""Feature store: registry of feature sets, and the bar change log the pipeline consumes.

Each feature set version gets its own wide table (features.<name>_v<N>), created when the set
is first registered, since feature sets are defined in code, not in migrations.

market.bar_changes is an outbox: every transaction that inserts bars adds one row naming the
series and the open-time span, committed with the bars. A feature set consumes each change once
(features.consumed_changes, written with its features), so no commit-order race can hide bars
from the pipeline, as a watermark on ingest_time could when a long load commits late.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS features")
    op.execute(
        """
        CREATE TABLE features.feature_sets (
            key          text        PRIMARY KEY,
            name         text        NOT NULL,
            version      integer     NOT NULL CHECK (version >= 1),
            fingerprint  text        NOT NULL,
            columns      jsonb       NOT NULL,
            table_name   text        NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            UNIQUE (name, version)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE market.bar_changes (
            id               bigserial           PRIMARY KEY,
            symbol           text COLLATE "C"    NOT NULL,
            interval         market.bar_interval NOT NULL,
            first_open_time  timestamptz         NOT NULL,
            last_open_time   timestamptz         NOT NULL,
            bars             bigint              NOT NULL,
            created_at       timestamptz         NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE features.consumed_changes (
            feature_set  text   NOT NULL REFERENCES features.feature_sets (key) ON DELETE CASCADE,
            change_id    bigint NOT NULL REFERENCES market.bar_changes (id) ON DELETE CASCADE,
            PRIMARY KEY (feature_set, change_id)
        )
        """
    )
    # Existing bars count as one change per series, so the first build sees them.
    op.execute(
        """
        INSERT INTO market.bar_changes (symbol, interval, first_open_time, last_open_time, bars)
        SELECT symbol, interval, min(open_time), max(open_time), count(*)
        FROM market.bars GROUP BY symbol, interval
        """
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA features CASCADE")
    op.execute("DROP TABLE market.bar_changes")
