"""Commands of the local stack: up, status, down."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from trendcast.cli._common import app, err, out, settings


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
        help="Also start an optional part: replay (exchange replay), serving (BentoML), "
        "dashboard, cluster (a local Dask scheduler and workers).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="With --with cluster: worker processes (default TRENDCAST_DASK_WORKERS, 2).",
    ),
) -> None:
    """Start PostgreSQL (embedded unless TRENDCAST_DATABASE_URL is set), migrate, start MLflow."""
    from trendcast.stack import launcher

    with err.status("starting the local stack…"):
        parts = launcher.up(
            settings(),
            on_part=lambda p: err.print(f"{p.name}: {p.state}, {p.url}"),
            with_parts=with_parts or [],
            workers=workers,
        )
    out.print(_status_table(parts))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Show each part's state, URL and version; exit 1 when a part is down."""
    from dataclasses import asdict

    from trendcast.stack import launcher

    parts = launcher.status(settings())
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

    stopped = launcher.down(settings())
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")
