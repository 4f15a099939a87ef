"""Exchange REST client for Binance-format klines, with retries inside a time budget.

Transient failures (timeouts, connection errors, 429 and Binance's 418 ban with ``Retry-After``,
5xx, a body that is not JSON, such as an HTML error page sent with 200) are retried with
exponential backoff and jitter, but never past the invocation's budget: a Lambda must end well
inside its timeout with what it stored so far kept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx
import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from trendcast.bar_store import Rejected
from trendcast.errors import TrendcastError
from trendcast.stages import stage

KLINES_PATH = "/api/v3/klines"
TIME_PATH = "/api/v3/time"
INFO_PATH = "/api/v3/exchangeInfo"
PAGE_LIMIT = 1000  # Binance's maximum for /api/v3/klines


class ExchangeError(TrendcastError):
    """The exchange failed in a way retries did not cure (or must not retry)."""


class BudgetExhausted(ExchangeError):
    """The invocation's time budget ran out; what was stored stays stored."""


class RetryableResponse(ExchangeError):
    def __init__(self, status: int, retry_after: float | None, text: str):
        super().__init__(f"exchange answered HTTP {status}: {text[:200]}")
        self.status = status
        self.retry_after = retry_after


class MalformedPayload(ExchangeError):
    def __init__(self, reason: str, text: str):
        super().__init__(reason)
        self.text = text


@dataclass
class Budget:
    """A deadline on the monotonic clock shared by every request of one invocation."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def check(self, need: float = 0.0) -> None:
        if self.remaining <= need:
            raise BudgetExhausted(f"time budget of {self.seconds:.0f} s used up")


@dataclass
class KlinePage:
    """One response: typed bars (not yet validated), malformed entries, and what was received."""

    frame: pd.DataFrame
    rejected: list[Rejected]
    received: int


def parse_klines(payload: object, origin: str) -> KlinePage:
    """Turn a klines JSON payload into a typed frame; entries that are not klines are rejected."""
    if not isinstance(payload, list):
        raise MalformedPayload(f"klines: expected a JSON list, got {type(payload).__name__}", "")
    rows, rejected = [], []
    for index, entry in enumerate(payload):
        if not isinstance(entry, list) or len(entry) < 6:
            rejected.append(
                Rejected(
                    "kline: expected a list of at least 6 fields", _payload(origin, index, entry)
                )
            )
            continue
        try:
            open_ms = int(entry[0])
            values = [float(entry[i]) for i in range(1, 6)]
        except (TypeError, ValueError):
            rejected.append(
                Rejected(
                    "kline: open time or a price is not a number", _payload(origin, index, entry)
                )
            )
            continue
        trades = entry[8] if len(entry) > 8 and isinstance(entry[8], int) else None
        rows.append((open_ms, *values, trades, index))
    frame = pd.DataFrame(
        rows, columns=["open_ms", "open", "high", "low", "close", "volume", "trades", "index"]
    )
    frame["open_time"] = pd.to_datetime(frame["open_ms"].astype("int64"), unit="ms", utc=True)
    frame["trades"] = frame["trades"].astype("float64")
    return KlinePage(frame=frame.drop(columns="open_ms"), rejected=rejected, received=len(payload))


def _payload(origin: str, index: int, entry: object) -> dict:
    return {"origin": origin, "row": index + 1, "values": entry}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class BinanceClient:
    """GET klines and server time from a Binance-compatible REST API."""

    def __init__(
        self,
        base_url: str,
        budget: Budget,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.http = httpx.Client(base_url=self.base_url, transport=transport)
        self.retries = 0
        self.malformed: list[Rejected] = []
        self.unreachable: str | None = None  # set once retries failed to connect
        self._listed: dict[str, bool] = {}

    def close(self) -> None:
        self.http.close()

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableResponse) and error.retry_after is not None:
            delay = error.retry_after
        else:
            delay = wait_random_exponential(multiplier=0.1, max=4.0)(state)
        try:
            self.budget.check(need=delay)  # never sleep past the deadline
        except BudgetExhausted as exc:
            last = f"{type(error).__name__}: {error}" if error else "none"
            message = (
                f"{exc} after {state.attempt_number} attempt(s) on {self.base_url}; last: {last}"
            )
            if isinstance(error, (httpx.TimeoutException, httpx.TransportError)):
                self.unreachable = f"exchange at {self.base_url} unreachable ({message})"
                raise BudgetExhausted(self.unreachable) from None
            raise BudgetExhausted(message) from None
        return delay

    def _get_json(self, path: str, params: dict) -> object:
        def attempt() -> object:
            self.budget.check(need=0.05)
            timeout = min(self.timeout_s, self.budget.remaining)
            with stage("exchange request"):
                response = self.http.get(path, params=params, timeout=timeout)
            if response.status_code in (418, 429) or response.status_code >= 500:
                raise RetryableResponse(response.status_code, _retry_after(response), response.text)
            if response.status_code >= 400:
                raise ExchangeError(
                    f"exchange refused {path} {params}: HTTP {response.status_code} "
                    f"{response.text[:200]}"
                )
            try:
                return response.json()
            except json.JSONDecodeError as exc:
                raise MalformedPayload(
                    f"malformed JSON from {path}: {exc}", response.text
                ) from None

        retrying = Retrying(
            retry=retry_if_exception_type(
                (httpx.TimeoutException, httpx.TransportError, RetryableResponse, MalformedPayload)
            ),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        if self.unreachable:  # do not spend the budget again on every series
            raise ExchangeError(self.unreachable)
        try:
            return retrying(attempt)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            self.unreachable = f"exchange at {self.base_url} unreachable: {exc!r}"
            raise ExchangeError(self.unreachable) from None
        except MalformedPayload as exc:  # still malformed on the last attempt
            self.malformed.append(
                Rejected(str(exc), {"origin": self.base_url, "text": exc.text[:10_000]})
            )
            raise ExchangeError(f"{exc} (after {self.max_attempts} attempts)") from None

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, MalformedPayload):
            self.malformed.append(
                Rejected(str(error), {"origin": self.base_url, "text": error.text[:10_000]})
            )

    def server_time(self) -> pd.Timestamp:
        body = self._get_json(TIME_PATH, {})
        if not isinstance(body, dict) or not isinstance(body.get("serverTime"), int):
            raise ExchangeError(f"exchange time: expected {{'serverTime': ms}}, got {body!r:.100}")
        return pd.Timestamp(body["serverTime"], unit="ms", tz="UTC")

    def listed(self, symbol: str) -> bool:
        """Whether the exchange lists ``symbol`` (``exchangeInfo``; cached per client, which
        lives for one invocation). Binance answers an unknown symbol with code -1121."""
        if symbol not in self._listed:
            try:
                body = self._get_json(INFO_PATH, {"symbol": symbol})
            except ExchangeError as exc:
                if "-1121" in str(exc):
                    self._listed[symbol] = False
                    return False
                raise
            listing = body.get("symbols", []) if isinstance(body, dict) else []
            names = {item.get("symbol") for item in listing if isinstance(item, dict)}
            self._listed[symbol] = symbol in names
        return self._listed[symbol]

    def klines(
        self, symbol: str, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> KlinePage:
        """One page of klines with open_time in [start, end], at most PAGE_LIMIT of them."""
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": int(start.value // 1_000_000),
            "endTime": int(end.value // 1_000_000),
            "limit": PAGE_LIMIT,
        }
        payload = self._get_json(KLINES_PATH, params)
        try:
            return parse_klines(payload, f"{self.base_url}{KLINES_PATH}")
        except MalformedPayload as exc:
            text = json.dumps(payload, default=str)[:10_000]
            self.malformed.append(Rejected(str(exc), {"origin": self.base_url, "text": text}))
            return KlinePage(frame=parse_klines([], "").frame, rejected=[], received=0)
