"""Walk-forward allocation: at each rebalance, weights fitted by a skfolio estimator on the
member returns strictly before that day, then held (drifting with the members) until the next.

Guarantee (tested with a cheat): the weights chosen at a rebalance on day ``d`` are a function
of the returns dated before ``d`` only; every fit records its window so the claim is checkable
(``fits.fit_end < fits.rebalance``). Returns are simple daily returns indexed by the day they
are earned (close of d-1 to close of d); weights set at ``d`` earn day ``d``'s return, net of
the rebalancing cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trendcast.errors import InputError
from trendcast.portfolio.config import CALENDAR, PortfolioConfig

CASH = "cash"


def make_estimator(method: str, config: PortfolioConfig, low: np.ndarray, high: np.ndarray):
    """The skfolio estimator behind ``method``, with the member bounds (arrays in column order)
    and, for mean-CVaR, the risk appetite as constraints. ``equal`` and ``inverse-vol`` take no
    bounds in skfolio: their weights are projected onto the bounds afterwards."""
    from skfolio import RiskMeasure
    from skfolio.optimization import (
        EqualWeighted,
        HierarchicalRiskParity,
        InverseVolatility,
        MeanRisk,
        ObjectiveFunction,
        RiskBudgeting,
    )

    if method == "equal":
        return EqualWeighted()
    if method == "inverse-vol":
        return InverseVolatility()
    if method == "risk-parity":
        return RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, min_weights=low, max_weights=high)
    if method == "hrp":
        return HierarchicalRiskParity(min_weights=low, max_weights=high)
    if method == "mean-cvar":
        risk = config.risk
        daily_vol = None
        if risk.target_vol is not None:
            daily_vol = risk.target_vol / math.sqrt(config.periods_per_year)
        return MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
            risk_measure=RiskMeasure.CVAR,
            cvar_beta=risk.cvar_beta,
            min_weights=low,
            max_weights=high,
            max_cvar=risk.cvar_limit,
            max_max_drawdown=risk.max_drawdown,
            max_standard_deviation=daily_vol,
        )
    raise InputError(f"method {method!r}: must be one of equal, inverse-vol, risk-parity, ...")


def project(weights: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Weights moved into [low, high] keeping their proportions where they can (capped ones
    pass their excess to the uncapped in proportion); what fits nowhere is left to cash."""
    w = np.clip(weights, low, high)
    for _ in range(len(w) + 1):
        free = (w < high - 1e-15) & (weights > 0)
        gap = 1.0 - w.sum()
        if gap <= 1e-15 or not free.any():
            break
        share = weights[free] / weights[free].sum()
        w[free] = np.minimum(w[free] + gap * share, high[free])
    excess = w.sum() - 1.0
    if excess > 1e-15:  # the lower bounds pushed the total over one: take it from the tops
        room = w - low
        w -= excess * room / room.sum()
    return w


def fit_weights(
    window: pd.DataFrame, config: PortfolioConfig, method: str | None = None
) -> np.ndarray:
    """Weights for the members of ``window`` (complete columns only), within their bounds,
    summing to one or less (the remainder is cash, e.g. when the upper bounds cannot hold
    all the capital, or the target volatility asks for less risk)."""
    method = method or config.method
    names = list(window.columns)
    by_name = {m.name: m for m in (*config.members, *config.bench)}
    low = np.array([config.bounds(by_name[n])[0] if n in by_name else 0.0 for n in names])
    high = np.array([config.bounds(by_name[n])[1] if n in by_name else 1.0 for n in names])
    if high.sum() <= 1.0 + 1e-12:  # no room to choose: each member at its cap
        weights = high.copy()
    elif len(names) == 1:
        weights = np.minimum(high, 1.0)
    else:
        estimator = make_estimator(method, config, low, high)
        estimator.fit(window)
        weights = np.asarray(estimator.weights_, dtype=float)
        if not np.isfinite(weights).all():
            raise FloatingPointError(f"{method} returned non-finite weights")
        weights = project(np.clip(weights, 0.0, None), low, high)
    if config.risk.target_vol is not None and method != "mean-cvar":
        vol = float(np.std(window.to_numpy() @ weights, ddof=1)) * math.sqrt(
            config.periods_per_year
        )
        if vol > config.risk.target_vol:
            weights = np.maximum(weights * config.risk.target_vol / vol, low)
    return weights


@dataclass
class WalkForward:
    """What a walk-forward run produced; every frame is indexed by day."""

    weights: pd.DataFrame  # at each rebalance: target weight per member, and cash
    fits: pd.DataFrame  # per rebalance: fit_start, fit_end, observations, members, fallback
    returns: pd.Series  # the portfolio's daily return, net of rebalancing costs
    turnover: pd.Series  # per rebalance: sum of |new - drifted| weights
    costs: pd.Series  # per rebalance: fraction of capital paid
    drifted: pd.DataFrame = field(repr=False, default=None)  # daily weights before trading

    @property
    def equity(self) -> pd.Series:
        return (1.0 + self.returns).cumprod()


def calendar_days(index: pd.DatetimeIndex, every: str) -> set[pd.Timestamp]:
    """The first day of ``index`` in each week, month or quarter."""
    periods = index.to_period(CALENDAR[every][0] if every != "weekly" else "W-SUN")
    first = ~pd.Series(periods, index=index).duplicated()
    return set(index[first.to_numpy()])


def alive_days(returns: pd.DataFrame) -> pd.DataFrame:
    """A missing return between a member's first and last day is a flat day (its market was
    closed: stocks at the weekend beside an FX member); outside that span it stays missing."""
    filled = returns.copy()
    for column in filled.columns:
        values = filled[column]
        first, last = values.first_valid_index(), values.last_valid_index()
        if first is not None:
            filled.loc[first:last, column] = values.loc[first:last].fillna(0.0)
    return filled


def fit_window(window: pd.DataFrame, min_history: int) -> tuple[pd.DataFrame, list[str]]:
    """The members alive at the end of ``window`` with at least ``min_history`` returns in it,
    and the rows where all of them have returns (a young member shortens everyone's window
    rather than being left out until a whole lookback has passed)."""
    if len(window) < min_history:
        return window.iloc[:0], []
    missing = np.isnan(window.to_numpy(dtype=float))
    alive = ~missing[-min_history:].any(axis=0)
    if not alive.any():
        return window.iloc[:0], []
    rows = np.arange(1, len(window) + 1)[:, None]
    # first row after each alive member's last missing return (0 when it has none)
    first = int((missing[:, alive] * rows).max(initial=0))
    names = [c for c, keep in zip(window.columns, alive, strict=True) if keep]
    return window.iloc[first:, np.flatnonzero(alive)], names


def try_fit(
    window: pd.DataFrame, config: PortfolioConfig, method: str | None = None
) -> tuple[np.ndarray | None, str]:
    """``fit_weights`` as a value: the weights and "", or None and the error's type name
    (the walk then falls back), so a fit can run as a task and be handed back."""
    try:
        return fit_weights(window, config, method), ""
    except Exception as exc:  # an infeasible optimisation: the walk decides the fallback
        return None, type(exc).__name__


def window_at(
    returns: pd.DataFrame, t: int, config: PortfolioConfig
) -> tuple[pd.DataFrame, list[str]]:
    """The fit window of a rebalance on row ``t`` of the (alive-filled) ``returns``."""
    start = 0 if config.lookback_days is None else max(0, t - config.lookback_days)
    return fit_window(returns.iloc[start:t], config.min_history_days)


def prepared(returns: pd.DataFrame) -> pd.DataFrame:
    """The returns a walk runs on: sorted by day, flat days filled within each member's life."""
    if returns.empty or returns.shape[1] == 0:
        raise InputError("returns: no member has any return")
    returns = alive_days(returns.sort_index())
    if pd.DatetimeIndex(returns.index).has_duplicates:
        raise InputError("returns: duplicate days in the index")
    return returns


def calendar_windows(
    returns: pd.DataFrame, config: PortfolioConfig
) -> list[tuple[pd.Timestamp, pd.DataFrame]] | None:
    """Every rebalance of a calendar walk over ``prepared`` returns with its fit window, known
    before the walk (the first day with a complete window, then the calendar's days); None
    for the drift band, whose rebalances depend on how the weights drifted since the last."""
    rule = config.rebalance
    if rule.rule != "calendar":
        return None
    index = pd.DatetimeIndex(returns.index)
    calendar = calendar_days(index, rule.every)
    windows, started = [], False
    for t in range(config.min_history_days, len(index)):
        if started and index[t] not in calendar:
            continue
        window, complete = window_at(returns, t, config)
        if complete:
            started = True
            windows.append((index[t], window[complete]))
    return windows


def walk_forward(
    returns: pd.DataFrame,
    config: PortfolioConfig,
    method: str | None = None,
    fitted: Mapping[pd.Timestamp, tuple[np.ndarray | None, str]] | None = None,
) -> WalkForward:
    """Run the allocation over ``returns`` (days x members, NaN where a member has no return
    yet), rebalancing by ``config.rebalance``. A member enters a fit only with a complete
    window; before ``min_history_days`` of history nothing is invested. ``fitted``: the
    ``try_fit`` outcomes of rebalance days computed elsewhere (on a cluster); a day missing
    from it is fitted here."""
    returns = prepared(returns)
    index = pd.DatetimeIndex(returns.index)
    names = list(returns.columns)
    values = returns.to_numpy(dtype=float)
    rule = config.rebalance
    calendar = calendar_days(index, rule.every) if rule.rule == "calendar" else set()
    cost_rate = config.costs.bps / 1e4
    n, m = values.shape
    held = np.zeros(m)  # drifted weights at the start of the day
    target = np.zeros(m)
    started = False
    port = np.zeros(n)
    drifted = np.zeros((n, m))
    rows, fits, turnovers, paid = [], [], [], []
    for t in range(n):
        day = index[t]
        drifted[t] = held
        due = t >= config.min_history_days and (
            not started
            or (day in calendar if rule.rule == "calendar" else _drifted(held, target, rule.band))
        )
        cost = 0.0
        if due:
            window, complete = window_at(returns, t, config)
            if complete:
                fallback = ""
                done = fitted.get(day) if fitted is not None else None
                found, failed = done or try_fit(window[complete], config, method)
                if not failed:
                    chosen = found
                elif not started:  # an infeasible optimisation keeps the last weights
                    chosen = fit_weights(window[complete], config, "equal")
                    fallback = f"equal: {failed}"
                else:
                    chosen = np.array([target[names.index(c)] for c in complete])
                    fallback = f"previous: {failed}"
                new = np.zeros(m)
                new[[names.index(c) for c in complete]] = chosen
                traded = float(np.abs(new - held).sum())
                cost = traded * cost_rate
                target, held, started = new, new.copy(), True
                rows.append((day, *new, max(0.0, 1.0 - new.sum())))
                fits.append(
                    (day, window.index[0], window.index[-1], len(window), len(complete), fallback)
                )
                turnovers.append((day, traded))
                paid.append((day, cost))
        r = np.nan_to_num(values[t], nan=0.0)
        gross = float(held @ r)
        port[t] = gross - cost
        if started:
            grown = held * (1.0 + r)
            total = grown.sum() + (1.0 - held.sum())
            held = grown / total if total > 0 else np.zeros(m)
    weights = pd.DataFrame(
        [r[1:] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows]), columns=[*names, CASH]
    )
    fit_frame = pd.DataFrame(
        fits, columns=["rebalance", "fit_start", "fit_end", "observations", "members", "fallback"]
    ).set_index("rebalance")
    first = weights.index[0] if len(weights) else index[-1]
    live = index >= first
    return WalkForward(
        weights=weights,
        fits=fit_frame,
        returns=pd.Series(port[live], index=index[live], name="portfolio"),
        turnover=pd.Series(dict(turnovers), name="turnover", dtype=float),
        costs=pd.Series(dict(paid), name="costs", dtype=float),
        drifted=pd.DataFrame(drifted[live], index=index[live], columns=names),
    )


def _drifted(held: np.ndarray, target: np.ndarray, band: float) -> bool:
    return bool(np.abs(held - target).max() > band)
