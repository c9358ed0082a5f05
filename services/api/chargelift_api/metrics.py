"""Prometheus metrics of the API: requests by route and status, latency, pool, commands."""

from __future__ import annotations

import time

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ApiMetrics:
    """Every metric of the API, on ``registry`` (names are documented in docs/api.md);
    :func:`chargelift_api.app.create_app` makes one unless it is given one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
        self.registry = r = registry
        self.requests = Counter(
            "api_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "api_request_duration_seconds", "HTTP request latency", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.pool_size = Gauge(
            "api_db_pool_size", "connections open in the database pool", registry=r
        )
        self.pool_idle = Gauge("api_db_pool_idle", "idle connections in the pool", registry=r)
        self.pool_max = Gauge("api_db_pool_max", "most connections the pool may open", registry=r)
        self.pool_in_use = Gauge(
            "api_db_pool_in_use", "connections lent to requests now", registry=r
        )
        self.commands_accepted = Counter(
            "api_commands_accepted_total",
            "commands accepted (202, replays of an Idempotency-Key not counted)",
            ["command"],
            registry=r,
        )
        self.commands_published = Counter(
            "api_commands_published_total", "commands the broker acknowledged", registry=r
        )
        self.command_publish_failures = Counter(
            "api_command_publish_failures_total",
            "commands not published: expired (waited for the broker past ExpiresAt), "
            "refused (the broker's PUBACK said no), queue_full (503)",
            ["reason"],
            registry=r,
        )
        self.broker_connected = Gauge(
            "api_broker_connected",
            "1 while the API is connected to the broker (commands), 0 while not; "
            "absent without MQTT_HOST",
            registry=r,
        )
        self.command_queue_depth = Gauge(
            "api_command_queue_depth", "commands accepted and waiting for the broker", registry=r
        )

    def observe_pool(self, pool: asyncpg.Pool) -> None:
        """Set the pool gauges (at scrape time)."""
        size, idle = pool.get_size(), pool.get_idle_size()
        self.pool_size.set(size)
        self.pool_idle.set(idle)
        self.pool_max.set(pool.get_max_size())
        self.pool_in_use.set(size - idle)

    def exposition(self) -> bytes:
        """The Prometheus text of the registry."""
        return generate_latest(self.registry)


def _route_of(scope: Scope) -> str:
    # The route template, never the concrete path: ids would explode the label set.
    # The router records the matched route in the (shared) scope.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every request by route template, method and status,
    and times it (cheaper than ``BaseHTTPMiddleware``, which wraps every response)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
