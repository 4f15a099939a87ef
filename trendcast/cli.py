"""The ``trendcast`` command line: local stack, migrations, history load, synthetic data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trendcast.config import Settings, get_settings
from trendcast.errors import InputError, TrendcastError
from trendcast.schedule import DEFAULT_INGEST_RATE
from trendcast.tracking import use_mlflow

app = typer.Typer(
    help="Trendcast: market-prediction models from exchange bars to a served, monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
features_app = typer.Typer(
    help="Feature store and the derive_indicators pipeline.", no_args_is_help=True
)
app.add_typer(features_app, name="features")

# Piped output (CI logs, `make demo`) gets room for the wide tables instead of 80 columns.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"trendcast {version('trendcast')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Trendcast: market-prediction models from exchange bars to a served, monitored model."""


def _settings() -> Settings:
    return get_settings()


def _status_table(parts) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("part", "state", "url", "version", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"up": "green", "external": "cyan", "down": "red", "orphaned": "red"}
    for part in parts:
        state = f"[{colours.get(part.state, 'white')}]{part.state}[/]"
        table.add_row(part.name, state, part.url, part.version, part.detail)
    return table


@app.command()
def up(
    with_parts: list[str] = typer.Option(
        None,
        "--with",
        help="Also start an optional part: replay (exchange replay), serving (BentoML), dashboard.",
    ),
) -> None:
    """Start PostgreSQL (embedded unless TRENDCAST_DATABASE_URL is set), migrate, start MLflow."""
    from trendcast.stack import launcher

    settings = _settings()
    with err.status("starting the local stack…"):
        parts = launcher.up(
            settings,
            on_part=lambda p: err.print(f"{p.name}: {p.state}, {p.url}"),
            with_parts=with_parts or [],
        )
    out.print(_status_table(parts))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Show each part's state, URL and version; exit 1 when a part is down."""
    from dataclasses import asdict

    from trendcast.stack import launcher

    parts = launcher.status(_settings())
    if as_json:
        out.print_json(json.dumps([asdict(p) for p in parts]))
    else:
        out.print(_status_table(parts))
    if not all(p.healthy for p in parts):
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop exactly the processes `trendcast up` started."""
    from trendcast.stack import launcher

    stopped = launcher.down(_settings())
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create the database if missing and apply migrations up to REVISION."""
    from trendcast import migrate
    from trendcast.db import database_url, ensure_database

    url = database_url("trendcast", _settings())
    ensure_database(url)
    migrate.upgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the applied and the latest migration revision."""
    from trendcast import migrate
    from trendcast.db import check_connection, database_url

    url = database_url("trendcast", _settings())
    check_connection(url)
    out.print(f"applied: {migrate.current_revision(url)}  latest: {migrate.head_revision()}")


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    span = f"{summary.first_open_time} .. {summary.last_open_time}" if summary.read else "-"
    out.print(
        f"{summary.symbol} {summary.interval} ({summary.source}): read {summary.read:,}, "
        f"inserted {summary.inserted:,}, duplicates {summary.duplicates:,}, "
        f"quarantined {summary.quarantined:,}; bars {span}; run {summary.run_id}"
    )


@app.command("load-history")
def load_history(
    file: Path = typer.Argument(..., help="CSV (plain OHLCV or Binance kline) or Parquet file."),
    symbol: str = typer.Option(..., "--symbol", "-s", help="Symbol, e.g. BTCUSDT."),
    interval: str = typer.Option(..., "--interval", "-i", help="Bar interval, e.g. 1m, 1h, 1d."),
    source: str = typer.Option("file", help="Where the bars came from (stored with each bar)."),
    time_format: str | None = typer.Option(
        None, help="strftime format of the time column when it is not ISO 8601 or epoch."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    known_at: str = typer.Option(
        "close",
        help="ingest_time to record: 'close' (each bar known at its close, for history) or "
        "'now' (known from this load on, e.g. a late correction).",
    ),
) -> None:
    """Bulk-load bars with COPY in one transaction; bad rows go to market.quarantine."""
    from trendcast import history
    from trendcast.db import get_engine
    from trendcast.schema import series_key, validate_source

    series_key(symbol, interval)
    validate_source(source)
    if known_at not in {"close", "now"}:
        raise TrendcastError(f"--known-at {known_at!r}: must be 'close' or 'now'")
    engine = get_engine(_settings())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} bars"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"loading {file.name}", total=None)

        def advance(rows: int) -> None:
            progress.update(task, advance=rows)

        summary = history.load_history(
            engine,
            file,
            symbol=symbol,
            interval=interval,
            source=source,
            time_format=time_format,
            on_progress=advance,
            known_at=known_at,
        )
        progress.update(task, total=summary.read)
    _print_summary(summary, as_json)


@app.command("load-sample")
def load_sample(
    symbols: list[str] = typer.Option(None, "--symbol", "-s", help="Only these sample symbols."),
    until: str | None = typer.Option(
        None, help="Load only bars opening before this time (the demo leaves the rest to replay)."
    ),
) -> None:
    """Load the bundled real market history (EURUSD 1h; GOOGL, AAPL, MSFT, IBM daily)."""
    from trendcast.db import get_engine
    from trendcast.history import load_frame
    from trendcast.sample_data import SAMPLES

    chosen = [s for s in SAMPLES if not symbols or s.symbol in symbols]
    if symbols and len(chosen) != len(set(symbols)):
        known = ", ".join(s.symbol for s in SAMPLES)
        raise TrendcastError(f"--symbol: unknown sample symbol in {symbols}; known: {known}")
    engine = get_engine(_settings())
    cutoff = _utc(until, "--until") if until else None
    for sample in chosen:
        frame, origin = sample.reader()
        if cutoff is not None:
            frame = frame[frame["open_time"] < cutoff].reset_index(drop=True)
        summary = load_frame(
            engine,
            frame,
            symbol=sample.symbol,
            interval=sample.interval,
            source=sample.source,
            origin=origin,
        )
        _print_summary(summary, as_json=False)


@app.command()
def bars() -> None:
    """List stored bar series: bars, first and last open time, sources, quarantined rows."""
    import sqlalchemy as sa

    from trendcast.db import get_engine

    query = sa.text(
        """
        SELECT b.symbol, b.interval, count(*) AS bars,
               to_char(min(open_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS first,
               to_char(max(open_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS last,
               string_agg(DISTINCT source, ',') AS sources,
               (SELECT count(*) FROM market.quarantine q
                 WHERE q.symbol = b.symbol AND q.interval = b.interval::text) AS quarantined
        FROM market.bars b GROUP BY b.symbol, b.interval ORDER BY b.symbol, b.interval
        """
    )
    with get_engine(_settings()).connect() as conn:
        rows = conn.execute(query).all()
    table = Table(show_header=True, header_style="bold")
    for column in ("symbol", "interval", "bars", "first", "last", "sources", "quarantined"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    out.print(table if rows else "no bars stored yet: try `trendcast load-sample`")


@app.command()
def synth(
    output: Path = typer.Argument(..., help="Output file: .parquet or .csv."),
    bars_count: int = typer.Option(100_000, "--bars", "-n", min=1, help="Number of bars."),
    interval: str = typer.Option("1m", "--interval", "-i"),
    start: str = typer.Option("2020-01-01", help="First open time (UTC)."),
    seed: int = typer.Option(7, help="Random seed (same seed, same bars)."),
) -> None:
    """Write synthetic bars (random walk with regime changes). Synthetic, never real data."""
    from trendcast.schema import series_key
    from trendcast.synth import synth_bars, write_bars

    series_key("SYN", interval)
    if output.suffix.lower() not in {".parquet", ".pq", ".csv"}:
        raise TrendcastError(f"{output}: output must end in .parquet or .csv")
    frame = synth_bars(bars_count, interval=interval, start=start, seed=seed)
    write_bars(frame, output)
    out.print(f"wrote {bars_count:,} synthetic {interval} bars to {output}")


def _utc(text: str, option: str):
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise TrendcastError(f"{option} {text!r}: not an ISO 8601 time") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _ingest_lines(summary: dict) -> str:
    lines = []
    for r in summary["series"]:
        last = (r["last_open_time"] or "-")[:16].replace("T", " ")
        lines.append(
            f"{r['symbol']} {r['interval']}: {r['status']}; fetched {r['fetched']:,}, "
            f"inserted {r['inserted']:,}, duplicates {r['duplicates']:,}, "
            f"quarantined {r['quarantined']:,}, gaps {r['gaps_found']:,} found / "
            f"{r['gaps_filled']:,} filled; last bar {last}"
        )
    return "\n".join(lines)


@app.command()
def ingest(
    symbols: list[str] = typer.Option(None, "--symbol", "-s", help="Default: TRENDCAST_SYMBOLS."),
    intervals: list[str] = typer.Option(
        None, "--interval", "-i", help="Default: TRENDCAST_INTERVALS."
    ),
    start: str | None = typer.Option(None, help="Window start (ISO 8601); default: last bar."),
    end: str | None = typer.Option(None, help="Window end (ISO 8601); default: exchange now."),
    every: str | None = typer.Option(
        None, help="Run on a schedule like the EventBridge rule: 'rate(1 minute)', 30s, 5m."
    ),
    scheduled: bool = typer.Option(
        False,
        "--scheduled",
        help=f"Run on the production schedule, {DEFAULT_INGEST_RATE} (the EventBridge rule's).",
    ),
    times: int | None = typer.Option(
        None, min=1, help="With --every or --scheduled: stop after N runs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each summary as JSON."),
) -> None:
    """Run the ingestion Lambda's handler here, once or on a schedule."""
    import time

    from ingestion_lambda.handler import handler
    from trendcast.schedule import period_seconds

    if scheduled and every:
        raise InputError("give either --every or --scheduled, not both")
    if scheduled:
        every = DEFAULT_INGEST_RATE
    period = period_seconds(every) if every else None
    event: dict = {"source": "trendcast.cli"}
    if symbols:
        event["symbols"] = symbols
    if intervals:
        event["intervals"] = intervals
    if start:
        event["start"] = _utc(start, "--start").isoformat()
    if end:
        event["end"] = _utc(end, "--end").isoformat()
    runs = 0
    while True:
        began = time.monotonic()
        summary = handler(event, None)
        runs += 1
        if as_json:
            out.print_json(json.dumps(summary, default=str))
        elif summary["status"] == "rejected":
            raise TrendcastError(summary["error"])
        else:
            out.print(_ingest_lines(summary), highlight=False, soft_wrap=True)
            if summary.get("error"):
                err.print(f"[yellow]warning:[/] {summary['error']}", highlight=False)
        if period is None or (times is not None and runs >= times):
            break
        time.sleep(max(0.0, period - (time.monotonic() - began)))
    if summary["status"] in {"failed", "rejected"}:
        raise typer.Exit(1)


@app.command()
def gaps(
    symbol: str | None = typer.Option(None, "--symbol", "-s", help="Default: every series."),
    interval: str | None = typer.Option(None, "--interval", "-i"),
    since: str | None = typer.Option(None, help="Only gaps after this time (ISO 8601)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Report runs of missing bars in stored series."""
    import sqlalchemy as sa

    from trendcast.db import get_engine
    from trendcast.gaps import find_gaps
    from trendcast.schema import series_key

    engine = get_engine(_settings())
    with engine.connect() as conn:
        series = conn.execute(
            sa.text(
                "SELECT DISTINCT symbol, interval::text FROM market.bars "
                "WHERE (CAST(:s AS text) IS NULL OR symbol = :s) "
                "AND (CAST(:i AS text) IS NULL OR interval::text = :i) ORDER BY 1, 2"
            ),
            {"s": symbol, "i": interval},
        ).all()
        cutoff = _utc(since, "--since") if since else None
        found = [g for s, i in series for g in find_gaps(conn, series_key(s, i), since=cutoff)]
    if as_json:
        rows = [
            {
                "symbol": g.symbol,
                "interval": g.interval,
                "after": g.after.isoformat(),
                "before": g.before.isoformat(),
                "missing": g.missing,
            }
            for g in found
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(show_header=True, header_style="bold", title=f"{len(found)} gap(s)")
    for column in ("symbol", "interval", "last bar before", "next bar", "missing bars"):
        table.add_column(column)
    for g in found:
        table.add_row(g.symbol, g.interval, str(g.after), str(g.before), f"{g.missing:,}")
    out.print(table)


@app.command("exchange-replay")
def exchange_replay(
    data: Path | None = typer.Option(None, help="Bar file to serve; default: the EURUSD sample."),
    symbols: str | None = typer.Option(None, help="Serve the data as these symbols (a,b,c)."),
    interval: str = typer.Option("1h", "--interval", "-i", help="Interval of the data file."),
    time_format: str | None = typer.Option(None, help="strftime format of the file's times."),
    start: str | None = typer.Option(None, help="Data time the clock starts at."),
    speed: float | None = typer.Option(None, min=0.0001, help="Data-seconds per wall-second."),
    host: str | None = typer.Option(None),
    port: int | None = typer.Option(None),
) -> None:
    """Serve real historical bars in Binance klines format with a moving clock (Ctrl-C stops)."""
    from trendcast.bar_files import read_bar_file
    from trendcast.replay import Replay, ReplayClock, serve
    from trendcast.sample_data import SAMPLES
    from trendcast.schema import series_key

    settings = _settings()
    if data is None:
        sample = next(s for s in SAMPLES if s.symbol == "EURUSD")
        frame, _ = sample.reader()
        interval, names = sample.interval, (symbols or sample.symbol).split(",")
    else:
        frame = read_bar_file(data, time_format=time_format).frame
        names = (symbols or "SYN").split(",")
    for name in names:
        series_key(name, interval)
    clock = ReplayClock(
        _utc(start or settings.replay_start, "--start"), speed or settings.replay_speed
    )
    replay = Replay({name: frame for name in names}, interval, clock)
    server = serve(replay, host or settings.host, port or settings.replay_port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}"
    err.print(
        f"exchange replay on {address}: {', '.join(names)} {interval}, clock "
        f"{clock.now():%Y-%m-%d %H:%M} x{clock.speed:g}",
        highlight=False,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


@features_app.command("build")
def features_build(
    full: bool = typer.Option(False, "--full", help="Recompute every series from its first bar."),
    runner: str = typer.Option(
        "mage",
        help="mage: the Mage pipeline in .venv-mage (block tests on); python: the same "
        "functions in this process.",
    ),
) -> None:
    """Run derive_indicators: bars changed since the last run -> indicators -> feature store."""
    import os
    import subprocess

    from trendcast.db import database_url

    settings = _settings()
    if runner == "python":
        from trendcast.db import get_engine
        from trendcast.feature_pipeline import build

        summary = build(get_engine(settings), full=full)
        out.print(
            f"derive_indicators: {summary['series']} series, {summary['rows_computed']:,} rows "
            f"computed, {summary['rows_written']:,} written"
        )
        return
    if runner != "mage":
        raise TrendcastError(f"--runner {runner!r}: must be 'mage' or 'python'")
    repo = Path(__file__).resolve().parents[1]
    mage = repo / ".venv-mage" / "bin" / "mage"
    if not mage.exists():
        raise TrendcastError(f"{mage} not found: run `make setup` to create the Mage environment")
    url = database_url("trendcast", settings).render_as_string(hide_password=False)
    command = [
        str(mage),
        "run",
        "mage_pipelines",
        "derive_indicators",
        "--test",
        "--runtime-vars",
        json.dumps({"full": full}),
    ]
    env = {**os.environ, "TRENDCAST_DATABASE_URL": url}
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0:
        tail = "\n".join(lines[-15:])
        raise TrendcastError(f"Mage pipeline derive_indicators failed:\n{tail}")
    summary = [line for line in lines if line.startswith("derive_indicators:")]
    out.print(summary[-1] if summary else "derive_indicators: done", highlight=False)


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
    row = get_latest(get_engine(_settings()), DEFAULT_FEATURE_SET, key.symbol, key.interval)
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


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise TrendcastError(f"--param {pair!r}: expected NAME=VALUE, e.g. fast=7")
        name, value = pair.split("=", 1)
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


@app.command()
def backtest(
    strategy: str = typer.Option("sma-crossover", help="buy-and-hold, sma-crossover, ..."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE."),
    symbols: str = typer.Option("all", help="Comma-separated symbols, or 'all' stored series."),
    interval: str | None = typer.Option(None, "--interval", "-i", help="Only this interval."),
    start: str | None = typer.Option(None, help="First bar (ISO 8601)."),
    end: str | None = typer.Option(None, help="Last bar (ISO 8601)."),
    fee: float = typer.Option(0.001, help="Fee as a fraction of traded notional."),
    spread: float = typer.Option(0.0, help="Bid-ask spread as a fraction (half paid per trade)."),
    slippage: float = typer.Option(0.0, help="Slippage as a fraction per trade."),
    capital: float = typer.Option(10_000.0, help="Starting capital."),
    min_sharpe: float = typer.Option(1.0, help="Performance filter: minimum Sharpe."),
    max_drawdown: float = typer.Option(0.30, help="Performance filter: maximum drawdown."),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
    log_to_mlflow: bool = typer.Option(False, help="Log each report to MLflow (a run each)."),
) -> None:
    """Backtest a strategy on stored bars; list where it passes the performance filter."""
    import pandas as pd
    import sqlalchemy as sa

    from trendcast.backtest import Costs
    from trendcast.db import get_engine
    from trendcast.report import PerformanceFilter, run_report
    from trendcast.strategy import make_strategy

    chosen = make_strategy(strategy, **_parse_params(param))
    costs = Costs(fee=fee, spread=spread, slippage=slippage)
    gate = PerformanceFilter(min_sharpe=min_sharpe, max_drawdown=max_drawdown)
    engine = get_engine(_settings())
    wanted = None if symbols == "all" else [s.strip() for s in symbols.split(",")]
    with engine.connect() as conn:
        series = conn.execute(
            sa.text("SELECT DISTINCT symbol, interval::text FROM market.bars ORDER BY 1, 2")
        ).all()
    series = [
        (s, i)
        for s, i in series
        if (wanted is None or s in wanted) and (interval is None or i == interval)
    ]
    if not series:
        raise TrendcastError(f"no stored bars for symbols={symbols} interval={interval}")
    reports = []
    for symbol, series_interval in series:
        frame = pd.read_sql(
            sa.text(
                "SELECT open_time, open, high, low, close, volume FROM market.bars "
                "WHERE symbol = :s AND interval = CAST(:i AS market.bar_interval) "
                "AND open_time >= coalesce(CAST(:a AS timestamptz), '-infinity') "
                "AND open_time <= coalesce(CAST(:b AS timestamptz), 'infinity') "
                "ORDER BY open_time"
            ),
            engine,
            params={"s": symbol, "i": series_interval, "a": start, "b": end},
        )
        if len(frame) < 2:
            continue
        frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
        report = run_report(
            frame, chosen, costs, symbol=symbol, interval=series_interval, capital=capital
        )
        reports.append((report, gate.evaluate(report)))
        if log_to_mlflow:
            _log_report(report, gate.evaluate(report))
    if as_json:
        out.print_json(
            json.dumps(
                [{**r.as_dict(), "gates": g, "passes": all(g.values())} for r, g in reports],
                default=str,
            )
        )
        return
    table = Table(title=f"{chosen!r}, fee {fee:g}, spread {spread:g}, slippage {slippage:g}")
    for column in (
        "symbol",
        "interval",
        "return",
        "buy&hold",
        "sharpe",
        "max dd",
        "trades",
        "passes",
    ):
        table.add_column(column, justify="right" if column not in ("symbol", "passes") else "left")
    for r, g in reports:
        table.add_row(
            r.symbol,
            r.interval,
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


def _log_report(report, gates: dict) -> None:
    import mlflow

    use_mlflow(_settings().tracking_uri)
    mlflow.set_experiment("backtests")
    with mlflow.start_run(run_name=f"{report.symbol}_{report.strategy}"):
        mlflow.log_params(
            {
                "strategy": report.strategy,
                "symbol": report.symbol,
                "interval": report.interval,
                **report.params,
            }
        )
        numbers = {
            k: v
            for k, v in report.as_dict().items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
        }
        mlflow.log_metrics({f"backtest_{k}": float(v) for k, v in numbers.items()})
        mlflow.log_dict(report.as_dict(), "backtest/report.json")
        mlflow.log_dict(gates, "backtest/gates.json")
        for name, figure in report.figures().items():
            mlflow.log_figure(figure, f"backtest/{name}.html")


def _mlflow_client():
    from mlflow import MlflowClient

    settings = _settings()
    use_mlflow(settings.tracking_uri)
    return MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)


@app.command("train")
def train_command(
    symbol: str | None = typer.Option(None, "--symbol", "-s", help="Required without --grid."),
    interval: str = typer.Option("1h", "--interval", "-i"),
    horizon: int = typer.Option(4, min=1, help="Label: forward log return over this many bars."),
    param: list[str] = typer.Option(None, "--param", "-p", help="XGBoost parameter NAME=VALUE."),
    model_name: str | None = typer.Option(None, help="Default: SYMBOL_INTERVAL_hHORIZON."),
    start: str | None = typer.Option(None, help="First bar of the dataset (ISO 8601)."),
    end: str | None = typer.Option(None, help="Last bar of the dataset (ISO 8601)."),
    grid: Path | None = typer.Option(
        None, "--grid", help="YAML grid of hyperparameters x periods (see training/grids/)."
    ),
) -> None:
    """Train XGBoost on the point-in-time dataset, log to MLflow, register, backtest.

    With --grid: every candidate on every period as nested runs, ranked, best registered."""
    import mlflow

    from training.dataset import build_dataset
    from training.train import train
    from trendcast.db import get_engine

    settings = _settings()
    engine = get_engine(settings)
    if grid is not None:
        _train_grid(engine, grid, settings)
        return
    if not symbol:
        raise InputError("--symbol: required (or give --grid FILE)")
    dataset = build_dataset(
        engine, symbol, interval, settings.home / "datasets", horizon=horizon, start=start, end=end
    )
    use_mlflow(settings.tracking_uri)
    mlflow.set_experiment("training")
    result = train(
        engine,
        dataset,
        symbol=symbol,
        interval=interval,
        model_name=model_name or settings.model_name,
        params=_parse_params(param),
    )
    scores = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    out.print(
        f"{result.model_name} version {result.version} (run {result.run_id}, sha256 "
        f"{result.checksum[:12]}…): {scores}\n{settings.tracking_uri}/#/models/"
        f"{result.model_name}/versions/{result.version}",
        highlight=False,
    )


def _train_grid(engine, path: Path, settings: Settings) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from training.grid import load_grid
    from training.tune import run_grid
    from trendcast.db import database_url

    spec = load_grid(path)
    tasks = len(spec.candidates()) * len(spec.periods)
    out.print(
        f"grid {path}: {len(spec.candidates())} candidates x {len(spec.periods)} periods = "
        f"{tasks} runs on {spec.n_jobs} worker(s), ranked on {spec.metric} ({spec.aggregate}), "
        f"top {spec.register_top} registered as {spec.name}",
        highlight=False,
    )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        bar = progress.add_task("training", total=tasks + spec.register_top)

        def advance(done: int, total: int, label: str) -> None:
            progress.update(bar, completed=done, total=total, description=label)

        try:
            result = run_grid(
                engine,
                spec,
                tracking_uri=settings.tracking_uri,
                database_url=database_url("trendcast", settings).render_as_string(
                    hide_password=False
                ),
                datasets_dir=settings.home / "datasets",
                on_progress=advance,
            )
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                "interrupted: finished runs stay logged; runs cut short and the grid's parent "
                "run are marked KILLED (tag grid_status=interrupted)"
            )
            raise typer.Exit(130) from None
    table = Table(title=f"{spec.name}: candidates ranked on {result.metric} ({spec.aggregate})")
    for column in result.ranking.columns:
        table.add_column(str(column), justify="right")
    for _, row in result.ranking.iterrows():
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)
    for place, version in enumerate(result.registered, 1):
        out.print(
            f"rank {place}: {version.model_name} version {version.version} (run {version.run_id})",
            highlight=False,
        )
    out.print(f"{settings.tracking_uri}/#/experiments/runs/{result.parent_run_id}", highlight=False)


def _resolve_version(client, name: str, version: str, metric: str, gates) -> int:
    """A version number from ``N``, ``latest``, ``best`` or ``best:K`` (K-th best passing)."""
    from trendcast import registry

    if version.isdigit():
        return int(version)
    if version == "latest":
        return max(v.version for v in registry.versions(client, name))
    if version == "best" or (version.startswith("best:") and version[5:].isdigit()):
        place = int(version[5:]) if ":" in version else 1
        return registry.best(client, name, metric, gates, place=max(place, 1))
    raise InputError(f"--version {version!r}: a version number, 'latest', 'best' or 'best:K'")


def _gates(path: Path | None):
    """The gate profile; a profile that differs from the defaults is announced on stderr."""
    from dataclasses import asdict

    from trendcast.registry import Gates

    profile = Gates.from_file(path) if path else Gates()
    if profile != Gates():
        looser = ", ".join(
            f"{k} {v} (default {getattr(Gates(), k)})"
            for k, v in asdict(profile).items()
            if v != getattr(Gates(), k)
        )
        err.print(f"[yellow]gate profile {path} differs from the defaults:[/] {looser}")
    return profile


@app.command()
def models(
    name: str | None = typer.Argument(None, help="One registered model (default: all)."),
) -> None:
    """Registered models: versions, aliases and key metrics."""
    from trendcast import registry

    client = _mlflow_client()
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    if not names:
        out.print("no registered models yet: run `trendcast train` (or `make demo`)")
        return
    table = Table(show_header=True)
    for column in (
        "model",
        "version",
        "aliases",
        "test IC",
        "sharpe",
        "max DD",
        "return",
        "buy&hold",
        "accuracy",
        "sha256",
    ):
        table.add_column(column, justify="right" if column not in ("model", "aliases") else "left")
    for model_name in names:
        for v in registry.versions(client, model_name):
            m = v.metrics
            table.add_row(
                model_name,
                str(v.version),
                ", ".join(v.aliases) or "-",
                *(
                    _fmt(m.get(k))
                    for k in (
                        "test_ic",
                        "backtest_sharpe",
                        "backtest_max_drawdown",
                        "backtest_cumulative_return",
                        "backtest_benchmark_cumulative_return",
                        "test_accuracy",
                    )
                ),
                (v.sha256 or "-")[:12],
            )
    out.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command()
def best(
    name: str = typer.Argument(..., help="Registered model name."),
    metric: str = typer.Option("sharpe", "--metric", "-m", help="e.g. sharpe, ic, mse."),
    gates: Path | None = typer.Option(None, help="Only versions passing this gate file."),
    passing: bool = typer.Option(False, "--passing", help="Only versions passing the gates."),
) -> None:
    """Rank the registered versions on a metric; print the best one's number last."""
    from trendcast import registry

    profile = _gates(gates) if (gates or passing) else None
    ranked = registry.rank(_mlflow_client(), name, metric, profile)
    key = registry.resolve_metric(metric)
    table = Table(title=f"{name} ranked on {key}")
    for column in ("place", "version", key, "aliases", "passes gates"):
        table.add_column(column)
    chosen = None
    for place, (v, ok) in enumerate(ranked, 1):
        table.add_row(
            str(place),
            str(v.version),
            _fmt(v.metrics.get(key)),
            ", ".join(v.aliases) or "-",
            "-" if profile is None else ("yes" if ok else "no"),
        )
        if ok and chosen is None and v.metrics.get(key) is not None:
            chosen = v.version
    out.print(table)
    if chosen is None:
        raise InputError(
            f"{name}: no version has {key}" + (" and passes the gates" if profile else "")
        )
    out.print(f"best {name} on {key}: version {chosen}", highlight=False)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Option(
        ..., "--version", "-v", help="N, 'latest', 'best' or 'best:K' (K-th best passing)."
    ),
    alias: str = typer.Option("production", "--alias", "-a"),
    gates: Path | None = typer.Option(None, help="JSON gate file (defaults from the spec)."),
    metric: str = typer.Option("sharpe", "--metric", "-m", help="What 'best' ranks on."),
    force: bool = typer.Option(False, "--force", help="Move the alias even if a gate fails."),
) -> None:
    """Move ALIAS to VERSION if its logged metrics pass the gates; every move is audited."""
    from trendcast.db import get_engine
    from trendcast.registry import promote as do_promote

    profile = _gates(gates)
    client = _mlflow_client()
    number = _resolve_version(client, name, version, metric, profile)
    move = do_promote(client, get_engine(_settings()), name, number, alias, profile, force)
    forced = " (FORCED past failing gates)" if move.forced else ""
    out.print(
        f"{name}@{alias}: {move.from_version or '-'} -> {move.to_version}{forced}", highlight=False
    )


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Option("production", "--alias", "-a"),
) -> None:
    """Move ALIAS back to the version it held before the current one."""
    from trendcast.db import get_engine
    from trendcast.registry import rollback as do_rollback

    move = do_rollback(_mlflow_client(), get_engine(_settings()), name, alias)
    out.print(
        f"{name}@{alias}: {move.from_version} -> {move.to_version} (rolled back)", highlight=False
    )


@app.command("alias-history")
def alias_history(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str | None = typer.Option(None, "--alias", "-a"),
) -> None:
    """Every recorded alias move of a model: who, when, from, to, forced, gates."""
    from trendcast.db import get_engine
    from trendcast.registry import history

    table = Table(title=f"alias moves of {name}", show_header=True)
    for column in ("when", "alias", "action", "from", "to", "by", "forced", "failed gates"):
        table.add_column(column)
    for row in history(get_engine(_settings()), name, alias):
        failed = [g for g, r in (row["gate_results"] or {}).items() if not r["passed"]]
        table.add_row(
            str(row["moved_at"])[:19],
            row["alias"],
            row["action"],
            str(row["from_version"] or "-"),
            str(row["to_version"]),
            row["moved_by"],
            "yes" if row["forced"] else "no",
            ", ".join(failed) or "-",
        )
    out.print(table)


@app.command("predict")
def predict_command(
    symbols: str | None = typer.Option(
        None, "--symbols", "-s", help="Comma list: score each on its newest bar (predict_latest)."
    ),
    interval: str = typer.Option("1h", "--interval", "-i"),
    rows: Path | None = typer.Option(None, help="JSON file with a list of feature rows."),
    example: bool = typer.Option(False, help="Send the served version's logged input example."),
    wait_for_alias: str | None = typer.Option(
        None, help="First wait until the service serves the version this alias points at."
    ),
    timeout: float = typer.Option(30.0, help="Seconds to wait with --wait-for-alias."),
) -> None:
    """Ask the running prediction service (`up --with serving`) for predictions."""
    import time

    import httpx

    from serving.service import DEFAULT_MODEL
    from trendcast.stack import serving_server

    settings = _settings()
    base = serving_server.url(settings)
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    name = settings.model_name or DEFAULT_MODEL

    def call(path: str, body: dict) -> dict:
        try:
            response = httpx.post(f"{base}{path}", json=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise TrendcastError(
                f"prediction service at {base} not reachable ({exc}); start it with "
                "`trendcast up --with serving`"
            ) from None
        if response.status_code >= 400:
            try:  # the service's one error schema: {"error": {"code", "message", "field"}}
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise TrendcastError(f"{path}: HTTP {response.status_code}: {message}")
        return response.json()

    if wait_for_alias:
        from trendcast.registry import alias_version

        target = alias_version(_mlflow_client(), name, wait_for_alias)
        if target is None:
            raise InputError(f"--wait-for-alias {wait_for_alias}: not set on {name}")
        started = time.monotonic()
        while (served := call("/model", {}).get("version")) != target:
            if time.monotonic() - started > timeout:
                errors = call("/model", {}).get("errors") or {}
                why = f": {errors[wait_for_alias]}" if wait_for_alias in errors else ""
                raise TrendcastError(
                    f"still serving version {served}, not {target}, after {timeout:.0f} s{why}"
                )
            time.sleep(0.5)
        out.print(
            f"{name}@{wait_for_alias} = version {target}: served after "
            f"{time.monotonic() - started:.1f} s",
            highlight=False,
        )
    if symbols:
        answer = call(
            "/predict_latest",
            {"symbols": [s.strip() for s in symbols.split(",") if s.strip()], "interval": interval},
        )
        model = answer["model"]
        for result in answer["results"]:
            out.print(
                f"{result['symbol']} {result['interval']} bar closing {result['event_time']}: "
                f"predicted forward return {result['prediction']:+.6f} "
                f"({model['name']} version {model['version']}, {model['alias']})",
                highlight=False,
            )
    batch = None
    if rows is not None:
        try:
            batch = json.loads(rows.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--rows {rows}: not a readable JSON list of rows ({exc})") from None
    elif example:
        import mlflow

        version = call("/model", {})["version"]
        _mlflow_client()
        loaded = mlflow.artifacts.load_dict(f"models:/{name}/{version}/input_example.json")
        batch = [dict(zip(loaded["columns"], values, strict=True)) for values in loaded["data"]]
    if batch is not None:
        answer = call("/predict", {"rows": batch})
        model = answer["model"]
        predictions = ", ".join(f"{p:+.6f}" for p in answer["predictions"])
        out.print(
            f"{len(batch)} row(s): {predictions} ({model['name']} version {model['version']})",
            highlight=False,
        )


@app.command()
def serve(
    port: int | None = typer.Option(None, help="Default: TRENDCAST_BENTOML_PORT (3000)."),
) -> None:
    """Run the prediction service in the foreground (`up --with serving` runs it detached)."""
    import os

    from trendcast.stack import serving_server

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"bentoml_port": port})
    command = serving_server.command(settings)
    os.environ["TRENDCAST_HOME"] = str(settings.home)
    out.print(f"serving {serving_server.url(settings)} (docs at /docs)", highlight=False)
    os.execv(command[0], command)


# --- Monitoring: the drift monitor and the dashboard (issue 8) ------------------------------

drift_app = typer.Typer(help="Drift monitor: IC, PSI and Sharpe of served models; alerts.")
app.add_typer(drift_app, name="drift")


def _date(text: str, option: str):
    import datetime as dt

    from trendcast.errors import InputError

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r}: must be a date written YYYY-MM-DD") from None


def _drift_line(summary) -> str:
    shown = ("ic", "ic_5d", "rank_ic", "prediction_psi", "sharpe_5d", "sharpe_20d")
    values = ", ".join(
        f"{k} {summary.metrics[k]:.3g}" if summary.metrics.get(k) is not None else f"{k} -"
        for k in shown
    )
    alerts = "; ".join(
        f"{a['severity']} {a['rule']} {a['feature']}".rstrip() for a in summary.alerts
    )
    return (
        f"{summary.date} {summary.model_name} v{summary.model_version} ({summary.source}): "
        f"{values}" + (f"; new alerts: {alerts}" if alerts else "")
    )


@drift_app.command("run")
def drift_run(
    date: str | None = typer.Option(None, help="UTC day to evaluate (default: yesterday)."),
    backfill: tuple[str, str] | None = typer.Option(
        None,
        metavar="START END",
        help="Score the production and challenger versions on the feature store's history of "
        "START..END (serving.predictions, source 'backfill'), then evaluate every day.",
    ),
    every: str | None = typer.Option(
        None, help="Run on a schedule ('rate(1 day)', 1d), each time for the day before."
    ),
    times: int | None = typer.Option(None, min=1, help="With --every: stop after N runs."),
    notify_backfill: bool = typer.Option(
        False, "--notify-backfill", help="Also post alerts of backfilled history to the webhook."
    ),
) -> None:
    """Daily drift metrics per served model version into monitoring.drift_metrics; alerts."""
    import datetime as dt
    import logging
    import time

    from trendcast import drift
    from trendcast.db import get_engine
    from trendcast.errors import InputError
    from trendcast.schedule import period_seconds

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if backfill and (date or every):
        raise InputError("--backfill START END: cannot be combined with --date or --every")
    period = period_seconds(every) if every else None
    settings = _settings()
    engine = get_engine(settings)
    client = None
    infos: dict = {}

    def model_info(name: str, version: int):
        nonlocal client
        if (name, version) not in infos:
            client = client or _mlflow_client()
            infos[name, version] = drift.load_model_info(client, name, version)
        return infos[name, version]

    def one_day(day, sources) -> None:
        summaries = drift.run_day(
            engine,
            day,
            model_info,
            psi_window_days=settings.drift_psi_window_days,
            webhook=settings.alert_webhook,
            attempts=settings.alert_webhook_attempts,
            notify_sources=sources,
        )
        for summary in summaries:
            out.print(_drift_line(summary), highlight=False, soft_wrap=True)
        if not summaries:
            out.print(f"{day}: no predictions logged for that day", highlight=False)

    if backfill:
        start, end = _date(backfill[0], "--backfill START"), _date(backfill[1], "--backfill END")
        if end < start:
            raise InputError(f"--backfill {start} {end}: END must not be before START")
        if (end - start).days > 400:
            raise InputError(f"--backfill {start} {end}: at most 400 days at a time")
        client = _mlflow_client()
        served = drift.served_versions(client)
        if not served:
            raise TrendcastError(
                "no registered model has a production or challenger alias to backfill: promote "
                "one, e.g. `trendcast promote NAME --version latest --alias challenger`"
            )
        for name, alias, version in served:
            written = drift.backfill_predictions(
                engine, model_info(name, version), alias, start, end
            )
            out.print(f"{name}@{alias} (v{version}): {written:,} backfill predictions written")
        sources = drift.SOURCES if notify_backfill else ("live",)
        day = start
        while day <= end:
            one_day(day, sources)
            day += dt.timedelta(days=1)
        return
    runs = 0
    while True:
        began = time.monotonic()
        today = dt.datetime.now(dt.UTC).date()
        one_day(_date(date, "--date") if date else today - dt.timedelta(days=1), drift.SOURCES)
        runs += 1
        if period is None or (times is not None and runs >= times):
            break
        time.sleep(max(0.0, period - (time.monotonic() - began)))


@app.command()
def dashboard(
    foreground: bool = typer.Option(
        False, "--foreground", help="Run Streamlit in this terminal instead of detached."
    ),
) -> None:
    """Start the Streamlit dashboard (detached, stopped by `trendcast down`); print its URL."""
    import os

    from trendcast.stack import dashboard_server, launcher

    settings = _settings()
    if foreground:
        command = dashboard_server.command(settings)
        os.execv(command[0], command)
    part = launcher.up_dashboard(settings)
    out.print(f"dashboard: {part.state}, {part.url} ({part.detail})", highlight=False)


# --- end of monitoring ----------------------------------------------------------------------


def main() -> None:
    """Entry point: user errors print one line and exit 1, never a traceback."""
    try:
        app()
    except TrendcastError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # a bug or an unexpected server error: say what, hide the stack
        import os

        if os.environ.get("TRENDCAST_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"[red]error:[/] {type(exc).__name__}: {first} (set TRENDCAST_DEBUG=1 for details)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
