"""Portfolio: strategy return streams (versioned daily returns of every backtest and
deployment), portfolios with their members, the runs of their walk-forward backtests (weights,
returns, report) and an audit of every change they make (capital applied, members flagged,
substituted or proposed).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "trendcast_reader"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS portfolio")
    # A stream is one version of a member's daily returns: (member_id, fingerprint) is unique,
    # so recording the same returns twice stores nothing, and changed inputs make a new version.
    op.execute(
        """
        CREATE TABLE portfolio.streams (
            id            bigserial    PRIMARY KEY,
            member_id     text         NOT NULL,
            version       integer      NOT NULL,
            fingerprint   text         NOT NULL,
            source        text         NOT NULL
                          CHECK (source IN ('backtest', 'benchmark', 'deployment', 'training')),
            strategy      text         NOT NULL,
            params        jsonb        NOT NULL DEFAULT '{}'::jsonb,
            symbols       text[]       NOT NULL,
            model         text,
            interval      text,
            first_day     date         NOT NULL,
            last_day      date         NOT NULL,
            days          integer      NOT NULL,
            inputs        jsonb        NOT NULL DEFAULT '{}'::jsonb,
            created_by    text         NOT NULL,
            created_at    timestamptz  NOT NULL DEFAULT now(),
            UNIQUE (member_id, source, version),
            UNIQUE (member_id, source, fingerprint)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE portfolio.stream_returns (
            stream_id  bigint            NOT NULL REFERENCES portfolio.streams (id)
                       ON DELETE CASCADE,
            day        date              NOT NULL,
            ret        double precision  NOT NULL,
            PRIMARY KEY (stream_id, day)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE portfolio.portfolios (
            name          text         PRIMARY KEY,
            config        jsonb        NOT NULL,
            fingerprint   text         NOT NULL,
            created_by    text         NOT NULL,
            created_at    timestamptz  NOT NULL DEFAULT now(),
            updated_at    timestamptz  NOT NULL DEFAULT now()
        )
        """
    )
    # Members as they stand: the config's, minus those substituted, plus their replacements.
    op.execute(
        """
        CREATE TABLE portfolio.members (
            portfolio     text         NOT NULL REFERENCES portfolio.portfolios (name)
                          ON DELETE CASCADE,
            name          text         NOT NULL,
            member_id     text         NOT NULL,
            spec          jsonb        NOT NULL,
            role          text         NOT NULL CHECK (role IN ('member', 'bench')),
            status        text         NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'flagged', 'replaced', 'bench')),
            replaced_by   text,
            updated_at    timestamptz  NOT NULL DEFAULT now(),
            PRIMARY KEY (portfolio, name)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE portfolio.runs (
            id            bigserial    PRIMARY KEY,
            portfolio     text         NOT NULL REFERENCES portfolio.portfolios (name)
                          ON DELETE CASCADE,
            method        text         NOT NULL,
            config        jsonb        NOT NULL,
            report        jsonb        NOT NULL,
            mlflow_run_id text,
            created_by    text         NOT NULL,
            created_at    timestamptz  NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE portfolio.run_weights (
            run_id     bigint            NOT NULL REFERENCES portfolio.runs (id) ON DELETE CASCADE,
            rebalance  date              NOT NULL,
            member     text              NOT NULL,
            weight     double precision  NOT NULL,
            PRIMARY KEY (run_id, rebalance, member)
        )
        """
    )
    # Daily returns of the run: the portfolio, equal weight, and each member, by series.
    op.execute(
        """
        CREATE TABLE portfolio.run_returns (
            run_id  bigint            NOT NULL REFERENCES portfolio.runs (id) ON DELETE CASCADE,
            series  text              NOT NULL,
            day     date              NOT NULL,
            ret     double precision  NOT NULL,
            PRIMARY KEY (run_id, series, day)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE portfolio.events (
            id          bigserial    PRIMARY KEY,
            portfolio   text         NOT NULL,
            kind        text         NOT NULL
                        CHECK (kind IN ('apply', 'flag', 'substitute', 'propose')),
            member      text,
            deployment  text,
            details     jsonb        NOT NULL DEFAULT '{}'::jsonb,
            reason      text         NOT NULL,
            actor       text         NOT NULL,
            at          timestamptz  NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX portfolio_events_idx ON portfolio.events (portfolio, id)")
    op.execute(f"GRANT USAGE ON SCHEMA portfolio TO {READER}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA portfolio TO {READER}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON ALL TABLES IN SCHEMA portfolio FROM {READER}")
    op.execute(f"REVOKE USAGE ON SCHEMA portfolio FROM {READER}")
    op.execute("DROP SCHEMA portfolio CASCADE")
