"""Crash recovery of every stack part: kill -9 of a part's process, then `status` tells the
truth (never "up" while an orphan answers on the port), `up` ends the orphans the part owns and
brings it back, and `down` leaves no process of ours.

Before: kill -9 of the service's parent left its worker holding the port and answering,
`status` said "up", `up --with serving` failed on the taken port and `down` did not stop it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import run_cli

from trendcast.stack import processes

pytestmark = pytest.mark.slow

PARTS = ["postgres", "mlflow", "replay", "serving", "dashboard", "cluster", "cluster-workers"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def records(home) -> dict[str, processes.ProcessRecord]:
    return {
        p.stem: processes.ProcessRecord(**json.loads(p.read_text()))
        for p in (home / "run").glob("*.json")
    }


def status(env) -> tuple[int, dict[str, dict]]:
    result = run_cli("status", "--json", env=env)
    return result.returncode, {p["name"]: p for p in json.loads(result.stdout)}


def wait_dead(pid: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} still runs")


def ours(home) -> list[psutil.Process]:
    """Every process tagged by this stack, whatever its session or parent."""
    prefix = str((home / "run").resolve()) + "#"
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(processes.TAG_VARIABLE, "").startswith(prefix):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def stack():
    # Not under pytest's temporary root: every pytest session on the machine resets that to
    # mode 700, and a PostgreSQL restarted under it (as user pgserver) could not read its data.
    base = Path(tempfile.mkdtemp(prefix="tccr"))
    home = base / "h"  # short: the embedded server's socket lives under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env.update(
        TRENDCAST_HOME=str(home),
        TRENDCAST_MLFLOW_PORT=str(free_port()),
        TRENDCAST_REPLAY_PORT=str(free_port()),
        TRENDCAST_BENTOML_PORT=str(free_port()),
        TRENDCAST_STREAMLIT_PORT=str(free_port()),
        TRENDCAST_DASK_SCHEDULER_PORT=str(free_port()),
        COLUMNS="200",
    )
    up = run_cli(
        "up",
        *("--with", "replay", "--with", "serving", "--with", "dashboard", "--with", "cluster"),
        *("--workers", "2"),
        env=env,
        timeout=600,
    )
    assert up.returncode == 0, up.stderr + up.stdout
    yield env, home
    run_cli("down", env=env)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("part", PARTS)
def test_kill_9_of_a_part_then_status_tells_the_truth_and_up_recovers(stack, part):
    env, home = stack
    before = records(home)[part]
    members = processes.members(before)
    assert processes.is_alive(before) and members
    os.kill(before.pid, signal.SIGKILL)
    wait_dead(before.pid)

    code, parts = status(env)
    assert code == 1, parts
    assert parts[part]["state"] in {"down", "orphaned"}, parts[part]
    assert f"pid {before.pid} started by `up` is gone" in parts[part]["detail"]
    left = [p for p in members if p.pid != before.pid and p.is_running()]
    if part in ("serving", "mlflow"):  # their workers outlive the parent: the case
        assert left and parts[part]["state"] == "orphaned", parts[part]
        assert all(f"pid {p.pid} " in parts[part]["detail"] for p in left)

    up = run_cli("up", env=env, timeout=600)  # no --with: a recorded part comes back by itself
    assert up.returncode == 0, up.stderr + up.stdout
    after = records(home)[part]
    assert after.pid != before.pid and processes.is_alive(after)
    assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    code, parts = status(env)
    assert code == 0 and all(p["state"] == "up" for p in parts.values()), parts
    if part.startswith("cluster"):  # both workers joined the (possibly new) scheduler again
        assert "2 worker(s), 2 thread(s)" in parts["cluster"]["detail"], parts["cluster"]


def test_kill_9_of_the_service_worker_is_recovered(stack):
    """The worker (not the parent) killed: BentoML's arbiter starts a new one."""
    env, home = stack
    record = records(home)["serving"]
    workers = [p for p in processes.members(record) if p.pid != record.pid]
    assert workers
    for worker in workers:
        worker.kill()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        code, parts = status(env)
        if code == 0 and parts["serving"]["state"] == "up":
            break
        time.sleep(1)
    assert parts["serving"]["state"] == "up", parts
    assert records(home)["serving"] == record  # the same parent, a new worker
    fresh = [p for p in processes.members(record) if p.pid != record.pid]
    assert fresh and not {p.pid for p in fresh} & {p.pid for p in workers}


def test_down_after_crashes_leaves_no_process_of_ours(stack):
    env, home = stack
    record = records(home)["serving"]
    os.kill(record.pid, signal.SIGKILL)  # leave an orphan behind for `down` to find
    wait_dead(record.pid)
    assert ours(home)
    down = run_cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "serving" in down.stdout
    deadline = time.monotonic() + 20
    while ours(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(home)
    assert records(home) == {}
