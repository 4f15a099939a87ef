"""Drift monitor: metrics against hand computation on a small series, the alert rules at their
exact thresholds and run lengths, webhook delivery against a local HTTP receiver, idempotent
reruns, and the dashboard's read-only role."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast import drift
from trendcast.history import load_frame

SYMBOL, INTERVAL, MODEL = "TST", "1h", "TST_1h_h1"
START = pd.Timestamp("2024-01-01", tz="UTC")
N_BARS, N_PREDICTED = 100, 95  # predictions for the bars closing 2024-01-01 01:00 .. 01-04 23:00


def _bars() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.002, N_BARS)
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([100.0], close[:-1]))
    return pd.DataFrame(
        {
            "open_time": START + pd.to_timedelta(np.arange(N_BARS), unit="h"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1.0,
        }
    )


def _info(**overrides) -> drift.ModelInfo:
    values = {
        "name": MODEL,
        "version": 1,
        "symbol": SYMBOL,
        "interval": INTERVAL,
        "horizon": 1,
        "features": ["f"],
        "reference": pd.DataFrame({"f": np.arange(1.0, 11.0)}),
        "reference_predictions": np.linspace(-0.001, 0.001, 10),
        "threshold": 0.0,
    }
    return drift.ModelInfo(**{**values, **overrides})


@pytest.fixture
def scored(engine):
    """100 hourly bars and 95 logged predictions: realised return + noise, feature f
    alternating 1 and 10 (the two extreme bins of the reference 1..10)."""
    bars = _bars()
    load_frame(engine, bars, symbol=SYMBOL, interval=INTERVAL, source="test", origin="test")
    close = bars["close"].to_numpy()
    realised = np.full(N_BARS, np.nan)
    realised[:-1] = np.log(close[1:] / close[:-1])
    noise = np.random.default_rng(4).normal(0, 0.002, N_BARS)
    prediction = realised + noise
    event = bars["open_time"] + pd.Timedelta(hours=1)
    rows = [
        {
            "rid": f"r{i}",
            "t": event[i].to_pydatetime(),
            "p": float(prediction[i]),
            "inputs": json.dumps({"f": 1.0 if i % 2 else 10.0}),
        }
        for i in range(N_PREDICTED)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO serving.predictions (request_id, predicted_at, symbol, interval, "
                "event_time, model_name, model_version, alias, source, inputs, prediction) "
                f"VALUES (:rid, :t, '{SYMBOL}', '{INTERVAL}', :t, '{MODEL}', 1, 'production', "
                "'live', CAST(:inputs AS jsonb), :p)"
            ),
            rows,
        )
    return pd.DataFrame(
        {"event_time": event, "close": close, "realised": realised, "prediction": prediction}
    ).assign(predicted=lambda f: np.arange(N_BARS) < N_PREDICTED)


def _by_metric(rows: list[dict]) -> dict:
    return {(r["metric"], r["feature"]): r for r in rows}


def test_ic_and_mse_of_a_day_match_hand_computation(engine, scored):
    rows = _by_metric(drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 3)))
    day = scored[(scored["event_time"] >= "2024-01-03") & (scored["event_time"] < "2024-01-04")]
    assert len(day) == 24
    p, a = day["prediction"].to_numpy(), day["realised"].to_numpy()
    assert rows[("ic", "")]["value"] == pytest.approx(np.corrcoef(p, a)[0, 1], abs=1e-12)
    ranks = np.corrcoef(pd.Series(p).rank(), pd.Series(a).rank())[0, 1]
    assert rows[("rank_ic", "")]["value"] == pytest.approx(ranks, abs=1e-12)
    assert rows[("mse", "")]["value"] == pytest.approx(np.mean((p - a) ** 2), rel=1e-12)
    assert rows[("ic", "")]["n"] == 24
    daily = [
        np.corrcoef(*scored[(scored["event_time"] >= f"2024-01-0{d}")
                            & (scored["event_time"] < f"2024-01-0{d + 1}")]
                    [["prediction", "realised"]].to_numpy().T)[0, 1]
        for d in (1, 2, 3)
    ]  # fmt: skip
    assert rows[("ic_5d", "")]["value"] == pytest.approx(np.mean(daily), abs=1e-12)
    assert rows[("ic_5d", "")]["n"] == 3  # Dec 30 and 31 have no predictions


def test_psi_uses_bins_of_the_reference(engine, scored):
    rows = _by_metric(drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 3)))
    # Reference 1..10 in 10 bins: each bin holds 10 %. The 71 inputs up to Jan 3 are 35 x 1.0
    # (first bin) and 36 x 10.0 (last bin); the 8 empty bins are floored at 1e-6.
    low, high = 35 / 71, 36 / 71
    expected = (
        (low - 0.1) * math.log(low / 0.1)
        + (high - 0.1) * math.log(high / 0.1)
        + 8 * (1e-6 - 0.1) * math.log(1e-6 / 0.1)
    )
    assert rows[("psi", "f")]["value"] == pytest.approx(expected, rel=1e-12)
    assert rows[("psi", "f")]["n"] == 71  # every prediction up to Jan 3 (20-day window)
    few = _by_metric(drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 1)))
    assert few[("psi", "f")]["value"] is None  # 23 rows < PSI_MIN_ROWS: too noisy to report


def test_sharpe_of_the_threshold_strategy_matches_hand_computation(engine, scored):
    rows = _by_metric(drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 4)))
    window = scored[scored["event_time"] < "2024-01-05"]  # all predictions, no later bar
    position = np.where(window["predicted"], window["prediction"] > 0.0, False).astype(float)
    close = window["close"].to_numpy()
    r = position[:-1] * (close[1:] / close[:-1] - 1)
    # TST is not in the instrument registry: a 24/7 market, 365.25 x 24 bars a year
    expected = r.mean() / r.std(ddof=1) * math.sqrt(365.25 * 24)
    assert rows[("sharpe_5d", "")]["value"] == pytest.approx(expected, rel=1e-10)
    assert rows[("sharpe_5d", "")]["n"] == len(r)
    # registered as FX, the same returns annualise with the FX week's bars
    from trendcast.calendars import get_calendar
    from trendcast.instruments import set_instrument

    set_instrument(engine, SYMBOL, "fx")
    try:
        fx = _by_metric(drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 4)))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM market.instruments WHERE symbol = :s"), {"s": SYMBOL})
    ppy = get_calendar("FX").periods_per_year("1h")
    assert fx[("sharpe_5d", "")]["value"] == pytest.approx(
        r.mean() / r.std(ddof=1) * math.sqrt(ppy), rel=1e-10
    )
    assert rows[("sharpe_20d", "")]["value"] == pytest.approx(expected, rel=1e-10)


def test_no_predictions_that_day_means_no_rows(engine, scored):
    assert drift.compute_day(engine, _info(), "live", dt.date(2024, 1, 6)) == []
    assert drift.compute_day(engine, _info(), "backfill", dt.date(2024, 1, 3)) == []


# --- alert rules: thresholds and run lengths -------------------------------------------------


def _history(metric: str, values: list, feature: str = "", last=dt.date(2024, 3, 1)) -> list:
    days = [last - dt.timedelta(days=len(values) - 1 - i) for i in range(len(values))]
    return [
        {"date": d, "metric": metric, "feature": feature, "value": v}
        for d, v in zip(days, values, strict=True)
    ]


def _fired(*series: list, day=dt.date(2024, 3, 1)) -> dict[tuple[str, str], drift.Finding]:
    frame = pd.DataFrame([row for rows in series for row in rows])
    return {(f.rule.name, f.feature): f for f in drift.evaluate_rules(frame, day)}


HEALTHY_5D = _history("ic_5d", [0.05] * 10)


def test_ic_warning_needs_five_days_running():
    assert _fired(_history("ic", [0.05, 0.019, 0.019, 0.019, 0.019]), HEALTHY_5D) == {}
    fired = _fired(_history("ic", [0.05, 0.019, 0.019, 0.019, 0.019, 0.019]), HEALTHY_5D)
    assert list(fired) == [("ic_warning", "")]
    assert fired["ic_warning", ""].run_length == 5
    assert _fired(_history("ic", [0.02] * 6), HEALTHY_5D) == {}  # not below 0.02


def test_ic_critical_needs_three_days_below_zero():
    assert list(_fired(_history("ic", [0.05, -0.01, -0.01]), HEALTHY_5D)) == []
    fired = _fired(_history("ic", [0.05, -0.01, -0.01, -0.01]), HEALTHY_5D)
    assert list(fired) == [("ic_critical", "")]  # the family's highest level only
    assert _fired(_history("ic", [0.05, 0.0, 0.0, 0.0]), HEALTHY_5D) == {}  # 0 is not < 0


def test_ic_severe_on_the_five_day_mean():
    assert _fired(_history("ic_5d", [0.01])) == {}
    assert list(_fired(_history("ic_5d", [0.0099999]))) == [("ic_severe", "")]


def test_psi_thresholds_are_strict():
    assert _fired(_history("psi", [0.10], "f")) == {}
    assert list(_fired(_history("psi", [0.1000001], "f"))) == [("psi_warning", "f")]
    assert list(_fired(_history("psi", [0.25], "f"))) == [("psi_warning", "f")]
    assert list(_fired(_history("psi", [0.2500001], "f"))) == [("psi_severe", "f")]
    both = _fired(_history("psi", [0.3], "a"), _history("psi", [0.05], "b"))
    assert list(both) == [("psi_severe", "a")]
    assert list(_fired(_history("prediction_psi", [0.11]))) == [("prediction_psi_warning", "")]


def test_sharpe_rules_need_their_run_lengths():
    assert _fired(_history("sharpe_20d", [0.49] * 9)) == {}
    assert list(_fired(_history("sharpe_20d", [0.49] * 10))) == [("sharpe_warning", "")]
    assert list(_fired(_history("sharpe_20d", [1.0, -0.1, -0.1, -0.1, -0.1]))) == []
    fired = _fired(_history("sharpe_20d", [1.0, -0.1, -0.1, -0.1, -0.1, -0.1]))
    assert list(fired) == [("sharpe_severe", "")]


def test_runs_count_observed_days_and_need_a_value_today():
    weekdays = _history("ic", [0.01] * 5)
    del weekdays[2]  # a day without predictions does not break the run...
    weekdays.insert(0, {"date": dt.date(2024, 2, 20), "metric": "ic", "feature": "", "value": 0.01})
    assert list(_fired(weekdays, HEALTHY_5D)) == [("ic_warning", "")]
    stale = _history("ic", [0.01] * 6, last=dt.date(2024, 2, 29))
    assert _fired(stale, HEALTHY_5D) == {}  # ...but nothing observed on the evaluated day
    broken = _history("ic", [0.01] * 5 + [None] + [0.01] * 4)
    assert _fired(broken, HEALTHY_5D) == {}  # an undefined IC breaks the run


# --- the job: storage, idempotence, alerts, webhook ----------------------------------------------


class Receiver:
    """A local Slack-like webhook: answers ``fail`` times with 500, then 200."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                code = 500 if len(outer.bodies) <= outer.fail else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"boom")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


ALERT = {
    "severity": "severe",
    "model_name": MODEL,
    "model_version": 1,
    "source": "live",
    "date": dt.date(2024, 1, 3),
    "message": "psi[f] = 12.4",
    "action": "retrain on recent data",
}


def test_webhook_retries_until_delivered():
    with Receiver(fail=2) as receiver:
        drift.post_webhook(receiver.url, ALERT, attempts=3)
    assert len(receiver.bodies) == 3
    assert receiver.bodies[-1]["text"].startswith(f"[SEVERE] {MODEL} v1 (live predictions)")


def test_webhook_gives_up_after_the_last_attempt():
    with Receiver(fail=10) as receiver, pytest.raises(Exception, match="500"):
        drift.post_webhook(receiver.url, ALERT, attempts=2)
    assert len(receiver.bodies) == 2


def _counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT count(*) FROM monitoring.drift_metrics")).scalar_one(),
            conn.execute(sa.text("SELECT count(*) FROM monitoring.alerts")).scalar_one(),
        )


def _fitting(scored: pd.DataFrame, **overrides) -> drift.ModelInfo:
    """A model whose reference predictions are the logged ones (no prediction drift)."""
    return _info(reference_predictions=scored["prediction"].dropna().to_numpy(), **overrides)


def test_run_day_stores_alerts_and_survives_a_failing_webhook(engine, scored, caplog):
    day = dt.date(2024, 1, 3)
    info = _fitting(scored)
    with Receiver(fail=100) as receiver:
        summaries = drift.run_day(engine, day, lambda n, v: info, webhook=receiver.url)
    assert [(s.model_name, s.source) for s in summaries] == [(MODEL, "live")]
    assert {a["rule"] for a in summaries[0].alerts} == {"psi_severe"}
    assert len(receiver.bodies) == 3  # tried three times, then gave up without failing the job
    assert any("[SEVERE]" in r.getMessage() for r in caplog.records)  # alerts go to the log
    with engine.connect() as conn:
        alert = conn.execute(sa.text("SELECT * FROM monitoring.alerts")).mappings().one()
    assert (alert["rule"], alert["feature"], alert["status"]) == ("psi_severe", "f", "open")
    assert alert["notified"] == "failed" and "500" in alert["notify_error"]
    first = _counts(engine)
    # A rerun replaces the day's rows and retries the failed delivery, once, successfully.
    with Receiver() as receiver:
        drift.run_day(engine, day, lambda n, v: info, webhook=receiver.url)
    assert _counts(engine) == first
    assert len(receiver.bodies) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT notified FROM monitoring.alerts")).scalar() == "sent"
    # Delivered: a third run posts nothing more.
    with Receiver() as receiver:
        drift.run_day(engine, day, lambda n, v: info, webhook=receiver.url)
    assert receiver.bodies == []


def test_alert_resolves_when_the_condition_clears(engine, scored):
    drift.run_day(engine, dt.date(2024, 1, 3), lambda n, v: _fitting(scored))
    same_mix = pd.DataFrame({"f": [1.0, 10.0] * 20})  # the inputs' own distribution
    healthy = _fitting(scored, reference=same_mix)
    drift.run_day(engine, dt.date(2024, 1, 4), lambda n, v: healthy)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT rule, status FROM monitoring.alerts")).all()
    assert rows == [("psi_severe", "resolved")]


def test_unreachable_webhook_does_not_fail_the_job(engine, scored):
    summaries = drift.run_day(
        engine, dt.date(2024, 1, 3), lambda n, v: _info(), webhook="http://127.0.0.1:9/x",
        attempts=2,
    )  # fmt: skip
    assert summaries and summaries[0].alerts
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT notified FROM monitoring.alerts")).scalar() == "failed"


def test_dashboard_role_cannot_write(engine, scored):
    from dashboard.data import reader_engine

    reader = reader_engine()
    try:
        with reader.connect() as conn:
            who = conn.execute(sa.text("SELECT current_user")).scalar()
            assert who == "trendcast_reader"
            assert conn.execute(sa.text("SELECT count(*) FROM serving.predictions")).scalar() == 95
        for statement in (
            "DELETE FROM serving.predictions",
            "SET TRANSACTION READ WRITE; DELETE FROM serving.predictions",
        ):
            with reader.connect() as conn, pytest.raises(sa.exc.DBAPIError):
                conn.execute(sa.text(statement))
    finally:
        reader.dispose()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM serving.predictions")).scalar() == 95


def test_a_version_the_monitor_cannot_load_is_skipped_not_fatal(engine, scored, caplog):
    from trendcast.errors import InputError

    def broken(name, version):
        raise InputError(f"{name} v{version}: run r1 has no reference/train_features.parquet")

    assert drift.run_day(engine, dt.date(2024, 1, 3), broken) == []
    assert "TST_1h_h1 v1 skipped on 2024-01-03" in caplog.text
