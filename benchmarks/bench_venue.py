"""Order acknowledgement through the binance broker against the exchange replay.

What it measures: ``BinanceBroker.submit`` of a market order until the venue's answer is parsed
(sign, POST /api/v3/order, the replay's signature and timestamp checks, its matching engine
filling the order at the bar that just opened, the RESULT body mapped to an OrderState), p50 and
p99 over 200 orders. Baseline, same run, same server, same keep-alive connection kind, warmed
alike and interleaved order by order: the same signed POST built by hand with a bare httpx
client (no retry wrapper, no mapping). The ratio is what the broker layer adds; the target is
the issue's decision time, p99 ≤ 1 s for the whole bar → order path, of which this is the venue
leg. A second floor, GET /api/v3/ping, shows the HTTP round trip alone.

Run: ``python -m benchmarks.bench_venue``
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd

from benchmarks._results import Recorder
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.sample_data import SAMPLES
from trendcast.trading.binance import BinanceBroker
from trendcast.trading.broker import OrderRequest

ORDERS, WARM = 200, 20
KEY = "bench-key"
SECRET = uuid.uuid4().hex  # made per run: no secret in the repo


def main() -> None:
    rec = Recorder(
        "venue",
        "Venue leg: a market order acknowledged by the replay through the binance broker",
        script=__file__,
        description=(
            "`BinanceBroker.submit` of a market order until the venue's answer is parsed (sign, "
            "POST /api/v3/order, the replay's signature and timestamp checks and matching, the "
            "answer mapped to an OrderState). Baseline, same run, same server, warmed alike and "
            "interleaved order by order: the same signed POST built by hand with a bare httpx "
            "client. Floor: GET /api/v3/ping. The target is the issue's decision time, of which "
            "this is the venue leg."
        ),
        params={"orders": ORDERS, "warm_up": WARM},
    )
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    clock = ReplayClock(pd.Timestamp(frame["open_time"].iloc[1000]), speed=0.0)
    replay = Replay({"EURUSD": frame}, "1h", clock)
    server, url = start_in_thread(replay)
    httpx.post(
        f"{url}/replay/accounts",
        json={"api_key": KEY, "api_secret": SECRET, "balances": {"USD": 1e12, "EUR": 1e12}},
    )
    broker = BinanceBroker(url, KEY, SECRET)
    raw = httpx.Client(base_url=url, headers={"X-MBX-APIKEY": KEY})
    stamp = pd.Timestamp(frame["open_time"].iloc[999])

    def by_broker(n: int) -> float:
        side = "buy" if n % 2 == 0 else "sell"
        began = time.perf_counter()
        state = broker.submit(OrderRequest(f"b-{n}", "EURUSD", side, 1.0, 1.0, stamp))
        took = time.perf_counter() - began
        assert state.status == "filled"
        return took

    def by_hand(n: int) -> float:
        side = "BUY" if n % 2 == 0 else "SELL"
        began = time.perf_counter()
        query = urlencode(
            {
                "symbol": "EURUSD", "side": side, "type": "MARKET", "quantity": "1",
                "newClientOrderId": f"h-{n}", "newOrderRespType": "RESULT",
                "recvWindow": 5000, "timestamp": int(time.time() * 1000),
            }
        )  # fmt: skip
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        body = raw.post(f"/api/v3/order?{query}&signature={signature}").json()
        took = time.perf_counter() - began
        assert body["status"] == "FILLED"
        return took

    def ping(_: int) -> float:
        began = time.perf_counter()
        raw.get("/api/v3/ping").raise_for_status()
        return time.perf_counter() - began

    for n in range(WARM):
        by_broker(-1 - n), by_hand(-1 - n), ping(n)
    times: dict[str, list[float]] = {"broker": [], "hand": [], "ping": []}
    for n in range(ORDERS):
        times["broker"].append(by_broker(n))
        times["hand"].append(by_hand(n))
        times["ping"].append(ping(n))
    server.shutdown()
    server.server_close()

    def pct(name: str, q: float) -> float:
        return float(np.percentile(times[name], q)) * 1000

    for name, label, role in (
        ("broker", "BinanceBroker.submit (order acknowledged, filled)", "ours"),
        ("hand", "the same signed POST by hand (bare httpx)", "baseline"),
        ("ping", "GET /api/v3/ping (HTTP round trip alone)", "reference"),
    ):
        for q in (50, 99):
            rec.figure(f"{name}_p{q}", pct(name, q), "ms", label=f"{label}, p{q}", role=role)
    rec.figure("ratio_p50", pct("broker", 50) / pct("hand", 50), "x", label="broker / by hand, p50")
    rec.figure("ratio_p99", pct("broker", 99) / pct("hand", 99), "x", label="broker / by hand, p99")
    rec.target(
        "venue_p99", "venue leg p99 within the decision time", pct("broker", 99), "<=", 1000, " ms"
    )
    rec.write()


if __name__ == "__main__":
    main()
