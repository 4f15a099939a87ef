"""AWS Lambda entry point: ``handler(event, context)``, run by an EventBridge schedule.

Scheduled events (``{"source": "aws.events", "detail-type": "Scheduled Event", ...}``) ingest every
configured series (``TRENDCAST_SYMBOLS`` x ``TRENDCAST_INTERVALS``). A manual event may name
``symbols``, ``intervals``, a window ``start`` / ``end`` (ISO 8601) and ``revise`` (apply bars
that differ from stored ones as revisions instead of quarantining them). Returns a JSON summary.
Database credentials come from ``TRENDCAST_DATABASE_URL`` or the Secrets Manager secret named by
``TRENDCAST_DATABASE_SECRET_ARN`` (JSON with ``url``, or username/password/host/port/dbname).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pandas as pd
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from trendcast.config import Settings, get_settings
from trendcast.db import get_engine
from trendcast.errors import TrendcastError
from trendcast.exchange import BinanceClient, Budget, ExchangeError
from trendcast.ingest import RepairPolicy, ingest_series
from trendcast.schema import INTERVALS, series_key

log = logging.getLogger("trendcast.ingest")
SAFETY_MARGIN_S = 10.0  # end this long before the Lambda timeout


class IngestEvent(BaseModel):
    """The part of an event we read; everything else (EventBridge metadata) is ignored.
    Every field is checked before anything is written: lists are non-empty lists of strings,
    times are ISO 8601 strings (an epoch number is refused, its unit is a guess), start < end."""

    symbols: list[StrictStr] | None = Field(default=None, min_length=1)
    intervals: list[StrictStr] | None = Field(default=None, min_length=1)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    revise: StrictBool = False

    model_config = {"arbitrary_types_allowed": True, "extra": "ignore"}

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be an ISO 8601 time string, got {type(value).__name__}")
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
        if stamp is pd.NaT:
            raise ValueError(f"{value!r} is not an ISO 8601 time")
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    @model_validator(mode="after")
    def _ordered(self) -> IngestEvent:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self


class Rejected(Exception):
    """An event that breaks a rule; answered ``rejected`` with nothing written."""


def check_against_exchange(
    request: IngestEvent, keys: list, client: BinanceClient, max_window_bars: int
) -> None:
    """The checks that need the exchange: times not beyond its clock, a window of at most
    ``max_window_bars`` bars, symbols it lists. An unreachable exchange skips them: the runs
    then fail and are recorded as failed."""
    try:
        now = client.server_time() if request.start or request.end else None
        for name in dict.fromkeys(request.symbols or []):
            if not client.listed(name):
                raise Rejected(f"event field 'symbols': {name!r} is not listed by the exchange")
    except ExchangeError:
        return
    if now is None:
        return
    for field_name in ("start", "end"):
        value = getattr(request, field_name)
        if value is not None and value > now:
            raise Rejected(
                f"event field {field_name!r}: {value} is beyond the exchange's clock ({now})"
            )
    if request.start is None:
        return
    end = request.end or now
    for interval in dict.fromkeys(key.interval for key in keys):
        bars = (end - request.start) / pd.Timedelta(INTERVALS[interval] or pd.Timedelta(days=28))
        if bars > max_window_bars:
            raise Rejected(
                f"event field 'start': {request.start}..{end} spans {int(bars):,} {interval} "
                f"bars, more than TRENDCAST_INGEST_MAX_WINDOW_BARS={max_window_bars:,}"
            )


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


def handler(event: Any, context: Any = None) -> dict:
    """Ingest each series; one series failing does not stop the others. A bad event is
    answered ``rejected`` naming the field, before anything is written."""
    invocation = str(uuid.uuid4())
    if event is None:
        event = {}
    if not isinstance(event, dict):
        return _rejected(f"event: must be a JSON object, got {type(event).__name__}")
    try:
        request = IngestEvent.model_validate(event)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "event"
        return _rejected(f"event field {field!r}: {err['msg']}")
    settings = _settings()
    try:
        keys = [
            series_key(symbol, interval)
            for symbol in request.symbols or settings.symbols
            for interval in request.intervals or settings.intervals
        ]
    except TrendcastError as exc:
        return _rejected(str(exc))
    budget = Budget(_budget_seconds(settings, context))
    client = BinanceClient(settings.exchange, budget, timeout_s=settings.exchange_timeout_s)
    results = []
    try:
        try:
            check_against_exchange(request, keys, client, settings.ingest_max_window_bars)
        except Rejected as exc:
            return _rejected(str(exc))
        engine = get_engine(settings)
        policy = RepairPolicy(settings.ingest_repair_bars, settings.ingest_hole_attempts)
        for key in keys:
            result = ingest_series(
                engine,
                client,
                key,
                start=request.start,
                end=request.end,
                lookback_bars=settings.ingest_lookback_bars,
                source=settings.exchange_source,
                revise=request.revise,
                policy=policy,
                abandon_after_s=settings.ingest_budget_s + settings.ingest_abandon_margin_s,
            )
            results.append(result.as_dict())
            log.info("ingest %s", json.dumps(result.as_dict()))
    finally:
        client.close()
    return _summary(invocation, results)


def _rejected(error: str) -> dict:
    return {"status": "rejected", "error": error}


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
        for k in (
            "fetched",
            "inserted",
            "duplicates",
            "quarantined",
            "conflicts",
            "revised",
            "gaps_found",
            "gaps_filled",
            "holes_open",
        )
    }
    return {
        "invocation_id": invocation,
        "status": status,
        "error": error,
        **totals,
        "series": results,
    }
