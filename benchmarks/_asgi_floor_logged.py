"""The ASGI floor that also records every prediction: the plain Starlette app of
``_asgi_floor`` plus the service's prediction log (``serving.prediction_log``: one row per
request into ``serving.predictions``, the same entries, COPY writer and database). What is left
between it and the floor is what recording every prediction costs on this machine, where
PostgreSQL shares the two cores with the server and the load client."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.prediction_log import Entry, PredictionLog
from trendcast.config import get_settings
from trendcast.db import database_url

LOG: list[PredictionLog] = []


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    body = json.loads(await request.body())
    rows = body["rows"]
    request_id, at = uuid.uuid4().hex, datetime.now(UTC).isoformat()
    latency = (time.perf_counter() - started) * 1000
    entries = [
        Entry(request_id, at, None, None, None, "floor", 0, "floor", False, row, 0.0, latency, i)
        for i, row in enumerate(rows)
    ]
    LOG[0].put(entries)
    payload = json.dumps({"predictions": [0.0 for _ in rows]})
    return Response(payload, media_type="application/json")


async def ready(_: Request) -> Response:
    return Response("ok")


@asynccontextmanager
async def lifespan(_app):
    settings = get_settings()
    url = database_url("trendcast", settings).render_as_string(hide_password=False)
    LOG.append(PredictionLog(url, settings.prediction_log_queue, settings.home / "floor-journal"))
    yield
    LOG.pop().close()


app = Starlette(
    routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)],
    lifespan=lifespan,
)
