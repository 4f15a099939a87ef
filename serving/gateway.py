"""ASGI middleware in front of BentoML's app: the service's contract at the door.

It owns, for every request: the route and its methods (405 with ``Allow``), the bearer token,
the body (``TRENDCAST_SERVING_MAX_BODY_BYTES``, 413), the media type (415), the request's shape
(``serving.contract``, 400 naming the field and the rule), the 503 with its reason when no
verified model is loaded, the health endpoints, the OpenAPI at ``/docs.json``; and it rewrites
any error body BentoML produces (a list, pydantic's array, a generic 5xx) into the one error
schema. It runs outermost (``bentoml_fixes``), so BentoML's own 429 and 504 pass through it.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from typing import Any, ClassVar

import prometheus_client
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from serving.contract import Contract, describe_errors, error_body
from serving.request_metrics import request_metrics
from trendcast.config import get_settings

log = logging.getLogger("trendcast.serving")

GET = ("GET", "HEAD")
#: path -> (methods, token required, request model key or None)
ROUTES: dict[str, tuple[tuple[str, ...], bool]] = {
    "/predict": (("POST",), True),
    "/predict_latest": (("POST",), True),
    "/model": (("POST",), True),
    "/reload": (("POST",), True),
    "/livez": (GET, False),
    "/healthz": (GET, False),
    "/readyz": (GET, False),
    "/metrics": (GET, False),
    "/docs.json": (GET, False),
    "/docs": (GET, False),
    "/": (GET, False),
    "/schema.json": (GET, False),
}
STATIC_PREFIX = "/static_content/"
NEEDS_MODEL = ("/predict", "/predict_latest", "/model")
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class PayloadTooLarge(Exception):
    pass


class Gateway:
    service: ClassVar[Any] = None  # the Trendcast instance, set when it starts (one worker)
    max_concurrency: ClassVar[int] = 1_000_000  # its traffic.max_concurrency (429 beyond)

    @classmethod
    def attach(cls, service: Any, max_concurrency: int) -> None:
        cls.service, cls.max_concurrency = service, max_concurrency

    def __init__(self, app) -> None:
        self.app = app
        settings = get_settings()
        token = settings.api_token
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = settings.serving_max_body_bytes
        self.contract = Contract(settings.serving_max_batch, token_required=bool(token))
        self.models = self.contract.requests()
        self.openapi = json.dumps(self.contract.openapi).encode()
        self.in_flight = 0  # /predict requests answered here, against max_concurrency
        # With BentoML's metrics on, /metrics is its own (which includes this registry).
        self.own_metrics = not settings.serving_framework_telemetry
        self.metrics = request_metrics(shared=not self.own_metrics)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        begun = time.perf_counter()
        status: int | None = None  # set when the answer starts

        async def tracked(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, tracked, begun)
        except Exception:  # never a traceback to the client; the log has it
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if status is None:
                await _json(send, 500, error_body(500, "internal error; see the service log"))
                status = 500
        finally:
            path = scope["path"]
            endpoint = path if path in ROUTES else "other"
            seconds = time.perf_counter() - begun
            self.metrics.record(endpoint, scope["method"], str(status or 500), seconds)

    async def _handle(self, scope, receive, send, begun: float) -> None:
        path, method = scope["path"], scope["method"]
        if path.startswith(STATIC_PREFIX):
            methods, needs_token = GET, False
        elif path in ROUTES:
            methods, needs_token = ROUTES[path]
        else:
            return await _json(send, 404, error_body(404, f"path {path!r}: no such endpoint"))
        if method not in methods:
            allow = ", ".join(methods)
            return await _json(
                send,
                405,
                error_body(405, f"method {method}: {path} answers {allow} only"),
                [(b"allow", allow.encode())],
            )
        if needs_token and self.expected:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await _json(
                    send,
                    401,
                    error_body(401, "authorization: missing or wrong bearer token"),
                    [(b"www-authenticate", b"Bearer")],
                )
        head = method == "HEAD"
        if path in ("/livez", "/healthz"):
            return await _json(send, 200, {"status": "alive"}, head=head)
        if path == "/readyz":
            status, body = self.readiness()
            return await _json(send, status, body, head=head)
        if path == "/docs.json":
            return await _raw(send, 200, self.openapi, b"application/json", head=head)
        if path == "/metrics" and self.own_metrics:
            payload = prometheus_client.generate_latest()
            kind = prometheus_client.CONTENT_TYPE_LATEST.encode()
            return await _raw(send, 200, payload, kind, head=head)
        if method != "POST":
            return await self.app(scope, receive, send)
        return await self._post(scope, receive, send, path, begun)

    async def _post(self, scope, receive, send, path: str, begun: float) -> None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _json(send, 413, self._too_large())
        try:
            body = await _read_body(receive, self.max_body)
        except PayloadTooLarge:
            return await _json(send, 413, self._too_large())
        kind = headers.get(b"content-type")
        if body or path in ("/predict", "/predict_latest"):
            media = (kind or b"").split(b";")[0].strip().lower()
            if media != b"application/json":
                shown = kind.decode(errors="replace") if kind else "none"
                return await _json(
                    send,
                    415,
                    error_body(
                        415,
                        f"content-type: {shown!r} is not supported; send application/json",
                        "content-type",
                    ),
                )
        try:
            request = self.models[path].model_validate_json(body or b"{}")
        except ValidationError as exc:
            field, message = describe_errors(exc)
            return await _json(send, 400, error_body(400, message, field))
        if path in NEEDS_MODEL:
            reason = self.unavailable()
            if reason:
                return await _json(send, 503, error_body(503, reason))
        if path == "/predict":
            return await self._predict(send, request, begun)
        if not body:  # BentoML wants a JSON object even for endpoints without arguments
            body = b"{}"
            kept = [h for h in scope["headers"] if h[0] not in (b"content-length", b"content-type")]
            scope = {
                **scope,
                "headers": [
                    *kept,
                    (b"content-type", b"application/json"),
                    (b"content-length", b"2"),
                ],
            }
        return await self.app(scope, _replay(body, receive), _normalising(send))

    async def _predict(self, send, request, begun: float) -> None:
        """``/predict`` answered here, from the request the contract has just validated, by
        the service's own scoring code: BentoML's pipeline behind the gateway (its routing,
        timeout and concurrency middlewares, and parsing the same body a second time) costs
        several times the prediction and sets the 16-connection tail (bench_serving). The
        scoring runs in the event loop, as BentoML ran it; the batch limit bounds it."""
        if self.in_flight >= self.max_concurrency:  # BentoML's limit, kept on this path
            return await _json(send, 429, error_body(429, "too many requests; retry shortly"))
        self.in_flight += 1
        try:
            rows = [row.__dict__ for row in request.rows]
            try:
                payload = self.service.predict_rows(rows, begun)
            except BentoMLException as exc:
                status = int(exc.error_code)
                return await _json(send, status, _error(status, exc.message))
            return await _raw(send, 200, payload, b"application/json")
        finally:
            self.in_flight -= 1

    def _too_large(self) -> dict:
        return error_body(
            413,
            f"body: larger than the limit of {self.max_body:,} bytes "
            "(TRENDCAST_SERVING_MAX_BODY_BYTES); send fewer rows per request",
            "body",
        )

    # -- model state ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        holder = self.service.holder if self.service else None
        if holder is None:
            return "the service is starting: no model loaded yet"
        if holder.primary.model is None:
            why = holder.primary.error or holder.mlflow_error or "loading"
            return f"no verified model for {holder.name}@{holder.primary.alias} yet: {why}"
        return None

    def readiness(self) -> tuple[int, dict]:
        holder = self.service.holder if self.service else None
        reason = self.unavailable()
        if reason:
            return 503, {"status": "not ready", "reason": reason}
        model = holder.primary.model
        problems = [p for p in (holder.primary.error,) if p]
        if not holder.mlflow_ok:
            problems.append(f"MLflow unreachable: {holder.mlflow_error}")
        unaudited = [  # alias moves not on record (trendcast.governance): refused, not served
            slot.unaudited.reason
            for slot in filter(None, (holder.primary, holder.shadow))
            if slot.unaudited is not None
        ]
        problems += [u for u in unaudited if u not in problems]
        body = {
            "status": "degraded" if problems else "ready",
            "model": f"{model.name}@{model.alias} version {model.version}",
            "mlflow": "ok" if holder.mlflow_ok else f"unreachable: {holder.mlflow_error}",
        }
        if problems:
            body["reason"] = "; ".join(problems)
        if unaudited:
            body["unaudited"] = unaudited
        return 200, body


async def _read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _normalising(send):
    """Rewrite error answers from inside (BentoML's list-wrapped 4xx, pydantic's array, its
    generic 5xx) into the one error schema; successful answers pass untouched."""
    state: dict[str, Any] = {}

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] < 400:
                state["pass"] = True
                return await send(message)
            state["status"], state["chunks"] = message["status"], []
            return None
        if state.get("pass"):
            return await send(message)
        state["chunks"].append(message.get("body", b""))
        if message.get("more_body", False):
            return None
        status = state["status"]
        body = _as_error(status, b"".join(state["chunks"]))
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

    return wrapped


def _as_error(status: int, raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    return _error(status, body.get("error") if isinstance(body, dict) else None)


def _error(status: int, message: object) -> dict:
    """The one error body for an error's message (a 5xx gets a generic one: its cause is in the
    service log), with the field when the message starts by naming one."""
    if status >= 500 or not isinstance(message, str):
        message = {
            503: "service unavailable",
            504: "not answered in time",
        }.get(status, "internal error; see the service log" if status >= 500 else "bad request")
    match = _FIELD.match(message)
    return error_body(status, message, match.group(1) if match else None)


async def _json(send, status: int, body: dict, extra=(), head: bool = False) -> None:
    await _raw(send, status, json.dumps(body).encode(), b"application/json", extra, head)


async def _raw(send, status: int, payload: bytes, kind: bytes, extra=(), head=False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", b"%d" % len(payload)),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else payload})
