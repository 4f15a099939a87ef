"""The instrument registry (``market.instruments``): asset class, calendar and cost profile.

One place says what a symbol is, so gap detection, freshness, costs and annualisation agree.
A symbol nobody registered is treated as a 24/7 crypto-like market with the ``crypto`` cost
profile, and a warning says how to register it; nothing is written for it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trendcast.calendars import ALWAYS_OPEN, TradingCalendar, get_calendar
from trendcast.errors import InputError
from trendcast.schema import SYMBOL_PATTERN, SYMBOL_RULE

log = logging.getLogger(__name__)

ASSET_CLASSES = ("crypto", "fx", "equity", "other")
#: Each asset class's default calendar and cost profile, used when registering without them.
DEFAULTS: dict[str, tuple[str, str]] = {
    "crypto": (ALWAYS_OPEN, "crypto"),
    "fx": ("FX", "fx"),
    "equity": ("XNYS", "equity"),
    "other": (ALWAYS_OPEN, "crypto"),
}


@dataclass(frozen=True)
class Instrument:
    symbol: str
    asset_class: str
    calendar: str
    cost_profile: str
    params: dict = field(default_factory=dict)
    description: str = ""
    registered: bool = True

    @property
    def trading_calendar(self) -> TradingCalendar:
        return get_calendar(self.calendar)

    def periods_per_year(self, interval: str) -> float:
        """Bars per year this instrument's market really has (the annualisation factor)."""
        return self.trading_calendar.periods_per_year(interval)

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "calendar": self.calendar,
            "cost_profile": self.cost_profile,
            "params": self.params,
            "description": self.description,
            "registered": self.registered,
        }


def unregistered(symbol: str) -> Instrument:
    """The fallback for a symbol missing from the registry: 24/7, crypto costs."""
    return Instrument(symbol, "other", ALWAYS_OPEN, "crypto", {}, "", registered=False)


_COLUMNS = "symbol, asset_class, calendar, cost_profile, params, description"
_warned: set[str] = set()


def _from_row(row) -> Instrument:
    return Instrument(
        row.symbol,
        row.asset_class,
        row.calendar,
        row.cost_profile,
        dict(row.params or {}),
        row.description,
    )


def get_instrument(conn: Connection | Engine, symbol: str, warn: bool = True) -> Instrument:
    """The registered instrument, or the 24/7 fallback with a warning naming the fix."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return get_instrument(c, symbol, warn)
    row = conn.execute(
        sa.text(f"SELECT {_COLUMNS} FROM market.instruments WHERE symbol = :s"), {"s": symbol}
    ).one_or_none()
    if row is not None:
        return _from_row(row)
    if warn and symbol not in _warned:  # once per process: a scheduler must not flood the log
        _warned.add(symbol)
        log.warning(
            "%s is not in the instrument registry: treated as a 24/7 market with crypto costs; "
            "register it with `trendcast instruments set %s --asset-class fx|equity|crypto`",
            symbol,
            symbol,
        )
    return unregistered(symbol)


def list_instruments(conn: Connection | Engine) -> list[Instrument]:
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return list_instruments(c)
    rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM market.instruments ORDER BY symbol"))
    return [_from_row(r) for r in rows]


def set_instrument(
    engine: Engine,
    symbol: str,
    asset_class: str,
    calendar: str | None = None,
    cost_profile: str | None = None,
    params: dict | None = None,
    description: str | None = None,
    who: str = "trendcast",
) -> Instrument:
    """Register or update an instrument; a calendar is validated before anything is written."""
    if not re.fullmatch(SYMBOL_PATTERN, symbol):
        raise InputError(f"symbol {symbol!r}: must be {SYMBOL_RULE}")
    if asset_class not in ASSET_CLASSES:
        raise InputError(f"asset_class {asset_class!r}: must be one of {', '.join(ASSET_CLASSES)}")
    default_calendar, default_profile = DEFAULTS[asset_class]
    calendar = calendar or default_calendar
    get_calendar(calendar)
    if params is not None and not isinstance(params, dict):
        raise InputError("params: must be a JSON object of profile parameters")
    with engine.begin() as conn:
        current = get_instrument(conn, symbol, warn=False)
        keep = current.registered
        instrument = Instrument(
            symbol,
            asset_class,
            calendar,
            cost_profile or (current.cost_profile if keep else default_profile),
            params if params is not None else (current.params if keep else {}),
            description if description is not None else (current.description if keep else ""),
        )
        conn.execute(
            sa.text(
                "INSERT INTO market.instruments (symbol, asset_class, calendar, cost_profile, "
                "params, description, updated_by, updated_at) VALUES (:symbol, :asset_class, "
                ":calendar, :cost_profile, CAST(:params AS jsonb), :description, :who, now()) "
                "ON CONFLICT (symbol) DO UPDATE SET asset_class = EXCLUDED.asset_class, "
                "calendar = EXCLUDED.calendar, cost_profile = EXCLUDED.cost_profile, "
                "params = EXCLUDED.params, description = EXCLUDED.description, "
                "updated_by = EXCLUDED.updated_by, updated_at = now()"
            ),
            {**instrument.as_dict(), "params": json.dumps(instrument.params), "who": who},
        )
    return instrument
