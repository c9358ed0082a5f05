"""What a dead letter may cost: a rate limit per identity and overall, a bounded size,
one row per distinct message, and a retention (docs/ingest.md, "Dead letters: quota,
retention, stored once").

Ingest does not see who published a message, but the broker's ACL confines every
identity to its own topic prefix (a charger to ``chargers/<id>/…``, an edge to its
chargers' and ``edges/<edge>/…``): the first two levels of the topic name the identity
(or one of an edge's chargers), and they key the budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from chargelift_ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

#: The most bytes of a topic kept as a budget key (a longer prefix is cut: two such
#: identities then share one budget, which is only stricter).
MAX_KEY_BYTES = 256
#: What one budget entry costs beyond its key (an OrderedDict slot, a bucket object).
ENTRY_OVERHEAD_BYTES = 200
#: The budgets' memory bound: about 18,000 identities with dead letters at once. When
#: more are active the least recently used is forgotten (it starts again with a full
#: burst); the global budget bounds the total all the same.
MAX_BUDGET_BYTES = 8 * 1024 * 1024

Limit = Literal["identity", "global"]


def dead_letter_key(topic: str, payload: bytes) -> bytes:
    """The natural key of a dead letter: sha256 of the topic (length-prefixed) and the
    payload as received. Equal to the SQL of migration 0006_dead_letter_key."""
    raw = topic.encode("utf-8", errors="surrogateescape")
    return hashlib.sha256(len(raw).to_bytes(4, "big") + raw + payload).digest()


def budget_key(topic: str) -> str:
    """The identity a topic belongs to: its first two levels (``chargers/<id>``)."""
    key = "/".join(topic.split("/", 2)[:2])
    raw = key.encode("utf-8", errors="surrogateescape")
    if len(raw) > MAX_KEY_BYTES:
        key = raw[:MAX_KEY_BYTES].decode("utf-8", errors="ignore")
    return key


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float

    def refill(self, now: float, rate: float, burst: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now


class DeadLetterBudget:
    """Token buckets: ``rate`` dead letters per second and identity with bursts of
    ``burst``, and ``global_rate`` / ``global_burst`` over all identities together.

    A dead letter is stored only if both its identity's bucket and the global one hold a
    token (then one is taken from each): a flood from one identity spends its own budget
    and at most that much of the global one, so the others' dead letters still fit.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        global_rate: float,
        global_burst: int,
        max_bytes: int = MAX_BUDGET_BYTES,
        clock: Callable[[], float] = time.monotonic,
        metrics: IngestMetrics,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.global_rate = global_rate
        self.global_burst = float(global_burst)
        self.max_bytes = max_bytes
        self.clock = clock
        self.metrics = metrics
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._bytes = 0
        self._global = _Bucket(self.global_burst, clock())
        self._dropped_since_log = 0
        self._logged_at: float | None = None

    @property
    def keys(self) -> int:
        return len(self._buckets)

    @property
    def memory_bytes(self) -> int:
        """The accounted size of the per-identity budgets (bounded by ``max_bytes``)."""
        return self._bytes

    def allow(self, topic: str) -> Limit | None:
        """Take a token for a dead letter on ``topic``: None if it may be stored, else
        the limit that refused it (counted and logged here)."""
        now = self.clock()
        key = budget_key(topic)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            self._bytes += len(key.encode("utf-8", errors="surrogateescape"))
            self._bytes += ENTRY_OVERHEAD_BYTES
            while self._bytes > self.max_bytes and len(self._buckets) > 1:
                old, _ = self._buckets.popitem(last=False)
                self._bytes -= len(old.encode("utf-8", errors="surrogateescape"))
                self._bytes -= ENTRY_OVERHEAD_BYTES
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now, self.rate, self.burst)
        self._global.refill(now, self.global_rate, self.global_burst)
        limit: Limit | None = None
        if bucket.tokens < 1:
            limit = "identity"
        elif self._global.tokens < 1:
            limit = "global"
        if limit is None:
            bucket.tokens -= 1
            self._global.tokens -= 1
            return None
        self.metrics.dead_rate_limited.labels(limit).inc()
        self._dropped_since_log += 1
        if self._logged_at is None or now - self._logged_at >= 60:
            # The first drop, then at most one line a minute: a flood must not flood the log.
            log.warning(
                "%d dead letters over the %s budget dropped (counted, acknowledged, not "
                "stored) since the last report; the latest from %r",
                self._dropped_since_log,
                limit,
                key,
            )
            self._dropped_since_log = 0
            self._logged_at = now
        return limit


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


#: Rows per DELETE of the retention job: short transactions, never a table-long lock.
PRUNE_BATCH = 5000
_PRUNE = """
DELETE FROM dead_letters WHERE id = ANY(ARRAY(
    SELECT id FROM dead_letters
     WHERE received_at < now() - make_interval(days => $1)
     ORDER BY received_at LIMIT $2))
"""


async def prune(pool: asyncpg.Pool, days: int, *, batch: int = PRUNE_BATCH) -> int:
    """Delete dead letters first received more than ``days`` days ago, ``batch`` rows
    per transaction; return how many."""
    total = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(_PRUNE, days, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0.1)  # leave the database to the batches in between


async def prune_forever(
    pool: asyncpg.Pool,
    days: int,
    interval_s: float,
    timeout_s: float = 300.0,
    *,
    metrics: IngestMetrics,
) -> None:
    """The retention job: at start, then every ``interval_s``, each run bounded by
    ``timeout_s``. Any failure is logged and tried again at the next interval (the
    batcher reports the database's health): this task must never end ingest's task
    group (a dying backend raises asyncpg errors outside ``PostgresError`` too, the
    cause of issue 13)."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                deleted = await prune(pool, days)
        except Exception as exc:  # logged, retried: never fatal
            log.warning(
                "dead-letter retention failed (%s: %s); next try in %.0f s",
                type(exc).__name__,
                exc,
                interval_s,
                exc_info=not isinstance(exc, OSError | TimeoutError | asyncpg.PostgresError),
            )
        else:
            metrics.dead_pruned.inc(deleted)
            if deleted:
                log.info("dead-letter retention: %d older than %d days deleted", deleted, days)
        await asyncio.sleep(interval_s)
