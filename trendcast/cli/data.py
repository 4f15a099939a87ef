"""Commands of market data: history and sample loads, listing, synthetic bars, live ingestion
and the exchange replay (gaps and the instrument registry: ``quality``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trendcast.cli._common import app, err, out, settings, utc
from trendcast.errors import InputError, TrendcastError
from trendcast.schedule import DEFAULT_INGEST_RATE


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    span = f"{summary.first_open_time} .. {summary.last_open_time}" if summary.read else "-"
    out.print(
        f"{summary.symbol} {summary.interval} ({summary.source}): read {summary.read:,}, "
        f"inserted {summary.inserted:,}, duplicates {summary.duplicates:,}, "
        f"quarantined {summary.quarantined:,}, conflicts {summary.conflicts:,}, "
        f"revised {summary.revised:,}; bars {span}; run {summary.run_id}"
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
    revise: bool = typer.Option(
        False,
        "--revise",
        help="Apply bars that differ from stored ones as revisions (old values kept in "
        "market.bar_revisions) instead of quarantining them as conflicts.",
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
    engine = get_engine(settings())
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
            revise=revise,
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
    from trendcast import sample_data
    from trendcast.db import get_engine

    chosen = sample_data.choose(symbols)
    engine = get_engine(settings())
    cutoff = utc(until, "--until") if until else None
    for summary in sample_data.load_samples(engine, chosen, cutoff):
        _print_summary(summary, as_json=False)


@app.command()
def bars() -> None:
    """List stored bar series: bars, first and last open time, sources, quarantined rows."""
    from trendcast.catalog import BAR_SERIES_COLUMNS, bar_series
    from trendcast.db import get_engine

    rows = bar_series(get_engine(settings()))
    table = Table(show_header=True, header_style="bold")
    for column in BAR_SERIES_COLUMNS:
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


def _ingest_lines(summary: dict) -> str:
    lines = []
    for r in summary["series"]:
        last = (r["last_open_time"] or "-")[:16].replace("T", " ")
        lines.append(
            f"{r['symbol']} {r['interval']}: {r['status']}; fetched {r['fetched']:,}, "
            f"inserted {r['inserted']:,}, duplicates {r['duplicates']:,}, "
            f"quarantined {r['quarantined']:,}, conflicts {r['conflicts']:,}, "
            f"revised {r['revised']:,}, gaps {r['gaps_found']:,} found / "
            f"{r['gaps_filled']:,} filled / {r['holes_open']:,} open; last bar {last}"
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
    revise: bool = typer.Option(
        False, "--revise", help="Apply bars that differ from stored ones as revisions."
    ),
) -> None:
    """Run the ingestion Lambda's handler here, once or on a schedule."""
    from ingestion_lambda.handler import handler
    from trendcast.schedule import period_seconds, run_every

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
        event["start"] = utc(start, "--start").isoformat()
    if end:
        event["end"] = utc(end, "--end").isoformat()
    if revise:
        event["revise"] = True

    def once() -> dict:
        summary = handler(event, None)
        if as_json:
            out.print_json(json.dumps(summary, default=str))
        elif summary["status"] == "rejected":
            raise TrendcastError(summary["error"])
        else:
            out.print(_ingest_lines(summary), highlight=False, soft_wrap=True)
            if summary.get("error"):
                err.print(f"[yellow]warning:[/] {summary['error']}", highlight=False)
        return summary

    summary = run_every(once, period, times)
    if summary["status"] in {"failed", "rejected"}:
        raise typer.Exit(1)


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
    fee: float | None = typer.Option(None, help="Order fee, fraction of notional (0.001)."),
    slippage: float | None = typer.Option(None, help="Fill price offset, fraction of the open."),
    fill_grace_s: float | None = typer.Option(
        None, help="Orders arriving this many data-seconds after a bar opened fill at its open."
    ),
) -> None:
    """Serve real historical bars in Binance klines format with a moving clock, and take
    signed market orders that fill at the next bar's open (Ctrl-C stops)."""
    from trendcast.bar_files import read_bar_file
    from trendcast.replay import replay_from, serve

    config = settings()
    frame = None if data is None else read_bar_file(data, time_format=time_format).frame
    replay, names, interval = replay_from(
        frame,
        symbols,
        interval,
        utc(start or config.replay_start, "--start"),
        speed or config.replay_speed,
        config.replay_fee if fee is None else fee,
        config.replay_slippage if slippage is None else slippage,
        config.replay_fill_grace_s if fill_grace_s is None else fill_grace_s,
    )
    server = serve(replay, host or config.host, port or config.replay_port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}"
    err.print(
        f"exchange replay on {address}: {', '.join(names)} {interval}, clock "
        f"{replay.clock.now():%Y-%m-%d %H:%M} x{replay.clock.speed:g}; orders: fee "
        f"{replay.venue.fee:g}, slippage {replay.venue.slippage:g}, fill grace "
        f"{replay.venue.grace_ms / 1000:g} s",
        highlight=False,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
