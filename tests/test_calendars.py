"""Trading calendars and the instrument registry: closures are never holes, real holes are."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast.calendars import get_calendar, missing_open_times
from trendcast.errors import InputError
from trendcast.instruments import get_instrument, list_instruments, set_instrument
from trendcast.sample_data import SAMPLES


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def sample(symbol: str) -> pd.DatetimeIndex:
    frame, _ = next(s for s in SAMPLES if s.symbol == symbol).reader()
    return pd.DatetimeIndex(frame["open_time"]).as_unit("ns")


@pytest.mark.parametrize(
    ("symbol", "calendar"),
    [("EURUSD", "FX"), ("GOOGL", "XNAS"), ("AAPL", "XNAS"), ("IBM", "XNYS")],
)
def test_real_sample_series_have_no_hole_by_their_calendar(symbol, calendar):
    stored = sample(symbol)
    interval = "1h" if symbol == "EURUSD" else "1d"
    missing = missing_open_times(
        get_calendar(calendar), interval, stored, stored.min(), stored.max()
    )
    assert len(missing) == 0, list(missing[:5])


def test_the_same_sample_has_hundreds_of_holes_on_a_24_7_calendar():
    stored = sample("EURUSD")
    missing = missing_open_times(get_calendar("24/7"), "1h", stored, stored.min(), stored.max())
    assert len(missing) > 2_000  # every weekend: what the calendar exists to explain


def test_fx_week_follows_new_york_daylight_saving():
    fx = get_calendar("FX")
    # Winter (EST): closes Friday 22:00 UTC, opens Sunday 22:00 UTC.
    winter = fx.open_times("1h", utc("2017-01-13 20:00"), utc("2017-01-15 23:00"))
    assert winter[winter < utc("2017-01-14")].max() == utc("2017-01-13 21:00")
    assert winter[winter > utc("2017-01-14")].min() == utc("2017-01-15 22:00")
    # Summer (EDT): one hour earlier in UTC.
    summer = fx.open_times("1h", utc("2017-07-14 19:00"), utc("2017-07-16 23:00"))
    assert summer[summer < utc("2017-07-15")].max() == utc("2017-07-14 20:00")
    assert summer[summer > utc("2017-07-15")].min() == utc("2017-07-16 21:00")
    # A 4h bar straddling the Sunday open exists (its last two hours are open).
    assert fx.is_expected("4h", utc("2017-01-15 20:00"))
    assert not fx.is_expected("4h", utc("2017-01-15 16:00"))
    assert not fx.is_expected("1h", utc("2017-12-25 12:00"))  # Christmas
    assert fx.is_expected("1h", utc("2017-12-25 22:00"))  # 17:00 New York: the next session
    days = fx.open_times("1d", utc("2017-12-18"), utc("2017-12-31"))
    assert [d.day for d in days] == [18, 19, 20, 21, 22, 26, 27, 28, 29]


def test_exchange_calendar_knows_holidays_and_early_closes():
    nyse = get_calendar("XNYS")
    days = nyse.open_times("1d", utc("2024-07-01"), utc("2024-07-08"))
    assert utc("2024-07-04") not in days and utc("2024-07-05") in days
    full = nyse.open_times("1h", utc("2024-11-26"), utc("2024-11-27"))
    early = nyse.open_times("1h", utc("2024-11-29"), utc("2024-11-30"))  # closes at 13:00
    assert len(full) == 7 and full[0] == utc("2024-11-26 14:30")
    assert len(early) == 4


def test_periods_per_year_by_market():
    assert get_calendar("24/7").periods_per_year("1h") == pytest.approx(8766)
    assert get_calendar("24/7").periods_per_year("1d") == pytest.approx(365.25)
    assert 250 <= get_calendar("XNYS").periods_per_year("1d") <= 253
    assert 258 <= get_calendar("FX").periods_per_year("1d") <= 261
    assert 6_150 <= get_calendar("FX").periods_per_year("1h") <= 6_264


def test_an_unknown_calendar_is_refused_by_name():
    with pytest.raises(InputError, match="calendar 'NOPE'"):
        get_calendar("NOPE")


def test_registry_holds_the_sample_series(engine):
    registered = {i.symbol: i for i in list_instruments(engine)}
    assert registered["EURUSD"].calendar == "FX"
    assert registered["EURUSD"].cost_profile == "fx"
    assert registered["IBM"].calendar == "XNYS"
    assert {"GOOGL", "AAPL", "MSFT"} <= set(registered)


def test_set_get_and_refusals(engine, caplog):
    try:
        made = set_instrument(engine, "ZZTEST", "equity", description="test", who="pytest")
        assert (made.calendar, made.cost_profile) == ("XNYS", "equity")
        again = set_instrument(engine, "ZZTEST", "equity", calendar="XLON")
        assert get_instrument(engine, "ZZTEST").calendar == "XLON"
        assert again.description == "test"  # kept when not given
        with pytest.raises(InputError, match="asset_class 'bond'"):
            set_instrument(engine, "ZZTEST", "bond")
        with pytest.raises(InputError, match="calendar 'XXXX'"):
            set_instrument(engine, "ZZTEST", "equity", calendar="XXXX")
        with pytest.raises(InputError, match="symbol 'bad sym'"):
            set_instrument(engine, "bad sym", "fx")
        assert get_instrument(engine, "ZZTEST").calendar == "XLON"  # refusals changed nothing
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM market.instruments WHERE symbol = 'ZZTEST'"))
    with caplog.at_level(logging.WARNING):
        fallback = get_instrument(engine, "NOSUCH")
    assert (fallback.calendar, fallback.registered) == ("24/7", False)
    assert "trendcast instruments set NOSUCH" in caplog.text
