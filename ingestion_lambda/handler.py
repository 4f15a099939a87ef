"""AWS Lambda entry point: ``handler(event, context)``, run by an EventBridge schedule.

Scheduled events (``{"source": "aws.events", "detail-type": "Scheduled Event", ...}``) ingest every
configured series (``TRENDCAST_SYMBOLS`` x ``TRENDCAST_INTERVALS``). A manual event may name
``symbols``, ``intervals`` and a window ``start`` / ``end`` (ISO 8601). Returns a JSON summary.
Database credentials come from ``TRENDCAST_DATABASE_URL`` or the Secrets Manager secret named by
``TRENDCAST_DATABASE_SECRET_ARN`` (JSON with ``url``, or username/password/host/port/dbname).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError, field_validator

from trendcast.config import Settings, get_settings
from trendcast.db import get_engine
from trendcast.errors import TrendcastError
from trendcast.exchange import BinanceClient, Budget
from trendcast.ingest import ingest_series
from trendcast.schema import series_key

log = logging.getLogger("trendcast.ingest")
SAFETY_MARGIN_S = 10.0  # end this long before the Lambda timeout


class IngestEvent(BaseModel):
    """The part of an event we read; everything else (EventBridge metadata) is ignored."""

    symbols: list[str] | None = None
    intervals: list[str] | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None

    model_config = {"arbitrary_types_allowed": True, "extra": "ignore"}

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        if value is None:
            return None
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def database_url_from_secret(arn: str) -> str:
    """Build a PostgreSQL URL from a Secrets Manager secret (boto3 ships in the Lambda runtime)."""
    import boto3
    from sqlalchemy.engine import URL

    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    )
    if "url" in secret:
        return secret["url"]
    return URL.create(
        "postgresql+psycopg2",
        username=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret.get("port", 5432)),
        database=secret.get("dbname", "trendcast"),
    ).render_as_string(hide_password=False)


def _settings() -> Settings:
    settings = get_settings()
    if settings.database_url is None and settings.database_secret_arn:
        # In memory only: the decrypted URL never reaches os.environ (and so no child or dump).
        url = database_url_from_secret(settings.database_secret_arn)
        settings = settings.model_copy(update={"database_url": url})
    return settings


def _budget_seconds(settings: Settings, context: Any) -> float:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        return max(1.0, min(settings.ingest_budget_s, remaining_ms() / 1000 - SAFETY_MARGIN_S))
    return settings.ingest_budget_s


def handler(event: dict | None, context: Any = None) -> dict:
    """Ingest each series; one series failing does not stop the others."""
    invocation = str(uuid.uuid4())
    try:
        request = IngestEvent.model_validate(event or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        return {"status": "rejected", "error": f"event field {field!r}: {err['msg']}"}
    settings = _settings()
    try:
        keys = [
            series_key(symbol, interval)
            for symbol in request.symbols or settings.symbols
            for interval in request.intervals or settings.intervals
        ]
    except TrendcastError as exc:
        return {"status": "rejected", "error": str(exc)}
    engine = get_engine(settings)
    budget = Budget(_budget_seconds(settings, context))
    client = BinanceClient(settings.exchange, budget, timeout_s=settings.exchange_timeout_s)
    results = []
    try:
        for key in keys:
            result = ingest_series(
                engine,
                client,
                key,
                start=request.start,
                end=request.end,
                lookback_bars=settings.ingest_lookback_bars,
                source=settings.exchange_source,
            )
            results.append(result.as_dict())
            log.info("ingest %s", json.dumps(result.as_dict()))
    finally:
        client.close()
    return _summary(invocation, results)


def _summary(invocation: str, results: list[dict]) -> dict:
    statuses = {r["status"] for r in results}
    errors = sorted({r["error"] for r in results if r["error"]})
    error = "; ".join(errors) or None
    if not results or statuses <= {"failed"}:
        status = "failed"
    elif statuses == {"succeeded"}:
        status = "succeeded"
    else:
        status = "partial"
    totals = {
        k: sum(r[k] for r in results)
        for k in ("fetched", "inserted", "duplicates", "quarantined", "gaps_found", "gaps_filled")
    }
    return {
        "invocation_id": invocation,
        "status": status,
        "error": error,
        **totals,
        "series": results,
    }
