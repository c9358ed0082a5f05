"""Prometheus metrics of the API: requests by route and status, latency, pool."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "api_requests_total", "HTTP requests", ["route", "method", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "api_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
POOL_SIZE = Gauge("api_db_pool_size", "connections in the database pool", registry=REGISTRY)
POOL_IDLE = Gauge("api_db_pool_idle", "idle connections in the pool", registry=REGISTRY)


def _route_of(request: Request) -> str:
    # The route template, never the concrete path: ids would explode the label set.
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


async def middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    route = _route_of(request)
    response = await call_next(request)
    LATENCY.labels(route).observe(time.perf_counter() - start)
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    return response
