"""Instrument registry: each symbol's asset class, trading calendar and cost profile.

Gap detection, freshness and drop statistics count only the bars an instrument's calendar says
should exist; backtests pick costs and annualisation by asset class. Unknown symbols fall back to
24/7 with a warning (see ``trendcast.instruments``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bundled sample series (trendcast.sample_data); GOOGL, AAPL and MSFT list on Nasdaq, IBM on
# the NYSE.
SEED = (
    ("EURUSD", "fx", "FX", "fx", '{"pip_size": 0.0001}', "Euro / US dollar spot"),
    ("GOOGL", "equity", "XNAS", "equity", "{}", "Alphabet Inc. class A"),
    ("AAPL", "equity", "XNAS", "equity", "{}", "Apple Inc."),
    ("MSFT", "equity", "XNAS", "equity", "{}", "Microsoft Corp."),
    ("IBM", "equity", "XNYS", "equity", "{}", "International Business Machines Corp."),
    ("BTCUSDT", "crypto", "24/7", "crypto", "{}", "Bitcoin / Tether spot"),
    ("ETHUSDT", "crypto", "24/7", "crypto", "{}", "Ether / Tether spot"),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE market.instruments (
            symbol        text        PRIMARY KEY
                          CHECK (symbol ~ '^[A-Z0-9][A-Z0-9._-]{0,31}$'),
            asset_class   text        NOT NULL
                          CHECK (asset_class IN ('crypto', 'fx', 'equity', 'other')),
            calendar      text        NOT NULL CHECK (length(calendar) BETWEEN 1 AND 32),
            cost_profile  text        NOT NULL CHECK (length(cost_profile) BETWEEN 1 AND 32),
            params        jsonb       NOT NULL DEFAULT '{}'::jsonb
                          CHECK (jsonb_typeof(params) = 'object'),
            description   text        NOT NULL DEFAULT '',
            updated_by    text        NOT NULL DEFAULT current_user,
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    for symbol, asset_class, calendar, profile, params, description in SEED:
        op.execute(
            "INSERT INTO market.instruments "
            "(symbol, asset_class, calendar, cost_profile, params, description, updated_by) "
            f"VALUES ('{symbol}', '{asset_class}', '{calendar}', '{profile}', '{params}', "
            f"'{description}', 'migration 0006')"
        )
    op.execute("GRANT SELECT ON market.instruments TO trendcast_reader")


def downgrade() -> None:
    op.execute("DROP TABLE market.instruments")
