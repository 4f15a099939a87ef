"""PostgreSQL's binary COPY format, defined once: the bar store and the feature store both move
rows as NumPy record arrays framed by this header and trailer, with timestamps as microseconds
since 2000-01-01 (PostgreSQL's epoch)."""

from __future__ import annotations

import io
import queue
import struct
import threading
from collections.abc import Callable, Iterable

import numpy as np

from trendcast.stages import stage

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since the Unix epoch


def to_pg_time(ns_since_unix: np.ndarray) -> np.ndarray:
    """Nanoseconds since the Unix epoch -> PostgreSQL timestamp values (µs since 2000)."""
    return np.asarray(ns_since_unix, dtype="int64") // 1000 - PG_EPOCH_US


def from_pg_time(us_since_2000: np.ndarray) -> np.ndarray:
    """PostgreSQL timestamp values -> nanoseconds since the Unix epoch."""
    return (np.asarray(us_since_2000).astype("int64") + PG_EPOCH_US) * 1000


def copy_in(cur, sql: str, rows: bytes) -> None:
    """``COPY … FROM STDIN WITH (FORMAT binary)`` of ``rows`` (record bytes, no framing): one
    complete stream per statement."""
    cur.copy_expert(sql, io.BytesIO(HEADER + rows + TRAILER))


class _Stream:
    """The file object ``copy_expert`` reads: pieces of one COPY stream built on a producer
    thread, so the client builds the next piece while the server ingests this one (psycopg2
    releases the GIL while it sends). At most ``depth`` pieces wait, which bounds memory."""

    _END = object()

    def __init__(
        self,
        pieces: Iterable[tuple[bytes, int]],
        on_rows: Callable[[int], None] | None,
        depth: int,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._done = False
        self.failed: BaseException | None = None  # the producer's error, if it raised
        self._on_rows = on_rows
        self._thread = threading.Thread(
            target=self._produce, args=(pieces,), name="copy-payload", daemon=True
        )
        self._thread.start()

    def _produce(self, pieces: Iterable[tuple[bytes, int]]) -> None:
        try:
            self._put((HEADER, 0))
            for piece in pieces:
                if not self._put(piece):
                    return
            self._put((TRAILER, 0))
            self._put(self._END)
        except BaseException as exc:  # handed to the reader, which raises it in its thread
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        with stage("COPY waiting for the client's payload"):
            item = self._queue.get()
        if item is self._END:
            self._done = True
            return b""
        if isinstance(item, BaseException):
            self._done, self.failed = True, item
            raise item
        body, rows = item
        if rows and self._on_rows:
            self._on_rows(rows)
        return body

    def close(self) -> None:
        self._halt.set()
        self._thread.join()


def copy_in_stream(
    cur,
    sql: str,
    pieces: Iterable[tuple[bytes, int]],
    on_rows: Callable[[int], None] | None = None,
    depth: int = 4,
) -> None:
    """One ``COPY … FROM STDIN WITH (FORMAT binary)`` of ``pieces`` ((record bytes, rows) with
    no framing), produced on another thread while the server ingests; ``on_rows`` is called in
    this thread as each piece is handed to the server. An error on either side aborts the COPY
    (the caller's transaction rolls back)."""
    stream = _Stream(pieces, on_rows, depth)
    try:
        cur.copy_expert(sql, stream)
    except Exception as exc:
        if stream.failed is not None:  # psycopg2 reports it as a cancelled COPY: say what failed
            raise stream.failed from exc
        raise
    finally:
        stream.close()


def copy_out(cur, query: str, params: tuple, dtype: np.dtype) -> np.ndarray:
    """Rows of ``COPY (query) TO STDOUT WITH (FORMAT binary)`` as a record array of ``dtype``
    (fixed-width rows: no NULLs, no variable-length values)."""
    buffer = io.BytesIO()
    cur.copy_expert(
        cur.mogrify(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", params).decode(), buffer
    )
    return np.frombuffer(buffer.getvalue()[len(HEADER) : -len(TRAILER)], dtype=dtype)
