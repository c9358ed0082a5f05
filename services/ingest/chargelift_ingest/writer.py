"""The batch writer: one transaction per batch, idempotent.

Per batch, in ONE transaction:

1. readings are COPYed into a temporary staging table (COPY is an order of magnitude
   faster than INSERTs), then ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``
   moves them into ``readings``: a row already stored (redelivery, replay, retained
   re-send) is absorbed and counted as a duplicate;
2. ``latest`` takes the newest of the inserted rows per charger and field, only if it
   is newer than what it has (a late replay never moves the shadow back);
3. ``chargers`` learns first/last seen; availability changes are recorded, in arrival
   order: a charger's own, an edge's charger list, an edge's availability (an edge
   going ``offline`` records each of its chargers offline, as its last will speaks for
   all of them);
4. dead letters are inserted into ``dead_letters`` once each: ``ON CONFLICT (key)`` on
   their natural key (sha256 of topic and payload) counts a repeat in ``times_seen``
   instead of adding a row; the stored payload is cut to ``dead_letter_max_bytes``;
5. commands and results (the audit) are inserted once each: ``commands`` on
   (charger, command_id), where a row the API inserted first keeps its ``via`` and
   ``issuer`` (only a missing issuer is filled in), ``command_results`` on
   (charger, command_id, outcome). They are rare: one statement each.

Only after the commit does the caller acknowledge the batch's MQTT messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from chargelift_contract.commands import CommandMessage
from chargelift_ingest.deadletters import bounded, dead_letter_key
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import (
    Audit,
    Availability,
    ChargerResult,
    DeadLetter,
    EdgeAvailability,
    EdgeChargers,
    Reading,
    StateChange,
)

log = logging.getLogger(__name__)

_COLUMNS = ("time", "charger", "field", "value_num", "value_text", "value_bool")

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_readings (
    time timestamptz NOT NULL, charger text NOT NULL, field text NOT NULL,
    value_num double precision, value_text text, value_bool boolean
) ON COMMIT DELETE ROWS
"""

_MOVE = """
WITH ins AS (
    INSERT INTO readings (time, charger, field, value_num, value_text, value_bool)
    SELECT time, charger, field, value_num, value_text, value_bool FROM staging_readings
    ON CONFLICT DO NOTHING
    RETURNING time, charger, field, value_num, value_text, value_bool
), newest AS (
    INSERT INTO latest AS l (charger, field, time, value_num, value_text, value_bool)
    SELECT DISTINCT ON (charger, field) charger, field, time, value_num, value_text, value_bool
      FROM ins ORDER BY charger, field, time DESC
    ON CONFLICT (charger, field) DO UPDATE
       SET time = excluded.time, value_num = excluded.value_num,
           value_text = excluded.value_text, value_bool = excluded.value_bool,
           received_at = now()
     WHERE excluded.time > l.time
), seen AS (
    INSERT INTO chargers AS c (charger, first_seen, last_seen)
    -- Sorted, as `latest` is by DISTINCT ON: two ingests of a $share group lock the
    -- same rows in the same order and cannot deadlock.
    SELECT charger, min(time), max(time) FROM staging_readings GROUP BY charger
     ORDER BY charger
    ON CONFLICT (charger) DO UPDATE
       SET first_seen = least(c.first_seen, excluded.first_seen),
           last_seen = greatest(c.last_seen, excluded.last_seen)
)
SELECT count(*) FROM ins
"""

# An availability change is kept on the charger and as a reading of the pseudo-field
# "Availability" (history for the API); a retained re-send of the same state is not a change.
_AVAILABILITY = """
WITH changed AS (
    INSERT INTO chargers AS c (charger, first_seen, last_seen, availability,
                               availability_changed_at)
    VALUES ($1, $3, $3, $2, $3)
    ON CONFLICT (charger) DO UPDATE
       SET availability = excluded.availability,
           availability_changed_at = excluded.availability_changed_at
     WHERE c.availability IS DISTINCT FROM excluded.availability
    RETURNING charger, availability, availability_changed_at
)
INSERT INTO readings (time, charger, field, value_text)
SELECT availability_changed_at, charger, 'Availability', availability FROM changed
ON CONFLICT DO NOTHING
"""


# The chargers of an edge that went offline: each one the system knows that is not
# offline yet becomes offline, with the same history row as its own "offline" message.
# Sorted, so that two ingests of a $share group lock the rows in the same order.
_EDGE_OFFLINE = """
WITH targets AS (
    SELECT c.charger FROM chargers c
     WHERE c.charger = ANY($1::text[]) AND c.availability IS DISTINCT FROM 'offline'
     ORDER BY c.charger FOR UPDATE
), changed AS (
    UPDATE chargers AS c SET availability = 'offline', availability_changed_at = $2
      FROM targets t WHERE c.charger = t.charger
    RETURNING c.charger, c.availability, c.availability_changed_at
)
INSERT INTO readings (time, charger, field, value_text)
SELECT availability_changed_at, charger, 'Availability', availability FROM changed
ON CONFLICT DO NOTHING
"""

# A charger is served by one edge at a time: the newest list that names it wins, and it
# leaves every other edge's list, so that an edge it moved away from (retired, or not
# yet reconfigured) can no longer take it offline. Rows locked in edge order.
_EDGE_CHARGERS_TAKEN = """
WITH others AS (
    SELECT edge FROM edges
     WHERE edge <> $1 AND chargers && $2::text[]
     ORDER BY edge FOR UPDATE
)
UPDATE edges AS e
   SET chargers = ARRAY(SELECT c FROM unnest(e.chargers) AS c
                         WHERE c <> ALL($2::text[]) ORDER BY c),
       chargers_changed_at = $3
  FROM others o WHERE e.edge = o.edge
"""

_EDGE_CHARGERS = """
INSERT INTO edges AS e (edge, chargers, chargers_changed_at) VALUES ($1, $2::text[], $3)
ON CONFLICT (edge) DO UPDATE
   SET chargers = excluded.chargers, chargers_changed_at = excluded.chargers_changed_at
 WHERE e.chargers IS DISTINCT FROM excluded.chargers
"""

_EDGE_AVAILABILITY = """
INSERT INTO edges AS e (edge, availability, availability_changed_at) VALUES ($1, $2, $3)
ON CONFLICT (edge) DO UPDATE
   SET availability = excluded.availability,
       availability_changed_at = excluded.availability_changed_at
 WHERE e.availability IS DISTINCT FROM excluded.availability
"""


_DEAD_LETTERS = """
INSERT INTO dead_letters AS d
       (key, topic, payload, reason, detail, times_seen, received_at, last_received_at)
SELECT k, t, p, r, x, n, now(), now()
  FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::int[])
       AS u(k, t, p, r, x, n)
ON CONFLICT (key) DO UPDATE
   SET times_seen = d.times_seen + excluded.times_seen,
       last_received_at = excluded.last_received_at
"""

# A command seen on the broker. The API inserts the commands it accepts before it
# publishes them (via 'api', issuer "token:<name>"): that row stays as it is, but for an
# issuer it did not know. `xmax = 0` tells a new row from an updated one.
_COMMAND = """
INSERT INTO commands AS c (charger, command_id, command, value, issued_at, expires_at,
                           valid_for, issuer, via)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'mqtt')
ON CONFLICT (charger, command_id) DO UPDATE SET issuer = COALESCE(c.issuer, excluded.issuer)
RETURNING (xmax = 0) AS inserted
"""

# A result, once per (charger, command_id, outcome): `applied` then `reverted` are two.
_RESULT = """
INSERT INTO command_results (charger, command_id, outcome, reason, at, value, lease_end)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (charger, command_id, outcome) DO NOTHING
RETURNING true
"""


def _audit_order(item: Audit) -> tuple[int, str, str, str]:
    """Commands, then results, each by key: two ingests of a ``$share`` group that
    write the same rows lock them in the same order."""
    if isinstance(item, CommandMessage):
        return (0, item.charger, item.command_id, "")
    return (1, item.charger, item.result.command_id, item.result.outcome.value)


#: Stored topics and details are cut to this many characters (a topic may be 64 KiB).
MAX_STORED_TOPIC_CHARS = 1024
MAX_DETAIL_CHARS = 1000


DeadLetterColumns = tuple[list[bytes], list[str], list[bytes], list[str], list[str], list[int]]


def dead_letter_rows(dead_letters: Sequence[DeadLetter], max_bytes: int) -> DeadLetterColumns:
    """The columns of ``_DEAD_LETTERS``: one row per distinct key (ON CONFLICT cannot
    touch a row twice in one statement), counting repeats within the batch."""
    cols: DeadLetterColumns = ([], [], [], [], [], [])
    keys, topics, payloads, reasons, details, counts = cols
    index: dict[bytes, int] = {}
    for d in dead_letters:
        key = dead_letter_key(d.topic, d.payload)
        i = index.get(key)
        if i is not None:
            counts[i] += 1
            continue
        index[key] = len(keys)
        detail = bounded(d.detail, MAX_DETAIL_CHARS)
        if len(d.payload) > max_bytes:
            detail += f" [payload truncated to {max_bytes} of {len(d.payload)} bytes]"
        topic = bounded(d.topic, MAX_STORED_TOPIC_CHARS)
        if topic != d.topic:
            detail += f" [topic truncated to {MAX_STORED_TOPIC_CHARS} of {len(d.topic)} characters]"
        keys.append(key)
        topics.append(topic)
        payloads.append(d.payload[:max_bytes])
        reasons.append(d.reason)
        details.append(detail)
        counts.append(1)
    return cols


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    dead_letters: int
    #: Rows added to ``commands`` and ``command_results``; audit items already there.
    commands: int = 0
    results: int = 0
    audit_duplicates: int = 0


@dataclass(slots=True)
class _AuditCounts:
    commands: int = 0
    results: int = 0


#: The chargers an edge may affect (its certificate's list), by edge id.
EdgeAuthority = Callable[[str], frozenset[str]]


def no_edge_chargers(edge: str) -> frozenset[str]:
    """Trust no edge with any charger (for a writer that gets no edge messages)."""
    return frozenset()


class Writer:
    """Writes batches through a pool (its connections get the staging table on demand).

    ``edge_chargers`` says which chargers an edge may affect: what an edge's list names
    beyond them is refused (counted, logged), and its will takes only them offline.

    Every call is bounded in time: taking a connection (connecting included) by
    ``acquire_timeout``, the whole transaction by ``timeout``. A connection that failed
    or timed out in the middle of a transaction is in an unknown state (its server may
    be frozen, or dead behind a socket that never closes): it is terminated, never
    rolled back over the network nor returned to the pool; the server rolls back when
    it sees the socket close, and the retry takes a fresh connection.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        edge_chargers: EdgeAuthority = no_edge_chargers,
        *,
        dead_letter_max_bytes: int = 1024,
        timeout: float = 30.0,
        acquire_timeout: float = 10.0,
        metrics: IngestMetrics,
    ) -> None:
        self.pool = pool
        self._edge_chargers = edge_chargers
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.timeout = timeout
        self.acquire_timeout = acquire_timeout
        self.metrics = metrics

    async def write(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter] = (),
        availability: Sequence[StateChange] = (),
        audit: Sequence[Audit] = (),
    ) -> WriteResult:
        unique = {r.key: r for r in readings}  # the same sample twice in one batch
        counts = _AuditCounts()
        conn = await self.pool.acquire(timeout=self.acquire_timeout)
        try:
            async with asyncio.timeout(self.timeout):
                inserted = await self._transaction(
                    conn, unique, dead_letters, availability, audit, counts
                )
        except BaseException:
            conn.terminate()  # unknown state: never reused (see the class docstring)
            raise
        finally:
            await self.pool.release(conn, timeout=self.acquire_timeout)
        return WriteResult(
            inserted,
            len(readings) - inserted,
            len(dead_letters),
            commands=counts.commands,
            results=counts.results,
            audit_duplicates=len(audit) - counts.commands - counts.results,
        )

    async def _transaction(
        self,
        conn: asyncpg.Connection,
        unique: dict[Any, Reading],
        dead_letters: Sequence[DeadLetter],
        availability: Sequence[StateChange],
        audit: Sequence[Audit],
        counts: _AuditCounts,
    ) -> int:
        # BEGIN/COMMIT by hand: on an error the connection is terminated (the server
        # rolls back), so no ROLLBACK is ever awaited on a connection that may hang.
        await conn.execute("BEGIN")
        inserted = 0
        if unique:
            await conn.execute(_STAGING)
            await conn.copy_records_to_table(
                "staging_readings",
                records=[
                    (r.time, r.charger, r.field, r.value_num, r.value_text, r.value_bool)
                    for r in unique.values()
                ],
                columns=_COLUMNS,
            )
            inserted = int(await conn.fetchval(_MOVE))
        for a in availability:
            await self._state_change(conn, a)
        if dead_letters:
            await conn.execute(
                _DEAD_LETTERS, *dead_letter_rows(dead_letters, self.dead_letter_max_bytes)
            )
        for item in sorted(audit, key=_audit_order):
            await self._audit(conn, item, counts)
        await conn.execute("COMMIT")
        return inserted

    @staticmethod
    async def _audit(conn: asyncpg.Connection, item: Audit, counts: _AuditCounts) -> None:
        if isinstance(item, CommandMessage):
            new = await conn.fetchval(
                _COMMAND,
                item.charger,
                item.command_id,
                item.command.value,
                item.value,
                item.issued_at,
                item.expires_at,
                item.valid_for,
                item.issuer,
            )
            counts.commands += bool(new)
        elif isinstance(item, ChargerResult):
            r = item.result
            new = await conn.fetchval(
                _RESULT,
                item.charger,
                r.command_id,
                r.outcome.value,
                r.reason,
                r.at,
                r.value,
                r.lease_end,
            )
            counts.results += bool(new)

    async def _state_change(self, conn: asyncpg.Connection, change: StateChange) -> None:
        if isinstance(change, Availability):
            state = "online" if change.online else "offline"
            await conn.execute(_AVAILABILITY, change.charger, state, change.received)
        elif isinstance(change, EdgeChargers):
            allowed = self._edge_chargers(change.edge)
            chargers = [c for c in change.chargers if c in allowed]
            refused = [c for c in change.chargers if c not in allowed]
            if refused:
                self.metrics.edge_chargers_refused.inc(len(refused))
                log.warning(
                    "edge %s lists charger(s) its certificate does not: %s (ignored)",
                    change.edge,
                    ", ".join(refused[:10]) + ("" if len(refused) <= 10 else ", …"),
                )
            await conn.execute(_EDGE_CHARGERS_TAKEN, change.edge, chargers, change.received)
            await conn.execute(_EDGE_CHARGERS, change.edge, chargers, change.received)
        elif isinstance(change, EdgeAvailability):
            state = "online" if change.online else "offline"
            await conn.execute(_EDGE_AVAILABILITY, change.edge, state, change.received)
            if not change.online:
                # Also when the edge was offline already: a new ingest session gets the
                # chargers' retained (stale) "online" first, then the edge's will again.
                listed = await conn.fetchval(
                    "SELECT chargers FROM edges WHERE edge = $1", change.edge
                )
                # Its certificate as it is now (a list stored before it was re-issued
                # with fewer chargers, or before this check existed, names more).
                allowed = self._edge_chargers(change.edge)
                chargers = [c for c in listed or () if c in allowed]
                if chargers:
                    await conn.execute(_EDGE_OFFLINE, chargers, change.received)
