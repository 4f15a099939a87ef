"""Benchmark helpers: a scratch PostgreSQL database, timing, and the machine's description."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from trendcast import migrate
from trendcast.db import normalize_url

DATA = Path(__file__).parent / ".data"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def banner(title: str) -> None:
    print(f"== {title}")
    print(f"   {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")


@contextmanager
def scratch_database() -> Iterator[URL]:
    """A fresh migrated database on TRENDCAST_TEST_DATABASE_URL's server or an embedded one."""
    server_home = None
    server = None
    if os.environ.get("TRENDCAST_TEST_DATABASE_URL"):
        admin_url = normalize_url(os.environ["TRENDCAST_TEST_DATABASE_URL"])
        admin_url = admin_url.set(database="postgres")
    else:
        import warnings

        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

        server_home = Path(tempfile.mkdtemp(prefix="tcbench"))
        server = pgserver.get_server(server_home / "pg", cleanup_mode="stop")
        admin_url = URL.create(
            "postgresql+psycopg2",
            username="postgres",
            database="postgres",
            query={"host": str(server.get_postmaster_info().socket_dir)},
        )
    name = f"trendcast_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name)
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if server is not None:
            server.cleanup()
            shutil.rmtree(server_home, ignore_errors=True)


@contextmanager
def timed(results: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start
