"""PostgreSQL's binary COPY format, defined once: the bar store and the feature store both move
rows as NumPy record arrays framed by this header and trailer, with timestamps as microseconds
since 2000-01-01 (PostgreSQL's epoch)."""

from __future__ import annotations

import io
import struct

import numpy as np

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


def copy_out(cur, query: str, params: tuple, dtype: np.dtype) -> np.ndarray:
    """Rows of ``COPY (query) TO STDOUT WITH (FORMAT binary)`` as a record array of ``dtype``
    (fixed-width rows: no NULLs, no variable-length values)."""
    buffer = io.BytesIO()
    cur.copy_expert(
        cur.mogrify(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", params).decode(), buffer
    )
    return np.frombuffer(buffer.getvalue()[len(HEADER) : -len(TRAILER)], dtype=dtype)
