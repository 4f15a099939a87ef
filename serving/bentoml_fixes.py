"""Two version-guarded changes to BentoML 1.4's HTTP app, applied when the service is imported.

1. **TimeoutMiddleware's timer is cancelled when the request ends.** BentoML schedules
   ``loop.call_later(timeout, ...)`` per request and never cancels it, so every request leaves a
   TimerHandle (holding its future, and through it the request's frames) in the event loop's
   heap for ``traffic.timeout`` seconds (30 s here): ~15,000 live objects at 500 req/s. They
   survive into CPython's oldest GC generation, and each full collection walks all of them:
   the 100-400 ms stalls of the p99 tail (see benchmarks/RESULTS.md for the profile).
2. **The gateway (``serving.gateway``) runs outermost**, in front of BentoML's metrics, tracing,
   timeout and concurrency middlewares, so their 429/504 answers get the one error schema too
   (``Service.add_asgi_middleware`` would place it inside them).

Checked against bentoml 1.4.x; on another version neither is applied and a warning says so.

Not a patch but a setting: ``TELEMETRY_OFF``, the service options that take BentoML's
per-request OpenTelemetry span (no exporter is configured, so the span goes nowhere) and its
Prometheus middleware off the request path; together they halve a no-op service's throughput
and set its tail at 16 connections (bench_serving measures both ways).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("trendcast.serving")

SUPPORTED = ("1.4.",)
#: ``@bentoml.service(**TELEMETRY_OFF)``: no metrics middleware (and no /metrics route of
#: BentoML's), every URL excluded from tracing.
TELEMETRY_OFF = {
    "metrics": {"enabled": False, "namespace": "bentoml_service"},
    "tracing": {"excluded_urls": [".*"]},
}
_applied = False


def apply(gateway: bool = True) -> bool:
    """Patch once; True when the patches are in place. ``gateway=False`` (benchmarks' no-op
    service) leaves BentoML's middlewares as they are."""
    global _applied
    if _applied:
        return True
    import bentoml
    from _bentoml_impl.server.app import ServiceAppFactory
    from bentoml._internal.server.http import traffic

    if not bentoml.__version__.startswith(SUPPORTED) or not hasattr(
        traffic.TimeoutMiddleware, "_set_timer_out"
    ):
        log.warning(
            "bentoml %s: serving/bentoml_fixes.py supports %s only; not patched (timer "
            "cleanup and the outermost gateway are off)",
            bentoml.__version__,
            ", ".join(SUPPORTED),
        )
        return False
    traffic.TimeoutMiddleware.__call__ = _timeout_call
    _applied = True
    if not gateway:
        return True
    original = ServiceAppFactory.middlewares

    def middlewares(self):
        from starlette.middleware import Middleware

        from serving.gateway import Gateway

        return [Middleware(Gateway), *original.fget(self)]

    ServiceAppFactory.middlewares = property(middlewares)
    return True


async def _timeout_call(self, scope, receive, send) -> None:
    """BentoML's TimeoutMiddleware.__call__, with the timer cancelled once the request ends."""
    from starlette.responses import JSONResponse

    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    # An app that fails before answering releases the waiter at once, not after the timeout.
    fut.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    except TimeoutError:
        if fut.cancel():
            response = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"},
                status_code=504,
            )
            await response(scope, receive, send)
    else:
        await fut
    finally:
        timer.cancel()  # drops the handle's reference to the waiter (and the request) now
