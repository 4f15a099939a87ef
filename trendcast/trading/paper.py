"""The paper venue: the backtest's execution model (``trendcast.backtest._simulate``) as a broker.

A market order decided at bar t's close fills at the open of the first stored bar opening at or
after its ``intended_time``, at open x (1 ± half spread ± slippage), paying the fee on the traded
notional, exactly as the backtest trades. An order sized in quote currency (``quote_quantity``)
buys ``quote / price`` units as far as the cash goes (the engine's "weight x equity at the open,
as far as the cash goes"); a sell may go short, like the engine's short entries.

Each symbol of a deployment is its own account (a sleeve with its share of the capital), since
the backtest it must equal runs one symbol on its own capital. The book lives in PostgreSQL
(``trading.paper_*``), so an account survives restarts and a second ``submit`` of a client order
id returns the first order. Orders fill lazily: any call first fills what the stored bars allow.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trendcast.backtest import Costs
from trendcast.trading.broker import Fill, OrderRejected, OrderRequest, OrderState

QUOTE = "USD"


class PaperBroker:
    """A paper account per (deployment, symbol), filled from ``market.bars``."""

    name = "paper"

    def __init__(
        self,
        engine: Engine,
        account: str,
        interval: str,
        costs: dict[str, Costs],
        capital: dict[str, float],
    ) -> None:
        self.engine = engine
        self.account = account
        self.interval = interval
        self.costs = costs
        self.capital = capital

    def _sleeve(self, symbol: str) -> str:
        return f"{self.account}/{symbol}"

    def _open(self, conn: Connection, symbol: str) -> None:
        """Create the sleeve on first use and take its lock for this transaction."""
        sleeve = self._sleeve(symbol)
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:a, 7))"), {"a": sleeve}
        )
        conn.execute(
            sa.text(
                "INSERT INTO trading.paper_accounts (account, quote, cash) VALUES (:a, :q, :c) "
                "ON CONFLICT (account) DO NOTHING"
            ),
            {"a": sleeve, "q": QUOTE, "c": float(self.capital[symbol])},
        )

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.costs:
            raise OrderRejected(f"symbol {symbol!r}: not traded by paper account {self.account}")

    # -- matching ------------------------------------------------------------------------------

    def _match(self, conn: Connection, symbol: str) -> None:
        """Fill the sleeve's pending orders whose fill bar is stored, oldest first."""
        sleeve = self._sleeve(symbol)
        pending = conn.execute(
            sa.text(
                "SELECT client_order_id, side, quantity, quote_quantity, fill_from "
                "FROM trading.paper_orders WHERE account = :a AND status = 'new' "
                "ORDER BY venue_order_id"
            ),
            {"a": sleeve},
        ).all()
        if not pending:
            return
        account = conn.execute(
            sa.text("SELECT cash, holdings FROM trading.paper_accounts WHERE account = :a"),
            {"a": sleeve},
        ).one()
        cash = float(account.cash)
        held = float((account.holdings or {}).get(symbol, 0.0))
        costs = self.costs[symbol]
        cost, fee = costs.spread / 2 + costs.slippage, costs.fee
        for order in pending:
            bar = conn.execute(
                sa.text(
                    "SELECT open_time, open FROM market.bars WHERE symbol = :s "
                    "AND interval = CAST(:i AS market.bar_interval) AND open_time >= :t "
                    "ORDER BY open_time LIMIT 1"
                ),
                {"s": symbol, "i": self.interval, "t": order.fill_from},
            ).first()
            if bar is None:
                break  # later orders wait for the same or a later bar
            direction = 1.0 if order.side == "buy" else -1.0
            price = float(bar.open) * (1.0 + cost * direction)
            if order.quote_quantity is not None:
                quantity = float(order.quote_quantity) / price
                if direction > 0:  # as far as the cash goes
                    quantity = min(quantity, cash / (price * (1.0 + fee)))
            else:
                quantity = float(order.quantity)
            if quantity <= 0:
                conn.execute(
                    sa.text(
                        "UPDATE trading.paper_orders SET status = 'rejected', reason = :r "
                        "WHERE account = :a AND client_order_id = :c"
                    ),
                    {"a": sleeve, "c": order.client_order_id, "r": "insufficient balance"},
                )
                continue
            shares = direction * quantity
            cash -= shares * price + abs(shares * price) * fee
            held += shares
            conn.execute(
                sa.text(
                    "INSERT INTO trading.paper_fills (account, client_order_id, symbol, side, "
                    "quantity, price, fee, time) VALUES (:a, :c, :s, :side, :q, :p, :f, :t)"
                ),
                {
                    "a": sleeve,
                    "c": order.client_order_id,
                    "s": symbol,
                    "side": order.side,
                    "q": quantity,
                    "p": price,
                    "f": abs(shares * price) * fee,
                    "t": bar.open_time,
                },
            )
            conn.execute(
                sa.text(
                    "UPDATE trading.paper_orders SET status = 'filled', filled_quantity = :q "
                    "WHERE account = :a AND client_order_id = :c"
                ),
                {"a": sleeve, "c": order.client_order_id, "q": quantity},
            )
        conn.execute(
            sa.text(
                "UPDATE trading.paper_accounts SET cash = :c, "
                "holdings = jsonb_set(holdings, ARRAY[CAST(:s AS text)], to_jsonb(CAST(:h AS "
                "double precision))), updated_at = now() WHERE account = :a"
            ),
            {"a": sleeve, "c": cash, "s": symbol, "h": held},
        )

    def _state(self, conn: Connection, symbol: str, client_order_id: str) -> OrderState | None:
        row = conn.execute(
            sa.text(
                "SELECT client_order_id, venue_order_id, symbol, side, quantity, "
                "filled_quantity, status, reason FROM trading.paper_orders "
                "WHERE account = :a AND client_order_id = :c"
            ),
            {"a": self._sleeve(symbol), "c": client_order_id},
        ).first()
        if row is None:
            return None
        return OrderState(
            row.client_order_id,
            str(row.venue_order_id),
            row.symbol,
            row.side,
            float(row.quantity),
            float(row.filled_quantity),
            row.status,
            row.reason,
        )

    # -- the protocol --------------------------------------------------------------------------

    def submit(self, order: OrderRequest) -> OrderState:
        self._check_symbol(order.symbol)
        if not order.quantity > 0 or (
            order.quote_quantity is not None and not order.quote_quantity > 0
        ):
            raise OrderRejected(f"order {order.client_order_id}: quantity must be > 0")
        with self.engine.begin() as conn:
            self._open(conn, order.symbol)
            seen = self._state(conn, order.symbol, order.client_order_id)
            if seen is not None:
                return seen
            conn.execute(
                sa.text(
                    "INSERT INTO trading.paper_orders (account, client_order_id, symbol, "
                    "interval, side, quantity, quote_quantity, status, fill_from) VALUES "
                    "(:a, :c, :s, :i, :side, :q, :qq, 'new', :t)"
                ),
                {
                    "a": self._sleeve(order.symbol),
                    "c": order.client_order_id,
                    "s": order.symbol,
                    "i": self.interval,
                    "side": order.side,
                    "q": float(order.quantity),
                    "qq": order.quote_quantity,
                    "t": order.intended_time,
                },
            )
            state = self._state(conn, order.symbol, order.client_order_id)
        assert state is not None
        return state

    def order(self, symbol: str, client_order_id: str) -> OrderState | None:
        self._check_symbol(symbol)
        with self.engine.begin() as conn:
            self._open(conn, symbol)
            self._match(conn, symbol)
            return self._state(conn, symbol, client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        found = []
        for sym in [symbol] if symbol else sorted(self.costs):
            with self.engine.begin() as conn:
                self._open(conn, sym)
                self._match(conn, sym)
                ids = conn.execute(
                    sa.text(
                        "SELECT client_order_id FROM trading.paper_orders WHERE account = :a "
                        "AND status IN ('new', 'partially_filled') ORDER BY venue_order_id"
                    ),
                    {"a": self._sleeve(sym)},
                ).scalars()
                found += [self._state(conn, sym, c) for c in list(ids)]
        return [s for s in found if s is not None]

    def fills(self, symbol: str, since=None) -> list[Fill]:
        self._check_symbol(symbol)
        with self.engine.begin() as conn:
            self._open(conn, symbol)
            self._match(conn, symbol)
            rows = conn.execute(
                sa.text(
                    "SELECT client_order_id, trade_id, symbol, side, quantity, price, fee, time "
                    "FROM trading.paper_fills WHERE account = :a "
                    "AND time >= coalesce(CAST(:t AS timestamptz), '-infinity') "
                    "ORDER BY trade_id"
                ),
                {"a": self._sleeve(symbol), "t": since},
            ).all()
        return [
            Fill(
                r.client_order_id,
                str(r.trade_id),
                r.symbol,
                r.side,
                float(r.quantity),
                float(r.price),
                float(r.fee),
                r.time,
            )
            for r in rows
        ]

    def transfer(self, conn: Connection, symbol: str, amount: float) -> None:
        """Deposit (> 0) or withdraw (< 0) cash of a sleeve, in the caller's transaction (which
        records the transfer as applied, so a restart never applies it twice)."""
        self._check_symbol(symbol)
        self._open(conn, symbol)
        conn.execute(
            sa.text(
                "UPDATE trading.paper_accounts SET cash = cash + :x, updated_at = now() "
                "WHERE account = :a"
            ),
            {"a": self._sleeve(symbol), "x": float(amount)},
        )

    def balances(self) -> dict[str, float]:
        """Cash of every sleeve under the quote currency, holdings under each symbol."""
        out: dict[str, float] = {QUOTE: 0.0}
        for symbol in sorted(self.costs):
            with self.engine.begin() as conn:
                self._open(conn, symbol)
                self._match(conn, symbol)
                row = conn.execute(
                    sa.text("SELECT cash, holdings FROM trading.paper_accounts WHERE account = :a"),
                    {"a": self._sleeve(symbol)},
                ).one()
            out[QUOTE] += float(row.cash)
            out[symbol] = float((row.holdings or {}).get(symbol, 0.0))
        return out
