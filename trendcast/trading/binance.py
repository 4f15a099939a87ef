"""The ``binance`` broker: the Broker protocol over Binance's spot REST API.

A thin client of our own (httpx + tenacity), not ccxt, because what this adapter must guarantee
sits exactly where ccxt decides for us: ccxt rounds every amount to the market's precision
filters before sending it (which would break the 1e-9 parity with the backtest against the
replay), its exceptions do not carry the Retry-After a 429 asks for, and its market loading
needs the full exchangeInfo schema (and sapi endpoints the testnet lacks) before the first
order. Four signed endpoints do not need a framework.

Guarantees:
- Every request is signed (HMAC-SHA256 of the query string, ``X-MBX-APIKEY`` header) with a
  fresh ``timestamp`` from this machine's clock and ``recvWindow``.
- 429/418 are retried after the Retry-After the venue sent; 5xx, timeouts and dropped
  connections are retried with backoff; when the tries run out the call raises
  ``VenueUnavailable`` naming the venue's code and message.
- **No duplicate order**: orders carry the runner's client order id; when a submit's outcome is
  unknown (5xx, connection lost after sending), the order is looked up by that id *before* any
  resubmission, and a "Duplicate order sent." answer returns the order the venue already has.
- A base quantity is rounded down to the symbol's LOT_SIZE step when exchangeInfo publishes one
  (the replay publishes none unless told, so parity with the backtest stays exact); the
  executed quantity the venue reports is what the runner records.
- An order with ``quote_quantity`` is sent as Binance's ``quoteOrderQty`` (spend or raise this
  much quote currency); its base quantity is known once it fills (``OrderState.quantity`` is 0
  until then, as Binance reports ``origQty``).
- A refusal (4xx with a Binance code) raises ``OrderRejected("binance -2010: ...")``; the
  exception's ``code`` and ``venue_msg`` attributes hold the venue's code and message.

Symbols are ours and Binance's at once (BTCUSDT, EURUSD); base and quote assets come from
``trendcast.trading.symbols.split_symbol``. Fees are reported in the quote asset: a commission
charged in the base asset is converted at the fill price; one in a third asset (BNB) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from urllib.parse import urlencode

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from trendcast.config import Settings, get_settings
from trendcast.errors import InputError
from trendcast.trading.broker import (
    Fill,
    OrderRejected,
    OrderRequest,
    OrderState,
    VenueUnavailable,
)
from trendcast.trading.symbols import split_symbol

DUPLICATE = "Duplicate order sent."
NO_SUCH_ORDER = -2013
PAGE = 1000


class _Transient(Exception):
    """A failure worth retrying: throttled (``retry_after`` set), 5xx, or no answer."""

    def __init__(self, text: str, code: int | None = None, retry_after: float | None = None):
        super().__init__(text)
        self.code, self.retry_after = code, retry_after


class _Unknown(_Transient):
    """The request may have been processed (5xx, connection lost): outcome unknown."""


class _Refused(Exception):
    """The venue answered with a Binance error (4xx): nothing was done."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(f"binance {code}: {msg}")
        self.status, self.code, self.msg = status, code, msg


def _wait(max_wait_s: float):
    def wait(state) -> float:
        error = state.outcome.exception()
        if getattr(error, "retry_after", None) is not None:
            return min(float(error.retry_after), max_wait_s)
        return min(0.1 * 2 ** (state.attempt_number - 1), 2.0, max_wait_s)

    return wait


def decimal_text(value: float) -> str:
    """A float as a plain decimal string (Binance refuses 1e-05), exactly its repr's value."""
    return format(Decimal(repr(float(value))), "f")


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _rejected(error: _Refused) -> OrderRejected:
    rejected = OrderRejected(str(error))
    rejected.code, rejected.venue_msg = error.code, error.msg
    return rejected


def _unavailable(text: str, error: Exception) -> VenueUnavailable:
    failure = VenueUnavailable(f"{text}: {error}")
    failure.code = getattr(error, "code", None)
    return failure


class BinanceBroker:
    """A Binance spot account (or the exchange replay, which speaks the same API)."""

    name = "binance"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        recv_window_ms: int = 5000,
        timeout_s: float = 5.0,
        attempts: int = 4,
        max_wait_s: float = 60.0,
    ) -> None:
        if not api_key or not api_secret:
            raise InputError("binance broker: api_key and api_secret must both be set")
        self.base_url = base_url.rstrip("/")
        self._secret = api_secret.encode()
        self.recv_window_ms = recv_window_ms
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self.client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, headers={"X-MBX-APIKEY": api_key}
        )
        self._steps: dict[str, Decimal | None] = {}  # LOT_SIZE stepSize per symbol
        self.page = PAGE  # rows per allOrders / myTrades request (Binance's maximum)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> BinanceBroker:
        """The broker the settings describe: TRENDCAST_BINANCE_BASE_URL (the testnet unless
        set), keys from TRENDCAST_BINANCE_API_KEY/_SECRET or the Secrets Manager secret."""
        settings = settings or get_settings()
        key, secret = credentials(settings)
        return cls(
            settings.binance_base_url,
            key,
            secret,
            recv_window_ms=settings.binance_recv_window_ms,
            timeout_s=settings.binance_timeout_s,
            attempts=settings.binance_attempts,
        )

    def close(self) -> None:
        self.client.close()

    # --- the wire ----------------------------------------------------------------------------

    def _once(self, method: str, path: str, params: dict) -> object:
        """One signed request; raises _Transient, _Unknown or _Refused."""
        signed = {
            **params,
            "recvWindow": self.recv_window_ms,
            "timestamp": int(time.time() * 1000),
        }
        query = urlencode(signed)
        signature = hmac.new(self._secret, query.encode(), hashlib.sha256).hexdigest()
        try:
            response = self.client.request(method, f"{path}?{query}&signature={signature}")
        except httpx.HTTPError as error:  # refused, reset, timed out, closed without answer
            raise _Unknown(f"{method} {path}: {type(error).__name__}: {error}") from error
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        msg = body.get("msg") if isinstance(body, dict) else response.text[:200]
        if response.status_code in (418, 429):
            after = response.headers.get("Retry-After")
            raise _Transient(
                f"binance {code}: {msg} (HTTP {response.status_code})",
                code,
                float(after) if after else 1.0,
            )
        if response.status_code >= 500:
            raise _Unknown(f"binance {code}: {msg} (HTTP {response.status_code})", code)
        if response.status_code >= 400:
            raise _Refused(response.status_code, int(code) if code is not None else 0, str(msg))
        if body is None:
            raise _Unknown(f"{method} {path}: the answer is not JSON")
        return body

    def _public(self, path: str, params: dict) -> object:
        """An unsigned GET (market data), retried like a query."""

        def once() -> object:
            try:
                response = self.client.get(path, params=params)
            except httpx.HTTPError as error:
                raise _Unknown(f"GET {path}: {type(error).__name__}: {error}") from error
            if response.status_code in (418, 429):
                raise _Transient(
                    f"GET {path}: HTTP {response.status_code}",
                    None,
                    float(response.headers.get("Retry-After") or 1),
                )
            if response.status_code >= 400:
                raise _Unknown(f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
            return response.json()

        try:
            return self._retrying()(once)
        except _Transient as error:
            raise _unavailable(f"binance {path} after {self.attempts} tries", error) from error

    def lot_step(self, symbol: str) -> Decimal | None:
        """The symbol's LOT_SIZE stepSize from exchangeInfo (cached), or None without one."""
        if symbol not in self._steps:
            info = self._public("/api/v3/exchangeInfo", {"symbol": symbol})
            filters = next((s.get("filters", []) for s in info.get("symbols", [])), [])
            step = next((f["stepSize"] for f in filters if f["filterType"] == "LOT_SIZE"), None)
            self._steps[symbol] = Decimal(step) if step and Decimal(step) > 0 else None
        return self._steps[symbol]

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.attempts),
            wait=_wait(self.max_wait_s),
            reraise=True,
        )

    def _call(self, method: str, path: str, params: dict) -> object:
        """A query (safe to repeat), retried; failures as VenueUnavailable."""
        try:
            return self._retrying()(self._once, method, path, params)
        except _Transient as error:
            raise _unavailable(f"binance {path} after {self.attempts} tries", error) from error
        except _Refused as error:
            raise _unavailable(f"binance {path} refused", error) from error

    # --- the Broker protocol -----------------------------------------------------------------

    def submit(self, order: OrderRequest) -> OrderState:
        """Place a market order; never places a second order for one client order id."""
        split_symbol(order.symbol)  # refuse a symbol we cannot split before anything is sent
        quote = order.quote_quantity
        if quote is not None:
            if not quote > 0:
                raise InputError(f"quote_quantity {quote}: must be > 0")
            size = {"quoteOrderQty": decimal_text(quote)}
        elif not order.quantity > 0:
            raise InputError(f"quantity {order.quantity}: must be > 0")
        else:
            size = {"quantity": self._lot(order)}
        params = {
            "symbol": order.symbol,
            "side": order.side.upper(),
            "type": "MARKET",
            **size,
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "RESULT",
        }
        uncertain = False

        def attempt() -> OrderState:
            nonlocal uncertain
            if uncertain:  # the last try may have placed it: ask before sending again
                found = self.order(order.symbol, order.client_order_id)
                if found is not None:
                    return found
            try:
                return _state(self._once("POST", "/api/v3/order", params))
            except _Unknown:
                uncertain = True
                raise

        try:
            return self._retrying()(attempt)
        except _Transient as error:
            raise _unavailable(
                f"binance order {order.client_order_id}: outcome unknown after "
                f"{self.attempts} tries",
                error,
            ) from error
        except _Refused as error:
            if error.code == -2010 and error.msg == DUPLICATE:
                found = self.order(order.symbol, order.client_order_id)
                if found is not None:
                    return found
            raise _rejected(error) from error

    def _lot(self, order: OrderRequest) -> str:
        """The quantity rounded down to the symbol's lot step (Binance refuses any other)."""
        quantity = Decimal(decimal_text(order.quantity))
        step = self.lot_step(order.symbol)
        if step is not None:
            quantity = (quantity / step).to_integral_value(rounding=ROUND_DOWN) * step
            if quantity <= 0:
                rejected = OrderRejected(
                    f"binance LOT_SIZE: quantity {order.quantity} of {order.symbol} is below "
                    f"its lot step {step}; nothing sent"
                )
                rejected.code, rejected.venue_msg = -1013, "Filter failure: LOT_SIZE"
                raise rejected
        return format(quantity.normalize(), "f")

    def order(self, symbol: str, client_order_id: str) -> OrderState | None:
        params = {"symbol": symbol, "origClientOrderId": client_order_id}
        try:
            body = self._retrying()(self._once, "GET", "/api/v3/order", params)
        except _Refused as error:
            if error.code == NO_SUCH_ORDER:
                return None
            raise _unavailable("binance order query refused", error) from error
        except _Transient as error:
            raise _unavailable(f"binance order query after {self.attempts} tries", error) from error
        return _state(body)

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        params = {"symbol": symbol} if symbol else {}
        return [_state(o) for o in self._call("GET", "/api/v3/openOrders", params)]

    def all_orders(self, symbol: str) -> list[dict]:
        """Every order on ``symbol`` as the venue reports it (oldest first)."""
        orders: list[dict] = []
        after = 0
        while True:
            page = self._call(
                "GET", "/api/v3/allOrders", {"symbol": symbol, "orderId": after, "limit": self.page}
            )
            orders += page
            if len(page) < self.page:
                return orders
            after = int(page[-1]["orderId"]) + 1

    def fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        base, quote = split_symbol(symbol)
        client_ids = {int(o["orderId"]): o["clientOrderId"] for o in self.all_orders(symbol)}
        # paged by trade id from the first: Binance reads startTime as a 24-hour window and
        # refuses it together with fromId, so ``since`` is applied here
        trades: list[dict] = []
        after = 0
        while True:
            page = self._call(
                "GET", "/api/v3/myTrades", {"symbol": symbol, "fromId": after, "limit": self.page}
            )
            trades += page
            if len(page) < self.page:
                break
            after = int(page[-1]["id"]) + 1
        if since is not None:
            trades = [t for t in trades if int(t["time"]) >= _ms(since)]
        fills = [_fill(t, client_ids, base, quote) for t in trades]
        return sorted(fills, key=lambda f: (f.time, int(f.venue_trade_id)))

    def balances(self) -> dict[str, float]:
        body = self._call("GET", "/api/v3/account", {"omitZeroBalances": "true"})
        return {row["asset"]: float(row["free"]) + float(row["locked"]) for row in body["balances"]}


def _state(body: dict) -> OrderState:
    return OrderState(
        client_order_id=body["clientOrderId"],
        venue_order_id=str(body["orderId"]),
        symbol=body["symbol"],
        side=body["side"].lower(),
        quantity=float(body["origQty"]),
        filled_quantity=float(body["executedQty"]),
        status=body["status"].lower(),
        reason=body.get("expiryReason"),
    )


def _fill(trade: dict, client_ids: dict[int, str], base: str, quote: str) -> Fill:
    price, commission = float(trade["price"]), float(trade["commission"])
    if trade["commissionAsset"] == base:
        commission *= price
    elif trade["commissionAsset"] != quote:
        raise InputError(
            f"binance trade {trade['id']}: fee paid in {trade['commissionAsset']}; pay fees in "
            f"{base} or {quote} (turn the BNB fee discount off) so fills price them"
        )
    return Fill(
        client_order_id=client_ids.get(int(trade["orderId"]), str(trade["orderId"])),
        venue_trade_id=str(trade["id"]),
        symbol=trade["symbol"],
        side="buy" if trade["isBuyer"] else "sell",
        quantity=float(trade["qty"]),
        price=price,
        fee=commission,
        time=_time(int(trade["time"])),
    )


def credentials(settings: Settings) -> tuple[str, str]:
    """(api key, api secret) from the settings, else from the Secrets Manager secret."""
    if settings.binance_api_key and settings.binance_api_secret:
        return settings.binance_api_key, settings.binance_api_secret.get_secret_value()
    if settings.binance_secret_arn:
        import boto3

        raw = boto3.client("secretsmanager").get_secret_value(SecretId=settings.binance_secret_arn)[
            "SecretString"
        ]
        try:
            secret = json.loads(raw)
            return str(secret["api_key"]), str(secret["api_secret"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(
                f"binance secret {settings.binance_secret_arn}: must be JSON with api_key and "
                "api_secret"
            ) from None
    raise InputError(
        "binance broker: no API keys; set TRENDCAST_BINANCE_API_KEY and "
        "TRENDCAST_BINANCE_API_SECRET, or TRENDCAST_BINANCE_SECRET_ARN"
    )
