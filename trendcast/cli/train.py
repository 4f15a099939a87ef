"""`trendcast train`: one training run, or a grid search with --grid."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from trendcast.cli._common import app, err, out, parse_params, settings
from trendcast.config import Settings
from trendcast.errors import InputError


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
    walk_forward: bool = typer.Option(
        False, "--walk-forward", help="Re-fit fold by fold; gates read the stitched OOS figures."
    ),
    folds: int = typer.Option(4, "--folds", help="Walk-forward: out-of-sample blocks."),
    window: str = typer.Option("expanding", "--window", help="Walk-forward: expanding|rolling."),
    embargo: int | None = typer.Option(
        None, "--embargo", help="Walk-forward: rows skipped before each block (default: horizon)."
    ),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="Grid: run the candidates on the local Dask cluster (`up --with cluster`); "
        "TRENDCAST_DASK_SCHEDULER names any other.",
    ),
    register_top: int | None = typer.Option(
        None, "--register-top", min=0, help="Grid: override the grid file's register_top."
    ),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="Export the training set as Parquet by symbol and fit with xgboost.dask on the "
        "cluster (--cluster or TRENDCAST_DASK_SCHEDULER).",
    ),
    compare_in_process: bool = typer.Option(
        False,
        "--compare-in-process",
        help="Grid: check the ranking equals the latest finished in-process run of the same "
        "grid; exit 1 when it differs.",
    ),
) -> None:
    """Train XGBoost on the point-in-time dataset, log to MLflow, register, backtest.

    With --grid: every candidate on every period as nested runs, ranked, best registered.
    With --walk-forward: K folds, purged and embargoed, stitched out-of-sample backtest."""
    from training.train import train_series
    from trendcast.db import get_engine

    config = settings()
    engine = get_engine(config)
    if grid is not None and walk_forward:
        raise InputError("--walk-forward: not with --grid (a grid selects; walk-forward evaluates)")
    if walk_forward:
        if not symbol:
            raise InputError("--symbol: required with --walk-forward")
        _walk_forward(
            engine, config, symbol, interval, horizon, start, end, model_name,
            parse_params(param), folds, window, embargo,
        )  # fmt: skip
        return
    if grid is not None:
        _train_grid(engine, grid, config, cluster, register_top, compare_in_process)
        return
    if not symbol:
        raise InputError("--symbol: required (or give --grid FILE)")
    from contextlib import nullcontext

    from trendcast.cluster import Placement, placement, scheduler_address

    if distributed and scheduler_address(config, cluster) is None:
        raise InputError(
            "--distributed: needs a Dask cluster: add --cluster (`trendcast up --with cluster`) "
            "or set TRENDCAST_DASK_SCHEDULER"
        )
    with placement(config, cluster) if distributed else nullcontext(Placement()) as where:
        result = train_series(
            engine,
            config,
            symbol,
            interval,
            horizon=horizon,
            start=start,
            end=end,
            model_name=model_name,
            params=parse_params(param),
            where=where if distributed else None,
        )
    scores = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    out.print(
        f"{result.model_name} version {result.version} (run {result.run_id}, sha256 "
        f"{result.checksum[:12]}…): {scores}\n{config.tracking_uri}/#/models/"
        f"{result.model_name}/versions/{result.version}",
        highlight=False,
    )
    fitted = " (regressor and classifier fitted with xgboost.dask)" if distributed else ""
    out.print(f"training {where.describe()}{fitted}", highlight=False)


def _walk_forward(
    engine, config, symbol, interval, horizon, start, end, model_name, params, folds, window,
    embargo,
) -> None:  # fmt: skip
    from training.evaluate import walk_forward_series

    result = walk_forward_series(
        engine, config, symbol, interval, horizon=horizon, start=start, end=end,
        model_name=model_name, params=params, folds=folds, window=window, embargo=embargo,
    )  # fmt: skip
    table = Table(title=f"{result.model_name}: walk-forward, {folds} folds ({window})")
    columns = ["fold", "test_start", "test_end", "test_ic", "backtest_sharpe", "threshold"]
    for column in columns:
        table.add_column(column, justify="right")
    for _, row in result.folds.iterrows():
        table.add_row(
            *(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])[:16] for c in columns)
        )
    out.print(table)
    stitched = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    out.print(
        f"{result.model_name} version {result.version} (run {result.run_id}): stitched "
        f"out-of-sample {stitched}",
        highlight=False,
    )


def _train_grid(
    engine,
    path: Path,
    config: Settings,
    use_cluster: bool = False,
    register_top: int | None = None,
    compare_in_process: bool = False,
) -> None:
    from training.grid import load_grid
    from trendcast.cluster import placement

    spec = load_grid(path)
    if register_top is not None:
        spec = spec.model_copy(update={"register_top": register_top})
    with placement(config, use_cluster) as where:
        result = _grid_with_progress(engine, path, config, spec, where)
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
    out.print(f"{config.tracking_uri}/#/experiments/runs/{result.parent_run_id}", highlight=False)
    out.print(f"grid {where.describe()}", highlight=False)
    if compare_in_process:
        from training.tune import compare_with_in_process

        verdict, same = compare_with_in_process(config.tracking_uri, spec, result.parent_run_id)
        out.print(verdict, highlight=False)
        if not same:
            raise typer.Exit(1)


def _grid_with_progress(engine, path: Path, config: Settings, spec, where):
    from training.tune import run_grid
    from trendcast.db import database_url

    tasks = len(spec.candidates()) * len(spec.periods)
    on = f"dask {where.address} ({where.workers} workers)" if where.distributed else (
        f"{spec.n_jobs} local worker(s)"
    )  # fmt: skip
    out.print(
        f"grid {path}: {len(spec.candidates())} candidates x {len(spec.periods)} periods = "
        f"{tasks} runs on {on}, ranked on {spec.metric} ({spec.aggregate}), "
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
                tracking_uri=config.tracking_uri,
                database_url=database_url("trendcast", config).render_as_string(
                    hide_password=False
                ),
                datasets_dir=config.home / "datasets",
                on_progress=advance,
                where=where,
            )
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                "interrupted: finished runs stay logged; runs cut short and the grid's parent "
                "run are marked KILLED (tag grid_status=interrupted)"
            )
            raise typer.Exit(130) from None
    return result
