"""Research honesty without servers: cheating strategies refused every time, predictions of
unknown origin or with future knowledge refused, the deflated Sharpe against the paper's worked
example, cost profiles by asset class, calendar annualisation, the cost-aware threshold
strategy, and every promotion gate at, above and below its threshold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trendcast import backtest as bt
from trendcast import costs as cost_profiles
from trendcast import metrics
from trendcast.errors import InputError
from trendcast.gates import Gates
from trendcast.instruments import Instrument
from trendcast.report import run_report
from trendcast.sample_data import SAMPLES
from trendcast.strategy import BuyAndHold, ModelThreshold, SmaCrossover, Strategy
from trendcast.synth import synth_bars


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame


@pytest.fixture(scope="module")
def crypto() -> pd.DataFrame:
    return synth_bars(6_000, interval="1h", seed=11)


class Cheat(Strategy):
    """A strategy that reads the future in one of the ways people actually do."""

    name = "cheat"
    defaults = {"how": "centred"}  # noqa: RUF012

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        close = frame["close"].reset_index(drop=True)
        how = self.params["how"]
        if how == "centred":
            wanted = close < close.rolling(5, center=True, min_periods=1).mean()
        elif how == "shift-ffill":
            wanted = (np.sign(close.shift(-1) - close).ffill() > 0).astype(float)
        elif how == "future-max":
            wanted = close.rolling(5).max().shift(-4) > close
        else:
            raise AssertionError(how)
        return np.asarray(wanted, dtype="float64")


def _windows(frame: pd.DataFrame, count: int, seed: int, length=(120, 260)):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.integers(*length))
        start = int(rng.integers(0, len(frame) - size))
        yield frame.iloc[start : start + size].reset_index(drop=True)


@pytest.mark.parametrize("how", ["centred", "shift-ffill", "future-max"])
@pytest.mark.parametrize("data", ["eurusd", "crypto"])
def test_every_cheat_is_refused_in_300_of_300_random_windows(request, how, data):
    frame = request.getfixturevalue(data)
    refused = 0
    for window in _windows(frame, 300, seed=hash((how, data)) % 2**32):
        with pytest.raises(bt.LookAheadError, match="reads the future"):
            bt.run(window, Cheat(how=how), bt.Costs(fee=0.0))
        refused += 1
    assert refused == 300


def test_the_centred_cheat_would_otherwise_look_brilliant(crypto):
    """Why the guard matters: the cheat's signals, run without it, make an absurd Sharpe."""
    signals = Cheat(how="centred").signals(crypto)
    returns = np.diff(np.log(crypto["close"].to_numpy()))
    flattered = metrics.sharpe_ratio(signals[:-1] * returns, 8_766)
    assert flattered > 5
    with pytest.raises(bt.LookAheadError):
        bt.run(crypto, Cheat(how="centred"), bt.Costs(fee=0.001))


def test_causal_cuts_cover_every_early_decision_then_the_quarters():
    assert bt.causal_cuts(300) == list(range(1, 300))
    cuts = bt.causal_cuts(10_000, dense=1024)
    assert cuts[:1024] == list(range(1, 1025))
    assert cuts[1024:] == [2500, 5000, 7500]


class _RowModel:
    """A row-wise model: prediction = a fixed linear score of the row's features."""

    feature_names_in_ = np.array(["f1", "f2"])

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        return 0.002 * inputs["f1"].to_numpy() - 0.001 * inputs["f2"].to_numpy()


class _WindowModel(_RowModel):
    """Not row-wise: each prediction uses the rows around it (a centred smoother)."""

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        raw = pd.Series(super().predict(inputs))
        return raw.rolling(9, center=True, min_periods=1).mean().to_numpy()


def _with_features(frame: pd.DataFrame) -> pd.DataFrame:
    close = frame["close"]
    return frame.assign(
        f1=close.pct_change().fillna(0.0).to_numpy() * 100,
        f2=(close / close.rolling(24, min_periods=1).mean() - 1).to_numpy() * 100,
    )


@pytest.mark.slow
@pytest.mark.parametrize("data", ["eurusd", "crypto"])
def test_shipped_strategies_are_never_refused_in_300_random_windows(request, data):
    frame = _with_features(request.getfixturevalue(data))
    shipped = [
        BuyAndHold(),
        SmaCrossover(fast=5, slow=20, allow_short=True),
        ModelThreshold(model=_RowModel(), threshold=0.0001, min_hold=3, allow_short=True),
    ]
    for window in _windows(frame, 300, seed=7 if data == "eurusd" else 8, length=(60, 160)):
        for strategy in shipped:
            bt.run(window, strategy, bt.Costs(fee=0.0001))


def test_a_prediction_column_needs_provenance_and_may_not_know_the_future(eurusd):
    frame = eurusd.iloc[:2_000].reset_index(drop=True)
    future = np.log(frame["close"].shift(-4) / frame["close"]).to_numpy()
    leaked = frame.assign(prediction=future)
    with pytest.raises(InputError, match="accepted only from the project's own scoring"):
        bt.run(leaked, ModelThreshold(), bt.Costs(fee=0.0))
    with pytest.raises(InputError, match="correlates with the 1-bar forward return at IC"):
        bt.run(leaked, ModelThreshold(trust_predictions=True), bt.Costs(fee=0.0))
    noise = np.random.default_rng(1).normal(0, 1e-3, len(frame))
    honest = frame.assign(prediction=noise)
    report = run_report(
        honest, ModelThreshold(trust_predictions=True), symbol="EURUSD", interval="1h"
    )
    assert report.inputs == {"predictions": "trusted 'prediction' column (--trust-predictions)"}
    assert report.params["trust_predictions"] is True


def test_a_model_that_mixes_rows_is_refused_and_a_row_wise_one_recorded(eurusd):
    frame = _with_features(eurusd.iloc[:1_500].reset_index(drop=True))
    with pytest.raises(InputError, match="depends on other rows"):
        bt.run(frame, ModelThreshold(model=_WindowModel()), bt.Costs(fee=0.0))
    result = bt.run(frame, ModelThreshold(model=_RowModel()), bt.Costs(fee=0.0))
    assert result.inputs["predictions"].startswith("scored by the model")


class FutureInPrepare(Strategy):
    """Smuggles the next bar's return in through prepare(), which runs before the guard."""

    name = "future-in-prepare"

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(peek=frame["close"].shift(-1).to_numpy())

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["peek"] > frame["close"]).to_numpy(dtype="float64")


@pytest.mark.parametrize("bars", [500, 20_000])
def test_a_prepare_step_that_reads_other_rows_is_refused(crypto, bars):
    frame = synth_bars(bars, interval="1h", seed=2)
    with pytest.raises(InputError, match="prepared column 'peek' of a row depends on other rows"):
        bt.run(frame, FutureInPrepare(), bt.Costs(fee=0.0))


def test_deflated_sharpe_matches_bailey_and_lopez_de_prado_worked_example():
    """The paper's example (2014, section 5): 100 trials, variance of their annualised Sharpe
    0.5, best annualised Sharpe 2.5 over 1,250 daily returns (250 a year), skew -3, kurtosis
    10: the expected maximum is 0.1132 per day and the DSR 0.9004."""
    trial_variance = 0.5 / 250
    assert metrics.expected_max_sharpe(100, trial_variance) == pytest.approx(0.1132, abs=1e-4)
    dsr = metrics.deflated_sharpe_ratio(
        2.5 / math.sqrt(250), 1_250, 100, trial_variance, skew=-3, kurtosis=10
    )
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    # one trial: the DSR is the PSR against 0; more trials can only lower it
    psr = metrics.probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1_250, -3, 10)
    assert metrics.deflated_sharpe_ratio(2.5 / math.sqrt(250), 1_250, 1, None, -3, 10) == psr
    assert metrics.deflated_sharpe_ratio(2.5 / math.sqrt(250), 1_250, 1_000, None, -3, 10) < psr


def test_return_moments_of_a_normal_sample():
    sample = np.random.default_rng(3).normal(0, 0.01, 200_000)
    skew, kurt, n = metrics.return_moments(sample)
    assert abs(skew) < 0.05 and kurt == pytest.approx(3.0, abs=0.1) and n == 200_000


def test_cost_profiles_by_asset_class():
    fx = cost_profiles.resolve(Instrument("EURUSD", "fx", "FX", "fx"), 1.18)
    assert fx.costs.fee == 0
    assert fx.costs.per_fill * 1e4 < 1  # well under a basis point per fill
    assert fx.costs.spread == pytest.approx(0.2 * 0.0001 / 1.18)
    yen = cost_profiles.resolve(Instrument("USDJPY", "fx", "FX", "fx"), 150.0)
    assert yen.costs.spread == pytest.approx(0.3 * 0.01 / 150.0)  # a yen pip is 0.01
    btc = cost_profiles.resolve(Instrument("BTCUSDT", "crypto", "24/7", "crypto"), 60_000.0)
    assert btc.costs.fee == pytest.approx(0.001) and btc.costs.round_trip == pytest.approx(0.002)
    stock = cost_profiles.resolve(Instrument("AAPL", "equity", "XNYS", "equity"), 190.0)
    assert stock.costs.fee == pytest.approx(0.5e-4) and stock.costs.spread == pytest.approx(2e-4)
    custom = Instrument("EURUSD", "fx", "FX", "fx", {"spread_pips": 1.0})
    assert cost_profiles.resolve(custom, 1.0).costs.spread == pytest.approx(1e-4)
    with pytest.raises(InputError, match="cost_profile 'gold' unknown"):
        cost_profiles.resolve(Instrument("XAU", "other", "24/7", "gold"), 2000.0)
    with pytest.raises(InputError, match=r"spread_pips=-1\.0 must be >= 0"):
        cost_profiles.resolve(Instrument("EURUSD", "fx", "FX", "fx", {"spread_pips": -1}), 1.1)


@pytest.mark.parametrize(
    ("calendar", "interval", "expected"),
    [("24/7", "1h", 8_766), ("FX", "1h", 6_234), ("FX", "1d", 259.75), ("XNYS", "1d", 251.25)],
)
def test_reports_annualise_with_the_instruments_calendar(eurusd, calendar, interval, expected):
    instrument = Instrument("X", "other", calendar, "crypto")
    ppy = instrument.periods_per_year(interval)
    assert ppy == pytest.approx(expected, rel=0.01)
    frame = eurusd.iloc[:500].reset_index(drop=True)
    report = run_report(
        frame, BuyAndHold(), bt.Costs(fee=0.0), symbol="X", interval=interval, periods_per_year=ppy
    )
    returns = metrics.returns_from_equity(report.equity.to_numpy())
    assert report.periods_per_year == ppy
    assert report.sharpe == pytest.approx(metrics.sharpe_ratio(returns, ppy))


def test_the_threshold_strategy_never_enters_below_the_round_trip_cost(eurusd):
    frame = eurusd.iloc[:1_000].reset_index(drop=True)
    rng = np.random.default_rng(5)
    predicted = rng.uniform(-0.0015, 0.0015, len(frame))  # all below 20 bps
    frame = frame.assign(prediction=predicted)
    crypto_costs = bt.Costs(fee=0.001)  # 20 bps a round trip
    idle = bt.run(frame, ModelThreshold(threshold=0.0, trust_predictions=True), crypto_costs)
    assert len(idle.trades) == 0 and idle.strategy.params["round_trip_cost"] == 0.002
    cheap = bt.run(frame, ModelThreshold(threshold=0.0, trust_predictions=True), bt.Costs(0.0))
    assert len(cheap.trades) > 50  # the same predictions trade when trading is free
    margin = ModelThreshold(threshold=0.0, margin=0.001, trust_predictions=True)
    assert margin.set_params(round_trip_cost=0.0003).entry_level() == pytest.approx(0.0013)


def test_min_hold_keeps_a_position_at_least_that_many_bars(eurusd):
    frame = eurusd.iloc[:400].reset_index(drop=True)
    flip = np.where(np.arange(len(frame)) % 2 == 0, 0.01, -0.01)  # flips every bar
    frame = frame.assign(prediction=flip)
    strategy = ModelThreshold(threshold=0.0, min_hold=5, trust_predictions=True)
    held = strategy.signals(frame)
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate(([0.0], held, [0.0])))))[::2]
    assert (runs[:-1] >= 5).all()
    assert (
        ModelThreshold(threshold=0.0, trust_predictions=True).signals(frame) == (flip > 0)
    ).all()
    with pytest.raises(InputError, match="min_hold 0: must be >= 1"):
        ModelThreshold(min_hold=0)


BASE = {
    "backtest_sharpe": 1.5,
    "backtest_max_drawdown": 0.1,
    "backtest_cumulative_return": 0.2,
    "backtest_benchmark_cumulative_return": 0.1,
    "test_ic": 0.05,
    "backtest_dsr": 0.99,
    "selection_end_ts": 1_000.0,
    "test_start_ts": 2_000.0,
}


@pytest.mark.parametrize(
    ("gate", "changes", "passes"),
    [
        ("backtest sharpe >= 1.0", {"backtest_sharpe": 1.0}, True),
        ("backtest sharpe >= 1.0", {"backtest_sharpe": 1.0 + 1e-9}, True),
        ("backtest sharpe >= 1.0", {"backtest_sharpe": 1.0 - 1e-9}, False),
        ("backtest max drawdown <= 30%", {"backtest_max_drawdown": 0.30}, True),
        ("backtest max drawdown <= 30%", {"backtest_max_drawdown": 0.30 - 1e-9}, True),
        ("backtest max drawdown <= 30%", {"backtest_max_drawdown": 0.30 + 1e-9}, False),
        ("test IC > 0.02", {"test_ic": 0.02}, False),
        ("test IC > 0.02", {"test_ic": 0.02 + 1e-9}, True),
        ("test IC > 0.02", {"test_ic": 0.02 - 1e-9}, False),
        ("backtest deflated sharpe >= 0.95", {"backtest_dsr": 0.95}, True),
        ("backtest deflated sharpe >= 0.95", {"backtest_dsr": 0.95 + 1e-9}, True),
        ("backtest deflated sharpe >= 0.95", {"backtest_dsr": 0.95 - 1e-9}, False),
        ("beats buy-and-hold", {"backtest_cumulative_return": 0.1}, False),
        ("beats buy-and-hold", {"backtest_cumulative_return": 0.1 + 1e-9}, True),
        ("beats buy-and-hold", {"backtest_cumulative_return": 0.1 - 1e-9}, False),
        ("test window after selection", {"test_start_ts": 1_000.0}, False),
        ("test window after selection", {"test_start_ts": 1_000.001}, True),
        ("test window after selection", {"test_start_ts": 999.999}, False),
        ("test window after selection", {"selection_end_ts": None}, False),
    ],
)
def test_each_gate_at_just_above_and_just_below_its_threshold(gate, changes, passes):
    values = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    results = Gates().evaluate(values)
    assert results[gate]["passed"] is passes
    others = [g for g, r in results.items() if g != gate and not r["passed"]]
    assert others == []  # only the gate under test moved


def test_a_gate_file_cannot_turn_the_test_window_seal_off(tmp_path):
    loose = tmp_path / "gates.json"
    loose.write_text('{"sealed_test": false, "min_backtest_dsr": 0.5}')
    with pytest.raises(InputError, match="sealed_test: not a setting"):
        Gates.from_file(loose)
    loose.write_text('{"min_backtest_dsr": 0.5}')
    profile = Gates.from_file(loose)
    assert profile.sealed_test and profile.min_backtest_dsr == 0.5
    assert not profile.evaluate({**BASE, "test_start_ts": 900.0})["test window after selection"][
        "passed"
    ]
