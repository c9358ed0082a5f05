"""``GET /api/v1/chargers`` and ``GET /api/v1/chargers/{id}``: what the chargers do now."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends

from chargelift_api.deps import Ctx, require_read
from chargelift_api.models import ChargerDetail, ChargerSummary, FieldValue
from chargelift_api.problems import not_found
from chargelift_api.repository import ChargerRow
from chargelift_api.routes.common import ERRORS, NOT_FOUND, ChargerId
from chargelift_contract import CATALOGUE, OperationState

router = APIRouter(prefix="/api/v1", tags=["chargers"], dependencies=[Depends(require_read)])

_STATES = frozenset(s.value for s in OperationState)


def summary(row: ChargerRow) -> ChargerSummary:
    """The public view of a charger row (unknown labels in the data become null)."""
    return ChargerSummary(
        id=row.charger,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        availability=row.availability if row.availability in ("online", "offline") else None,
        operation_state=OperationState(row.state) if row.state in _STATES else None,
        power_w=row.power,
    )


@router.get("/chargers", responses=ERRORS)
async def list_chargers(ctx: Ctx) -> list[ChargerSummary]:
    """Every charger the system has heard of, with its availability, state and power."""
    return [summary(r) for r in await ctx.repo.chargers()]


@router.get("/chargers/{charger}", responses={**ERRORS, **NOT_FOUND})
async def get_charger(charger: ChargerId, ctx: Ctx) -> ChargerDetail:
    """The latest value of every field, with its SamplingTime and age; 404 if unknown."""
    row = await ctx.repo.charger(charger)
    if row is None:
        raise not_found(f"no charger {charger!r}")
    now = datetime.now(UTC)
    fields = [
        FieldValue(
            field=f.field,
            value=f.value,
            unit=CATALOGUE[f.field].unit if f.field in CATALOGUE else None,
            sampling_time=f.time,
            age_s=round((now - f.time).total_seconds(), 3),
        )
        for f in await ctx.repo.latest(charger)
    ]
    return ChargerDetail(**summary(row).model_dump(), fields=fields)
