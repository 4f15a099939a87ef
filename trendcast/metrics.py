"""Evaluation metrics shared by training, backtests and drift monitoring.

One implementation per metric so that a number logged at training time, a number in a backtest
report and a number on the drift dashboard mean the same thing. Everything here is a pure
function of NumPy arrays (anything ``np.asarray`` accepts, e.g. a pandas Series): no I/O, no
state. Conventions:

* Prediction metrics (``mse``, ``mae``, the information coefficients) drop pairs where either
  side is NaN, because targets at the end of a series and features at its start are NaN by
  construction.
* Return metrics (Sharpe, Sortino, win rate) let a NaN return propagate to a NaN result: a
  missing return in a backtest is a bug to surface, not a value to skip.
* Equity curves must be finite, non-negative and start above zero; drawdowns are reported as
  positive fractions (0.25 means the equity fell 25 % below its previous peak).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from trendcast.errors import InputError
from trendcast.schema import INTERVALS

#: Floor for bin proportions in ``psi``: an empty bin would otherwise give log(0).
PSI_FLOOR = 1e-6

_MIN_CORRELATION_PAIRS = 3


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _pairs(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The two series with every pair where either side is NaN removed."""
    x, y = _vector(a, names[0]), _vector(b, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {len(x)} vs {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _equity(equity: ArrayLike) -> np.ndarray:
    """An equity curve checked for the preconditions every equity metric relies on."""
    arr = _vector(equity, "equity")
    if len(arr) == 0:
        raise ValueError("equity is empty")
    if not np.isfinite(arr).all():
        raise ValueError("equity must be finite (no NaN or inf)")
    if (arr < 0).any():
        raise ValueError("equity must be >= 0")
    if arr[0] <= 0:
        raise ValueError("equity must start above 0")
    return arr


def _is_constant(x: np.ndarray) -> bool:
    """All values equal. Checked exactly instead of testing std == 0, because the computed std
    of a constant series such as [0.1, 0.1, 0.1] can be a rounding residue like 1e-17."""
    return bool(x.min() == x.max())


def mse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean squared error over pairs where both values are present (NaN if there are none)."""
    t, p = _pairs(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean((t - p) ** 2)) if len(t) else math.nan


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error over pairs where both values are present (NaN if there are none)."""
    t, p = _pairs(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean(np.abs(t - p))) if len(t) else math.nan


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < _MIN_CORRELATION_PAIRS or _is_constant(x) or _is_constant(y):
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    r = float(np.sum(dx * dy) / math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy))))
    return max(-1.0, min(1.0, r))  # rounding can push |r| a hair above 1


def information_coefficient(pred: ArrayLike, actual: ArrayLike) -> float:
    """Pearson correlation of predictions with realised values: does the signal's size track the
    outcome. NaN pairs are dropped; NaN when fewer than 3 pairs remain or either side is
    constant (the correlation is undefined, and 0 would read as "no skill")."""
    return _pearson(*_pairs(pred, actual, ("pred", "actual")))


def rank_information_coefficient(pred: ArrayLike, actual: ArrayLike) -> float:
    """Spearman correlation (Pearson of average ranks): does the signal order outcomes, robust
    to the fat tails of returns. NaN pairs are dropped before ranking; same NaN rules as
    ``information_coefficient``."""
    x, y = _pairs(pred, actual, ("pred", "actual"))
    rx = pd.Series(x).rank(method="average").to_numpy(dtype=float)
    ry = pd.Series(y).rank(method="average").to_numpy(dtype=float)
    return _pearson(rx, ry)


def psi(expected: ArrayLike, actual: ArrayLike, bins: int = 10) -> float:
    """Population stability index of ``actual`` against the reference sample ``expected``: how
    far a feature or prediction distribution has drifted since training.

    Bins are right-closed with cut points at the unique interior quantiles of ``expected``
    (so ties in the reference merge bins instead of creating empty ones) and open outer edges
    at -inf/+inf (so values outside the training range still land in a bin). Proportions are
    floored at ``PSI_FLOOR`` to keep log() finite. PSI = sum((a - e) * ln(a / e)); a common
    reading is < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift. NaNs are dropped
    from both samples (missingness is a data-quality check of its own); NaN if either sample
    is then empty.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    e = _vector(expected, "expected")
    a = _vector(actual, "actual")
    e, a = e[~np.isnan(e)], a[~np.isnan(a)]
    if len(e) == 0 or len(a) == 0:
        return math.nan
    cuts = np.unique(np.quantile(e, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # Bin i holds cuts[i-1] < x <= cuts[i], with cuts[-1] = -inf and cuts[len] = +inf.
    n_bins = len(cuts) + 1
    e_share = np.bincount(np.searchsorted(cuts, e, side="left"), minlength=n_bins) / len(e)
    a_share = np.bincount(np.searchsorted(cuts, a, side="left"), minlength=n_bins) / len(a)
    e_share = np.maximum(e_share, PSI_FLOOR)
    a_share = np.maximum(a_share, PSI_FLOOR)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def returns_from_equity(equity: ArrayLike) -> np.ndarray:
    """Simple per-period returns e[t] / e[t-1] - 1 (one fewer than equity points), the input
    for Sharpe and Sortino. Every point but the last must be above 0 (a return after a
    wiped-out account is undefined)."""
    e = _equity(equity)
    if (e[:-1] <= 0).any():
        raise ValueError("equity reaches 0 before its last point: later returns are undefined")
    return e[1:] / e[:-1] - 1.0


def sharpe_ratio(returns: ArrayLike, periods_per_year: float) -> float:
    """Annualised Sharpe ratio with a zero risk-free rate: mean / std(ddof=1) * sqrt(ppy).

    NaN with fewer than 2 returns; for constant returns 0.0 if they are 0 and +/-inf otherwise
    (riskless gain or loss) rather than a division by a rounding residue.
    """
    r = _vector(returns, "returns")
    if len(r) < 2:
        return math.nan
    mean = float(np.mean(r))
    if _is_constant(r):
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / float(np.std(r, ddof=1)) * math.sqrt(periods_per_year)


def sortino_ratio(returns: ArrayLike, periods_per_year: float) -> float:
    """Annualised Sortino ratio with target 0: mean / downside deviation * sqrt(ppy), where the
    downside deviation is sqrt(mean(min(r, 0)^2)) over ALL returns (gains count as zero
    shortfall, not dropped), so upside volatility is not penalised.

    NaN with fewer than 2 returns (as ``sharpe_ratio``); inf when no return is negative and the
    mean is positive; 0.0 when every return is 0.
    """
    r = _vector(returns, "returns")
    if len(r) < 2:
        return math.nan
    mean = float(np.mean(r))
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0:
        return math.inf if mean > 0 else 0.0
    return mean / downside * math.sqrt(periods_per_year)


def drawdowns(equity: ArrayLike) -> np.ndarray:
    """Drawdown at each point, equity / running peak - 1 (<= 0; 0 at a new peak)."""
    e = _equity(equity)
    return e / np.maximum.accumulate(e) - 1.0


def max_drawdown(equity: ArrayLike) -> float:
    """The deepest peak-to-trough fall as a positive fraction (0.25 for -25 %; 0.0 if none)."""
    return 0.0 - float(drawdowns(equity).min())  # 0.0 - x, not -x: no -0.0 for a flat curve


def average_drawdown(equity: ArrayLike) -> float:
    """Mean depth of drawdown *periods* as a positive fraction: each maximal run of points
    below the previous peak counts once, at its deepest point, so a long shallow drawdown does
    not outweigh a short deep one by its length. 0.0 when the curve never falls below a peak."""
    dd = drawdowns(equity)
    under = dd < 0
    if not under.any():
        return 0.0
    starts = np.flatnonzero(under & ~np.concatenate(([False], under[:-1])))
    # reduceat takes the min over starts[i]:starts[i+1], i.e. one run plus the zeros after it,
    # which (drawdowns being <= 0) is that run's trough.
    troughs = np.minimum.reduceat(dd, starts)
    return float(-np.mean(troughs))


def cumulative_return(equity: ArrayLike) -> float:
    """Total simple return over the curve, last / first - 1."""
    e = _equity(equity)
    return float(e[-1] / e[0] - 1.0)


def annualized_return(equity: ArrayLike, periods_per_year: float) -> float:
    """Compound annual growth rate, (1 + cumulative) ** (ppy / (n - 1)) - 1 for n equity points
    (n - 1 periods), so runs of different lengths compare. NaN with fewer than 2 points."""
    e = _equity(equity)
    if len(e) < 2:
        return math.nan
    growth = e[-1] / e[0]
    return float(growth ** (periods_per_year / (len(e) - 1)) - 1.0)


def win_rate(trade_returns: ArrayLike) -> float:
    """Share of trades with a return above 0 (a flat trade is not a win). NaN when there are
    no trades, or when any trade return is NaN (the rate is then unknown)."""
    r = _vector(trade_returns, "trade_returns")
    if len(r) == 0 or np.isnan(r).any():
        return math.nan
    return float(np.mean(r > 0))


def periods_per_year(interval: str, trading_days: float = 365.0) -> float:
    """Bars per year for a Binance interval, the annualisation factor for Sharpe, Sortino and
    annualised return.

    Crypto trades around the clock, so the default is 365 days of 24 hours: '1m' -> 525600,
    '1h' -> 8760, '1d' -> 365, '3d' -> 365 / 3. Pass ``trading_days=252`` for equities: daily
    bars then give 252 and intraday bars scale by 252 days of 24 hours (an exchange session is
    shorter, so intraday equity factors from this are upper bounds). '1w' is 52 and '1M' is 12
    whatever ``trading_days`` is.
    """
    if interval not in INTERVALS:
        raise InputError(f"interval {interval!r}: must be one of {', '.join(INTERVALS)}")
    if trading_days <= 0:
        raise ValueError(f"trading_days must be > 0, got {trading_days}")
    if interval == "1w":
        return 52.0
    length = INTERVALS[interval]
    if length is None:  # '1M', a calendar month
        return 12.0
    return trading_days * 86_400.0 / length.total_seconds()


def rolling_sharpe(returns: ArrayLike, window: int, periods_per_year: float) -> np.ndarray:
    """``sharpe_ratio`` of the last ``window`` returns at each position, NaN until ``window``
    returns exist: shows whether performance is stable or carried by one period."""
    if window < 2:
        raise ValueError(f"window must be >= 2 (std needs two returns), got {window}")
    r = _vector(returns, "returns")
    out = np.full(len(r), np.nan)
    if len(r) < window:
        return out
    windows = sliding_window_view(r, window)
    mean = windows.mean(axis=1)
    constant = windows.min(axis=1) == windows.max(axis=1)
    std = windows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / std * math.sqrt(periods_per_year)
    flat = np.where(mean == 0, 0.0, np.copysign(np.inf, mean))
    out[window - 1 :] = np.where(constant, flat, ratio)
    return out


#: Euler-Mascheroni constant, in the expected maximum of N Gaussian Sharpe estimates.
_EULER_GAMMA = 0.5772156649015329


def return_moments(returns: ArrayLike) -> tuple[float, float, int]:
    """Skewness and (non-excess) kurtosis of per-period returns, and their count: the inputs of
    the probabilistic and deflated Sharpe ratios (a normal series has 0 and 3)."""
    r = _vector(returns, "returns")
    r = r[np.isfinite(r)]
    if len(r) < 3 or _is_constant(r):
        return 0.0, 3.0, len(r)
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurt = float(np.mean(centred**4)) / m2**2
    return skew, kurt, len(r)


def probabilistic_sharpe_ratio(
    sharpe: float, n: int, skew: float = 0.0, kurtosis: float = 3.0, benchmark: float = 0.0
) -> float:
    """Probability that the true per-period Sharpe exceeds ``benchmark`` given an estimate
    ``sharpe`` (per period, NOT annualised) from ``n`` returns with that skew and kurtosis
    (Bailey and López de Prado, 2012):
    Phi((SR - SR*) sqrt(n-1) / sqrt(1 - skew SR + (kurt-1)/4 SR^2)).  NaN when undefined
    (fewer than 2 returns, a NaN Sharpe)."""
    from scipy.stats import norm

    if n < 2 or not math.isfinite(sharpe):
        return math.nan
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0:
        return math.nan
    return float(norm.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance)))


def expected_max_sharpe(n_trials: int, trial_variance: float) -> float:
    """Expected maximum per-period Sharpe among ``n_trials`` independent strategies whose true
    Sharpe is 0 and whose estimates vary with ``trial_variance``: the bar the best of a
    search clears by luck alone (Bailey and López de Prado, 2014, eq. 2). 0 for one trial."""
    from scipy.stats import norm

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1 or trial_variance <= 0:
        return 0.0
    return math.sqrt(trial_variance) * (
        (1 - _EULER_GAMMA) * norm.ppf(1 - 1 / n_trials)
        + _EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e))
    )


def deflated_sharpe_ratio(
    sharpe: float,
    n: int,
    n_trials: int,
    trial_variance: float | None = None,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """The probabilistic Sharpe ratio against the Sharpe the best of ``n_trials`` reaches by
    luck (Bailey and López de Prado, 2014): the probability the strategy's skill is real after
    the selection that found it. Per-period Sharpe; ``trial_variance`` is the variance of the
    trials' per-period Sharpe estimates, or, when unknown, 1/(n-1), the estimator's own
    variance under no skill."""
    if n < 2:
        return math.nan
    variance = trial_variance if trial_variance is not None else 1.0 / (n - 1)
    bar = expected_max_sharpe(n_trials, variance)
    return probabilistic_sharpe_ratio(sharpe, n, skew, kurtosis, benchmark=bar)
