"""Detached processes with a pid file and a log under ``.trendcast/run``.

A pid file records the pid *and* the process start time, so ``down`` never signals a process that
merely reused the pid. Each process leads its own session, so stopping it stops its children too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    command: list[str]
    log: str


def _record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def read_record(run_dir: Path, name: str) -> ProcessRecord | None:
    path = _record_path(run_dir, name)
    if not path.exists():
        return None
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None


def write_record(run_dir: Path, record: ProcessRecord) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = _record_path(run_dir, record.name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(_record_path(run_dir, record.name))


def forget(run_dir: Path, name: str) -> None:
    _record_path(run_dir, name).unlink(missing_ok=True)


def is_alive(record: ProcessRecord | None) -> bool:
    """True when the recorded process still runs (same pid and same start time)."""
    if record is None:
        return False
    try:
        proc = psutil.Process(record.pid)
        return (
            abs(proc.create_time() - record.create_time) < 1.0
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def spawn(
    run_dir: Path, name: str, command: list[str], env: dict[str, str] | None = None
) -> ProcessRecord:
    """Start ``command`` detached (own session), log to ``run_dir/NAME.log``, record its pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            close_fds=True,
        )
    record = ProcessRecord(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        command=command,
        log=str(log_path),
    )
    write_record(run_dir, record)
    return record


def stop(run_dir: Path, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the recorded process and its session (SIGTERM, then SIGKILL); True if one ran."""
    record = read_record(run_dir, name)
    if not is_alive(record):
        forget(run_dir, name)
        return False
    assert record is not None
    try:
        group = [record.pid, *(c.pid for c in psutil.Process(record.pid).children(recursive=True))]
    except psutil.Error:
        group = [record.pid]
    _signal_session(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in group):
        _reap(record.pid)
        time.sleep(0.1)
    if any(psutil.pid_exists(p) for p in group):
        _signal_session(record.pid, signal.SIGKILL)
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(record.pid)
    forget(run_dir, name)
    return True


def _signal_session(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the process leads its own session, so its group id is its pid


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent (tests), so no zombie lingers."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
