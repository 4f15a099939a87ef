"""The portfolio report: return, volatility, Sharpe and deflated Sharpe, drawdowns, turnover,
weights over time and risk contributions, against equal weight and the best single member.
All numbers come from :mod:`trendcast.metrics`, so they mean what they mean elsewhere."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trendcast import metrics
from trendcast.portfolio.allocate import CASH, WalkForward, walk_forward
from trendcast.portfolio.config import PortfolioConfig


def stream_metrics(returns: pd.Series, ppy: float) -> dict[str, float]:
    """The figures of one daily return series (a portfolio or a member)."""
    r = returns.dropna().to_numpy(dtype=float)
    if len(r) < 2:
        return {"days": float(len(r))}
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    skew, kurt, _ = metrics.return_moments(r)
    return {
        "days": float(len(r)),
        "cumulative_return": metrics.cumulative_return(equity),
        "annualized_return": metrics.annualized_return(equity, ppy),
        "volatility": float(np.std(r, ddof=1) * math.sqrt(ppy)),
        "sharpe": metrics.sharpe_ratio(r, ppy),
        "sharpe_per_period": metrics.sharpe_ratio(r, 1.0),
        "sortino": metrics.sortino_ratio(r, ppy),
        "max_drawdown": metrics.max_drawdown(equity),
        "average_drawdown": metrics.average_drawdown(equity),
        "cvar_95": float(-np.mean(np.sort(r)[: max(1, int(0.05 * len(r)))])),
        "skewness": skew,
        "kurtosis": kurt,
    }


def risk_contributions(window: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Each member's share of the portfolio's volatility over ``window`` (skfolio's
    ``Portfolio.contribution``), normalised to sum to one."""
    from skfolio import Portfolio, RiskMeasure

    held = weights.drop(CASH, errors="ignore")
    held = held[held > 0]
    if held.empty:
        return pd.Series(dtype=float)
    data = window[held.index].dropna()
    if len(held) == 1:
        return pd.Series(1.0, index=held.index)
    contribution = Portfolio(X=data, weights=held.to_numpy()).contribution(
        measure=RiskMeasure.STANDARD_DEVIATION
    )
    total = float(np.sum(contribution))
    return pd.Series(np.asarray(contribution) / total if total else np.nan, index=held.index)


@dataclass
class PortfolioReport:
    config: PortfolioConfig
    run: WalkForward
    equal: WalkForward
    summary: pd.DataFrame  # one row each: portfolio, equal weight, best member, each member
    best_member: str
    contributions: pd.Series
    breaches: list[str] = field(default_factory=list)
    members: pd.DataFrame = field(default=None, repr=False)  # the member returns it ran on

    def as_dict(self) -> dict:
        return {
            "name": self.config.name,
            "method": self.config.method,
            "best_member": self.best_member,
            "rebalances": len(self.run.weights),
            "turnover_per_year": self.turnover_per_year,
            "summary": self.summary.replace({np.nan: None}).to_dict(orient="index"),
            "latest_weights": self.latest_weights.to_dict(),
            "risk_contributions": self.contributions.to_dict(),
            "breaches": self.breaches,
            "fallbacks": {
                str(day.date()): why for day, why in self.run.fits["fallback"].items() if why
            },
            "first_rebalance": str(self.run.weights.index[0].date())
            if len(self.run.weights)
            else None,
            "last_rebalance": str(self.run.weights.index[-1].date())
            if len(self.run.weights)
            else None,
        }

    def series(self) -> dict[str, pd.Series]:
        """Daily returns over the run's days: the portfolio, equal weight and each member."""
        days = self.run.returns.index
        return {
            "portfolio": self.run.returns,
            "equal_weight": self.equal.returns.reindex(days),
            **{c: self.members[c].reindex(days) for c in self.members.columns},
        }

    @property
    def latest_weights(self) -> pd.Series:
        return self.run.weights.iloc[-1] if len(self.run.weights) else pd.Series(dtype=float)

    @property
    def turnover_per_year(self) -> float:
        days = len(self.run.returns)
        return float(self.run.turnover.sum() / days * self.config.periods_per_year) if days else 0.0


def evaluate(
    returns: pd.DataFrame,
    config: PortfolioConfig,
    walks: tuple[WalkForward, WalkForward] | None = None,
) -> PortfolioReport:
    """Walk the configured method and equal weight forward over ``returns`` and compare them
    with every member over the same days. The deflated Sharpe counts every series compared
    (portfolio, equal weight, members) as a trial: picking the best of them is a selection.
    ``walks``: the method's and equal weight's walks when made elsewhere (on a cluster)."""
    ppy = config.periods_per_year
    if walks is None:
        walks = walk_forward(returns, config), walk_forward(returns, config, method="equal")
    run, equal = walks
    days = run.returns.index
    series = {"portfolio": run.returns, "equal_weight": equal.returns.reindex(days)}
    members = {c: returns[c].reindex(days) for c in returns.columns}
    rows = {k: stream_metrics(v, ppy) for k, v in {**series, **members}.items()}
    member_sharpes = {k: rows[k].get("sharpe", math.nan) for k in members}
    finite = {k: v for k, v in member_sharpes.items() if math.isfinite(v)}
    best = max(finite, key=finite.get) if finite else next(iter(members))
    summary = pd.DataFrame.from_dict(rows, orient="index")
    per_period = summary["sharpe_per_period"].dropna()
    variance = float(per_period.var(ddof=1)) if len(per_period) > 1 else None
    summary["deflated_sharpe"] = [
        metrics.deflated_sharpe_ratio(
            row["sharpe_per_period"],
            int(row["days"]),
            n_trials=len(summary),
            trial_variance=variance,
            skew=row["skewness"],
            kurtosis=row["kurtosis"],
        )
        if math.isfinite(row.get("sharpe_per_period", math.nan))
        else math.nan
        for _, row in summary.iterrows()
    ]
    summary.loc["portfolio", "turnover"] = float(run.turnover.sum())
    summary.loc["equal_weight", "turnover"] = float(equal.turnover.sum())
    summary = pd.concat(
        [
            summary.loc[["portfolio", "equal_weight"]],
            summary.loc[[best]].rename(index={best: f"best member ({best})"}),
            summary.drop(["portfolio", "equal_weight"]),
        ]
    )
    contributions = pd.Series(dtype=float)
    if len(run.weights):
        last = run.fits.index[-1]
        fit = run.fits.iloc[-1]
        window = returns.loc[fit.fit_start : fit.fit_end]
        contributions = risk_contributions(window, run.weights.loc[last])
    breaches = []
    risk, mine = config.risk, summary.loc["portfolio"]
    if risk.max_drawdown is not None and mine.get("max_drawdown", 0) > risk.max_drawdown:
        breaches.append(f"max drawdown {mine['max_drawdown']:.1%} > {risk.max_drawdown:.1%}")
    if risk.cvar_limit is not None and mine.get("cvar_95", 0) > risk.cvar_limit:
        breaches.append(f"daily CVaR95 {mine['cvar_95']:.2%} > {risk.cvar_limit:.2%}")
    if risk.target_vol is not None and mine.get("volatility", 0) > 1.25 * risk.target_vol:
        breaches.append(f"volatility {mine['volatility']:.1%} > 1.25 x {risk.target_vol:.1%}")
    return PortfolioReport(config, run, equal, summary, best, contributions, breaches, returns)
