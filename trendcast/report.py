"""Backtest reports: the numbers a desk asks for, as a dataclass, JSON and plotly figures.
Whether a report is worth promoting is for :class:`trendcast.gates.Gates` to say."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from trendcast import metrics
from trendcast.backtest import BacktestResult


@dataclass
class Report:
    symbol: str
    strategy: str
    params: dict
    interval: str
    start: str
    end: str
    bars: int
    cumulative_return: float
    annualized_return: float
    benchmark_cumulative_return: float
    benchmark_annualized_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    average_drawdown: float
    time_in_market: float
    trades: int
    win_rate_long: float
    win_rate_short: float
    average_trade: float
    expected_daily_gain: float
    expected_monthly_gain: float
    periods_per_year: float = math.nan
    skewness: float = math.nan
    kurtosis: float = math.nan
    n_returns: int = 0
    psr: float = math.nan  # probability the true Sharpe is above 0 (one trial)
    costs: dict = field(default_factory=dict)  # profile and fractions paid (trendcast.costs)
    inputs: dict = field(default_factory=dict)  # where the strategy's inputs came from
    by_period: dict = field(default_factory=dict)
    equity: pd.Series | None = field(default=None, repr=False)
    benchmark: pd.Series | None = field(default=None, repr=False)

    @property
    def beats_benchmark(self) -> bool:
        return self.cumulative_return > self.benchmark_cumulative_return

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("equity"), data.pop("benchmark")
        data["beats_benchmark"] = self.beats_benchmark
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in data.items()
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), default=str)

    def figures(self) -> dict:
        """plotly figures: equity vs benchmark, and drawdown (for MLflow and the dashboard)."""
        import plotly.graph_objects as go

        equity = go.Figure()
        equity.add_scatter(x=self.equity.index, y=self.equity.to_numpy(), name=self.strategy)
        equity.add_scatter(x=self.benchmark.index, y=self.benchmark.to_numpy(), name="buy-and-hold")
        equity.update_layout(title=f"{self.symbol} {self.interval}: equity", yaxis_title="equity")
        drawdown = go.Figure()
        drawdown.add_scatter(
            x=self.equity.index,
            y=metrics.drawdowns(self.equity.to_numpy()),
            fill="tozeroy",
            name="drawdown",
        )
        drawdown.update_layout(title=f"{self.symbol} {self.interval}: drawdown")
        return {"equity": equity, "drawdown": drawdown}


def _period_returns(equity: pd.Series, rule: str) -> dict:
    last = equity.resample(rule).last().dropna()
    first_value = equity.iloc[0]
    returns = last / last.shift(1, fill_value=first_value) - 1
    return {str(k.date()): float(v) for k, v in returns.items()}


def build_report(
    result: BacktestResult,
    benchmark: BacktestResult,
    *,
    symbol: str,
    strategy: str,
    params: dict,
    interval: str,
    periods_per_year: float | None = None,
) -> Report:
    """``periods_per_year`` is the instrument calendar's (``Instrument.periods_per_year``);
    without it the series is taken to trade around the clock."""
    equity, bench = result.equity_series, benchmark.equity_series
    ppy = periods_per_year or metrics.periods_per_year(interval)
    returns = metrics.returns_from_equity(result.equity)
    skew, kurt, n_returns = metrics.return_moments(returns)
    per_period_sharpe = metrics.sharpe_ratio(returns, 1.0)
    trades = result.trades
    long = trades[trades["direction"] > 0]["return"] if len(trades) else pd.Series(dtype=float)
    short = trades[trades["direction"] < 0]["return"] if len(trades) else pd.Series(dtype=float)
    daily = equity.resample("1D").last().dropna().pct_change().dropna()
    monthly = equity.resample("MS").last().dropna().pct_change().dropna()
    return Report(
        symbol=symbol,
        strategy=strategy,
        params=params,
        interval=interval,
        start=str(equity.index[0]),
        end=str(equity.index[-1]),
        bars=len(equity),
        cumulative_return=metrics.cumulative_return(result.equity),
        annualized_return=metrics.annualized_return(result.equity, ppy),
        benchmark_cumulative_return=metrics.cumulative_return(benchmark.equity),
        benchmark_annualized_return=metrics.annualized_return(benchmark.equity, ppy),
        sharpe=metrics.sharpe_ratio(returns, ppy),
        sortino=metrics.sortino_ratio(returns, ppy),
        max_drawdown=metrics.max_drawdown(result.equity),
        average_drawdown=metrics.average_drawdown(result.equity),
        time_in_market=float(np.mean(result.position != 0)),
        trades=len(trades),
        win_rate_long=metrics.win_rate(long.to_numpy()),
        win_rate_short=metrics.win_rate(short.to_numpy()),
        average_trade=float(trades["return"].mean()) if len(trades) else float("nan"),
        expected_daily_gain=float(daily.mean()) if len(daily) else float("nan"),
        expected_monthly_gain=float(monthly.mean()) if len(monthly) else float("nan"),
        periods_per_year=float(ppy),
        skewness=skew,
        kurtosis=kurt,
        n_returns=n_returns,
        psr=metrics.probabilistic_sharpe_ratio(per_period_sharpe, n_returns, skew, kurt),
        costs=result.costs.as_dict() if result.costs else {},
        inputs=dict(result.inputs),
        by_period={
            "month": _period_returns(equity, "MS"),
            "quarter": _period_returns(equity, "QS"),
            "year": _period_returns(equity, "YS"),
        },
        equity=equity,
        benchmark=bench,
    )


def run_report(
    frame: pd.DataFrame,
    strategy,
    costs=None,
    *,
    symbol: str,
    interval: str,
    capital: float = 10_000.0,
    periods_per_year: float | None = None,
) -> Report:
    """Backtest ``strategy`` and buy-and-hold (same bars, same costs) and report both; the
    report records the costs and the annualisation used."""
    from trendcast.backtest import run
    from trendcast.strategy import BuyAndHold

    result = run(frame, strategy, costs, capital=capital)
    benchmark = run(frame, BuyAndHold(), costs, capital=capital)
    return build_report(
        result,
        benchmark,
        symbol=symbol,
        strategy=strategy.name,
        params=result.strategy.get_params(),
        interval=interval,
        periods_per_year=periods_per_year,
    )


def run_grid(
    frames: dict[tuple[str, str], pd.DataFrame],
    strategy,
    grid: list[dict] | None = None,
    costs=None,
) -> list[Report]:
    """Every (symbol, interval) frame x every parameter set of ``grid``, in one call."""
    reports = []
    for params in grid or [{}]:
        candidate = strategy.set_params(**params) if params else strategy
        for (symbol, interval), frame in frames.items():
            reports.append(run_report(frame, candidate, costs, symbol=symbol, interval=interval))
    return reports


def backtest_stored(
    engine,
    strategy,
    costs,
    gates,
    *,
    symbols: list[str] | None = None,
    interval: str | None = None,
    start: str | None = None,
    end: str | None = None,
    capital: float = 10_000.0,
    on_report=None,
    where=None,
    database_url: str | None = None,
) -> list[tuple[Report, dict[str, bool]]]:
    """Backtest ``strategy`` on every stored series (or those of ``symbols`` / ``interval``)
    with at least two bars in [start, end]; each report with its gate results
    (``gates.check_report``), passed to ``on_report`` as it is made (e.g. to record it).
    ``costs`` None: each instrument's cost profile; annualisation always from its calendar.
    ``where``: a Dask :class:`~trendcast.cluster.Placement` runs each series as a task (its
    workers reach the database at ``database_url``); the reports are the same as in-process."""
    from trendcast.catalog import stored_series
    from trendcast.errors import TrendcastError

    with engine.connect() as conn:
        series = [
            (s, i)
            for s, i in stored_series(conn, interval=interval)
            if symbols is None or s in symbols
        ]
    if not series:
        shown = "all" if symbols is None else ",".join(symbols)
        raise TrendcastError(f"no stored bars for symbols={shown} interval={interval}")
    tasks = [(s, i, strategy, costs, start, end, capital) for s, i in series]
    if where is not None and where.distributed:
        from trendcast.cluster import map_unordered

        # each series read and backtested on a worker; reports gathered back in series order
        run = uuid.uuid4().hex[:12]
        keyed = [(f"backtest-{run}-{t[0]}-{t[1]}", (database_url, *t)) for t in tasks]
        done = {
            (r.symbol, r.interval): r
            for r in map_unordered(where, _series_report_on_worker, keyed)
            if r is not None
        }
        made_reports = [done.get(key) for key in series]
    else:
        made_reports = (_series_report(engine, *t) for t in tasks)
    reports = []
    for report in made_reports:
        if report is None:
            continue
        results = gates.check_report(report)
        reports.append((report, results))
        if on_report is not None:
            on_report(report, results)
    return reports


def _series_report(engine, symbol, interval, strategy, costs, start, end, capital) -> Report | None:
    """One stored series backtested (None: fewer than two bars in the window)."""
    from trendcast.catalog import read_bars
    from trendcast.costs import market_terms

    frame = read_bars(engine, symbol, interval, start, end)
    if len(frame) < 2:
        return None
    terms = market_terms(engine, symbol, interval, float(frame["close"].iloc[0]))
    return run_report(
        frame,
        strategy,
        costs or terms.costs.costs,
        symbol=symbol,
        interval=interval,
        capital=capital,
        periods_per_year=terms.periods_per_year,
    )


def _series_report_on_worker(database_url: str, *args) -> Report | None:
    """:func:`_series_report` on a Dask worker, with a connection of its own."""
    import sqlalchemy as sa

    from trendcast.db import normalize_url

    engine = sa.create_engine(normalize_url(database_url), poolclass=sa.pool.NullPool)
    try:
        return _series_report(engine, *args)
    finally:
        engine.dispose()
