"""The one place a backtest report becomes MLflow metrics and artefacts (the role of Qlib's
``PortAnaRecord``): training logs its model's backtest here, `trendcast backtest
--log-to-mlflow` its strategy runs, so ``backtest_*`` metrics mean the same on both paths."""

from __future__ import annotations

import math

from trendcast.artifacts import BACKTEST_GATES, BACKTEST_REPORT, backtest_figure


def report_metrics(report) -> dict[str, float]:
    """The report's finite numbers as ``backtest_<name>`` metrics (NaN and infinities dropped,
    booleans are not numbers here)."""
    return {
        f"backtest_{k}": float(v)
        for k, v in report.as_dict().items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_backtest(report, gates: dict | None = None) -> None:
    """Log ``report`` into the active MLflow run: metrics, the JSON report, the gate results
    (when given) and the figures."""
    import mlflow

    mlflow.log_metrics(report_metrics(report))
    mlflow.log_dict(report.as_dict(), BACKTEST_REPORT)
    if gates is not None:
        mlflow.log_dict(gates, BACKTEST_GATES)
    for name, figure in report.figures().items():
        mlflow.log_figure(figure, backtest_figure(name))


def record_backtest(report, gates: dict, tracking_uri: str, experiment: str = "backtests") -> str:
    """A new run in ``experiment`` holding one strategy backtest; returns its run id."""
    import mlflow

    from trendcast.tracking import use_mlflow

    use_mlflow(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"{report.symbol}_{report.strategy}") as run:
        mlflow.log_params(
            {
                "strategy": report.strategy,
                "symbol": report.symbol,
                "interval": report.interval,
                **report.params,
            }
        )
        log_backtest(report, gates)
    return run.info.run_id
