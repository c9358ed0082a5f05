"""The command store of an edge, shared by the poller and the OCPP gateway.

A command to a charger (:mod:`chargelift_contract.commands`) is kept in the outbox's
SQLite file (tables ``commands`` and ``control``, created by :mod:`.outbox`), so that a
command's stage, its outcome and its result row commit in one transaction
(:meth:`~.outbox.Outbox.append` with ``also``):

* ``commands``: every command id a charger received, its stage (``received`` ->
  ``applying`` -> ``done``), its outcome and the result payload published (re-sent when
  the same id comes again: a command id is applied at most once, also across restarts).
  Done commands are kept until :data:`KEEP_DONE` after they expired.
* ``control``: the controller's current limit in force per charger and its lease end.

What a service does with a command (write it through a driver, send an OCPP call) is
its own: the poller's ``chargelift_poller.commands`` and the gateway's
``chargelift_ocpp.control`` use this store and :func:`result_entry` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from chargelift_contract.commands import (
    Command,
    CommandMessage,
    Outcome,
    check_command_id,
    derived_command_id,
    result_topic,
)
from chargelift_contract.errors import ContractError
from chargelift_edge.outbox import Entry, Outbox, Statement

RECEIVED = "received"
APPLYING = "applying"
DONE = "done"

#: Done commands are remembered this long after they expired (s).
KEEP_DONE = 24 * 3600.0
_SELECT = (
    "SELECT command_id, command, value, issued_at, expires_at, valid_for, issuer, stage, "
    "result FROM commands WHERE charger = ? "
)


@dataclass(frozen=True, slots=True)
class Stored:
    """A command as the store has it."""

    message: CommandMessage
    stage: str
    result: bytes | None


@dataclass(frozen=True, slots=True)
class Lease:
    """The controller's limit in force on one charger."""

    command_id: str
    value: float
    lease_end: datetime | None


def ts(moment: datetime) -> float:
    return moment.timestamp()


def dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CommandStore:
    """The ``commands`` and ``control`` tables of the outbox file, for one charger."""

    def __init__(self, outbox: Outbox, charger: str) -> None:
        self._outbox = outbox
        self.charger = charger

    def _stored(self, row: Sequence[Any]) -> Stored:
        cid, command, value, issued, expires, valid_for, issuer, stage, result = row
        message = CommandMessage(
            charger=self.charger,
            command=Command(command),
            value=value,
            command_id=cid,
            issued_at=dt(issued),
            expires_at=dt(expires),
            valid_for=valid_for,
            issuer=issuer,
        )
        return Stored(message, stage, None if result is None else bytes(result))

    def get(self, command_id: str) -> Stored | None:
        rows = self._outbox.query(
            _SELECT + "AND command_id = ?",
            (self.charger, command_id),
        )
        return self._stored(rows[0]) if rows else None

    def open(self) -> list[Stored]:
        """Commands not done, oldest received first."""
        rows = self._outbox.query(
            _SELECT + "AND stage != 'done' ORDER BY rowid",
            (self.charger,),
        )
        return [self._stored(r) for r in rows]

    def open_count(self) -> int:
        rows = self._outbox.query(
            "SELECT COUNT(*) FROM commands WHERE charger = ? AND stage != 'done'", (self.charger,)
        )
        count = rows[0][0]
        return count if isinstance(count, int) else 0

    def insert(self, msg: CommandMessage, stage: str, now: float) -> Statement:
        return (
            "INSERT INTO commands (charger, command_id, command, value, issued_at, expires_at, "
            "valid_for, issuer, stage, received_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.charger,
                msg.command_id,
                msg.command.value,
                msg.value,
                ts(msg.issued_at),
                ts(msg.expires_at),
                msg.valid_for,
                msg.issuer,
                stage,
                now,
                now,
            ),
        )

    def stage(self, command_id: str, stage: str, now: float) -> Statement:
        return (
            "UPDATE commands SET stage = ?, updated_at = ? WHERE charger = ? AND command_id = ?",
            (stage, now, self.charger, command_id),
        )

    def done(self, command_id: str, outcome: Outcome, result: bytes, now: float) -> Statement:
        return (
            "UPDATE commands SET stage = 'done', outcome = ?, result = ?, updated_at = ? "
            "WHERE charger = ? AND command_id = ?",
            (outcome.value, result, now, self.charger, command_id),
        )

    def lease(self) -> Lease | None:
        rows = self._outbox.query(
            "SELECT command_id, value, lease_end FROM control WHERE charger = ?", (self.charger,)
        )
        if not rows:
            return None
        cid, value, lease_end = rows[0]
        end = None if not isinstance(lease_end, int | float) else dt(float(lease_end))
        return Lease(str(cid), float(value), end)  # type: ignore[arg-type]

    def set_lease(self, lease: Lease | None) -> Statement:
        if lease is None:
            return ("DELETE FROM control WHERE charger = ?", (self.charger,))
        return (
            "INSERT OR REPLACE INTO control (charger, command_id, value, lease_end) "
            "VALUES (?, ?, ?, ?)",
            (
                self.charger,
                lease.command_id,
                lease.value,
                None if lease.lease_end is None else ts(lease.lease_end),
            ),
        )

    def prune(self, now: float) -> None:
        """Forget done commands that expired more than :data:`KEEP_DONE` ago."""
        self._outbox.execute(
            [
                (
                    "DELETE FROM commands WHERE charger = ? AND stage = 'done' AND expires_at < ?",
                    (self.charger, now - KEEP_DONE),
                )
            ]
        )


def command_id_of(topic: str, payload: bytes) -> str:
    """The command id of a malformed command: its own if valid, else derived from the bytes."""
    try:
        doc = orjson.loads(payload)
        if isinstance(doc, dict) and isinstance(doc.get("CommandId"), str):
            return check_command_id(doc["CommandId"])
    except (orjson.JSONDecodeError, ContractError):
        pass
    return derived_command_id(topic, payload)


def result_entry(charger: str, command: Command, payload: bytes, now: datetime) -> Entry:
    """The outbox row of a command's result: QoS 1, not retained."""
    topic = result_topic(charger, command)
    return Entry(charger, topic, payload, now.timestamp(), retain=False)
