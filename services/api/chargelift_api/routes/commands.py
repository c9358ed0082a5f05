"""``/api/v1/chargers/{id}/commands``: send a command, follow it, list the audit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import JSONResponse

from chargelift_api.auth import TokenEntry
from chargelift_api.control import (
    API_NAMES,
    CommandRequest,
    CommandRow,
    CommandStatus,
    Cursor,
    Outgoing,
    QueueFullError,
    ResultRow,
    build,
    command_id_for,
    derive_status,
    outgoing_of,
    random_command_id,
    same_request,
    valid_idempotency_key,
)
from chargelift_api.deps import Ctx, require_control, require_read
from chargelift_api.models import CommandList, CommandOut, Reverted
from chargelift_api.problems import ProblemError, not_found, unprocessable
from chargelift_api.routes.common import ERRORS, NOT_FOUND, ChargerId, problem
from chargelift_contract.commands import COMMAND_ID_PATTERN, Command, CommandError

router = APIRouter(prefix="/api/v1", tags=["commands"])

CommandId = Annotated[
    str,
    Path(pattern=f"^{COMMAND_ID_PATTERN}$", description="command id", examples=["api:5f0c"]),
]

#: Most commands in one page of the audit.
MAX_PAGE = 200


def _unavailable(detail: str) -> ProblemError:
    return ProblemError(503, "Service Unavailable", detail, headers={"Retry-After": "5"})


def command_out(row: CommandRow, status: CommandStatus) -> CommandOut:
    """The public view of a command and its status."""
    try:
        name = API_NAMES[Command(row.command)]
    except ValueError:  # the table's CHECK allows only the four
        name = row.command
    return CommandOut(
        id=row.command_id,
        charger=row.charger,
        command=name,
        value=row.value,
        valid_for=row.valid_for,
        issuer=row.issuer,
        via="mqtt" if row.via == "mqtt" else "api",
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        received_at=row.received_at,
        status=status.status,
        reason=status.reason,
        result_at=status.result_at,
        result_value=status.value,
        lease_end=status.lease_end,
        reverted=None
        if status.reverted_at is None
        else Reverted(at=status.reverted_at, reason=status.reverted_reason or ""),
    )


def _statuses(
    rows: Sequence[CommandRow], results: Sequence[ResultRow], now: datetime
) -> list[CommandOut]:
    by_id: dict[str, list[ResultRow]] = {}
    for r in results:
        by_id.setdefault(r.command_id, []).append(r)
    return [
        command_out(row, derive_status(row, by_id.get(row.command_id, []), now)) for row in rows
    ]


def location(charger: str, command_id: str) -> str:
    return f"/api/v1/chargers/{charger}/commands/{command_id}"


POST_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **NOT_FOUND,
    400: problem("the body is not JSON"),
    403: problem("the token lacks the control scope"),
    503: problem("no broker configured (MQTT_HOST), the queue is full, or the database is down"),
}


@router.post(
    "/chargers/{charger}/commands",
    status_code=202,
    response_model=CommandOut,
    responses={
        202: {
            "description": "accepted: on record and queued for the broker; `Location` "
            "names its status",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **POST_ERRORS,
    },
)
async def post_command(
    charger: ChargerId,
    body: CommandRequest,
    ctx: Ctx,
    token: Annotated[TokenEntry, Depends(require_control)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="the same key (same token and charger) is the same command: "
            "answered again, published at most once more; a different body is a 422",
            max_length=255,
        ),
    ] = None,
) -> JSONResponse:
    """Send a command to a charger (needs the `control` scope).

    The command is recorded (the audit names the token: `token:<name>`) and queued
    for the broker; the answer is 202 with its id and status (`pending`), and
    `Location` where to follow it. A broker that is down delays the command, which
    is published when it returns, unless `expires_in` has passed by then: the status
    then says `expired` and it is never applied.
    """
    publisher = ctx.commands
    if publisher is None:
        raise _unavailable("commands are off: the API has no broker (MQTT_HOST is not set)")
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise unprocessable("Idempotency-Key must be 1-255 printable ASCII characters")
    if await ctx.repo.charger(charger) is None:
        raise not_found(f"no charger {charger!r}")
    command_id = (
        random_command_id()
        if idempotency_key is None
        else command_id_for(token.name, charger, idempotency_key)
    )
    now = datetime.now(UTC)
    try:
        built = build(body, charger, command_id, token.name, now)
    except CommandError as exc:
        raise unprocessable(str(exc)) from None
    if not publisher.has_room():
        ctx.metrics.command_publish_failures.labels("queue_full").inc()
        raise _unavailable("too many commands waiting for the broker (API_CONTROL_QUEUE)")
    row, created = await ctx.repo.insert_command(
        charger,
        built.command_id,
        built.command.value,
        built.value,
        built.issued_at,
        built.expires_at,
        built.valid_for,
        built.issuer,
    )
    if not created and not same_request(row, built):
        raise unprocessable("this Idempotency-Key was used for a different command: use a new key")
    status = derive_status(row, await ctx.repo.results(charger, [row.command_id]), now)
    headers = {"Location": location(charger, row.command_id)}
    item: Outgoing | None
    if created:
        item = built.outgoing()
        ctx.metrics.commands_accepted.labels(built.command.value).inc()
    else:
        headers["Idempotent-Replayed"] = "true"
        # Once more to the broker while it may still be applied (the first attempt may
        # have been lost with a process that stopped); the edge removes duplicates.
        item = outgoing_of(row) if status.status == "pending" else None
    if item is not None:
        try:
            publisher.submit(item)
        except QueueFullError:
            raise _unavailable(
                "too many commands waiting for the broker (API_CONTROL_QUEUE); the command "
                "is on record: send it again with the same Idempotency-Key"
            ) from None
    out = command_out(row, status)
    return JSONResponse(out.model_dump(mode="json"), status_code=202, headers=headers)


@router.get(
    "/chargers/{charger}/commands/{command_id}",
    responses={**ERRORS, 404: problem("unknown charger or command")},
    dependencies=[Depends(require_read)],
)
async def get_command(charger: ChargerId, command_id: CommandId, ctx: Ctx) -> CommandOut:
    """One command and its status: `pending`, `applied`, `rejected`, `expired` or
    `failed`, with the reason and the times (`reverted` when a limit's lease ran out)."""
    row = await ctx.repo.command(charger, command_id)
    if row is None:
        raise not_found(f"no command {command_id!r} for charger {charger!r}")
    results = await ctx.repo.results(charger, [command_id])
    return command_out(row, derive_status(row, results, datetime.now(UTC)))


@router.get(
    "/chargers/{charger}/commands",
    responses={**ERRORS, **NOT_FOUND},
    dependencies=[Depends(require_read)],
)
async def list_commands(
    charger: ChargerId,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="commands per page")] = 50,
    before: Annotated[
        str | None,
        Query(max_length=200, description="`next` of the previous page: the older ones"),
    ] = None,
) -> CommandList:
    """The audit: every command to the charger (through the API or straight over MQTT),
    newest first, who sent it and where it stands; `next` continues with older ones."""
    after = None
    if before is not None:
        try:
            after = Cursor.decode(before)
        except ValueError:
            raise unprocessable("`before` is not a cursor this API gave (`next`)") from None
    if await ctx.repo.charger(charger) is None:
        raise not_found(f"no charger {charger!r}")
    rows = await ctx.repo.commands(charger, after, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    results = await ctx.repo.results(charger, [r.command_id for r in page]) if page else []
    last = page[-1] if page else None
    return CommandList(
        charger=charger,
        commands=_statuses(page, results, datetime.now(UTC)),
        next=Cursor(last.received_at, last.command_id).encode() if more and last else None,
    )
