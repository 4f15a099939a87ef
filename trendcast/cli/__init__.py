"""The ``trendcast`` command line, one module per noun. Each command parses its options, calls
one domain function and prints; the logic lives in the core and the units.

Commands are listed by ``--help`` in the order their modules are imported here."""

from __future__ import annotations

import importlib

import typer

from trendcast.cli._common import app, out, run

#: Command modules, in the order `trendcast --help` lists their commands (a module registers
#: its commands on import, so this order is the help's order; the groups follow).
NOUNS = (
    "stack",
    "data",
    "quality",
    "backtest",
    "train",
    "registry",
    "serve",
    "drift",
    "db",
    "features",
    "deploy",
    "portfolio",
)
_modules = {noun: importlib.import_module(f"trendcast.cli.{noun}") for noun in NOUNS}

app.add_typer(_modules["db"].db_app, name="db")
app.add_typer(_modules["features"].features_app, name="features")
app.add_typer(_modules["quality"].instruments_app, name="instruments")
app.add_typer(_modules["drift"].drift_app, name="drift")
app.add_typer(_modules["deploy"].deploy_app, name="deploy")
app.add_typer(_modules["portfolio"].portfolio_app, name="portfolio")


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


def main() -> None:
    """Entry point: user errors print one line and exit 1, never a traceback."""
    run(app)


__all__ = ["app", "main"]
