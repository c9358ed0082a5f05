"""All SQL of the API (schema: docs/schema.md). Returns plain values; no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from chargelift_api.energy import Point, Series
from chargelift_contract import CATALOGUE, FieldType

Value = float | str | bool | None


def column_of(field: str) -> str:
    """The readings column that holds ``field``'s values."""
    match CATALOGUE[field].type:
        case FieldType.NUMBER:
            return "value_num"
        case FieldType.BOOLEAN:
            return "value_bool"
        case FieldType.STRING | FieldType.STATE:
            return "value_text"


def _value(row: asyncpg.Record) -> Value:
    for col in ("value_num", "value_bool", "value_text"):
        if row[col] is not None:
            v: Value = row[col]
            return v
    return None


@dataclass(frozen=True)
class ChargerRow:
    charger: str
    first_seen: datetime
    last_seen: datetime
    availability: str | None
    availability_changed_at: datetime | None
    state: str | None
    power: float | None


@dataclass(frozen=True)
class LatestRow:
    field: str
    time: datetime
    value: Value


_CHARGERS = """
SELECT c.charger, c.first_seen, c.last_seen, c.availability, c.availability_changed_at,
       s.value_text AS state, p.value_num AS power
FROM chargers c
LEFT JOIN latest s ON s.charger = c.charger AND s.field = 'OperationState'
LEFT JOIN latest p ON p.charger = c.charger AND p.field = 'PowerOutput'
"""


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    async def chargers(self) -> list[ChargerRow]:
        rows = await self.pool.fetch(_CHARGERS + " ORDER BY c.charger")
        return [ChargerRow(**dict(r)) for r in rows]

    async def charger(self, charger: str) -> ChargerRow | None:
        row = await self.pool.fetchrow(_CHARGERS + " WHERE c.charger = $1", charger)
        return None if row is None else ChargerRow(**dict(row))

    async def latest(self, charger: str) -> list[LatestRow]:
        rows = await self.pool.fetch(
            "SELECT field, time, value_num, value_text, value_bool FROM latest"
            " WHERE charger = $1 ORDER BY field",
            charger,
        )
        return [LatestRow(r["field"], r["time"], _value(r)) for r in rows]

    async def count_points(
        self, charger: str, field: str, start: datetime, end: datetime, limit: int
    ) -> int:
        """Readings in [start, end), counted up to ``limit`` + 1."""
        n: int = await self.pool.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM readings WHERE charger = $1 AND field = $2"
            " AND time >= $3 AND time < $4 LIMIT $5) x",
            charger,
            field,
            start,
            end,
            limit + 1,
        )
        return n

    async def series(self, charger: str, field: str, start: datetime, end: datetime) -> Series[Any]:
        """The step function of ``field`` over [start, end): carried-in value + readings."""
        col = column_of(field)
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(
                f"SELECT time, {col} AS v FROM readings WHERE charger = $1 AND field = $2"  # noqa: S608
                " AND time < $3 ORDER BY time DESC LIMIT 1",
                charger,
                field,
                start,
            )
            rows = await conn.fetch(
                f"SELECT time, {col} AS v FROM readings WHERE charger = $1 AND field = $2"  # noqa: S608
                " AND time >= $3 AND time < $4 ORDER BY time",
                charger,
                field,
                start,
                end,
            )
        initial = None if before is None else Point(before["time"], before["v"])
        return Series(initial, [Point(r["time"], r["v"]) for r in rows])

    async def availability(
        self, charger: str, start: datetime, end: datetime
    ) -> Series[str | None]:
        """Availability changes; stored as readings of the pseudo-field ``Availability``."""
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(
                "SELECT time, value_text FROM readings WHERE charger = $1"
                " AND field = 'Availability' AND time < $2 ORDER BY time DESC LIMIT 1",
                charger,
                start,
            )
            rows = await conn.fetch(
                "SELECT time, value_text FROM readings WHERE charger = $1"
                " AND field = 'Availability' AND time >= $2 AND time < $3 ORDER BY time",
                charger,
                start,
                end,
            )
        initial = None if before is None else Point(before["time"], before["value_text"])
        return Series(initial, [Point(r["time"], r["value_text"]) for r in rows])

    async def numeric_buckets(
        self, charger: str, field: str, start: datetime, end: datetime, bucket: timedelta
    ) -> list[asyncpg.Record]:
        """Per bucket: time-weighted avg, min, max, last value, count of readings.

        Change-only data: a value holds until the next reading, so every bucket is
        covered by the segments that overlap it, and an empty bucket takes the value
        carried in (count 0). A bucket before the first reading ever has nulls.
        """
        rows: list[asyncpg.Record] = await self.pool.fetch(
            _NUMERIC_BUCKETS, charger, field, start, end, bucket
        )
        return rows

    async def state_buckets(
        self, charger: str, start: datetime, end: datetime, bucket: timedelta
    ) -> list[asyncpg.Record]:
        """Per bucket and OperationState: seconds spent in that state."""
        rows: list[asyncpg.Record] = await self.pool.fetch(
            _STATE_BUCKETS, charger, start, end, bucket
        )
        return rows


_SEGMENTS = """
WITH pts AS (
    (SELECT time, {col} AS v FROM readings
      WHERE charger = $1 AND field = $2 AND time < $3 ORDER BY time DESC LIMIT 1)
    UNION ALL
    SELECT time, {col} AS v FROM readings
     WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4
), seg AS (
    SELECT greatest(time, $3) AS t0,
           coalesce(lead(time) OVER (ORDER BY time), $4) AS t1,
           time >= $3 AS counted, v
      FROM pts
), b AS (
    SELECT s AS b0, s + $5::interval AS b1
      FROM generate_series($3::timestamptz, $4::timestamptz - interval '1 microsecond',
                           $5::interval) AS s
)
"""

_NUMERIC_BUCKETS = (
    _SEGMENTS.format(col="value_num")
    + """
SELECT b.b0 AS bucket,
       min(seg.v) AS min, max(seg.v) AS max,
       sum(seg.v * extract(epoch FROM least(seg.t1, b.b1) - greatest(seg.t0, b.b0)))
         / nullif(sum(extract(epoch FROM least(seg.t1, b.b1) - greatest(seg.t0, b.b0)))
                  FILTER (WHERE seg.v IS NOT NULL), 0) AS avg,
       (array_agg(seg.v ORDER BY seg.t0 DESC))[1] AS last,
       count(*) FILTER (WHERE seg.counted AND seg.t0 >= b.b0) AS count
  FROM b LEFT JOIN seg ON seg.t0 < b.b1 AND seg.t1 > b.b0
 GROUP BY b.b0 ORDER BY b.b0
"""
)

_STATE_BUCKETS = (
    _SEGMENTS.format(col="value_text")
    .replace("field = $2", "field = 'OperationState'")
    .replace("$3", "$2")
    .replace("$4", "$3")
    .replace("$5", "$4")
    + """
SELECT b.b0 AS bucket, seg.v AS state,
       sum(extract(epoch FROM least(seg.t1, b.b1) - greatest(seg.t0, b.b0))) AS seconds
  FROM b JOIN seg ON seg.t0 < b.b1 AND seg.t1 > b.b0
 WHERE seg.v IS NOT NULL
 GROUP BY b.b0, seg.v ORDER BY b.b0, seg.v
"""
)
