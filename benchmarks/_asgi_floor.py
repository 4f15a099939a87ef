"""The ASGI floor: a plain Starlette app on uvicorn (one worker, no access log) that reads the
JSON body and answers a constant, the least any Python HTTP service can cost per request here.
bench_serving's 16-connection p99 target is a multiple of this app's."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def predict(request: Request) -> Response:
    body = json.loads(await request.body())
    payload = json.dumps({"predictions": [0.0 for _ in body["rows"]]})
    return Response(payload, media_type="application/json")


async def ready(_: Request) -> Response:
    return Response("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])
