"""The prediction log: every answer (and shadow score) reaches ``serving.predictions`` exactly
once, while the machine has disk.

A request only puts its rows on an unbounded in-memory queue (no I/O, never a wait). A
*drainer* thread takes them in batches and hands each batch to the *writer* thread, unless the
writer is behind (database slow), the database is down, or the backlog passes
``TRENDCAST_PREDICTION_LOG_QUEUE`` rows: then the batch is appended to the journal, JSON lines
in segment files under ``<home>/prediction-journal``. The writer inserts batches and, once the
database answers, replays the journal's sealed segments; each row carries a unique key
(``log_key``) and is inserted ``ON CONFLICT DO NOTHING``, so a segment replayed twice (a crash
between the commit and the segment's deletion) adds nothing. Rows are dropped, and counted in
``trendcast_prediction_log_dropped_total``, only when the journal would pass
``TRENDCAST_PREDICTION_LOG_SPILL_BYTES``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

log = logging.getLogger("trendcast.serving")

DROPPED = Counter(
    "trendcast_prediction_log_dropped",
    "Prediction-log rows dropped (journal over its disk budget)",
)
WRITTEN = Counter("trendcast_prediction_log_written", "Prediction-log rows written")
SPILLED = Counter(
    "trendcast_prediction_log_spilled", "Prediction-log rows written to the disk journal"
)
JOURNAL_BYTES = Gauge("trendcast_prediction_log_journal_bytes", "Bytes waiting in the journal")

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
    "log_key",
)
SEGMENT_BYTES = 8 << 20  # a sealed segment is replayed in one transaction


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
    index: int = 0  # the row's position in its request

    @property
    def log_key(self) -> str:
        return f"{self.request_id}:{self.index}:{'s' if self.shadow else 'p'}"

    def values(self) -> list:
        return [*(getattr(self, c) for c in COLUMNS[:-1]), self.log_key]

    def row(self) -> tuple:
        values = self.values()
        values[COLUMNS.index("inputs")] = json.dumps(self.inputs)
        return tuple(values)

    def copy_line(self) -> str:
        """The row in COPY's text format (tab-separated, ``\\N`` for NULL), in ``COLUMNS``
        order: a few microseconds of the writer's time against an INSERT's tens."""
        return (
            f"{_text(self.request_id)}\t{_text(self.predicted_at)}\t{_text(self.symbol)}\t"
            f"{_text(self.interval)}\t{_text(self.event_time)}\t{_text(self.model_name)}\t"
            f"{int(self.model_version)}\t{_text(self.alias)}\t{'t' if self.shadow else 'f'}\t"
            f"{_text(json.dumps(self.inputs))}\t{float(self.prediction)!r}\t"
            f"{float(self.latency_ms)!r}\t{_text(self.log_key)}\n"
        )


def _text(value: str | None) -> str:
    """A string field for COPY's text format: NULL as ``\\N``; backslash, tab, newline and
    carriage return escaped (a model name or alias may hold any of them)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


class Rows(list):
    """Entries on their way to the table, with their COPY text (``Entry.copy_line``)."""

    text: str = ""


class Journal:
    """Append-only segments of JSON lines; the open one is sealed when it is full or when the
    writer wants to replay. Only the drainer appends; only the writer replays and deletes."""

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self._lock = threading.Lock()
        self._open: Path | None = None
        self._handle = None
        self.bytes = sum(p.stat().st_size for p in self.directory.glob("*.jsonl"))
        JOURNAL_BYTES.set(self.bytes)

    def append(self, rows: list[list]) -> int:
        """Append rows; the number that did not fit in the budget (dropped by the caller)."""
        lines = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows]
        with self._lock:
            kept = []
            for line in lines:
                if self.bytes + len(line) > self.budget:
                    break
                kept.append(line)
                self.bytes += len(line)
            if kept:
                if self._handle is None:
                    self._open = self.directory / f"{time.time_ns()}-{os.getpid()}.jsonl"
                    self._handle = open(self._open, "ab")  # noqa: SIM115 (closed on seal)
                self._handle.write(b"".join(kept))
                self._handle.flush()  # in the OS's hands: survives a kill of this process
                if self._handle.tell() >= SEGMENT_BYTES:
                    self._seal()
            JOURNAL_BYTES.set(self.bytes)
            return len(lines) - len(kept)

    def _seal(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._open = None, None

    def sealed(self) -> list[Path]:
        """Segments ready to replay, oldest first (seals the open one)."""
        with self._lock:
            self._seal()
            return sorted(self.directory.glob("*.jsonl"))

    def pending(self) -> bool:
        return self.bytes > 0

    def done(self, segment: Path) -> None:
        with self._lock:
            size = segment.stat().st_size if segment.exists() else 0
            segment.unlink(missing_ok=True)
            self.bytes = max(0, self.bytes - size)
            JOURNAL_BYTES.set(self.bytes)

    def close(self) -> None:
        with self._lock:
            self._seal()


def read_segment(segment: Path) -> list[tuple]:
    """The rows of a segment; a line cut short by a crash mid-write is skipped."""
    rows = []
    for line in segment.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            values = json.loads(line)
            values[COLUMNS.index("inputs")] = json.dumps(values[COLUMNS.index("inputs")])
            rows.append(tuple(values))
    return rows


class PredictionLog:
    def __init__(
        self,
        database_url: str,
        capacity: int,
        journal: Path,
        spill_bytes: int = 1 << 30,
        batch: int = 2000,
        linger_s: float = 0.05,
        retry_s: float = 1.0,
    ) -> None:
        self._url = database_url
        self._capacity = capacity
        self._batch = batch
        self._linger_s = linger_s
        self._retry_s = retry_s
        # SimpleQueue: put never blocks (unbounded, C), get sleeps until rows arrive (no polling)
        self._pending: queue.SimpleQueue[Rows] = queue.SimpleQueue()
        self._rows_in = 0  # rows appended by requests (one writer per counter: no lock)
        self._rows_out = 0  # rows taken by the drainer
        self._handoff: queue.Queue[Rows] = queue.Queue(maxsize=2)
        self.journal = Journal(journal, spill_bytes)
        self._database_ok = True
        self._stop = threading.Event()
        self.dropped = 0
        self.written = 0
        self.spilled = 0
        self._last_warning = 0.0
        self._drainer = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="prediction-db", daemon=True)
        self._drainer.start()
        self._writer.start()

    # -- the request path -------------------------------------------------------------------
    def put(self, entries: list[Entry]) -> None:
        """Hand a request's rows over; returns at once, whatever the database does. Their COPY
        text is rendered here, a few microseconds a row on every request alike, so the writer
        holds the interpreter for no burst of formatting (the 1-connection tail)."""
        rows = Rows(entries)
        rows.text = "".join([e.copy_line() for e in entries])
        self._pending.put(rows)
        self._rows_in += len(entries)

    # -- drainer ----------------------------------------------------------------------------
    def _take(self) -> Rows:
        """Up to ``batch`` rows: the drainer wakes once for the first rows, then sleeps
        ``linger_s`` (unless a full batch is already waiting) and takes what came meanwhile:
        one COPY and one commit per batch, no wake-up per request. 50 ms keeps each batch's
        database work short (the tail it adds) without paying a commit per few rows."""
        try:
            parts = [self._pending.get(timeout=0.2)]
        except queue.Empty:
            return Rows()
        if self._rows_in - self._rows_out < self._batch:  # a full batch waits for nothing
            self._stop.wait(self._linger_s)
        count = len(parts[0])
        while count < self._batch:
            try:
                parts.append(self._pending.get_nowait())
            except queue.Empty:
                break
            count += len(parts[-1])
        taken = Rows(entry for part in parts for entry in part)
        taken.text = "".join([part.text for part in parts])
        self._rows_out += len(taken)
        return taken

    def _drain(self) -> None:
        while not (self._stop.is_set() and self._pending.empty()):
            taken = self._take()
            if not taken:
                continue
            backlog = self._rows_in - self._rows_out
            if self._database_ok and backlog <= self._capacity and not self.journal.pending():
                try:
                    self._handoff.put_nowait(taken)
                    continue
                except queue.Full:  # the writer is behind: the database is slow
                    pass
            self._spill(taken)

    def _spill(self, taken: list[Entry]) -> None:
        lost = self.journal.append([e.values() for e in taken])
        self.spilled += len(taken) - lost
        SPILLED.inc(len(taken) - lost)
        if lost:
            self._drop(lost, "journal over TRENDCAST_PREDICTION_LOG_SPILL_BYTES")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        DROPPED.inc(count)
        if time.monotonic() - self._last_warning > 10:
            self._last_warning = time.monotonic()
            log.warning("prediction log: dropped %d row(s) so far (%s)", self.dropped, why)

    # -- writer -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        connection = None
        while True:
            try:
                taken = self._handoff.get(timeout=0.2)
            except queue.Empty:
                taken = None
                if self._stop.is_set() and not self._drainer.is_alive():
                    break
            try:
                if taken:
                    connection = connection or self._connect()
                    self._copy(connection, taken)
                    self._written(len(taken))
                if self.journal.pending() and (self._database_ok or taken is None):
                    connection = connection or self._connect()
                    self._replay(connection)
                self._database_ok = True
            except Exception as exc:  # database down or slow: the journal keeps the rows
                if self._database_ok:
                    log.warning(
                        "prediction log: database unavailable (%s: %s); journaling to %s",
                        type(exc).__name__,
                        str(exc).strip()[:160],
                        self.journal.directory,
                    )
                self._database_ok = False
                if taken:
                    self._spill(taken)
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
                if self._stop.wait(self._retry_s) and not self.journal.pending():
                    break
                if self._stop.is_set():
                    break
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _replay(self, connection) -> None:
        for segment in self.journal.sealed():
            rows = read_segment(segment)
            for start in range(0, len(rows), 5000):
                self._insert(connection, rows[start : start + 5000])
            self.journal.done(segment)
            self._written(len(rows))
            log.info("prediction log: replayed %d journaled row(s) from %s", len(rows), segment)

    def _written(self, count: int) -> None:
        self.written += count
        WRITTEN.inc(count)

    def _connect(self):
        import psycopg2

        from trendcast.db import normalize_url

        url = normalize_url(self._url).set(drivername="postgresql")
        connection = psycopg2.connect(
            url.render_as_string(hide_password=False),
            connect_timeout=3,
            options="-c statement_timeout=30000",
        )
        return connection

    def _copy(self, connection, taken: Rows) -> None:
        """A fresh batch, by COPY: its keys are new (a batch reaches the writer once; one that
        failed is journaled, and the journal's replay skips rows already stored)."""
        payload = taken.text.encode()
        with connection, connection.cursor() as cur:
            cur.copy_expert(
                f"COPY serving.predictions ({', '.join(COLUMNS)}) FROM STDIN", io.BytesIO(payload)
            )

    def _insert(self, connection, rows: list[tuple]) -> None:
        from psycopg2.extras import execute_values

        with connection, connection.cursor() as cur:
            execute_values(
                cur,
                f"INSERT INTO serving.predictions ({', '.join(COLUMNS)}) VALUES %s "
                "ON CONFLICT (log_key) DO NOTHING",
                rows,
                page_size=1000,
            )

    # -- tests and shutdown -----------------------------------------------------------------
    def backlog(self) -> int:
        """Rows not yet in the database (in memory, handed over or journaled)."""
        return self._rows_in - self.written - self.dropped

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every row handed over is written (or dropped); True when it is."""
        deadline = time.monotonic() + timeout_s
        while self.backlog() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.backlog() <= 0

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what can be written within ``timeout_s``; the rest stays in the journal."""
        self.flush(timeout_s)
        self._stop.set()
        self._drainer.join(timeout=timeout_s)
        self._writer.join(timeout=timeout_s)
        # Whatever the writer could not take is journaled for the next start.
        leftover = []
        with contextlib.suppress(queue.Empty):
            while True:
                leftover.extend(self._handoff.get_nowait())
        with contextlib.suppress(queue.Empty):
            while True:
                leftover.extend(self._pending.get_nowait())
        if leftover:
            self._spill(leftover)
        self.journal.close()
