"""Request dependencies: the typed application state and token authentication."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chargelift_api.auth import Scope, TokenEntry, TokenStore
from chargelift_api.billing import Billing
from chargelift_api.config import Settings
from chargelift_api.control import CommandPublisher
from chargelift_api.metrics import ApiMetrics
from chargelift_api.problems import ProblemError
from chargelift_api.repository import Repository


@dataclass(frozen=True)
class Context:
    """What the lifespan puts in ``app.state.ctx`` for the routes."""

    settings: Settings
    repo: Repository
    billing: Billing
    tokens: TokenStore
    metrics: ApiMetrics
    #: None without ``MQTT_HOST``: the command endpoints answer 503.
    commands: CommandPublisher | None = None


def context(request: Request) -> Context:
    """The application's :class:`Context`."""
    ctx: Context = request.app.state.ctx
    return ctx


def request_context(request: Request) -> Context:
    """The :class:`Context` of one request: its repository (and the billing that uses
    it) may fetch at most ``API_MAX_ROWS`` rows in all (docs/api.md, "Limits")."""
    app = context(request)
    repo = app.repo.for_request(app.settings.max_rows)
    billing = Billing(repo, timedelta(days=app.settings.max_session_days))
    return replace(app, repo=repo, billing=billing)


Ctx = Annotated[Context, Depends(request_context)]

_bearer = HTTPBearer(
    auto_error=False, description="API token (`chargelift-api hash-token`, docs/api.md)"
)


def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: Scope
) -> TokenEntry:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    entry = context(request).tokens.check(credentials.credentials)
    if entry is None:
        raise _unauthorized("invalid token")
    if not entry.grants(scope):
        raise ProblemError(403, "Forbidden", f"this token lacks the {scope} scope")
    return entry


def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenEntry:
    """401 unless a bearer token with scope read (or admin) is presented."""
    return _authenticate(request, credentials, "read")


def require_control(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenEntry:
    """401 unless a bearer token is presented, 403 unless its scope is control."""
    return _authenticate(request, credentials, "control")


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
