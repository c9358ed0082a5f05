"""Time buckets over change-only readings, with the last value carried forward. Pure.

A value holds until the next reading, so a bucket's aggregates include the value in
force at its start (carried from the previous bucket or from before the window), and a
bucket without readings has that value alone (``count`` 0).

A value is known from the first reading ever to the end of the data (``data_end``: the
charger's latest reading, or now if that is earlier); outside that span nothing is known
and nothing is carried. Numbers and states treat it the same way: every bucket of the
window is present; one wholly outside the span is empty (numbers null, ``count`` 0; no
seconds in any state), one partly inside it is aggregated over its known part only.

The database aggregates the readings *inside* each bucket in one pass
(:class:`Partial`; tests/unit/api/reference.py's ``partials_of`` is the same in Python);
:func:`numeric_buckets` adds what was carried in.
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


def bucket_starts(start: datetime, end: datetime, width: timedelta) -> list[datetime]:
    """The start of every bucket of [start, end) (the last one may be short)."""
    return [start + i * width for i in range(math.ceil((end - start) / width))]


def numeric_buckets(
    partials: Iterable[Partial],
    carried_in: float | None,
    start: datetime,
    end: datetime,
    width: timedelta,
    data_end: datetime,
) -> list[NumericBucket]:
    """Every bucket of [start, end), completed with the value carried into it; the
    buckets that start after ``data_end`` are null (``partials`` are clipped to it)."""
    w = width.total_seconds()
    by_i = {p.i: p for p in partials}
    carry = carried_in
    out = []
    for i, b_start in enumerate(bucket_starts(start, end, width)):
        p = by_i.get(i)
        if b_start > data_end:
            out.append(NumericBucket(b_start, None, None, None, None, 0))
            continue
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
        if b_start == data_end:  # known for an instant: its value (as an empty bucket has)
            avg = p.last
        carry = p.last
        out.append(NumericBucket(b_start, lo, avg, hi, carry, p.n))
    return out


@dataclass(frozen=True, slots=True)
class StateBucket:
    """Seconds in each state during one bucket (empty: no state known in it)."""

    start: datetime
    seconds: dict[str, float]


def state_buckets(
    series: Series[str | None],
    start: datetime,
    end: datetime,
    width: timedelta,
    data_end: datetime,
) -> list[StateBucket]:
    """Seconds in each state per bucket of [start, end), every bucket present; time in
    an unknown (null) state, before the first reading or after ``data_end`` is left out.
    States change rarely, so this walks the changes in Python."""
    starts = bucket_starts(start, end, width)
    known_end = max(start, min(end, data_end))
    moments = sorted({*starts, end, known_end, *(p.time for p in series.between(start, end))})
    totals: dict[datetime, dict[str, float]] = {b: {} for b in starts}
    for a, b in itertools.pairwise(moments):
        state = series.at(a)
        if state is None or a >= known_end:
            continue
        seconds = totals[start + ((a - start) // width) * width]
        seconds[state] = seconds.get(state, 0.0) + (b - a).total_seconds()
    return [StateBucket(b, totals[b]) for b in starts]
