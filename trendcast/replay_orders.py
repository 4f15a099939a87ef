"""The exchange replay's order side: accounts, signed requests, a matching engine and order faults.

It speaks Binance's spot REST API (``POST /api/v3/order`` and the order, openOrders, allOrders,
account and myTrades queries), so the Binance broker is tested against the same wire format it
meets on the testnet. What the engine guarantees:

- **Execution model = the backtest's** (``trendcast.backtest``): a MARKET order fills at the open
  of the first bar opening at or after the order's arrival on the replay clock (an order sent at
  the instant bar t closes, which is bar t+1's open time, fills at bar t+1's open; one sent a
  moment later waits for bar t+2), at open x (1 + slippage) for a buy and x (1 - slippage) for a
  sell, paying ``fee`` x notional in the quote asset. Fills happen when the clock reaches that
  open; every request settles what the clock has passed. Prices and quantities are sent as
  Python ``repr`` strings, so a client reads back exactly the floats the engine used.
- **Balances per API key**, seeded by the admin API; a sell locks its base quantity at submit, a
  buy is checked at submit against the current bar's open and charged at the fill (an order the
  account can no longer pay for at its fill expires with the reason).
- **Signatures and timestamps** as Binance checks them: HMAC-SHA256 of the query string plus body
  (without ``signature``) with the key's secret; ``timestamp`` within ``recvWindow`` (≤ 60000)
  behind and 1000 ms ahead of the server's wall clock. The wall clock, not the replay clock:
  ``/api/v3/time`` serves the data clock (ingestion reads it), while a signing client's clock is
  its machine's, as against the real exchange.
- **Client order ids are unique per key**: a reused one is refused with -2010 "Duplicate order
  sent." and never places a second order.

Order faults are queued over HTTP and each is consumed by the next signed request to its
``endpoint`` (default ``order``, i.e. ``POST /api/v3/order``; also ``getOrder``, ``openOrders``,
``allOrders``, ``account``, ``myTrades``)::

    POST /replay/order-faults  {"faults": [{"kind": "partial", "ratio": 0.25}, {"kind": "lost"}]}

kinds: none (pass one request), reject (-2010 with ``msg``; nothing placed), partial (``ratio`` of
the quantity at the fill bar, the rest at the next bar's open, or expired with ``expire_rest``),
delayed (fills ``bars`` bars later than due), 500 (``status``; nothing placed unless ``placed``),
429 (``retry_after`` as Retry-After; nothing placed), duplicate (the order is placed but the answer
is -2010 "Duplicate order sent.", as when a retried request overtakes the first), lost (the order
is placed and the connection closes with no response).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import numpy as np

from trendcast.errors import InputError
from trendcast.trading.symbols import split_symbol

if TYPE_CHECKING:
    from trendcast.replay import Replay

ORDER_FAULT_KINDS = ("none", "reject", "partial", "delayed", "500", "429", "duplicate", "lost")
#: Faults that act on an order being placed (the others may hit any signed endpoint).
PLACEMENT_FAULTS = frozenset({"reject", "partial", "delayed", "duplicate"})
ENDPOINTS = ("order", "getOrder", "openOrders", "allOrders", "account", "myTrades")
MAX_RECV_WINDOW_MS = 60_000
#: How far (relative) a debit may exceed a balance and still take all of it: float dust, so a
#: buy sized to spend the whole balance is not refused for the last bits of a double.
DUST = 1e-12
INSUFFICIENT = "Account has insufficient balance for requested action."


class VenueError(Exception):
    """A Binance-style error answer: HTTP status, code and message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


class ConnectionLost(Exception):
    """The request was processed but no response must be sent (the ``lost`` fault)."""


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Account:
    api_key: str
    secret: str
    free: dict[str, float] = field(default_factory=dict)
    locked: dict[str, float] = field(default_factory=dict)
    update_ms: int = 0

    def balance_rows(self) -> list[dict]:
        assets = sorted(set(self.free) | set(self.locked))
        return [
            {
                "asset": a,
                "free": repr(self.free.get(a, 0.0)),
                "locked": repr(self.locked.get(a, 0.0)),
            }
            for a in assets
        ]


@dataclass
class Order:
    api_key: str
    symbol: str
    base: str
    quote: str
    side: str  # BUY / SELL
    order_id: int
    client_id: str
    quantity: float
    arrival_ms: int  # replay clock
    fill_index: int  # bar whose open fills (the next part of) the order
    quote_qty: float | None = None  # quoteOrderQty: the quantity is set at the first fill
    ratio: float = 1.0  # share of the quantity the first fill takes (partial fault)
    expire_rest: bool = False
    status: str = "NEW"
    executed: float = 0.0
    cum_quote: float = 0.0
    update_ms: int = 0
    reason: str | None = None

    def as_json(self) -> dict:
        body = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": "0.00000000",
            "origQty": repr(self.quantity),
            "executedQty": repr(self.executed),
            "cummulativeQuoteQty": repr(self.cum_quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": self.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.arrival_ms,
            "updateTime": self.update_ms,
            "isWorking": True,
            "workingTime": self.arrival_ms,
            "origQuoteOrderQty": repr(self.quote_qty) if self.quote_qty else "0.00000000",
            "selfTradePreventionMode": "NONE",
        }
        if self.reason:
            body["expiryReason"] = self.reason  # not Binance's: why the replay expired it
        return body


@dataclass
class Trade:
    api_key: str
    symbol: str
    trade_id: int
    order_id: int
    side: str
    price: float
    qty: float
    commission: float
    commission_asset: str
    time_ms: int

    def as_json(self) -> dict:
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": repr(self.price),
            "qty": repr(self.qty),
            "quoteQty": repr(self.price * self.qty),
            "commission": repr(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.side == "BUY",
            "isMaker": False,
            "isBestMatch": True,
        }


class Venue:
    """Accounts, orders and trades of one replay; every method holds the lock."""

    def __init__(
        self, replay: Replay, fee: float = 0.001, slippage: float = 0.0, grace_s: float = 0.0
    ):
        self.replay = replay
        self.set_costs(fee, slippage, grace_s)
        self.lot_steps: dict[str, str] = {}  # symbol -> LOT_SIZE stepSize (decimal text)
        #: "open": a fill is stamped with the open it traded at; "arrival": with the later of
        #: that open and the order's arrival, as a live venue stamps an order filled on receipt
        self.fill_stamp = "open"
        self.accounts: dict[str, Account] = {}
        self.orders: list[Order] = []
        self.working: list[Order] = []  # not yet in a final state, in arrival order
        self.by_client: dict[tuple[str, str], Order] = {}
        self.trades: list[Trade] = []
        self.faults: deque[dict] = deque()
        self.ids = itertools.count(1)
        self.trade_ids = itertools.count(1)
        self.lock = threading.RLock()

    # --- admin -------------------------------------------------------------------------------

    def set_costs(self, fee: float, slippage: float, grace_s: float = 0.0) -> None:
        self.check_costs(fee, slippage, grace_s)
        self.fee, self.slippage, self.grace_ms = float(fee), float(slippage), grace_s * 1000

    @staticmethod
    def check_costs(fee: float, slippage: float, grace_s: float) -> None:
        """Fee and slippage (fractions), and the fill grace: an order arriving within
        ``grace_s`` data-seconds after a bar opened fills at that bar's open (a runner's
        reaction time after the close; 0 = strictly the first open at or after arrival)."""
        for name, value in (("fee", fee), ("slippage", slippage)):
            if not 0 <= float(value) < 0.5:
                raise InputError(f"{name}={value}: must be in [0, 0.5)")
        if not 0 <= float(grace_s) <= 86_400:
            raise InputError(f"fill_grace_s={grace_s}: must be in [0, 86400]")

    def set_fill_stamp(self, stamp: str) -> None:
        if stamp not in ("open", "arrival"):
            raise InputError(f"fill_stamp={stamp!r}: must be open or arrival")
        self.fill_stamp = stamp

    def set_lot_steps(self, steps: dict) -> None:
        """Publish a LOT_SIZE filter (quantities must be multiples of ``step``) per symbol, as
        Binance does; none (the default) accepts any quantity, which exact parity needs."""
        clean = {}
        for symbol, step in steps.items():
            if symbol not in self.replay.series:
                raise InputError(f"lot_steps.{symbol}: not a symbol this replay serves")
            try:
                value = Decimal(str(step))
            except ArithmeticError:
                raise InputError(f"lot_steps.{symbol}={step!r}: must be a decimal") from None
            if not value > 0:
                raise InputError(f"lot_steps.{symbol}={step}: must be > 0")
            clean[symbol] = format(value, "f")
        with self.lock:
            self.lot_steps.update(clean)

    def symbol_info(self, symbol: str) -> dict:
        """The exchangeInfo entry of ``symbol``: assets, order types and filters."""
        info: dict = {"symbol": symbol, "status": "TRADING"}
        try:
            base, quote = split_symbol(symbol)
        except InputError:
            return info  # served for klines only
        info.update(
            baseAsset=base,
            quoteAsset=quote,
            orderTypes=["MARKET"],
            quoteOrderQtyMarketAllowed=True,
            isSpotTradingAllowed=True,
            permissions=["SPOT"],
            filters=[],
        )
        step = self.lot_steps.get(symbol)
        if step:
            info["filters"].append(
                {
                    "filterType": "LOT_SIZE",
                    "minQty": step,
                    "maxQty": "9000000000.0",
                    "stepSize": step,
                }
            )
        return info

    def seed(self, api_key: str, secret: str, balances: dict[str, float]) -> Account:
        """Create the account or replace its secret and free balances (locked ones stay)."""
        if not api_key or not secret:
            raise InputError("api_key and api_secret: both must be non-empty")
        with self.lock:
            account = self.accounts.setdefault(api_key, Account(api_key, secret))
            account.secret = secret
            for asset, amount in balances.items():
                if not float(amount) >= 0:
                    raise InputError(f"balances.{asset}={amount}: must be >= 0")
                account.free[asset.upper()] = float(amount)
            return account

    def queue_faults(self, faults: list[dict]) -> int:
        for fault in faults:
            if fault.get("kind") not in ORDER_FAULT_KINDS:
                raise InputError(f"order fault {fault}: kind must be one of {ORDER_FAULT_KINDS}")
            endpoint = fault.get("endpoint", "order")
            if endpoint not in ENDPOINTS:
                raise InputError(f"order fault {fault}: endpoint must be one of {ENDPOINTS}")
            if fault["kind"] in PLACEMENT_FAULTS and endpoint != "order":
                raise InputError(f"order fault {fault}: {fault['kind']} applies to endpoint order")
        with self.lock:
            self.faults.extend(faults)
            return len(self.faults)

    def take_fault(self, endpoint: str) -> dict | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.get("endpoint", "order") == endpoint:
                    del self.faults[i]
                    return fault
            return None

    def summary(self) -> dict:
        with self.lock:
            self.settle()
            return {
                "fee": self.fee,
                "slippage": self.slippage,
                "fill_grace_s": self.grace_ms / 1000,
                "pending_faults": list(self.faults),
                "accounts": {
                    key: {
                        "balances": a.balance_rows(),
                        "orders": sum(o.api_key == key for o in self.orders),
                        "trades": sum(t.api_key == key for t in self.trades),
                    }
                    for key, a in self.accounts.items()
                },
            }

    # --- authentication ----------------------------------------------------------------------

    def authenticate(self, api_key: str | None, query: str, body: str = "") -> tuple[Account, dict]:
        """The account and parameters of a signed request, or a VenueError as Binance sends.
        The signed payload is the query string concatenated with the body, as Binance defines
        it, each without its ``signature`` parameter."""
        if not api_key:
            raise VenueError(401, -2014, "API-key format invalid.")
        account = self.accounts.get(api_key)
        if account is None:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signatures: list[str] = []
        parts = []
        for raw in (query, body):
            pairs = [p for p in raw.split("&") if p]
            signatures += [p.split("=", 1)[1] for p in pairs if p.startswith("signature=")]
            parts.append("&".join(p for p in pairs if not p.startswith("signature=")))
        params = {
            **dict(parse_qsl(parts[0], keep_blank_values=True)),
            **dict(parse_qsl(parts[1], keep_blank_values=True)),
        }
        if not signatures or not signatures[-1]:
            raise VenueError(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        expected = hmac.new(account.secret.encode(), "".join(parts).encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signatures[-1].lower()):
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        try:
            stamp = int(params["timestamp"])
            window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise VenueError(
                400,
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ) from None
        if not 0 < window <= MAX_RECV_WINDOW_MS:
            raise VenueError(400, -1131, "recvWindow must be less than 60000.")
        now = wall_ms()
        if stamp >= now + 1000:
            raise VenueError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - stamp > window:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return account, params

    # --- the matching engine -----------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.replay.clock.now().value // 1_000_000)

    def place(self, account: Account, params: dict, fault: dict | None) -> Order:
        """Validate and accept a MARKET order (raises VenueError); fills come with the clock."""
        symbol = params.get("symbol", "")
        if symbol not in self.replay.series:
            raise VenueError(400, -1121, "Invalid symbol.")
        try:
            base, quote = split_symbol(symbol)
        except InputError:
            raise VenueError(400, -1121, "Invalid symbol.") from None
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1117, "Invalid side.")
        if params.get("type") != "MARKET":
            raise VenueError(400, -1116, "Invalid orderType.")
        if ("quantity" in params) == ("quoteOrderQty" in params):
            raise VenueError(
                400,
                -1102,
                "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
            )
        by_quote = "quoteOrderQty" in params
        try:
            amount = float(params["quoteOrderQty" if by_quote else "quantity"])
        except ValueError:
            raise VenueError(400, -1100, "Illegal characters found in a parameter.") from None
        if not np.isfinite(amount) or amount <= 0:
            raise VenueError(
                400, -1013, f"Filter failure: {'NOTIONAL' if by_quote else 'LOT_SIZE'}"
            )
        step = self.lot_steps.get(symbol)
        if step and not by_quote and Decimal(params["quantity"]) % Decimal(step) != 0:
            raise VenueError(400, -1013, "Filter failure: LOT_SIZE")
        quote_qty = amount if by_quote else None
        quantity = 0.0 if by_quote else amount
        client_id = params.get("newClientOrderId") or f"replay-{next(self.ids)}"
        if not 1 <= len(client_id) <= 36:
            raise VenueError(
                400, -1100, "Illegal characters found in parameter 'newClientOrderId'."
            )
        with self.lock:
            self.settle()
            if (account.api_key, client_id) in self.by_client:
                raise VenueError(400, -2010, "Duplicate order sent.")
            kind = fault["kind"] if fault else None
            if kind == "reject":
                raise VenueError(400, int(fault.get("code", -2010)), fault.get("msg", INSUFFICIENT))
            data = self.replay.series[symbol]
            now = self.now_ms()
            due = int(np.searchsorted(data.open_ms, now - self.grace_ms, "left"))
            if kind == "delayed":
                due += int(fault.get("bars", 1))
            if by_quote:
                pass  # sized at the fill, as far as the balance goes: nothing to check yet
            elif side == "SELL":
                if account.free.get(base, 0.0) < quantity * (1 - DUST):
                    raise VenueError(400, -2010, INSUFFICIENT)
                _move(account.free, account.locked, base, quantity)
            else:
                current = max(int(np.searchsorted(data.open_ms, now, "right")) - 1, 0)
                reference = float(data.ohlcv[min(current, len(data.ohlcv) - 1), 0])
                cost = quantity * reference * (1 + self.slippage) * (1 + self.fee)
                if account.free.get(quote, 0.0) < cost * (1 - DUST):
                    raise VenueError(400, -2010, INSUFFICIENT)
            order = Order(
                account.api_key,
                symbol,
                base,
                quote,
                side,
                next(self.ids),
                client_id,
                quantity,
                now,
                due,
                quote_qty=quote_qty,
                update_ms=now,
            )
            if kind == "partial":
                order.ratio = float(fault.get("ratio", 0.5))
                order.expire_rest = bool(fault.get("expire_rest", False))
            self.orders.append(order)
            self.working.append(order)
            self.by_client[(account.api_key, client_id)] = order
            self.settle()
            return order

    def settle(self) -> None:
        """Fill every open order whose fill bar the clock has reached."""
        with self.lock:
            now = self.now_ms()
            for order in self.working:
                while order.status in ("NEW", "PARTIALLY_FILLED"):
                    data = self.replay.series[order.symbol]
                    if order.fill_index >= len(data.open_ms):
                        break
                    if int(data.open_ms[order.fill_index]) > now:
                        break
                    self._fill(order, data)
            self.working = [o for o in self.working if o.status in ("NEW", "PARTIALLY_FILLED")]

    def _fill(self, order: Order, data) -> None:
        account = self.accounts[order.api_key]
        at = order.fill_index
        open_ms, open_price = int(data.open_ms[at]), float(data.ohlcv[at, 0])
        direction = 1.0 if order.side == "BUY" else -1.0
        price = open_price * (1.0 + self.slippage * direction)
        if order.quote_qty is not None and order.executed == 0:
            order.quantity = self._quote_sized(account, order, price)
            if order.quantity <= 0:
                order.status, order.reason = "EXPIRED", f"{INSUFFICIENT} (at the fill)"
                return
            if order.side == "SELL":
                _move(account.free, account.locked, order.base, order.quantity)
        rest = order.quantity - order.executed
        qty = rest if order.executed > 0 or order.ratio >= 1 else order.quantity * order.ratio
        notional = qty * price
        commission = notional * self.fee
        if self.fill_stamp == "arrival":
            open_ms = max(open_ms, order.arrival_ms)
        order.update_ms = open_ms
        if order.side == "BUY":
            if not _debit(account.free, order.quote, notional + commission):
                order.status = "EXPIRED"
                order.reason = f"{INSUFFICIENT} (at the fill, price {price!r})"
                return
            account.free[order.base] = account.free.get(order.base, 0.0) + qty
        else:
            _debit(account.locked, order.base, qty)
            account.free[order.quote] = account.free.get(order.quote, 0.0) + notional - commission
        account.update_ms = open_ms
        order.executed += qty
        order.cum_quote += notional
        self.trades.append(
            Trade(
                order.api_key,
                order.symbol,
                next(self.trade_ids),
                order.order_id,
                order.side,
                price,
                qty,
                commission,
                order.quote,
                open_ms,
            )
        )
        if order.executed >= order.quantity * (1 - DUST):
            order.status = "FILLED"
            return
        order.status = "PARTIALLY_FILLED"
        order.fill_index += 1
        if order.expire_rest:
            order.status = "EXPIRED"
            order.reason = "the rest found no liquidity (partial fill)"
            if order.side == "SELL":
                _move(account.locked, account.free, order.base, order.quantity - order.executed)

    def _quote_sized(self, account: Account, order: Order, price: float) -> float:
        """The base quantity of a quoteOrderQty order at its fill price, as far as the balance
        goes (the backtest's "weight x equity at the open, as far as the cash goes"; Binance
        itself would refuse a quote amount the balance cannot pay)."""
        quantity = order.quote_qty / price
        if order.side == "BUY":
            return min(quantity, account.free.get(order.quote, 0.0) / (price * (1.0 + self.fee)))
        return min(quantity, account.free.get(order.base, 0.0))  # spot: never short

    # --- queries -----------------------------------------------------------------------------

    def find(self, account: Account, params: dict) -> Order:
        with self.lock:
            self.settle()
            symbol = params.get("symbol")
            found = None
            if "origClientOrderId" in params:
                found = self.by_client.get((account.api_key, params["origClientOrderId"]))
            elif "orderId" in params:
                wanted = _int(params, "orderId")
                found = next(
                    (
                        o
                        for o in self.orders
                        if o.api_key == account.api_key and o.order_id == wanted
                    ),
                    None,
                )
            else:
                raise VenueError(
                    400,
                    -1102,
                    "Param 'origClientOrderId' or 'orderId' must be "
                    "sent, but both were empty/null!",
                )
            if found is None or found.symbol != symbol:
                raise VenueError(400, -2013, "Order does not exist.")
            return found

    def open_orders(self, account: Account, params: dict) -> list[Order]:
        with self.lock:
            self.settle()
            symbol = params.get("symbol")
            if symbol is not None and symbol not in self.replay.series:
                raise VenueError(400, -1121, "Invalid symbol.")
            return [
                o
                for o in self.orders
                if o.api_key == account.api_key
                and o.status in ("NEW", "PARTIALLY_FILLED")
                and (symbol is None or o.symbol == symbol)
            ]

    def all_orders(self, account: Account, params: dict) -> list[Order]:
        with self.lock:
            self.settle()
            symbol = _symbol(self, params)
            since = _int(params, "orderId", None)
            start, end = _window(params)
            mine = [
                o
                for o in self.orders
                if o.api_key == account.api_key
                and o.symbol == symbol
                and (since is None or o.order_id >= since)
                and (start is None or start <= o.arrival_ms <= end)
            ]
            return _page(mine, params, since is not None or start is not None)

    def my_trades(self, account: Account, params: dict) -> list[Trade]:
        with self.lock:
            self.settle()
            symbol = _symbol(self, params)
            since = _int(params, "fromId", None)
            order_id = _int(params, "orderId", None)
            start, end = _window(params)
            if since is not None and start is not None:
                raise VenueError(400, -1128, "Combination of optional parameters invalid.")
            mine = [
                t
                for t in self.trades
                if t.api_key == account.api_key
                and t.symbol == symbol
                and (since is None or t.trade_id >= since)
                and (order_id is None or t.order_id == order_id)
                and (start is None or start <= t.time_ms <= end)
            ]
            return _page(mine, params, since is not None or start is not None)

    def account_json(self, account: Account) -> dict:
        with self.lock:
            self.settle()
            fee_bps = round(self.fee * 1e4)
            return {
                "makerCommission": fee_bps,
                "takerCommission": fee_bps,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "updateTime": account.update_ms,
                "accountType": "SPOT",
                "balances": account.balance_rows(),
                "permissions": ["SPOT"],
            }


def _move(source: dict, target: dict, asset: str, amount: float) -> None:
    _debit(source, asset, amount)
    target[asset] = target.get(asset, 0.0) + amount


def _debit(book: dict, asset: str, amount: float) -> bool:
    """Take ``amount`` off ``book[asset]``; float dust below zero clears to zero."""
    have = book.get(asset, 0.0)
    if have < amount * (1 - DUST):
        return False
    book[asset] = max(have - amount, 0.0)
    return True


def _int(params: dict, name: str, default=...):
    if name not in params:
        if default is ...:
            raise VenueError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return default
    try:
        return int(params[name])
    except ValueError:
        raise VenueError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _symbol(venue: Venue, params: dict) -> str:
    symbol = params.get("symbol")
    if not symbol:
        raise VenueError(
            400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if symbol not in venue.replay.series:
        raise VenueError(400, -1121, "Invalid symbol.")
    return symbol


def _limit(params: dict) -> int:
    return max(1, min(_int(params, "limit", 500), 1000))


DAY_MS = 86_400_000


def _window(params: dict) -> tuple[int | None, int | None]:
    """startTime/endTime as Binance reads them: at most 24 hours apart; one alone means the 24
    hours after (or before) it."""
    start, end = _int(params, "startTime", None), _int(params, "endTime", None)
    if start is None and end is None:
        return None, None
    if start is not None and end is not None and end - start > DAY_MS:
        raise VenueError(400, -1127, "More than 24 hours between startTime and endTime.")
    start = end - DAY_MS if start is None else start
    return start, start + DAY_MS if end is None else end


def _page(rows: list, params: dict, from_a_point: bool) -> list:
    """The first ``limit`` rows from an id or time given, else the most recent ``limit``."""
    limit = _limit(params)
    return rows[:limit] if from_a_point else rows[-limit:]


def order_response(order: Order, venue: Venue, resp_type: str) -> dict:
    """The POST /api/v3/order answer in the requested shape (ACK, RESULT, FULL)."""
    ack = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_id,
        "transactTime": order.arrival_ms,
    }
    if resp_type == "ACK":
        return ack
    body = {**order.as_json(), **ack}
    for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty"):
        body.pop(key, None)
    if resp_type == "FULL":
        body["fills"] = [
            {
                "price": repr(t.price),
                "qty": repr(t.qty),
                "commission": repr(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in venue.trades
            if t.order_id == order.order_id
        ]
    return body
