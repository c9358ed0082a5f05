"""Calendar periods (day, week, month) in a time zone, as UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks: Monday 00:00 local time
    MONTH = "month"


def _floor(local: datetime, period: Period) -> datetime:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.WEEK:
        day -= timedelta(days=day.weekday())
    elif period is Period.MONTH:
        day = day.replace(day=1)
    return day


def _next(start: datetime, period: Period) -> datetime:
    if period is Period.DAY:
        naive = start.replace(tzinfo=None) + timedelta(days=1)
    elif period is Period.WEEK:
        naive = start.replace(tzinfo=None) + timedelta(days=7)
    else:
        y, m = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        naive = start.replace(tzinfo=None, year=y, month=m)
    # Re-attach the zone to the wall-clock time: a day is 23 or 25 hours at DST changes.
    return naive.replace(tzinfo=start.tzinfo)


def calendar_periods(
    start: datetime, end: datetime, period: Period, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Periods covering [start, end) in local calendar terms, clipped to the window (UTC)."""
    out = []
    cursor = _floor(start.astimezone(zone), period)
    while cursor.astimezone(UTC) < end:
        nxt = _next(cursor, period)
        a = max(cursor.astimezone(UTC), start.astimezone(UTC))
        b = min(nxt.astimezone(UTC), end.astimezone(UTC))
        if a < b:
            out.append((a, b))
        cursor = nxt
    return out
