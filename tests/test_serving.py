"""The BentoML service over HTTP against a real MLflow server and PostgreSQL: predictions equal
the model's own, validation, auth, the prediction log, a hot swap under a steady request
stream, a tampered artifact refused, and MLflow stopped (still serving, readiness degraded)."""

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


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/predict", {"rows": []}, "rows: empty batch"),
        ("/predict", {"rows": [{"sma_7_ratio": 1.0}]}, "rows[0]: missing feature(s)"),
        ("/predict", {"rows": "x"}, "Input should be a valid array"),
        ("/predict", {}, "rows"),
        ("/predict_latest", {"symbols": []}, "symbols: empty list"),
        ("/predict_latest", {"symbols": ["eur/usd"]}, "symbols[0]"),
        ("/predict_latest", {"symbols": ["NOSUCH"]}, "no bars stored for NOSUCH"),
        ("/predict_latest", {"symbols": ["EURUSD"], "interval": "7m"}, "symbols[0]"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(stack, path, body, message):
    answer = stack.post(path, body)
    assert 400 <= answer.status_code < 500, answer.text
    assert message in answer.text


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
    assert answer.status_code == 400 and "rows[0].rsi_14: must be finite" in answer.text
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
    _move(stack.client, stack.engine, "production", served)


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
        min_backtest_sharpe=-1e9, max_backtest_drawdown=1.0, beat_buy_and_hold=False, min_test_ic=-1
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


def test_schemathesis_finds_no_server_error(stack):
    """Property-based requests generated from the service's own OpenAPI: never a 5xx."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{stack.url}/docs.json",
            "--url",
            stack.url,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "generated" in result.stdout and "passed" in result.stdout


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
