"""The indicator library against hand-computed values, and its no-look-ahead property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from indicators_reference import core_v1_reference

from trendcast import indicators as ind
from trendcast import window_sums
from trendcast.feature_sets import CORE_V1, phase_of
from trendcast.sample_data import SAMPLES
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


# --- the compiled window sums give today's bits ------------------------------------------------


@pytest.fixture(params=["compiled", "numpy"])
def window_path(request, monkeypatch):
    """Run the indicators on the compiled kernel for every series length, or on NumPy only."""
    if request.param == "compiled":
        # numba is a dependency of both environments: build the kernel even where the setting
        # turned it off, and fail (ImportError) rather than skip where it is missing
        kernel = window_sums.compiled() or window_sums._build()
        monkeypatch.setattr(window_sums.compiled, "kernel", kernel)
        monkeypatch.setattr(window_sums.compiled, "tried", True)
        monkeypatch.setattr(window_sums, "COMPILED_FROM", 0)
    else:
        monkeypatch.setattr(window_sums.compiled, "kernel", None)
        monkeypatch.setattr(window_sums.compiled, "tried", True)
    return request.param


def test_compiled_window_sums_match_numpy_bit_for_bit():
    kernel = window_sums.compiled() or window_sums._build()  # numba is a dependency: no skip
    rng = np.random.default_rng(3)
    for scale in (1.0, 1e-6, 1e9):
        x = np.cumsum(rng.standard_normal(1_200)) * scale + 50 * scale
        x[::41], x[300:340], x[500:540] = -0.0, -0.0, 0.0  # signed zeros, all-zero windows
        x[700] = 1e300  # a huge value swamps its windows: order of additions shows
        for n in range(1, 129):
            for length in (n, n + 1, n + 255, n + 256, n + 257, len(x)):
                got = kernel(np.ascontiguousarray(x[:length]), n, np.empty(length - n + 1))
                want = window_sums.window_sums_numpy(x[:length], n)
                assert np.array_equal(got.view("int64"), want.view("int64")), (scale, n, length)


def _same_bits(frame: pd.DataFrame, reference: pd.DataFrame) -> bool:
    assert list(frame.columns) == list(reference.columns)
    return np.array_equal(
        frame.to_numpy(dtype="float64").view("int64"),
        reference.to_numpy(dtype="float64").view("int64"),
    )


@pytest.mark.parametrize(("interval", "n"), [("1m", 30_000), ("1h", 8_000), ("1d", 3_000)])
def test_core_v1_gives_the_bits_of_the_numpy_only_code_on_synthetic_bars(window_path, interval, n):
    bars = synth_bars(n, interval=interval, seed=17)
    assert _same_bits(CORE_V1.compute(bars, interval), core_v1_reference(bars, interval))


def test_core_v1_gives_the_bits_of_the_numpy_only_code_on_real_bars(window_path):
    for sample in SAMPLES:
        bars, _ = sample.reader()
        assert _same_bits(
            CORE_V1.compute(bars, sample.interval), core_v1_reference(bars, sample.interval)
        ), sample.symbol


def test_faster_code_keeps_the_fingerprint_of_the_code_it_reproduces():
    # the NumPy-only code's fingerprint: stores registered under it keep accepting core v1
    assert "39eb3e89b61d7098" in CORE_V1.same_bits_as
    assert CORE_V1.fingerprint not in CORE_V1.same_bits_as
