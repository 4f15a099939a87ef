"""Trading: strategy deployments, their orders, fills, positions and balances, and an event log
of every state change (deployment, order, kill switch, promotion).

An order's intent is written before it is sent (``status = 'intended'``): its client order id is
unique and derived from (deployment, symbol, bar), so a runner that dies between submit and
record finds the intent on restart and asks the venue what became of it, never sending twice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER = "trendcast_reader"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS trading")
    op.execute(
        """
        CREATE TABLE trading.deployments (
            id            bigserial        PRIMARY KEY,
            name          text             NOT NULL UNIQUE,
            strategy      text             NOT NULL,
            params        jsonb            NOT NULL DEFAULT '{}'::jsonb,
            model_name    text,
            model_alias   text,
            symbols       text[]           NOT NULL,
            interval      text             NOT NULL,
            broker        text             NOT NULL CHECK (broker IN ('paper', 'binance')),
            stage         text             NOT NULL DEFAULT 'demo'
                          CHECK (stage IN ('demo', 'live', 'stopped')),
            capital       double precision NOT NULL CHECK (capital > 0),
            risk          jsonb            NOT NULL DEFAULT '{}'::jsonb,
            costs         jsonb            NOT NULL DEFAULT '{}'::jsonb,  -- per symbol, fixed
            history_start timestamptz,     -- first bar the strategy sees (warm-up included)
            start_bar     timestamptz,     -- first decision bar
            state         text             NOT NULL DEFAULT 'created'
                          CHECK (state IN ('created', 'running', 'stopped', 'killed')),
            state_reason  text,
            created_by    text             NOT NULL,
            created_at    timestamptz      NOT NULL DEFAULT now(),
            started_at    timestamptz,
            last_bar      timestamptz,
            last_step_at  timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE trading.orders (
            id               bigserial        PRIMARY KEY,
            deployment_id    bigint           NOT NULL REFERENCES trading.deployments (id),
            client_order_id  text             NOT NULL UNIQUE,
            symbol           text             NOT NULL,
            bar_time         timestamptz      NOT NULL,
            side             text             NOT NULL CHECK (side IN ('buy', 'sell')),
            quantity         double precision NOT NULL CHECK (quantity > 0),
            intended_price   double precision NOT NULL,
            intended_time    timestamptz      NOT NULL,
            purpose          text             NOT NULL DEFAULT 'signal',
            target           double precision,
            quote_quantity   double precision,
            model_version    integer,
            status           text             NOT NULL DEFAULT 'intended'
                             CHECK (status IN ('intended', 'new', 'partially_filled', 'filled',
                                               'canceled', 'rejected', 'expired', 'unknown')),
            venue_order_id   text,
            filled_quantity  double precision NOT NULL DEFAULT 0,
            reason           text,
            created_at       timestamptz      NOT NULL DEFAULT now(),
            updated_at       timestamptz      NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX orders_deployment_idx ON trading.orders (deployment_id, bar_time)")
    op.execute(
        """
        CREATE TABLE trading.fills (
            id               bigserial        PRIMARY KEY,
            order_id         bigint           NOT NULL REFERENCES trading.orders (id),
            deployment_id    bigint           NOT NULL REFERENCES trading.deployments (id),
            venue_trade_id   text             NOT NULL,
            symbol           text             NOT NULL,
            side             text             NOT NULL CHECK (side IN ('buy', 'sell')),
            quantity         double precision NOT NULL,
            price            double precision NOT NULL,
            fee              double precision NOT NULL DEFAULT 0,
            intended_price   double precision NOT NULL,
            slippage         double precision NOT NULL,  -- signed, adverse > 0, fraction
            time             timestamptz      NOT NULL,
            recorded_at      timestamptz      NOT NULL DEFAULT now(),
            UNIQUE (order_id, venue_trade_id)
        )
        """
    )
    op.execute("CREATE INDEX fills_deployment_idx ON trading.fills (deployment_id, time)")
    op.execute(
        """
        CREATE TABLE trading.positions (
            deployment_id  bigint           NOT NULL REFERENCES trading.deployments (id),
            symbol         text             NOT NULL,
            quantity       double precision NOT NULL DEFAULT 0,
            avg_price      double precision,
            updated_at     timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (deployment_id, symbol)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE trading.balances (
            deployment_id  bigint           NOT NULL REFERENCES trading.deployments (id),
            bar_time       timestamptz      NOT NULL,
            equity         double precision NOT NULL,
            cash           double precision NOT NULL,
            peak           double precision NOT NULL,
            drawdown       double precision NOT NULL,
            positions      jsonb            NOT NULL DEFAULT '{}'::jsonb,
            recorded_at    timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (deployment_id, bar_time)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE trading.events (
            id             bigserial        PRIMARY KEY,
            deployment_id  bigint           NOT NULL REFERENCES trading.deployments (id),
            kind           text             NOT NULL,
            subject        text,
            details        jsonb            NOT NULL DEFAULT '{}'::jsonb,
            actor          text             NOT NULL,
            at             timestamptz      NOT NULL DEFAULT now()
        )
        """
    )
    # One row per (deployment, symbol, decision bar): the model version that scored it, its
    # prediction and the target, or why no decision was taken (stale bar, missing features).
    op.execute(
        """
        CREATE TABLE trading.decisions (
            deployment_id  bigint           NOT NULL REFERENCES trading.deployments (id),
            symbol         text             NOT NULL,
            bar_time       timestamptz      NOT NULL,
            model_version  integer,
            prediction     double precision,
            target         double precision,
            skipped        text,
            decided_at     timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (deployment_id, symbol, bar_time)
        )
        """
    )
    op.execute("CREATE INDEX events_deployment_idx ON trading.events (deployment_id, id)")
    # The paper broker's venue-side book: persisted so a paper account survives restarts.
    op.execute(
        """
        CREATE TABLE trading.paper_accounts (
            account        text             PRIMARY KEY,
            quote          text             NOT NULL,
            cash           double precision NOT NULL,
            holdings       jsonb            NOT NULL DEFAULT '{}'::jsonb,
            updated_at     timestamptz      NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE trading.paper_orders (
            account          text             NOT NULL REFERENCES trading.paper_accounts,
            client_order_id  text             NOT NULL,
            venue_order_id   bigserial,
            symbol           text             NOT NULL,
            interval         text             NOT NULL,
            side             text             NOT NULL,
            quantity         double precision NOT NULL,
            quote_quantity   double precision,
            filled_quantity  double precision NOT NULL DEFAULT 0,
            status           text             NOT NULL,
            reason           text,
            fill_from        timestamptz      NOT NULL,  -- first bar opening then fills it
            created_at       timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (account, client_order_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE trading.paper_fills (
            account          text             NOT NULL,
            client_order_id  text             NOT NULL,
            trade_id         bigserial,
            symbol           text             NOT NULL,
            side             text             NOT NULL,
            quantity         double precision NOT NULL,
            price            double precision NOT NULL,
            fee              double precision NOT NULL,
            time             timestamptz      NOT NULL,
            PRIMARY KEY (account, client_order_id, trade_id),
            FOREIGN KEY (account, client_order_id)
                REFERENCES trading.paper_orders (account, client_order_id)
        )
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA trading TO {READER}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA trading TO {READER}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON ALL TABLES IN SCHEMA trading FROM {READER}")
    op.execute(f"REVOKE USAGE ON SCHEMA trading FROM {READER}")
    op.execute("DROP SCHEMA trading CASCADE")
