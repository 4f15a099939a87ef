"""Serving, one-row requests at one and at 16 connections (wrk, 20 s each), one server at a
time, same client, same run: a plain Starlette app on uvicorn (the ASGI floor), the same app
recording every prediction through the service's prediction log, a no-op BentoML
service as shipped, with serving/bentoml_fixes.py, and with BentoML's per-request telemetry off
too, Trendcast's service with BentoML's telemetry on, with Python's default GIL switch
interval, scoring with XGBoost's own predict instead of the compiled trees, and as shipped, and
`mlflow models serve` on the same registered model (one worker each): p50/p99 and requests/s,
and the three targets (p99 <= 20 ms at one connection; p99 at 16 <= 3x the floor's; >= 5x
mlflow's throughput). Then the hot swap: 16 clients stream requests while the alias moves;
failed requests and time to the new version.

Run: `.venv/bin/python -m benchmarks.bench_serving` (part of `make bench`).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import psutil
import sqlalchemy as sa
from mlflow import MlflowClient

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
from training.dataset import build_dataset
from training.train import train
from trendcast import feature_pipeline
from trendcast.history import load_frame
from trendcast.registry import promote
from trendcast.sample_data import SAMPLES
from trendcast.stack import mlflow_server
from trendcast.tracking import mlflow_client, use_mlflow

NAME = "EURUSD_1h_h4_bench"
SECONDS = int(
    os.environ.get("TRENDCAST_BENCH_SERVING_SECONDS", "20")
)  # per mode: long enough to include the full collections that made the tail
SEQUENTIAL = 1500
CONCURRENT = 16
PER_CLIENT = 300
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s")


def spawn(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def load(port: int, path: str, body: dict, clients: int, per_client: int):
    """Latencies (ms) of ``clients`` threads, each sending ``per_client`` requests one after
    another on its own keep-alive connection (http.client: the lightest client at hand, so the
    2 cores go to the servers), and the wall time."""
    payload = json.dumps(body)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            connection.request("POST", path, payload, headers)
            response = connection.getresponse()
            text = response.read()
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                errors.append(f"HTTP {response.status} {text[:200]!r}")
        with lock:
            latencies.extend(mine)

    client(50)  # warm-up
    latencies.clear()
    threads = [threading.Thread(target=client, args=(per_client,)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{path}: {errors[0]}")
    return np.array(latencies), time.perf_counter() - started


def _wrk_ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group())
    return (
        value / 1000
        if text.endswith("us")
        else value * 1000
        if text.endswith("s") and not text.endswith("ms")
        else value
    )


def wrk(port: int, path: str, body: dict, connections: int, seconds: int) -> dict:
    """wrk (C, Debian's package) as the client: its own CPU cost is a fraction of Python's."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = [==[{json.dumps(body)}]==]\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    threads = 1 if connections == 1 else 2
    run = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            script.name,
            "--latency",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    os.unlink(script.name)
    if "Non-2xx" in run.stdout:
        raise RuntimeError(f"{path}: wrk saw errors:\n{run.stdout}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", run.stdout, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", run.stdout).group(1))
    return {"p50": _wrk_ms(percentiles["50"]), "p99": _wrk_ms(percentiles["99"]), "rps": rps}


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def _server_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _our_postgres() -> list[psutil.Process]:
    """Every postgres process on the machine: the benchmark's embedded server runs as its own
    user (pgserver), an external one as another; a server the benchmark does not use is idle
    and adds nothing."""
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def measure(label: str, port: int, path: str, body: dict, pid: int) -> dict:
    """Sequential (one connection) and 16 concurrent connections; wrk when installed, else
    Python threads on keep-alive connections (then the client's own CPU shows in the figures).
    Also the CPU time the server (``pid`` and its children) and PostgreSQL spent per request:
    on 2 cores shared with the client, CPU another process takes is latency for the server."""
    out = {}
    modes = (("sequential", 1, SEQUENTIAL), ("16 clients", CONCURRENT, PER_CLIENT))
    load(port, path, body, 1, 50)  # warm-up
    for mode, clients, per in modes:
        server, postgres = _server_tree(pid), _our_postgres()
        server_before, pg_before = _cpu_seconds(server), _cpu_seconds(postgres)
        began = time.perf_counter()
        if shutil.which("wrk"):
            out[mode] = wrk(port, path, body, clients, SECONDS)
        else:
            latencies, wall = load(port, path, body, clients, per)
            out[mode] = {
                "p50": float(np.percentile(latencies, 50)),
                "p99": float(np.percentile(latencies, 99)),
                "rps": len(latencies) / wall,
            }
        requests = out[mode]["rps"] * (time.perf_counter() - began)
        server_cpu = _cpu_used(server_before, _cpu_seconds(_server_tree(pid)))
        pg_cpu = _cpu_used(pg_before, _cpu_seconds(_our_postgres()))
        out[mode]["cpu_server_ms"] = server_cpu / requests * 1000
        out[mode]["cpu_pg_ms"] = pg_cpu / requests * 1000
        print(
            f"   {label:<24} {mode:<11} p50 {out[mode]['p50']:6.2f} ms  "
            f"p99 {out[mode]['p99']:6.2f} ms  {out[mode]['rps']:7.0f} req/s"
        )
    return out


async def swap_under_load(
    base: str, body: dict, client: MlflowClient, engine, version: int
) -> dict:
    failures, versions = 0, []
    stop_at: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:

        async def stream() -> None:
            nonlocal failures
            while not stop_at or time.monotonic() < stop_at[0]:
                response = await http.post(f"{base}/predict", json=body)
                if response.status_code != 200:
                    failures += 1
                else:
                    versions.append((time.monotonic(), response.json()["model"]["version"]))

        tasks = [asyncio.create_task(stream()) for _ in range(CONCURRENT)]
        await asyncio.sleep(1)
        moved = time.monotonic()
        await asyncio.to_thread(_move, client, engine, version)
        while not any(v == version for _, v in versions[-50:]):
            await asyncio.sleep(0.05)
            if time.monotonic() - moved > 60:
                break
        stop_at.append(time.monotonic() + 1)
        await asyncio.gather(*tasks)
    first_new = min((t for t, v in versions if v == version), default=float("nan"))
    return {"failures": failures, "requests": len(versions), "seconds": first_new - moved}


def _move(client, engine, version: int) -> None:
    """An audited move, as `trendcast promote --force --reason` makes it: the service serves
    no other (the benchmark's small models need not pass the gates)."""
    promote(client, engine, NAME, int(version), "production", force=True, reason="benchmark")


def real_time_path(engine, frame, port: int, bars: int = 10) -> dict:
    """Store a bar that just closed (as ingestion does), then ask predict_latest: the time until
    the answer is about that bar. The pipeline has not run, so serving computes its features
    from the stored bars with the shared indicator code."""
    import pandas as pd

    timings = []
    last = frame.iloc[[-1]].copy()
    for i in range(1, bars + 1):
        bar = last.copy()
        bar["open_time"] = pd.to_datetime(bar["open_time"], utc=True) + pd.Timedelta(hours=i)
        started = time.perf_counter()
        load_frame(
            engine,
            bar,
            symbol="EURUSD",
            interval="1h",
            source="bench",
            origin="bench",
            kind="ingest",
        )
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict_latest", json={"symbols": ["EURUSD"]}, timeout=10
        ).json()
        elapsed = (time.perf_counter() - started) * 1000
        closes = (bar["open_time"].iloc[0] + pd.Timedelta(hours=1)).isoformat()
        if answer["results"][0]["event_time"] != closes:
            raise RuntimeError(f"predict_latest answered {answer} for a bar closing {closes}")
        timings.append(elapsed)
    return {"median": float(np.median(timings)), "max": max(timings), "n": bars}


def main() -> None:
    client = "wrk (Debian package)" if shutil.which("wrk") else "Python threads"
    rec = Recorder(
        "serving",
        "Serving: one-row requests against the ASGI floor, BentoML and mlflow models serve",
        script=__file__,
        description=(
            f"One-row `/predict` requests at one and at {CONCURRENT} connections, {SECONDS} s "
            f"each, client {client}, one server at a time (every other server stopped), one "
            "worker each, the same client and body: a plain Starlette app on uvicorn (the ASGI "
            "floor), a no-op BentoML service as shipped, with `serving/bentoml_fixes.py`, and "
            "with BentoML's telemetry off too; the floor recording every prediction through the "
            "service's prediction log into PostgreSQL; Trendcast's service with BentoML's "
            "telemetry on, "
            "with Python's default GIL switch interval, scoring with XGBoost's own predict "
            "instead of the compiled trees, and as shipped; `mlflow models serve` on the same "
            "registered model. Then the "
            f"hot swap under {CONCURRENT} streaming clients, and the real-time path (bar stored "
            "to `predict_latest` answering on it). PostgreSQL and the MLflow tracking server "
            "stay up throughout: the service needs them."
        ),
        params={"seconds_per_mode": SECONDS, "connections": CONCURRENT, "client": client},
        measures=[
            "serving",
            "benchmarks/_asgi_floor.py",
            "benchmarks/_asgi_floor_logged.py",
            "benchmarks/_noop_service.py",
            "benchmarks/_noop_fixed_service.py",
            "benchmarks/_noop_quiet_service.py",
        ],
    )
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="tcbs") as tmp:
        home = Path(tmp)
        engine = sa.create_engine(url)
        frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
        load_frame(engine, frame, symbol="EURUSD", interval="1h", source="bench", origin=origin)
        feature_pipeline.build(engine)
        dataset = build_dataset(engine, "EURUSD", "1h", home / "snapshots", horizon=4)
        admin = url.set(database="postgres")
        with mlflow_server.throwaway(admin, home / "mlflow") as (tracking, _):
            run(rec, engine, frame, dataset, url, tracking, home)
        engine.dispose()
    rec.write()


def _record_modes(rec: Recorder, key: str, label: str, out: dict, role: str = "ours") -> None:
    for mode, short in (("sequential", "1c"), ("16 clients", f"{CONCURRENT}c")):
        conns = "1 connection" if short == "1c" else f"{CONCURRENT} connections"
        stats = (
            ("p50", "ms", "p50"),
            ("p99", "ms", "p99"),
            ("rps", "req/s", "requests/s"),
            ("cpu_server_ms", "ms", "CPU per request, server"),
            ("cpu_pg_ms", "ms", "CPU per request, PostgreSQL"),
        )
        for stat, unit, name in stats:
            rec.figure(
                f"{key}_{short}_{stat}",
                out[mode][stat],
                unit,
                label=f"{label}, {conns}, {name}",
                role=role,
            )


def run(rec: Recorder, engine, frame, dataset, url, tracking: str, home: Path) -> None:
    """Train two versions; measure, one server at a time on the same client: the ASGI floor,
    the no-op BentoML service (as shipped and with serving/bentoml_fixes.py), ours and
    `mlflow models serve`; then the swap and the real-time path on ours."""
    services: list[subprocess.Popen] = []
    try:
        use_mlflow(tracking)
        mlflow.set_experiment("bench")
        params = {"n_estimators": 200}
        first = train(
            engine, dataset, symbol="EURUSD", interval="1h", model_name=NAME, params=params
        )
        second = train(
            engine,
            dataset,
            symbol="EURUSD",
            interval="1h",
            model_name=NAME,
            params={"n_estimators": 120},
        )
        client = mlflow_client(tracking)
        _move(client, engine, first.version)
        row = dataset.part("test")[dataset.features].head(1).to_dict("records")[0]

        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "TRENDCAST_HOME": str(home),
            "TRENDCAST_DATABASE_URL": url.render_as_string(hide_password=False),
            "TRENDCAST_MLFLOW_TRACKING_URI": tracking,
            "MLFLOW_TRACKING_URI": tracking,
            "TRENDCAST_MODEL_NAME": NAME,
            "TRENDCAST_SERVING_POLL_S": "1",
        }
        body = {"rows": [row]}

        def bentoml_serve(target: str, port: int) -> list[str]:
            return [str(BIN / "bentoml"), "serve", target, "--port", str(port)]

        def uvicorn_serve(target: str, port: int) -> list[str]:
            return [
                str(BIN / "uvicorn"),
                target,
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ]

        def alone(label, command, health, path, payload, log, extra_env=None) -> dict:
            port = free_port()
            process = spawn(command(port), {**env, **(extra_env or {})}, home / log)
            services.append(process)
            try:
                wait_http(f"http://127.0.0.1:{port}{health}", process)
                return measure(label, port, path, payload, process.pid)
            finally:
                stop(process)
                services.remove(process)

        floor = alone(
            "ASGI floor (Starlette)",
            lambda port: uvicorn_serve("benchmarks._asgi_floor:app", port),
            "/readyz",
            "/predict",
            body,
            "floor.log",
        )
        floor_logged = alone(
            "ASGI floor + prediction log",
            lambda port: uvicorn_serve("benchmarks._asgi_floor_logged:app", port),
            "/readyz",
            "/predict",
            body,
            "floor-logged.log",
        )
        noop = alone(
            "no-op BentoML",
            lambda port: bentoml_serve("benchmarks._noop_service:Noop", port),
            "/readyz",
            "/predict",
            body,
            "noop.log",
        )
        noop_fixed = alone(
            "no-op BentoML + fixes",
            lambda port: bentoml_serve("benchmarks._noop_fixed_service:NoopFixed", port),
            "/readyz",
            "/predict",
            body,
            "noop-fixed.log",
        )
        quiet = alone(
            "no-op BentoML + fixes, telemetry off",
            lambda port: bentoml_serve("benchmarks._noop_quiet_service:NoopQuiet", port),
            "/readyz",
            "/predict",
            body,
            "noop-quiet.log",
        )
        theirs_result = alone(
            "mlflow models serve",
            lambda port: [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{NAME}/{first.version}",
                "--env-manager",
                "local",
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-w",
                "1",
            ],
            "/ping",
            "/invocations",
            {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}},
            "mlflow-serve.log",
        )
        loud = alone(
            "Trendcast, BentoML telemetry on",
            lambda port: bentoml_serve("serving.service:Trendcast", port),
            "/readyz",
            "/predict",
            body,
            "bento-telemetry.log",
            {"TRENDCAST_SERVING_FRAMEWORK_TELEMETRY": "1"},
        )
        default_switch = alone(
            "Trendcast, Python's default GIL switch interval",
            lambda port: bentoml_serve("serving.service:Trendcast", port),
            "/readyz",
            "/predict",
            body,
            "bento-switch.log",
            {"TRENDCAST_SERVING_SWITCH_INTERVAL_MS": "5"},
        )
        xgboost_scorer = alone(
            "Trendcast, XGBoost's own predict",
            lambda port: bentoml_serve("serving.service:Trendcast", port),
            "/readyz",
            "/predict",
            body,
            "bento-xgboost.log",
            {"TRENDCAST_NO_NUMBA": "1"},  # no compiled scorer: Booster.inplace_predict
        )
        ours_port = free_port()
        ours = spawn(bentoml_serve("serving.service:Trendcast", ours_port), env, home / "bento.log")
        services.append(ours)
        wait_http(f"http://127.0.0.1:{ours_port}/readyz", ours)
        ours_result = measure("Trendcast (BentoML)", ours_port, "/predict", body, ours.pid)

        for key, label, out, role in (
            ("floor", "ASGI floor (Starlette on uvicorn)", floor, "reference"),
            (
                "floor_logged",
                "ASGI floor recording every prediction (serving.prediction_log)",
                floor_logged,
                "reference",
            ),
            ("noop", "no-op BentoML as shipped", noop, "reference"),
            ("noop_fixed", "no-op BentoML + bentoml_fixes", noop_fixed, "reference"),
            ("noop_quiet", "no-op BentoML + fixes, telemetry off", quiet, "reference"),
            ("mlflow", "mlflow models serve", theirs_result, "baseline"),
            ("ours_telemetry", "Trendcast, BentoML telemetry on", loud, "reference"),
            (
                "ours_default_switch",
                "Trendcast, Python's default GIL switch interval (5 ms)",
                default_switch,
                "reference",
            ),
            (
                "ours_xgboost_scorer",
                "Trendcast scoring with XGBoost's inplace_predict (compiled scorer off)",
                xgboost_scorer,
                "reference",
            ),
            ("ours", "Trendcast as shipped", ours_result, "ours"),
        ):
            _record_modes(rec, key, label, out, role)
        many, floor_many = ours_result["16 clients"]["p99"], floor["16 clients"]["p99"]
        quiet_many = quiet["16 clients"]["p99"]
        rec.target(
            "p99_1c", "p99 at one connection", ours_result["sequential"]["p99"], "<=", 20, " ms"
        )
        rec.target(
            "p99_16c_vs_floor",
            f"p99 at {CONCURRENT} connections against the ASGI floor's",
            many / floor_many,
            "<=",
            3,
            "x",
        )
        rec.figure(
            "floor_logged_p99_16c_vs_floor",
            floor_logged["16 clients"]["p99"] / floor_many,
            "x",
            label=f"the prediction log's share: the ASGI floor recording every prediction, p99 at "
            f"{CONCURRENT} connections against the floor's",
            role="reference",
        )
        rec.figure(
            "ours_p99_16c_vs_floor_logged",
            many / floor_logged["16 clients"]["p99"],
            "x",
            label=f"Trendcast p99 at {CONCURRENT} connections against the floor recording every "
            "prediction",
            role="reference",
        )
        rec.figure(
            "framework_p99_16c_vs_floor",
            quiet_many / floor_many,
            "x",
            label=f"the framework's share: no-op BentoML (fixes, telemetry off) p99 at "
            f"{CONCURRENT} connections against the floor's",
            role="reference",
        )
        rec.target(
            "rps_vs_mlflow",
            f"throughput at {CONCURRENT} connections against mlflow models serve",
            ours_result["16 clients"]["rps"] / theirs_result["16 clients"]["rps"],
            ">=",
            5,
            "x",
        )
        swap = asyncio.run(
            swap_under_load(
                f"http://127.0.0.1:{ours_port}", {"rows": [row]}, client, engine, second.version
            )
        )
        rec.figure(
            "swap_requests",
            swap["requests"],
            "requests",
            label=f"swap under {CONCURRENT} streaming clients: requests answered",
        )
        rec.figure(
            "swap_failed",
            swap["failures"],
            "requests",
            role="check",
            label="swap: requests failed (counted apart from the answered ones)",
        )
        rec.figure(
            "swap_seconds",
            swap["seconds"],
            "s",
            label="swap: new version answering after the alias moved (poll every 1 s)",
        )
        rec.target("swap_failed", "no request fails during the swap", swap["failures"], "==", 0)
        fresh = real_time_path(engine, frame, ours_port)
        rec.figure(
            "realtime_median_ms",
            fresh["median"],
            "ms",
            label=f"real-time path, bar stored to predict_latest on it, median of {fresh['n']}",
        )
        rec.figure("realtime_max_ms", fresh["max"], "ms", label="real-time path, max")
        rec.target("realtime_max", "real-time path, slowest bar", fresh["max"], "<=", 1000, " ms")
        time.sleep(2)  # the last batch lingers 0.5 s before its commit
        with engine.connect() as conn:
            logged = conn.execute(sa.text("SELECT count(*) FROM serving.predictions")).scalar()
        rec.figure("log_rows", int(logged), "rows", label="prediction log rows written")
        metrics = httpx.get(f"http://127.0.0.1:{ours_port}/metrics", timeout=10).text
        for name in ("dropped", "spilled"):
            value = next(
                (
                    float(x.split()[-1])
                    for x in metrics.splitlines()
                    if x.startswith(f"trendcast_prediction_log_{name}_total")
                ),
                0.0,
            )
            rec.figure(
                f"log_{name}",
                int(value),
                "rows",
                role="check",
                label=f"prediction log rows {name} (from /metrics)",
            )
    finally:
        for service in services:
            stop(service)


if __name__ == "__main__":
    main()
