"""``GET /api/v1/chargers/{id}/readings``: history of one field, raw or in buckets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from chargelift_api.deps import Ctx, require_read
from chargelift_api.models import NumericBucket, RawPoint, Readings, StateBucket
from chargelift_api.problems import not_found, unprocessable
from chargelift_api.repository import AVAILABILITY
from chargelift_api.routes.common import (
    ERRORS,
    NOT_FOUND,
    ChargerId,
    Format,
    From,
    To,
    csv_content,
    csv_response,
    wants_csv,
    window,
)
from chargelift_contract import CATALOGUE, FieldSpec, FieldType, OperationState

_STATES = frozenset(s.value for s in OperationState)

router = APIRouter(prefix="/api/v1", tags=["history"], dependencies=[Depends(require_read)])

# Ingest records online/offline changes as this pseudo-field: its history is readable too.
AVAILABILITY_SPEC = FieldSpec(
    AVAILABILITY, FieldType.STRING, None, "online/offline as recorded by ingest"
)

FieldName = Annotated[
    str,
    Query(
        description="a field of the catalogue, or Availability: "
        + ", ".join([*CATALOGUE, AVAILABILITY]),
        examples=["PowerOutput"],
        max_length=64,
    ),
]
Bucket = Annotated[
    int | None,
    Query(
        gt=0,
        le=366 * 86400,
        description="bucket width in seconds (at least API_MIN_BUCKET_SECONDS); "
        "without it: raw points",
        examples=[3600],
    ),
]


def _state_lines(states: list[StateBucket]) -> Iterator[tuple[object, ...]]:
    """CSV lines: one per bucket and state; a bucket with no known state is a line too,
    with empty cells (as a bucket of null numbers is)."""
    for s in states:
        if not s.seconds:
            yield (s.start, None, None)
        for k, v in s.seconds.items():
            yield (s.start, k.value, v)


@router.get(
    "/chargers/{charger}/readings",
    response_model=Readings,
    responses={**ERRORS, **NOT_FOUND, **csv_content("JSON, or CSV with `format=csv`")},
)
async def readings(
    request: Request,
    charger: ChargerId,
    ctx: Ctx,
    field: FieldName,
    start: From,
    end: To,
    bucket: Bucket = None,
    format: Format = None,
) -> Readings | Response:
    """Raw readings, or per-bucket aggregates: min/avg/max/last/count for numbers and
    seconds in each state for ``OperationState``.

    The value in force before ``from`` is carried in (``initial``) and into every empty
    bucket up to the charger's latest reading; every bucket is listed, and those before
    the first reading or after the latest one are empty (null, or no seconds). More
    than API_MAX_POINTS points or buckets is a 422: narrow the window or use a (larger)
    bucket.
    """
    spec = AVAILABILITY_SPEC if field == AVAILABILITY else CATALOGUE.get(field)
    if spec is None:
        known = ", ".join([*CATALOGUE, AVAILABILITY])
        raise unprocessable(f"unknown field {field!r}; known: {known}")
    a, b = window(start, end, ctx.settings)
    limit = ctx.settings.max_points
    if bucket is not None:
        if bucket < ctx.settings.min_bucket_seconds:
            raise unprocessable(f"bucket must be at least {ctx.settings.min_bucket_seconds} s")
        if (b - a).total_seconds() / bucket > limit:
            raise unprocessable(
                f"more than {limit} buckets: use a larger bucket or a shorter window"
            )
        if spec.type not in (FieldType.NUMBER, FieldType.STATE):
            raise unprocessable(f"{field} is a {spec.type.value}: buckets need a number or a state")
    row = await ctx.repo.charger(charger)
    if row is None:
        raise not_found(f"no charger {charger!r}")
    initial, points = await ctx.repo.points(charger, field, a, b, limit if bucket is None else 0)
    out = Readings(
        charger=charger,
        field=field,
        unit=spec.unit,
        start=a,
        end=b,
        bucket_s=bucket,
        initial=None if initial is None else RawPoint(time=initial.time, value=initial.value),
    )
    as_csv = wants_csv(request, format)
    name = f"{charger}-{field}.csv"
    if bucket is None:
        if len(points) > limit:
            raise unprocessable(f"more than {limit} points: narrow the window or use `bucket`")
        out.points = [RawPoint(time=p.time, value=p.value) for p in points]
        if as_csv:
            return csv_response(("time", field), ((p.time, p.value) for p in out.points), name)
        return out
    width = timedelta(seconds=bucket)
    # Nothing is known after the charger's latest reading, nor after now (ingest takes
    # readings from a clock up to a few minutes fast): later buckets are empty.
    data_end = min(row.last_seen, datetime.now(UTC))
    if spec.type is FieldType.STATE:
        out.states = [
            StateBucket(
                start=r.start,
                seconds={OperationState(k): v for k, v in r.seconds.items() if k in _STATES},
            )
            for r in await ctx.repo.state_buckets(charger, a, b, width, data_end)
        ]
        if as_csv:
            return csv_response(
                ("start", "state", "seconds"),
                _state_lines(out.states),
                name,
            )
        return out
    rows = await ctx.repo.numeric_buckets(charger, field, a, b, width, data_end)
    out.buckets = [
        NumericBucket(start=r.start, min=r.min, avg=r.avg, max=r.max, last=r.last, count=r.count)
        for r in rows
    ]
    if as_csv:
        return csv_response(
            ("start", "min", "avg", "max", "last", "count"),
            ((x.start, x.min, x.avg, x.max, x.last, x.count) for x in out.buckets),
            name,
        )
    return out
