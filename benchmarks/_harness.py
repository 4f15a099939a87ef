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

from sqlalchemy.engine import URL

from trendcast import migrate
from trendcast.config import Settings
from trendcast.db import create_database, drop_database, normalize_url
from trendcast.stack.postgres import throwaway_server

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
    server, server_home = None, None
    external = Settings().test_database_url
    if external:
        admin_url = normalize_url(external)
    else:
        server_home = Path(tempfile.mkdtemp(prefix="tcbench"))
        server, admin_url = throwaway_server(server_home / "pg")
    url = create_database(admin_url, f"trendcast_bench_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    try:
        yield url
    finally:
        drop_database(admin_url, url.database)
        if server is not None:
            server.cleanup()
            shutil.rmtree(server_home, ignore_errors=True)


@contextmanager
def timed(results: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start
