"""``trendcast up | status | down``: start, inspect and stop the local stack's parts.

Each part is started detached with a pid record and a log under ``<home>/run``; ``up`` reuses
what already runs, and ``down`` stops exactly what ``up`` recorded, nothing else.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trendcast import migrate, runs
from trendcast.config import Settings
from trendcast.db import check_connection, database_url, ensure_database, masked
from trendcast.errors import DatabaseUnavailable, TrendcastError
from trendcast.stack import (
    dashboard_server,
    dask_cluster,
    mlflow_server,
    postgres,
    processes,
    replay_server,
    serving_server,
)


@dataclass(frozen=True)
class PartStatus:
    name: str
    # "up", "down", "external" (a server Trendcast did not start) or "orphaned" (the recorded
    # process died, some of its processes still run: `up` ends them and restarts the part)
    state: str
    url: str
    version: str = ""
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state in {"up", "external"}


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _port_holder(port: int) -> str:
    """``pid N (name)`` of the process listening on ``port``, or "" when the OS will not say."""
    import psutil

    try:
        listening = [
            c
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        ]
    except psutil.Error:
        return ""
    for conn in listening:
        try:
            return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
        except psutil.Error:
            return f"pid {conn.pid}"
    return ""


def _taken_port_message(host: str, port: int, variable: str) -> str:
    holder = _port_holder(port)
    held = f" by {holder}," if holder else ","
    return f"port {port} on {host} is taken{held} not by Trendcast: stop it or set {variable}"


def _tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until(
    ready: Callable[[], bool], record: processes.ProcessRecord, what: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not processes.is_alive(record):
            raise TrendcastError(
                f"{what} exited while starting; last lines of {record.log}:\n{_tail(record.log)}"
            )
        time.sleep(0.25)
    raise TrendcastError(
        f"{what} not healthy after {timeout_s:.0f} s; see {record.log}:\n{_tail(record.log)}"
    )


def up_database(settings: Settings) -> PartStatus:
    """Start (or reuse) PostgreSQL, create both databases and apply migrations."""
    detail = ""
    if settings.embedded_database:
        started, pid = postgres.start(settings)
        detail = f"pid {pid}, {'started' if started else 'already running'}"
    url = database_url("trendcast", settings)
    created = ensure_database(url)
    ensure_database(database_url("mlflow", settings))
    migrate.upgrade(url)
    if created:
        detail = f"{detail}; created database {url.database}".lstrip("; ")
    return _database_status(settings, detail)


def _up_service(
    settings: Settings,
    name: str,
    label: str,
    port: int,
    port_variable: str,
    probe: Callable[[], object],
    start: Callable[[], processes.ProcessRecord],
    describe: Callable[[str], PartStatus],
) -> PartStatus:
    """Reuse the recorded process when it answers (waiting while it starts), else end what is
    left of it (orphans of a killed process hold the port and answer) and start it."""
    processes.end_orphans(settings.run_dir, name)
    record = processes.read_record(settings.run_dir, name)
    if processes.is_alive(record):
        assert record is not None
        _wait_until(lambda: probe() is not None, record, label, settings.startup_timeout_s)
        return describe("already running")
    if _port_in_use(settings.host, port):
        raise TrendcastError(_taken_port_message(settings.host, port, port_variable))
    record = start()
    _wait_until(lambda: probe() is not None, record, label, settings.startup_timeout_s)
    return describe(f"pid {record.pid}, started")


def up_mlflow(settings: Settings) -> PartStatus:
    return _up_service(
        settings,
        mlflow_server.NAME,
        "MLflow",
        settings.mlflow_port,
        "TRENDCAST_MLFLOW_PORT",
        lambda: mlflow_server.probe(settings),
        lambda: mlflow_server.start(settings),
        lambda detail: _mlflow_status(settings, detail),
    )


def up_replay(settings: Settings) -> PartStatus:
    return _up_service(
        settings,
        replay_server.NAME,
        "exchange replay",
        settings.replay_port,
        "TRENDCAST_REPLAY_PORT",
        lambda: replay_server.probe(settings),
        lambda: replay_server.start(settings),
        lambda detail: _replay_status(settings, detail),
    )


def up_serving(settings: Settings) -> PartStatus:
    return _up_service(
        settings,
        serving_server.NAME,
        "prediction service",
        settings.bentoml_port,
        "TRENDCAST_BENTOML_PORT",
        lambda: serving_server.probe(settings),
        lambda: serving_server.start(settings),
        lambda detail: _serving_status(settings, detail),
    )


def up_dashboard(settings: Settings) -> PartStatus:
    return _up_service(
        settings,
        dashboard_server.NAME,
        "dashboard",
        settings.streamlit_port,
        "TRENDCAST_STREAMLIT_PORT",
        lambda: dashboard_server.probe(settings),
        lambda: dashboard_server.start(settings),
        lambda detail: _dashboard_status(settings, detail),
    )


def up_cluster(settings: Settings, workers: int | None = None) -> PartStatus:
    """The scheduler, then one `dask worker --nworkers N` (N: asked, else as many as were
    recorded, else TRENDCAST_DASK_WORKERS); ready once N workers have joined."""
    wanted = workers or dask_cluster.recorded_workers(settings) or settings.dask_workers
    scheduler = _up_service(
        settings,
        dask_cluster.NAME,
        "dask scheduler",
        settings.dask_scheduler_port,
        "TRENDCAST_DASK_SCHEDULER_PORT",
        lambda: dask_cluster.probe(settings),
        lambda: dask_cluster.start_scheduler(settings),
        lambda detail: PartStatus(dask_cluster.NAME, "up", "", detail=detail),
    )
    processes.end_orphans(settings.run_dir, dask_cluster.WORKERS)
    record = processes.read_record(settings.run_dir, dask_cluster.WORKERS)
    started = "already running"
    new_scheduler = scheduler.detail != "already running"
    if processes.is_alive(record) and (
        new_scheduler or dask_cluster.recorded_workers(settings) != wanted
    ):
        # Workers that lost their scheduler close down once their task ends; another size
        # asked: either way, a fresh set of workers.
        processes.stop(settings.run_dir, dask_cluster.WORKERS)
        record = None
    if not processes.is_alive(record):
        record = dask_cluster.start_workers(settings, wanted)
        started = f"pid {record.pid}, started"
    assert record is not None

    def joined() -> bool:
        info = dask_cluster.probe(settings)
        return info is not None and info["workers"] >= wanted

    _wait_until(joined, record, f"{wanted} dask worker(s)", settings.startup_timeout_s)
    return _cluster_status(settings, started)


#: Parts `up --with NAME` starts on request, beside PostgreSQL and MLflow.
OPTIONAL_PARTS: dict[str, Callable[[Settings], PartStatus]] = {
    "replay": up_replay,
    "serving": up_serving,
    "dashboard": up_dashboard,
    "cluster": up_cluster,
}


def up(
    settings: Settings,
    on_part: Callable[[PartStatus], None] | None = None,
    with_parts: list[str] | None = None,
    workers: int | None = None,
) -> list[PartStatus]:
    """Start PostgreSQL and MLflow, the parts asked for and every part recorded as up before;
    ``workers``: the local cluster's size (with ``cluster``)."""
    unknown = sorted(set(with_parts or []) - set(OPTIONAL_PARTS))
    if unknown:
        raise TrendcastError(
            f"--with {', '.join(unknown)}: unknown part; choose from {', '.join(OPTIONAL_PARTS)}"
        )
    # A part that was up (its record is still there) comes back too: `up` after a crash.
    recorded = [
        part
        for part in OPTIONAL_PARTS
        if processes.read_record(settings.run_dir, _PORTS[part][0]) is not None
    ]
    wanted = list(dict.fromkeys([*(with_parts or []), *recorded]))
    for part in ["mlflow", *wanted]:  # orphans of a killed part hold its port: end them first
        processes.end_orphans(settings.run_dir, _PORTS[part][0])
    _check_ports(settings, ["mlflow", *wanted])
    parts = []
    optional = {**OPTIONAL_PARTS, "cluster": lambda s: up_cluster(s, workers)}
    starters = [up_database, up_mlflow, *(optional[name] for name in wanted)]
    for start in starters:
        part = start(settings)
        parts.append(part)
        if on_part:
            on_part(part)
    return parts


#: Each service part: its process record name, its port setting and the variable that moves it.
_PORTS: dict[str, tuple[str, str, str]] = {
    "mlflow": (mlflow_server.NAME, "mlflow_port", "TRENDCAST_MLFLOW_PORT"),
    "replay": (replay_server.NAME, "replay_port", "TRENDCAST_REPLAY_PORT"),
    "serving": (serving_server.NAME, "bentoml_port", "TRENDCAST_BENTOML_PORT"),
    "dashboard": (dashboard_server.NAME, "streamlit_port", "TRENDCAST_STREAMLIT_PORT"),
    "cluster": (dask_cluster.NAME, "dask_scheduler_port", "TRENDCAST_DASK_SCHEDULER_PORT"),
}


def _check_ports(settings: Settings, parts: list[str]) -> None:
    """Before anything starts: every port a part would take must be free or held by that part."""
    taken = []
    for part in dict.fromkeys(parts):
        name, field, variable = _PORTS[part]
        port = getattr(settings, field)
        ours = processes.is_alive(processes.read_record(settings.run_dir, name))
        if not ours and _port_in_use(settings.host, port):
            taken.append(_taken_port_message(settings.host, port, variable))
    if taken:
        raise TrendcastError("; ".join(taken) + "; nothing was started")


def _database_status(settings: Settings, detail: str = "") -> PartStatus:
    external = not settings.embedded_database
    try:
        url = database_url("trendcast", settings)
        version = check_connection(url, timeout_s=3)
    except DatabaseUnavailable as exc:
        shown = masked(settings.database_url) if external else str(settings.pgdata)
        return PartStatus("postgres", "down", shown, detail=str(exc))
    revision = migrate.current_revision(url)
    schema = f"schema {revision}" if revision else "schema not migrated: run `trendcast db upgrade`"
    ingestion = runs.ingestion_note(url) if revision else ""
    return PartStatus(
        "postgres",
        "external" if external else "up",
        masked(url),
        f"PostgreSQL {version}",
        "; ".join(x for x in (detail, schema, ingestion) if x),
    )


def _mlflow_status(settings: Settings, detail: str = "") -> PartStatus:
    version = mlflow_server.probe(settings)
    url = mlflow_server.url(settings)
    if version is None:
        return PartStatus("mlflow", "down", url, detail=detail or "not answering /health")
    artifacts = f"artifacts {settings.artifacts_destination}"
    return PartStatus(
        "mlflow", "up", url, f"MLflow {version}", "; ".join(x for x in (detail, artifacts) if x)
    )


def _replay_status(settings: Settings, detail: str = "") -> PartStatus:
    state = replay_server.probe(settings)
    url = replay_server.url(settings)
    if state is None:
        return PartStatus("replay", "down", url, detail=detail or "not answering")
    clock = f"clock {state['clock'][:16]}, x{state['speed']:g}, {len(state['symbols'])} symbol(s)"
    return PartStatus(
        "replay", "up", url, "exchange replay", "; ".join(x for x in (detail, clock) if x)
    )


def _serving_status(settings: Settings, detail: str = "") -> PartStatus:
    state = serving_server.probe(settings)
    url = serving_server.url(settings)
    if state is None:
        return PartStatus("serving", "down", url, detail=detail or "not answering")
    ready = state.get("model") or f"not ready: {state.get('reason')}"
    if state.get("status") == "degraded":
        ready = f"{ready}; degraded: MLflow {state.get('mlflow')}"
    return PartStatus(
        "serving", "up", url, "BentoML service", "; ".join(x for x in (detail, ready) if x)
    )


def _dashboard_status(settings: Settings, detail: str = "") -> PartStatus:
    url = dashboard_server.url(settings)
    if dashboard_server.probe(settings) is None:
        return PartStatus("dashboard", "down", url, detail=detail or "not answering")
    return PartStatus("dashboard", "up", url, "Streamlit", detail)


def _cluster_status(settings: Settings, detail: str = "") -> PartStatus:
    import distributed

    url = dask_cluster.address(settings)
    info = dask_cluster.probe(settings)
    if info is None:
        return PartStatus("cluster", "down", url, detail=detail or "scheduler not answering")
    size = f"{info['workers']} worker(s), {info['threads']} thread(s)"
    return PartStatus(
        "cluster",
        "up",
        url,
        f"Dask {distributed.__version__}",
        "; ".join(x for x in (detail, size) if x),
    )


def _cluster_workers_status(settings: Settings) -> PartStatus:
    """The worker process: the truth about it even while the scheduler is down."""
    record = processes.read_record(settings.run_dir, dask_cluster.WORKERS)
    url = dask_cluster.address(settings)
    crashed = _crashed(settings, dask_cluster.WORKERS, url)
    if crashed or record is None:
        return crashed or PartStatus(dask_cluster.WORKERS, "down", url)
    nannies = len(processes.members(record)) - 1
    wanted = dask_cluster.recorded_workers(settings)
    return PartStatus(
        dask_cluster.WORKERS,
        "up",
        url,
        "dask worker",
        f"pid {record.pid}, {wanted} worker(s) asked, {max(nannies, 0)} process(es) under it",
    )


def _crashed(settings: Settings, name: str, url: str) -> PartStatus | None:
    """The truth about a part whose recorded process died: "orphaned" while some of its
    processes still run (they may even answer on its port), else "down"; None when the
    recorded process runs or nothing was recorded."""
    record = processes.read_record(settings.run_dir, name)
    if record is None or processes.is_alive(record):
        return None
    left = processes.members(record)
    if left:
        return PartStatus(
            name,
            "orphaned",
            url,
            detail=f"pid {record.pid} started by `up` is gone; still running: "
            f"{processes.describe(left)}; `trendcast up` ends them and restarts {name}, "
            "`trendcast down` stops them",
        )
    return PartStatus(
        name,
        "down",
        url,
        detail=f"pid {record.pid} started by `up` is gone; `trendcast up` restarts {name}",
    )


def status(settings: Settings) -> list[PartStatus]:
    database = _database_status(settings)
    if settings.embedded_database:
        database = _crashed(settings, postgres.NAME, database.url) or database
    parts = [
        database,
        _crashed(settings, mlflow_server.NAME, mlflow_server.url(settings))
        or _mlflow_status(settings),
    ]
    for name, url, describe in (
        (replay_server.NAME, replay_server.url, _replay_status),
        (dashboard_server.NAME, dashboard_server.url, _dashboard_status),
        (serving_server.NAME, serving_server.url, _serving_status),
    ):
        if processes.read_record(settings.run_dir, name) is not None:
            parts.append(_crashed(settings, name, url(settings)) or describe(settings))
    if processes.read_record(settings.run_dir, dask_cluster.NAME) is not None:
        parts.append(
            _crashed(settings, dask_cluster.NAME, dask_cluster.address(settings))
            or _cluster_status(settings)
        )
    if processes.read_record(settings.run_dir, dask_cluster.WORKERS) is not None:
        parts.append(_cluster_workers_status(settings))
    return parts


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started (MLflow first, then the embedded PostgreSQL); names stopped."""
    stopped = []
    for name in (dask_cluster.WORKERS, dask_cluster.NAME):  # workers first: no reconnect storm
        if processes.stop(settings.run_dir, name):
            stopped.append(name)
    if processes.stop(settings.run_dir, dashboard_server.NAME):
        stopped.append(dashboard_server.NAME)
    if processes.stop(settings.run_dir, serving_server.NAME):
        stopped.append(serving_server.NAME)
    if processes.stop(settings.run_dir, replay_server.NAME):
        stopped.append(replay_server.NAME)
    if processes.stop(settings.run_dir, mlflow_server.NAME):
        stopped.append(mlflow_server.NAME)
    if settings.embedded_database and postgres.stop(settings):
        stopped.append(postgres.NAME)
    return stopped
