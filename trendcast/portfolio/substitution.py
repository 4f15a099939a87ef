"""When a member stops performing like its backtest: the band its backtest sets, the days its
live returns spend outside it, and the bench candidate that would replace it.

Rule: each live day gets a statistic (the rolling Sharpe of the last ``window`` live returns,
or the live drawdown); it is outside the band when the Sharpe is below the backtest's
``quantile`` of rolling Sharpes, or the drawdown deeper than the backtest's ``1 - quantile``
drawdown depth. The member is flagged on the day the run of consecutive outside days reaches
``days`` (K): K-1 days never flag, K always do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trendcast import metrics
from trendcast.gates import Gates
from trendcast.portfolio.config import Substitution


def _rolling_sharpe(returns: pd.Series, window: int, ppy: float) -> np.ndarray:
    return metrics.rolling_sharpe(returns.to_numpy(dtype=float), window, ppy)


def _drawdown(returns: pd.Series) -> np.ndarray:
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns.to_numpy(dtype=float))))
    return -metrics.drawdowns(equity)[1:]


def band(backtest: pd.Series, rule: Substitution, ppy: float = 365.0) -> float:
    """The edge of the backtest band: the lowest acceptable rolling Sharpe, or the deepest
    acceptable drawdown (a positive fraction)."""
    backtest = backtest.dropna()
    if rule.metric == "rolling_sharpe":
        values = _rolling_sharpe(backtest, rule.window, ppy)
        values = values[np.isfinite(values)]
        return float(np.quantile(values, rule.quantile)) if len(values) else math.nan
    return float(np.quantile(_drawdown(backtest), 1.0 - rule.quantile))


def live_statistic(live: pd.Series, rule: Substitution, ppy: float = 365.0) -> pd.Series:
    """Per live day, the statistic the band judges (NaN until a rolling window is full)."""
    live = live.dropna()
    if rule.metric == "rolling_sharpe":
        return pd.Series(_rolling_sharpe(live, rule.window, ppy), index=live.index)
    return pd.Series(_drawdown(live), index=live.index)


def outside(live: pd.Series, edge: float, rule: Substitution, ppy: float = 365.0) -> pd.Series:
    """Per live day: the statistic is beyond ``edge`` (days without a full window: False)."""
    stat = live_statistic(live, rule, ppy).to_numpy()
    below = np.isfinite(stat) & (stat < edge)
    beyond = below if rule.metric == "rolling_sharpe" else stat > edge
    return pd.Series(beyond, index=live.dropna().index)


@dataclass(frozen=True)
class Verdict:
    member: str
    flagged: bool
    run_length: int  # consecutive days outside the band at the last live day
    edge: float
    flagged_on: pd.Timestamp | None  # the day the run reached K


def judge(
    member: str, live: pd.Series, backtest: pd.Series, rule: Substitution, ppy: float = 365.0
) -> Verdict:
    """Whether ``member``'s current run outside its band has lasted ``rule.days`` days."""
    edge = band(backtest, rule, ppy)
    beyond = outside(live, edge, rule, ppy) if math.isfinite(edge) else pd.Series(dtype=bool)
    run, flagged_on = 0, None
    for day, out in beyond.items():
        run = run + 1 if out else 0
        if run == rule.days:
            flagged_on = day
        if run == 0:
            flagged_on = None
    return Verdict(member, run >= rule.days, run, edge, flagged_on)


def candidate_gates(rule: Substitution) -> Gates:
    """The backtest filter a replacement must pass (no test IC, trials or sealed test: a
    strategy stream has none)."""
    return Gates(
        min_backtest_sharpe=rule.min_sharpe,
        max_backtest_drawdown=rule.max_drawdown,
        beat_buy_and_hold=False,
        min_test_ic=None,
        min_backtest_dsr=None,
        sealed_test=False,
    )


def best_candidate(
    bench: dict[str, pd.Series], rule: Substitution, ppy: float = 365.0, exclude=()
) -> tuple[str | None, dict[str, dict]]:
    """The bench stream with the highest Sharpe among those passing the gates, and every
    candidate's gate results (for the audit and the alert)."""
    gates = candidate_gates(rule)
    results, passing = {}, {}
    for name, returns in bench.items():
        if name in exclude:
            continue
        r = returns.dropna().to_numpy(dtype=float)
        if len(r) < 2:
            continue
        equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
        figures = {
            "backtest_sharpe": metrics.sharpe_ratio(r, ppy),
            "backtest_max_drawdown": metrics.max_drawdown(equity),
        }
        results[name] = gates.evaluate(figures)
        if gates.passes(figures):
            passing[name] = figures["backtest_sharpe"]
    best = max(passing, key=passing.get) if passing else None
    return best, results
