"""Where the serving tail goes: py-spy samples the thread holding the GIL in Trendcast's service
worker while wrk sends one-row requests at 16 connections; prints each thread's share of the
GIL samples and the frames the samples end in. The evidence behind bench_serving's "what is
ours and what is BentoML's" (benchmarks/RESULTS.md).

Run: `.venv/bin/python -m benchmarks.profile_serving` (part of `make bench`; py-spy is a dev
dependency; sampling needs ptrace, which root or CAP_SYS_PTRACE gives).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import mlflow
import sqlalchemy as sa

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
from benchmarks.bench_serving import BIN, NAME, _move, free_port, spawn, stop, wait_http, wrk
from training.dataset import build_dataset
from training.train import train
from trendcast import feature_pipeline
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES
from trendcast.stack import mlflow_server
from trendcast.tracking import mlflow_client, use_mlflow

SECONDS = 15
RATE_HZ = 200


#: Where a frame's file lives decides who asked for the work: our service, or the framework
#: (libraries such as numpy, xgboost, pydantic and json work for whoever called them).
FRAMEWORK = (
    "_bentoml_impl/",
    "_bentoml_sdk/",
    "bentoml/",
    "starlette/",
    "uvicorn/",
    "h11/",
    "asyncio/",
    "anyio/",
    "opentelemetry/",
    "click/",
    "<frozen runpy>",
)


def _owner(frames: list[str]) -> str:
    """The nearest frame to the sample's leaf that is either ours (serving/, trendcast/) or the
    framework's (BentoML, Starlette, uvicorn, asyncio) owns the sample."""
    for frame in reversed(frames):
        where = frame.rpartition(" (")[2]
        if where.startswith(("serving/", "trendcast/")):
            return "ours: " + where.split(":", 1)[0]
        if where.startswith(FRAMEWORK) or "/bentoml/" in where:
            return "framework: " + where.split("/", 1)[0]
    return "other"


def summarise(rec: Recorder, raw: Path, top: int = 12) -> None:
    """Per-thread share of GIL-holding samples, the share by owner, the most frequent leaves."""
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        threads[thread.split(": ", 1)[-1]] += n
        leaves[frames[-1]] += n
        owners[_owner(frames)] += n
    if not total:
        raise SystemExit("py-spy recorded no sample (no ptrace permission?)")
    rec.figure("samples", total, "samples", label="samples with the GIL held")
    for i, (name, n) in enumerate(threads.most_common()):
        rec.figure(f"thread_{i}", 100 * n / total, "%", label=f"thread {name}")
    for i, (owner, n) in enumerate(owners.most_common()):
        rec.figure(f"owner_{i}", 100 * n / total, "%", label=f"asked for by {owner}")
    for i, (frame, n) in enumerate(leaves.most_common(top)):
        rec.figure(f"leaf_{i}", 100 * n / total, "%", label=f"leaf frame {frame[:90]}")


def main() -> None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists() or not shutil.which("wrk"):
        raise SystemExit("profile_serving needs py-spy (dev dependency) and wrk (`make wrk`)")
    rec = Recorder(
        "profile_serving",
        "Serving profile: who holds the GIL in Trendcast's worker under load",
        script=__file__,
        description=(
            f"py-spy samples the thread holding the GIL in the service's worker at {RATE_HZ} Hz "
            f"for {SECONDS} s while wrk sends one-row requests at 16 connections. Each sample "
            "is owned by the nearest frame that is ours (`serving/`, `trendcast/`) or the "
            "framework's (BentoML, Starlette, uvicorn, asyncio); libraries count for their "
            "caller. Sampling slows the service: latency figures are in bench_serving."
        ),
        params={"seconds": SECONDS, "rate_hz": RATE_HZ},
        measures=["serving"],
    )
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="tcps") as tmp:
        home = Path(tmp)
        engine = sa.create_engine(url)
        frame, origin = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
        load_frame(engine, frame, symbol="EURUSD", interval="1h", source="bench", origin=origin)
        feature_pipeline.build(engine)
        dataset = build_dataset(engine, "EURUSD", "1h", home / "snapshots", horizon=4)
        admin = url.set(database="postgres")
        with mlflow_server.throwaway(admin, home / "mlflow") as (tracking, _):
            use_mlflow(tracking)
            mlflow.set_experiment("bench")
            first = train(
                engine,
                dataset,
                symbol="EURUSD",
                interval="1h",
                model_name=NAME,
                params={"n_estimators": 200},
            )
            _move(mlflow_client(tracking), engine, first.version)
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
            port = free_port()
            command = [str(BIN / "bentoml"), "serve", "serving.service:Trendcast"]
            service = spawn([*command, "--port", str(port)], env, home / "serving.log")
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz", service)
                body = {"rows": [row]}
                wrk(port, "/predict", body, 1, 3)  # warm-up
                raw = home / "profile.txt"
                sampler = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--gil",
                        "--threads",
                        "--subprocesses",
                        "-r",
                        str(RATE_HZ),
                        "-d",
                        str(SECONDS),
                        "-f",
                        "raw",
                        "-o",
                        str(raw),
                        "--pid",
                        str(service.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1)
                load = wrk(port, "/predict", body, 16, SECONDS - 2)
                _, errors = sampler.communicate(timeout=SECONDS + 60)
                rec.figure(
                    "rps_sampled", load["rps"], "req/s", label="throughput under the sampler"
                )
                if not raw.exists():
                    raise SystemExit(f"py-spy failed: {errors.decode(errors='replace')[-300:]}")
                summarise(rec, raw)
            finally:
                stop(service)
        engine.dispose()
    rec.write()


if __name__ == "__main__":
    sys.exit(main())
