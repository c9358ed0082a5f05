"""All SQL of the API (the tables are described in docs/schema.md). No HTTP here.

Every query is against the ingest's tables as they are; the one write is the insert
of a command the API accepted (:meth:`Repository.insert_command`: the role
``chargelift_api`` may insert there and nowhere else). Values
of the narrow ``readings`` table sit in one of three typed columns, chosen from the
field catalogue (:func:`column_of`), never from user input.

Hostile data stays bounded (docs/api.md, "Limits"):

* **Rows.** A :class:`Repository` made for one request (:meth:`Repository.for_request`)
  has a budget of rows: the queries whose size depends on the data (changes of a
  field, energy deltas) fetch at most what is left of it plus one, and a request that
  needs more raises :class:`RowLimitExceeded` (a 422) instead of loading a million rows.
  Time per statement is bounded by the server's ``statement_timeout`` (app.py).
* **Values.** A number outside its field's plausible bounds (``FieldSpec.bounds``;
  ingest refuses such values, but rows stored before it did may hold ``1e308``) is read
  as no reading (null) by every query, so no sum or delta can overflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from chargelift_api.buckets import (
    NumericBucket,
    Partial,
    StateBucket,
    numeric_buckets,
    state_buckets,
)
from chargelift_api.control import CommandRow, Cursor, ResultRow
from chargelift_api.energy import EnergyDelta
from chargelift_api.series import Point, Series
from chargelift_contract import CATALOGUE, FieldType

Value = float | str | bool | None


class CommandsNotRecordable(Exception):  # noqa: N818 - reads as what happened
    """The API's database role may not insert into ``commands`` (a read-only role)."""


class RowLimitExceeded(Exception):  # noqa: N818 - reads as what happened
    """A request needs more rows than its budget (``API_MAX_ROWS``)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(f"more than {limit} rows of {what}")
        self.limit = limit
        self.what = what


@dataclass(slots=True)
class RowBudget:
    """The rows one request may still fetch from the database."""

    limit: int
    used: int = 0

    @property
    def left(self) -> int:
        """Rows left (never negative)."""
        return max(0, self.limit - self.used)

    def charge(self, rows: int, what: str) -> None:
        """Count ``rows``; raise :class:`RowLimitExceeded` once the budget is exceeded."""
        self.used += rows
        if self.used > self.limit:
            raise RowLimitExceeded(self.limit, what)


AVAILABILITY = "Availability"
"""The pseudo-field under which ingest records online/offline changes (docs/schema.md)."""


def plausible(field: str, column: str = "value_num") -> str:
    """SQL for ``field``'s number in ``column``, null when outside the field's bounds.

    The bounds are literals from the catalogue (never user input); NaN and infinities
    (which ingest never stored, but a restored dump might hold) are outside too.
    """
    bounds = CATALOGUE[field].bounds
    if bounds is None:
        return column
    lo, hi = bounds
    return f"(CASE WHEN {column} BETWEEN {lo!r} AND {hi!r} THEN {column} END)"


def plausible_any(field_column: str = "field", column: str = "value_num") -> str:
    """:func:`plausible` for a row of any field (the field is in ``field_column``)."""
    arms = " ".join(
        f"WHEN '{s.name}' THEN {plausible(s.name, column)}"
        for s in CATALOGUE.values()
        if s.type is FieldType.NUMBER
    )
    return f"(CASE {field_column} {arms} END)"


def column_of(field: str) -> str:
    """The ``readings`` column that holds ``field``'s values (from the catalogue); for a
    number, the column read through :func:`plausible`."""
    if field == AVAILABILITY:
        return "value_text"
    match CATALOGUE[field].type:
        case FieldType.NUMBER:
            return plausible(field)
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

CHARGERS = f"""
SELECT c.charger, c.first_seen, c.last_seen, c.availability,
       s.value_text AS state, {plausible("PowerOutput", "p.value_num")} AS power
  FROM chargers c
  LEFT JOIN latest s ON s.charger = c.charger AND s.field = 'OperationState'
  LEFT JOIN latest p ON p.charger = c.charger AND p.field = 'PowerOutput'
"""  # noqa: S608 - the bounds are literals of the catalogue

LATEST = f"""
SELECT field, time, {plausible_any()} AS value_num, value_text, value_bool
  FROM latest WHERE charger = $1 ORDER BY field
"""  # noqa: S608 - the bounds are literals of the catalogue

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
# fields such as OperationState, EnergyPrice, Tariff, ConnectedVehicle. $5: at most
# that many (the row budget + 1); the index scan in time order stops there.
CHANGES = """
SELECT time, v FROM (
    SELECT time, {col} AS v, lag({col}) OVER (ORDER BY time) AS prev,
           row_number() OVER (ORDER BY time) AS n
      FROM readings
     WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4
) x
 WHERE n = 1 OR v IS DISTINCT FROM prev
 ORDER BY time LIMIT $5
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
          FROM (SELECT {num} AS v, date_part('epoch', time - $3) AS e FROM readings
                 WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4) r
      ) l
  ) s
 GROUP BY i ORDER BY i
"""

# Energy deltas of a register with reset and glitch detection, merged between cuts.
# $5 is the sorted array of cuts (price/tariff changes, period and session
# boundaries). width_bucket(t, cuts) counts the cuts <= t; a delta with no cut
# strictly inside it has k0 = k1 and is summed with the others of its interval;
# a delta that straddles a cut comes back alone, to be split pro rata in Python.
# $6: also read the readings at or after $4 (up to {context}), to split the delta across
# `to` and to know how a dip that `to` cuts ends; deltas from $4 on are not returned.
# $7: at most that many groups (the row budget + 1). {num}: the register's value, null
# outside its bounds (such a reading is skipped like a JSON null).
#
# Glitches (energy.py): a segment is a rise (or the first reading) and the readings
# after it up to the next rise, which can only stay or fall. A segment that falls
# (a dip) and is followed by a rise back to at least its top was a glitch: its drops
# bill nothing and the return bills what it gained over the top, spread from the last
# reading at the top. Otherwise (a lower rise, or no rise yet) a drop is a reset (its
# new value is the energy since). Up to {context} readings before $3 are read as context, so a
# window that starts inside a dip knows the level before it; their deltas are not
# returned either.
ENERGY_DELTAS = """
WITH reg AS (
    (SELECT time, {num} AS v FROM readings
      WHERE charger = $1 AND field = $2 AND time < $3 AND {num} IS NOT NULL
      ORDER BY time DESC LIMIT {context})
    UNION ALL
    (SELECT time, {num} FROM readings
      WHERE charger = $1 AND field = $2 AND time >= $3 AND time < $4 AND {num} IS NOT NULL
      ORDER BY time)
    UNION ALL
    (SELECT time, {num} FROM readings
      WHERE $6 AND charger = $1 AND field = $2 AND time >= $4 AND {num} IS NOT NULL
      ORDER BY time LIMIT {context})
), d AS (
    SELECT lag(time) OVER w AS t0, time AS t1, v, lag(v) OVER w AS pv FROM reg
    WINDOW w AS (ORDER BY time)
), s AS (
    SELECT t0, t1, v, pv, coalesce(sum((v > pv)::int) OVER (ORDER BY t1), 0) AS seg FROM d
), dip AS (  -- few rows: one per segment that falls; its top and the last reading at it
    SELECT seg, max(pv) AS top, min(t0) AS top_t FROM s WHERE v < pv GROUP BY seg
), ret AS (  -- how each dip ended: the first rise after it (a glitch if back to its top)
    SELECT dip.seg, dip.top, dip.top_t, s.t1, s.v, s.v >= dip.top AS glitch
      FROM dip JOIN s ON s.seg = dip.seg + 1 AND s.v > s.pv
), e AS (
    -- deltas with energy: rises and resets to more than 0, except a glitch's drops and
    -- its return (hashed: the glitches are few) ...
    SELECT t0, t1, CASE WHEN v > pv THEN v - pv ELSE v END AS wh, v < pv AS reset
      FROM s
     WHERE (v > pv AND seg - 1 NOT IN (SELECT seg FROM ret WHERE glitch))
        OR (v < pv AND v > 0 AND seg NOT IN (SELECT seg FROM ret WHERE glitch))
    UNION ALL
    -- ... and each glitch's return: its gain over the top, from the last reading at it
    SELECT top_t, t1, v - top, false FROM ret WHERE glitch AND v > top
), f AS (
    SELECT t0, t1, wh, reset,
           width_bucket(t0, $5::timestamptz[]) AS k0,
           width_bucket(t1 - interval '1 microsecond', $5::timestamptz[]) AS k1
      FROM e
     WHERE t1 >= $3 AND t0 < $4
)
-- One group per interval between cuts, and one per straddling delta (keyed by its end).
SELECT min(t0) AS t0, max(t1) AS t1, sum(wh) AS wh, bool_or(reset) AS reset
  FROM f
 GROUP BY k1, CASE WHEN k0 = k1 THEN NULL ELSE t1 END
 ORDER BY 2 LIMIT $7
"""

#: Readings of a register read around a window to recognise a glitch at its edges.
GLITCH_CONTEXT = 64

PEAK_POWER = f"""
SELECT greatest(
         (SELECT max({plausible("PowerOutput")}) FROM readings
           WHERE charger = $1 AND field = 'PowerOutput' AND time >= s.a AND time <= s.b),
         (SELECT {plausible("PowerOutput")} FROM readings
           WHERE charger = $1 AND field = 'PowerOutput' AND time < s.a
           ORDER BY time DESC LIMIT 1)) AS peak
  FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS s(a, b, n)
 ORDER BY s.n
"""  # noqa: S608 - the bounds are literals of the catalogue


# Per session, the value of a text field (IdTag, TransactionId) that was the session's:
# the first non-null reading inside the session (after its start $4, up to its end $5);
# without one, the last reading after the previous session's end ($3, -infinity for
# none) and at or before its start (null if that is null). Two index lookups a session.
SESSION_TEXT = """
SELECT coalesce(
         (SELECT value_text FROM readings
           WHERE charger = $1 AND field = $2 AND time > s.a AND time <= s.b
             AND value_text IS NOT NULL
           ORDER BY time LIMIT 1),
         (SELECT value_text FROM readings
           WHERE charger = $1 AND field = $2 AND time > s.p AND time <= s.a
           ORDER BY time DESC LIMIT 1)) AS v
  FROM unnest($3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
       WITH ORDINALITY AS s(p, a, b, n)
 ORDER BY s.n
"""


# --- commands (0009_commands.sql) --------------------------------------------------------

COMMAND_COLUMNS = """charger, command_id, command, value, issued_at, expires_at, valid_for,
       issuer, via, received_at"""

# Whoever comes first (the API, or ingest having read it on the broker) writes the row;
# the API never changes one (it may not: INSERT only).
INSERT_COMMAND = f"""
INSERT INTO commands (charger, command_id, command, value, issued_at, expires_at, valid_for,
                      issuer, via)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'api')
ON CONFLICT (charger, command_id) DO NOTHING
RETURNING {COMMAND_COLUMNS}
"""  # noqa: S608 - column names only

COMMAND = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE charger = $1 AND command_id = $2"  # noqa: S608

# Newest first (received_at, then id: the index commands_newest); $2/$3: after this one.
COMMANDS_PAGE = f"""
SELECT {COMMAND_COLUMNS} FROM commands
 WHERE charger = $1
   AND ($2::timestamptz IS NULL OR received_at < $2
        OR (received_at = $2 AND command_id > $3))
 ORDER BY received_at DESC, command_id
 LIMIT $4
"""  # noqa: S608 - column names only

# What the API accepted and may still be applied, with no result yet: sent again after a
# restart (a queue in memory died with the process; the edge removes duplicates).
UNFINISHED = f"""
SELECT {COMMAND_COLUMNS} FROM commands c
 WHERE via = 'api' AND expires_at > now()
   AND NOT EXISTS (SELECT 1 FROM command_results r
                    WHERE r.charger = c.charger AND r.command_id = c.command_id)
 ORDER BY received_at
 LIMIT $1
"""  # noqa: S608 - column names only

RESULTS = """
SELECT command_id, outcome, reason, at, value, lease_end FROM command_results
 WHERE charger = $1 AND command_id = ANY($2::text[])
"""


def _command(row: asyncpg.Record) -> CommandRow:
    return CommandRow(**dict(row))


def _value(row: asyncpg.Record) -> Value:
    for col in ("value_num", "value_bool", "value_text"):
        if row[col] is not None:
            v: Value = row[col]
            return v
    return None


class Repository:
    """Read-only access to the ingest's tables through an asyncpg pool.

    Without a budget (the one the application holds) nothing is limited; a request
    works with :meth:`for_request`.
    """

    def __init__(self, pool: asyncpg.Pool, budget: RowBudget | None = None) -> None:
        self.pool = pool
        self.budget = budget

    def for_request(self, max_rows: int) -> Repository:
        """The same pool with a fresh budget of ``max_rows`` rows."""
        return Repository(self.pool, RowBudget(max_rows))

    def _limit(self) -> int:
        """The LIMIT of a query whose size depends on the data: what is left + 1."""
        return 2**62 if self.budget is None else self.budget.left + 1

    def _charge(self, rows: int, what: str) -> None:
        if self.budget is not None:
            self.budget.charge(rows, what)

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
        self._charge(len(rows), f"{field} readings")
        initial = None if before is None else Point(before["time"], before["v"])
        return initial, [Point(r["time"], r["v"]) for r in rows]

    async def changes(
        self, charger: str, field: str, start: datetime, end: datetime
    ) -> Series[Any]:
        """The step function of ``field`` over [start, end): carried-in value + changes."""
        col = column_of(field)
        async with self.pool.acquire() as conn:
            before = await conn.fetchrow(CARRIED_IN.format(col=col), charger, field, start)
            rows = await conn.fetch(
                CHANGES.format(col=col), charger, field, start, end, self._limit()
            )
        self._charge(len(rows), f"{field} changes")
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
                NUMERIC_BUCKETS.format(num=col),
                charger,
                field,
                start,
                end,
                width.total_seconds(),
                known,
            )
        self._charge(len(rows), f"{field} buckets")
        partials = [Partial(**dict(r)) for r in rows]
        carried = None if before is None else before["v"]
        return numeric_buckets(partials, carried, start, end, width, data_end)

    async def state_buckets(
        self, charger: str, start: datetime, end: datetime, width: timedelta, data_end: datetime
    ) -> list[StateBucket]:
        """Seconds in each OperationState per bucket (from the state's changes)."""
        series = await self.changes(charger, "OperationState", start, end)
        # Up to API_MAX_ROWS changes walked in Python: in a worker thread, off the loop.
        return await asyncio.to_thread(state_buckets, series, start, end, width, data_end)

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
            ENERGY_DELTAS.format(num=plausible(register), context=GLITCH_CONTEXT),
            charger,
            register,
            start,
            end,
            sorted(cuts),
            next_one,
            self._limit(),
        )
        self._charge(len(rows), f"{register} deltas")
        return [EnergyDelta(r["t0"], r["t1"], float(r["wh"]), bool(r["reset"])) for r in rows]

    async def insert_command(
        self,
        charger: str,
        command_id: str,
        command: str,
        value: float | None,
        issued_at: datetime,
        expires_at: datetime,
        valid_for: float | None,
        issuer: str,
    ) -> tuple[CommandRow, bool]:
        """Record a command; the row and True, or the row already there and False."""
        async with self.pool.acquire() as conn:
            try:
                row = await conn.fetchrow(
                    INSERT_COMMAND,
                    charger,
                    command_id,
                    command,
                    value,
                    issued_at,
                    expires_at,
                    valid_for,
                    issuer,
                )
            except asyncpg.InsufficientPrivilegeError:
                # A read-only deployment (DATABASE_URL as chargelift_reader): a 503
                # that says so, never a 500; nothing was recorded or sent.
                raise CommandsNotRecordable from None
            if row is not None:
                return _command(row), True
            row = await conn.fetchrow(COMMAND, charger, command_id)
        if row is None:  # cannot happen: rows are never deleted
            raise RuntimeError(f"command {command_id!r} vanished")
        return _command(row), False

    async def command(self, charger: str, command_id: str) -> CommandRow | None:
        """One command, or None."""
        row = await self.pool.fetchrow(COMMAND, charger, command_id)
        return None if row is None else _command(row)

    async def commands(self, charger: str, after: Cursor | None, limit: int) -> list[CommandRow]:
        """Up to ``limit`` commands of ``charger``, newest first, after ``after``."""
        rows = await self.pool.fetch(
            COMMANDS_PAGE,
            charger,
            None if after is None else after.received_at,
            None if after is None else after.command_id,
            limit,
        )
        self._charge(len(rows), "commands")
        return [_command(r) for r in rows]

    async def unfinished_commands(self, limit: int) -> list[CommandRow]:
        """Up to ``limit`` commands the API accepted that are unexpired and have no
        result, oldest first."""
        return [_command(r) for r in await self.pool.fetch(UNFINISHED, limit)]

    async def results(self, charger: str, command_ids: Sequence[str]) -> list[ResultRow]:
        """Every result of these commands."""
        rows = await self.pool.fetch(RESULTS, charger, list(command_ids))
        self._charge(len(rows), "command results")
        return [ResultRow(**dict(r)) for r in rows]

    async def session_text(
        self, charger: str, field: str, spans: Sequence[tuple[datetime | None, datetime, datetime]]
    ) -> list[str | None]:
        """The value of the text ``field`` that belongs to each session (``SESSION_TEXT``);
        ``spans``: (previous session's end or None, start, end)."""
        rows = await self.pool.fetch(
            SESSION_TEXT,
            charger,
            field,
            [datetime.min.replace(tzinfo=UTC) if p is None else p for p, _, _ in spans],
            [a for _, a, _ in spans],
            [b for _, _, b in spans],
        )
        self._charge(len(rows), "sessions")
        return [r["v"] for r in rows]

    async def peak_power(
        self, charger: str, spans: Sequence[tuple[datetime, datetime]]
    ) -> list[float | None]:
        """The highest PowerOutput in force during each span."""
        rows = await self.pool.fetch(
            PEAK_POWER, charger, [a for a, _ in spans], [b for _, b in spans]
        )
        self._charge(len(rows), "sessions")
        return [r["peak"] for r in rows]
