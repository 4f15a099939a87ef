"""The ASGI floor that also records every prediction: the plain Starlette app of
``_asgi_floor`` plus the service's prediction log (``serving.prediction_log``: one row per
request into ``serving.predictions``, the same renderer, COPY writer and database). What is left
between it and the floor is what recording every prediction costs on this machine, where
PostgreSQL shares the two cores with the server and the load client."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.prediction_log import (
    PredictionLog,
    copy_lines,
    new_request_id,
    utc_now_text,
)
from trendcast.config import get_settings
from trendcast.db import database_url

LOG: list[PredictionLog] = []


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    body = json.loads(await request.body())
    rows = body["rows"]
    predictions = [0.0 for _ in rows]
    latency = (time.perf_counter() - started) * 1000
    text = copy_lines(
        new_request_id(),
        utc_now_text(),
        [(None, None, None)] * len(rows),
        ("floor", 0, "floor"),
        False,
        rows,
        predictions,
        latency,
    )
    LOG[0].put_text(text, len(rows))
    payload = json.dumps({"predictions": predictions})
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
