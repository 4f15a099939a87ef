"""Detached processes with a record and a log under ``.trendcast/run``.

A record holds the pid *and* the process start time, so nothing ever signals a process that merely
reused the pid; the session the process leads; and a tag (``TRENDCAST_PART_TAG``, passed in the
environment and inherited by every descendant). After a ``kill -9`` of the recorded process its
children live on (re-parented to init, and a BentoML worker even runs in a session of its own):
:func:`members` finds them by session or tag, started no earlier than the record, so ``status``
can report them, ``up`` can end them before it restarts the part, and ``down`` leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

#: Environment variable carrying a part's tag to all its descendants.
TAG_VARIABLE = "TRENDCAST_PART_TAG"


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    command: list[str]
    log: str
    sid: int | None = None  # the session the part's processes share (None: older records)
    tag: str | None = None  # TRENDCAST_PART_TAG in the environment of every descendant


def part_tag(run_dir: Path, name: str) -> str:
    """The tag of part ``name`` of the stack whose run folder is ``run_dir`` (unique per home)."""
    return f"{Path(run_dir).resolve()}#{name}"


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


def members(record: ProcessRecord | None) -> list[psutil.Process]:
    """Every live process of the part: in the recorded session or carrying the recorded tag,
    and started no earlier than the recorded process (so a reused session id or pid is not
    mistaken for ours). Never this process or its ancestors."""
    if record is None or (record.sid is None and record.tag is None):
        return []
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["create_time", "status"]):
        try:
            if proc.pid in own or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["create_time"] < record.create_time - 1.0:
                continue
            same_session = record.sid is not None and os.getsid(proc.pid) == record.sid
            if same_session or (
                record.tag is not None and proc.environ().get(TAG_VARIABLE) == record.tag
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def orphans(run_dir: Path, name: str) -> list[psutil.Process]:
    """The part's processes still running although the recorded one is gone."""
    record = read_record(run_dir, name)
    if record is None or is_alive(record):
        return []
    return members(record)


def describe(procs: list[psutil.Process]) -> str:
    """``pid 12 (python), pid 13 (postgres)`` for a status line."""
    shown = []
    for proc in procs:
        try:
            shown.append(f"pid {proc.pid} ({proc.name()})")
        except psutil.Error:
            shown.append(f"pid {proc.pid}")
    return ", ".join(shown)


def spawn(
    run_dir: Path, name: str, command: list[str], env: dict[str, str] | None = None
) -> ProcessRecord:
    """Start ``command`` detached (own session, tagged), log to ``run_dir/NAME.log``, record it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{name}.log"
    tag = part_tag(run_dir, name)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), TAG_VARIABLE: tag},
            start_new_session=True,
            close_fds=True,
        )
    record = ProcessRecord(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        command=command,
        log=str(log_path),
        sid=proc.pid,  # start_new_session: the process leads a session of its own
        tag=tag,
    )
    write_record(run_dir, record)
    return record


def terminate(procs: list[psutil.Process], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL whatever still runs after ``timeout_s``; reap our own children."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        for proc in procs:
            _reap(proc.pid)
        time.sleep(0.1)
    for proc in procs:
        if _running(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    psutil.wait_procs(procs, timeout=5)
    for proc in procs:
        _reap(proc.pid)


def end_orphans(run_dir: Path, name: str, timeout_s: float = 15.0) -> list[int]:
    """Stop what is left of a part whose recorded process died; forget the record; the pids."""
    left = orphans(run_dir, name)
    if left:
        terminate(left, timeout_s)
    record = read_record(run_dir, name)
    if record is not None and not is_alive(record):
        forget(run_dir, name)
    return [p.pid for p in left]


def stop(run_dir: Path, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the part: the recorded process, its session and every tagged descendant (SIGTERM,
    then SIGKILL); True if any of them ran."""
    record = read_record(run_dir, name)
    if record is None:
        return False
    procs = members(record)
    alive = is_alive(record)
    if alive:
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(record.pid)
            known = {p.pid for p in procs}
            procs += [main, *(c for c in main.children(recursive=True) if c.pid not in known)]
        procs = list({p.pid: p for p in procs}.values())
    if procs:
        terminate(procs, timeout_s)
    forget(run_dir, name)
    return alive or bool(procs)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent (tests), so no zombie lingers."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
