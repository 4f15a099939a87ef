"""The indicator library against hand-computed values, and its no-look-ahead property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trendcast import indicators as ind
from trendcast.feature_sets import CORE_V1, phase_of
from trendcast.synth import synth_bars

X = np.array([1.0, 2.0, 3.0, 4.0, 6.0])


def test_rolling_mean_by_hand():
    np.testing.assert_array_equal(ind.rolling_mean(X, 3), [np.nan, np.nan, 2.0, 3.0, 13 / 3])


def test_rolling_std_by_hand():
    # windows (1,2,3) (2,3,4) (3,4,6): sample std 1, 1, sqrt(7/3)
    np.testing.assert_allclose(ind.rolling_std(X, 3)[2:], [1.0, 1.0, np.sqrt(7 / 3)])
    assert np.isnan(ind.rolling_std(X, 3)[:2]).all()


def test_log_return_by_hand():
    out = ind.log_return(X, 2)
    np.testing.assert_allclose(out[2:], [np.log(3), np.log(2), np.log(2)])
    assert np.isnan(out[:2]).all()


def test_rsi_by_hand():
    close = np.array([10.0, 11.0, 10.5, 11.5, 11.5])
    # changes +1, -0.5, +1, 0 -> over the last 3: gains 1 + 0 + 0... take n=3 at bar 3: +1,-0.5,+1
    out = ind.rsi(close, 3)
    assert np.isnan(out[:3]).all()
    assert out[3] == pytest.approx(100 * 2 / 2.5)  # gains 2, losses 0.5
    assert out[4] == pytest.approx(100 * 1 / 1.5)  # -0.5, +1, 0
    assert ind.rsi(np.array([5.0] * 6), 3)[-1] == 50.0


def test_seasonal_mean_uses_same_phase_only():
    x = np.arange(8, dtype=float)  # phases alternate 0,1,0,1,...
    phase = np.array([0, 1] * 4)
    out = ind.seasonal_mean(x, phase, 2)
    np.testing.assert_array_equal(out, [np.nan, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])


def test_phase_follows_interval():
    times = pd.Series(pd.to_datetime(["2024-01-01T05:07Z"], utc=True))
    assert phase_of(times, "1m") == (np.array([7]), 60)
    assert phase_of(times, "1h") == (np.array([5]), 24)
    assert phase_of(times, "1d") == (np.array([0]), 7)  # a Monday


def test_no_look_ahead_future_bars_do_not_change_the_past():
    bars = synth_bars(3_000, interval="1h", seed=4)
    full = CORE_V1.compute(bars, "1h")
    cut = CORE_V1.compute(bars.iloc[:2_000], "1h")
    a, b = full.iloc[:2_000].to_numpy(), cut.to_numpy()
    assert np.array_equal(a.view("int64"), b.view("int64"))  # bit for bit, NaN included


def test_short_lookback_gives_the_same_bits():
    bars = synth_bars(8_000, interval="1h", seed=9)
    lookback = CORE_V1.lookback_bars("1h")
    full = CORE_V1.compute(bars, "1h").iloc[-500:].to_numpy()
    tail = bars.iloc[-(500 + lookback) :].reset_index(drop=True)
    part = CORE_V1.compute(tail, "1h").iloc[-500:].to_numpy()
    assert np.array_equal(full.view("int64"), part.view("int64"))
    assert not np.isnan(part).any()


def test_changed_definition_changes_the_fingerprint():
    import dataclasses

    other = dataclasses.replace(
        CORE_V1, function=lambda bars, interval: CORE_V1.function(bars, interval) * 2
    )
    assert other.fingerprint != CORE_V1.fingerprint
    assert dataclasses.replace(CORE_V1).fingerprint == CORE_V1.fingerprint
