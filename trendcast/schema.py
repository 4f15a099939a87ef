"""The rules a bar series key must follow, shared by migrations, loaders and ingestion.

The database enforces the same rules with CHECK constraints (see migration 0001); checking them
here as well lets the CLI name the field and the rule instead of surfacing a constraint error.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, field_validator

from trendcast.errors import InputError

#: Binance kline intervals; fixed-length ones map to their length (``1M`` is a calendar month).
INTERVALS: dict[str, timedelta | None] = {
    "1m": timedelta(minutes=1),
    "3m": timedelta(minutes=3),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "6h": timedelta(hours=6),
    "8h": timedelta(hours=8),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "1w": timedelta(weeks=1),
    "1M": None,
}

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._-]{0,31}$"


def known_interval(value: str) -> str:
    """``value`` if it is a bar interval we store, else ValueError naming the choices (for
    pydantic validators, which turn it into a message naming the field)."""
    if value not in INTERVALS:
        raise ValueError(f"must be one of {', '.join(INTERVALS)}")
    return value


SYMBOL_RULE = "1-32 upper-case letters, digits, '.', '_' or '-', e.g. BTCUSDT"
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"


class SeriesKey(BaseModel):
    """Identifies one bar series: a symbol at an interval."""

    symbol: str
    interval: str

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if not re.fullmatch(SYMBOL_PATTERN, value):
            raise ValueError(f"must be {SYMBOL_RULE}")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return known_interval(value)


def series_key(symbol: str, interval: str) -> SeriesKey:
    """Validate a (symbol, interval) pair, raising one line that names the field and the rule."""
    from pydantic import ValidationError

    try:
        return SeriesKey(symbol=symbol, interval=interval)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = err["loc"][0]
        given = symbol if field == "symbol" else interval
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InputError(f"{field} {given!r}: {message}") from None


def validate_source(source: str) -> str:
    if not re.fullmatch(SOURCE_PATTERN, source):
        raise InputError(
            f"source {source!r}: must be 1-64 letters, digits, '.', '_', ':', '/' or '-'"
        )
    return source
