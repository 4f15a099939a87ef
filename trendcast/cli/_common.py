"""What every command module shares: the root app, the two consoles, settings access, and the
small parsers of option values (times, dates, NAME=VALUE pairs, gate files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from trendcast.config import Settings, get_settings
from trendcast.errors import InputError, TrendcastError

app = typer.Typer(
    help="Trendcast: market-prediction models from exchange bars to a served, monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Piped output (CI logs, `make demo`) gets room for the wide tables instead of 80 columns.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)


def settings() -> Settings:
    return get_settings()


def mlflow_client():
    """The one MLflow client factory (tracking and registry on the settings' server)."""
    from trendcast.tracking import mlflow_client as make

    return make(settings().tracking_uri)


def utc(text: str, option: str):
    """An ISO 8601 time as a UTC timestamp (naive times are UTC); the option names the error."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise TrendcastError(f"{option} {text!r}: not an ISO 8601 time") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def date(text: str, option: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r}: must be a date written YYYY-MM-DD") from None


def parse_params(pairs: list[str]) -> dict:
    """``NAME=VALUE`` pairs; values are JSON when they parse (numbers, lists), else text."""
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


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def gates(path: Path | None):
    """The gate profile; a profile that differs from the defaults is announced on stderr."""
    from trendcast.gates import Gates

    profile = Gates.from_file(path) if path else Gates()
    looser = profile.differences()
    if looser:
        err.print(f"[yellow]gate profile {path} differs from the defaults:[/] {looser}")
    return profile


def _debug() -> bool:
    try:
        return settings().debug
    except Exception:  # broken settings are the error being reported, not a reason to crash
        return False


def run(app: typer.Typer) -> None:
    """Run ``app``: user errors print one line and exit 1, never a traceback."""
    try:
        app()
    except TrendcastError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # a bug or an unexpected server error: say what, hide the stack
        if _debug():
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
