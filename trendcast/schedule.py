"""Schedule expressions shared by the local scheduler and the EventBridge rule in Terraform."""

from __future__ import annotations

import re

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
