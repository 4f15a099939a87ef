"""Data integrity: holes to repair, bar revisions, conflict counters, abandoned runs.

- ``market.holes``: one row per bar the instrument's calendar says should exist but is not
  stored, with its repair attempts, last error and status (``open`` until filled, ``filled``,
  ``closed-market`` when the calendar no longer expects it, ``unfillable`` after
  ``TRENDCAST_INGEST_HOLE_ATTEMPTS`` failed attempts). Every ingestion run retries the open ones,
  so a hole left at the end of one run is never forgotten.
- ``market.bar_revisions``: a changed price for a stored bar, applied on request (``--revise``),
  keeps the replaced values here (old and new, run, when); nothing is overwritten without trace.
- ``market.ingestion_runs`` counts conflicting and revised bars, and a run killed while
  ``running`` can be marked ``abandoned``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLE_STATUSES = "'open', 'filled', 'closed-market', 'unfillable'"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE market.holes (
            symbol        text COLLATE "C"    NOT NULL,
            interval      market.bar_interval NOT NULL,
            open_time     timestamptz         NOT NULL,
            first_seen    timestamptz         NOT NULL DEFAULT now(),
            attempts      integer             NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            last_attempt  timestamptz,
            last_error    text,
            status        text                NOT NULL DEFAULT 'open'
                          CHECK (status IN ({HOLE_STATUSES})),
            resolved_at   timestamptz,
            run_id        uuid,
            PRIMARY KEY (symbol, interval, open_time)
        )
        """
    )
    op.execute(
        "CREATE INDEX holes_open_idx ON market.holes (symbol, interval, open_time) "
        "WHERE status = 'open'"
    )
    op.execute(
        """
        CREATE TABLE market.bar_revisions (
            id              bigserial           PRIMARY KEY,
            symbol          text COLLATE "C"    NOT NULL,
            interval        market.bar_interval NOT NULL,
            open_time       timestamptz         NOT NULL,
            old_open        double precision    NOT NULL,
            old_high        double precision    NOT NULL,
            old_low         double precision    NOT NULL,
            old_close       double precision    NOT NULL,
            old_volume      double precision    NOT NULL,
            old_source      text                NOT NULL,
            old_ingest_time timestamptz         NOT NULL,
            new_open        double precision    NOT NULL,
            new_high        double precision    NOT NULL,
            new_low         double precision    NOT NULL,
            new_close       double precision    NOT NULL,
            new_volume      double precision    NOT NULL,
            new_source      text                NOT NULL,
            known_at        timestamptz         NOT NULL DEFAULT now(),
            run_id          uuid
        )
        """
    )
    op.execute(
        "CREATE INDEX bar_revisions_series_idx "
        "ON market.bar_revisions (symbol, interval, open_time)"
    )
    op.execute(
        "ALTER TABLE market.ingestion_runs "
        "ADD COLUMN rows_conflicting bigint NOT NULL DEFAULT 0, "
        "ADD COLUMN rows_revised bigint NOT NULL DEFAULT 0"
    )
    op.execute("ALTER TABLE market.ingestion_runs DROP CONSTRAINT ingestion_runs_status_known")
    op.execute(
        "ALTER TABLE market.ingestion_runs ADD CONSTRAINT ingestion_runs_status_known "
        "CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'abandoned'))"
    )
    op.execute("GRANT SELECT ON market.holes, market.bar_revisions TO trendcast_reader")


def downgrade() -> None:
    op.execute("UPDATE market.ingestion_runs SET status = 'failed' WHERE status = 'abandoned'")
    op.execute("ALTER TABLE market.ingestion_runs DROP CONSTRAINT ingestion_runs_status_known")
    op.execute(
        "ALTER TABLE market.ingestion_runs ADD CONSTRAINT ingestion_runs_status_known "
        "CHECK (status IN ('running', 'succeeded', 'partial', 'failed'))"
    )
    op.execute(
        "ALTER TABLE market.ingestion_runs DROP COLUMN rows_conflicting, DROP COLUMN rows_revised"
    )
    op.execute("DROP TABLE market.bar_revisions")
    op.execute("DROP TABLE market.holes")
