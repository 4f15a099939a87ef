"""The exchange replay's order side and the binance broker, over real HTTP (issue 19).

The replay's clock is frozen (speed 0) and moved bar by bar, so every fill lands at a bar's open
we know; expected prices, fees and balances are recomputed here from the bars with the same
float operations the execution model promises.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
import pytest

from trendcast.backtest import Costs
from trendcast.backtest import run as backtest
from trendcast.config import Settings
from trendcast.errors import InputError
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.sample_data import SAMPLES
from trendcast.strategy import SmaCrossover
from trendcast.trading.binance import BinanceBroker, credentials
from trendcast.trading.broker import Broker, OrderRejected, OrderRequest, VenueUnavailable
from trendcast.trading.symbols import split_symbol

FEE, SLIP = 0.001, 0.0005
KEY = "key-alice"
SECRET = uuid.uuid4().hex  # made per run: no secret in the repo
START = 100  # the bar the clock starts in
SEED_USD = 100_000.0
#: One client for the tests' own requests (a new httpx client per call costs ~20 ms).
HTTP = httpx.Client(timeout=10)


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame.reset_index(drop=True)


@pytest.fixture
def venue(eurusd):
    """A frozen replay serving EURUSD (and the same bars as BTCUSDT), one seeded account."""
    rep = Replay(
        {"EURUSD": eurusd, "BTCUSDT": eurusd},
        "1h",
        ReplayClock(eurusd["open_time"].iloc[START] + pd.Timedelta(minutes=30), speed=0.0),
        fee=FEE,
        slippage=SLIP,
    )
    server, url = start_in_thread(rep)
    rep.url = url
    seed(rep, KEY, SECRET, {"USD": SEED_USD, "USDT": SEED_USD})
    yield rep
    server.shutdown()
    server.server_close()


@pytest.fixture
def broker(venue):
    client = BinanceBroker(venue.url, KEY, SECRET, attempts=4, max_wait_s=2.0)
    yield client
    client.close()


def seed(rep: Replay, key: str, secret: str, balances: dict) -> None:
    answer = HTTP.post(
        f"{rep.url}/replay/accounts",
        json={"api_key": key, "api_secret": secret, "balances": balances},
    )
    assert answer.status_code == 200, answer.text


def clock_to(rep: Replay, when: pd.Timestamp) -> None:
    assert HTTP.post(f"{rep.url}/replay/clock", json={"set": when.isoformat()}).status_code == 200


def bar_open(eurusd: pd.DataFrame, i: int) -> pd.Timestamp:
    return eurusd["open_time"].iloc[i]


def order_faults(rep: Replay, *faults: dict) -> None:
    answer = HTTP.post(f"{rep.url}/replay/order-faults", json={"faults": list(faults)})
    assert answer.status_code == 200, answer.text


def orders_at_venue(rep: Replay, key: str = KEY) -> int:
    return HTTP.get(f"{rep.url}/replay/accounts").json()["accounts"][key]["orders"]


def signed(
    rep: Replay,
    method: str,
    path: str,
    key: str | None = KEY,
    secret: str = SECRET,
    stamp: int | None = None,
    **params,
) -> httpx.Response:
    """A signed request built here, independently of the broker's own signing."""
    params = {**params, "timestamp": stamp if stamp is not None else int(time.time() * 1000)}
    query = urlencode(params)
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": key} if key else {}
    return HTTP.request(method, f"{rep.url}{path}?{query}&signature={signature}", headers=headers)


def request(cid: str, side: str = "buy", qty: float = 1000.0, symbol: str = "EURUSD"):
    return OrderRequest(cid, symbol, side, qty, 1.0, pd.Timestamp("2017-01-01", tz="UTC"))


# --- matching engine: next bar's open, slippage, fee, balances ---------------------------------


def test_market_order_fills_at_the_next_open_plus_slippage_with_the_fee(venue, broker, eurusd):
    assert isinstance(broker, Broker)
    placed = broker.submit(request("c-1", "buy", 1000.0))
    assert (placed.status, placed.filled_quantity) == ("new", 0.0)  # arrived mid-bar START
    assert broker.fills("EURUSD") == []

    clock_to(venue, bar_open(eurusd, START + 1) - pd.Timedelta(milliseconds=1))
    assert broker.order("EURUSD", "c-1").status == "new"  # one ms before the open: nothing
    clock_to(venue, bar_open(eurusd, START + 1))
    state = broker.order("EURUSD", "c-1")
    assert (state.status, state.filled_quantity) == ("filled", 1000.0)
    buy_price = eurusd["open"].iloc[START + 1] * (1.0 + SLIP)
    [fill] = broker.fills("EURUSD")
    assert (fill.price, fill.quantity, fill.side) == (buy_price, 1000.0, "buy")
    assert fill.fee == 1000.0 * buy_price * FEE
    assert fill.time == bar_open(eurusd, START + 1)
    assert fill.client_order_id == "c-1"
    usd = SEED_USD - (1000.0 * buy_price + 1000.0 * buy_price * FEE)
    assert broker.balances() == {"USD": usd, "USDT": SEED_USD, "EUR": 1000.0}

    # an order arriving exactly as a bar opens fills at that bar's open, at once
    clock_to(venue, bar_open(eurusd, START + 3))
    sold = broker.submit(request("c-2", "sell", 400.0))
    sell_price = eurusd["open"].iloc[START + 3] * (1.0 - SLIP)
    assert (sold.status, sold.filled_quantity) == ("filled", 400.0)
    assert broker.fills("EURUSD")[-1].price == sell_price
    usd += 400.0 * sell_price - 400.0 * sell_price * FEE
    assert broker.balances() == {"USD": usd, "USDT": SEED_USD, "EUR": 600.0}
    assert broker.open_orders() == []
    # fills since a time: only the later one
    assert [f.client_order_id for f in broker.fills("EURUSD", bar_open(eurusd, START + 2))] == [
        "c-2"
    ]


def test_a_sell_locks_its_quantity_and_a_short_sale_is_refused(venue, broker, eurusd):
    with pytest.raises(OrderRejected) as refused:
        broker.submit(request("short", "sell", 1.0))  # spot: no EUR to sell
    assert refused.value.code == -2010
    assert "insufficient balance" in str(refused.value)
    assert orders_at_venue(venue) == 0
    clock_to(venue, bar_open(eurusd, START + 1))
    broker.submit(request("buy", "buy", 500.0))
    clock_to(venue, bar_open(eurusd, START + 1) + pd.Timedelta(minutes=10))
    broker.submit(request("sell-1", "sell", 300.0))  # waits for START + 2, locks 300 EUR
    account = signed(venue, "GET", "/api/v3/account").json()
    eur = next(b for b in account["balances"] if b["asset"] == "EUR")
    assert (float(eur["free"]), float(eur["locked"])) == (200.0, 300.0)
    with pytest.raises(OrderRejected):
        broker.submit(request("sell-2", "sell", 300.0))  # only 200 free
    assert [o.client_order_id for o in broker.open_orders("EURUSD")] == ["sell-1"]


def test_a_buy_beyond_the_cash_is_refused_and_nothing_is_placed(venue, broker):
    with pytest.raises(OrderRejected) as refused:
        broker.submit(request("big", "buy", SEED_USD))  # 100k EUR at ~1.05 USD: too dear
    assert refused.value.code == -2010
    assert broker.order("EURUSD", "big") is None
    assert orders_at_venue(venue) == 0


def test_balances_orders_and_trades_are_per_api_key(venue, eurusd):
    seed(venue, "key-bob", "secret-bob", {"USDT": 50.0})
    alice = BinanceBroker(venue.url, KEY, SECRET)
    bob = BinanceBroker(venue.url, "key-bob", "secret-bob")
    clock_to(venue, bar_open(eurusd, START + 1))
    alice.submit(request("same-id", "buy", 10.0, "BTCUSDT"))
    assert bob.order("BTCUSDT", "same-id") is None  # another key's order is invisible
    bob.submit(request("same-id", "buy", 1.0, "BTCUSDT"))  # and its id free for bob
    assert alice.order("BTCUSDT", "same-id").quantity == 10.0
    assert bob.order("BTCUSDT", "same-id").quantity == 1.0
    price = eurusd["open"].iloc[START + 1] * (1.0 + SLIP)
    assert bob.balances() == {"USDT": 50.0 - (price + price * FEE), "BTC": 1.0}
    assert alice.balances()["BTC"] == 10.0
    assert alice.balances()["USD"] == SEED_USD  # the EURUSD quote is untouched
    assert [f.quantity for f in bob.fills("BTCUSDT")] == [1.0]


def test_quote_sized_orders_fill_as_far_as_the_balance_goes(venue, broker, eurusd):
    seed(venue, KEY, SECRET, {"USD": 1000.0})
    clock_to(venue, bar_open(eurusd, START + 1))
    stamp = bar_open(eurusd, START)
    state = broker.submit(OrderRequest("q-1", "EURUSD", "buy", 1.0, 1.0, stamp, 5000.0))
    price = eurusd["open"].iloc[START + 1] * (1.0 + SLIP)
    cap = 1000.0 / (price * (1.0 + FEE))  # 5000 USD asked, 1000 there: all of it, no more
    assert (state.status, state.filled_quantity) == ("filled", cap)
    assert broker.balances()["USD"] == pytest.approx(0.0, abs=1e-9)
    sold = broker.submit(OrderRequest("q-2", "EURUSD", "sell", 1.0, 1.0, stamp, 100.0))
    assert sold.filled_quantity == 100.0 / (eurusd["open"].iloc[START + 1] * (1.0 - SLIP))
    wire = signed(venue, "GET", "/api/v3/order", symbol="EURUSD", origClientOrderId="q-2")
    assert float(wire.json()["origQuoteOrderQty"]) == 100.0


def test_fill_grace_takes_orders_up_to_its_end_at_the_bar_open(venue, broker, eurusd):
    assert HTTP.post(f"{venue.url}/replay/execution", json={"fill_grace_s": 60}).status_code == 200
    clock_to(venue, bar_open(eurusd, START + 1) + pd.Timedelta(seconds=60))
    assert broker.submit(request("g-1", "buy", 10.0)).status == "filled"  # exactly at the end
    clock_to(venue, bar_open(eurusd, START + 1) + pd.Timedelta(milliseconds=60_001))
    assert broker.submit(request("g-2", "buy", 10.0)).status == "new"  # 1 ms late: next bar
    clock_to(venue, bar_open(eurusd, START + 2))
    assert [f.time for f in broker.fills("EURUSD")] == [
        bar_open(eurusd, START + 1),
        bar_open(eurusd, START + 2),
    ]


def test_quantities_are_rounded_down_to_a_published_lot_step(venue, broker, eurusd):
    steps = {"lot_steps": {"BTCUSDT": "0.001"}}
    assert HTTP.post(f"{venue.url}/replay/execution", json=steps).status_code == 200
    info = HTTP.get(f"{venue.url}/api/v3/exchangeInfo", params={"symbol": "BTCUSDT"}).json()
    [entry] = info["symbols"]
    assert (entry["baseAsset"], entry["quoteAsset"]) == ("BTC", "USDT")
    assert entry["filters"] == [
        {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "9000000000.0", "stepSize": "0.001"}
    ]
    raw = signed(
        venue, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
        quantity="1.2345", newClientOrderId="raw",
    )  # fmt: skip
    assert raw.json() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}
    clock_to(venue, bar_open(eurusd, START + 1))
    state = broker.submit(request("lot-1", "buy", 1.23456, "BTCUSDT"))
    assert (state.quantity, state.filled_quantity) == (1.234, 1.234)
    with pytest.raises(OrderRejected) as refused:
        broker.submit(request("lot-2", "buy", 0.0004, "BTCUSDT"))
    assert refused.value.code == -1013
    assert orders_at_venue(venue) == 1
    # EURUSD publishes no step: any quantity goes through unrounded
    assert broker.submit(request("lot-3", "buy", 1.23456789)).quantity == 1.23456789


# --- the wire: endpoints, signatures, timestamps ----------------------------------------------


def test_every_order_endpoint_answers_in_binance_shape(venue, eurusd):
    clock_to(venue, bar_open(eurusd, START + 1))
    placed = signed(
        venue, "POST", "/api/v3/order", symbol="EURUSD", side="BUY", type="MARKET",
        quantity="250", newClientOrderId="wire-1",
    )  # fmt: skip
    assert placed.status_code == 200, placed.text
    body = placed.json()
    price = eurusd["open"].iloc[START + 1] * (1.0 + SLIP)
    assert body["clientOrderId"] == "wire-1" and body["type"] == "MARKET"
    assert (body["status"], body["executedQty"], body["origQty"]) == ("FILLED", "250.0", "250.0")
    assert body["transactTime"] == int(bar_open(eurusd, START + 1).value // 1_000_000)
    assert [float(f["price"]) for f in body["fills"]] == [price]
    assert body["fills"][0]["commissionAsset"] == "USD"
    ack = signed(
        venue, "POST", "/api/v3/order", symbol="EURUSD", side="SELL", type="MARKET",
        quantity="50", newClientOrderId="wire-2", newOrderRespType="ACK",
    ).json()  # fmt: skip
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}

    got = signed(venue, "GET", "/api/v3/order", symbol="EURUSD", origClientOrderId="wire-1")
    assert got.json()["orderId"] == body["orderId"] and got.json()["status"] == "FILLED"
    by_id = signed(venue, "GET", "/api/v3/order", symbol="EURUSD", orderId=body["orderId"])
    assert by_id.json()["clientOrderId"] == "wire-1"
    missing = signed(venue, "GET", "/api/v3/order", symbol="EURUSD", origClientOrderId="nope")
    assert (missing.status_code, missing.json()["code"]) == (400, -2013)
    assert signed(venue, "GET", "/api/v3/openOrders").json() == []
    every = signed(venue, "GET", "/api/v3/allOrders", symbol="EURUSD").json()
    assert [o["clientOrderId"] for o in every] == ["wire-1", "wire-2"]
    trades = signed(venue, "GET", "/api/v3/myTrades", symbol="EURUSD").json()
    assert [(t["isBuyer"], float(t["qty"])) for t in trades] == [(True, 250.0), (False, 50.0)]
    assert float(trades[0]["quoteQty"]) == 250.0 * price
    account = signed(venue, "GET", "/api/v3/account").json()
    assert account["accountType"] == "SPOT" and account["takerCommission"] == 10
    assert {b["asset"]: float(b["free"]) for b in account["balances"]}["EUR"] == 200.0
    assert HTTP.get(f"{venue.url}/api/v3/time").json()["serverTime"] == int(
        bar_open(eurusd, START + 1).value // 1_000_000
    )
    again = signed(
        venue, "POST", "/api/v3/order", symbol="EURUSD", side="BUY", type="MARKET",
        quantity="1", newClientOrderId="wire-1",
    )  # fmt: skip
    assert again.json() == {"code": -2010, "msg": "Duplicate order sent."}
    limit = signed(
        venue, "POST", "/api/v3/order", symbol="EURUSD", side="BUY", type="LIMIT",
        quantity="1", price="1.0", timeInForce="GTC",
    )  # fmt: skip
    assert limit.json()["code"] == -1116
    assert orders_at_venue(venue) == 2


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"signed_with": "another"}, 400, -1022),
        ({"key": None}, 401, -2014),
        ({"key": "unknown-key"}, 401, -2015),
        ({"stamp": -10_000}, 400, -1021),  # 10 s old, recvWindow 5 s
        ({"stamp": +5_000}, 400, -1021),  # 5 s ahead of the server
        ({"recvWindow": 70_000}, 400, -1131),
    ],
)
def test_bad_signatures_keys_and_timestamps_are_refused(venue, change, status, code):
    kwargs = {}
    if "signed_with" in change:
        kwargs["secret"] = change["signed_with"]
    if "key" in change:
        kwargs["key"] = change["key"]
    if "stamp" in change:
        kwargs["stamp"] = int(time.time() * 1000) + change["stamp"]
    extra = {"recvWindow": change["recvWindow"]} if "recvWindow" in change else {}
    answer = signed(
        venue, "POST", "/api/v3/order", symbol="EURUSD", side="BUY", type="MARKET",
        quantity="1", newClientOrderId="bad", **extra, **kwargs,
    )  # fmt: skip
    assert answer.status_code == status
    assert answer.json()["code"] == code and answer.json()["msg"]
    assert orders_at_venue(venue) == 0


def test_a_tampered_query_fails_the_signature(venue):
    query = urlencode({"symbol": "EURUSD", "timestamp": int(time.time() * 1000)})
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    answer = HTTP.get(
        f"{venue.url}/api/v3/myTrades?{query.replace('EURUSD', 'BTCUSDT')}&signature={signature}",
        headers={"X-MBX-APIKEY": KEY},
    )
    assert answer.json()["code"] == -1022


def test_the_broker_maps_venue_refusals_with_code_and_message(venue):
    wrong = BinanceBroker(venue.url, KEY, "not-the-secret")
    with pytest.raises(OrderRejected) as refused:
        wrong.submit(request("x"))
    assert refused.value.code == -1022
    assert str(refused.value) == "binance -1022: Signature for this request is not valid."
    with pytest.raises(VenueUnavailable, match="-1022"):
        wrong.balances()
    with pytest.raises(InputError, match="symbol"):
        wrong.submit(request("y", symbol="XYZ"))  # no quote asset we know: nothing sent


def test_query_and_body_are_signed_concatenated_as_binance_defines(venue, eurusd):
    clock_to(venue, bar_open(eurusd, START + 1))
    query = "symbol=EURUSD&side=BUY&type=MARKET"
    body = f"quantity=5&newClientOrderId=mixed&timestamp={int(time.time() * 1000)}"

    def post(payload: str) -> httpx.Response:
        signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return HTTP.post(
            f"{venue.url}/api/v3/order?{query}",
            content=f"{body}&signature={signature}",
            headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"},
        )

    assert post(f"{query}&{body}").json()["code"] == -1022  # an '&' between them: not signed
    placed = post(query + body)  # totalParams = query string + body, nothing between
    assert placed.status_code == 200 and placed.json()["executedQty"] == "5.0"


def test_trade_and_order_history_follow_binance_paging_rules(venue, eurusd):
    broker = BinanceBroker(venue.url, KEY, SECRET)
    broker.page = 2  # force several pages
    rows = [START + 1, START + 2, START + 30, START + 31, START + 60]  # spans 2.5 days
    for n, row in enumerate(rows):
        clock_to(venue, bar_open(eurusd, row))
        broker.submit(request(f"h-{n}", "buy", 10.0))
    fills = broker.fills("EURUSD")
    assert [f.client_order_id for f in fills] == [f"h-{n}" for n in range(5)]
    assert [f.time for f in fills] == [bar_open(eurusd, r) for r in rows]
    later = broker.fills("EURUSD", bar_open(eurusd, START + 30))
    assert [f.client_order_id for f in later] == ["h-2", "h-3", "h-4"]  # beyond 24 h too
    assert len(broker.all_orders("EURUSD")) == 5
    # Binance's own rules, which a client must page around
    recent = signed(venue, "GET", "/api/v3/myTrades", symbol="EURUSD", limit=2).json()
    assert [t["id"] for t in recent] == [4, 5]  # no fromId, no time: the most recent
    first = int(bar_open(eurusd, START).value // 1_000_000)
    wide = signed(
        venue, "GET", "/api/v3/myTrades", symbol="EURUSD", startTime=first,
        endTime=first + 86_400_001,
    )  # fmt: skip
    assert wide.json()["code"] == -1127
    mixed = signed(venue, "GET", "/api/v3/myTrades", symbol="EURUSD", startTime=first, fromId=1)
    assert mixed.json()["code"] == -1128
    day = signed(venue, "GET", "/api/v3/myTrades", symbol="EURUSD", startTime=first).json()
    assert len(day) == 2  # startTime alone: the 24 hours after it


# --- injected faults ---------------------------------------------------------------------------


def test_fault_reject_places_nothing(venue, broker):
    order_faults(venue, {"kind": "reject", "code": -2010, "msg": "Market is closed."})
    with pytest.raises(OrderRejected) as refused:
        broker.submit(request("r-1"))
    assert (refused.value.code, refused.value.venue_msg) == (-2010, "Market is closed.")
    assert broker.order("EURUSD", "r-1") is None
    assert orders_at_venue(venue) == 0


def test_fault_partial_fill_fills_the_rest_at_the_following_open(venue, broker, eurusd):
    order_faults(venue, {"kind": "partial", "ratio": 0.25})
    broker.submit(request("p-1", "buy", 1000.0))
    clock_to(venue, bar_open(eurusd, START + 1))
    state = broker.order("EURUSD", "p-1")
    assert (state.status, state.filled_quantity) == ("partially_filled", 250.0)
    assert [o.client_order_id for o in broker.open_orders("EURUSD")] == ["p-1"]
    clock_to(venue, bar_open(eurusd, START + 2))
    assert broker.order("EURUSD", "p-1").status == "filled"
    fills = broker.fills("EURUSD")
    assert [(f.quantity, f.price) for f in fills] == [
        (250.0, eurusd["open"].iloc[START + 1] * (1.0 + SLIP)),
        (750.0, eurusd["open"].iloc[START + 2] * (1.0 + SLIP)),
    ]
    assert {f.client_order_id for f in fills} == {"p-1"}


def test_fault_partial_fill_with_the_rest_expired_unlocks_it(venue, broker, eurusd):
    clock_to(venue, bar_open(eurusd, START + 1))
    broker.submit(request("b", "buy", 1000.0))
    order_faults(venue, {"kind": "partial", "ratio": 0.4, "expire_rest": True})
    clock_to(venue, bar_open(eurusd, START + 2))
    state = broker.submit(request("s", "sell", 1000.0))
    assert (state.status, state.filled_quantity) == ("expired", 400.0)
    assert state.reason and "partial" in state.reason
    assert broker.balances()["EUR"] == 600.0  # free again, nothing left locked
    assert broker.open_orders() == []


def test_fault_delayed_fill_waits_the_extra_bars(venue, broker, eurusd):
    order_faults(venue, {"kind": "delayed", "bars": 2})
    broker.submit(request("d-1"))
    clock_to(venue, bar_open(eurusd, START + 2))
    assert broker.order("EURUSD", "d-1").status == "new"
    clock_to(venue, bar_open(eurusd, START + 3))
    [fill] = broker.fills("EURUSD")
    assert fill.price == eurusd["open"].iloc[START + 3] * (1.0 + SLIP)
    assert fill.time == bar_open(eurusd, START + 3)


def test_fault_5xx_not_placed_is_retried_into_one_order(venue, broker):
    order_faults(venue, {"kind": "500"}, {"kind": "500", "status": 503})
    state = broker.submit(request("f-1"))
    assert state.client_order_id == "f-1"
    assert orders_at_venue(venue) == 1
    assert HTTP.get(f"{venue.url}/replay/order-faults").json()["faults"] == []


def test_fault_5xx_after_placing_finds_the_order_instead_of_resubmitting(venue, broker):
    # if the broker resubmitted blindly, the queued reject would refuse it
    order_faults(venue, {"kind": "500", "placed": True}, {"kind": "reject"})
    state = broker.submit(request("f-2"))
    assert state.client_order_id == "f-2"
    assert orders_at_venue(venue) == 1
    assert [f["kind"] for f in HTTP.get(f"{venue.url}/replay/order-faults").json()["faults"]] == [
        "reject"
    ]


def test_fault_connection_lost_after_submit_never_duplicates_the_order(venue, broker, eurusd):
    order_faults(venue, {"kind": "lost"}, {"kind": "reject"})
    state = broker.submit(request("lost-1", "buy", 100.0))
    assert (state.client_order_id, state.quantity) == ("lost-1", 100.0)
    assert orders_at_venue(venue) == 1
    # the runner, restarted, submits the same id again: the venue's order, not a second one
    assert broker.submit(request("lost-1", "buy", 100.0)).venue_order_id == state.venue_order_id
    clock_to(venue, bar_open(eurusd, START + 1))
    assert [f.quantity for f in broker.fills("EURUSD")] == [100.0]
    assert orders_at_venue(venue) == 1


def test_fault_duplicate_answer_returns_the_placed_order(venue, broker):
    order_faults(venue, {"kind": "duplicate"})
    state = broker.submit(request("dup-1"))
    assert state.client_order_id == "dup-1" and state.status == "new"
    assert orders_at_venue(venue) == 1


def test_fault_429_waits_the_retry_after_then_succeeds(venue, broker):
    order_faults(venue, {"kind": "429", "retry_after": 0.4})
    began = time.monotonic()
    broker.submit(request("t-1"))
    assert time.monotonic() - began >= 0.4
    assert orders_at_venue(venue) == 1


def test_persistent_429_and_5xx_raise_venue_unavailable_naming_the_code(venue, broker):
    order_faults(venue, *[{"kind": "429", "retry_after": 0.05}] * 4)
    with pytest.raises(VenueUnavailable, match="-1003"):
        broker.submit(request("t-2"))
    assert orders_at_venue(venue) == 0
    order_faults(venue, *[{"kind": "500", "endpoint": "account"}] * 4)
    with pytest.raises(VenueUnavailable, match="-1000"):
        broker.balances()


def test_query_faults_are_retried(venue, broker):
    order_faults(
        venue,
        {"kind": "lost", "endpoint": "account"},
        {"kind": "500", "endpoint": "getOrder"},
        {"kind": "429", "endpoint": "myTrades", "retry_after": 0.05},
    )
    assert broker.balances()["USD"] == SEED_USD
    assert broker.order("EURUSD", "none") is None
    assert broker.fills("EURUSD") == []
    assert HTTP.get(f"{venue.url}/replay/order-faults").json()["faults"] == []


def test_bad_order_faults_and_costs_are_refused_by_the_admin_api(venue):
    answer = HTTP.post(f"{venue.url}/replay/order-faults", json={"faults": [{"kind": "boom"}]})
    assert answer.status_code == 400 and "kind" in answer.json()["msg"]
    wrong = {"faults": [{"kind": "partial", "endpoint": "account"}]}
    assert HTTP.post(f"{venue.url}/replay/order-faults", json=wrong).status_code == 400
    assert HTTP.post(f"{venue.url}/replay/execution", json={"fee": 0.9}).status_code == 400
    ok = HTTP.post(f"{venue.url}/replay/execution", json={"slippage": 0.001})
    assert ok.json() == {
        "fee": FEE, "slippage": 0.001, "fill_grace_s": 0.0, "lot_steps": {}, "fill_stamp": "open"
    }  # fmt: skip
    stamp = {"fill_stamp": "later"}
    assert HTTP.post(f"{venue.url}/replay/execution", json=stamp).status_code == 400
    bad_step = {"lot_steps": {"NOPE": "0.1"}}
    assert HTTP.post(f"{venue.url}/replay/execution", json=bad_step).status_code == 400


# --- parity with the backtest's execution model -----------------------------------------------


@pytest.mark.parametrize("sizing", ["quote-at-close", "base-at-open"])
def test_target_position_orders_reproduce_the_backtest_fills_and_equity(venue, eurusd, sizing):
    """SmaCrossover decided bar by bar, orders through the binance broker against the
    fault-free replay: every fill and the equity at every bar equal trendcast.backtest's.

    quote-at-close: as the deployment runner trades, entries sized in quote currency at the
    decision close (quoteOrderQty = weight x cash x (1 + cost)) and sent 5 data-minutes after
    the bar closed, the replay's fill grace (10 min) filling them at that bar's open.
    base-at-open: entries sized in base units at the instant the bar opens, from the open the
    replay shows for the still-open bar."""
    frame = eurusd.iloc[:400].reset_index(drop=True)
    costs = Costs(fee=FEE, slippage=SLIP)
    cost = costs.per_fill - costs.fee
    strategy = SmaCrossover(fast=5, slow=20)
    expected = backtest(frame, strategy, costs, capital=10_000.0)
    assert len(expected.trades) >= 5  # enough round trips to mean something

    late = pd.Timedelta(minutes=5) if sizing == "quote-at-close" else pd.Timedelta(0)
    grace = {"fill_grace_s": 600.0 if sizing == "quote-at-close" else 0.0}
    assert HTTP.post(f"{venue.url}/replay/execution", json=grace).status_code == 200
    seed(venue, "key-parity", "secret-parity", {"USD": 10_000.0})
    broker = BinanceBroker(venue.url, "key-parity", "secret-parity")
    equity = []
    for t in range(len(frame) - 1):
        clock_to(venue, bar_open(frame, t + 1) + late)  # bar t has closed
        balances = broker.balances()
        cash, held = balances.get("USD", 0.0), balances.get("EUR", 0.0)
        close = frame["close"].iloc[t]
        equity.append(cash + held * close)
        want = strategy.signals(frame.iloc[: t + 1])[-1]  # decided from bars up to t
        cid, decided = f"par-{t + 1}", bar_open(frame, t) + pd.Timedelta(hours=1)
        if want <= 0 and held > 0:
            broker.submit(OrderRequest(cid, "EURUSD", "sell", held, close, decided))
        elif want > 0 and held == 0 and sizing == "quote-at-close":
            quote = want * cash * (1.0 + cost)
            estimate = quote / (close * (1.0 + cost))
            broker.submit(OrderRequest(cid, "EURUSD", "buy", estimate, close, decided, quote))
        elif want > 0 and held == 0:
            now_open = current_open(venue)  # the bar opening now, as the exchange shows it
            price = now_open * (1.0 + cost)
            quantity = min(want * cash / now_open, cash / (price * (1.0 + costs.fee)))
            broker.submit(OrderRequest(cid, "EURUSD", "buy", quantity, close, decided))
    clock_to(venue, bar_open(frame, len(frame) - 1) + pd.Timedelta(hours=1))
    balances = broker.balances()
    equity.append(balances.get("USD", 0.0) + balances.get("EUR", 0.0) * frame["close"].iloc[-1])

    np.testing.assert_allclose(equity, expected.equity, rtol=1e-9, atol=0)
    fills = broker.fills("EURUSD")
    trades = expected.trades
    entries = [f for f in fills if f.side == "buy"]
    exits = [f for f in fills if f.side == "sell"]
    assert len(entries) == len(trades) and len(exits) == int(trades["exit"].notna().sum())
    np.testing.assert_allclose([f.price for f in entries], trades["entry_price"], rtol=1e-9)
    np.testing.assert_allclose([f.price for f in exits], trades["exit_price"], rtol=1e-9)
    assert [f.time for f in entries] == list(trades["entry_time"])
    for fill in entries:
        bar = int(frame.index[frame["open_time"] == fill.time][0])
        assert fill.quantity == pytest.approx(expected.position[bar], rel=1e-9)
    assert broker.open_orders() == []


def current_open(venue: Replay) -> float:
    """The open of the bar the replay's clock stands in, read from its public klines."""
    now = HTTP.get(f"{venue.url}/api/v3/time").json()["serverTime"]
    rows = HTTP.get(
        f"{venue.url}/api/v3/klines",
        params={"symbol": "EURUSD", "interval": "1h", "startTime": now, "limit": 1},
    ).json()
    assert rows and rows[0][0] == now
    return float(rows[0][1])


# --- settings, secrets, and no real venue in tests ---------------------------------------------


def test_no_test_can_reach_a_real_venue():
    """The documented default is Binance's public testnet, but the test session replaces it by
    a closed loopback port (tests/conftest.py), so a broker built from the settings without a
    replay URL fails locally instead of reaching any exchange."""
    default = Settings.model_fields["binance_base_url"].default
    assert default == "https://testnet.binance.vision"
    settings = Settings(binance_api_key="k", binance_api_secret="s")
    assert httpx.URL(settings.binance_base_url).host == "127.0.0.1"
    broker = BinanceBroker.from_settings(settings)
    assert httpx.URL(broker.base_url).host == "127.0.0.1"
    with pytest.raises(VenueUnavailable):
        broker.balances()
    # and no test or demo that trades through the binance broker names a real Binance host
    repo = Path(__file__).resolve().parents[1]
    hosts = ("api.binance.com", "testnet.binance" + ".vision", "binance.us")
    traders = (
        "BinanceBroker",
        "TRENDCAST_BINANCE_BASE_URL",
        "--broker binance",
        'broker="binance"',
    )
    here = Path(__file__).resolve()
    files = [*repo.glob("tests/**/*.py"), *repo.glob("scripts/**/*"), repo / "Makefile"]
    offenders = [
        str(p.relative_to(repo))
        for p in files
        if p.is_file()
        and p != here
        and any(t in p.read_text(errors="ignore") for t in traders)
        and any(h in p.read_text(errors="ignore") for h in hosts)
    ]
    assert offenders == []


def test_keys_are_required_and_read_from_secrets_manager(monkeypatch):
    import json

    import boto3
    from moto import mock_aws

    with pytest.raises(InputError, match="TRENDCAST_BINANCE_API_KEY"):
        credentials(Settings(binance_api_key=None, binance_api_secret=None))
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(
            Name="trendcast/binance",
            SecretString=json.dumps({"api_key": "live-key", "api_secret": "live-secret"}),
        )["ARN"]
        assert credentials(Settings(binance_secret_arn=arn)) == ("live-key", "live-secret")
        bad = client.create_secret(Name="trendcast/bad", SecretString="not json")["ARN"]
        with pytest.raises(InputError, match="api_key and api_secret"):
            credentials(Settings(binance_secret_arn=bad))


@pytest.mark.parametrize(
    ("symbol", "assets"),
    [
        ("BTCUSDT", ("BTC", "USDT")),
        ("EURUSD", ("EUR", "USD")),
        ("ETHBTC", ("ETH", "BTC")),
        ("BTCFDUSD", ("BTC", "FDUSD")),
        ("USDJPY", ("USD", "JPY")),
        ("SOLEUR", ("SOL", "EUR")),
    ],
)
def test_symbols_split_into_base_and_quote(symbol, assets):
    assert split_symbol(symbol) == assets


@pytest.mark.parametrize("symbol", ["SYN", "USDT", "BTC-USD"])
def test_symbols_without_a_known_quote_are_refused(symbol):
    with pytest.raises(InputError, match="symbol"):
        split_symbol(symbol)


# --- the command --------------------------------------------------------------------------------


@pytest.mark.slow
def test_exchange_replay_command_serves_the_order_side_with_its_costs(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from conftest import run_cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env["TRENDCAST_HOME"] = str(tmp_path / "h")
    refused = run_cli("exchange-replay", "--fee", "0.7", env=env, timeout=60)
    assert refused.returncode != 0
    assert "fee=0.7: must be in [0, 0.5)" in refused.stderr and "Traceback" not in refused.stderr

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("trendcast")
    proc = subprocess.Popen(
        [str(exe), "exchange-replay", "--port", str(port), "--speed", "0.0001",
         "--fee", "0.002", "--fill-grace-s", "30"],
        env={**env, "TRENDCAST_REPLAY_SLIPPAGE": "0.0003"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                execution = HTTP.get(f"{url}/replay/execution").json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert execution == {
            "fee": 0.002, "slippage": 0.0003, "fill_grace_s": 30.0, "lot_steps": {},
            "fill_stamp": "open",
        }  # fmt: skip
        HTTP.post(
            f"{url}/replay/accounts",
            json={"api_key": "k", "api_secret": "s", "balances": {"USD": 100.0}},
        )
        broker = BinanceBroker(url, "k", "s")
        state = broker.submit(request("cli-1", "buy", 10.0))
        assert broker.order("EURUSD", "cli-1") == state  # served as EURUSD, the sample
    finally:
        proc.terminate()
        proc.wait(timeout=10)
