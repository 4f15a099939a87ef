"""Registry audit: every alias move (promotion or rollback) with who, when, from, to and gates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS registry")
    op.execute(
        """
        CREATE TABLE registry.alias_events (
            id            bigserial   PRIMARY KEY,
            model_name    text        NOT NULL,
            alias         text        NOT NULL,
            action        text        NOT NULL CHECK (action IN ('promote', 'rollback')),
            from_version  integer,
            to_version    integer     NOT NULL,
            moved_by      text        NOT NULL,
            moved_at      timestamptz NOT NULL DEFAULT now(),
            forced        boolean     NOT NULL DEFAULT false,
            gate_results  jsonb       NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute(
        "CREATE INDEX alias_events_model_idx ON registry.alias_events (model_name, alias, id DESC)"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA registry CASCADE")
