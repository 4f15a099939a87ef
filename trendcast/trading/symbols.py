"""Base and quote assets of our symbols, the one rule both the replay and the Binance broker use.

Binance names a spot pair by gluing the base asset to the quote asset (BTCUSDT = BTC bought with
USDT) and says which is which only in exchangeInfo. Our symbols follow the same convention, so
the split is: the longest known quote asset the symbol ends with (USDT, FDUSD, BTC, EUR, ...),
else, for a six-letter FX pair such as EURUSD, three letters each (EUR priced in USD). Anything
else is refused: guessing the quote of a pair would mean trading the wrong currency.
"""

from __future__ import annotations

import re

from trendcast.errors import InputError

#: Quote assets recognised at the end of a symbol, longest first when matching.
QUOTE_ASSETS = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI",
    "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL", "JPY", "USD", "CHF", "AUD",
)  # fmt: skip


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of ``symbol``, e.g. BTCUSDT -> (BTC, USDT), EURUSD -> (EUR, USD)."""
    name = symbol.upper()
    if not re.fullmatch(r"[A-Z0-9]{2,20}", name):
        raise InputError(f"symbol {symbol!r}: must be 2-20 letters or digits, base then quote")
    if re.fullmatch(r"[A-Z]{6}", name) and name[3:] in QUOTE_ASSETS and name[:3] != name[3:]:
        return name[:3], name[3:]  # an FX pair: EURUSD, USDJPY, GBPUSD
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if name.endswith(quote) and len(name) > len(quote):
            return name[: -len(quote)], quote
    raise InputError(
        f"symbol {symbol!r}: no known quote asset at its end ({', '.join(QUOTE_ASSETS)}); "
        "name pairs base then quote, e.g. BTCUSDT or EURUSD"
    )
