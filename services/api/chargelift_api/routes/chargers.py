"""``/api/v1/chargers``: state, history, sessions and energy of the chargers."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field

from chargelift_api.deps import Context, context, require_read
from chargelift_api.energy import ChargerSeries, Series, derive_sessions, energy_by_period
from chargelift_api.periods import Period, calendar_periods
from chargelift_api.problems import Problem, ProblemError
from chargelift_contract import CATALOGUE, FieldType, OperationState

router = APIRouter(prefix="/api/v1", tags=["chargers"], dependencies=[Depends(require_read)])

ChargerId = Annotated[
    str, Path(pattern=r"^[a-z0-9_-]{1,64}$", description="charger id", examples=["amtron-1"])
]
From = Annotated[AwareDatetime, Query(alias="from", description="start (RFC 3339, inclusive)")]
To = Annotated[AwareDatetime, Query(alias="to", description="end (RFC 3339, exclusive)")]
Format = Annotated[
    Literal["json", "csv"] | None, Query(description="csv or json (or use the Accept header)")
]
ValueT = float | str | bool | None
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or bad token"},
    422: {"model": Problem, "description": "bad parameters"},
}


class ChargerSummary(BaseModel):
    id: str = Field(examples=["amtron-1"])
    first_seen: datetime
    last_seen: datetime
    availability: Literal["online", "offline"] | None = Field(
        description="online/offline as last reported by the edge (its last will: offline)"
    )
    operation_state: OperationState | None
    power_w: float | None = Field(description="current PowerOutput, W")


class FieldValue(BaseModel):
    field: str = Field(examples=["PowerOutput"])
    value: ValueT = Field(examples=[7360.0])
    unit: str | None = Field(examples=["W"])
    sampling_time: datetime
    age_s: float = Field(description="seconds since SamplingTime")


class ChargerDetail(ChargerSummary):
    fields: list[FieldValue]


class RawPoint(BaseModel):
    time: datetime
    value: ValueT


class NumericBucket(BaseModel):
    start: datetime
    min: float | None
    avg: float | None = Field(description="time-weighted average over the bucket")
    max: float | None
    last: float | None = Field(description="value in force at the end of the bucket")
    count: int = Field(description="readings inside the bucket (0: value carried in)")


class StateBucket(BaseModel):
    start: datetime
    seconds: dict[str, float] = Field(description="seconds spent in each OperationState")


class Readings(BaseModel):
    charger: str
    field: str
    unit: str | None
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    bucket_s: int | None
    initial: RawPoint | None = Field(description="the value carried in from before `from`")
    points: list[RawPoint] | None = None
    buckets: list[NumericBucket] | None = None
    states: list[StateBucket] | None = None


class SessionOut(BaseModel):
    start: datetime
    end: datetime | None = Field(description="null while the session is open")
    duration_s: float | None
    energy_wh: float
    peak_power_w: float | None
    cost: float = Field(description="in `currency`, integrated per price interval")
    currency: str
    energy_by_tariff_wh: dict[str, float]
    offline_during_session: bool


class Sessions(BaseModel):
    charger: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    sessions: list[SessionOut]


class TariffEnergy(BaseModel):
    energy_wh: float
    cost: float


class PeriodOut(BaseModel):
    start: datetime
    end: datetime
    energy_wh: float
    cost: float
    tariffs: dict[str, TariffEnergy]


class Energy(BaseModel):
    charger: str
    period: Period
    timezone: str
    currency: str
    periods: list[PeriodOut]
    total_energy_wh: float
    total_cost: float


def _window(start: datetime, end: datetime, ctx: Context) -> tuple[datetime, datetime]:
    if start >= end:
        raise ProblemError(422, "Unprocessable Content", "`from` must be before `to`")
    if end - start > timedelta(days=ctx.settings.max_window_days):
        raise ProblemError(
            422,
            "Unprocessable Content",
            f"window longer than {ctx.settings.max_window_days} days",
        )
    return start.astimezone(UTC), end.astimezone(UTC)


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]], filename: str) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            ["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row]
        )
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _known(ctx: Context, charger: str) -> None:
    if await ctx.repo.charger(charger) is None:
        raise ProblemError(404, "Not Found", f"no charger {charger!r}")


def _summary(row: Any) -> dict[str, Any]:
    state = row.state if row.state in OperationState.__members__.values() else None
    avail = row.availability if row.availability in ("online", "offline") else None
    return {
        "id": row.charger,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "availability": avail,
        "operation_state": state,
        "power_w": row.power,
    }


@router.get("/chargers", response_model=list[ChargerSummary], responses=ERRORS)
async def list_chargers(ctx: Annotated[Context, Depends(context)]) -> list[ChargerSummary]:
    """Every charger the system has heard of, with its current state and power."""
    return [ChargerSummary(**_summary(r)) for r in await ctx.repo.chargers()]


@router.get(
    "/chargers/{charger}",
    response_model=ChargerDetail,
    responses={**ERRORS, 404: {"model": Problem, "description": "unknown charger"}},
)
async def get_charger(
    charger: ChargerId, ctx: Annotated[Context, Depends(context)]
) -> ChargerDetail:
    """The latest value of every field, with its SamplingTime and age."""
    row = await ctx.repo.charger(charger)
    if row is None:
        raise ProblemError(404, "Not Found", f"no charger {charger!r}")
    now = datetime.now(UTC)
    fields = [
        FieldValue(
            field=f.field,
            value=f.value,
            unit=CATALOGUE[f.field].unit if f.field in CATALOGUE else None,
            sampling_time=f.time,
            age_s=(now - f.time).total_seconds(),
        )
        for f in await ctx.repo.latest(charger)
    ]
    return ChargerDetail(**_summary(row), fields=fields)


@router.get(
    "/chargers/{charger}/readings",
    response_model=Readings,
    response_model_by_alias=True,
    responses={
        **ERRORS,
        404: {"model": Problem},
        200: {"content": {"text/csv": {}}, "description": "JSON or CSV"},
    },
)
async def readings(
    request: Request,
    charger: ChargerId,
    ctx: Annotated[Context, Depends(context)],
    field: Annotated[str, Query(description="a field of the catalogue", examples=["PowerOutput"])],
    start: From,
    end: To,
    bucket: Annotated[int | None, Query(gt=0, description="bucket width in seconds")] = None,
    format: Format = None,
) -> Any:
    """Raw readings, or per-bucket aggregates: min/avg/max/last/count for numbers,
    time in state for ``OperationState``. Values carry forward into empty buckets."""
    if field not in CATALOGUE:
        raise ProblemError(
            422, "Unprocessable Content", f"unknown field {field!r}; known: {', '.join(CATALOGUE)}"
        )
    a, b = _window(start, end, ctx)
    spec = CATALOGUE[field]
    limit = ctx.settings.max_points
    if bucket is not None:
        if bucket < ctx.settings.min_bucket_seconds:
            raise ProblemError(
                422,
                "Unprocessable Content",
                f"bucket must be at least {ctx.settings.min_bucket_seconds} s",
            )
        if (b - a).total_seconds() / bucket > limit:
            raise ProblemError(
                422,
                "Unprocessable Content",
                f"more than {limit} buckets: use a larger bucket or window",
            )
        if spec.type not in (FieldType.NUMBER, FieldType.STATE):
            raise ProblemError(
                422,
                "Unprocessable Content",
                f"{field} is {spec.type.value}: buckets need a number or state",
            )
    await _known(ctx, charger)
    series = await ctx.repo.series(charger, field, a, a)  # only the carried-in value
    initial = (
        None
        if series.initial is None
        else RawPoint(time=series.initial.time, value=series.initial.value)
    )
    out = Readings(
        charger=charger,
        field=field,
        unit=spec.unit,
        start=a,
        end=b,
        bucket_s=bucket,
        initial=initial,
    )
    csv_out = _wants_csv(request, format)
    if bucket is None:
        if await ctx.repo.count_points(charger, field, a, b, limit) > limit:
            raise ProblemError(
                422,
                "Unprocessable Content",
                f"more than {limit} points: narrow the window or use `bucket`",
            )
        data = await ctx.repo.series(charger, field, a, b)
        out.points = [RawPoint(time=p.time, value=p.value) for p in data.points]
        if csv_out:
            return _csv(
                ("time", field), [(p.time, p.value) for p in out.points], f"{charger}-{field}.csv"
            )
        return out
    width = timedelta(seconds=bucket)
    if spec.type is FieldType.STATE:
        grouped: dict[datetime, dict[str, float]] = {}
        for r in await ctx.repo.state_buckets(charger, a, b, width):
            grouped.setdefault(r["bucket"], {})[r["state"]] = float(r["seconds"])
        out.states = [StateBucket(start=k, seconds=v) for k, v in sorted(grouped.items())]
        if csv_out:
            return _csv(
                ("start", "state", "seconds"),
                [(s.start, k, v) for s in out.states for k, v in s.seconds.items()],
                f"{charger}-{field}.csv",
            )
        return out
    rows = await ctx.repo.numeric_buckets(charger, field, a, b, width)
    out.buckets = [
        NumericBucket(
            start=r["bucket"],
            min=r["min"],
            avg=r["avg"],
            max=r["max"],
            last=r["last"],
            count=r["count"],
        )
        for r in rows
    ]
    if csv_out:
        return _csv(
            ("start", "min", "avg", "max", "last", "count"),
            [(x.start, x.min, x.avg, x.max, x.last, x.count) for x in out.buckets],
            f"{charger}-{field}.csv",
        )
    return out


async def _charger_series(ctx: Context, charger: str, a: datetime, b: datetime) -> ChargerSeries:
    repo = ctx.repo
    register_field = "SessionEnergy"
    total: Series[Any] = await repo.series(charger, "TotalEnergyConsumption", a, b)
    # A lifetime meter, where the charger has one, beats the per-session register.
    register = (
        total
        if (total.points or total.initial)
        else await repo.series(charger, register_field, a, b)
    )
    return ChargerSeries(
        state=await repo.series(charger, "OperationState", a, b),
        vehicle=await repo.series(charger, "ConnectedVehicle", a, b),
        register=register,
        power=await repo.series(charger, "PowerOutput", a, b),
        price=await repo.series(charger, "EnergyPrice", a, b),
        tariff=await repo.series(charger, "Tariff", a, b),
        availability=await repo.availability(charger, a, b),
    )


@router.get(
    "/chargers/{charger}/sessions",
    response_model=Sessions,
    response_model_by_alias=True,
    responses={
        **ERRORS,
        404: {"model": Problem},
        200: {"content": {"text/csv": {}}, "description": "JSON or CSV for billing"},
    },
)
async def sessions(
    request: Request,
    charger: ChargerId,
    ctx: Annotated[Context, Depends(context)],
    start: From,
    end: To,
    format: Format = None,
) -> Any:
    """Charging sessions with energy (register deltas, reset-aware), peak power and cost."""
    a, b = _window(start, end, ctx)
    await _known(ctx, charger)
    series = await _charger_series(ctx, charger, a, b)
    cur = ctx.settings.currency
    found = [
        SessionOut(
            start=s.start,
            end=s.end,
            duration_s=s.duration_s,
            energy_wh=s.energy_wh,
            peak_power_w=s.peak_power_w,
            cost=round(s.cost_ct / 100.0, 4),
            currency=cur,
            energy_by_tariff_wh=s.tariffs,
            offline_during_session=s.offline,
        )
        for s in derive_sessions(series, b)
        if s.start >= a or s.end is None or s.end > a
    ]
    if _wants_csv(request, format):
        return _csv(
            (
                "start",
                "end",
                "duration_s",
                "energy_wh",
                "peak_power_w",
                "cost",
                "currency",
                "offline_during_session",
            ),
            [
                (
                    s.start,
                    s.end,
                    s.duration_s,
                    round(s.energy_wh, 3),
                    s.peak_power_w,
                    s.cost,
                    s.currency,
                    s.offline_during_session,
                )
                for s in found
            ],
            f"{charger}-sessions.csv",
        )
    return Sessions(charger=charger, start=a, end=b, sessions=found)


@router.get(
    "/chargers/{charger}/energy",
    response_model=Energy,
    responses={**ERRORS, 404: {"model": Problem}},
)
async def energy(
    charger: ChargerId,
    ctx: Annotated[Context, Depends(context)],
    start: From,
    end: To,
    period: Annotated[Period, Query(description="calendar period in API_TIMEZONE")] = Period.DAY,
) -> Energy:
    """Energy and cost per calendar day, week or month, in total and per tariff."""
    a, b = _window(start, end, ctx)
    await _known(ctx, charger)
    zone = ctx.settings.zone
    spans = calendar_periods(a, b, period, zone)
    series = await _charger_series(ctx, charger, a, b)
    rows = energy_by_period(series.register, series.price, series.tariff, spans)
    periods = [
        PeriodOut(
            start=p.start.astimezone(zone),
            end=p.end.astimezone(zone),
            energy_wh=p.energy_wh,
            cost=round(p.cost_ct / 100.0, 4),
            tariffs={
                k: TariffEnergy(energy_wh=wh, cost=round(ct / 100.0, 4))
                for k, (wh, ct) in p.tariffs.items()
            },
        )
        for p in rows
    ]
    return Energy(
        charger=charger,
        period=period,
        timezone=ctx.settings.timezone,
        currency=ctx.settings.currency,
        periods=periods,
        total_energy_wh=sum(p.energy_wh for p in rows),
        total_cost=round(sum(p.cost_ct for p in rows) / 100.0, 4),
    )
