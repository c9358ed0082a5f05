"""The FastAPI application factory: routes, errors, metrics, and the pool's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
from fastapi import FastAPI

from chargelift_api import docs, problems
from chargelift_api.auth import TokenStore
from chargelift_api.billing import Billing
from chargelift_api.config import Settings
from chargelift_api.control import CommandPublisher, QueueFullError, outgoing_of
from chargelift_api.deps import Context
from chargelift_api.metrics import ApiMetrics, MetricsMiddleware
from chargelift_api.repository import Repository
from chargelift_api.routes import billing, chargers, health, readings
from chargelift_api.routes import commands as command_routes

DESCRIPTION = """
State, history, charging sessions, energy and cost of the chargers, from the database
(the API never talks to a charger).

Every `/api/v1` endpoint needs `Authorization: Bearer <token>` (scope `read`; sending a
command: scope `control`); tokens are made with `chargelift-api hash-token`. Errors are
problem details (`application/problem+json`, RFC 9457). Times are RFC 3339 with an offset; `from` is
inclusive, `to` exclusive. The rules for sessions, energy and cost are in docs/api.md.
"""

log = logging.getLogger(__name__)

# Every API query is short and index-driven; JIT compilation costs more than it saves
# (it added ~200 ms to a 24-hour bucket query whose row estimate it overrated).
SERVER_SETTINGS = {"jit": "off", "application_name": "chargelift-api"}


def server_settings(settings: Settings) -> dict[str, str]:
    """:data:`SERVER_SETTINGS` and the statement timeout: the server cancels a statement
    that runs longer (answered as a 422, problems.py), so no request holds a connection
    and the database's CPU for minutes."""
    return {**SERVER_SETTINGS, "statement_timeout": f"{settings.statement_timeout_ms}ms"}


async def resend_unfinished(repo: Repository, commands: CommandPublisher) -> int:
    """Queue again what this API accepted before a restart and may still be applied (no
    result, not expired): the queue of the process before died with it. The edge applies
    a command id once, so one that was published already is not applied twice."""
    queued = 0
    for row in await repo.unfinished_commands(commands.capacity):
        try:
            commands.submit(outgoing_of(row))
        except QueueFullError:
            break
        queued += 1
    if queued:
        log.info("commands: %d accepted earlier and unfinished, queued again", queued)
    return queued


def create_app(
    settings: Settings,
    *,
    metrics: ApiMetrics | None = None,
    commands: CommandPublisher | None = None,
) -> FastAPI:
    """The application; the database pool lives as long as the app (lifespan). Its
    metrics are ``metrics`` (default: new ones, on a registry of their own); commands
    go to ``commands`` (whose owner, :class:`~chargelift_api.service.ApiService`, runs
    it; None: the command endpoints answer 503)."""
    metrics = metrics if metrics is not None else ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=min(settings.pool_min, settings.pool_max),
            max_size=settings.pool_max,
            command_timeout=30,
            server_settings=server_settings(settings),
        ) as pool:
            repo = Repository(pool)
            if commands is not None:
                await resend_unfinished(repo, commands)
            app.state.ctx = Context(
                settings=settings,
                repo=repo,
                billing=Billing(repo, timedelta(days=settings.max_session_days)),
                tokens=TokenStore(settings.token_entries()),
                metrics=metrics,
                commands=commands,
            )
            yield

    app = FastAPI(
        title="chargelift API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's pages load their files from a CDN: chargelift_api.docs serves them.
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics  # also in the Context the lifespan makes
    docs.install(app)
    problems.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in (
        chargers.router,
        readings.router,
        billing.router,
        command_routes.router,
        health.router,
    ):
        app.include_router(router)
    return app
