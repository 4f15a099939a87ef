"""The prediction log: a bounded in-process queue drained in batches by a background thread
into ``serving.predictions``. A request only enqueues (never waits on the database); when the
queue is full or the database is down, rows are dropped and counted, never blocking."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger("trendcast.serving")

DROPPED = Counter(
    "trendcast_prediction_log_dropped", "Prediction-log rows dropped (queue full or DB down)"
)
WRITTEN = Counter("trendcast_prediction_log_written", "Prediction-log rows written")

COLUMNS = (
    "request_id",
    "predicted_at",
    "symbol",
    "interval",
    "event_time",
    "model_name",
    "model_version",
    "alias",
    "shadow",
    "inputs",
    "prediction",
    "latency_ms",
)


@dataclass(frozen=True)
class Entry:
    request_id: str
    predicted_at: str
    symbol: str | None
    interval: str | None
    event_time: str | None
    model_name: str
    model_version: int
    alias: str
    shadow: bool
    inputs: dict
    prediction: float
    latency_ms: float

    def row(self) -> tuple:
        values = [getattr(self, c) for c in COLUMNS]
        values[COLUMNS.index("inputs")] = json.dumps(self.inputs)
        return tuple(values)


class PredictionLog:
    def __init__(
        self, database_url: str, capacity: int, batch: int = 2000, linger_s: float = 0.5
    ) -> None:
        self._url = database_url
        self._linger_s = linger_s
        self._queue: queue.Queue[Entry] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        self.dropped = 0
        self.written = 0
        self._last_warning = 0.0

    def put(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._drop(1, "queue full")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        DROPPED.inc(count)
        if time.monotonic() - self._last_warning > 10:
            self._last_warning = time.monotonic()
            log.warning("prediction log: dropped %d row(s) so far (%s)", self.dropped, why)

    def _take(self) -> list[Entry]:
        """Up to ``batch`` rows, waiting at most ``linger_s`` after the first one: one INSERT
        and one commit per batch, not per request (a commit per request costs the request
        path more CPU on a small machine than the prediction itself)."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        taken = [first]
        deadline = time.monotonic() + self._linger_s
        while len(taken) < self._batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                break
            try:
                taken.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return taken

    def _run(self) -> None:
        connection = None
        while not (self._stop.is_set() and self._queue.empty()):
            taken = self._take()
            if not taken:
                continue
            try:
                connection = connection or self._connect()
                self._write(connection, taken)
                self.written += len(taken)
                WRITTEN.inc(len(taken))
            except Exception as exc:  # database down: drop this batch, reconnect next time
                self._drop(len(taken), f"database: {type(exc).__name__}: {str(exc)[:120]}")
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
                time.sleep(0.5)

    def _connect(self):
        import psycopg2

        from trendcast.db import normalize_url

        url = normalize_url(self._url).set(drivername="postgresql")
        return psycopg2.connect(url.render_as_string(hide_password=False), connect_timeout=3)

    def _write(self, connection, taken: list[Entry]) -> None:
        from psycopg2.extras import execute_values

        with connection, connection.cursor() as cur:
            execute_values(
                cur,
                f"INSERT INTO serving.predictions ({', '.join(COLUMNS)}) VALUES %s",
                [e.row() for e in taken],
                page_size=1000,
            )

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until the queue is drained (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
