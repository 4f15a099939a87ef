"""`trendcast deploy`: strategy deployments (paper, then live), their runner and their audit."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from trendcast.cli._common import err, out, parse_params, settings, utc

deploy_app = typer.Typer(
    help="Strategy deployments: create, run, status, stop, promote, reconcile."
)


def _engine():
    from trendcast.db import get_engine

    return get_engine(settings())


def _client():
    from trendcast.cli._common import mlflow_client

    return mlflow_client()


@deploy_app.command("create")
def create(
    name: str = typer.Argument(..., help="Deployment name (unique)."),
    strategy: str = typer.Option(..., help="buy-and-hold, sma-crossover, model-threshold."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE."),
    model: str | None = typer.Option(None, help="MODEL@ALIAS the strategy scores with."),
    symbols: str = typer.Option(..., help="Comma-separated symbols."),
    interval: str = typer.Option("1h", "--interval", "-i", help="Bar interval."),
    broker: str = typer.Option("paper", help="paper or binance."),
    capital: float = typer.Option(..., help="Capital, split equally between the symbols."),
    start: str | None = typer.Option(
        None, help="First decision bar (ISO 8601); default: the newest stored bar."
    ),
    warmup: int = typer.Option(500, help="Bars of history the strategy sees before the start."),
    max_position: float | None = typer.Option(None, help="Largest position per symbol (units)."),
    max_notional: float | None = typer.Option(None, help="Largest position value per symbol."),
    daily_loss: float | None = typer.Option(None, help="Daily loss fraction that kills."),
    max_drawdown: float | None = typer.Option(None, help="Drawdown fraction that kills."),
    slippage_band: float | None = typer.Option(None, help="Slippage fraction that alerts."),
    max_weight: float | None = typer.Option(None, help="Largest target weight in (0, 1]."),
    exist_ok: bool = typer.Option(
        False, "--exist-ok", help="A deployment of this name already exists: keep it."
    ),
) -> None:
    """Record a deployment on the demo stage (nothing trades until `deploy run`)."""
    from trendcast.trading.deployments import DeploymentNotFound, get
    from trendcast.trading.lifecycle import create as make

    if exist_ok:
        try:
            dep = get(_engine(), name)
        except DeploymentNotFound:
            pass
        else:
            out.print(f"deployment {name}: exists (stage {dep.stage}, state {dep.state}); kept")
            return

    limits = (max_position, max_notional, daily_loss, max_drawdown, slippage_band, max_weight)
    names = ("max_position", "max_notional", "daily_loss", "max_drawdown", "slippage_band")
    risk = {k: v for k, v in zip((*names, "max_weight"), limits, strict=True) if v is not None}
    dep = make(
        _engine(),
        name=name,
        strategy=strategy,
        params=parse_params(param),
        model=model,
        symbols=symbols.split(","),
        interval=interval,
        broker=broker,
        capital=capital,
        risk=risk,
        start=utc(start, "--start") if start else None,
        warmup=warmup,
        client=_client() if model else None,
    )
    out.print(
        f"deployment {dep.name}: {dep.strategy} on {','.join(dep.symbols)} {dep.interval}, "
        f"{dep.broker} broker, stage {dep.stage}, capital {dep.capital:,.2f}, "
        f"starts at {dep.start_bar:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


@deploy_app.command("run")
def run(
    name: str = typer.Argument(...),
    every: str | None = typer.Option(
        None, help="Check for new bars on a schedule (1m, 'rate(…)')."
    ),
    scheduled: bool = typer.Option(False, "--scheduled", help="Every minute, forever."),
    until: str | None = typer.Option(None, help="Replay: step stored bars up to this time."),
    bars: int | None = typer.Option(None, min=1, help="Replay: step at most N stored bars."),
    times: int | None = typer.Option(None, min=1, help="With --every: stop after N runs."),
) -> None:
    """Reconcile with the venue, then trade each newly closed bar."""
    from trendcast.schedule import period_seconds, run_every
    from trendcast.trading.lifecycle import run_pending

    engine = _engine()
    if (bars or until) and (every or scheduled):
        raise typer.BadParameter("--bars/--until replay stored bars; --every/--scheduled wait")
    period = period_seconds("1m" if scheduled else every) if (every or scheduled) else None
    client = None

    def printed(step: dict) -> None:
        if "killed" in step:
            err.print(f"[red]{step['bar']:%Y-%m-%d %H:%M}: kill switch: {step['killed']}[/]")
            return
        targets = ", ".join(
            f"{s} {t:+g}" if t is not None else f"{s} -" for s, t in step["targets"].items()
        )
        out.print(
            f"{step['bar']:%Y-%m-%d %H:%M} equity {step['equity']:,.2f} target {targets}",
            highlight=False,
        )

    def once():
        from trendcast.trading.broker import VenueUnavailable
        from trendcast.trading.lifecycle import RunSummary

        try:
            return run_pending(
                engine,
                name,
                bars=bars,
                until=utc(until, "--until") if until else None,
                client=client,
                on_step=printed,
            )
        except VenueUnavailable as exc:
            if period is None:
                raise
            # recorded and alerted by the runner; the next run reconciles first
            err.print(f"[yellow]venue unreachable, retrying at the next run:[/] {exc}")
            return RunSummary(0, None)

    summary = run_every(once, period, times)
    out.print(
        f"{name}: {summary.steps} bar(s) stepped"
        + (f"; killed: {summary.stopped}" if summary.stopped else "")
    )


@deploy_app.command("status")
def status(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """The deployment's stage, state, positions, equity and orders."""
    from trendcast.trading.lifecycle import check_running
    from trendcast.trading.lifecycle import status as show

    engine = _engine()
    check_running(engine)
    info = show(engine, name)
    dep = info["deployment"]
    if as_json:
        out.print_json(json.dumps({**info, "deployment": dep.as_dict()}, default=str))
        return
    out.print(
        f"{dep.name}: stage {dep.stage}, state {dep.state}"
        + (f" ({dep.state_reason})" if dep.state_reason else "")
        + (" [red]LATE: not stepping[/]" if info["late"] else "")
    )
    out.print(
        f"  {dep.strategy} {dep.params if dep.params else ''} "
        f"model {dep.model_name}@{dep.model_alias}"
        if dep.model_name
        else f"  {dep.strategy}",
        highlight=False,
    )
    bal = info["balance"]
    if bal:
        out.print(
            f"  last bar {bal['bar_time']:%Y-%m-%d %H:%M}: equity {bal['equity']:,.2f}, "
            f"cash {bal['cash']:,.2f}, drawdown {bal['drawdown']:.2%}",
            highlight=False,
        )
    out.print(
        f"  positions {info['positions'] or '-'}; fills {info['fills']}; "
        f"orders {info['orders'] or '-'}",
        highlight=False,
    )


@deploy_app.command("list")
def list_() -> None:
    """Every deployment with its stage and state."""
    from trendcast.trading.deployments import list_all
    from trendcast.trading.lifecycle import check_running, is_late

    engine = _engine()
    check_running(engine)
    table = Table()
    for column in (
        "name",
        "strategy",
        "symbols",
        "broker",
        "stage",
        "state",
        "capital",
        "last bar",
    ):
        table.add_column(column)
    for dep in list_all(engine):
        table.add_row(
            dep.name,
            dep.strategy,
            ",".join(dep.symbols),
            dep.broker,
            dep.stage,
            dep.state + (" (late)" if is_late(dep) else ""),
            f"{dep.capital:,.0f}",
            f"{dep.last_bar:%Y-%m-%d %H:%M}" if dep.last_bar else "-",
        )
    out.print(table)


@deploy_app.command("stop")
def stop(
    name: str = typer.Argument(...),
    flatten: bool = typer.Option(False, "--flatten", help="Close every position."),
    hand_over: bool = typer.Option(False, "--hand-over", help="Leave positions to the owner."),
) -> None:
    """Stop trading; what happens to open positions is explicit and audited."""
    from trendcast.trading.lifecycle import stop as halt

    lines = halt(_engine(), name, flatten=flatten, hand_over=hand_over)
    out.print(f"{name}: stopped; " + ("; ".join(lines) or "no open position"), highlight=False)


@deploy_app.command("promote")
def promote(
    name: str = typer.Argument(...),
    to: str = typer.Option(..., "--to", help="live"),
) -> None:
    """Demo -> live, gated and audited; a refusal names each failing gate."""
    from trendcast.trading.promotion import Thresholds
    from trendcast.trading.promotion import promote as move

    config = settings()
    limits = Thresholds(
        config.deploy_demo_days, config.deploy_demo_trades, config.deploy_equity_tolerance
    )
    dep_client = _client()
    results = move(_engine(), name, to, config, limits, dep_client)
    out.print(f"{name}: live. " + "; ".join(f"{g} ({r['got']})" for g, r in results.items()))


@deploy_app.command("reconcile")
def reconcile(
    name: str = typer.Argument(...),
    start: str | None = typer.Option(None, help="First bar (ISO 8601); default: the start."),
    end: str | None = typer.Option(None, help="Last bar (ISO 8601); default: the last stepped."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fills and equity against the backtest of the same bars, model versions and costs."""
    from trendcast.trading.deployments import get
    from trendcast.trading.reconcile import reconcile as compare

    engine = _engine()
    client = _client() if get(engine, name).model_name else None
    result = compare(
        engine,
        name,
        utc(start, "--start") if start else None,
        utc(end, "--end") if end else None,
        client=client,
    )
    if as_json:
        out.print_json(json.dumps(result.as_dict(), default=str))
        return
    verdict = (
        "[green]equal[/]"
        if result.equal
        else f"[red]{len(result.differences)} difference(s), "
        f"{len(result.unexplained)} unexplained[/]"
    )
    out.print(
        f"{name} {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M}: {result.bars} "
        f"bars, fills live {result.fills_live} / backtest {result.fills_backtest}; max relative "
        f"difference equity {result.max_equity_diff:.2e}, fill price "
        f"{result.max_fill_price_diff:.2e}, quantity {result.max_fill_quantity_diff:.2e}: "
        + verdict
    )
    for diff in result.differences[:20]:
        out.print(f"  {diff}", highlight=False)
    if result.unexplained:
        raise typer.Exit(3)
