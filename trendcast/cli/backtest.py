"""`trendcast backtest`: a strategy on stored bars, gated, optionally recorded in MLflow."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from trendcast.cli._common import app, err, out, parse_params, settings


@app.command()
def backtest(
    strategy: str = typer.Option("sma-crossover", help="buy-and-hold, sma-crossover, ..."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE."),
    symbols: str = typer.Option("all", help="Comma-separated symbols, or 'all' stored series."),
    interval: str | None = typer.Option(None, "--interval", "-i", help="Only this interval."),
    start: str | None = typer.Option(None, help="First bar (ISO 8601)."),
    end: str | None = typer.Option(None, help="Last bar (ISO 8601)."),
    fee: float | None = typer.Option(
        None, help="Fee as a fraction of traded notional (default: the instrument's profile)."
    ),
    spread: float | None = typer.Option(
        None, help="Bid-ask spread as a fraction, half paid per fill (default: the profile's)."
    ),
    slippage: float | None = typer.Option(
        None, help="Slippage as a fraction per fill (default: the profile's)."
    ),
    trust_predictions: bool = typer.Option(
        False,
        "--trust-predictions",
        help="Accept a ready-made 'prediction' column (recorded in the report).",
    ),
    capital: float = typer.Option(10_000.0, help="Starting capital."),
    min_sharpe: float = typer.Option(1.0, help="Performance filter: minimum Sharpe."),
    max_drawdown: float = typer.Option(0.30, help="Performance filter: maximum drawdown."),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
    log_to_mlflow: bool = typer.Option(False, help="Log each report to MLflow (a run each)."),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="A task per series on the local Dask cluster (TRENDCAST_DASK_SCHEDULER: any other).",
    ),
) -> None:
    """Backtest a strategy on stored bars; list where it passes the performance filter."""
    from trendcast.backtest import Costs
    from trendcast.cluster import placement
    from trendcast.db import database_url, get_engine
    from trendcast.gates import Gates
    from trendcast.portfolio.service import actor
    from trendcast.portfolio.streams import record_report
    from trendcast.recorder import record_backtest
    from trendcast.report import backtest_stored
    from trendcast.strategy import make_strategy

    params = parse_params(param)
    if trust_predictions:
        params["trust_predictions"] = True
    chosen = make_strategy(strategy, **params)
    config = settings()
    custom = None  # None: each instrument's cost profile
    if (fee, spread, slippage) != (None, None, None):
        custom = Costs(fee=fee or 0.0, spread=spread or 0.0, slippage=slippage or 0.0)
    # a strategy backtest has no test IC, no trials and no selection to seal
    filter_ = Gates(
        min_backtest_sharpe=min_sharpe,
        max_backtest_drawdown=max_drawdown,
        min_test_ic=None,
        min_backtest_dsr=None,
        sealed_test=False,
    )
    engine = get_engine(config)
    who = actor()

    def on_report(report, gates) -> None:
        record_report(engine, report, who)  # its daily returns and buy-and-hold's, versioned
        if log_to_mlflow:
            record_backtest(report, gates, config.tracking_uri)

    with placement(config, cluster) as where:
        reports = backtest_stored(
            engine,
            chosen,
            custom,
            filter_,
            symbols=None if symbols == "all" else [s.strip() for s in symbols.split(",")],
            interval=interval,
            start=start,
            end=end,
            capital=capital,
            on_report=on_report,
            where=where,
            database_url=database_url("trendcast", config).render_as_string(hide_password=False),
        )
    if as_json:
        out.print_json(
            json.dumps(
                [{**r.as_dict(), "gates": g, "passes": all(g.values())} for r, g in reports],
                default=str,
            )
        )
        err.print(f"backtest {where.describe()}", highlight=False)
        return
    table = Table(title=f"{chosen!r}")
    columns = ("symbol", "interval", "costs", "bars/yr", "return", "buy&hold", "sharpe")
    for column in (*columns, "max dd", "trades"):
        table.add_column(column, justify="left" if column in ("symbol", "costs") else "right")
    table.add_column("passes", justify="left")
    for r, g in reports:
        table.add_row(
            r.symbol,
            r.interval,
            f"{r.costs['cost_profile']} {r.costs['round_trip_cost'] * 1e4:.2f} bp/round trip",
            f"{r.periods_per_year:,.0f}",
            f"{r.cumulative_return:+.1%}",
            f"{r.benchmark_cumulative_return:+.1%}",
            f"{r.sharpe:.2f}",
            f"{r.max_drawdown:.1%}",
            str(r.trades),
            "[green]yes[/]"
            if all(g.values())
            else "[red]no[/]: " + ", ".join(k for k, ok in g.items() if not ok),
        )
    out.print(table)
    out.print(f"backtest {where.describe()}", highlight=False)
