"""A local Dask cluster as a stack part (`trendcast up --with cluster [--workers N]`).

Two recorded processes, like every part: ``cluster`` is the ``dask scheduler``, and
``cluster-workers`` is one ``dask worker --nworkers N`` whose nannies each keep one worker
process alive (a worker killed with -9 is restarted by its nanny, and the scheduler reruns its
tasks). Workers get the effective settings in their environment, so a task on a worker reads
the same database, MLflow server and home as the command that submitted it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from trendcast.config import Settings
from trendcast.stack import processes

NAME = "cluster"
WORKERS = "cluster-workers"
REPO = Path(__file__).resolve().parents[2]  # training/ lives beside trendcast/


def address(settings: Settings) -> str:
    return f"tcp://{settings.host}:{settings.dask_scheduler_port}"


def _dask() -> str:
    return str(Path(sys.executable).with_name("dask"))


def scheduler_command(settings: Settings) -> list[str]:
    return [
        _dask(),
        "scheduler",
        "--host",
        settings.host,
        "--port",
        str(settings.dask_scheduler_port),
        "--no-dashboard",
    ]


def workers_command(settings: Settings, workers: int) -> list[str]:
    return [
        _dask(),
        "worker",
        address(settings),
        "--nworkers",
        str(workers),
        "--nthreads",
        str(settings.dask_worker_threads),
        "--no-dashboard",
        "--host",
        settings.host,
        "--name",
        "trendcast",
        "--local-directory",
        str(settings.run_dir / "dask"),
        # a worker left without its scheduler exits instead of waiting for ever
        "--death-timeout",
        "60",
    ]


def recorded_workers(settings: Settings) -> int | None:
    """The worker count of the recorded worker process (``up`` after a crash restarts as many)."""
    record = processes.read_record(settings.run_dir, WORKERS)
    if record is None:
        return None
    with contextlib.suppress(ValueError, IndexError):
        return int(record.command[record.command.index("--nworkers") + 1])
    return None


def probe(settings: Settings, timeout_s: float = 2.0) -> dict | None:
    """``{"workers": N, "threads": T}`` when the scheduler answers, else None."""
    return scheduler_info(address(settings), timeout_s)


def scheduler_info(addr: str, timeout_s: float = 2.0) -> dict | None:
    from distributed import Client

    try:
        with Client(addr, timeout=timeout_s, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            return {
                "workers": len(workers),
                "threads": sum(w.get("nthreads", 0) for w in workers),
            }
    except (OSError, TimeoutError):
        return None


def _env(settings: Settings) -> dict[str, str]:
    # The workers import `training` from this checkout; MLflow runs they log carry its commit.
    return {**settings.as_env(), "PYTHONPATH": str(REPO)}


def start_scheduler(settings: Settings) -> processes.ProcessRecord:
    return processes.spawn(settings.run_dir, NAME, scheduler_command(settings), _env(settings))


def start_workers(settings: Settings, workers: int) -> processes.ProcessRecord:
    (settings.run_dir / "dask").mkdir(parents=True, exist_ok=True)
    return processes.spawn(
        settings.run_dir, WORKERS, workers_command(settings, workers), _env(settings)
    )
