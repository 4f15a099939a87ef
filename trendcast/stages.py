"""Wall time per stage of a load, measured inside the product so a benchmark can say where the
time goes from code, not prose.

Off unless a caller opens :func:`recording`; then every :func:`stage` adds its seconds to the
recording, from any thread (the COPY's payload is built on a producer thread). One recording at
a time per process: it is a benchmark's tool, not a tracing system.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active: dict[str, float] | None = None


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect stage seconds (summed per name) until the block ends."""
    global _active
    spent: dict[str, float] = {}
    with _lock:
        if _active is not None:
            raise RuntimeError("a stage recording is already open")
        _active = spent
    try:
        yield spent
    finally:
        with _lock:
            _active = None


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add this block's wall time to ``name`` in the open recording (nothing when none is)."""
    spent = _active
    if spent is None:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - began
        with _lock:
            spent[name] = spent.get(name, 0.0) + seconds
