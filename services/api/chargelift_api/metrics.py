"""Prometheus metrics of the API: requests by route and status, latency, pool."""

from __future__ import annotations

import time

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
POOL_SIZE = Gauge("api_db_pool_size", "connections open in the database pool", registry=REGISTRY)
POOL_IDLE = Gauge("api_db_pool_idle", "idle connections in the pool", registry=REGISTRY)
POOL_MAX = Gauge("api_db_pool_max", "most connections the pool may open", registry=REGISTRY)
POOL_IN_USE = Gauge("api_db_pool_in_use", "connections lent to requests now", registry=REGISTRY)


def observe_pool(pool: asyncpg.Pool) -> None:
    """Set the pool gauges (at scrape time)."""
    size, idle = pool.get_size(), pool.get_idle_size()
    POOL_SIZE.set(size)
    POOL_IDLE.set(idle)
    POOL_MAX.set(pool.get_max_size())
    POOL_IN_USE.set(size - idle)


def _route_of(scope: Scope) -> str:
    # The route template, never the concrete path: ids would explode the label set.
    # The router records the matched route in the (shared) scope.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every request by route template, method and status,
    and times it (cheaper than ``BaseHTTPMiddleware``, which wraps every response)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before answering, the server answers 500

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            route = _route_of(scope)
            LATENCY.labels(route).observe(time.perf_counter() - start)
            REQUESTS.labels(route, scope["method"], str(status)).inc()
