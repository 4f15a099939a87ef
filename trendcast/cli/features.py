"""`trendcast features`: the feature store and the derive_indicators pipeline."""

from __future__ import annotations

import typer
from rich.table import Table

from trendcast.cli._common import out, settings
from trendcast.errors import TrendcastError

features_app = typer.Typer(
    help="Feature store and the derive_indicators pipeline.", no_args_is_help=True
)


@features_app.command("build")
def features_build(
    full: bool = typer.Option(False, "--full", help="Recompute every series from its first bar."),
    runner: str = typer.Option(
        "mage",
        help="mage: the Mage pipeline in .venv-mage (block tests on); python: the same "
        "functions in this process.",
    ),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="A task per series on the local Dask cluster (TRENDCAST_DASK_SCHEDULER: any "
        "other); implies the python runner's functions.",
    ),
) -> None:
    """Run derive_indicators: bars changed since the last run -> indicators -> feature store."""
    from trendcast.cluster import scheduler_address

    config = settings()
    if runner == "python" or scheduler_address(config, cluster):
        from trendcast.cluster import placement
        from trendcast.db import database_url, get_engine
        from trendcast.feature_pipeline import BuildFailed, build, summary_line

        with placement(config, cluster) as where:
            summary = build(
                get_engine(config),
                full=full,
                where=where,
                database_url=database_url("trendcast", config).render_as_string(
                    hide_password=False
                ),
            )
        out.print(summary_line(summary), highlight=False, soft_wrap=True)
        out.print(f"features {where.describe()}", highlight=False)
        if summary["failed"]:
            raise BuildFailed(summary)
        return
    if runner != "mage":
        raise TrendcastError(f"--runner {runner!r}: must be 'mage' or 'python'")
    from trendcast.stack.mage_runner import run_pipeline

    out.print(run_pipeline(config, full=full), highlight=False)


@features_app.command("show")
def features_show(
    symbol: str = typer.Option(..., "--symbol", "-s"),
    interval: str = typer.Option("1h", "--interval", "-i"),
) -> None:
    """The latest stored feature row of a series (what online serving reads)."""
    from trendcast.db import get_engine
    from trendcast.feature_sets import DEFAULT_FEATURE_SET
    from trendcast.featurestore import get_latest
    from trendcast.schema import series_key

    key = series_key(symbol, interval)
    row = get_latest(get_engine(settings()), DEFAULT_FEATURE_SET, key.symbol, key.interval)
    if row is None:
        raise TrendcastError(
            f"no features for {symbol} {interval} yet: run `trendcast features build`"
        )
    table = Table(title=f"{symbol} {interval} {DEFAULT_FEATURE_SET.key}", show_header=True)
    table.add_column("feature")
    table.add_column("value", justify="right")
    for name, value in row.items():
        table.add_row(str(name), f"{value:.6g}" if isinstance(value, float) else str(value))
    out.print(table)
