"""`trendcast portfolio`: backtest a portfolio of strategies walk-forward, apply its weights to
the paper deployments' capital, show targets against actual capital, check members' bands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from trendcast.cli._common import err, out, settings

portfolio_app = typer.Typer(help="Portfolios of strategies: allocation, capital, substitution.")


def _engine():
    from trendcast.db import get_engine

    return get_engine(settings())


@portfolio_app.command("backtest")
def portfolio_backtest(
    config: Path = typer.Option(..., "--config", "-c", help="PORTFOLIO.yaml"),
    log_to_mlflow: bool = typer.Option(
        True, "--log-to-mlflow/--no-mlflow", help="Record the run in MLflow ('portfolios')."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="Fit each rebalance as a task on the local Dask cluster (TRENDCAST_DASK_SCHEDULER: "
        "any other).",
    ),
) -> None:
    """Fit the weights at each rebalance on the returns before it; report against equal
    weight and the best single member."""
    from trendcast.cluster import placement
    from trendcast.portfolio import service
    from trendcast.portfolio.config import load_config

    chosen = load_config(config)
    uri = settings().tracking_uri if log_to_mlflow else None
    with placement(settings(), cluster) as where:
        report, run_id, mlflow_run = service.backtest(
            _engine(), chosen, service.actor(), uri, where
        )
    if as_json:
        shown = {"run": run_id, "mlflow_run_id": mlflow_run, **report.as_dict()}
        out.print_json(json.dumps(shown, default=str))
        err.print(f"portfolio backtest {where.describe()}", highlight=False)
        return
    table = Table(
        title=f"portfolio {chosen.name}: {chosen.method}, {len(report.run.weights)} "
        f"rebalances, run {run_id}"
    )
    for column in (
        "series",
        "return",
        "ann. return",
        "vol",
        "sharpe",
        "deflated",
        "max dd",
        "avg dd",
        "turnover",
    ):
        table.add_column(column, justify="left" if column == "series" else "right")
    for name, row in report.summary.iterrows():
        table.add_row(
            str(name),
            f"{row.get('cumulative_return', float('nan')):+.1%}",
            f"{row.get('annualized_return', float('nan')):+.1%}",
            f"{row.get('volatility', float('nan')):.1%}",
            f"{row.get('sharpe', float('nan')):.2f}",
            f"{row.get('deflated_sharpe', float('nan')):.2f}",
            f"{row.get('max_drawdown', float('nan')):.1%}",
            f"{row.get('average_drawdown', float('nan')):.1%}",
            "" if row.get("turnover") != row.get("turnover") else f"{row['turnover']:.2f}",
        )
    out.print(table)
    weights = Table(title="latest weights and risk contributions")
    for column in ("member", "weight", "risk share"):
        weights.add_column(column, justify="left" if column == "member" else "right")
    for member, weight in report.latest_weights.items():
        share = report.contributions.get(member)
        weights.add_row(member, f"{weight:.1%}", "" if share is None else f"{share:.1%}")
    out.print(weights)
    for line in report.breaches:
        out.print(f"[yellow]risk appetite breached:[/] {line}")
    if mlflow_run:
        out.print(f"MLflow run {mlflow_run} (experiment 'portfolios')")
    out.print(f"portfolio backtest {where.describe()}", highlight=False)


def _money(value) -> str:
    return "-" if value is None or value != value else f"{value:,.2f}"


def _status_table(title: str, frame) -> Table:
    """Targets against what each deployment holds (equity plus transfers not yet in it)."""
    table = Table(title=title)
    columns = ("member", "weight", "target", "deployment", "actual", "capital in", "to move",
               "pending", "state")  # fmt: skip
    for column in columns:
        left = column in ("member", "deployment", "state")
        table.add_column(column, justify="left" if left else "right")
    for row in frame.itertuples():
        member = row.member + (f" ({row.note})" if row.note else "")
        table.add_row(
            member,
            f"{row.weight:.1%}",
            f"{row.target_capital:,.2f}",
            row.deployment if isinstance(row.deployment, str) else "-",
            _money(row.actual_capital),
            _money(row.capital_in),
            _money(row.to_move),
            _money(row.pending),
            row.state,
        )
    return table


@portfolio_app.command("apply")
def portfolio_apply(
    name: str = typer.Argument(..., help="Portfolio name."),
    reason: str = typer.Option(..., help="Why the capital moves (audited)."),
) -> None:
    """Bring each paper deployment to its target from the latest weights (audited); a cut
    beyond the free cash takes what is free and leaves the rest pending."""
    from trendcast.portfolio import service

    frame = service.apply(_engine(), name, service.actor(), reason)
    out.print(_status_table(f"portfolio {name}: capital applied", frame))


@portfolio_app.command("status")
def portfolio_status(name: str = typer.Argument(..., help="Portfolio name.")) -> None:
    """Target capital from the latest weights against what each deployment holds."""
    from trendcast.portfolio import service

    out.print(_status_table(f"portfolio {name}", service.targets(_engine(), name)))


@portfolio_app.command("check")
def portfolio_check(name: str = typer.Argument(..., help="Portfolio name.")) -> None:
    """Judge members' live returns against their backtest band; flag, propose or substitute."""
    from trendcast.portfolio import service

    outcomes = service.check(_engine(), name, service.actor(), settings().alert_webhook)
    if not outcomes:
        out.print(f"portfolio {name}: every member with live returns is inside its band")
    for o in outcomes:
        out.print(
            f"{o['action']}: {o['why']}"
            + (f"; candidate {o['candidate']}" if o["candidate"] else "")
        )


@portfolio_app.command("streams")
def portfolio_streams(
    record_deployments: bool = typer.Option(
        False, "--record-deployments", help="First store every deployment's live stream."
    ),
) -> None:
    """The stored return streams (one row per version) members are built from."""
    from trendcast.portfolio import service, store

    engine = _engine()
    if record_deployments:
        for name, version, new in store.record_deployments(engine, service.actor()):
            state = "no equity yet" if version is None else f"v{version}" + (" new" if new else "")
            out.print(f"deployment {name}: {state}")
    table = Table(title="return streams")
    for column in ("member id", "source", "v", "strategy", "params", "symbols", "model", "days",
                   "first", "last"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("v", "days") else "left")
    for row in store.list_streams(engine).itertuples():
        table.add_row(
            row.member_id, row.source, str(row.version), row.strategy,
            json.dumps(row.params, sort_keys=True), ",".join(row.symbols),
            row.model if isinstance(row.model, str) else "",  # pandas reads None as NaN
            str(row.days), str(row.first_day), str(row.last_day),
        )  # fmt: skip
    out.print(table)
