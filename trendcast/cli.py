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
from trendcast.errors import TrendcastError

app = typer.Typer(
    help="Trendcast: market-prediction models from exchange bars to a served, monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    return get_settings()


def _status_table(parts) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("part", "state", "url", "version", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"up": "green", "external": "cyan", "down": "red"}
    for part in parts:
        state = f"[{colours.get(part.state, 'white')}]{part.state}[/]"
        table.add_row(part.name, state, part.url, part.version, part.detail)
    return table


@app.command()
def up() -> None:
    """Start PostgreSQL (embedded unless TRENDCAST_DATABASE_URL is set), migrate, start MLflow."""
    from trendcast.stack import launcher

    settings = _settings()
    with err.status("starting the local stack…"):
        parts = launcher.up(settings, on_part=lambda p: err.print(f"{p.name}: {p.state}, {p.url}"))
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
) -> None:
    """Bulk-load bars with COPY in one transaction; bad rows go to market.quarantine."""
    from trendcast import history
    from trendcast.db import get_engine
    from trendcast.schema import series_key, validate_source

    series_key(symbol, interval)
    validate_source(source)
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
        )
        progress.update(task, total=summary.read)
    _print_summary(summary, as_json)


@app.command("load-sample")
def load_sample(
    symbols: list[str] = typer.Option(None, "--symbol", "-s", help="Only these sample symbols."),
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
    for sample in chosen:
        frame, origin = sample.reader()
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
