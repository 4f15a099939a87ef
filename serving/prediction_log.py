"""The prediction log: every answer (and shadow score) reaches ``serving.predictions`` exactly
once, while the machine has disk.

A request renders its rows in COPY's text format (``copy_lines``) and puts the text on an
unbounded in-memory queue (no I/O, never a wait). A *drainer* thread joins the texts into
batches and hands each batch to the *writer* thread, unless the writer is behind (database
slow), the database is down, or the backlog passes ``TRENDCAST_PREDICTION_LOG_QUEUE`` rows: then
the batch's text is appended to the journal, segment files under ``<home>/prediction-journal``.
The writer COPYs batches and, once the database answers, replays the journal's sealed segments;
each row carries a unique key (``log_key``) and a segment goes in through a temporary table and
``INSERT … ON CONFLICT DO NOTHING``, so a segment replayed twice (a crash between the commit and
the segment's deletion) adds nothing. Rows are dropped, and counted in
``trendcast_prediction_log_dropped_total``, only when the journal would pass
``TRENDCAST_PREDICTION_LOG_SPILL_BYTES``. A segment PostgreSQL refuses for its content is set
aside (``*.rejected``, counted in ``trendcast_prediction_log_rejected_total``) instead of
blocking every replay after it.

Neither background thread touches a row one by one: on two cores shared with PostgreSQL, any
per-row Python work outside the request holds the interpreter while requests wait.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import orjson
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
REJECTED = Counter(
    "trendcast_prediction_log_rejected",
    "Journaled prediction-log rows PostgreSQL refused for their content (segment set aside)",
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
SEGMENT = ".copy"  # a segment: rows in COPY's text format
LEGACY_SEGMENT = ".jsonl"  # JSON lines, as journaled before (still replayed)
REJECTED_SEGMENT = ".rejected"
_COLUMN_LIST = ", ".join(COLUMNS)


def new_request_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` but without its UUID object (a seventh of the
    time)."""
    return os.urandom(16).hex()


_second: list = [None, ""]


def utc_now_text() -> str:
    """Now, in ISO 8601 with microseconds and ``+00:00``, as ``datetime.now(UTC).isoformat()``
    writes it; the date and time of day are formatted once a second."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{min(int((now - second) * 1e6), 999_999):06d}+00:00"


def inputs_json(inputs: dict) -> str:
    """A row's inputs as JSON: orjson takes a fifteenth of ``json.dumps``'s time for a row of
    floats, the largest part of a one-row request's logging; values orjson does not take (an
    integer past 64 bits) go through the standard library."""
    try:
        return orjson.dumps(inputs).decode()
    except TypeError:
        return json.dumps(inputs)


@lru_cache(maxsize=1024)
def _model_columns(model_name: str, model_version: int, alias: str, shadow: bool) -> str:
    """The model's four columns of a COPY line, rendered once per model, alias and role."""
    return f"{_text(model_name)}\t{int(model_version)}\t{_text(alias)}\t{'t' if shadow else 'f'}"


def log_key(request_id: str, index: int, shadow: bool) -> str:
    """A row's unique key: its request, its position there and its role (production or
    shadow); what makes a replay add nothing twice."""
    return f"{request_id}:{index}:{'s' if shadow else 'p'}"


def copy_lines(
    request_id: str,
    predicted_at: str,
    keys: Iterable[tuple[str | None, str | None, str | None]],
    model: tuple[str, int, str],
    shadow: bool,
    inputs: Iterable[dict],
    predictions: Iterable[float],
    latency_ms: float,
    start: int = 0,
) -> str:
    """A request's rows in COPY's text format (tab-separated, ``\\N`` for NULL) in ``COLUMNS``
    order; ``keys`` are (symbol, interval, event time), ``model`` is (name, version, alias).
    The one renderer of a row: the service and ``Entry`` both call it."""
    head = f"{_text(request_id)}\t{_text(predicted_at)}\t"
    columns = _model_columns(*model, shadow)
    tail = f"\t{float(latency_ms)!r}\t{_text(request_id)}:"  # log_key(), inlined
    role = "s\n" if shadow else "p\n"
    return "".join(
        [
            f"{head}{_text(symbol)}\t{_text(interval)}\t{_text(event_time)}\t{columns}\t"
            f"{_text(inputs_json(row))}\t{float(p)!r}{tail}{i}:{role}"
            for i, ((symbol, interval, event_time), row, p) in enumerate(
                zip(keys, inputs, predictions, strict=True), start
            )
        ]
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
    index: int = 0  # the row's position in its request

    @property
    def log_key(self) -> str:
        return log_key(self.request_id, self.index, self.shadow)

    def values(self) -> list:
        return [*(getattr(self, c) for c in COLUMNS[:-1]), self.log_key]

    def row(self) -> tuple:
        values = self.values()
        values[COLUMNS.index("inputs")] = json.dumps(self.inputs)
        return tuple(values)

    def copy_line(self) -> str:
        """The row in COPY's text format (``copy_lines``)."""
        return copy_lines(
            self.request_id,
            self.predicted_at,
            [(self.symbol, self.interval, self.event_time)],
            (self.model_name, self.model_version, self.alias),
            self.shadow,
            [self.inputs],
            [self.prediction],
            self.latency_ms,
            self.index,
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


class Batch(NamedTuple):
    """Rows on their way to the table: their COPY text and how many they are (a tuple: one
    is made per request)."""

    text: str
    rows: int


class Journal:
    """Append-only segments of COPY text; the open one is sealed when it is full or when the
    writer wants to replay. Only the drainer appends; only the writer replays and deletes."""

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self._lock = threading.Lock()
        self._open: Path | None = None
        self._handle = None
        self.bytes = sum(p.stat().st_size for p in self._segments())
        JOURNAL_BYTES.set(self.bytes)

    def _segments(self) -> list[Path]:
        return [*self.directory.glob(f"*{SEGMENT}"), *self.directory.glob(f"*{LEGACY_SEGMENT}")]

    def append(self, text: str, rows: int) -> int:
        """Append whole rows while they fit the budget; the number that did not (dropped by
        the caller)."""
        data = text.encode()
        with self._lock:
            room = self.budget - self.bytes
            if len(data) > room:  # only the whole lines that fit
                data = data[: data.rfind(b"\n", 0, max(room, 0)) + 1]
            kept = data.count(b"\n")
            if data:
                if self._handle is None:
                    self._open = self.directory / f"{time.time_ns()}-{os.getpid()}{SEGMENT}"
                    self._handle = open(self._open, "ab")  # noqa: SIM115 (closed on seal)
                self._handle.write(data)
                self._handle.flush()  # in the OS's hands: survives a kill of this process
                self.bytes += len(data)
                if self._handle.tell() >= SEGMENT_BYTES:
                    self._seal()
            JOURNAL_BYTES.set(self.bytes)
            return rows - kept

    def _seal(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._open = None, None

    def sealed(self) -> list[Path]:
        """Segments ready to replay, oldest first (seals the open one)."""
        with self._lock:
            self._seal()
            return sorted(self._segments(), key=lambda p: p.name)

    def pending(self) -> bool:
        return self.bytes > 0

    def done(self, segment: Path, set_aside: bool = False) -> None:
        """A replayed segment is deleted; a refused one is renamed ``*.rejected``."""
        with self._lock:
            size = segment.stat().st_size if segment.exists() else 0
            if set_aside:
                segment.rename(segment.with_suffix(REJECTED_SEGMENT))
            else:
                segment.unlink(missing_ok=True)
            self.bytes = max(0, self.bytes - size)
            JOURNAL_BYTES.set(self.bytes)

    def close(self) -> None:
        with self._lock:
            self._seal()


def read_segment(segment: Path) -> bytes:
    """A segment's rows as COPY text; a line cut short by a crash mid-write is skipped. A
    legacy segment (JSON lines) is converted."""
    data = segment.read_bytes()
    if segment.suffix != LEGACY_SEGMENT:
        return data[: data.rfind(b"\n") + 1]
    lines = []
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            values = dict(zip(COLUMNS, json.loads(line), strict=True))
            lines.append(
                Entry(
                    **{c: values[c] for c in COLUMNS[:-1]},
                    index=int(values["log_key"].split(":")[-2]),
                ).copy_line()
            )
    return "".join(lines).encode()


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
        self._pending: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self._rows_in = 0  # rows appended by requests (one writer per counter: no lock)
        self._rows_out = 0  # rows taken by the drainer
        self._handoff: queue.Queue[Batch] = queue.Queue(maxsize=2)
        self.journal = Journal(journal, spill_bytes)
        self._database_ok = True
        self._stop = threading.Event()
        self.dropped = 0
        self.written = 0
        self.spilled = 0
        self.rejected = 0
        self._last_warning = 0.0
        self._drainer = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="prediction-db", daemon=True)
        self._drainer.start()
        self._writer.start()

    # -- the request path -------------------------------------------------------------------
    def put_text(self, text: str, rows: int) -> None:
        """Hand over a request's rows rendered by ``copy_lines``; returns at once, whatever the
        database does. Rendering there, a few microseconds a row on every request alike, leaves
        the threads behind no burst of per-row work that would hold the interpreter."""
        self._pending.put(Batch(text, rows))
        self._rows_in += rows

    def put(self, entries: Sequence[Entry]) -> None:
        """Hand over rows as ``Entry`` objects (``put_text`` without the renderer's fast
        path)."""
        self.put_text("".join([e.copy_line() for e in entries]), len(entries))

    # -- drainer ----------------------------------------------------------------------------
    def _take(self) -> Batch | None:
        """Up to ``batch`` rows: the drainer wakes once for the first rows, then sleeps
        ``linger_s`` (unless a full batch is already waiting) and takes what came meanwhile:
        one COPY and one commit per batch, no wake-up per request. 50 ms keeps each batch's
        database work short (the tail it adds) without paying a commit per few rows."""
        try:
            parts = [self._pending.get(timeout=0.2)]
        except queue.Empty:
            return None
        if self._rows_in - self._rows_out < self._batch:  # a full batch waits for nothing
            self._stop.wait(self._linger_s)
        count = parts[0].rows
        while count < self._batch:
            try:
                parts.append(self._pending.get_nowait())
            except queue.Empty:
                break
            count += parts[-1].rows
        self._rows_out += count
        return Batch("".join([part.text for part in parts]), count)

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

    def _spill(self, taken: Batch) -> None:
        lost = self.journal.append(taken.text, taken.rows)
        self.spilled += taken.rows - lost
        SPILLED.inc(taken.rows - lost)
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
                    self._written(taken.rows)
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
        """Every sealed segment, one transaction each, through a temporary table: COPY cannot
        skip rows already stored, ``INSERT … ON CONFLICT (log_key) DO NOTHING`` can. A segment
        refused for its content (a malformed line, a value a constraint refuses) is set aside
        whole, so the segments after it still land; the database being down is not that."""
        import psycopg2

        for segment in self.journal.sealed():
            data = read_segment(segment)
            rows = data.count(b"\n")
            try:
                self._insert(connection, data)
            except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
                self.journal.done(segment, set_aside=True)
                self.rejected += rows
                REJECTED.inc(rows)
                log.error(
                    "prediction log: PostgreSQL refused %s (%s: %s); set aside as %s",
                    segment.name,
                    type(exc).__name__,
                    str(exc).strip()[:300],
                    segment.with_suffix(REJECTED_SEGMENT).name,
                )
                continue
            self.journal.done(segment)
            self._written(rows)
            log.info("prediction log: replayed %d journaled row(s) from %s", rows, segment)

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

    def _copy(self, connection, taken: Batch) -> None:
        """A fresh batch, by COPY: its keys are new (a batch reaches the writer once; one that
        failed is journaled, and the journal's replay skips rows already stored)."""
        with connection, connection.cursor() as cur:
            cur.copy_expert(
                f"COPY serving.predictions ({_COLUMN_LIST}) FROM STDIN",
                io.BytesIO(taken.text.encode()),
            )

    def _insert(self, connection, data: bytes) -> None:
        """Rows that may be stored already: COPY into a temporary table, then insert what is
        new, in one transaction."""
        with connection, connection.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS prediction_replay AS "
                f"SELECT {_COLUMN_LIST} FROM serving.predictions WITH NO DATA"
            )
            cur.execute("TRUNCATE prediction_replay")
            cur.copy_expert(f"COPY prediction_replay ({_COLUMN_LIST}) FROM STDIN", io.BytesIO(data))
            cur.execute(
                f"INSERT INTO serving.predictions ({_COLUMN_LIST}) "
                f"SELECT {_COLUMN_LIST} FROM prediction_replay ON CONFLICT (log_key) DO NOTHING"
            )
            cur.execute("TRUNCATE prediction_replay")

    # -- tests and shutdown -----------------------------------------------------------------
    def backlog(self) -> int:
        """Rows not yet in the database (in memory, handed over or journaled)."""
        return self._rows_in - self.written - self.dropped - self.rejected

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
        leftover: list[Batch] = []
        with contextlib.suppress(queue.Empty):
            while True:
                leftover.append(self._handoff.get_nowait())
        with contextlib.suppress(queue.Empty):
            while True:
                leftover.append(self._pending.get_nowait())
        if leftover:
            self._spill(Batch("".join(b.text for b in leftover), sum(b.rows for b in leftover)))
        self.journal.close()
