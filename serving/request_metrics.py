"""The gateway's request metrics: requests answered by route, method and status, and their
latency by route, as ``trendcast_http_requests_total`` and
``trendcast_http_request_duration_seconds``.

BentoML runs its workers with ``PROMETHEUS_MULTIPROC_DIR`` set, which makes every
``prometheus_client`` metric a memory-mapped value: a lock, a pid check and a file write per
call, about a tenth of a one-row prediction (the serving profile in benchmarks/RESULTS.md).
The service runs one worker and the event loop is the only thread that records, so plain
counters suffice: ``LoopMetrics`` keeps them in dicts and turns them into Prometheus families
only when ``/metrics`` is read. With BentoML's telemetry on (its ``/metrics`` merges the workers'
memory-mapped files) ``SharedMetrics`` records through ``prometheus_client`` instead.
"""

from __future__ import annotations

from bisect import bisect_left

import prometheus_client
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

REQUESTS = ("trendcast_http_requests", "HTTP requests answered, by route, method and status")
LATENCY = (
    "trendcast_http_request_duration_seconds",
    "Time from the request's arrival at the gateway to its last body byte, by route",
)
BUCKETS = (5e-4, 1e-3, 2e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopMetrics:
    """Counts kept by the event loop's thread, exported by ``collect`` (a registry collector)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> per-bucket counts, +Inf, sum

    def record(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        key = (endpoint, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        cells = self.latency.get(endpoint)
        if cells is None:
            cells = self.latency[endpoint] = [0.0] * (len(BUCKETS) + 2)
        cells[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound >= seconds
        cells[-1] += seconds

    def collect(self):
        requests = CounterMetricFamily(*REQUESTS, labels=["endpoint", "method", "status"])
        for labels, count in list(self.counts.items()):
            requests.add_metric(list(labels), count)
        yield requests
        latency = HistogramMetricFamily(*LATENCY, labels=["endpoint"])
        for endpoint, cells in list(self.latency.items()):
            cumulative, running = [], 0.0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], cells[:-1], strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([endpoint], cumulative, sum_value=cells[-1])
        yield latency


class SharedMetrics:
    """The same metrics through ``prometheus_client`` (multiprocess-aware)."""

    def __init__(self) -> None:
        self.requests = prometheus_client.Counter(*REQUESTS, ["endpoint", "method", "status"])
        self.latency = prometheus_client.Histogram(*LATENCY, ["endpoint"], buckets=BUCKETS)

    def record(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        self.requests.labels(endpoint, method, status).inc()
        self.latency.labels(endpoint).observe(seconds)


_metrics: LoopMetrics | SharedMetrics | None = None


def request_metrics(shared: bool) -> LoopMetrics | SharedMetrics:
    """The process's one recorder (the gateway may be built more than once)."""
    global _metrics
    if _metrics is None:
        _metrics = SharedMetrics() if shared else LoopMetrics()
        if isinstance(_metrics, LoopMetrics):
            prometheus_client.REGISTRY.register(_metrics)
    return _metrics
