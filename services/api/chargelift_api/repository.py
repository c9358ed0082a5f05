"""All SQL of the API (the tables are described in docs/schema.md). No HTTP here.

Every query is against the ingest's tables as they are; nothing here writes. Values
of the narrow ``readings`` table sit in one of three typed columns, chosen from the
field catalogue (:func:`column_of`), never from user input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from chargelift_api.buckets import (
    NumericBucket,
    Partial,
    StateBucket,
    numeric_buckets,
    state_buckets,
)
from chargelift_api.energy import EnergyDelta
from chargelift_api.series import Point, Series
from chargelift_contract import CATALOGUE, FieldType

Value = float | str | bool | None


AVAILABILITY = "Availability"
"""The pseudo-field under which ingest records online/offline changes (docs/schema.md)."""


def column_of(field: str) -> str:
    """The ``readings`` column that holds ``field``'s values (from the catalogue)."""
    if field == AVAILABILITY:
        return "value_text"
    match CATALOGUE[field].type:
        case FieldType.NUMBER:
            return "value_num"
        case FieldType.BOOLEAN:
            return "value_bool"
        case FieldType.STRING | FieldType.STATE:
            return "value_text"


@dataclass(frozen=True, slots=True)
class ChargerRow:
    """A charger with its current state and power."""

    charger: str
    first_seen: datetime
    last_seen: datetime
    availability: str | None
    state: str | None
    power: float | None


@dataclass(frozen=True, slots=True)
class LatestRow:
    """The latest value of one field."""

    field: str
    time: datetime
    value: Value


# --- the SQL -------------------------------------------------------------------------

CHARGERS = """
SELECT c.charger, c.first_seen, c.last_seen, c.availability,
       s.value_text AS state, p.value_num AS power
  FROM chargers c
  LEFT JOIN latest s ON s.charger = c.charger AND s.field = 'OperationState'
  LEFT JOIN latest p ON p.charger = c.charger AND p.field = 'PowerOutput'
"""

LATEST = """
SELECT field, time, value_num, value_text, value_bool
  FROM latest WHERE charger = $1 ORDER BY field
"""

FIELDS_OF = "SELECT field FROM latest WHERE charger = $1"

# The last reading before the window: the value carried in.
CARRIED_IN = """
SELECT time, {col} AS v FROM readings
 WHERE charger = $1 AND field = $2 AND time < $3
 ORDER BY time DESC LIMIT 1
"""

POINTS = """
SELECT time, {col} AS v FROM readings
 WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4
 ORDER BY time LIMIT $5
"""

# Only the readings that change the value (snapshots repeat it): few rows for slow
# fields such as OperationState, EnergyPrice, Tariff, ConnectedVehicle.
CHANGES = """
SELECT time, v FROM (
    SELECT time, {col} AS v, lag({col}) OVER (ORDER BY time) AS prev,
           row_number() OVER (ORDER BY time) AS n
      FROM readings
     WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4
) x
 WHERE n = 1 OR v IS DISTINCT FROM prev
 ORDER BY time
"""

# Per bucket, from the readings inside it: count, min, max, the time-weighted area of
# each reading up to the next one (the last one up to $6, the end of the data or of the
# window), the first reading's offset and the last value. The value carried into each
# bucket (from before the window or the previous bucket) is added in Python
# (Repository.numeric_buckets): one pass over the rows, no join of buckets with
# segments, no per-row arrays. date_part (double), not extract (numeric): numeric
# arithmetic made this five times slower.
NUMERIC_BUCKETS = """
SELECT i, count(*)::int AS n, min(v) AS min, max(v) AS max, min(e) AS first_e,
       sum(v * (least(e_next, (i + 1) * $5) - e)) AS area,
       sum(least(e_next, (i + 1) * $5) - e) FILTER (WHERE v IS NOT NULL) AS covered,
       -- the last reading of a bucket: none follows it, or the next one lies past its end
       max(v) FILTER (WHERE e_lead IS NULL OR e_lead >= (i + 1) * $5) AS last
  FROM (
    SELECT v, e, floor(e / $5)::int AS i, e_lead, coalesce(e_lead, greatest(e, $6)) AS e_next
      FROM (
        SELECT v, e, lead(e) OVER (ORDER BY e) AS e_lead
          FROM (SELECT value_num AS v, date_part('epoch', time - $3) AS e FROM readings
                 WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4) r
      ) l
  ) s
 GROUP BY i ORDER BY i
"""

# Energy deltas of a register with reset detection, merged between cuts.
# $5 is the sorted array of cuts (price/tariff changes, period and session
# boundaries). width_bucket(t, cuts) counts the cuts <= t; a delta with no cut
# strictly inside it has k0 = k1 and is summed with the others of its interval;
# a delta that straddles a cut comes back alone, to be split pro rata in Python.
# $6: also take the first reading at or after $4 (to split the delta across `to`).
ENERGY_DELTAS = """
WITH reg AS (
    (SELECT time, value_num AS v FROM readings
      WHERE charger = $1 AND field = $2 AND time < $3 AND value_num IS NOT NULL
      ORDER BY time DESC LIMIT 1)
    UNION ALL
    (SELECT time, value_num FROM readings
      WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4 AND value_num IS NOT NULL
      ORDER BY time)
    UNION ALL
    (SELECT time, value_num FROM readings
      WHERE $6 AND charger = $1 AND field = $2 AND time >= $4 AND value_num IS NOT NULL
      ORDER BY time LIMIT 1)
), d AS (
    SELECT lag(time) OVER w AS t0, time AS t1, v, lag(v) OVER w AS pv FROM reg
    WINDOW w AS (ORDER BY time)
), e AS (
    SELECT t0, t1, CASE WHEN v >= pv THEN v - pv ELSE v END AS wh, v < pv AS reset,
           width_bucket(t0, $5::timestamptz[]) AS k0,
           width_bucket(t1 - interval '1 microsecond', $5::timestamptz[]) AS k1
      FROM d
     WHERE v > pv OR (v < pv AND v > 0)  -- deltas with energy (a reset to 0 has none)
)
-- One group per interval between cuts, and one per straddling delta (keyed by its end).
SELECT min(t0) AS t0, max(t1) AS t1, sum(wh) AS wh, bool_or(reset) AS reset
  FROM e
 GROUP BY k1, CASE WHEN k0 = k1 THEN NULL ELSE t1 END
 ORDER BY 2
"""

PEAK_POWER = """
SELECT greatest(
         (SELECT max(value_num) FROM readings
           WHERE charger = $1 AND field = 'PowerOutput' AND time >= s.a AND time <= s.b),
         (SELECT value_num FROM readings
           WHERE charger = $1 AND field = 'PowerOutput' AND time < s.a
           ORDER BY time DESC LIMIT 1)) AS peak
  FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS s(a, b, n)
 ORDER BY s.n
"""


def _value(row: asyncpg.Record) -> Value:
    for col in ("value_num", "value_bool", "value_text"):
        if row[col] is not None:
            v: Value = row[col]
            return v
    return None


class Repository:
    """Read-only access to the ingest's tables through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        """Raise unless the database answers within 2 s."""
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)

    async def chargers(self) -> list[ChargerRow]:
        """Every charger, by id."""
        rows = await self.pool.fetch(CHARGERS + " ORDER BY c.charger")
        return [ChargerRow(**dict(r)) for r in rows]

    async def charger(self, charger: str) -> ChargerRow | None:
        """One charger, or None."""
        row = await self.pool.fetchrow(CHARGERS + " WHERE c.charger = $1", charger)
        return None if row is None else ChargerRow(**dict(row))

    async def latest(self, charger: str) -> list[LatestRow]:
        """The latest value of every field of ``charger``."""
        rows = await self.pool.fetch(LATEST, charger)
        return [LatestRow(r["field"], r["time"], _value(r)) for r in rows]

    async def fields_of(self, charger: str) -> set[str]:
        """The fields ``charger`` has ever published."""
        return {r["field"] for r in await self.pool.fetch(FIELDS_OF, charger)}

    async def points(
        self, charger: str, field: str, start: datetime, end: datetime, limit: int
    ) -> tuple[Point[Value] | None, list[Point[Value]]]:
        """The value carried in at ``start`` and up to ``limit`` + 1 readings in [start, end)."""
        col = column_of(field)
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(CARRIED_IN.format(col=col), charger, field, start)
            rows = (
                await conn.fetch(POINTS.format(col=col), charger, field, start, end, limit + 1)
                if limit > 0
                else []
            )
        initial = None if before is None else Point(before["time"], before["v"])
        return initial, [Point(r["time"], r["v"]) for r in rows]

    async def changes(
        self, charger: str, field: str, start: datetime, end: datetime
    ) -> Series[Any]:
        """The step function of ``field`` over [start, end): carried-in value + changes."""
        col = column_of(field)
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(CARRIED_IN.format(col=col), charger, field, start)
            rows = await conn.fetch(CHANGES.format(col=col), charger, field, start, end)
        initial = None if before is None else Point(before["time"], before["v"])
        return Series(initial, [Point(r["time"], r["v"]) for r in rows])

    async def availability(
        self, charger: str, start: datetime, end: datetime
    ) -> Series[str | None]:
        """Online/offline changes of ``charger`` over [start, end).

        Ingest records them as readings of the pseudo-field ``Availability`` at the
        time it received the change (the edge's message or its last will).
        """
        series: Series[str | None] = await self.changes(charger, AVAILABILITY, start, end)
        return series

    async def numeric_buckets(
        self,
        charger: str,
        field: str,
        start: datetime,
        end: datetime,
        width: timedelta,
        data_end: datetime,
    ) -> list[NumericBucket]:
        """min/avg/max/last/count per bucket, the value carried in included; nothing
        after ``data_end`` (the charger's latest reading) is known."""
        col = column_of(field)
        known = (min(end, data_end) - start).total_seconds()
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(CARRIED_IN.format(col=col), charger, field, start)
            rows = await conn.fetch(
                NUMERIC_BUCKETS, charger, field, start, end, width.total_seconds(), known
            )
        partials = [Partial(**dict(r)) for r in rows]
        carried = None if before is None else before["v"]
        return numeric_buckets(partials, carried, start, end, width, data_end)

    async def state_buckets(
        self, charger: str, start: datetime, end: datetime, width: timedelta, data_end: datetime
    ) -> list[StateBucket]:
        """Seconds in each OperationState per bucket (from the state's changes)."""
        series = await self.changes(charger, "OperationState", start, end)
        return state_buckets(series, start, end, width, data_end)

    async def energy_deltas(
        self,
        charger: str,
        register: str,
        start: datetime,
        end: datetime,
        cuts: Sequence[datetime],
        *,
        next_one: bool = False,
    ) -> list[EnergyDelta]:
        """Deltas of ``register`` from its value at ``start`` to ``end``, merged between cuts."""
        rows = await self.pool.fetch(
            ENERGY_DELTAS, charger, register, start, end, sorted(cuts), next_one
        )
        return [EnergyDelta(r["t0"], r["t1"], float(r["wh"]), bool(r["reset"])) for r in rows]

    async def peak_power(
        self, charger: str, spans: Sequence[tuple[datetime, datetime]]
    ) -> list[float | None]:
        """The highest PowerOutput in force during each span."""
        rows = await self.pool.fetch(
            PEAK_POWER, charger, [a for a, _ in spans], [b for _, b in spans]
        )
        return [r["peak"] for r in rows]
