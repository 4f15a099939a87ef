"""Commands of data quality: calendar-aware gaps, the holes ingestion repairs, and the
instrument registry that says which bars should exist."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from trendcast.cli._common import app, err, out, settings, utc
from trendcast.errors import InputError, TrendcastError

instruments_app = typer.Typer(
    help="The instrument registry: asset class, trading calendar, cost profile.",
    no_args_is_help=True,
)


@app.command()
def gaps(
    symbol: str | None = typer.Option(None, "--symbol", "-s", help="Default: every series."),
    interval: str | None = typer.Option(None, "--interval", "-i"),
    since: str | None = typer.Option(None, help="Only gaps after this time (ISO 8601)."),
    status: bool = typer.Option(
        False, "--status", help="The recorded holes with their repair status and attempts."
    ),
    only: str | None = typer.Option(
        None, "--only", help="With --status: open, filled, closed-market or unfillable."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Runs of missing bars (only those the instrument's calendar expects) in stored series."""
    from trendcast import holes
    from trendcast.db import get_engine
    from trendcast.gaps import find_stored_gaps

    engine = get_engine(settings())
    if status:
        if only is not None and only not in holes.STATUSES:
            raise TrendcastError(f"--only {only!r}: must be one of {', '.join(holes.STATUSES)}")
        with engine.connect() as conn:
            spans = holes.listing(conn, symbol, interval, only)
        if as_json:
            out.print_json(json.dumps([h.as_dict() for h in spans]))
            return
        columns = ("symbol", "interval", "status", "first", "last", "bars", "attempts")
        table = Table(show_header=True, header_style="bold", title=f"{len(spans)} hole span(s)")
        for column in (*columns, "last attempt", "last error"):
            table.add_column(column)
        for h in spans:
            values = [str(getattr(h, c)) for c in columns]
            table.add_row(*values, str(h.last_attempt or "-"), (h.last_error or "-")[:60])
        out.print(table)
        return
    found = find_stored_gaps(
        engine, symbol, interval, since=utc(since, "--since") if since else None
    )
    if as_json:
        rows = [
            {
                "symbol": g.symbol,
                "interval": g.interval,
                "first_missing": g.first_missing.isoformat(),
                "last_missing": g.last_missing.isoformat(),
                "missing": g.missing,
            }
            for g in found
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(show_header=True, header_style="bold", title=f"{len(found)} gap(s)")
    for column in ("symbol", "interval", "first missing", "last missing", "missing bars"):
        table.add_column(column)
    for g in found:
        first, last = str(g.first_missing), str(g.last_missing)
        table.add_row(g.symbol, g.interval, first, last, f"{g.missing:,}")
    out.print(table)


@instruments_app.command("list")
def instruments_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered instruments: asset class, trading calendar, cost profile."""
    from trendcast.db import get_engine
    from trendcast.instruments import list_instruments

    rows = list_instruments(get_engine(settings()))
    if as_json:
        out.print_json(json.dumps([i.as_dict() for i in rows]))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("symbol", "asset class", "calendar", "cost profile", "params", "description"):
        table.add_column(column)
    for i in rows:
        params = json.dumps(i.params)
        table.add_row(i.symbol, i.asset_class, i.calendar, i.cost_profile, params, i.description)
    out.print(table)


@instruments_app.command("show")
def instruments_show(symbol: str = typer.Argument(...)) -> None:
    """One instrument (an unregistered symbol shows the 24/7 fallback and how to register)."""
    from trendcast.db import get_engine
    from trendcast.instruments import get_instrument

    instrument = get_instrument(get_engine(settings()), symbol, warn=False)
    out.print_json(json.dumps(instrument.as_dict()))
    if not instrument.registered:
        err.print(
            f"{symbol} is not registered: treated as 24/7 with crypto costs; register it with "
            f"`trendcast instruments set {symbol} --asset-class fx|equity|crypto`",
            highlight=False,
        )


@instruments_app.command("set")
def instruments_set(
    symbol: str = typer.Argument(...),
    asset_class: str = typer.Option(..., "--asset-class", help="crypto, fx, equity or other."),
    calendar: str | None = typer.Option(
        None, help="24/7, FX or an exchange-calendars code (XNYS, XNAS, XLON ...)."
    ),
    cost_profile: str | None = typer.Option(None, "--cost-profile"),
    params: str | None = typer.Option(None, help="Cost-profile parameters as a JSON object."),
    description: str | None = typer.Option(None),
) -> None:
    """Register or change an instrument (validated before anything is written)."""
    from trendcast.db import get_engine
    from trendcast.instruments import set_instrument

    parsed = None
    if params is not None:
        try:
            parsed = json.loads(params)
        except json.JSONDecodeError as exc:
            raise InputError(f"--params: not JSON ({exc.msg})") from None
    instrument = set_instrument(
        get_engine(settings()),
        symbol,
        asset_class,
        calendar=calendar,
        cost_profile=cost_profile,
        params=parsed,
        description=description,
    )
    out.print_json(json.dumps(instrument.as_dict()))
