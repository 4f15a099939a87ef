"""The metrics library against hand-computed values on tiny series, plus reference libraries
(NumPy, SciPy) on random data. Expected values are derived in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trendcast import metrics as m
from trendcast.errors import InputError
from trendcast.schema import INTERVALS

REL = 1e-12
NAN = np.nan

# The running example: equity [100, 110, 99, 120]
#   returns   110/100-1 = 0.1, 99/110-1 = -0.1, 120/99-1 = 21/99 = 0.2121...
#   peaks     100, 110, 110, 120 -> drawdowns 0, 0, 99/110-1 = -0.1, 0
EQUITY = np.array([100.0, 110.0, 99.0, 120.0])

# Returns used for the Sharpe/Sortino examples: r = [0.1, -0.1, 0.2]
#   mean = 0.2/3 = 1/15
#   deviations 1/30, -1/6, 2/15 -> squares 1/900, 25/900, 16/900 -> sum 42/900
#   sample variance (ddof=1) = 42/1800 = 7/300
R = np.array([0.1, -0.1, 0.2])


def approx(x: float) -> object:
    return pytest.approx(x, rel=REL, abs=0.0)


# ---------------------------------------------------------------- mse / mae


def test_mse_mae_by_hand_drop_nan_pairs():
    y_true = [1.0, 2.0, 3.0, NAN, 5.0]
    y_pred = [1.5, 2.0, 1.0, 4.0, NAN]
    # kept pairs (1, 1.5), (2, 2), (3, 1): errors -0.5, 0, 2
    assert m.mse(y_true, y_pred) == approx((0.25 + 0.0 + 4.0) / 3)
    assert m.mae(y_true, y_pred) == approx((0.5 + 0.0 + 2.0) / 3)


def test_mse_mae_accept_pandas_series():
    a = pd.Series([0.0, 1.0, 2.0])
    b = pd.Series([1.0, 1.0, 4.0])  # errors -1, 0, -2
    assert m.mse(a, b) == approx(5 / 3)
    assert m.mae(a, b) == approx(1.0)


def test_mse_mae_nan_when_no_pairs():
    assert math.isnan(m.mse([NAN, 1.0], [2.0, NAN]))
    assert math.isnan(m.mae([], []))


def test_mse_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        m.mse([1.0, 2.0], [1.0])


# ---------------------------------------------------------------- information coefficients


def test_information_coefficient_by_hand():
    # pred 1,2,3,4 (mean 2.5): dx = -1.5, -0.5, 0.5, 1.5 -> sum dx^2 = 5
    # actual 2,4,5,9 (mean 5): dy = -3, -1, 0, 4 -> sum dy^2 = 26, sum dx*dy = 4.5+0.5+0+6 = 11
    # r = 11 / sqrt(5 * 26)
    assert m.information_coefficient([1, 2, 3, 4], [2, 4, 5, 9]) == approx(11 / math.sqrt(130))


def test_rank_information_coefficient_by_hand_monotone_is_one():
    # same data: actual is increasing in pred, so ranks agree exactly while Pearson is < 1
    assert m.rank_information_coefficient([1, 2, 3, 4], [2, 4, 5, 9]) == approx(1.0)
    assert m.rank_information_coefficient([1, 2, 3, 4], [9, 5, 4, 2]) == approx(-1.0)


def test_rank_information_coefficient_by_hand_with_ties():
    # pred 1,2,2,3 -> average ranks 1, 2.5, 2.5, 4; actual 1,3,2,4 -> ranks 1, 3, 2, 4
    # both mean 2.5: dx = -1.5, 0, 0, 1.5 (sum sq 4.5); dy = -1.5, 0.5, -0.5, 1.5 (sum sq 5)
    # sum dx*dy = 2.25 + 2.25 = 4.5 -> rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    pred, actual = [1, 2, 2, 3], [1, 3, 2, 4]
    assert m.rank_information_coefficient(pred, actual) == approx(3 / math.sqrt(10))
    assert m.rank_information_coefficient(pred, actual) == approx(stats.spearmanr(pred, actual)[0])


def test_information_coefficients_drop_nan_pairs():
    # the hand example with two extra pairs that each have a NaN side
    pred = [1, 2, NAN, 3, 4, 7]
    actual = [2, 4, 100, 5, 9, NAN]
    assert m.information_coefficient(pred, actual) == approx(11 / math.sqrt(130))
    assert m.rank_information_coefficient(pred, actual) == approx(1.0)


@pytest.mark.parametrize("ic", [m.information_coefficient, m.rank_information_coefficient])
@pytest.mark.parametrize(
    ("pred", "actual"),
    [
        ([1.0, 2.0], [1.0, 3.0]),  # only 2 pairs
        ([1.0, 2.0, NAN], [1.0, 3.0, 2.0]),  # 3 values but 2 complete pairs
        ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]),  # constant prediction
        ([1.0, 2.0, 3.0, 4.0], [0.1, 0.1, 0.1, 0.1]),  # constant outcome
        ([], []),
    ],
)
def test_information_coefficients_nan_when_undefined(ic, pred, actual):
    assert math.isnan(ic(pred, actual))


def test_information_coefficient_matches_numpy_on_random_data():
    rng = np.random.default_rng(7)
    for _ in range(5):
        x = rng.normal(size=500)
        y = 0.3 * x + rng.standard_t(3, size=500)
        assert m.information_coefficient(x, y) == approx(np.corrcoef(x, y)[0, 1])


def test_rank_information_coefficient_matches_scipy_on_random_data():
    rng = np.random.default_rng(11)
    for _ in range(5):
        x = rng.normal(size=400)
        y = np.exp(x) + rng.normal(size=400)
        assert m.rank_information_coefficient(x, y) == approx(stats.spearmanr(x, y)[0])
    # heavy ties (rounded values), and NaNs dropped pairwise before ranking
    x = np.round(rng.normal(size=300), 1)
    y = np.round(x + rng.normal(size=300), 0)
    x[::17], y[5::23] = NAN, NAN
    keep = ~(np.isnan(x) | np.isnan(y))
    expected = stats.spearmanr(x[keep], y[keep])[0]
    assert m.rank_information_coefficient(x, y) == approx(expected)


# ---------------------------------------------------------------- psi


def test_psi_by_hand():
    # expected 1..10, bins=2: the one interior cut is the median 5.5 -> shares 0.5, 0.5
    # actual: 0 and 5 are <= 5.5, six values above (20 and 30 beyond the reference range still
    # fall in the open outer bin) -> shares 0.25, 0.75
    # psi = (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5) = 0.25*ln(2) + 0.25*ln(1.5)
    #     = 0.25 * ln(3)
    expected = np.arange(1.0, 11.0)
    actual = [0, 5, 6, 7, 8, 9, 20, 30]
    assert m.psi(expected, actual, bins=2) == approx(0.25 * math.log(3))


def test_psi_bins_are_right_closed():
    # expected 1..5, bins=2: cut at the median 3; bin (-inf, 3] holds 1,2,3 -> 0.6, 0.4
    # actual 3,3,3,3,4: the values equal to the cut go to the lower bin -> 0.8, 0.2
    # psi = 0.2*ln(0.8/0.6) + (-0.2)*ln(0.2/0.4) = 0.2*ln(4/3) + 0.2*ln(2) = 0.2*ln(8/3)
    assert m.psi([1, 2, 3, 4, 5], [3, 3, 3, 3, 4], bins=2) == approx(0.2 * math.log(8 / 3))


def test_psi_floors_empty_bins():
    # expected 1..10, bins=2 -> 0.5, 0.5; actual all above 5.5 -> 0, 1 -> floored to 1e-6, 1
    e, a = 0.5, 1e-6
    hand = (a - e) * math.log(a / e) + (1 - e) * math.log(1 / e)
    assert m.psi(np.arange(1.0, 11.0), [100.0, 200.0], bins=2) == approx(hand)
    assert math.isfinite(hand)


def test_psi_constant_reference_keeps_unique_edges():
    # expected all 5: every interior quantile is 5 -> unique cuts [5] -> bins (-inf,5], (5,inf)
    # expected shares 1, 0 -> 1, 1e-6; actual 5,5,6,6 -> 0.5, 0.5
    # psi = (0.5-1)*ln(0.5/1) + (0.5-1e-6)*ln(0.5/1e-6)
    hand = 0.5 * math.log(2) + (0.5 - 1e-6) * math.log(0.5 / 1e-6)
    assert m.psi([5.0] * 10, [5.0, 5.0, 6.0, 6.0]) == approx(hand)


def test_psi_zero_for_identical_samples_and_nan_dropped():
    rng = np.random.default_rng(3)
    x = rng.normal(size=1_000)
    assert m.psi(x, x) == 0.0
    actual = rng.normal(0.5, 1.0, size=800)
    with_nan = np.concatenate([actual, [NAN, NAN]])
    assert m.psi(np.append(x, NAN), with_nan) == approx(m.psi(x, actual))
    assert m.psi(x, actual) > 0.1  # a half-sigma shift is a visible drift


def test_psi_matches_decile_binning_of_pandas_on_random_data():
    # an independent construction: pd.cut at the reference deciles (right-closed), outer
    # edges opened to +-inf, shares floored at 1e-6
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=2_000), rng.normal(0.2, 1.3, size=1_500)
    edges = np.quantile(ref, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    e = pd.Series(pd.cut(ref, edges)).value_counts(normalize=True, sort=False).to_numpy()
    a = pd.Series(pd.cut(cur, edges)).value_counts(normalize=True, sort=False).to_numpy()
    e, a = np.maximum(e, 1e-6), np.maximum(a, 1e-6)
    assert m.psi(ref, cur) == approx(float(np.sum((a - e) * np.log(a / e))))


def test_psi_nan_when_a_sample_is_empty_and_rejects_bad_bins():
    assert math.isnan(m.psi([], [1.0, 2.0]))
    assert math.isnan(m.psi([1.0, 2.0], [NAN]))
    with pytest.raises(ValueError, match="bins"):
        m.psi([1.0, 2.0], [1.0], bins=0)


# ---------------------------------------------------------------- returns, Sharpe, Sortino


def test_returns_from_equity_by_hand():
    np.testing.assert_allclose(
        m.returns_from_equity(EQUITY), [0.1, -0.1, 21 / 99], rtol=REL, atol=0.0
    )
    assert m.returns_from_equity([100.0]).shape == (0,)


@pytest.mark.parametrize(
    "equity",
    [[100.0, 0.0, 50.0], [100.0, NAN, 120.0], [100.0, -5.0], [0.0, 1.0], [], [[1.0, 2.0]]],
)
def test_returns_from_equity_rejects_bad_curves(equity):
    with pytest.raises(ValueError):
        m.returns_from_equity(equity)


def test_sharpe_ratio_by_hand():
    # mean / std = (1/15) / sqrt(7/300) = sqrt(300 / (7 * 225)) = sqrt(4/21) = 2/sqrt(21)
    assert m.sharpe_ratio(R, 1) == approx(2 / math.sqrt(21))
    # annualised with 252: 2/sqrt(21) * sqrt(252) = 2 * sqrt(12) = 4 * sqrt(3)
    assert m.sharpe_ratio(R, 252) == approx(4 * math.sqrt(3))


def test_sharpe_ratio_edge_cases():
    assert m.sharpe_ratio([0.0, 0.0, 0.0], 365) == 0.0
    # constant non-zero returns: riskless, even though np.std of them may be a rounding residue
    assert m.sharpe_ratio([0.1, 0.1, 0.1], 365) == math.inf
    assert m.sharpe_ratio([-0.01] * 4, 365) == -math.inf
    assert math.isnan(m.sharpe_ratio([0.05], 365))
    assert math.isnan(m.sharpe_ratio([], 365))
    assert math.isnan(m.sharpe_ratio([0.1, NAN, 0.2], 365))  # NaN propagates


def test_sortino_ratio_by_hand():
    # downside: min(r, 0) = 0, -0.1, 0 -> squares 0, 0.01, 0 -> mean over ALL 3 = 0.01/3
    # downside deviation = 0.1/sqrt(3); ratio = (1/15) / (0.1/sqrt(3)) = 2*sqrt(3)/3
    # (averaging over the negative returns only would give 0.1 and 2/3 instead)
    assert m.sortino_ratio(R, 1) == approx(2 * math.sqrt(3) / 3)
    # annualised with 12: 2*sqrt(3)/3 * 2*sqrt(3) = 4
    assert m.sortino_ratio(R, 12) == approx(4.0)


def test_sortino_ratio_edge_cases():
    assert m.sortino_ratio([0.01, 0.02, 0.0], 365) == math.inf  # no negative returns
    assert m.sortino_ratio([0.0, 0.0, 0.0], 365) == 0.0
    # all negative: downside = sqrt(mean(r^2)) = sqrt((0.01 + 0.04)/2) = sqrt(0.025)
    assert m.sortino_ratio([-0.1, -0.2], 1) == approx(-0.15 / math.sqrt(0.025))
    assert math.isnan(m.sortino_ratio([0.1], 365))
    assert math.isnan(m.sortino_ratio([0.1, NAN, -0.1], 365))


def test_rolling_sharpe_by_hand():
    r = [0.1, -0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0]
    # window 3, ppy 1:
    #   [0.1, -0.1, 0.2] -> 2/sqrt(21) (as in test_sharpe_ratio_by_hand)
    #   [-0.1, 0.2, 0.0]: mean 1/30, deviations -2/15, 1/6, -1/30 -> squares sum 42/900,
    #                     variance 7/300 -> (1/30)/sqrt(7/300) = 1/sqrt(21)
    #   [0.2, 0.0, 0.0]:  mean 1/15, deviations 2/15, -1/15, -1/15 -> squares sum 6/225,
    #                     variance 1/75 -> (1/15)*sqrt(75) = 1/sqrt(3)
    #   [0.0, 0.0, 0.0] x3: constant zero -> 0.0
    out = m.rolling_sharpe(r, 3, 1)
    assert np.isnan(out[:2]).all()
    expected = [2 / math.sqrt(21), 1 / math.sqrt(21), 1 / math.sqrt(3), 0.0, 0.0, 0.0]
    np.testing.assert_allclose(out[2:], expected, rtol=REL, atol=0.0)


def test_rolling_sharpe_matches_sharpe_ratio_per_window():
    rng = np.random.default_rng(9)
    r = rng.normal(0.001, 0.02, size=200)
    r[50:60] = 0.003  # a constant stretch: +inf where the window lies inside it
    out = m.rolling_sharpe(r, 10, 8760)
    assert np.isnan(out[:9]).all()
    for t in range(9, len(r)):
        assert out[t] == approx(m.sharpe_ratio(r[t - 9 : t + 1], 8760))
    assert out[59] == math.inf


def test_rolling_sharpe_short_input_and_bad_window():
    assert np.isnan(m.rolling_sharpe([0.1, 0.2], 3, 365)).all()
    assert m.rolling_sharpe([], 3, 365).shape == (0,)
    with pytest.raises(ValueError, match="window"):
        m.rolling_sharpe([0.1, 0.2], 1, 365)


# ---------------------------------------------------------------- drawdowns


def test_drawdowns_by_hand():
    np.testing.assert_allclose(m.drawdowns(EQUITY), [0.0, 0.0, -0.1, 0.0], rtol=REL, atol=1e-15)
    assert m.max_drawdown(EQUITY) == approx(0.1)
    assert m.average_drawdown(EQUITY) == approx(0.1)  # one drawdown period, trough -0.1


def test_average_drawdown_counts_periods_not_points():
    equity = [100, 90, 100, 120, 90, 60, 130, 125]
    # peaks 100, 100, 100, 120, 120, 120, 130, 130
    # drawdowns 0, -0.1, 0, 0, -0.25, -0.5, 0, -5/130  (the last period is still open)
    # periods and troughs: [-0.1] -> 0.1; [-0.25, -0.5] -> 0.5; [-1/26] -> 1/26
    np.testing.assert_allclose(
        m.drawdowns(equity), [0, -0.1, 0, 0, -0.25, -0.5, 0, -1 / 26], rtol=REL, atol=1e-15
    )
    assert m.max_drawdown(equity) == approx(0.5)
    assert m.average_drawdown(equity) == approx((0.1 + 0.5 + 1 / 26) / 3)


def test_drawdowns_without_a_fall():
    for equity in ([100.0, 100.0, 100.0], [1.0, 2.0, 3.0], [50.0]):
        assert (m.drawdowns(equity) == 0).all()
        dd = m.max_drawdown(equity)
        assert dd == 0.0 and math.copysign(1.0, dd) == 1.0  # not -0.0
        assert m.average_drawdown(equity) == 0.0


def test_drawdowns_of_a_wiped_out_account():
    assert m.max_drawdown([100.0, 50.0, 0.0]) == 1.0
    assert m.average_drawdown([100.0, 50.0, 0.0]) == 1.0


# ---------------------------------------------------------------- returns over the curve


def test_cumulative_and_annualized_return_by_hand():
    assert m.cumulative_return(EQUITY) == approx(0.2)  # 120/100 - 1
    # 4 points = 3 periods; with 3 periods a year the CAGR is the total return
    assert m.annualized_return(EQUITY, 3) == approx(0.2)
    # 12 periods a year: (1.2) ** (12/3) - 1 = 2.0736 - 1
    assert m.annualized_return(EQUITY, 12) == approx(1.0736)
    # 365 daily periods over 2 days with +1 %: 1.01 ** (365/2) - 1
    assert m.annualized_return([100.0, 100.5, 101.0], 365) == approx(1.01**182.5 - 1)


def test_cumulative_and_annualized_return_edge_cases():
    assert m.cumulative_return([100.0]) == 0.0
    assert math.isnan(m.annualized_return([100.0], 365))
    assert m.annualized_return([100.0, 100.0, 100.0], 365) == 0.0
    assert m.cumulative_return([100.0, 0.0]) == -1.0
    assert m.annualized_return([100.0, 0.0], 365) == -1.0


# ---------------------------------------------------------------- trades


def test_win_rate_by_hand():
    # wins: 0.05 and 0.1; a flat trade (0.0) is not a win -> 2 of 4
    assert m.win_rate([0.05, -0.02, 0.0, 0.1]) == 0.5
    assert m.win_rate([-0.01, -0.02]) == 0.0
    assert m.win_rate(np.array([0.3])) == 1.0


def test_win_rate_no_trades_or_nan():
    assert math.isnan(m.win_rate([]))
    assert math.isnan(m.win_rate([0.1, NAN]))


# ---------------------------------------------------------------- annualisation

CRYPTO = {
    "1m": 525_600.0,  # 365 * 24 * 60
    "3m": 175_200.0,
    "5m": 105_120.0,
    "15m": 35_040.0,
    "30m": 17_520.0,
    "1h": 8_760.0,  # 365 * 24
    "2h": 4_380.0,
    "4h": 2_190.0,
    "6h": 1_460.0,
    "8h": 1_095.0,
    "12h": 730.0,
    "1d": 365.0,
    "3d": 365.0 / 3,
    "1w": 52.0,
    "1M": 12.0,
}


def test_periods_per_year_table_covers_every_interval():
    assert set(CRYPTO) == set(INTERVALS)


@pytest.mark.parametrize(("interval", "expected"), CRYPTO.items())
def test_periods_per_year_around_the_clock(interval, expected):
    assert m.periods_per_year(interval) == approx(expected)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("1m", 252 * 24 * 60),
        ("1h", 252 * 24),
        ("1d", 252.0),
        ("3d", 84.0),
        ("1w", 52.0),  # weeks and months do not depend on trading days
        ("1M", 12.0),
    ],
)
def test_periods_per_year_with_trading_days(interval, expected):
    assert m.periods_per_year(interval, trading_days=252) == approx(expected)


def test_periods_per_year_rejects_unknown_interval_and_bad_days():
    with pytest.raises(InputError, match="'2d'"):
        m.periods_per_year("2d")
    with pytest.raises(ValueError, match="trading_days"):
        m.periods_per_year("1d", trading_days=0)
