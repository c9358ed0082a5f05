"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from chargelift_api import metrics, problems
from chargelift_api.auth import TokenStore
from chargelift_api.config import Settings
from chargelift_api.deps import Context
from chargelift_api.repository import Repository
from chargelift_api.routes import chargers, health


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            command_timeout=30,
        ) as pool:
            app.state.ctx = Context(
                settings, Repository(pool), TokenStore(settings.token_entries())
            )
            yield

    app = FastAPI(
        title="chargelift API",
        version="1.0.0",
        description="State, history, charging sessions, energy and cost of your chargers. "
        "Every /api/v1 endpoint needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.middleware("http")(metrics.middleware)
    app.include_router(chargers.router)
    app.include_router(health.router)
    return app
