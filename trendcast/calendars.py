"""Trading calendars: which bars of an interval *should* exist, so closures are never gaps.

Three kinds, named by the instrument registry (``market.instruments.calendar``):

- ``24/7``: crypto venues, every bar exists;
- ``FX``: the foreign-exchange week, open from Sunday 17:00 to Friday 17:00 New York time
  (so 21:00 or 22:00 UTC depending on US daylight saving), closed on 25 December and 1 January
  (the session that would open at 17:00 the evening before opens at 17:00 that day);
- any exchange code of ``exchange-calendars`` (``XNYS``, ``XNAS``, ``XLON`` …): its sessions,
  holidays and early closes; daily bars open at midnight UTC of the session date, intraday bars
  at the session open and every interval after it.

A bar is expected when any part of it lies in an open session (a 4h FX bar that straddles the
Sunday open exists). Annualisation (:meth:`TradingCalendar.periods_per_year`) counts the bars a
calendar expects over reference years, so Sharpe ratios of FX, equities and crypto each use the
number of bars their market really has.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from trendcast.errors import InputError
from trendcast.schema import INTERVALS

ALWAYS_OPEN = "24/7"
FX = "FX"
#: Reference span for annualisation: four whole years, one of them a leap year.
_REFERENCE = (pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))
_NEW_YORK = "America/New_York"


def _utc(stamp) -> pd.Timestamp:
    stamp = pd.Timestamp(stamp)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _step(interval: str) -> pd.Timedelta | None:
    if interval not in INTERVALS:
        raise InputError(f"interval {interval!r}: must be one of {', '.join(INTERVALS)}")
    length = INTERVALS[interval]
    return None if length is None else pd.Timedelta(length)


def aligned_open_times(interval: str, start, end) -> pd.DatetimeIndex:
    """Every open time of ``interval`` in [start, end], aligned like Binance's klines
    (UTC epoch multiples; weeks open on Monday, months on the 1st)."""
    start, end = _utc(start), _utc(end)
    step = _step(interval)
    if step is None:
        first = start.normalize().replace(day=1)
        first = first if first >= start else first + pd.DateOffset(months=1)
        return pd.date_range(first, end, freq="MS", tz="UTC").as_unit("ns")
    if interval == "1w":
        first = start.normalize() - pd.Timedelta(days=start.dayofweek)
    else:
        nanos = step.value
        first = pd.Timestamp((start.value + nanos - 1) // nanos * nanos, tz="UTC")
    first = first if first >= start else first + step
    return pd.date_range(first, end, freq=step, tz="UTC").as_unit("ns")


def _bars_holding(interval: str, days: pd.DatetimeIndex, start, end) -> pd.DatetimeIndex:
    """Bars of a daily-or-longer ``interval`` that hold at least one of the session ``days``."""
    if interval == "1d":
        times = days
    else:  # 3 days, weeks, months
        candidates = aligned_open_times(interval, _utc(start) - pd.Timedelta(days=31), end)
        bins = np.searchsorted(candidates.asi8, days.as_unit("ns").asi8, side="right") - 1
        times = candidates[np.unique(bins[bins >= 0])]
    return times[(times >= _utc(start)) & (times <= _utc(end))]


@dataclass(frozen=True)
class TradingCalendar:
    """Base: a calendar open all the time. Subclasses narrow :meth:`open_times`."""

    name: str = ALWAYS_OPEN

    def open_times(self, interval: str, start, end) -> pd.DatetimeIndex:
        """Open times (UTC) of the bars of ``interval`` that should exist in [start, end]."""
        return aligned_open_times(interval, start, end)

    def is_expected(self, interval: str, open_time) -> bool:
        """Whether a bar opening at ``open_time`` should exist."""
        stamp = _utc(open_time)
        return stamp in self.open_times(interval, stamp, stamp)

    def periods_per_year(self, interval: str) -> float:
        """Bars this calendar expects per year (the annualisation factor)."""
        return _periods_per_year(self, interval)


@dataclass(frozen=True)
class FxCalendar(TradingCalendar):
    """The FX week: Sunday 17:00 to Friday 17:00 New York time, closed 25 Dec and 1 Jan."""

    name: str = FX

    def open_times(self, interval: str, start, end) -> pd.DatetimeIndex:
        step = _step(interval)
        if step is None or step >= pd.Timedelta(days=1):
            # Daily bars are the trading days, Monday to Friday (the session ending at 17:00 New
            # York time that day), as FX data vendors publish them; 25 Dec and 1 Jan have none.
            days = pd.date_range(
                _utc(start).normalize() - pd.Timedelta(days=31), _utc(end), freq="D", tz="UTC"
            ).as_unit("ns")
            weekday = days.dayofweek < 5
            holiday = ((days.month == 12) & (days.day == 25)) | (
                (days.month == 1) & (days.day == 1)
            )
            return _bars_holding(interval, days[weekday & ~holiday], start, end)
        candidates = aligned_open_times(interval, start, end)
        # An intraday bar is expected when any minute of it is open; FX sessions turn on whole
        # hours of New York time, so probing each bar at its open and every hour inside it finds
        # every open bar.
        probe = pd.Timedelta(hours=1)
        expected = np.zeros(len(candidates), dtype=bool)
        for k in range(max(1, step // probe)):
            expected |= _fx_open(candidates + k * probe)
        return candidates[expected]


def _fx_open(times: pd.DatetimeIndex) -> np.ndarray:
    """True where the FX market is open at each instant."""
    local = times.tz_convert(_NEW_YORK)
    weekday, hour = local.dayofweek, local.hour
    weekend = (weekday == 5) | ((weekday == 4) & (hour >= 17)) | ((weekday == 6) & (hour < 17))
    # 25 Dec and 1 Jan: closed from 17:00 the evening before until 17:00 that day.
    trading_day = (local + pd.Timedelta(hours=7)).normalize()  # the day whose session this is
    holiday = ((trading_day.month == 12) & (trading_day.day == 25)) | (
        (trading_day.month == 1) & (trading_day.day == 1)
    )
    return np.asarray(~weekend & ~holiday)


@dataclass(frozen=True)
class ExchangeCalendar(TradingCalendar):
    """An exchange's sessions from ``exchange-calendars`` (holidays, early closes included)."""

    name: str = "XNYS"

    def open_times(self, interval: str, start, end) -> pd.DatetimeIndex:
        start, end = _utc(start), _utc(end)
        calendar = _exchange(self.name)
        first_session = max(calendar.first_session.tz_localize("UTC"), start.normalize())
        last_session = min(calendar.last_session.tz_localize("UTC"), end.normalize())
        if first_session > last_session:
            return pd.DatetimeIndex([], tz="UTC")
        sessions = calendar.sessions_in_range(
            first_session.tz_localize(None), last_session.tz_localize(None)
        )
        step = _step(interval)
        if step is None or step >= pd.Timedelta(days=1):
            return _bars_holding(interval, sessions.tz_localize("UTC"), start, end)
        times = calendar.trading_index(
            sessions[0], sessions[-1], period=interval, intervals=False, force=True
        )
        times = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("ns")
        return times[(times >= start) & (times <= end)]


@lru_cache(maxsize=32)
def _exchange(code: str):
    import exchange_calendars

    try:
        return exchange_calendars.get_calendar(code, start="1990-01-01")
    except exchange_calendars.errors.InvalidCalendarName:
        raise InputError(
            f"calendar {code!r}: not a known calendar; use 24/7, FX or an exchange code of "
            "exchange-calendars such as XNYS, XNAS, XLON"
        ) from None


@lru_cache(maxsize=256)
def _periods_per_year(calendar: TradingCalendar, interval: str) -> float:
    step = _step(interval)
    if type(calendar) is TradingCalendar and step is not None:
        return float(pd.Timedelta(days=365.25) / step)
    start, end = _REFERENCE
    years = (end - start) / pd.Timedelta(days=365.25)
    return len(calendar.open_times(interval, start, end - pd.Timedelta(microseconds=1))) / years


def get_calendar(name: str) -> TradingCalendar:
    """The calendar named ``24/7``, ``FX`` or an exchange code (validated)."""
    if name == ALWAYS_OPEN:
        return TradingCalendar()
    if name == FX:
        return FxCalendar()
    _exchange(name)
    return ExchangeCalendar(name)


def missing_open_times(
    calendar: TradingCalendar, interval: str, stored: pd.DatetimeIndex, start, end
) -> pd.DatetimeIndex:
    """Expected open times in [start, end] that ``stored`` lacks: the real holes."""
    expected = calendar.open_times(interval, start, end)
    return expected.difference(pd.DatetimeIndex(stored).tz_convert("UTC"))
