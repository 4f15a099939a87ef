"""Where a wide job runs: in this process (joblib on local cores), or on a Dask cluster.

A command runs on Dask when ``TRENDCAST_DASK_SCHEDULER`` names a scheduler, or when it is given
``--cluster`` and the local cluster part runs (`trendcast up --with cluster`). Tasks carry
stable keys, so the scheduler reruns a task whose worker died under the same key, and a task can
find what an earlier attempt of itself left behind. A scheduler lost mid-run ends the command
with one line (:class:`ClusterLost`); results already gathered stay wherever they were written.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from trendcast.config import Settings
from trendcast.errors import InputError, TrendcastError
from trendcast.stack import dask_cluster, processes


class ClusterUnavailable(TrendcastError):
    """The Dask scheduler does not answer, or has no worker."""


class ClusterLost(TrendcastError):
    """The Dask scheduler went away while tasks were running."""


@dataclass
class Placement:
    """Where tasks run: ``client`` None means in this process."""

    client: Any = None  # distributed.Client
    address: str | None = None
    workers: int = 0
    timeout_s: float = 10.0

    @property
    def distributed(self) -> bool:
        return self.client is not None

    def describe(self) -> str:
        if self.client is None:
            return "ran in-process"
        return f"ran on dask {self.address} ({self.workers} worker{'s' * (self.workers != 1)})"


def scheduler_address(settings: Settings, use_cluster: bool) -> str | None:
    """The scheduler a command should use, or None for in-process."""
    if settings.dask_scheduler:
        return settings.dask_scheduler
    if not use_cluster:
        return None
    if not processes.is_alive(processes.read_record(settings.run_dir, dask_cluster.NAME)):
        raise InputError(
            "--cluster: no cluster runs: start one with `trendcast up --with cluster` or set "
            "TRENDCAST_DASK_SCHEDULER=tcp://HOST:PORT"
        )
    return dask_cluster.address(settings)


@contextmanager
def placement(settings: Settings, use_cluster: bool = False) -> Iterator[Placement]:
    """A connected :class:`Placement` for the duration of a command."""
    address = scheduler_address(settings, use_cluster)
    if address is None:
        yield Placement()
        return
    from distributed import Client

    # The client's reconnect attempts log tracebacks; a lost scheduler is reported as one
    # line by ClusterLost instead.
    names = ["distributed", "distributed.client", "distributed.utils", "distributed.comm"]
    quiet = {name: logging.getLogger(name) for name in names}
    levels = {name: logger.level for name, logger in quiet.items()}
    for logger in quiet.values():
        logger.setLevel(logging.CRITICAL)
    try:
        with _connected(Client, address, settings.dask_connect_timeout_s) as where:
            yield where
    finally:
        for name, logger in quiet.items():
            logger.setLevel(levels[name])


@contextmanager
def _connected(Client, address: str, timeout: float) -> Iterator[Placement]:
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(
            f"dask scheduler {address}: unreachable within {timeout:g} s "
            f"({type(exc).__name__}); start it with `trendcast up --with cluster` or fix "
            "TRENDCAST_DASK_SCHEDULER"
        ) from None
    try:
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            client.wait_for_workers(1, timeout=timeout)
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
        yield Placement(client, address, workers, timeout)
    except TimeoutError:
        raise ClusterUnavailable(
            f"dask scheduler {address}: no worker joined within {timeout:g} s"
        ) from None
    finally:
        _close(client)


def _close(client) -> None:
    # closing a client whose scheduler died may raise anything
    with contextlib.suppress(Exception):
        client.close(timeout=2)


def map_unordered(
    where: Placement,
    function: Callable[..., Any],
    tasks: list[tuple[str, tuple]],
    *,
    poll_s: float = 0.5,
) -> Iterator[Any]:
    """``function(*args)`` for each ``(key, args)`` on the cluster, results as they finish.

    Keys are the tasks' identities on the scheduler (stable: a rerun after a worker died keeps
    its key). Pending tasks are cancelled when the caller stops (Ctrl-C, an error); a scheduler
    that goes away raises :class:`ClusterLost`."""
    from distributed import as_completed
    from distributed.comm.core import CommClosedError

    client = where.client
    identity = mlflow_identity()
    futures = [
        client.submit(_stoppable, identity, function, *args, key=key, pure=False)
        for key, args in tasks
    ]
    ready = as_completed(futures, loop=client.loop)
    done = 0
    last_check = time.monotonic()
    workerless_since: float | None = None
    try:
        while not ready.is_empty():
            batch = ready.next_batch(block=False)
            if not batch:
                if time.monotonic() - last_check > poll_s:
                    _check_alive(where, done, len(tasks))
                    workerless_since = _check_workers(where, workerless_since, done, len(tasks))
                    last_check = time.monotonic()
                time.sleep(0.02)
                continue
            for future in batch:
                if future.status == "cancelled":
                    _check_alive(where, done, len(tasks))
                try:
                    result = future.result()
                except (CommClosedError, OSError):
                    # the scheduler went away while the result was fetched (or the task itself
                    # raised an OSError: then the scheduler is alive and it propagates)
                    _check_alive(where, done, len(tasks))
                    raise
                done += 1
                yield result
    except (ClusterLost, ClusterUnavailable):
        _cancel(where, futures, drain=False)  # nothing to wait for: the cluster is gone
        raise
    except BaseException:  # Ctrl-C, an error, the caller stopped: stop the running tasks too
        _cancel(where, futures, drain=True)
        raise
    finally:
        _cancel(where, futures, drain=False)


class TaskCancelled(Exception):
    """Raised inside a running task once its command cancelled it (Ctrl-C, an error)."""


#: Keys of the tasks this worker process stopped (read by :func:`task_cancelled`).
_STOPPED: set[str] = set()


def task_cancelled() -> bool:
    """Whether the current Dask task was stopped: code that catches what the stop raised (an
    HTTP client wrapping it in its own error) can still tell a stop from a failure."""
    try:
        from distributed import get_worker

        return str(get_worker().get_current_task()) in _STOPPED
    except ValueError:  # not on a worker
        return False


def mlflow_identity() -> tuple[str, SecretStr] | None:
    """The MLflow user this command authenticates as (auth on), for its tasks: the workers of a
    shared or remote cluster have no identity of their own, or another user's. The password
    travels inside the task as a ``SecretStr`` (masked wherever Dask prints a task's
    arguments), in memory only."""
    from trendcast.config import get_settings
    from trendcast.mlflow_auth import client_environment

    known = {**client_environment(get_settings()), **os.environ}
    user, password = known.get("MLFLOW_TRACKING_USERNAME"), known.get("MLFLOW_TRACKING_PASSWORD")
    return (user, SecretStr(password)) if user and password else None


@contextmanager
def _as_identity(identity: tuple[str, SecretStr] | None) -> Iterator[None]:
    """MLflow's client reads its credentials from the environment at each request: set them
    for the task's duration, then put back what the worker had. Process-wide: two tasks of
    different users in threads of one worker would share one (the local workers run a single
    thread each)."""
    if identity is None:
        yield
        return
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {name: os.environ.get(name) for name in names}
    os.environ[names[0]], os.environ[names[1]] = identity[0], identity[1].get_secret_value()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stoppable(
    identity: tuple[str, SecretStr] | None, function: Callable[..., Any], *args: Any
) -> Any:
    """``function(*args)`` in a Dask task, as ``identity`` on MLflow, that stops once the
    scheduler cancels it.

    Dask cannot stop a running task: a cancelled one runs to its end on the worker, writing
    what it writes after its command has gone. A watcher thread sees the task cancelled on its
    worker and raises :class:`TaskCancelled` in the task's thread (delivered at its next Python
    instruction, so within a boosting round or a query), leaving the cluster idle."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker
        with _as_identity(identity):
            return function(*args)
    key = worker.get_current_task()
    target = threading.get_ident()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.2):
            state = worker.state.tasks.get(key)
            if state is None or state.state in ("cancelled", "released", "forgotten"):
                _STOPPED.add(str(key))
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(TaskCancelled)
                )
                return

    watcher = threading.Thread(target=watch, name=f"stop-{key}", daemon=True)
    watcher.start()
    try:
        with _as_identity(identity):
            return function(*args)
    finally:
        finished.set()
        watcher.join()


def _running_keys(dask_worker) -> list[str]:
    """The keys occupying a worker's threads, cancelled ones included (run on each worker)."""
    return [str(ts.key) for ts in dask_worker.state.all_running_tasks]


def _cancel(where: Placement, futures: list, *, drain: bool) -> None:
    """Cancel the tasks not done; with ``drain``, wait (up to the connect timeout) until none
    of them still runs on a worker, so the command ends with the cluster idle."""
    left = [f for f in futures if not f.done()]
    if not left:
        return
    client = where.client
    with contextlib.suppress(Exception):  # the scheduler may be gone already
        client.cancel(left, force=True)
    if not drain:
        return
    keys = {str(f.key) for f in left}
    deadline = time.monotonic() + where.timeout_s
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            running = client.run(_running_keys, on_error="return")
            busy = {k for keys_ in running.values() if isinstance(keys_, list) for k in keys_}
            if not busy & keys:
                return
            time.sleep(0.2)


def _check_workers(where: Placement, since: float | None, done: int, total: int) -> float | None:
    """Fail once the scheduler has had no worker for the connect timeout (the workers died
    and nothing restarts them); returns since when it has had none."""
    try:
        count = len(where.client.scheduler_info(n_workers=-1)["workers"])
    except Exception:  # the scheduler itself is checked by _check_alive
        return since
    if count:
        return None
    now = time.monotonic()
    since = since or now
    if now - since > where.timeout_s:
        raise ClusterUnavailable(
            f"dask scheduler {where.address}: no worker for {where.timeout_s:g} s after {done} of "
            f"{total} tasks (see the workers' log); `trendcast up` restarts the local ones"
        )
    return since


def _check_alive(where: Placement, done: int, total: int) -> None:
    client = where.client
    if client.status == "running" and client.scheduler_comm is not None:
        try:
            if client.scheduler_comm.comm is not None and not client.scheduler_comm.comm.closed():
                return
        except AttributeError:
            return
    # Give a reconnect a moment before calling the scheduler lost.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if client.status == "running":
            return
        time.sleep(0.2)
    raise ClusterLost(
        f"dask scheduler {where.address}: lost mid-run after {done} of {total} tasks; "
        "finished work stays recorded, run the command again once the cluster is back"
    )
