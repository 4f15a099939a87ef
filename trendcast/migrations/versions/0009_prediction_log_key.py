"""Prediction log: a unique key per logged row, so a journal replayed after a database outage
(or replayed twice) stores every prediction exactly once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for rows written before this revision and for backfills (never replayed).
    op.execute("ALTER TABLE serving.predictions ADD COLUMN log_key text")
    op.execute(
        "ALTER TABLE serving.predictions ADD CONSTRAINT predictions_log_key_key UNIQUE (log_key)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE serving.predictions DROP COLUMN log_key")
