"""The durable outbox: every message to publish is a row in SQLite until the broker's PUBACK.

Guarantees (docs/poller.md has the long version):

* **Durable before published.** A poll's messages are inserted in one transaction;
  publishers only ever publish rows that have committed. With ``journal_mode=WAL`` and
  ``synchronous=NORMAL`` a commit survives the poller being killed (``kill -9``): the
  WAL write is in the kernel's page cache. It may not survive a power cut or a kernel
  crash; ``synchronous=FULL`` (``POLLER_OUTBOX_SYNCHRONOUS``) adds an fsync per commit.
* **Leaves only after PUBACK.** A row is marked ``acked_at`` when the broker
  acknowledged it (marks are batched: a crash before the batch is written repeats a
  few messages, it loses none; consumers deduplicate on topic + SamplingTime).
* **Order.** ``seq`` (AUTOINCREMENT, never reused) is the order of insertion; each
  publisher sends its charger's rows in ``seq`` order.
* **Replay window.** Acknowledged rows are kept ``replay_window`` seconds and
  re-published after every reconnect, because Mosquitto persists to disk only every
  ``autosave_interval`` and a killed broker forgets messages it already acknowledged.
  Older acknowledged rows are pruned.
* **Bounds and drop policy.** At most ``max_rows`` unacknowledged rows, none older than
  ``max_age``; beyond that the *oldest* unacknowledged rows are deleted first, except
  that the newest row of each topic is never dropped (the retained value — the shadow —
  stays right). Every drop is counted by reason (``max_rows``, ``max_age``, ``refused``,
  ``too_large``).
* **Retained or not.** Readings and availability are published retained (the shadow);
  a row with ``retain`` false (a command's result) is published as a plain QoS 1
  message. Schema version 2 added the column; a version 1 file is migrated in place
  (every old row is retained, which is what it was).
* **Command state lives here too.** The same file holds the commands a charger
  received and the control limit in force (tables ``commands`` and ``control``, read
  and written by :mod:`.commands` for the poller and the OCPP gateway), so that a
  command's outcome and its result row commit in one transaction
  (:meth:`Outbox.append` with ``also``).
* **Nothing the broker cannot take.** An entry whose MQTT PUBLISH packet would exceed
  ``max_packet_bytes`` (the broker's ``max_packet_size``) never becomes an unsent row:
  over the limit Mosquitto drops the connection instead of refusing the packet, so such
  a row at the head of a charger's queue would block it forever (issue 14). It is
  recorded in ``dropped`` (reason ``too_large``) in the same transaction and reported
  to ``on_drop``; the entries around it are stored as usual.

The outbox is synchronous and single-threaded on purpose: it runs on the event loop,
each call is a short local transaction, and there is exactly one writer.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from chargelift_contract.limits import publish_packet_size

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    charger    TEXT NOT NULL,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    sampled_at REAL NOT NULL,  -- unix seconds: when the value was read (SamplingTime)
    created_at REAL NOT NULL,  -- unix seconds: when the row was inserted
    acked_at   REAL,           -- unix seconds of the first PUBACK; NULL = not yet sent
    retain     INTEGER NOT NULL DEFAULT 1  -- 0: published not retained (results)
);
CREATE INDEX IF NOT EXISTS outbox_by_charger ON outbox (charger, seq);
CREATE INDEX IF NOT EXISTS outbox_unacked ON outbox (seq) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked_at) WHERE acked_at IS NOT NULL;
-- What the drop policy deleted, so that a gap downstream can be explained (reconciled
-- by the chaos soak); kept as long as acknowledged rows are (the replay window).
CREATE TABLE IF NOT EXISTS dropped (
    seq        INTEGER PRIMARY KEY,
    charger    TEXT NOT NULL,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    reason     TEXT NOT NULL,
    dropped_at REAL NOT NULL
);
-- Commands received per charger and what became of them (the poller's Commander):
-- a command id is applied at most once, also across restarts.
CREATE TABLE IF NOT EXISTS commands (
    charger     TEXT NOT NULL,
    command_id  TEXT NOT NULL,
    command     TEXT NOT NULL,
    value       REAL,
    issued_at   REAL NOT NULL,
    expires_at  REAL NOT NULL,
    valid_for   REAL,
    issuer      TEXT,
    stage       TEXT NOT NULL,  -- received | applying | done
    outcome     TEXT,           -- when done
    result      BLOB,           -- the result payload published (re-sent for a repeat)
    received_at REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (charger, command_id)
);
CREATE INDEX IF NOT EXISTS commands_open ON commands (charger) WHERE stage != 'done';
CREATE INDEX IF NOT EXISTS commands_expiry ON commands (expires_at) WHERE stage = 'done';
-- The controller's current limit in force per charger, and its lease.
CREATE TABLE IF NOT EXISTS control (
    charger    TEXT PRIMARY KEY,
    command_id TEXT NOT NULL,
    value      REAL NOT NULL,
    lease_end  REAL             -- unix seconds; NULL: no lease
);
"""

_RECORD_DROP = (
    "INSERT OR IGNORE INTO dropped (seq, charger, topic, payload, reason, dropped_at) "
    "SELECT seq, charger, topic, payload, ?, ? FROM outbox WHERE seq = ?"
)

DROP_REASONS = ("max_rows", "max_age", "refused", "too_large")


class OutboxError(RuntimeError):
    """The outbox file cannot be used (wrong schema, unreadable...)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A message to store: where it goes, what it says, when its value was sampled.

    ``received_at``: when the edge received the message that carried the value (unix s),
    for the receipt-to-PUBACK histogram (``EdgeMetrics(..., receipt_latency=True)``).
    Kept in memory only: a row read back from the file has none."""

    charger: str
    topic: str
    payload: bytes
    sampled_at: float
    retain: bool = True
    received_at: float | None = None


#: SQL run in the transaction of an :meth:`Outbox.append`: (statement, parameters).
Statement = tuple[str, Sequence[object]]


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message. ``acked`` rows are replays of already acknowledged ones."""

    seq: int
    charger: str
    topic: str
    payload: bytes
    sampled_at: float
    acked: bool = False
    retain: bool = True
    received_at: float | None = None  # the entry's, in memory only (see Entry)


class OutboxListener(Protocol):
    """A charger's publisher, told about its rows as they change."""

    def rows_added(self, rows: Sequence[Row]) -> None:
        """New rows committed (in ``seq`` order)."""

    def rows_dropped(self) -> None:
        """Some of this charger's unsent rows were deleted by the bounds."""


def _prepare(db: sqlite3.Connection, path: Path, synchronous: str) -> None:
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise OutboxError(f"outbox {path}: cannot use WAL mode (got {mode})")
    db.execute(f"PRAGMA synchronous={synchronous}")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version not in (0, 1, SCHEMA_VERSION):
        raise OutboxError(f"outbox {path}: schema version {version} is not supported")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "retain" not in columns:  # version 1: every row was published retained
        db.execute("ALTER TABLE outbox ADD COLUMN retain INTEGER NOT NULL DEFAULT 1")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class Outbox:
    """The SQLite outbox. Build it with :meth:`open`; use it as a context manager."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        max_rows: int,
        max_age: float,
        replay_window: float,
        keep_acked: float = 0.0,
        clock: Callable[[], float] = time.time,
        max_packet_bytes: int | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self._db = db
        self.max_packet_bytes = max_packet_bytes
        self._on_drop = on_drop
        self._too_large_logged: set[str] = set()
        #: Acknowledged rows are kept at least this long (s), also past the replay
        #: window, without being re-published (an audit trail: the chaos soak's ledger).
        self.keep_acked = keep_acked
        self.max_rows = max_rows
        self.max_age = max_age
        self.replay_window = replay_window
        self._clock = clock
        self._listeners: dict[str, OutboxListener] = {}
        self._acks: dict[int, float] = {}
        #: PUBACKs noted since start (progress, for the liveness watchdog).
        self.acks_noted = 0
        count = "SELECT COUNT(*) FROM outbox WHERE acked_at IS {} NULL"
        self._unacked: int = db.execute(count.format("")).fetchone()[0]
        self._acked: int = db.execute(count.format("NOT")).fetchone()[0]
        # Newest seq per topic: the drop policy never deletes it.
        self._newest: dict[str, int] = dict(
            db.execute("SELECT topic, MAX(seq) FROM outbox GROUP BY topic").fetchall()
        )

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_rows: int = 1_000_000,
        max_age: float = 7 * 24 * 3600.0,
        replay_window: float = 60.0,
        keep_acked: float = 0.0,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        max_packet_bytes: int | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> Outbox:
        """Open (creating if needed) the outbox at ``path``."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            _prepare(db, path, synchronous)
            return cls(
                db,
                max_rows=max_rows,
                max_age=max_age,
                replay_window=replay_window,
                keep_acked=keep_acked,
                clock=clock,
                max_packet_bytes=max_packet_bytes,
                on_drop=on_drop,
            )
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Write pending acknowledgements, fold the WAL into the file, close."""
        with contextlib.suppress(sqlite3.Error):
            self.flush_acks()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- state -------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Rows not yet acknowledged (as of the last written acknowledgement batch)."""
        return self._unacked

    @property
    def size(self) -> int:
        """All rows, including acknowledged ones kept for the replay window."""
        return self._unacked + self._acked

    def oldest_unsent_age(self) -> float:
        """Seconds since the oldest unacknowledged row was sampled; 0 if there is none."""
        row = self._db.execute(
            "SELECT sampled_at FROM outbox WHERE acked_at IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        return 0.0 if row is None else max(0.0, self._clock() - row[0])

    def listen(self, charger: str, listener: OutboxListener) -> None:
        """Tell ``listener`` about ``charger``'s rows (one listener per charger)."""
        self._listeners[charger] = listener

    # -- writing -----------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def append(self, entries: Sequence[Entry], *, also: Sequence[Statement] = ()) -> list[Row]:
        """Store ``entries`` in one transaction; return the rows (committed) in order.

        Entries too large for the broker are recorded as dropped instead (module
        docstring) and are not among the rows returned. ``also`` are statements (of the
        command tables) committed in the same transaction."""
        if not entries and not also:
            return []
        now = self._clock()
        rows: list[Row] = []
        too_large: list[tuple[Entry, int]] = []
        with self._transaction() as cur:
            for sql, params in also:
                cur.execute(sql, tuple(params))
            for e in entries:
                cur.execute(
                    "INSERT INTO outbox (charger, topic, payload, sampled_at, created_at, retain) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (e.charger, e.topic, e.payload, e.sampled_at, now, int(e.retain)),
                )
                seq = cur.lastrowid
                assert seq is not None
                size = self._packet_size(e)
                if size is not None:
                    # Its seq is used up (AUTOINCREMENT), so the gap it leaves is explained.
                    cur.execute(_RECORD_DROP, ("too_large", now, seq))
                    cur.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    too_large.append((e, size))
                    continue
                rows.append(
                    Row(seq, e.charger, e.topic, e.payload, e.sampled_at,
                        retain=e.retain, received_at=e.received_at)
                )  # fmt: skip
        if too_large:
            self._report_too_large(too_large)
        self._unacked += len(rows)
        by_charger: dict[str, list[Row]] = {}
        for r in rows:
            self._newest[r.topic] = r.seq
            by_charger.setdefault(r.charger, []).append(r)
        for charger, added in by_charger.items():
            listener = self._listeners.get(charger)
            if listener is not None:
                listener.rows_added(added)
        return rows

    def _packet_size(self, e: Entry | Row) -> int | None:
        """The PUBLISH size of ``e`` if it is over the broker's limit, else ``None``."""
        limit = self.max_packet_bytes
        if limit is None or len(e.payload) + len(e.topic) < limit - 16:
            return None  # far below the limit: no need to count exactly
        size = publish_packet_size(e.topic, e.payload)
        return size if size > limit else None

    def too_large(self, row: Row) -> bool:
        """True if ``row`` (queued before the limit was known, or lowered) cannot be sent."""
        return self._packet_size(row) is not None

    def _report_too_large(self, dropped: Sequence[tuple[Entry, int]]) -> None:
        if self._on_drop is not None:
            self._on_drop("too_large", len(dropped))
        for e, size in dropped:
            if e.topic in self._too_large_logged:
                continue
            if len(self._too_large_logged) < 10_000:  # bounded: topics are charger x field
                self._too_large_logged.add(e.topic)
            log.error(
                "charger %s: a sample of %s is %d bytes as an MQTT PUBLISH, over the broker's "
                "packet limit of %d: dropped, never queued (recorded in the outbox's dropped "
                "table, counted in the service's *_outbox_dropped_total"
                '{reason="too_large"}; logged once per topic)',
                e.charger,
                e.topic[:200],
                size,
                self.max_packet_bytes,
            )

    def ack(self, seq: int, at: float | None = None) -> None:
        """Note the broker's PUBACK of row ``seq``; written by the next :meth:`flush_acks`."""
        self._acks.setdefault(seq, self._clock() if at is None else at)
        self.acks_noted += 1

    @property
    def pending_acks(self) -> int:
        """Acknowledgements noted but not yet written."""
        return len(self._acks)

    def flush_acks(self) -> int:
        """Write the noted acknowledgements in one transaction; return how many rows."""
        if not self._acks:
            return 0
        items = [(at, seq) for seq, at in self._acks.items()]
        self._acks.clear()
        with self._transaction() as cur:
            cur.executemany(
                "UPDATE outbox SET acked_at = ? WHERE seq = ? AND acked_at IS NULL", items
            )
            changed = max(0, cur.rowcount)
        self._unacked -= changed
        self._acked += changed
        return changed

    def discard(self, seq: int, reason: str = "refused") -> bool:
        """Delete one row that can never be delivered (the broker refused it)."""
        self._acks.pop(seq, None)
        with self._transaction() as cur:
            cur.execute(_RECORD_DROP + " AND acked_at IS NULL", (reason, self._clock(), seq))
            cur.execute("DELETE FROM outbox WHERE seq = ? RETURNING acked_at", (seq,))
            found = cur.fetchall()
        if not found:
            return False
        if found[0][0] is None:
            self._unacked -= 1
        else:
            self._acked -= 1
        return True

    # -- reading -----------------------------------------------------------------

    def load(self, charger: str, *, after: int, limit: int) -> list[Row]:
        """``charger``'s rows after ``after`` that are unsent or inside the replay window."""
        since = self._clock() - self.replay_window
        cursor = self._db.execute(
            "SELECT seq, topic, payload, sampled_at, acked_at IS NOT NULL, retain FROM outbox "
            "WHERE charger = ? AND seq > ? AND (acked_at IS NULL OR acked_at >= ?) "
            "ORDER BY seq LIMIT ?",
            (charger, after, since, limit),
        )
        return [Row(s, charger, t, bytes(p), at, bool(a), bool(r)) for s, t, p, at, a, r in cursor]

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of a read-only query (the command tables)."""
        return self._db.execute(sql, tuple(params)).fetchall()

    def execute(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` (of the command tables) in one transaction."""
        with self._transaction() as cur:
            for sql, params in statements:
                cur.execute(sql, tuple(params))

    # -- maintenance -------------------------------------------------------------

    def prune(self) -> int:
        """Delete acknowledged rows older than the replay window (and ``keep_acked``)."""
        cutoff = self._clock() - max(self.replay_window, self.keep_acked)
        with self._transaction() as cur:
            cur.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", (cutoff,))
            removed = max(0, cur.rowcount)
            cur.execute("DELETE FROM dropped WHERE dropped_at < ?", (cutoff,))
        self._acked -= removed
        return removed

    def enforce_bounds(self) -> dict[str, int]:
        """Apply ``max_rows`` and ``max_age`` to unsent rows; return drops by reason."""
        self.flush_acks()  # a row acknowledged in memory must not count as dropped
        drops: dict[str, int] = {}
        excess = self._unacked - self.max_rows
        if excess > 0:
            drops["max_rows"] = self._drop_oldest(
                count=excess, created_before=None, reason="max_rows"
            )
        aged = self._drop_oldest(
            count=None, created_before=self._clock() - self.max_age, reason="max_age"
        )
        if aged:
            drops["max_age"] = aged
        return {k: v for k, v in drops.items() if v}

    def _drop_oldest(self, *, count: int | None, created_before: float | None, reason: str) -> int:
        victims: list[tuple[int]] = []
        chargers: set[str] = set()
        after = 0
        done = False
        while not done:
            batch = self._db.execute(
                "SELECT seq, charger, topic, created_at FROM outbox "
                "WHERE acked_at IS NULL AND seq > ? ORDER BY seq LIMIT 1000",
                (after,),
            ).fetchall()
            if not batch:
                break
            for seq, charger, topic, created_at in batch:
                if created_before is not None and created_at >= created_before:
                    done = True
                    break
                if self._newest.get(topic) == seq:
                    continue  # the newest value of a topic is never dropped
                victims.append((seq,))
                chargers.add(charger)
                if count is not None and len(victims) >= count:
                    done = True
                    break
            after = batch[-1][0]
        if not victims:
            return 0
        now = self._clock()
        with self._transaction() as cur:
            cur.executemany(
                _RECORD_DROP + " AND acked_at IS NULL", [(reason, now, v[0]) for v in victims]
            )
            cur.executemany("DELETE FROM outbox WHERE seq = ? AND acked_at IS NULL", victims)
            dropped = max(0, cur.rowcount)
        self._unacked -= dropped
        for charger in chargers:
            listener = self._listeners.get(charger)
            if listener is not None:
                listener.rows_dropped()
        return dropped
