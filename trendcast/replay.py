"""Exchange replay: real historical bars served in Binance's klines format with a moving clock.

The clock starts at a chosen data time and runs ``speed`` data-seconds per wall-second, so bars
"close" as the clock passes them and the whole live path (schedule → Lambda → market.bars) runs
offline. Like the real exchange it also returns the still-open bar, with partial values, so a
client that stores it is caught. Faults are queued over HTTP and consumed one per klines request:

    POST /replay/faults  {"faults": [{"kind": "429", "retry_after": 1}, {"kind": "drop"}]}

kinds: none (pass one request through), 429 and 418 (``retry_after``, sent as Retry-After), 500,
slow (``delay_s``), malformed (invalid JSON), html (an HTML page with status 200), reset (the
connection closed mid-body), empty (``[]``), duplicate (repeat bars), conflicting_duplicate (a
second copy of bar ``index`` with another close), shuffle (out of order), drop (omit bar
``index``), withhold (omit bar ``index`` from this and the next ``requests`` - 1 responses that
would hold it), bad_bar (bar ``index`` with high < low). ``random_faults`` builds a seeded list.

The order side (accounts, signed order endpoints, the matching engine and its own fault queue,
``/replay/accounts``, ``/replay/order-faults``, ``/replay/execution``) lives in
``trendcast.replay_orders``; the klines faults above never touch orders and vice versa.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from trendcast.errors import InputError
from trendcast.gaps import step_offset
from trendcast.replay_orders import ConnectionLost, Venue, VenueError, order_response
from trendcast.schema import INTERVALS

FAULT_KINDS = (
    "none",
    "429",
    "418",
    "500",
    "slow",
    "malformed",
    "html",
    "reset",
    "empty",
    "duplicate",
    "conflicting_duplicate",
    "shuffle",
    "drop",
    "withhold",
    "bad_bar",
)


@dataclass
class SeriesData:
    """One symbol's bars as arrays (open time in ms) for fast slicing."""

    open_ms: np.ndarray
    ohlcv: np.ndarray  # shape (n, 5): open, high, low, close, volume
    trades: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SeriesData:
        frame = frame.sort_values("open_time").drop_duplicates("open_time")
        trades = frame["trades"] if "trades" in frame else pd.Series(0, index=frame.index)
        return cls(
            open_ms=frame["open_time"].to_numpy(dtype="datetime64[ms]").view("int64"),
            ohlcv=frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype="float64"),
            trades=trades.fillna(0).to_numpy(dtype="int64"),
        )


@dataclass
class ReplayClock:
    """Data time = start + (wall seconds since the anchor) x speed; can be set or advanced."""

    start: pd.Timestamp
    speed: float = 1.0
    anchor: float = field(default_factory=time.monotonic)

    def now(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=(time.monotonic() - self.anchor) * self.speed)

    def set(self, when: pd.Timestamp) -> None:
        self.start, self.anchor = when, time.monotonic()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + pd.Timedelta(seconds=seconds))


class Replay:
    """The exchange state: data per symbol, one interval, a clock and a queue of faults."""

    def __init__(
        self,
        data: dict[str, pd.DataFrame],
        interval: str,
        clock: ReplayClock,
        fee: float = 0.001,
        slippage: float = 0.0,
        fill_grace_s: float = 0.0,
    ):
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not a Binance interval")
        self.series = {symbol: SeriesData.from_frame(f) for symbol, f in data.items()}
        self.interval = interval
        self.clock = clock
        self.faults: deque[dict] = deque()
        self.lock = threading.Lock()
        self.requests = 0
        self.rng = random.Random(7)
        self.withheld: dict[tuple[str, int], int] = {}  # (symbol, open ms) -> responses left
        self.venue = Venue(
            self, fee, slippage, fill_grace_s
        )  # the order side: accounts, orders, trades

    def interval_ms(self, at_ms: int) -> int:
        length = INTERVALS[self.interval]
        if length is not None:
            return int(length.total_seconds() * 1000)
        start = pd.Timestamp(at_ms, unit="ms", tz="UTC")
        return int((start + step_offset(self.interval) - start).total_seconds() * 1000)

    def take_fault(self) -> dict | None:
        with self.lock:
            self.requests += 1
            return self.faults.popleft() if self.faults else None

    def klines(self, symbol: str, start_ms: int | None, end_ms: int | None, limit: int) -> list:
        data = self.series[symbol]
        now_ms = int(self.clock.now().value // 1_000_000)
        lo = 0 if start_ms is None else int(np.searchsorted(data.open_ms, start_ms, "left"))
        upper = now_ms if end_ms is None else min(end_ms, now_ms)
        hi = int(np.searchsorted(data.open_ms, upper, "right"))
        hi = min(hi, lo + limit)
        rows = []
        for i in range(lo, hi):
            open_ms = int(data.open_ms[i])
            length = self.interval_ms(open_ms)
            o, h, lo_, c, v = (float(x) for x in data.ohlcv[i])
            if open_ms + length > now_ms:  # still open: partial values, as a live exchange shows
                fraction = (now_ms - open_ms) / length
                h, lo_, c, v = max(o, (o + c) / 2), min(o, (o + c) / 2), (o + c) / 2, v * fraction
            rows.append(kline(open_ms, length, o, h, lo_, c, v, int(data.trades[i])))
        return rows


def kline(open_ms: int, length_ms: int, o, h, low, c, v, trades: int) -> list:
    """One entry in Binance's klines layout (prices and volumes as strings)."""
    return [
        open_ms,
        repr(o),
        repr(h),
        repr(low),
        repr(c),
        repr(v),
        open_ms + length_ms - 1,
        repr(c * v),
        trades,
        repr(v / 2),
        repr(c * v / 2),
        "0",
    ]


def apply_fault(fault: dict, rows: list, rng: random.Random) -> list:
    kind = fault["kind"]
    if kind == "conflicting_duplicate" and rows:
        rows = [row[:] for row in rows]
        at = fault.get("index", 0) % len(rows)
        twin = rows[at][:]
        close = float(twin[4]) * 1.001
        twin[4], twin[2] = repr(close), repr(max(float(twin[2]), close))
        rows.insert(at + rng.randint(0, 1), twin)  # before or after the real one
    elif kind == "duplicate" and rows:
        rows = rows + rows[: max(1, len(rows) // 3)]
    elif kind == "shuffle":
        rows = rows[:]
        rng.shuffle(rows)
    elif kind == "drop" and rows:
        rows = rows[:]
        rows.pop(fault.get("index", len(rows) // 2) % len(rows))
    elif kind == "bad_bar" and rows:
        rows = [row[:] for row in rows]
        bad = rows[fault.get("index", 0) % len(rows)]
        bad[2], bad[3] = bad[3], str(float(bad[2]) + 1.0)  # high below low
    return rows


def random_faults(seed: int, count: int, rate: float = 0.3, kinds=None) -> list[dict]:
    """A reproducible list of ``count`` faults (``none`` where no fault is drawn), one per
    klines request, for tests that let chance pick the failures."""
    rng = random.Random(seed)
    kinds = list(kinds or [k for k in FAULT_KINDS if k not in {"none", "slow"}])
    faults = []
    for _ in range(count):
        if rng.random() >= rate:
            faults.append({"kind": "none"})
            continue
        kind = rng.choice(kinds)
        fault: dict = {"kind": kind, "index": rng.randrange(1000)}
        if kind in {"429", "418"}:
            fault["retry_after"] = 0.2
        if kind == "withhold":
            fault["requests"] = rng.randint(1, 3)
        faults.append(fault)
    return faults


#: Signed endpoints: (method, path) -> the name order faults use for it.
SIGNED = {
    ("POST", "/api/v3/order"): "order",
    ("GET", "/api/v3/order"): "getOrder",
    ("GET", "/api/v3/openOrders"): "openOrders",
    ("GET", "/api/v3/allOrders"): "allOrders",
    ("GET", "/api/v3/account"): "account",
    ("GET", "/api/v3/myTrades"): "myTrades",
}


def make_handler(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args) -> None:  # quiet: tests hammer it
            pass

        def _send(self, status: int, body: object, headers: dict | None = None, raw=None):
            data = raw if raw is not None else json.dumps(body).encode()
            headers = dict(headers or {})
            self.send_response(status)
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, msg: str, status: int = 400) -> None:
            self._send(status, {"code": code, "msg": msg})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if ("GET", url.path) in SIGNED:
                self._signed(SIGNED[("GET", url.path)], url.query, "")
            elif url.path == "/api/v3/ping":
                self._send(200, {})
            elif url.path == "/api/v3/time":
                self._send(200, {"serverTime": int(replay.clock.now().value // 1_000_000)})
            elif url.path == "/api/v3/klines":
                self._klines(query)
            elif url.path == "/api/v3/exchangeInfo":
                self._exchange_info(query)
            elif url.path == "/replay/state":
                self._send(200, self._state())
            elif url.path == "/replay/faults":
                self._send(200, {"faults": list(replay.faults)})
            elif url.path == "/replay/accounts":
                self._send(200, replay.venue.summary())
            elif url.path == "/replay/order-faults":
                self._send(200, {"faults": list(replay.venue.faults)})
            elif url.path == "/replay/execution":
                self._send(200, self._execution())
            else:
                self._error(-1000, f"unknown path {url.path}", 404)

        def _execution(self) -> dict:
            venue = replay.venue
            return {
                "fee": venue.fee,
                "slippage": venue.slippage,
                "fill_grace_s": venue.grace_ms / 1000,
                "lot_steps": dict(venue.lot_steps),
                "fill_stamp": venue.fill_stamp,
            }

        def _state(self) -> dict:
            return {
                "clock": replay.clock.now().isoformat(),
                "speed": replay.clock.speed,
                "interval": replay.interval,
                "symbols": {s: len(d.open_ms) for s, d in replay.series.items()},
                "requests": replay.requests,
                "pending_faults": len(replay.faults),
            }

        def _exchange_info(self, query: dict) -> None:
            names = list(replay.series)
            if "symbol" in query:
                if query["symbol"] not in replay.series:
                    return self._error(-1121, "Invalid symbol.")
                names = [query["symbol"]]
            symbols = [replay.venue.symbol_info(n) for n in names]
            self._send(200, {"timezone": "UTC", "symbols": symbols})

        def _klines(self, query: dict) -> None:
            symbol = query.get("symbol", "")
            if symbol not in replay.series:
                return self._error(-1121, "Invalid symbol.")
            if query.get("interval") != replay.interval:
                return self._error(
                    -1120, f"Invalid interval; this replay serves {replay.interval}."
                )
            try:
                start = int(query["startTime"]) if "startTime" in query else None
                end = int(query["endTime"]) if "endTime" in query else None
                limit = min(int(query.get("limit", 500)), 1000)
            except ValueError:
                return self._error(-1100, "Illegal characters found in a parameter.")
            fault = replay.take_fault()
            kind = fault["kind"] if fault else None
            if kind == "429":
                retry = str(fault.get("retry_after", 1))
                return self._send(
                    429, {"code": -1003, "msg": "Too many requests."}, {"Retry-After": retry}
                )
            if kind == "500":
                return self._error(-1000, "An unknown error occurred.", 500)
            if kind == "slow":
                time.sleep(float(fault.get("delay_s", 10)))
            if kind == "418":
                retry = str(fault.get("retry_after", 1))
                return self._send(
                    418, {"code": -1003, "msg": "Way too many requests; IP banned."},
                    {"Retry-After": retry},
                )  # fmt: skip
            if kind == "html":
                page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                return self._send(200, None, {"Content-Type": "text/html"}, raw=page)
            if kind == "empty":
                return self._send(200, [])
            rows = replay.klines(symbol, start, end, limit)
            rows = self._withhold(symbol, fault, rows)
            if kind == "reset":
                body = json.dumps(rows).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if kind == "malformed":
                return self._send(200, None, raw=json.dumps(rows).encode()[:-7] + b"{oops")
            if fault:
                rows = apply_fault(fault, rows, replay.rng)
            self._send(200, rows)

        def _withhold(self, symbol: str, fault: dict | None, rows: list) -> list:
            """Install a withhold fault, then omit every withheld bar still owed."""
            with replay.lock:
                if fault and fault["kind"] == "withhold" and rows:
                    chosen = fault.get("open_times") or [rows[fault.get("index", 0) % len(rows)][0]]
                    for at in chosen:
                        replay.withheld[(symbol, int(at))] = int(fault.get("requests", 2))
                kept = []
                for row in rows:
                    left = replay.withheld.get((symbol, row[0]), 0)
                    if left > 0:
                        replay.withheld[(symbol, row[0])] = left - 1
                        continue
                    kept.append(row)
                return kept

        def _signed(self, endpoint: str, query: str, body: str) -> None:
            """A signed Binance endpoint: authenticate, apply the next order fault, answer."""
            venue = replay.venue
            try:
                account, params = venue.authenticate(self.headers.get("X-MBX-APIKEY"), query, body)
                fault = venue.take_fault(endpoint)
                kind = fault["kind"] if fault else None
                if kind == "429":
                    retry = {"Retry-After": str(fault.get("retry_after", 1))}
                    raise VenueError(429, -1003, "Too many requests.", retry)
                status = int(fault.get("status", 500)) if kind == "500" else 500
                if kind == "500" and not fault.get("placed"):
                    raise VenueError(status, -1000, "An unknown error occurred.")
                if endpoint == "order":
                    order = venue.place(account, params, fault)
                    result: object = order_response(
                        order, venue, params.get("newOrderRespType", "FULL")
                    )
                elif endpoint == "getOrder":
                    result = venue.find(account, params).as_json()
                elif endpoint == "openOrders":
                    result = [o.as_json() for o in venue.open_orders(account, params)]
                elif endpoint == "allOrders":
                    result = [o.as_json() for o in venue.all_orders(account, params)]
                elif endpoint == "account":
                    result = venue.account_json(account)
                else:
                    result = [t.as_json() for t in venue.my_trades(account, params)]
                if kind == "duplicate":
                    raise VenueError(400, -2010, "Duplicate order sent.")
                if kind == "500":
                    raise VenueError(status, -1006, "An unexpected response was received from "
                                     "the message bus. Execution status unknown.")  # fmt: skip
                if kind == "lost":
                    raise ConnectionLost
                self._send(200, result)
            except VenueError as error:
                self._send(error.status, {"code": error.code, "msg": error.msg}, error.headers)
            except ConnectionLost:  # processed, but the client never hears back
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def _admin(self, path: str, body: dict) -> None:
            """The order side's admin API (accounts, order faults, execution costs)."""
            venue = replay.venue
            try:
                if path == "/replay/accounts":
                    account = venue.seed(
                        str(body.get("api_key", "")),
                        str(body.get("api_secret", "")),
                        dict(body.get("balances") or {}),
                    )
                    self._send(200, {"api_key": account.api_key,
                                     "balances": account.balance_rows()})  # fmt: skip
                elif path == "/replay/order-faults":
                    pending = venue.queue_faults(list(body.get("faults", [])))
                    self._send(200, {"queued": len(body.get("faults", [])), "pending": pending})
                else:
                    costs = (
                        float(body.get("fee", venue.fee)),
                        float(body.get("slippage", venue.slippage)),
                        float(body.get("fill_grace_s", venue.grace_ms / 1000)),
                    )
                    venue.check_costs(*costs)  # all checked before anything changes
                    if body.get("fill_stamp", venue.fill_stamp) not in ("open", "arrival"):
                        venue.set_fill_stamp(body["fill_stamp"])  # raises, naming the rule
                    venue.set_lot_steps(dict(body.get("lot_steps") or {}))
                    venue.set_fill_stamp(body.get("fill_stamp", venue.fill_stamp))
                    venue.set_costs(*costs)
                    self._send(200, self._execution())
            except (InputError, TypeError, ValueError) as error:
                self._error(-1, str(error))

        def do_POST(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if ("POST", url.path) in SIGNED:
                return self._signed(SIGNED[("POST", url.path)], url.query, raw.decode())
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._error(-1, "body is not JSON")
            if url.path in ("/replay/accounts", "/replay/order-faults", "/replay/execution"):
                return self._admin(url.path, body)
            if url.path == "/replay/faults":
                faults = body.get("faults", [])
                unknown = [f for f in faults if f.get("kind") not in FAULT_KINDS]
                if unknown:
                    return self._error(-1, f"unknown fault kind in {unknown}; known: {FAULT_KINDS}")
                with replay.lock:
                    replay.faults.extend(faults)
                self._send(200, {"queued": len(faults), "pending": len(replay.faults)})
            elif url.path == "/replay/clock":
                if "set" in body:
                    replay.clock.set(pd.Timestamp(body["set"]).tz_convert("UTC"))
                if "advance_s" in body:
                    replay.clock.advance(float(body["advance_s"]))
                if "speed" in body:
                    replay.clock.set(replay.clock.now())
                    replay.clock.speed = float(body["speed"])
                self._send(200, self._state())
            else:
                self._error(-1000, f"unknown path {url.path}", 404)

        def do_DELETE(self) -> None:
            if urlparse(self.path).path == "/replay/order-faults":
                with replay.venue.lock:
                    replay.venue.faults.clear()
                return self._send(200, {"pending": 0})
            if urlparse(self.path).path == "/replay/faults":
                with replay.lock:
                    replay.faults.clear()
                    replay.withheld.clear()  # faults stop: withheld bars are served again
                return self._send(200, {"pending": 0})
            self._error(-1000, "unknown path", 404)

    return Handler


def serve(replay: Replay, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the server (port 0 picks a free one); call ``serve_forever`` to run it."""
    server = ThreadingHTTPServer((host, port), make_handler(replay))
    server.daemon_threads = True
    return server


def start_in_thread(replay: Replay, host: str = "127.0.0.1", port: int = 0):
    """For tests and benchmarks: serve in a daemon thread; returns (server, base_url)."""
    server = serve(replay, host, port)
    # a short poll: shutdown() waits up to one poll interval, once per test that stops a replay
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def replay_from(
    frame: pd.DataFrame | None,
    symbols: str | None,
    interval: str,
    start: pd.Timestamp,
    speed: float,
    fee: float = 0.001,
    slippage: float = 0.0,
    fill_grace_s: float = 0.0,
) -> tuple[Replay, list[str], str]:
    """A replay of ``frame`` served as ``symbols`` (a,b,c; default SYN), or of the EURUSD
    sample when ``frame`` is None; returns the replay, the served names and the interval."""
    from trendcast.sample_data import SAMPLES
    from trendcast.schema import series_key

    if frame is None:
        sample = next(s for s in SAMPLES if s.symbol == "EURUSD")
        frame, _ = sample.reader()
        interval, names = sample.interval, (symbols or sample.symbol).split(",")
    else:
        names = (symbols or "SYN").split(",")
    for name in names:
        series_key(name, interval)
    clock = ReplayClock(start, speed)
    replay = Replay({name: frame for name in names}, interval, clock, fee, slippage, fill_grace_s)
    return replay, names, interval
