"""Embedded PostgreSQL 16 (pgserver) under ``<home>/pg``, listening on a Unix socket only.

Used when ``TRENDCAST_DATABASE_URL`` is unset. ``pg_ctl`` runs the server detached, so it outlives
``trendcast up``; its pid lives in ``postmaster.pid`` and our record, and ``down`` stops it cleanly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import psutil
from sqlalchemy.engine import URL

from trendcast.config import Settings
from trendcast.errors import DatabaseUnavailable
from trendcast.stack import processes

NAME = "postgres"
logging.getLogger("pgserver").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def _postmaster(settings: Settings):
    from pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(settings.pgdata)
    except (AssertionError, ValueError):  # a half-written postmaster.pid while starting
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def embedded_server_url(settings: Settings) -> URL:
    """URL of the running embedded server (database ``postgres``), or advice when it is down."""
    info = _postmaster(settings)
    if info is None:
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL under {settings.pgdata} is not running: start it with "
            "`trendcast up`, or set TRENDCAST_DATABASE_URL to a server that is running."
        )
    return URL.create(
        "postgresql+psycopg2",
        username="postgres",
        database="postgres",
        query={"host": str(info.socket_dir)},
    )


def throwaway_server(pgdata: Path):
    """An embedded server for tests and benchmarks, stopped by ``.cleanup()`` or at exit;
    returns (server, URL of its ``postgres`` database)."""
    import pgserver

    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    url = URL.create(
        "postgresql+psycopg2",
        username="postgres",
        database="postgres",
        query={"host": str(server.get_postmaster_info().socket_dir)},
    )
    return server, url


def start(settings: Settings) -> tuple[bool, int]:
    """Start the embedded server unless it runs; return (started_now, postmaster pid)."""
    info = _postmaster(settings)
    if info is not None:
        return False, info.pid
    import pgserver

    settings.pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(settings.pgdata, cleanup_mode=None)
    pid = server.get_pid()
    assert pid is not None
    processes.write_record(
        settings.run_dir,
        processes.ProcessRecord(
            name=NAME,
            pid=pid,
            create_time=psutil.Process(pid).create_time(),
            command=["pg_ctl", "start", "-D", str(settings.pgdata)],
            log=str(settings.pgdata / "log"),
        ),
    )
    return True, pid


def stop(settings: Settings) -> bool:
    """Stop the embedded server if ``up`` started it; True when it was running."""
    record = processes.read_record(settings.run_dir, NAME)
    if not processes.is_alive(record):
        processes.forget(settings.run_dir, NAME)
        return False
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        processes.stop(settings.run_dir, NAME)  # falls back to signals on the recorded pid
    processes.forget(settings.run_dir, NAME)
    return True
