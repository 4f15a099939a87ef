"""A deployment's capital is the money put in, net of transfers: taking a profitable sleeve's
gains out (a portfolio cutting a member to zero) moves it to zero or below, so it is no longer
checked positive (a new deployment still is, by `deploy create`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE trading.deployments DROP CONSTRAINT deployments_capital_check")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE trading.deployments ADD CONSTRAINT deployments_capital_check "
        "CHECK (capital > 0) NOT VALID"
    )
