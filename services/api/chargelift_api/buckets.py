"""Time buckets over change-only readings, with the last value carried forward. Pure.

A value holds until the next reading, so a bucket's aggregates include the value in
force at its start (carried from the previous bucket or from before the window), and a
bucket without readings has that value alone (``count`` 0). Buckets before the first
reading ever are null.

The database aggregates the readings *inside* each bucket in one pass
(:class:`Partial`); :func:`numeric_buckets` adds what was carried in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from chargelift_api.series import Series


@dataclass(frozen=True, slots=True)
class Partial:
    """What the readings inside bucket ``i`` say (offsets in seconds from the window start).

    ``area`` is the time-weighted sum of each reading up to the next one or the bucket's
    end, ``covered`` the time those non-null readings held, ``first_e`` the offset of the
    first reading and ``last`` the value of the last one.
    """

    i: int
    n: int
    min: float | None
    max: float | None
    first_e: float
    area: float | None
    covered: float | None
    last: float | None


@dataclass(frozen=True, slots=True)
class NumericBucket:
    """Aggregates of one bucket, the value carried in included."""

    start: datetime
    min: float | None
    avg: float | None
    max: float | None
    last: float | None
    count: int


def numeric_buckets(
    partials: Iterable[Partial],
    carried_in: float | None,
    start: datetime,
    end: datetime,
    width: timedelta,
) -> list[NumericBucket]:
    """Every bucket of [start, end), completed with the value carried into it."""
    w = width.total_seconds()
    by_i = {p.i: p for p in partials}
    carry = carried_in
    out = []
    for i in range(math.ceil((end - start).total_seconds() / w)):
        b_start = start + i * width
        p = by_i.get(i)
        if p is None:
            out.append(NumericBucket(b_start, carry, carry, carry, carry, 0))
            continue
        area, covered = p.area or 0.0, p.covered or 0.0
        lo, hi = p.min, p.max
        head = p.first_e - i * w  # how long the carried-in value held in this bucket
        if head > 0 and carry is not None:
            area += carry * head
            covered += head
            lo = carry if lo is None else min(lo, carry)
            hi = carry if hi is None else max(hi, carry)
        avg = area / covered if covered > 0 else None
        carry = p.last
        out.append(NumericBucket(b_start, lo, avg, hi, carry, p.n))
    return out


def partials_of(
    series: Series[float | None], start: datetime, end: datetime, width: timedelta
) -> list[Partial]:
    """The :class:`Partial` rows the database computes, in Python (a reference for tests)."""
    w = width.total_seconds()
    total = (end - start).total_seconds()
    inside = [p for p in series.points if start <= p.time < end]
    groups: dict[int, list[tuple[float, float, float | None]]] = {}
    for cur, nxt in itertools.zip_longest(inside, inside[1:]):
        e = (cur.time - start).total_seconds()
        e_next = total if nxt is None else (nxt.time - start).total_seconds()
        groups.setdefault(int(e // w), []).append((e, e_next, cur.value))
    out = []
    for i, rows in sorted(groups.items()):
        values = [v for _, _, v in rows if v is not None]
        spans = [(min(e_next, (i + 1) * w) - e, v) for e, e_next, v in rows]
        out.append(
            Partial(
                i=i,
                n=len(rows),
                min=min(values) if values else None,
                max=max(values) if values else None,
                first_e=rows[0][0],
                area=sum(d * v for d, v in spans if v is not None) if values else None,
                covered=sum(d for d, v in spans if v is not None) if values else None,
                last=rows[-1][2],
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class StateBucket:
    """Seconds in one state during one bucket."""

    start: datetime
    state: str
    seconds: float


def state_buckets(
    series: Series[str | None], start: datetime, end: datetime, width: timedelta
) -> list[StateBucket]:
    """Seconds in each state per bucket of [start, end); time in an unknown (null) state
    is left out. States change rarely, so this walks the changes in Python."""
    edges = {start + k * width for k in range(math.ceil((end - start) / width))}
    moments = sorted({*edges, end, *(p.time for p in series.between(start, end))})
    totals: dict[tuple[datetime, str], float] = {}
    for a, b in itertools.pairwise(moments):
        state = series.at(a)
        if state is None:
            continue
        key = (start + ((a - start) // width) * width, state)
        totals[key] = totals.get(key, 0.0) + (b - a).total_seconds()
    return [StateBucket(k[0], k[1], v) for k, v in sorted(totals.items())]
