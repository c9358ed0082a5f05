"""Batches messages by size or age, writes them, and only then lets them be acknowledged.

``submit`` returns when the message's batch has committed (True) — the MQTT handler
then returns and gmqtt sends the PUBACK — or, at shutdown after the MQTT connection
is closed, False: the broker redelivers it to the next session. While the database is
down the writer retries with bounded backoff and nothing is acknowledged; the broker's
in-flight window (receive maximum) bounds what waits here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from chargelift_contract.mqtt import Backoff
from chargelift_ingest import metrics
from chargelift_ingest.validate import Availability, DeadLetter, Item, Reading
from chargelift_ingest.writer import Writer

log = logging.getLogger(__name__)

# SQLSTATE classes worth retrying: connection exception, insufficient resources,
# operator intervention (shutdown, crash recovery), transaction rollback.
_TRANSIENT_CLASSES = ("08", "53", "57", "40")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_CLASSES
    return False


@dataclass(slots=True)
class _Pending:
    item: Item
    topic: str
    payload: bytes
    future: asyncio.Future[bool]


class Batcher:
    def __init__(
        self,
        writer: Writer,
        *,
        size: int,
        age_s: float,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.size = size
        self.age_s = age_s
        self.backoff = backoff or Backoff(initial=0.2, maximum=10.0)
        self.clock = clock
        self._pending: list[_Pending] = []
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._writing = 0

    @property
    def pending(self) -> int:
        return len(self._pending) + self._writing

    async def submit(self, item: Item, topic: str, payload: bytes) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_at = self.clock()
            self._wake.set()
        self._pending.append(_Pending(item, topic, payload, fut))
        if len(self._pending) >= self.size:
            self._full.set()
        metrics.PENDING.set(self.pending)
        return await fut

    async def run(self) -> None:
        """Forever: wait for a batch (size or age), write it, resolve its futures."""
        while True:
            await self._wake.wait()
            wait = self.age_s - (self.clock() - self._first_at)
            if wait > 0 and len(self._pending) < self.size:
                try:
                    async with asyncio.timeout(wait):
                        await self._full.wait()
                except TimeoutError:
                    pass
            await self.flush_once()

    async def flush_once(self) -> None:
        batch, self._pending = self._pending[: self.size], self._pending[self.size :]
        if self._pending:
            self._first_at = self.clock()
        else:
            self._wake.clear()
        if len(self._pending) < self.size:
            self._full.clear()
        if batch:
            self._writing = len(batch)
            try:
                await self._write(batch)
            finally:
                self._writing = 0
                metrics.PENDING.set(self.pending)

    async def drain(self) -> None:
        """Write everything queued now (used at shutdown)."""
        while self._pending:
            await self.flush_once()

    def abandon(self) -> None:
        """Give up on what is left (after the MQTT connection closed): not acknowledged."""
        for p in self._pending:
            if not p.future.done():
                p.future.set_result(False)
        self._pending = []

    async def _write(self, batch: list[_Pending]) -> None:
        readings = [p.item for p in batch if isinstance(p.item, Reading)]
        dead = [p.item for p in batch if isinstance(p.item, DeadLetter)]
        avail = [p.item for p in batch if isinstance(p.item, Availability)]
        delays = self.backoff.delays()
        down_since: float | None = None
        while True:
            started = time.perf_counter()
            try:
                result = await self.writer.write(readings, dead, avail)
                break
            except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
                if not is_transient(exc):
                    metrics.DB_ERRORS.labels("rejected").inc()
                    log.error("database rejected a batch (%s): writing it row by row", exc)
                    result_ok = await self._write_row_by_row(batch)
                    self._resolve(batch, result_ok)
                    return
                metrics.DB_ERRORS.labels("unavailable").inc()
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning(
                        "database unavailable (%s: %s); holding %d messages unacknowledged",
                        type(exc).__name__,
                        exc,
                        len(batch),
                    )
                await asyncio.sleep(next(delays))
        if down_since is not None:
            log.warning("database back after %.1fs", time.monotonic() - down_since)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self._record(result.inserted, result.duplicates, dead, avail, readings)
        self._resolve(batch, True)

    async def _write_row_by_row(self, batch: list[_Pending]) -> bool:
        for p in batch:
            item = p.item
            while True:
                try:
                    if isinstance(item, Reading):
                        res = await self.writer.write([item])
                        self._record(res.inserted, res.duplicates, [], [], [item])
                    elif isinstance(item, DeadLetter):
                        await self.writer.write([], [item])
                        self._record(0, 0, [item], [], [])
                    else:
                        await self.writer.write([], [], [item])
                    break
                except asyncpg.PostgresError as exc:
                    if is_transient(exc):
                        await asyncio.sleep(1.0)
                        continue
                    letter = DeadLetter(p.topic, p.payload, "db_rejected", str(exc)[:500])
                    await self.writer.write([], [letter])
                    self._record(0, 0, [letter], [], [])
                    break
        return True

    @staticmethod
    def _record(
        inserted: int,
        duplicates: int,
        dead: list[DeadLetter],
        avail: list[Availability],
        readings: list[Reading],
    ) -> None:
        metrics.ROWS.inc(inserted)
        metrics.DUPLICATES.inc(duplicates)
        metrics.AVAILABILITY.inc(len(avail))
        for d in dead:
            metrics.DEAD.labels(d.reason).inc()
        now = datetime.now(UTC)
        for r in readings:
            metrics.LAG.observe(max(0.0, (now - r.time).total_seconds()))

    @staticmethod
    def _resolve(batch: list[_Pending], stored: bool) -> None:
        metrics.BATCH_SIZE.observe(len(batch))
        for p in batch:
            if not p.future.done():
                p.future.set_result(stored)
