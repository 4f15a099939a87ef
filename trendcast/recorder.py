"""The one place a backtest report becomes MLflow metrics and artefacts (the role of Qlib's
``PortAnaRecord``): training logs its model's backtest here, `trendcast backtest
--log-to-mlflow` its strategy runs, so ``backtest_*`` metrics mean the same on both paths;
`trendcast portfolio backtest` its walk-forward portfolio runs."""

from __future__ import annotations

import contextlib
import math
import sys

from trendcast.artifacts import BACKTEST_GATES, BACKTEST_REPORT, backtest_figure


def report_metrics(report, prefix: str = "backtest") -> dict[str, float]:
    """The report's finite numbers as ``PREFIX_<name>`` metrics (NaN and infinities dropped,
    booleans are not numbers here)."""
    return {
        f"{prefix}_{k}": float(v)
        for k, v in report.as_dict().items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def cost_params(report) -> dict:
    """The costs and annualisation a report used, as run params (shown beside its metrics)."""
    return {
        **{k: v for k, v in report.costs.items() if k != "cost_params"},
        "periods_per_year": report.periods_per_year,
    }


def log_backtest(
    report, gates: dict | None = None, prefix: str = "backtest", artifacts: bool = True
) -> None:
    """Log ``report`` into the active MLflow run: metrics (``PREFIX_*``), its costs and
    annualisation as params, the JSON report, the gate results (when given) and the figures.
    ``artifacts=False`` logs the metrics only (e.g. the validation backtest beside the test
    one)."""
    import mlflow

    mlflow.log_metrics(report_metrics(report, prefix))
    if not artifacts:
        return
    mlflow.log_params(cost_params(report))
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
        log_backtest(report, gates)  # its costs and annualisation too
    return run.info.run_id


def record_portfolio(report, tracking_uri: str, experiment: str = "portfolios") -> str:
    """A new run in ``experiment`` holding one walk-forward portfolio backtest: its params,
    the portfolio's, equal weight's and the best member's figures (``PREFIX_<name>``), the
    config, the report, the weights at each rebalance and the fit windows; returns its id."""
    import mlflow

    from trendcast.tracking import use_mlflow

    use_mlflow(tracking_uri)
    mlflow.set_experiment(experiment)
    config = report.config
    rule = config.rebalance
    # MLflow prints its run links on stdout: keep stdout for our report (--json stays JSON)
    with (
        contextlib.redirect_stdout(sys.stderr),
        mlflow.start_run(run_name=f"{config.name}_{config.method}") as run,
    ):
        mlflow.log_params(
            {
                "portfolio": config.name,
                "method": config.method,
                "members": len(report.members.columns),
                "rebalance": rule.rule + (f":{rule.every}" if rule.rule == "calendar" else ""),
                "lookback_days": config.lookback_days,
                "costs_bps": config.costs.bps,
                "config_fingerprint": config.fingerprint(),
            }
        )
        for row, prefix in (
            ("portfolio", "portfolio"),
            ("equal_weight", "equal_weight"),
            (f"best member ({report.best_member})", "best_member"),
        ):
            figures = report.summary.loc[row].dropna().to_dict()
            mlflow.log_metrics(
                {f"{prefix}_{name}": float(value) for name, value in figures.items()}
            )
        mlflow.log_metric("turnover_per_year", report.turnover_per_year)
        mlflow.log_dict(config.model_dump(mode="json"), "portfolio_config.json")
        mlflow.log_dict(report.as_dict(), "portfolio_report.json")
        mlflow.log_text(report.run.weights.to_csv(), "weights.csv")
        mlflow.log_text(report.run.fits.to_csv(), "fits.csv")
    return run.info.run_id
