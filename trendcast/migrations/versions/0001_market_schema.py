"""Schema v1: market.bars, market.quarantine, market.ingestion_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTERVALS = "'1m','3m','5m','15m','30m','1h','2h','4h','6h','8h','12h','1d','3d','1w','1M'"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS market")
    op.execute(f"CREATE TYPE market.bar_interval AS ENUM ({INTERVALS})")
    # Measured on 2M one-minute bars (benchmarks/bench_load.py): every per-row rule costs load
    # speed, so the rules are few and cheap. The full symbol format (a regex, +40 % load time)
    # is checked by trendcast.schema before any write; the database keeps a cheap guard.
    # PostgreSQL orders NaN above every number, so "x < 'Infinity'" rejects NaN and +Inf alike;
    # without it a NaN high would pass "high >= greatest(open, close)".
    op.execute(
        """
        CREATE TABLE market.bars (
            symbol       text COLLATE "C"    NOT NULL,
            interval     market.bar_interval NOT NULL,
            open_time    timestamptz         NOT NULL,
            open         double precision    NOT NULL,
            high         double precision    NOT NULL,
            low          double precision    NOT NULL,
            close        double precision    NOT NULL,
            volume       double precision    NOT NULL,
            trades       bigint,
            source       text                NOT NULL,
            ingest_time  timestamptz         NOT NULL DEFAULT now(),
            CONSTRAINT bars_pkey PRIMARY KEY (symbol, interval, open_time),
            CONSTRAINT bars_symbol_upper_1_32
                CHECK (length(symbol) BETWEEN 1 AND 32 AND symbol = upper(symbol)),
            CONSTRAINT bars_ohlcv_valid CHECK (
                open > 0 AND open < 'Infinity' AND high > 0 AND high < 'Infinity'
                AND low > 0 AND low < 'Infinity' AND close > 0 AND close < 'Infinity'
                AND high >= greatest(open, close, low) AND low <= least(open, close)
                AND volume >= 0 AND volume < 'Infinity' AND (trades IS NULL OR trades >= 0))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE market.ingestion_runs (
            run_id            uuid        PRIMARY KEY,
            kind              text        NOT NULL,
            source            text        NOT NULL,
            symbol            text,
            interval          text,
            started_at        timestamptz NOT NULL DEFAULT now(),
            finished_at       timestamptz,
            status            text        NOT NULL DEFAULT 'running',
            rows_read         bigint      NOT NULL DEFAULT 0,
            rows_inserted     bigint      NOT NULL DEFAULT 0,
            rows_duplicate    bigint      NOT NULL DEFAULT 0,
            rows_quarantined  bigint      NOT NULL DEFAULT 0,
            gaps_found        bigint      NOT NULL DEFAULT 0,
            gaps_filled       bigint      NOT NULL DEFAULT 0,
            error             text,
            details           jsonb       NOT NULL DEFAULT '{}'::jsonb,
            CONSTRAINT ingestion_runs_status_known
                CHECK (status IN ('running', 'succeeded', 'partial', 'failed'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ingestion_runs_series_idx "
        "ON market.ingestion_runs (symbol, interval, started_at DESC)"
    )
    op.execute(
        """
        CREATE TABLE market.quarantine (
            id           bigserial   PRIMARY KEY,
            received_at  timestamptz NOT NULL DEFAULT now(),
            run_id       uuid        REFERENCES market.ingestion_runs (run_id),
            source       text        NOT NULL,
            symbol       text,
            interval     text,
            reason       text        NOT NULL,
            payload      jsonb       NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX quarantine_received_at_idx ON market.quarantine (received_at)")
    op.execute("CREATE INDEX quarantine_run_idx ON market.quarantine (run_id)")


def downgrade() -> None:
    op.execute("DROP TABLE market.quarantine")
    op.execute("DROP TABLE market.ingestion_runs")
    op.execute("DROP TABLE market.bars")
    op.execute("DROP TYPE market.bar_interval")
    op.execute("DROP SCHEMA market")
