"""Prediction log: every answer the service gives (and every shadow score), traceable to the
model version and the inputs that made it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS serving")
    op.execute(
        """
        CREATE TABLE serving.predictions (
            id             bigserial        PRIMARY KEY,
            request_id     text             NOT NULL,
            predicted_at   timestamptz      NOT NULL,
            symbol         text,
            interval       text,
            event_time     timestamptz,
            model_name     text             NOT NULL,
            model_version  integer          NOT NULL,
            alias          text             NOT NULL,
            shadow         boolean          NOT NULL DEFAULT false,
            source         text             NOT NULL DEFAULT 'live'
                           CHECK (source IN ('live', 'backfill')),
            inputs         jsonb            NOT NULL,
            prediction     double precision NOT NULL,
            latency_ms     double precision
        )
        """
    )
    op.execute(
        "CREATE INDEX predictions_model_time_idx "
        "ON serving.predictions (model_name, model_version, predicted_at)"
    )
    op.execute(
        "CREATE INDEX predictions_symbol_event_idx "
        "ON serving.predictions (symbol, interval, event_time) WHERE symbol IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA serving CASCADE")
