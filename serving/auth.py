"""ASGI middleware: bearer-token check on every endpoint but health, metrics and docs, and a
``/readyz`` whose body says why (ready; degraded when MLflow is unreachable or an alias was
moved outside Trendcast; not ready)."""

from __future__ import annotations

import hmac
import json
from typing import Any, ClassVar

from trendcast.config import get_settings

OPEN_PATHS = ("/livez", "/readyz", "/metrics", "/docs", "/static_content")


class HealthAndAuth:
    service: ClassVar[Any] = None  # the Trendcast instance, set when it starts (one worker)

    def __init__(self, app) -> None:
        self.app = app
        token = get_settings().api_token
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/readyz":
            return await self._readyz(send)
        if self.expected and path != "/" and not path.startswith(OPEN_PATHS):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await _json(
                    send, 401, {"error": "authorization: missing or wrong bearer token"}
                )
        if scope["method"] == "POST":
            kind = dict(scope["headers"]).get(b"content-type", b"application/json")
            if kind.split(b";")[0].strip().lower() != b"application/json":
                return await _json(
                    send,
                    415,
                    {
                        "error": f"content-type: {kind.decode(errors='replace')!r} is not "
                        "supported; send application/json"
                    },
                )
        return await self.app(scope, receive, send)

    async def _readyz(self, send) -> None:
        holder = self.service.holder if self.service else None
        if holder is None or not holder.ready:
            why = "starting" if holder is None else (holder.primary.error or holder.mlflow_error)
            return await _json(send, 503, {"status": "not ready", "reason": why})
        model = holder.primary.model
        unaudited = [
            slot.unaudited.reason
            for slot in filter(None, (holder.primary, holder.shadow))
            if slot.unaudited is not None
        ]
        body = {
            "status": "ready" if holder.mlflow_ok and not unaudited else "degraded",
            "model": f"{model.name}@{model.alias} version {model.version}",
            "mlflow": "ok" if holder.mlflow_ok else f"unreachable: {holder.mlflow_error}",
        }
        if unaudited:
            body["unaudited"] = unaudited
        return await _json(send, 200, body)


async def _json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(payload)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
