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
    if _dead(info.pid):  # killed, not yet reaped (a container's init may never reap it)
        return None
    return info


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _clear_stale_pid_file(settings: Settings) -> None:
    """A postmaster killed with -9 leaves ``postmaster.pid`` and its socket's lock file; while
    its pid is a zombie, PostgreSQL (and pgserver) take them for a running server's."""
    for lock in [settings.pgdata / "postmaster.pid", *settings.pgdata.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _dead(pid):
            lock.unlink(missing_ok=True)


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
    # A postmaster killed with -9 leaves backends that hold its shared memory: end them first,
    # or the new postmaster refuses to start ("pre-existing shared memory block is still in use").
    processes.end_orphans(settings.run_dir, NAME)
    _clear_stale_pid_file(settings)
    import pgserver

    settings.pgdata.mkdir(parents=True, exist_ok=True)
    tag = processes.part_tag(settings.run_dir, NAME)
    saved = os.environ.get(processes.TAG_VARIABLE)
    os.environ[processes.TAG_VARIABLE] = tag  # pg_ctl and the postmaster inherit it
    try:
        server = pgserver.get_server(settings.pgdata, cleanup_mode=None)
        if _dead(server.get_pid()):  # pgserver's handle cached in this process: start again
            server.ensure_postgres_running()
    finally:
        if saved is None:
            os.environ.pop(processes.TAG_VARIABLE, None)
        else:
            os.environ[processes.TAG_VARIABLE] = saved
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
            sid=os.getsid(pid),  # pg_ctl starts the postmaster in a session of its own
            tag=tag,
        ),
    )
    return True, pid


def stop(settings: Settings) -> bool:
    """Stop the embedded server if ``up`` started it; True when it was running."""
    record = processes.read_record(settings.run_dir, NAME)
    if not processes.is_alive(record):
        return bool(processes.end_orphans(settings.run_dir, NAME))
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        processes.stop(settings.run_dir, NAME)  # falls back to signals on the recorded pid
    processes.forget(settings.run_dir, NAME)
    return True
