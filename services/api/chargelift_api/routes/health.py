"""Health, readiness and metrics: no token (keep them off the public internet)."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from chargelift_api import __version__
from chargelift_api.deps import Ctx

router = APIRouter(tags=["operations"])


class Status(BaseModel):
    """Health or readiness."""

    status: str
    detail: str | None = None
    version: str | None = None


@router.get("/healthz", response_model_exclude_none=True)
async def healthz() -> Status:
    """The process is up (it does not look at the database), and the version it runs."""
    return Status(status="ok", version=__version__)


@router.get(
    "/readyz",
    responses={503: {"model": Status, "description": "the database does not answer"}},
)
async def readyz(ctx: Ctx) -> Response:
    """The database answers within 2 s."""
    try:
        await ctx.repo.ping()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The exception's class only: its text may carry the DSN's host or user.
        body = Status(status="unavailable", detail=type(exc).__name__)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    return JSONResponse(Status(status="ready").model_dump(exclude_none=True))


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus(ctx: Ctx) -> Response:
    """Prometheus exposition: requests by route and status, latency, pool statistics."""
    ctx.metrics.observe_pool(ctx.repo.pool)
    if ctx.commands is not None:
        ctx.metrics.broker_connected.set(1 if ctx.commands.connected else 0)
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
