"""Governance: a forced alias move carries its reason, and the audit is looked up by move.

The service, the drift backfill and the registry views serve or trust a version only when
``registry.alias_events`` records the move that put it behind its alias; a forced move counts
only with a reason. Rows from before this revision keep ``reason`` NULL (the constraint is
``NOT VALID``: checked for every new row, never rewriting history).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE registry.alias_events ADD COLUMN reason text")
    op.execute(
        "ALTER TABLE registry.alias_events ADD CONSTRAINT alias_events_forced_reason "
        "CHECK (NOT forced OR coalesce(length(btrim(reason)), 0) > 0) NOT VALID"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE registry.alias_events DROP CONSTRAINT alias_events_forced_reason")
    op.execute("ALTER TABLE registry.alias_events DROP COLUMN reason")
