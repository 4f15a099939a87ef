"""Monitoring commands: `trendcast drift run` and `trendcast dashboard`."""

from __future__ import annotations

import typer

from trendcast.cli._common import app, date, err, mlflow_client, out, settings
from trendcast.errors import InputError

drift_app = typer.Typer(help="Drift monitor: IC, PSI and Sharpe of served models; alerts.")


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
    day: str | None = typer.Option(
        None, "--date", help="UTC day to evaluate (default: yesterday)."
    ),
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
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="--backfill: score each version x day as a task on the local Dask cluster "
        "(TRENDCAST_DASK_SCHEDULER: any other).",
    ),
) -> None:
    """Daily drift metrics per served model version into monitoring.drift_metrics; alerts."""
    import datetime as dt
    import logging

    from trendcast import drift
    from trendcast.drift_job import DriftJob
    from trendcast.schedule import period_seconds, run_every

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if backfill and (day or every):
        raise InputError("--backfill START END: cannot be combined with --date or --every")
    period = period_seconds(every) if every else None
    job = DriftJob(settings(), mlflow_client)

    def one_day(when, sources) -> None:
        summaries = job.day(when, sources)
        for summary in summaries:
            out.print(_drift_line(summary), highlight=False, soft_wrap=True)
        if not summaries:
            out.print(f"{when}: no predictions logged for that day", highlight=False)

    if backfill:
        from trendcast.cluster import placement

        start, end = date(backfill[0], "--backfill START"), date(backfill[1], "--backfill END")
        with placement(job.settings, cluster) as where:
            for name, alias, version, written in job.backfill(start, end, _skipped, where):
                out.print(f"{name}@{alias} (v{version}): {written:,} backfill predictions written")
        out.print(f"backfill scoring {where.describe()}", highlight=False)
        sources = drift.SOURCES if notify_backfill else ("live",)
        current = start
        while current <= end:
            one_day(current, sources)
            current += dt.timedelta(days=1)
        return

    def scheduled() -> None:
        today = dt.datetime.now(dt.UTC).date()
        one_day(date(day, "--date") if day else today - dt.timedelta(days=1), drift.SOURCES)

    run_every(scheduled, period, times)


@app.command()
def dashboard(
    foreground: bool = typer.Option(
        False, "--foreground", help="Run Streamlit in this terminal instead of detached."
    ),
) -> None:
    """Start the Streamlit dashboard (detached, stopped by `trendcast down`); print its URL."""
    import os

    from trendcast.stack import dashboard_server, launcher

    config = settings()
    if foreground:
        command = dashboard_server.command(config)
        os.execve(command[0], command, config.child_env())
    part = launcher.up_dashboard(config)
    out.print(f"dashboard: {part.state}, {part.url} ({part.detail})", highlight=False)


def _skipped(verdict) -> None:
    err.print(f"[red]skipped:[/] {verdict.reason}", highlight=False)
