"""Batches messages by size or age, writes them, and only then lets them be acknowledged.

``submit`` returns when the message's batch has committed; the MQTT handler then
returns and gmqtt sends the PUBACK. It raises :class:`NotStored` when the message was
not taken (after :meth:`Batcher.close`) or given up at shutdown (:meth:`Batcher.abandon`):
the handler fails, no PUBACK is sent, and the broker redelivers the message to the
next session.

Failures of a write are classified once (STYLE #6):

* the database is unreachable or refuses for a reason outside the data (connection,
  shutdown, resources, missing table, permissions): **retry the batch** with bounded
  backoff (:class:`chargelift_runtime.retry.Backoff`, tenacity's loop), acknowledging
  nothing meanwhile; the broker's in-flight window (receive maximum) bounds what waits
  here, so memory stays bounded;
* the data itself is refused (SQLSTATE class 22 "data exception" or 23 "integrity
  constraint"): the batch is written again **one message per transaction**, and the
  message that is refused becomes a ``db_rejected`` dead letter. Validation should make
  this path unreachable; it exists so that one bad row can never block the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import asyncpg
import tenacity

from chargelift_contract.commands import CommandMessage
from chargelift_ingest.metrics import IngestMetrics
from chargelift_ingest.validate import (
    Audit,
    Availability,
    ChargerResult,
    DeadLetter,
    EdgeAvailability,
    EdgeChargers,
    Item,
    Reading,
    StateChange,
)
from chargelift_ingest.writer import WriteResult
from chargelift_runtime.retry import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors a write may raise: everything asyncpg and the network can throw at us.
WRITE_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError)

# SQLSTATE classes that blame the data, not the database: 22 data exception,
# 23 integrity constraint violation.
_DATA_CLASSES = ("22", "23")


_STATE_CHANGES = (Availability, EdgeAvailability, EdgeChargers)
_AUDIT = (CommandMessage, ChargerResult)


class NotStored(Exception):  # noqa: N818 - names an outcome, as asyncio.CancelledError does
    """The message was not stored and must not be acknowledged."""


def blames_the_data(exc: BaseException) -> bool:
    """True if retrying ``exc`` can never help: the row itself is refused."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _DATA_CLASSES
    return False


class BatchWriter(Protocol):
    """What the batcher needs of :class:`chargelift_ingest.writer.Writer`."""

    async def write(
        self,
        readings: Sequence[Reading],
        dead_letters: Sequence[DeadLetter] = (),
        availability: Sequence[StateChange] = (),
        audit: Sequence[Audit] = (),
    ) -> WriteResult: ...


@dataclass(slots=True)
class _Pending:
    item: Item
    topic: str
    payload: bytes
    future: asyncio.Future[None]


class Batcher:
    """Collects messages into batches of at most ``size``, written at most ``age_s`` after
    the first one arrived; one batch is written at a time."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        size: int,
        age_s: float,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: IngestMetrics,
    ) -> None:
        self.writer = writer
        self.size = size
        self.age_s = age_s
        self.backoff = backoff or Backoff(initial=0.2, maximum=10.0)
        self.clock = clock
        self.now = now
        self.metrics = metrics
        self._pending: list[_Pending] = []
        self._first_at = 0.0
        self._changed = asyncio.Event()
        self._writing = 0
        self._closing = False
        self._reasons_logged: set[str] = set()
        self.database_ok = True

    @property
    def pending(self) -> int:
        """Messages received and not yet committed (queued plus being written)."""
        return len(self._pending) + self._writing

    async def submit(self, item: Item, topic: str, payload: bytes) -> None:
        """Queue one message; return once it is committed (raise NotStored if it is not)."""
        if self._closing:
            raise NotStored("ingest is shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_at = self.clock()
        self._pending.append(_Pending(item, topic, payload, fut))
        if len(self._pending) == 1 or len(self._pending) >= self.size:
            self._changed.set()
        await fut

    def close(self) -> None:
        """Take no more messages; :meth:`run` writes what is queued, then returns."""
        self._closing = True
        self._changed.set()

    async def run(self) -> None:
        """Write batches (by size or age) until closed and empty."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self.age_s - (self.clock() - self._first_at)
            if wait > 0 and len(self._pending) < self.size and not self._closing:
                self._changed.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                except TimeoutError:
                    pass
                continue  # re-check: full, aged or closing
            await self.flush_once()

    async def flush_once(self) -> None:
        """Write the oldest ``size`` queued messages now (retrying until committed)."""
        batch, self._pending = self._pending[: self.size], self._pending[self.size :]
        if self._pending:
            self._first_at = self.clock()
        if not batch:
            return
        self._writing = len(batch)
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            # Cancelled at shutdown while the database did not answer: the transaction
            # rolls back, so none of these may be acknowledged.
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(NotStored("write cancelled"))
            raise
        finally:
            self._writing = 0

    def abandon(self) -> None:
        """Give up on everything not committed: none of it is acknowledged."""
        self._closing = True
        for p in self._pending:
            if not p.future.done():
                p.future.set_exception(NotStored("abandoned at shutdown"))
        self._pending = []

    # -- writing -------------------------------------------------------------------

    async def _write(self, batch: list[_Pending]) -> None:
        readings = [p.item for p in batch if isinstance(p.item, Reading)]
        dead = [p.item for p in batch if isinstance(p.item, DeadLetter)]
        avail = [p.item for p in batch if isinstance(p.item, _STATE_CHANGES)]  # in order
        audit = [p.item for p in batch if isinstance(p.item, _AUDIT)]
        started = time.perf_counter()
        try:
            result = await self._retrying(lambda: self.writer.write(readings, dead, avail, audit))
        except asyncpg.PostgresError as exc:  # only data errors get here
            self.metrics.db_errors.labels("rejected").inc()
            log.error("database refused a batch (%s): writing it one message at a time", exc)
            await self._write_one_by_one(batch)
        else:
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self._record(result, dead, avail, readings)
        self.metrics.batch_size.observe(len(batch))
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)

    async def _write_one_by_one(self, batch: list[_Pending]) -> None:
        for p in batch:
            item = p.item
            readings = [item] if isinstance(item, Reading) else []
            dead = [item] if isinstance(item, DeadLetter) else []
            avail: list[StateChange] = [item] if isinstance(item, _STATE_CHANGES) else []
            audit: list[Audit] = [item] if isinstance(item, _AUDIT) else []
            try:
                result = await self._retrying(
                    functools.partial(self.writer.write, readings, dead, avail, audit)
                )
            except asyncpg.PostgresError as exc:
                letter = DeadLetter(p.topic, p.payload, "db_rejected", str(exc)[:500])
                result = await self._retrying(functools.partial(self.writer.write, [], [letter]))
                readings, dead, avail = [], [letter], []
            self._record(result, dead, avail, readings)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds; re-raise only errors that blame the data.

        Anything else is retried (tenacity's loop, :meth:`Backoff.retrying`): a timeout
        (the writer bounds every call), a lost connection, or an error nobody foresaw
        (asyncpg's internal ones): a batcher that died would leave every message
        unacknowledged and the process up, silently stuck.
        """
        down_since: float | None = None

        def failed(state: tenacity.RetryCallState) -> None:
            nonlocal down_since
            assert state.outcome is not None
            exc = state.outcome.exception()
            expected = isinstance(exc, WRITE_ERRORS)
            connection = expected and (
                not isinstance(exc, asyncpg.PostgresError)
                or str(getattr(exc, "sqlstate", "")).startswith(("08", "57", "53"))
            )
            self.metrics.db_errors.labels("unavailable" if connection else "error").inc()
            if down_since is None:
                down_since = time.monotonic()
                self.database_ok = False
                # A connection problem is expected to pass; anything else (a missing
                # table, a permission) needs an operator: say so loudly.
                log.log(
                    logging.WARNING if connection else logging.ERROR,
                    "database write failed (%s: %s); holding %d messages unacknowledged, retrying",
                    type(exc).__name__,
                    exc,
                    self.pending,
                    exc_info=None if expected else exc,
                )
            else:
                log.debug("database write failed again (%s: %s)", type(exc).__name__, exc)

        retrying = self.backoff.retrying(
            retry_if=lambda exc: not blames_the_data(exc), before_sleep=failed
        )

        async def call() -> T:  # a coroutine function, which tenacity awaits
            return await attempt()

        value: T = await retrying(call)
        if down_since is not None:
            log.warning("database writes work again after %.1fs", time.monotonic() - down_since)
        self.database_ok = True
        return value

    def _record(
        self,
        result: WriteResult,
        dead: Sequence[DeadLetter],
        avail: Sequence[StateChange],
        readings: Sequence[Reading],
    ) -> None:
        self.metrics.rows.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.commands.inc(result.commands)
        self.metrics.command_results.inc(result.results)
        self.metrics.audit_duplicates.inc(result.audit_duplicates)
        self.metrics.availability.inc(sum(1 for a in avail if not isinstance(a, EdgeChargers)))
        for d in dead:
            self.metrics.dead.labels(d.reason).inc()
            # The first of each reason is logged; the rest are counted (a flood of bad
            # messages must not flood the log) and kept in the table.
            level = logging.DEBUG if d.reason in self._reasons_logged else logging.WARNING
            self._reasons_logged.add(d.reason)
            log.log(level, "dead letter (%s) on %r: %s", d.reason, d.topic[:200], d.detail[:200])
        now = self.now()
        observe = self.metrics.lag.observe
        for r in readings:
            observe(max(0.0, (now - r.time).total_seconds()))
