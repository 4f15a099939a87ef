"""Portfolio: 200 members x 10 years of daily returns, monthly walk-forward rebalancing with HRP
and with mean-CVaR (365-day fit windows), our ``walk_forward`` against the same computation
written directly with skfolio in the same run: the estimator fitted on the same windows at the
same rebalance days, and the period returns from ``skfolio.Portfolio`` (weights held fixed).

Ours does more per rebalance (bounds projection, eligibility of members, drift of weights
between rebalances, costs, the fit log), so the ratio says what that bookkeeping costs.
Per phase: wall time and the peak resident set size sampled every 20 ms, without tracemalloc
(it slows Python-heavy code unevenly: skfolio's HRP builds thousands of small objects); then
the peak traced Python allocations (tracemalloc) in a second pass over the first
``--traced-years`` (same members), on for both sides. Also checked: the weights agree.
"""

from __future__ import annotations

import argparse
import threading
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pandas as pd
import psutil

from benchmarks._harness import banner
from trendcast.portfolio.allocate import CASH, walk_forward
from trendcast.portfolio.config import parse_config

LOOKBACK = 365


def synthetic_returns(members: int, days: int, seed: int = 0) -> pd.DataFrame:
    """Strategy-like daily returns: three common factors, idiosyncratic noise, fat tails."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_t(5, (days, 3)) * 0.006
    loadings = rng.normal(0, 1, (3, members))
    noise = rng.standard_t(4, (days, members)) * rng.uniform(0.004, 0.02, members)
    drift = rng.normal(0.0002, 0.0003, members)
    index = pd.date_range("2015-01-01", periods=days, freq="D")
    data = factors @ loadings * 0.5 + noise + drift
    return pd.DataFrame(data, index=index, columns=[f"s{i:03d}" for i in range(members)])


@contextmanager
def measured(results: dict, key: str, trace: bool = False):
    """Wall time and sampled peak RSS of the block; with ``trace``, the tracemalloc peak."""
    process = psutil.Process()
    peak_rss = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], process.memory_info().rss)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if trace:
        tracemalloc.start()
    sampler.start()
    began = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - began
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stop.set()
        sampler.join()
        results[key] = {
            "seconds": elapsed,
            "traced_mb": traced / 2**20,
            "rss_mb": peak_rss[0] / 2**20,
        }


def estimator(method: str):
    from skfolio import RiskMeasure
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction

    if method == "hrp":
        return HierarchicalRiskParity()
    return MeanRisk(
        objective_function=ObjectiveFunction.MAXIMIZE_RATIO, risk_measure=RiskMeasure.CVAR
    )


def direct(
    returns: pd.DataFrame, days: list[pd.Timestamp], method: str
) -> tuple[pd.DataFrame, pd.Series]:
    """The same walk-forward with skfolio alone: fit on the LOOKBACK days before each rebalance,
    hold the weights over the month (skfolio's Portfolio, fixed weights)."""
    from skfolio import Portfolio

    index = returns.index
    weights, parts = {}, []
    for i, day in enumerate(days):
        t = index.get_loc(day)
        model = estimator(method).fit(returns.iloc[max(0, t - LOOKBACK) : t])
        weights[day] = model.weights_
        end = index.get_loc(days[i + 1]) if i + 1 < len(days) else len(index)
        held = Portfolio(X=returns.iloc[t:end], weights=model.weights_)
        parts.append(pd.Series(held.returns, index=index[t:end]))
    return pd.DataFrame(weights, index=returns.columns).T, pd.concat(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--methods", default="hrp,mean-cvar")
    parser.add_argument("--traced-years", type=int, default=3)
    args = parser.parse_args()
    banner(
        f"bench_portfolio: {args.members} members x {args.years} years daily, monthly "
        f"walk-forward, {LOOKBACK}-day windows"
    )
    returns = synthetic_returns(args.members, args.years * 365)
    members = [{"name": c, "strategy": "buy-and-hold", "symbols": [c]} for c in returns.columns]
    # warm both paths alike (imports, solver set-up) on a small slice
    small = returns.iloc[:200, :10]
    for method in args.methods.split(","):
        warm = {"name": "warm", "method": method, "lookback_days": 60, "min_history_days": 60}
        cfg = parse_config({**warm, "costs": {"bps": 0}, "members": members[:10]})
        walk_forward(small, cfg)
        direct(small, [small.index[100]], method)
    for method in args.methods.split(","):
        config = parse_config(
            {
                "name": "bench",
                "method": method,
                "lookback_days": LOOKBACK,
                "min_history_days": LOOKBACK,
                "costs": {"bps": 0},
                "members": members,
            }
        )
        results: dict = {}
        with measured(results, "ours"):
            ours = walk_forward(returns, config)
        days = list(ours.weights.index)
        with measured(results, "skfolio"):
            theirs, their_returns = direct(returns, days, method)
        short = returns.iloc[: args.traced_years * 365]
        with measured(results, "ours traced", trace=True):
            traced_ours = walk_forward(short, config)
        with measured(results, "skfolio traced", trace=True):
            direct(short, list(traced_ours.weights.index), method)
        gap = float(np.abs(ours.weights.drop(columns=CASH).to_numpy() - theirs.to_numpy()).max())
        # on a rebalance day both hold the fitted weights: the day's returns must agree
        same_day = float(np.abs(ours.returns.loc[days] - their_returns.loc[days]).max())
        a, b = results["ours"], results["skfolio"]
        ta, tb = results["ours traced"], results["skfolio traced"]
        print(
            f"-- {method}: {len(days)} rebalances ({len(traced_ours.weights)} in the traced pass)"
        )
        for side, r, t in (("ours", a, ta), ("skfolio direct", b, tb)):
            print(
                f"   {side:15s} {r['seconds']:8.2f} s   peak RSS {r['rss_mb']:7.1f} MB   traced "
                f"peak {t['traced_mb']:7.1f} MB ({args.traced_years} y, {t['seconds']:.1f} s)"
            )
        print(
            f"   ratio ours/direct: time {a['seconds'] / b['seconds']:.2f}x, traced memory "
            f"{ta['traced_mb'] / max(tb['traced_mb'], 1e-9):.2f}x, peak RSS "
            f"{a['rss_mb'] / b['rss_mb']:.2f}x"
        )
        print(
            f"   max |weight difference| {gap:.2e}; returns on rebalance days differ by at most "
            f"{same_day:.2e} (between rebalances ours lets the weights drift, skfolio's "
            "Portfolio holds them fixed)"
        )


if __name__ == "__main__":
    main()
