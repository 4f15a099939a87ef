"""The orders that move a sleeve to its target at the next open, exactly as the backtest engine
(``trendcast.backtest._simulate``) trades: pure functions, no database, no venue."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trendcast.backtest import Costs


@dataclass(frozen=True)
class Leg:
    """One order the plan needs: what it is for, its side, size and (entries) quote amount."""

    purpose: str  # exit, entry, rebalance, flatten
    side: str
    quantity: float
    quote_quantity: float | None = None


def plan_legs(
    shares: float, cash: float, weight: float, want: float, price: float, costs: Costs
) -> list[Leg]:
    """The orders that trade the sleeve from ``shares`` to ``want`` at the next open, as the
    backtest engine does (``price``: the decision close, only an estimate of that open).

    Entries are sized in quote currency so the fill reproduces the engine's sizing at a price
    the decision cannot know: a long buys ``want x cash / open`` as far as the cash goes (the
    venue caps at the cash), a short sells ``|want| x cash / (price x (1 + fee))``. A reversal
    enters on the cash the exit will leave, which depends on the exit's price: a short after a
    long adds a base-quantity leg (``carry``) for the exit's proceeds, which is exact; a long
    after a short at full weight is exact through the venue's cash cap, at a lower weight
    approximate."""
    cost, fee = costs.spread / 2 + costs.slippage, costs.fee
    legs = []
    direction = float(np.sign(shares))
    reversed_from = 0.0
    if shares != 0.0 and np.sign(want) != direction:
        legs.append(Leg("exit", "sell" if shares > 0 else "buy", abs(shares)))
        reversed_from, shares = shares, 0.0
    if shares == 0.0 and want != 0.0:
        if want > 0:  # weight x equity at the open, as far as the cash goes (the venue caps)
            quote = want * cash * (1.0 + cost)
            legs.append(Leg("entry", "buy", quote / (price * (1.0 + cost)), quote))
        else:
            quote = abs(want) * cash / (1.0 + fee)
            legs.append(Leg("entry", "sell", quote / (price * (1.0 - cost)), quote))
            if reversed_from > 0:  # the long's proceeds, sold short at the same open
                carry = abs(want) * reversed_from * (1.0 - fee) / (1.0 + fee)
                legs.append(Leg("carry", "sell", carry))
    elif shares != 0.0 and want != weight:
        delta = want * (cash + shares * price) / price - shares
        if delta != 0:
            legs.append(Leg("rebalance", "buy" if delta > 0 else "sell", abs(delta)))
    return [leg for leg in legs if leg.quantity > 0]


def client_order_id(deployment: str, symbol: str, bar: pd.Timestamp, purpose: str) -> str:
    """Deterministic, venue-safe (Binance: ≤ 36 of [A-Za-z0-9_-])."""
    key = f"{deployment}|{symbol}|{pd.Timestamp(bar).isoformat()}|{purpose}"
    return "tc-" + hashlib.sha256(key.encode()).hexdigest()[:24] + "-" + purpose[:2]
