"""The broker contract every venue adapter implements (paper, the Binance spot API).

A deployment's runner speaks only this protocol, so the same runner trades on paper, against the
exchange replay and on a real venue. Orders are market orders identified by a client order id the
runner chooses *before* submitting (derived from deployment, symbol and bar), which is what makes
submission idempotent: submitting the same id twice returns the first order and never a second
one, and after a crash the runner asks the venue what became of every id it may have sent.

Execution model (the backtest's, ``trendcast.backtest``): a market order decided at bar t's close
fills at bar t+1's open, so ``submit`` acknowledges an order and the fill appears later, when the
venue has the next bar. Quantities are in units of the base asset (shares, coins, units of EUR);
prices and cash in the quote currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from trendcast.errors import TrendcastError

Side = Literal["buy", "sell"]
#: Venue order states, in Binance's vocabulary (lower case).
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
TERMINAL = frozenset({"filled", "canceled", "rejected", "expired"})


class VenueUnavailable(TrendcastError):
    """The venue did not answer (connection lost, 5xx, 429 past the retries): the outcome of the
    last request is unknown, so the runner must reconcile before trading again."""


class OrderRejected(TrendcastError):
    """The venue refused the order (insufficient balance, bad quantity, …): nothing was placed."""


@dataclass(frozen=True)
class OrderRequest:
    """What the runner intends: a market order sized and priced at the decision bar's close."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: float  # > 0, base units
    intended_price: float  # the decision bar's close, the reference for slippage
    intended_time: datetime  # the decision bar's close time (UTC)
    #: Added for the deployment runner: when set, the order spends (buy) or raises (sell) this
    #: much quote currency at the fill price, fees excluded (Binance's ``quoteOrderQty``), and
    #: ``quantity`` is only its estimate at ``intended_price``. This is how the backtest sizes
    #: an entry ("weight x equity at the open"), which the decision bar cannot know yet.
    quote_quantity: float | None = None


@dataclass(frozen=True)
class OrderState:
    """The venue's view of one order."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    quantity: float
    filled_quantity: float
    status: OrderStatus
    reason: str | None = None  # why it was rejected or expired, in the venue's words


@dataclass(frozen=True)
class Fill:
    """One execution (a partial fill is one Fill of several for the same order)."""

    client_order_id: str
    venue_trade_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float  # in the quote currency
    time: datetime  # UTC


@runtime_checkable
class Broker(Protocol):
    """A venue account. Every method may raise ``VenueUnavailable``; ``submit`` may raise
    ``OrderRejected``."""

    name: str

    def submit(self, order: OrderRequest) -> OrderState:
        """Place a market order; a client order id seen before returns that order unchanged."""
        ...

    def order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order with this client id, or None when the venue never received it."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """Orders not yet in a terminal state."""
        ...

    def fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        """Executions on ``symbol`` (all, or those at or after ``since``), oldest first."""
        ...

    def balances(self) -> dict[str, float]:
        """Free + locked balance per asset (quote currency included)."""
        ...
