"""Cluster overhead: a grid of 32 candidates x 4 periods (128 MLflow runs) in-process (joblib,
2 processes) against a local Dask cluster of 2 one-thread workers started through the CLI, at
equal cores; the scheduler's per-task overhead (no-op tasks); and a scaling model projected
from the measured task cost and overhead to 8, 32 and 128 workers, its assumptions printed.

Both sides run the same `training.tune.run_grid` on the same stack (embedded PostgreSQL, one
MLflow server), warmed alike (a small grid first on each side), with the same XGBoost threads
per task, and must rank identically. Target (SPEC §4): cluster overhead <= 10 % at equal cores.

    .venv/bin/python -m benchmarks.bench_cluster [--candidates 32] [--periods 4] [--trees 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._results import Recorder

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, env: dict[str, str]) -> None:
    exe = Path(sys.executable).with_name("trendcast")
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"trendcast {' '.join(args)} failed:\n{done.stderr}{done.stdout}")


def grid_spec(candidates: int, periods: int, trees: int):
    from training.grid import GridSpec

    # 2017-05-20 .. 2017-09-01 split into `periods` overlapping windows of the sample EURUSD
    starts = [f"2017-05-{20 + 3 * i:02d}" for i in range(periods)]
    depths = [2, 3, 4, 5]
    weights = list(range(1, candidates // len(depths) + 1))
    return GridSpec.model_validate(
        {
            "symbol": "EURUSD",
            "interval": "1h",
            "horizon": 4,
            "metric": "ic",
            "periods": [
                {"name": f"p{i}", "start": s, "end": "2017-09-01"} for i, s in enumerate(starts)
            ],
            "params": {
                "max_depth": depths,
                "min_child_weight": weights,
                "n_estimators": [trees],
            },
            "final": {"name": "final", "start": "2017-05-20", "end": "2017-10-01"},
            "register_top": 0,
            "n_jobs": 2,
        }
    )


def timed_grid(engine, settings, spec, where) -> tuple[float, object]:
    from training.tune import run_grid
    from trendcast.db import database_url

    started = time.perf_counter()
    result = run_grid(
        engine,
        spec,
        tracking_uri=settings.tracking_uri,
        database_url=database_url("trendcast", settings).render_as_string(hide_password=False),
        datasets_dir=settings.home / "datasets",
        where=where,
    )
    return time.perf_counter() - started, result


def _noop(i: int) -> int:
    return i


def scheduler_overhead(where, tasks: int = 2000) -> float:
    """Seconds of scheduling per task: no-op tasks submitted and gathered in one batch."""
    from trendcast.cluster import map_unordered

    list(map_unordered(where, _noop, [(f"warm-{i}", (i,)) for i in range(50)]))
    started = time.perf_counter()
    list(map_unordered(where, _noop, [(f"noop-{i}", (i,)) for i in range(tasks)]))
    return (time.perf_counter() - started) / tasks


def scaling_model(
    task_s: float, overhead_s: float, tasks: int, workers: int
) -> tuple[float, float]:
    """Wall time of ``tasks`` equal tasks on W workers: ceil(tasks / W) waves of the task cost,
    plus the scheduler's per-task cost, which one scheduler pays serially; and the ideal."""
    waves = -(-tasks // workers)
    return waves * task_s + tasks * overhead_s, tasks * task_s / workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--periods", type=int, default=4)
    parser.add_argument("--trees", type=int, default=30)
    args = parser.parse_args()
    rec = Recorder(
        "cluster",
        "Cluster: the grid in-process against a two-worker Dask cluster",
        script=__file__,
        description=(
            f"A grid of {args.candidates} candidates x {args.periods} periods (one MLflow run "
            "each) through `training.tune.run_grid`, in-process (joblib, two processes) against "
            "a local Dask cluster of two one-thread workers started through the CLI, at equal "
            "cores, on the same stack (embedded PostgreSQL, one MLflow server), warmed alike (a "
            "small grid first on each side), same XGBoost threads per task; the rankings must be "
            "identical. The scheduler's per-task overhead from a batch of no-op tasks. The "
            "scaling model projects the measured task cost and overhead to more workers: "
            "ceil(tasks / W) waves of the task cost plus the per-task overhead paid serially by "
            "one scheduler."
        ),
        params={"candidates": args.candidates, "periods": args.periods, "trees": args.trees},
    )
    base = Path(tempfile.mkdtemp(prefix="tcbc"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env.update(
        TRENDCAST_HOME=str(base / "h"),
        TRENDCAST_MLFLOW_PORT=str(free_port()),
        TRENDCAST_DASK_SCHEDULER_PORT=str(free_port()),
    )
    try:
        cli("up", "--with", "cluster", "--workers", "2", env=env)
        cli("load-sample", "-s", "EURUSD", "--until", "2017-10-02T00:00Z", env=env)
        cli("features", "build", "--runner", "python", env=env)
        os.environ.update({k: v for k, v in env.items() if k.startswith("TRENDCAST_")})
        run(rec, args)
    finally:
        cli("down", env=env)
        shutil.rmtree(base, ignore_errors=True)


def run(rec: Recorder, args) -> None:
    from trendcast.cluster import Placement, placement
    from trendcast.config import Settings
    from trendcast.db import get_engine

    settings = Settings()
    engine = get_engine(settings)
    spec = grid_spec(args.candidates, args.periods, args.trees)
    warm = grid_spec(4, 1, args.trees)
    tasks = len(spec.candidates()) * len(spec.periods)
    with placement(settings, use_cluster=True) as where:
        with rec.phase("warm-up grids, both sides"):
            timed_grid(engine, settings, warm, Placement())
            timed_grid(engine, settings, warm, where)
        with rec.phase("grid in-process"):
            local_s, local = timed_grid(engine, settings, spec, Placement())
        with rec.phase("grid on the cluster"):
            dask_s, spread = timed_grid(engine, settings, spec, where)
        with rec.phase("no-op tasks on the cluster"):
            overhead_s = scheduler_overhead(where)
    same = local.ranking.equals(spread.ranking)
    ratio = dask_s / local_s
    task_s = dask_s * where.workers / tasks  # one task's cost on one one-thread worker
    rec.figure("local_s", local_s, "s", label=f"grid in-process, {tasks} runs", role="baseline")
    rec.figure("dask_s", dask_s, "s", label=f"grid on two Dask workers, {tasks} runs")
    rec.figure("task_s", task_s, "s", label="one task on one one-thread worker")
    rec.figure("overhead_ms", overhead_s * 1e3, "ms", label="scheduler overhead per task")
    rec.figure("rankings_identical", str(same), role="check", label="rankings identical")
    rec.target(
        "cluster_overhead", "cluster time against in-process at equal cores", ratio, "<=", 1.10, "x"
    )
    for workers in (2, 8, 32, 128):
        wall, ideal = scaling_model(task_s, overhead_s, tasks, workers)
        rec.figure(f"model_{workers}_s", wall, "s", label=f"scaling model: {workers} workers")
        rec.figure(
            f"model_{workers}_eff",
            100 * ideal / wall,
            "%",
            label=f"scaling model: {workers} workers, efficiency against ideal",
        )
    rec.write()
    if not same:
        raise SystemExit("rankings differ")


if __name__ == "__main__":
    main()
