"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from chargelift_api.repository import CommandsNotRecordable, RowLimitExceeded

PROBLEM = "application/problem+json"

#: Errors that mean "the database cannot answer now" (connection refused or lost, server
#: shutting down or starting, pool timeout): a 503, not a bug.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
log = logging.getLogger(__name__)


class Problem(BaseModel):
    """A problem detail document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raised by routes for a problem the client caused (4xx)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers


def unprocessable(detail: str) -> ProblemError:
    """A 422 for a parameter that is well-formed but not acceptable."""
    return ProblemError(422, "Unprocessable Content", detail)


def not_found(detail: str) -> ProblemError:
    """A 404."""
    return ProblemError(404, "Not Found", detail)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM,
        headers=headers,
    )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


def install(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            Problem(title=exc.title, status=exc.status, detail=exc.detail), exc.headers
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        title = _TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            Problem(title=title, status=exc.status_code, detail=detail), headers
        )

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(first['loc'])}: {first['msg']}"
        return problem_response(
            Problem(title="Unprocessable Content", status=422, detail=detail, errors=errors)
        )

    async def on_too_many_rows(_: Request, exc: Exception) -> JSONResponse:
        # Hostile or merely huge data: the request would load more rows than the budget.
        assert isinstance(exc, RowLimitExceeded)
        detail = (
            f"the request needs more than {exc.limit} rows ({exc.what}; API_MAX_ROWS): "
            "use a shorter window, or a larger bucket"
        )
        return problem_response(Problem(title="Unprocessable Content", status=422, detail=detail))

    async def on_not_recordable(_: Request, __: Exception) -> JSONResponse:
        detail = (
            "the API's database role may not record commands: log in as chargelift_api "
            "(docs/api.md)"
        )
        log.error("POST command: %s", detail)
        return problem_response(Problem(title="Service Unavailable", status=503, detail=detail))

    async def on_statement_timeout(request: Request, exc: Exception) -> JSONResponse:
        # The server cancelled a statement after API_STATEMENT_TIMEOUT_MS.
        ms = request.app.state.ctx.settings.statement_timeout_ms
        log.warning("%s %s: statement timeout (%d ms)", request.method, request.url.path, ms)
        detail = (
            f"a query ran longer than {ms} ms (API_STATEMENT_TIMEOUT_MS): "
            "use a shorter window, or a larger bucket"
        )
        return problem_response(Problem(title="Unprocessable Content", status=422, detail=detail))

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug or the database failing, never the client's input: logged with the
        # traceback, answered without details (they could carry secrets).
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem_response(Problem(title="Internal Server Error", status=500))

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down or restarting: the client may retry; no 500 for that.
        log.warning(
            "%s %s: database unavailable: %s", request.method, request.url.path, type(exc).__name__
        )
        return problem_response(
            Problem(title="Service Unavailable", status=503, detail="the database is unavailable"),
            {"Retry-After": "5"},
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RowLimitExceeded, on_too_many_rows)
    app.add_exception_handler(CommandsNotRecordable, on_not_recordable)
    app.add_exception_handler(asyncpg.QueryCanceledError, on_statement_timeout)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
