"""Forced alias moves say why: ``registry.alias_events.reason``.

A move past failing gates (``trendcast promote --force --reason "…"``) must carry the reason a
person gave; it is shown by ``alias-history`` and the dashboard beside the failed gates.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE registry.alias_events ADD COLUMN reason text "
        "CHECK (reason IS NULL OR length(reason) BETWEEN 1 AND 500)"
    )
    op.execute(
        "ALTER TABLE registry.alias_events ADD CONSTRAINT forced_moves_say_why "
        "CHECK (NOT forced OR reason IS NOT NULL) NOT VALID"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE registry.alias_events DROP CONSTRAINT forced_moves_say_why")
    op.execute("ALTER TABLE registry.alias_events DROP COLUMN reason")
