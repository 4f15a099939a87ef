"""Schedule expressions shared by the local scheduler and the EventBridge rule in Terraform."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from trendcast.errors import InputError

# The production schedule of the ingestion Lambda: the EventBridge rule in
# infra/modules/ingestion (root variable `ingest_schedule`) defaults to this expression, and
# `trendcast ingest --scheduled` runs at this rate locally. tests/infra checks they agree.
DEFAULT_INGEST_RATE = "rate(1 minute)"

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_SHORT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def period_seconds(expression: str) -> float:
    """Seconds between runs for ``rate(N unit)`` (EventBridge) or ``30s`` / ``5m`` / ``1h``."""
    text = expression.strip()
    rate = re.fullmatch(r"rate\((\d+)\s+(second|minute|hour|day)s?\)", text)
    if rate:
        return int(rate.group(1)) * _UNITS[rate.group(2)]
    short = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if short:
        return float(short.group(1)) * _SHORT[short.group(2)]
    raise InputError(
        f"--every {expression!r}: use an EventBridge rate expression such as 'rate(1 minute)' "
        "or a duration such as 30s, 5m, 1h (cron expressions run only on EventBridge)"
    )


def run_every(job: Callable[[], object], period_s: float | None, times: int | None = None):
    """The one scheduler loop (ingestion, drift): run ``job`` now, then every ``period_s``
    seconds measured start to start, ``times`` runs in all (forever when None); once when
    ``period_s`` is None. Returns the last run's result."""
    runs = 0
    while True:
        began = time.monotonic()
        result = job()
        runs += 1
        if period_s is None or (times is not None and runs >= times):
            return result
        time.sleep(max(0.0, period_s - (time.monotonic() - began)))
