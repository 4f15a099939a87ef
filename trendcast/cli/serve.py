"""Commands of the prediction service: predict (its HTTP client) and serve (foreground)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from trendcast.cli._common import app, mlflow_client, out, settings
from trendcast.errors import InputError


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
    from trendcast.prediction_client import PredictionClient

    client = PredictionClient(settings())
    name = client.name
    if wait_for_alias:
        target, waited = client.wait_for_alias(wait_for_alias, timeout, mlflow_client())
        out.print(
            f"{name}@{wait_for_alias} = version {target}: served after {waited:.1f} s",
            highlight=False,
        )
    if symbols:
        answer = client.predict_latest(
            [s.strip() for s in symbols.split(",") if s.strip()], interval
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
        batch = client.input_example(mlflow_client())
    if batch is not None:
        answer = client.predict(batch)
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

    config = settings()
    if port is not None:
        config = config.model_copy(update={"bentoml_port": port})
    command = serving_server.command(config)
    out.print(f"serving {serving_server.url(config)} (docs at /docs)", highlight=False)
    os.execve(command[0], command, config.child_env())
