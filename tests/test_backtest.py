"""Backtest engine: cross-checked against vectorbt, properties under random signals and costs,
no look-ahead through the public API, stops, reports and the performance filter."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt
from hypothesis import given, settings
from hypothesis import strategies as st

from trendcast import backtest as bt
from trendcast.errors import InputError
from trendcast.gates import Gates
from trendcast.report import run_report
from trendcast.sample_data import SAMPLES
from trendcast.strategy import (
    BuyAndHold,
    ModelThreshold,
    SmaCrossover,
    Strategy,
    make_strategy,
)
from trendcast.synth import synth_bars


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame


def vectorbt_equity(frame: pd.DataFrame, signals: np.ndarray, fee: float, slip: float):
    """The same long-only signals through vectorbt: decided at close t, filled at open t+1."""
    long = pd.Series(signals > 0)
    held = long.shift(1, fill_value=False)
    entries = held & ~held.shift(1, fill_value=False)
    exits = ~held & held.shift(1, fill_value=False)
    portfolio = vbt.Portfolio.from_signals(
        frame["close"],
        entries.to_numpy(),
        exits.to_numpy(),
        price=frame["open"],
        fees=fee,
        slippage=slip,
        init_cash=10_000.0,
        freq="1h",
    )
    return portfolio.value().to_numpy()


@pytest.mark.parametrize("data", ["eurusd", "synthetic"])
def test_equity_matches_vectorbt(eurusd, data):
    frame = eurusd if data == "eurusd" else synth_bars(20_000, interval="1m", seed=3)
    strategy = SmaCrossover(fast=5, slow=40)
    ours = bt.run(frame, strategy, bt.Costs(fee=0.001, slippage=0.0002)).equity
    theirs = vectorbt_equity(frame, strategy.signals(frame), 0.001, 0.0002)
    assert np.max(np.abs(ours / theirs - 1)) < 1e-9


class Peeking(Strategy):
    name = "peeking"

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        future = frame["close"].shift(-1) > frame["close"]  # tomorrow's close: look-ahead
        return future.to_numpy(dtype="float64")


def test_a_strategy_reading_the_future_is_refused(eurusd):
    with pytest.raises(bt.LookAheadError, match="changes when bars after"):
        bt.run(eurusd, Peeking())


def test_trades_happen_at_the_next_open(eurusd):
    frame = eurusd.iloc[:50].reset_index(drop=True)
    signal = np.zeros(50)
    signal[10:] = 1.0

    class FromBar10(Strategy):
        name = "from-bar-10"

        def signals(self, f):
            return signal[: len(f)]

    result = bt.run(frame, FromBar10(), bt.Costs(fee=0.0))
    assert (result.position[:11] == 0).all() and result.position[11] > 0
    shares = 10_000.0 / frame["open"].iloc[11]
    assert result.position[11] == pytest.approx(shares)
    assert result.equity[11] == pytest.approx(shares * frame["close"].iloc[11])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fee=st.floats(0.0, 0.01), slip=st.floats(0.0, 0.01))
def test_costs_never_increase_returns_and_flat_earns_exactly_zero(seed, fee, slip):
    frame = synth_bars(400, interval="1h", seed=seed)
    rng = np.random.default_rng(seed)
    signal = rng.choice([-1.0, 0.0, 1.0], size=len(frame))

    class Random(Strategy):
        name = "random"

        def signals(self, f):
            return signal[: len(f)]

    free = bt.run(frame, Random(), bt.Costs(fee=0.0)).equity[-1]
    paid = bt.run(frame, Random(), bt.Costs(fee=fee, slippage=slip)).equity[-1]
    assert paid <= free * (1 + 1e-12)

    class Flat(Strategy):
        name = "flat"

        def signals(self, f):
            return np.zeros(len(f))

    flat = bt.run(frame, Flat(), bt.Costs(fee=fee, slippage=slip))
    assert (flat.equity == 10_000.0).all() and flat.trades.empty


def test_stop_loss_exits_at_the_stop_price():
    times = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    frame = pd.DataFrame(
        {
            "open_time": times,
            "open": [100.0, 100.0, 99.0, 96.0, 96.0],
            "high": [101.0, 101.0, 99.5, 97.0, 97.0],
            "low": [99.0, 99.0, 94.0, 95.0, 95.0],  # bar 2 falls through a 3 % stop at 97
            "close": [100.0, 99.5, 95.0, 96.0, 96.0],
        }
    )
    strategy = ModelThreshold(threshold=0.0, stop_loss=0.03, trust_predictions=True)
    frame["prediction"] = 1.0
    result = bt.run(frame, strategy, bt.Costs(fee=0.0))
    trade = result.trades.iloc[0]
    assert trade["reason"] == "stop_loss" and trade["exit_price"] == pytest.approx(97.0)
    assert trade["entry_price"] == 100.0  # bar 1's open
    assert (result.position[2:] == 0).all()  # stays out: the signal never changed
    assert result.equity[-1] == pytest.approx(10_000 * 0.97)


def test_short_positions_profit_from_falls():
    times = pd.date_range("2024-01-01", periods=3, freq="1D", tz="UTC")
    frame = pd.DataFrame(
        {
            "open_time": times,
            "open": [100.0, 100.0, 90.0],
            "high": [100.0, 100.0, 90.0],
            "low": [100.0, 90.0, 90.0],
            "close": [100.0, 90.0, 90.0],
            "prediction": [-1.0, -1.0, -1.0],
        }
    )
    result = bt.run(
        frame,
        ModelThreshold(threshold=0.0, allow_short=True, trust_predictions=True),
        bt.Costs(fee=0.0),
    )
    assert result.equity[-1] == pytest.approx(11_000.0)


def test_report_numbers_and_filter(eurusd):
    report = run_report(eurusd, BuyAndHold(), bt.Costs(fee=0.0), symbol="EURUSD", interval="1h")
    assert report.cumulative_return == pytest.approx(report.benchmark_cumulative_return)
    assert report.cumulative_return == pytest.approx(
        eurusd["close"].iloc[-1] / eurusd["open"].iloc[1] - 1
    )
    assert report.time_in_market == pytest.approx(1 - 1 / len(eurusd))
    assert report.trades == 0 and report.bars == len(eurusd)
    assert set(report.by_period) == {"month", "quarter", "year"}
    assert len(report.by_period["month"]) == 12
    data = json.loads(report.to_json())
    assert data["symbol"] == "EURUSD" and data["beats_benchmark"] is False
    gates = Gates(min_test_ic=None).check_report(report)
    assert gates["beats buy-and-hold"] is False
    assert set(report.figures()) == {"equity", "drawdown"}


def test_strategies_save_load_and_reject_bad_parameters(tmp_path):
    strategy = SmaCrossover(fast=3, slow=9, allow_short=True)
    strategy.save(tmp_path / "s.json")
    loaded = Strategy.load(tmp_path / "s.json")
    assert isinstance(loaded, SmaCrossover) and loaded.get_params() == strategy.get_params()
    with pytest.raises(InputError, match="unknown parameter"):
        make_strategy("sma-crossover", window=3)
    with pytest.raises(InputError, match="fast < slow"):
        SmaCrossover(fast=30, slow=10)
    with pytest.raises(InputError, match="unknown; known"):
        make_strategy("martingale")


def test_fractional_targets_rebalance_like_vectorbt(eurusd):
    """A same-side change of weight (0.3 -> 0.8 -> 0.5) is rebalanced at the next open, as
    vectorbt's target-percent orders do, with fees and slippage on the traded difference."""
    rng = np.random.default_rng(4)
    n = len(eurusd)
    levels = np.array([0.0, 0.3, 0.5, 0.8, 1.0])
    target = levels[rng.integers(0, len(levels), n // 24 + 1)].repeat(24)[:n]

    class Fractions(Strategy):
        name = "fractions"

        def signals(self, frame):
            return target[: len(frame)]

    fee, slip = 0.0005, 0.0001
    ours = bt.run(eurusd, Fractions(), bt.Costs(fee=fee, slippage=slip)).equity
    wanted = np.concatenate(([0.0], target[:-1]))  # decided at close t, filled at open t+1
    changed = np.concatenate(([False], wanted[1:] != wanted[:-1]))
    size = np.where(changed, wanted, np.nan)
    theirs = vbt.Portfolio.from_orders(
        eurusd["close"],
        size=size,
        size_type="targetpercent",
        price=eurusd["open"],
        fees=fee,
        slippage=slip,
        init_cash=10_000.0,
        freq="1h",
    ).value()
    assert np.max(np.abs(ours / theirs.to_numpy() - 1)) < 1e-9
    assert (np.diff(bt.run(eurusd, Fractions(), bt.Costs()).position) != 0).sum() > 100


class _Fixed(Strategy):
    """Given positions, with stops: a strategy the look-ahead guard can check."""

    name = "fixed"
    defaults: ClassVar[dict] = {"stop_loss": None, "take_profit": None}

    def __init__(self, model=None, target=None, **params):
        super().__init__(model, **params)
        self.target = target

    def set_params(self, **params):
        return type(self)(target=self.target, **{**self.params, **params})

    def signals(self, frame):
        return self.target[: len(frame)]


def test_a_batch_equals_its_assets_run_one_by_one():
    """1,000 assets in one ``simulate_batch`` call give, column by column, exactly the curves,
    positions, exposures and trades of 1,000 single-asset runs: longs, shorts, fractional
    weights, stops, spread and slippage all exercised."""
    assets, bars = 1_000, 300
    frame = synth_bars(assets * bars, interval="1m", seed=21)
    rng = np.random.default_rng(8)
    levels = np.array([-1.0, -0.4, 0.0, 0.0, 0.3, 0.7, 1.0])
    flat = levels[rng.integers(0, len(levels), assets * bars // 6 + 1)].repeat(6)
    target = flat[: assets * bars].reshape(assets, bars).T  # (bars, assets)
    prices = [frame[c].to_numpy().reshape(assets, bars).T for c in ("open", "high", "low", "close")]
    costs = bt.Costs(fee=0.0007, spread=0.0004, slippage=0.0002)
    stops = {"stop_loss": 0.003, "take_profit": 0.004}
    batch = bt.simulate_batch(*prices, target, costs, **stops)
    assert batch.equity.shape == (bars, assets)
    reasons = set()
    for j in range(assets):
        rows = frame.iloc[j * bars : (j + 1) * bars]
        one = bt.simulate(rows, target[:, j], costs, **stops)
        assert np.array_equal(batch.equity[:, j], one.equity), j
        assert np.array_equal(batch.position[:, j], one.position), j
        assert np.array_equal(batch.exposure[:, j], one.exposure), j
        mine = batch.trades[batch.trades["asset"] == j].drop(columns="asset")
        assert mine.reset_index(drop=True).equals(one.trades[bt.TRADE_COLUMNS]), j
        reasons |= set(one.trades["reason"])
        if j < 3:  # and the product path, guard included, agrees with the engine
            full = bt.run(rows, _Fixed(target=target[:, j], **stops), costs)
            assert np.array_equal(full.equity, one.equity)
    assert reasons == set(bt.REASONS)
    assert (batch.position < 0).any() and len(batch.trades) > assets


def test_batch_refuses_bad_input_by_name():
    ones = np.ones((50, 3))
    with pytest.raises(InputError, match="target: NaN"):
        bt.simulate_batch(ones, ones, ones, ones, np.full((50, 3), np.nan))
    with pytest.raises(InputError, match=r"high: shape \(50, 2\)"):
        bt.simulate_batch(ones, ones[:, :2], ones, ones, ones)
    with pytest.raises(InputError, match="open: must be 2-D"):
        bt.simulate_batch(ones[:, 0], ones, ones, ones, ones)
    with pytest.raises(InputError, match="stop_loss"):
        bt.simulate_batch(ones, ones, ones, ones, ones, stop_loss=1.5)
