"""Monitoring: daily drift metrics per served model version, the alerts they raise, and the
read-only role the dashboard runs its queries as.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "trendcast_reader"
READ_SCHEMAS = ("market", "features", "registry", "serving", "monitoring")


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS monitoring")
    # Long format: one row per (model version, prediction source, day, metric, feature); feature
    # is '' for model-level metrics so the key stays a plain unique constraint (upsert target).
    op.execute(
        """
        CREATE TABLE monitoring.drift_metrics (
            model_name     text             NOT NULL,
            model_version  integer          NOT NULL,
            source         text             NOT NULL CHECK (source IN ('live', 'backfill')),
            date           date             NOT NULL,
            metric         text             NOT NULL,
            feature        text             NOT NULL DEFAULT '',
            value          double precision,
            n              integer          NOT NULL DEFAULT 0,
            symbol         text,
            interval       text,
            computed_at    timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (model_name, model_version, source, date, metric, feature)
        )
        """
    )
    op.execute("CREATE INDEX drift_metrics_date_idx ON monitoring.drift_metrics (date, metric)")
    op.execute(
        """
        CREATE TABLE monitoring.alerts (
            id             bigserial        PRIMARY KEY,
            model_name     text             NOT NULL,
            model_version  integer          NOT NULL,
            source         text             NOT NULL CHECK (source IN ('live', 'backfill')),
            date           date             NOT NULL,
            rule           text             NOT NULL,
            severity       text             NOT NULL
                           CHECK (severity IN ('warning', 'severe', 'critical')),
            action         text             NOT NULL,
            metric         text             NOT NULL,
            feature        text             NOT NULL DEFAULT '',
            value          double precision,
            threshold      double precision NOT NULL,
            run_length     integer          NOT NULL DEFAULT 1,
            message        text             NOT NULL,
            status         text             NOT NULL DEFAULT 'open'
                           CHECK (status IN ('open', 'resolved')),
            raised_at      timestamptz      NOT NULL DEFAULT now(),
            resolved_at    timestamptz,
            notified       text             NOT NULL DEFAULT 'none'
                           CHECK (notified IN ('none', 'sent', 'failed')),
            notify_error   text,
            UNIQUE (model_name, model_version, source, date, rule, feature)
        )
        """
    )
    op.execute("CREATE INDEX alerts_open_idx ON monitoring.alerts (model_name, status, date DESC)")
    # The dashboard's role: NOLOGIN (pgserver's only login is the superuser `postgres`), so the
    # dashboard connects and runs every session as this role (SET ROLE at connect) with
    # default_transaction_read_only on. Roles are cluster-wide: create it only if missing.
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER}') THEN
                CREATE ROLE {READER} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object THEN NULL;  -- a concurrent migration created it
        END $$
        """
    )
    for schema in READ_SCHEMAS:
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {READER}")
        op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READER}")
        # Feature tables are created at run time (one per feature set version): cover them too.
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {READER}"
        )


def downgrade() -> None:
    for schema in READ_SCHEMAS:
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM {READER}"
        )
        if schema != "monitoring":
            op.execute(f"REVOKE SELECT ON ALL TABLES IN SCHEMA {schema} FROM {READER}")
            op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {READER}")
    op.execute("DROP SCHEMA monitoring CASCADE")
    # Other databases on the server may still grant to the role: drop it only if nothing does.
    op.execute(
        f"""
        DO $$ BEGIN
            DROP ROLE IF EXISTS {READER};
        EXCEPTION WHEN dependent_objects_still_exist THEN NULL;
        END $$
        """
    )
