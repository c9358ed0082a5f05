"""``/sessions`` and ``/energy``: charging sessions, energy and cost for billing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from chargelift_api.deps import Ctx, require_read
from chargelift_api.energy import Bill
from chargelift_api.models import Energy, PeriodOut, SessionOut, Sessions, TariffLine
from chargelift_api.periods import Period
from chargelift_api.problems import not_found
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

router = APIRouter(prefix="/api/v1", tags=["billing"], dependencies=[Depends(require_read)])


def _money(ct: float) -> float:
    """ct to currency units, kept to 1/100 ct so that lines add up to totals."""
    return round(ct / 100.0, 4)


def _lines(bill: Bill, zone: ZoneInfo) -> list[TariffLine]:
    return [
        TariffLine(
            tariff=ln.tariff,
            price_ct_per_kwh=ln.price_ct_per_kwh,
            start=ln.start.astimezone(zone),
            end=ln.end.astimezone(zone),
            energy_wh=round(ln.energy_wh, 3),
            cost=_money(ln.cost_ct),
        )
        for ln in bill.lines
    ]


SESSION_CSV = (
    "charger",
    "session_start",
    "session_end",
    "duration_s",
    "session_energy_wh",
    "session_cost",
    "peak_power_w",
    "offline_during_session",
    "id_tag",
    "transaction_id",
    "tariff",
    "price_ct_per_kwh",
    "line_from",
    "line_to",
    "energy_wh",
    "cost",
    "currency",
)


def _session_lines(
    charger: str, sessions: list[SessionOut], currency: str
) -> Iterator[tuple[object, ...]]:
    """Billing lines: one per session and tariff interval (one empty line without energy)."""
    for s in sessions:
        head = (
            charger,
            s.start,
            s.end,
            s.duration_s,
            s.energy_wh,
            s.cost,
            s.peak_power_w,
            s.offline_during_session,
            s.id_tag,
            s.transaction_id,
        )
        if not s.tariffs:
            yield (*head, None, None, None, None, 0.0, 0.0, currency)
        for ln in s.tariffs:
            yield (
                *head,
                ln.tariff,
                ln.price_ct_per_kwh,
                ln.start,
                ln.end,
                ln.energy_wh,
                ln.cost,
                currency,
            )


@router.get(
    "/chargers/{charger}/sessions",
    response_model=Sessions,
    responses={**ERRORS, **NOT_FOUND, **csv_content("JSON, or CSV for billing with `format=csv`")},
)
async def sessions(
    request: Request,
    charger: ChargerId,
    ctx: Ctx,
    start: From,
    end: To,
    format: Format = None,
) -> Sessions | Response:
    """Charging sessions that started in [from, to): start, end (null while open),
    duration, energy from register deltas with reset and glitch detection, peak power,
    the id tag and transaction id (from chargers that report them, e.g. OCPP), and cost
    integrated per tariff interval with the prices that applied.

    A session is reported whole in the window it starts in, so consecutive windows
    never bill a session twice. The CSV has one line per session and tariff interval.
    """
    a, b = window(start, end, ctx.settings)
    row = await ctx.repo.charger(charger)
    if row is None:
        raise not_found(f"no charger {charger!r}")
    result = await ctx.billing.sessions(charger, a, b, row.last_seen)
    zone = ctx.settings.zone
    cur = ctx.settings.currency
    out = [
        SessionOut(
            start=s.start.astimezone(zone),
            end=None if s.end is None else s.end.astimezone(zone),
            open=s.end is None,
            duration_s=max(0.0, ((s.end or row.last_seen) - s.start).total_seconds()),
            charging_s=s.charging_s,
            energy_wh=round(s.bill.energy_wh, 3),
            peak_power_w=s.peak_power_w,
            cost=_money(s.bill.cost_ct),
            unpriced_energy_wh=round(s.bill.unpriced_wh, 3),
            offline_during_session=s.offline,
            id_tag=s.id_tag,
            transaction_id=s.transaction_id,
            tariffs=_lines(s.bill, zone),
        )
        for s in result.sessions
    ]
    if wants_csv(request, format):
        return csv_response(
            SESSION_CSV, _session_lines(charger, out, cur), f"{charger}-sessions.csv"
        )
    return Sessions(
        charger=charger,
        start=a.astimezone(zone),
        end=b.astimezone(zone),
        currency=cur,
        energy_register=result.register,
        sessions=out,
        total_energy_wh=round(sum(s.bill.energy_wh for s in result.sessions), 3),
        total_cost=_money(sum(s.bill.cost_ct for s in result.sessions)),
    )


@router.get("/chargers/{charger}/energy", responses={**ERRORS, **NOT_FOUND})
async def energy(
    charger: ChargerId,
    ctx: Ctx,
    start: From,
    end: To,
    period: Annotated[Period, Query(description="calendar period in API_TIMEZONE")] = Period.DAY,
) -> Energy:
    """Energy and cost per calendar day, ISO week or month in API_TIMEZONE, per tariff.

    The first and last periods are clipped to [from, to); a register delta that spans
    a boundary is shared pro rata by time.
    """
    a, b = window(start, end, ctx.settings)
    if await ctx.repo.charger(charger) is None:
        raise not_found(f"no charger {charger!r}")
    zone = ctx.settings.zone
    result = await ctx.billing.energy(charger, a, b, period, ctx.settings.timezone)
    rows = result.periods
    return Energy(
        charger=charger,
        period=period,
        timezone=ctx.settings.timezone,
        currency=ctx.settings.currency,
        energy_register=result.register,
        periods=[
            PeriodOut(
                start=p.start.astimezone(zone),
                end=_end(p.end).astimezone(zone),
                energy_wh=round(p.energy_wh, 3),
                cost=_money(p.cost_ct),
                unpriced_energy_wh=round(p.unpriced_wh, 3),
                tariffs=_lines(p, zone),
            )
            for p in rows
        ],
        total_energy_wh=round(sum(p.energy_wh for p in rows), 3),
        total_cost=_money(sum(p.cost_ct for p in rows)),
    )


def _end(moment: datetime | None) -> datetime:
    assert moment is not None  # periods always have an end
    return moment
