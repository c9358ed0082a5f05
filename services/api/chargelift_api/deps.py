"""Request dependencies: the typed application state and token authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chargelift_api.auth import TokenEntry, TokenStore
from chargelift_api.config import Settings
from chargelift_api.problems import ProblemError
from chargelift_api.repository import Repository


@dataclass(frozen=True)
class Context:
    """What the lifespan puts in ``app.state.ctx``."""

    settings: Settings
    repo: Repository
    tokens: TokenStore


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="API token (chargelift-api hash-token)")


def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenEntry:
    """401 unless a bearer token with scope read (or admin) is presented."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    entry = context(request).tokens.check(credentials.credentials, "read")
    if entry is None:
        raise _unauthorized("invalid token")
    return entry


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail)
