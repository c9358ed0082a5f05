"""The gateway's transaction ids, durable in SQLite (``OCPP_STATE_DIR/transactions.sqlite3``).

A charge point that was offline replays its queued StartTransaction late, sometimes
twice; OCPP 1.6 gives the message no id of its own. The gateway identifies a start by
(charge point, connector, timestamp, meterStart, idTag): the same start gets the same
transactionId, also after a restart of the gateway, so the charger's later MeterValues
and StopTransaction name the one transaction.

A StopTransaction is always answered Accepted (the charger must stop re-sending it);
:meth:`TransactionStore.stop` says whether it was the first stop of a known transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

#: OCPP's transactionId is an integer; chargers hold it in 32 bits.
MAX_TRANSACTION_ID = 2**31 - 1

# Meter values are kept as text: the schema bounds neither them nor the connector id,
# and a hostile 10**30 must not make an answer fail (the charger would resend it for ever).

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    charge_point TEXT NOT NULL,
    connector TEXT NOT NULL,
    started_at TEXT NOT NULL,
    meter_start TEXT NOT NULL,
    id_tag TEXT NOT NULL,
    stopped_at TEXT,
    meter_stop TEXT,
    UNIQUE (charge_point, connector, started_at, meter_start, id_tag)
);
"""


@dataclass(frozen=True, slots=True)
class Started:
    transaction_id: int
    #: False: the same StartTransaction was seen before (a replay); same id.
    new: bool


@dataclass(frozen=True, slots=True)
class Running:
    """A transaction started and not stopped, as the charge point sent it (text)."""

    transaction_id: int
    connector: str
    meter_start: str
    id_tag: str
    started_at: str


StopOutcome = Literal["stopped", "already_stopped", "unknown"]


class TransactionStore:
    """``with TransactionStore(path) as store``: ``start`` and ``stop`` are transactions
    of their own, committed before the answer goes to the charger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        self._db = db
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("TransactionStore used outside its with block")
        return self._db

    def start(
        self, charge_point: str, connector: int, started_at: str, meter_start: int, id_tag: str
    ) -> Started:
        key = (charge_point, str(connector), started_at, str(meter_start), id_tag)
        with self.db:  # BEGIN … COMMIT
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT id FROM transactions WHERE charge_point=? AND connector=? "
                "AND started_at=? AND meter_start=? AND id_tag=?",
                key,
            ).fetchone()
            if row is not None:
                return Started(int(row[0]), new=False)
            cur = self.db.execute(
                "INSERT INTO transactions "
                "(charge_point, connector, started_at, meter_start, id_tag) VALUES (?,?,?,?,?)",
                key,
            )
            tx_id = cur.lastrowid
        assert tx_id is not None
        if tx_id > MAX_TRANSACTION_ID:  # pragma: no cover - 2 billion transactions
            raise OverflowError("transaction ids exhausted")
        return Started(int(tx_id), new=True)

    def stop(
        self, charge_point: str, transaction_id: int, stopped_at: str, meter_stop: int
    ) -> StopOutcome:
        if not 0 < transaction_id <= MAX_TRANSACTION_ID:
            return "unknown"  # never one of ours
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT stopped_at FROM transactions WHERE id=? AND charge_point=?",
                (transaction_id, charge_point),
            ).fetchone()
            if row is None:
                return "unknown"
            if row[0] is not None:
                return "already_stopped"
            self.db.execute(
                "UPDATE transactions SET stopped_at=?, meter_stop=? WHERE id=?",
                (stopped_at, str(meter_stop), transaction_id),
            )
        return "stopped"

    def meter_start(self, charge_point: str, transaction_id: int) -> int | None:
        if not 0 < transaction_id <= MAX_TRANSACTION_ID:
            return None
        row = self.db.execute(
            "SELECT meter_start FROM transactions WHERE id=? AND charge_point=?",
            (transaction_id, charge_point),
        ).fetchone()
        return None if row is None else int(row[0])

    def running(self, charge_point: str) -> list[Running]:
        """The transactions of ``charge_point`` not stopped yet, oldest first (to tell a
        fresh mapper after a restart)."""
        rows = self.db.execute(
            "SELECT id, connector, meter_start, id_tag, started_at FROM transactions "
            "WHERE charge_point=? AND stopped_at IS NULL ORDER BY id",
            (charge_point,),
        ).fetchall()
        return [Running(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
