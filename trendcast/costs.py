"""Cost profiles by asset class: what one trade really costs on each kind of market.

``market.instruments.cost_profile`` names the profile and ``params`` may override any of its
numbers (``trendcast instruments set EURUSD --asset-class fx --params '{"spread_pips": 0.3}'``).
Every backtest report records the profile and the fractions it resolved to.

Defaults and where they come from (README, "Costs and annualisation"):

- ``crypto``: the taker fee of a spot exchange, 10 bps of traded notional (Binance's base
  spot tier), no separate spread (the fee dominates on liquid pairs).
- ``fx``: no fee, the bid-ask spread in pips per pair (ECN raw spreads on the majors are a
  few tenths of a pip: EURUSD 0.2), half of it paid on each fill; a pip is 0.0001 (0.01 for
  JPY pairs). EURUSD near 1.18 pays ~0.85 bp per fill.
- ``equity``: a commission in bps of notional (0.5 bp, per-share commissions of US brokers on
  a ~100 USD share) plus half the quoted spread (2 bps for a large cap).
"""

from __future__ import annotations

from dataclasses import dataclass

from trendcast.backtest import Costs
from trendcast.errors import InputError
from trendcast.instruments import Instrument

#: Each profile's numbers; an instrument's ``params`` override them by name.
PROFILES: dict[str, dict[str, float]] = {
    "crypto": {"fee_bps": 10.0, "spread_bps": 0.0, "slippage_bps": 0.0},
    "fx": {"spread_pips": 0.5, "fee_bps": 0.0, "slippage_bps": 0.0},
    "equity": {"fee_bps": 0.5, "spread_bps": 2.0, "slippage_bps": 0.0},
}
#: Typical full spreads in pips of the FX majors the fx profile knows (others: 0.5 pip).
FX_SPREAD_PIPS = {"EURUSD": 0.2, "USDJPY": 0.3, "GBPUSD": 0.4, "AUDUSD": 0.4, "USDCHF": 0.5}


@dataclass(frozen=True)
class ResolvedCosts:
    """A profile resolved for one instrument at one price level."""

    profile: str
    costs: Costs
    params: dict[str, float]

    def as_dict(self) -> dict:
        return {
            "cost_profile": self.profile,
            "fee": self.costs.fee,
            "spread": self.costs.spread,
            "slippage": self.costs.slippage,
            "round_trip_cost": self.costs.round_trip,
            "cost_params": self.params,
        }


def pip_size(symbol: str) -> float:
    return 0.01 if symbol.upper().endswith("JPY") else 0.0001


def resolve(instrument: Instrument, price: float) -> ResolvedCosts:
    """The instrument's cost profile as fractions of notional at ``price`` (the spread of an FX
    pair is quoted in pips, a price distance, so its fraction depends on the price level)."""
    name = instrument.cost_profile
    if name not in PROFILES:
        raise InputError(
            f"{instrument.symbol}: cost_profile {name!r} unknown; known: {', '.join(PROFILES)}"
        )
    defaults = dict(PROFILES[name])
    if name == "fx":
        defaults["spread_pips"] = FX_SPREAD_PIPS.get(instrument.symbol.upper(), 0.5)
    overrides = {k: v for k, v in (instrument.params or {}).items() if k in defaults}
    params = {**defaults, **{k: float(v) for k, v in overrides.items()}}
    for key, value in params.items():
        if not 0 <= value < 5_000:
            raise InputError(f"{instrument.symbol}: cost parameter {key}={value} must be >= 0")
    if name == "fx":
        if not price > 0:
            raise InputError(f"{instrument.symbol}: price {price} must be > 0 to price a spread")
        spread = params["spread_pips"] * pip_size(instrument.symbol) / price
    else:
        spread = params["spread_bps"] / 1e4
    costs = Costs(
        fee=params["fee_bps"] / 1e4,
        spread=spread,
        slippage=params["slippage_bps"] / 1e4,
        profile=name,
    )
    return ResolvedCosts(name, costs, params)


@dataclass(frozen=True)
class MarketTerms:
    """What a backtest of one series must know about its market: costs and annualisation."""

    instrument: Instrument
    costs: ResolvedCosts
    periods_per_year: float


def market_terms(conn, symbol: str, interval: str, price: float) -> MarketTerms:
    """The registered instrument's cost profile (at ``price``) and its calendar's bars per year;
    an unregistered symbol is a 24/7 market with crypto costs (and a warning)."""
    from trendcast.instruments import get_instrument

    instrument = get_instrument(conn, symbol)
    return MarketTerms(
        instrument, resolve(instrument, price), instrument.periods_per_year(interval)
    )
