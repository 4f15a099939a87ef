"""Commands of the model registry: models, best, promote, rollback, alias-history."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from trendcast.cli._common import app, err, fmt, gates, mlflow_client, out, settings
from trendcast.errors import InputError

#: The columns `trendcast models` shows, as (header, logged metric).
MODEL_COLUMNS = (
    ("test IC", "test_ic"),
    ("sharpe", "backtest_sharpe"),
    ("max DD", "backtest_max_drawdown"),
    ("return", "backtest_cumulative_return"),
    ("buy&hold", "backtest_benchmark_cumulative_return"),
    ("DSR", "backtest_dsr"),
)


@app.command()
def models(
    name: str | None = typer.Argument(None, help="One registered model (default: all)."),
    as_json: bool = typer.Option(
        False, "--json", help="Every version with its metrics, trials, sealing and costs."
    ),
) -> None:
    """Registered models: versions, aliases and key metrics; an alias whose move is not on
    record is marked "moved outside Trendcast" (the service refuses to serve it)."""
    import json

    from trendcast import governance, registry
    from trendcast.db import get_engine

    client = mlflow_client()
    engine = get_engine(settings())
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    if as_json:
        described = [v.as_dict() for n in names for v in registry.versions(client, n)]
        out.print_json(json.dumps(described, default=str))
        return
    if not names:
        out.print("no registered models yet: run `trendcast train` (or `make demo`)")
        return
    table = Table(show_header=True)
    headers = ("model", "version", "aliases", *(h for h, _ in MODEL_COLUMNS), "sha256")
    for column in headers:
        table.add_column(column, justify="right" if column not in ("model", "aliases") else "left")
    outside = []
    for model_name in names:
        verdicts = governance.alias_verdicts(client, engine, model_name)
        outside += [v for v in verdicts.values() if not v.audited]
        for v in registry.versions(client, model_name):
            shown = [
                a if a not in verdicts or verdicts[a].audited else f"{a} ({governance.OUTSIDE})"
                for a in v.aliases
            ]
            table.add_row(
                model_name,
                str(v.version),
                ", ".join(shown) or "-",
                *(fmt(v.metrics.get(key)) for _, key in MODEL_COLUMNS),
                (v.sha256 or "-")[:12],
            )
    out.print(table)
    for verdict in outside:
        err.print(f"[red]not served:[/] {verdict.reason}", highlight=False)


@app.command()
def best(
    name: str = typer.Argument(..., help="Registered model name."),
    metric: str = typer.Option("sharpe", "--metric", "-m", help="e.g. sharpe, ic, mse."),
    gates_file: Path | None = typer.Option(
        None, "--gates", help="Only versions passing this gate file."
    ),
    passing: bool = typer.Option(False, "--passing", help="Only versions passing the gates."),
) -> None:
    """Rank the registered versions on a metric; print the best one's number last."""
    from trendcast import registry

    profile = gates(gates_file) if (gates_file or passing) else None
    ranked = registry.rank(mlflow_client(), name, metric, profile)
    key = registry.resolve_metric(metric)
    table = Table(title=f"{name} ranked on {key}")
    for column in ("place", "version", key, "aliases", "passes gates"):
        table.add_column(column)
    for place, (v, ok) in enumerate(ranked, 1):
        table.add_row(
            str(place),
            str(v.version),
            fmt(v.metrics.get(key)),
            ", ".join(v.aliases) or "-",
            "-" if profile is None else ("yes" if ok else "no"),
        )
    out.print(table)
    chosen = registry.eligible(ranked, metric)
    if not chosen:
        raise InputError(
            f"{name}: no version has {key}" + (" and passes the gates" if profile else "")
        )
    out.print(f"best {name} on {key}: version {chosen[0].version}", highlight=False)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Option(
        ..., "--version", "-v", help="N, 'latest', 'best' or 'best:K' (K-th best passing)."
    ),
    alias: str = typer.Option("production", "--alias", "-a"),
    gates_file: Path | None = typer.Option(
        None, "--gates", help="JSON gate file (defaults from the spec)."
    ),
    metric: str = typer.Option("sharpe", "--metric", "-m", help="What 'best' ranks on."),
    force: bool = typer.Option(
        False, "--force", help="Move the alias even if a gate fails (needs --reason)."
    ),
    reason: str | None = typer.Option(
        None, "--reason", help="Why (required with --force); stored in the audit."
    ),
) -> None:
    """Move ALIAS to VERSION if its logged metrics pass the gates; every move is audited."""
    from trendcast import registry
    from trendcast.db import get_engine

    registry.checked_reason(reason, force)  # before any look-up: a forced move needs its why
    profile = gates(gates_file)
    client = mlflow_client()
    # A forced move picks "best" among every version: the gates are what it overrides.
    number = registry.resolve_version(client, name, version, metric, None if force else profile)
    move = registry.promote(
        client, get_engine(settings()), name, number, alias, profile, force, reason
    )
    forced = " (FORCED past failing gates)" if move.forced else ""
    out.print(
        f"{name}@{alias}: {move.from_version or '-'} -> {move.to_version}{forced}", highlight=False
    )


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Option("production", "--alias", "-a"),
    reason: str | None = typer.Option(None, "--reason", help="Why; stored in the audit."),
) -> None:
    """Move ALIAS back to the version it held before the current one."""
    from trendcast import registry
    from trendcast.db import get_engine

    move = registry.rollback(mlflow_client(), get_engine(settings()), name, alias, reason)
    out.print(
        f"{name}@{alias}: {move.from_version} -> {move.to_version} (rolled back)", highlight=False
    )


@app.command("alias-history")
def alias_history(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str | None = typer.Option(None, "--alias", "-a"),
) -> None:
    """Every recorded alias move of a model: who, when, from, to, forced, reason, gates."""
    from trendcast.db import get_engine
    from trendcast.registry import history

    table = Table(title=f"alias moves of {name}", show_header=True)
    columns = ("when", "alias", "action", "from", "to", "by", "forced", "reason", "failed gates")
    for column in columns:
        table.add_column(column)
    for row in history(get_engine(settings()), name, alias):
        failed = [g for g, r in (row["gate_results"] or {}).items() if not r["passed"]]
        table.add_row(
            str(row["moved_at"])[:19],
            row["alias"],
            row["action"],
            str(row["from_version"] or "-"),
            str(row["to_version"]),
            row["moved_by"],
            "yes" if row["forced"] else "no",
            row.get("reason") or "-",
            ", ".join(failed) or "-",
            row.get("reason") or "-",
        )
    out.print(table)
