"""Health, readiness and metrics (no token needed; keep them off the public internet)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chargelift_api import metrics
from chargelift_api.deps import Context, context

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database unreachable"}})
async def readyz(ctx: Annotated[Context, Depends(context)]) -> Response:
    """The database answers."""
    try:
        await ctx.repo.ping()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return JSONResponse(
            {"status": "unavailable", "detail": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics", response_class=Response)
async def prometheus(ctx: Annotated[Context, Depends(context)]) -> Response:
    """Prometheus exposition."""
    pool = ctx.repo.pool
    metrics.POOL_SIZE.set(pool.get_size())
    metrics.POOL_IDLE.set(pool.get_idle_size())
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
