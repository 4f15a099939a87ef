"""The BentoML service over HTTP against a real MLflow server and PostgreSQL: predictions equal
the model's own, validation (hostile inputs, float32's range, the body limit, methods, media
types) answered in the one error schema, schemathesis `--checks all` against the served
OpenAPI, auth, the prediction log, a hot swap under a steady request stream, a tampered
artifact refused, a deleted alias, no model at all, and MLflow stopped (still serving,
readiness degraded)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import sqlalchemy as sa
from conftest import REPO, running_mlflow
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from training.dataset import build_dataset
from training.train import train
from trendcast import feature_pipeline
from trendcast.errors import InputError
from trendcast.history import load_frame
from trendcast.registry import Gates, promote
from trendcast.sample_data import SAMPLES
from trendcast.tracking import use_mlflow

pytestmark = pytest.mark.slow

TOKEN = "test-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "EURUSD_1h_h4_serving"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """What the tests share: the database, a private MLflow server, the service."""

    def __init__(self, engine, mlflow_url, mlflow_record, dataset, url, process, artifacts):
        self.engine = engine
        self.mlflow_url = mlflow_url
        self.mlflow_record = mlflow_record
        self.dataset = dataset
        self.url = url
        self.process = process
        self.artifacts = artifacts
        self.client = MlflowClient(mlflow_url, registry_uri=mlflow_url)

    def post(self, path: str, body: dict, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", AUTH)
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=10, **kwargs)

    def wait_for_version(self, version: int, timeout_s: float = 15) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            served = self.post("/model", {}).json()
            if served.get("version") == version:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"version {version} not served after {timeout_s} s")


def _move(client, engine, alias: str, version: int) -> None:
    """An audited move (the tiny test models fail the real gates): what `trendcast promote
    --force --reason` does; the service serves only moves on record."""
    promote(client, engine, NAME, int(version), alias, force=True, reason="serving test fixture")


def _train(engine, dataset, n_estimators: int):
    return train(
        engine,
        dataset,
        symbol="EURUSD",
        interval="1h",
        model_name=NAME,
        params={"n_estimators": n_estimators},
    )


@pytest.fixture(scope="module")
def stack(pg_server_url, db_url, tmp_path_factory):
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE market.bars, market.bar_changes, features.feature_sets, "
                "serving.predictions CASCADE"
            )
        )
    frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    load_frame(engine, frame, symbol="EURUSD", interval="1h", source="test", origin=origin)
    feature_pipeline.build(engine)
    home = tmp_path_factory.mktemp("serving")
    dataset = build_dataset(engine, "EURUSD", "1h", home / "snapshots", horizon=4)
    saved = {v: os.environ.get(v) for v in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    with running_mlflow(pg_server_url, home / "mlflow") as (mlflow_url, record):
        use_mlflow(mlflow_url)
        mlflow.set_experiment("serving-tests")
        first = _train(engine, dataset, 20)
        client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
        _move(client, engine, "production", first.version)
        port = free_port()
        env = {
            **os.environ,
            "TRENDCAST_HOME": str(home),
            "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
            "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url,
            "TRENDCAST_MODEL_NAME": NAME,
            "TRENDCAST_SERVING_POLL_S": "1",
            "TRENDCAST_API_TOKEN": TOKEN,
            "TRENDCAST_SERVING_MAX_BATCH": "50",
        }
        log = open(home / "serving.log", "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("bentoml")),
                "serve",
                "serving.service:Trendcast",
                "--port",
                str(port),
                "--working-dir",
                str(REPO),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, (home / "serving.log").read_text()[-3000:]
                time.sleep(0.5)
            else:
                raise AssertionError((home / "serving.log").read_text()[-3000:])
            yield Stack(engine, mlflow_url, record, dataset, url, process, home / "mlflow")
        finally:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
            log.close()
            engine.dispose()
            for variable, value in saved.items():  # later tests must not talk to this server
                if value is None:
                    os.environ.pop(variable, None)
                else:
                    os.environ[variable] = value


def _rows(stack: Stack, n: int) -> list[dict]:
    test = stack.dataset.part("test")
    return test[stack.dataset.features].head(n).to_dict("records")


def test_predictions_equal_the_models_own(stack):
    served = stack.post("/model", {}).json()
    assert served["name"] == NAME and served["version"] == 1 and served["alias"] == "production"
    assert served["features"] == stack.dataset.features
    version = stack.client.get_model_version(NAME, "1")
    assert served["sha256"] == version.tags["sha256"] and served["run_id"] == version.run_id

    rows = _rows(stack, 20)
    answer = stack.post("/predict", {"rows": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == {"name": NAME, "version": 1, "alias": "production"}
    own = mlflow.xgboost.load_model(f"models:/{NAME}/1").predict(
        stack.dataset.part("test")[stack.dataset.features].head(20)
    )
    np.testing.assert_allclose(body["predictions"], own, rtol=1e-6, atol=1e-9)
    # The compiled scorer answers, and it answers XGBoost's own bits, not approximately them.
    assert served["scorer"] == "compiled"
    matrix = np.array([[row[f] for f in served["features"]] for row in rows], dtype=np.float32)
    booster = mlflow.xgboost.load_model(f"models:/{NAME}/1").get_booster()
    best = booster.attr("best_iteration")
    exact = booster.inplace_predict(
        matrix, iteration_range=(0, int(best) + 1) if best is not None else (0, 0)
    )
    assert body["predictions"] == exact.tolist()

    integers = {name: 1 for name in stack.dataset.features}  # ints are numbers too
    assert stack.post("/predict", {"rows": [integers]}).status_code == 200

    latest = stack.post("/predict_latest", {"symbols": ["EURUSD"], "interval": "1h"}).json()
    (result,) = latest["results"]
    with stack.engine.connect() as conn:
        newest = conn.execute(sa.text("SELECT max(open_time) FROM market.bars")).scalar()
    assert result["event_time"] == (newest + timedelta(hours=1)).isoformat()
    direct = mlflow.xgboost.load_model(f"models:/{NAME}/1").predict(
        np.array([[result["features"][f] for f in stack.dataset.features]], dtype=np.float32)
    )
    assert result["prediction"] == pytest.approx(float(direct[0]), rel=1e-6)


def error_of(answer: httpx.Response, status: int) -> dict:
    """The error of an answer, checked against the one error schema the OpenAPI states."""
    from serving.contract import ErrorBody

    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    return ErrorBody.model_validate_json(answer.content).error.model_dump()


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/predict", {"rows": []}, "rows", "rows: empty batch"),
        ("/predict", {"rows": [{"sma_7_ratio": 1.0}]}, "rows[0]", "rows[0]: missing feature(s)"),
        ("/predict", {"rows": "x"}, "rows", "rows: must be a JSON array"),
        ("/predict", {}, "rows", "rows: required"),
        ("/predict", {"rows": [1]}, "rows[0]", "rows[0]: expected an object"),
        ("/predict_latest", {"symbols": []}, "symbols", "symbols: empty list"),
        ("/predict_latest", {"symbols": ["eur/usd"]}, "symbols[0]", "must be 1-32 upper-case"),
        ("/predict_latest", {"symbols": ["EURUSD"], "interval": "7m"}, "interval", "one of 1m"),
        ("/predict_latest", {"symbols": ["A"], "extra": 1}, "extra", "extra: unknown field"),
        ("/model", {"verbose": True}, "verbose", "verbose: unknown field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(stack, path, body, field, message):
    error = error_of(stack.post(path, body), 400)
    assert error["code"] == "invalid_argument" and error["field"] == field
    assert message in error["message"]


def test_a_symbol_without_bars_is_a_404_in_the_error_schema(stack):
    error = error_of(stack.post("/predict_latest", {"symbols": ["NOSUCH"]}), 404)
    assert error["message"] == "symbols[0]: no bars stored for NOSUCH 1h"
    assert error["field"] == "symbols[0]"


def test_every_bad_row_class_is_refused(stack):
    good = _rows(stack, 1)[0]
    cases = {
        "unknown feature(s) extra": {**good, "extra": 1.0},
        "rows[0].rsi_14: not a number ('high')": {**good, "rsi_14": "high"},
        "rows[0].rsi_14: not a number (True)": {**good, "rsi_14": True},
        "rows[0].rsi_14: not a number (None)": {**good, "rsi_14": None},
    }
    for message, row in cases.items():
        answer = stack.post("/predict", {"rows": [row]})
        assert answer.status_code == 400 and message in answer.text, answer.text
    nan = json.dumps({"rows": [{**good, "rsi_14": float("nan")}]})  # JSON's NaN token
    answer = httpx.post(
        f"{stack.url}/predict",
        content=nan,
        headers={**AUTH, "content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400 and "rows[0].rsi_14: must be a finite number" in answer.text
    oversized = stack.post("/predict", {"rows": [good] * 51})
    assert oversized.status_code == 400 and "51 rows, more than the limit of 50" in oversized.text


def test_token_guards_all_but_health(stack):
    rows = _rows(stack, 1)
    assert stack.post("/predict", {"rows": rows}, headers={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert stack.post("/model", {}, headers=wrong).status_code == 401
    assert httpx.get(f"{stack.url}/livez", timeout=5).status_code == 200
    ready = httpx.get(f"{stack.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert httpx.get(f"{stack.url}/docs.json", timeout=5).status_code == 200


def _logged(stack: Stack, where: str = "true") -> list:
    with stack.engine.connect() as conn:
        return (
            conn.execute(sa.text(f"SELECT * FROM serving.predictions WHERE {where} ORDER BY id"))
            .mappings()
            .all()
        )


def test_prediction_log_rows_match_the_requests(stack):
    before = len(_logged(stack))
    rows = _rows(stack, 7)
    answer = stack.post("/predict", {"rows": rows}).json()
    stack.post("/predict_latest", {"symbols": ["EURUSD"]})
    deadline = time.monotonic() + 10
    while len(_logged(stack)) < before + 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = _logged(stack)[before:]
    assert len(new) == 8
    batch = [r for r in new if r["symbol"] is None]
    assert [r["prediction"] for r in batch] == pytest.approx(answer["predictions"])
    assert [r["inputs"] for r in batch] == rows
    assert len({r["request_id"] for r in batch}) == 1
    assert all(r["model_version"] == 1 and not r["shadow"] for r in new)
    (live,) = [r for r in new if r["symbol"] == "EURUSD"]
    assert live["interval"] == "1h" and live["event_time"] is not None
    assert live["latency_ms"] > 0


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_every_answer_and_the_prediction_log(stack):
    """/metrics (no token) counts each request by route and status, with its latency, and the
    prediction log's rows: what a Prometheus scrape of this service shows."""
    before = httpx.get(f"{stack.url}/metrics", timeout=10)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    ok = _metric(before.text, "trendcast_http_requests_total", endpoint="/predict", status="200")
    bad = _metric(before.text, "trendcast_http_requests_total", endpoint="/predict", status="400")
    timed = _metric(
        before.text, "trendcast_http_request_duration_seconds_count", endpoint="/predict"
    )
    written = _metric(before.text, "trendcast_prediction_log_written_total")
    for _ in range(3):
        assert stack.post("/predict", {"rows": _rows(stack, 2)}).status_code == 200
    assert stack.post("/predict", {"rows": [{"nope": 1}]}).status_code == 400
    deadline = time.monotonic() + 10
    while True:
        after = httpx.get(f"{stack.url}/metrics", timeout=10).text
        if _metric(after, "trendcast_prediction_log_written_total") >= written + 6:
            break
        assert time.monotonic() < deadline, "prediction-log rows not counted in /metrics"
        time.sleep(0.2)
    assert (
        _metric(after, "trendcast_http_requests_total", endpoint="/predict", status="200") == ok + 3
    )
    assert (
        _metric(after, "trendcast_http_requests_total", endpoint="/predict", status="400")
        == bad + 1
    )
    assert (
        _metric(after, "trendcast_http_request_duration_seconds_count", endpoint="/predict")
        == timed + 4
    )


def test_swap_under_load_and_challenger_in_shadow(stack):
    second = _train(stack.engine, stack.dataset, 35)
    _move(stack.client, stack.engine, "challenger", second.version)
    stack.post("/reload", {})
    rows = _rows(stack, 1)
    shadow_before = len(_logged(stack, "shadow"))
    answer = stack.post("/predict", {"rows": rows}).json()
    assert answer["model"]["version"] == 1  # the challenger is never returned
    deadline = time.monotonic() + 10
    while len(_logged(stack, "shadow")) == shadow_before and time.monotonic() < deadline:
        time.sleep(0.2)
    (shadow,) = _logged(stack, "shadow")[shadow_before:]
    assert shadow["model_version"] == second.version and shadow["alias"] == "challenger"

    # (sent, answered, version) per request: threads append in the order their answers
    # arrive, not the order the service served them, so the check below compares clocks.
    failures, answers, stop = [], [], threading.Event()

    def stream():
        with httpx.Client(headers=AUTH, timeout=10) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.post(f"{stack.url}/predict", json={"rows": rows})
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    else:
                        version = response.json()["model"]["version"]
                        answers.append((sent, time.monotonic(), version))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    workers = [threading.Thread(target=stream) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        _move(stack.client, stack.engine, "production", second.version)
        took = stack.wait_for_version(second.version, timeout_s=15)
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert took < 15
    answers.sort()
    assert answers[0][2] == 1 and answers[-1][2] == second.version
    first_new = min(answered for _, answered, version in answers if version == second.version)
    # No flapping back: a request sent after anyone got the new version gets it too.
    late = [version for sent, _, version in answers if sent > first_new]
    assert late and set(late) == {second.version}


def test_tampered_artifact_is_refused_and_the_old_model_kept(stack):
    served = stack.post("/model", {}).json()["version"]
    third = _train(stack.engine, stack.dataset, 25)
    source = stack.client.get_model_version(NAME, str(third.version)).source  # models:/m-...
    (artifact,) = stack.artifacts.rglob(f"{source.rsplit('/', 1)[1]}/artifacts/model.ubj")
    artifact.write_bytes(artifact.read_bytes()[:-8] + b"tampered")
    _move(stack.client, stack.engine, "production", third.version)
    reload = stack.post("/reload", {}).json()
    assert "refused" in reload["changes"]["production"], reload
    model = stack.post("/model", {}).json()
    assert model["version"] == served
    assert "does not match the registered" in model["errors"]["production"]
    assert stack.post("/predict", {"rows": _rows(stack, 1)}).json()["model"]["version"] == served
    ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()  # not "ready": say why
    assert ready["status"] == "degraded" and "does not match the registered" in ready["reason"]
    _move(stack.client, stack.engine, "production", served)
    stack.post("/reload", {})
    assert httpx.get(f"{stack.url}/readyz", timeout=5).json()["status"] == "ready"


def _alerts(stack, version: int) -> list[dict]:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT status, severity, feature, message FROM monitoring.alerts "
                "WHERE model_name = :n AND model_version = :v AND rule = 'unaudited_alias_move'"
            ),
            {"n": NAME, "v": version},
        )
        return [dict(r._mapping) for r in rows]


def test_an_alias_moved_outside_trendcast_is_not_served(stack):
    """Someone points production at a version straight through MLflow (UI, REST, client): no
    gate ran and no audit row exists, so the service keeps the old model, says why, alerts."""
    served = stack.post("/model", {}).json()["version"]
    rogue = _train(stack.engine, stack.dataset, 15)
    stack.client.set_registered_model_alias(NAME, "production", str(rogue.version))
    changes = stack.post("/reload", {}).json()["changes"]
    assert "refused" in changes["production"] and "moved outside Trendcast" in changes["production"]
    assert stack.post("/predict", {"rows": _rows(stack, 1)}).json()["model"]["version"] == served
    ready = httpx.get(f"{stack.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert f"version {rogue.version} was moved outside Trendcast" in ready.json()["unaudited"][0]
    (alert,) = _alerts(stack, rogue.version)
    assert alert["status"] == "open" and alert["severity"] == "critical"
    assert alert["feature"] == "production"
    stack.post("/reload", {})  # a second look raises no second alert
    assert len(_alerts(stack, rogue.version)) == 1

    # Through the gates (a profile this tiny model passes), the same version becomes servable.
    lenient = Gates(
        min_backtest_sharpe=-1e9,
        max_backtest_drawdown=1.0,
        beat_buy_and_hold=False,
        min_test_ic=-1,
        min_backtest_dsr=0.0,
    )
    promote(stack.client, stack.engine, NAME, rogue.version, "production", lenient)
    stack.wait_for_version(rogue.version)
    ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and "unaudited" not in ready
    assert [a["status"] for a in _alerts(stack, rogue.version)] == ["resolved"]
    _move(stack.client, stack.engine, "production", served)
    stack.wait_for_version(served)


def test_a_forced_move_needs_a_reason(stack):
    version = stack.post("/model", {}).json()["version"]
    with pytest.raises(InputError, match="--reason: required with --force"):
        promote(stack.client, stack.engine, NAME, version, "production", force=True)
    # the database refuses one too, whoever writes the row
    with (
        stack.engine.connect() as conn,
        pytest.raises(sa.exc.IntegrityError, match="alias_events_forced_reason"),
    ):
        conn.execute(
            sa.text(
                "INSERT INTO registry.alias_events (model_name, alias, action, to_version, "
                "moved_by, forced) VALUES (:n, 'production', 'promote', 1, 'x', true)"
            ),
            {"n": NAME},
        )


def test_a_deleted_alias_keeps_the_last_model_serving_and_says_so(stack):
    served = stack.post("/model", {}).json()["version"]
    stack.client.delete_registered_model_alias(NAME, "production")
    try:
        stack.post("/reload", {})
        ready = httpx.get(f"{stack.url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "alias 'production' is not set" in ready.json()["reason"]
        answer = stack.post("/predict", {"rows": _rows(stack, 2)})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == served
    finally:
        _move(stack.client, stack.engine, "production", served)
        stack.post("/reload", {})
    assert httpx.get(f"{stack.url}/readyz", timeout=5).json()["status"] == "ready"


def test_identical_production_and_challenger_are_scored_once(stack):
    served = stack.post("/model", {}).json()["version"]
    _move(stack.client, stack.engine, "challenger", served)
    stack.post("/reload", {})
    info = stack.post("/model", {}).json()
    assert info["shadow"]["version"] == served
    rows = _rows(stack, 8)[5:]  # rows no other test sends: earlier requests may still land
    before = len(_logged(stack))
    stack.post("/predict", {"rows": rows})
    deadline = time.monotonic() + 10

    def mine() -> list:
        return [r for r in _logged(stack)[before:] if r["inputs"] in rows]

    while len(mine()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # a second (shadow) score would arrive in the same batch
    new = mine()
    assert len(new) == 3 and not any(r["shadow"] for r in new)


def _schemathesis(stack: Stack, workdir: Path, *headers: str) -> str:
    """`st run --checks all` over every operation of the served OpenAPI; its output."""
    args = [arg for header in headers for arg in ("-H", header)]
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{stack.url}/docs.json",
            "--url",
            stack.url,
            "--checks",
            "all",
            "--max-examples",
            "250",
            "--seed",
            "7",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=workdir,  # its cache stays out of the repository
    )
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def _generated(output: str) -> int:
    import re

    found = re.search(r"Test cases:\s*\n?\s*(\d[\d,]*) generated", output)
    assert found, output[-3000:]
    return int(found.group(1).replace(",", ""))


def test_schemathesis_checks_all_with_and_without_the_token(stack, tmp_path):
    """Every operation of the served OpenAPI, every check schemathesis has (status codes, error
    bodies against the schema, content types, valid data accepted, invalid data refused,
    undeclared methods answered 405, the token enforced): zero failures, with the token and
    without it."""
    with_token = _schemathesis(stack, tmp_path, f"Authorization: Bearer {TOKEN}")
    without = _schemathesis(stack, tmp_path)
    total = _generated(with_token) + _generated(without)
    assert total >= 2000, (with_token[-2000:], without[-2000:])


HUGE = b"1" + b"0" * 400


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (HUGE, "a 401-digit integer (was a 500: OverflowError in math.isfinite)"),
        (b"1e39", "beyond float32 (was served as inf)"),
        (b"-1e39", "beyond float32 on the negative side"),
        (b"1e308", "a double float32 cannot hold"),
        (b"1e400", "beyond double: JSON's infinity"),
        (b"NaN", "JSON's NaN token"),
        (b"-Infinity", "JSON's infinity token"),
    ],
)
def test_values_float32_cannot_hold_are_a_400_naming_the_field(stack, value, why):
    row = json.dumps({**_rows(stack, 1)[0], "rsi_14": 0.25}).encode()
    body = b'{"rows": [' + row.replace(b'"rsi_14": 0.25', b'"rsi_14": ' + value) + b"]}"
    answer = httpx.post(
        f"{stack.url}/predict",
        content=body,
        headers={**AUTH, "content-type": "application/json"},
        timeout=10,
    )
    error = error_of(answer, 400)
    assert error["field"] == "rows[0].rsi_14", why
    assert "finite number within float32's range" in error["message"], why


def test_hostile_requests_get_a_4xx_in_the_one_error_schema(stack):
    good = _rows(stack, 1)[0]
    url = stack.url
    json_headers = {**AUTH, "content-type": "application/json"}

    # A body past TRENDCAST_SERVING_MAX_BODY_BYTES (4 MiB): 413 whether its length is declared
    # or it arrives in chunks; before, 10 MB with an unknown top-level field was answered 200.
    padding = "x" * (10 * 1024 * 1024)
    big = json.dumps({"rows": [good], "padding": padding}).encode()
    error = error_of(httpx.post(f"{url}/predict", content=big, headers=json_headers), 413)
    assert "TRENDCAST_SERVING_MAX_BODY_BYTES" in error["message"] and error["field"] == "body"

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    error_of(httpx.post(f"{url}/predict", content=chunks(), headers=json_headers), 413)

    # Unknown top-level fields are refused, not ignored.
    error = error_of(stack.post("/predict", {"rows": [good], "comment": "hi"}), 400)
    assert error["field"] == "comment"

    # Health endpoints answer GET and HEAD only; the API answers POST only (405 with Allow).
    for method, path, allow in [
        ("TRACE", "/readyz", "GET, HEAD"),
        ("POST", "/readyz", "GET, HEAD"),
        ("DELETE", "/livez", "GET, HEAD"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("GET", "/predict", "POST"),
        ("DELETE", "/model", "POST"),
    ]:
        answer = httpx.request(method, f"{url}{path}", headers=AUTH, timeout=10)
        error = error_of(answer, 405)
        assert answer.headers["allow"] == allow and error["code"] == "method_not_allowed"
    assert httpx.head(f"{url}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "alive"}  # no token

    # Media type, JSON syntax, shape, nesting, unknown paths.
    for content, kind, status, field in [
        (json.dumps({"rows": [good]}), "text/plain", 415, "content-type"),
        (json.dumps({"rows": [good]}), None, 415, "content-type"),
        ('{"rows": [', "application/json", 400, "body"),
        ("[1, 2]", "application/json", 400, "body"),
        ('"rows"', "application/json", 400, "body"),
        ('{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", 400, None),
        ("", "application/json", 400, "rows"),
        ('{"symbols": ["\u0000"]}', "application/json", 400, "body"),  # a raw control character
    ]:
        headers = dict(AUTH) if kind is None else {**AUTH, "content-type": kind}
        answer = httpx.post(f"{url}/predict", content=content.encode(), headers=headers)
        error = error_of(answer, status)
        if field:
            assert error["field"] == field, error
    error = error_of(httpx.post(f"{url}/nope", json={}, headers=AUTH), 404)
    assert "no such endpoint" in error["message"]
    for symbol in ("A" * 33, "\u0000", "EURUSD\n", ""):
        error = error_of(stack.post("/predict_latest", {"symbols": [symbol]}), 400)
        assert error["field"] == "symbols[0]", symbol

    # A value that underflows float32 is still a number: accepted.
    assert stack.post("/predict", {"rows": [{**good, "rsi_14": 1e-50}]}).status_code == 200


def test_openapi_states_the_features_and_the_rules(stack):
    spec = httpx.get(f"{stack.url}/docs.json", timeout=10).json()
    schemas = spec["components"]["schemas"]
    row = schemas["FeatureRow"]
    assert sorted(row["required"]) == sorted(stack.dataset.features)
    assert row["additionalProperties"] is False
    assert row["properties"]["rsi_14"]["maximum"] == pytest.approx(3.4028234663852886e38)
    assert schemas["PredictRequest"]["properties"]["rows"]["maxItems"] == 50
    latest = schemas["PredictLatestRequest"]["properties"]
    assert latest["symbols"]["items"]["pattern"] == "^[A-Z0-9][A-Z0-9._-]{0,31}$"
    assert "1M" in latest["interval"]["enum"]
    assert set(spec["paths"]) >= {"/predict", "/predict_latest", "/model", "/reload", "/readyz"}
    assert set(spec["paths"]["/readyz"]) == {"get"}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_without_a_model_every_endpoint_says_why(stack, tmp_path):
    """A service whose alias points nowhere: /readyz and every endpoint that needs the model
    answer 503 with the reason (BentoML used to replace it with a generic body)."""
    port = free_port()
    env = {
        **os.environ,
        "TRENDCAST_HOME": str(tmp_path),
        "TRENDCAST_DATABASE_URL": stack.engine.url.render_as_string(hide_password=False),
        "TRENDCAST_MLFLOW_TRACKING_URI": stack.mlflow_url,
        "TRENDCAST_MODEL_NAME": "NO_SUCH_MODEL",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("bentoml")),
            "serve",
            "serving.service:Trendcast",
            "--port",
            str(port),
            "--working-dir",
            str(REPO),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None
            time.sleep(0.5)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert "NO_SUCH_MODEL@production" in ready.json()["reason"]
        for path, body in [
            ("/predict", {"rows": _rows(stack, 1)}),
            ("/predict_latest", {"symbols": ["EURUSD"]}),
            ("/model", {}),
        ]:
            error = error_of(httpx.post(f"{url}{path}", json=body, timeout=10), 503)
            assert "no verified model for NO_SUCH_MODEL@production" in error["message"], path
        error = error_of(httpx.post(f"{url}/predict", json={"rows": []}, timeout=10), 400)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_the_built_bento_serves(stack, tmp_path):
    """`bentoml build` works offline (lock_packages: false) and the bento answers."""
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    built = subprocess.run(
        [bentoml, "build", "-f", "serving/bentofile.yaml", "--output", "tag", "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("trendcast:")
    port = free_port()
    serve_env = {
        **env,
        "TRENDCAST_DATABASE_URL": stack.engine.url.render_as_string(hide_password=False),
        "TRENDCAST_MLFLOW_TRACKING_URI": stack.mlflow_url,
        "TRENDCAST_MODEL_NAME": NAME,
        "TRENDCAST_HOME": str(tmp_path / "home"),
    }
    process = subprocess.Popen(
        [bentoml, "serve", tag, "--port", str(port)],
        cwd=tmp_path,
        env=serve_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, ready = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"rows": _rows(stack, 2)}, timeout=10
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_mlflow_stopped_keeps_serving_and_reports_degraded(stack):
    from trendcast.stack import processes

    os.killpg(stack.mlflow_record.pid, 15)
    deadline = time.monotonic() + 20
    while processes.is_alive(stack.mlflow_record) and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready = httpx.get(f"{stack.url}/readyz", timeout=5)
        if ready.json().get("status") == "degraded":
            break
        time.sleep(0.5)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert "unreachable" in ready.json()["mlflow"]
    answer = stack.post("/predict", {"rows": _rows(stack, 3)})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
