"""Commands to OCPP chargers: the contract's commands applied as OCPP 1.6 calls.

A controller's command on ``chargers/{charger}/set/{Command}`` reaches the gateway's
edge connection (persistent session, acknowledged by hand); :class:`Control` hands it
to the charger's :class:`OcppCommander`, which applies it on the charge point's
connection and reports the result on ``chargers/{charger}/result/{Command}`` through
the outbox (QoS 1, not retained), exactly like the poller:

* **The store is shared, the applying is not.** The command store (the outbox file's
  ``commands`` and ``control`` tables, at most once per command id across restarts,
  the result rows) is :mod:`chargelift_edge.commands`, used by the poller too. The
  poller's ``Commander`` is not reused as a whole: it writes through a driver, paces
  the writes, takes the poll's device lock and confirms by reading the charger back;
  an OCPP charge point confirms a call with its answer, is only reachable while
  connected, and drops a leased profile by itself. What is written again here is the
  small part that differs (waiting for the connection, the calls, the answers).
* **Stored before acknowledged**, or finished at once: malformed -> ``rejected``;
  expired -> ``expired`` (never sent); out of range -> ``rejected``. A command id seen
  before is not applied again (its result is re-sent when it is done).
* **Connected.** A command waits while its charge point is not connected, until it
  connects or the command expires (``expired``, never sent).
* **Stage before action.** ``received`` -> ``applying`` (committed before the call) ->
  ``done``. A command found ``applying`` after a restart is never sent again: it is
  ``failed`` ("interrupted by a restart").
* **Answered.** ``Accepted`` -> ``applied``; ``Rejected`` -> ``rejected``;
  ``NotSupported``, a CALLERROR, no answer within ``OCPP_RESPONSE_TIMEOUT`` or a lost
  connection -> ``failed``. ChangeAvailability's ``Scheduled`` (a transaction runs; the
  change takes effect when it ends) -> ``applied``, the reason says so.
* **Coalesced.** Of the CurrentLimit commands waiting, only the newest is applied;
  each older one is ``rejected`` ("superseded by <id>").
* **Lease.** A CurrentLimit with ``ValidFor`` is sent with ``validTo`` = now +
  ValidFor: the charge point drops the profile by itself then. The limit in force and
  its end are stored (``control``), so after a restart the gateway still reports the
  lease's ``reverted`` result when it ends and publishes ``CurrentLimit`` null.

The OCPP calls (``TxDefaultProfile`` charging profiles on the charger's connector):

==============  ==========================================================
CurrentLimit    SetChargingProfile :data:`PROFILE_ID` (stack level 0), the limit in A
                (0.1 A steps), ``validTo`` for a lease
Pause           SetChargingProfile :data:`PAUSE_PROFILE_ID` (stack level 1), 0 A, no
                ``validTo``: above the limit, which stays as it is (and its lease runs)
Resume          ClearChargingProfile :data:`PAUSE_PROFILE_ID`: the limit beneath rules again
Stop            RemoteStopTransaction of the transaction running on the connector
Start           RemoteStartTransaction on the connector with the gateway's id tag
                (``OCPP_REMOTE_ID_TAG``); Accepted: the charge point starts the
                transaction (once a vehicle is plugged in and it has authorised)
Operative       ChangeAvailability ``Operative`` of the connector
Inoperative     ChangeAvailability ``Inoperative`` of the connector (``Scheduled``
                while a transaction runs: it may finish)
==============  ==========================================================

Two profiles rather than one: a pause replacing the limit's profile would lose the
lease's ``validTo`` and a resume would have to rebuild it; OCPP applies the profile of
the highest stack level, and a profile with the same purpose and stack level (or id)
replaces the old one, so each command replaces only its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call
from ocpp.v16.enums import AvailabilityType

from chargelift_contract import Envelope, encode, field_topic
from chargelift_contract.commands import (
    DEFAULT_EXPIRY,
    MAX_CURRENT_A,
    Command,
    CommandMessage,
    CommandResult,
    Outcome,
    encode_result,
    parse_command,
    parse_command_topic,
)
from chargelift_contract.envelope import Value, format_time
from chargelift_contract.errors import ContractError
from chargelift_edge.clock import Clock
from chargelift_edge.commands import (
    APPLYING,
    DONE,
    RECEIVED,
    CommandStore,
    Lease,
    Stored,
    command_id_of,
    result_entry,
    ts,
)
from chargelift_edge.outbox import Entry, Outbox, Statement
from chargelift_ocpp.mapping import CONNECTOR_SEPARATOR
from chargelift_ocpp.metrics import OcppMetrics
from chargelift_ocpp.transactions import TransactionStore
from chargelift_runtime.mqtt import Message

log = logging.getLogger(__name__)

#: The gateway's charging profile of a CurrentLimit (one per connector, replaced by
#: each CurrentLimit) and its stack level.
PROFILE_ID = 1000
STACK_LEVEL = 0
#: The pause's 0 A profile, one stack level above the limit.
PAUSE_PROFILE_ID = 1001
PAUSE_STACK_LEVEL = 1
#: The lowest current an EV may be asked to charge at (IEC 61851), in A.
MIN_CURRENT_A = 6.0
#: Commands waiting per charger; beyond that a new one is rejected.
MAX_OPEN = 1000
#: How often done commands past the store's ``KEEP_DONE`` are deleted (s).
PRUNE_EVERY = 3600.0

_ACCEPTED = "Accepted"
#: The id tag of a remote start when none is configured (``OCPP_REMOTE_ID_TAG``).
DEFAULT_REMOTE_ID_TAG = "chargelift"


def charge_point_of(charger: str) -> str:
    """The charge point whose connector ``charger`` is (``cp`` for ``cp`` and ``cp__2``)."""
    return charger.split(CONNECTOR_SEPARATOR, 1)[0]


def connector_of(charger: str) -> int:
    """The connector id of a charger id (``cp`` -> 1, ``cp__2`` -> 2)."""
    _, sep, n = charger.partition(CONNECTOR_SEPARATOR)
    return int(n) if sep and n.isdigit() else 1


class OcppCommander:
    """Applies one charger's commands over its charge point's connection (module doc)."""

    def __init__(
        self,
        charger_id: str,
        outbox: Outbox,
        control: Control,
        metrics: OcppMetrics,
        *,
        clock: Clock,
        max_current: float | None = None,
        remote_id_tag: str = DEFAULT_REMOTE_ID_TAG,
    ) -> None:
        self.charger_id = charger_id
        self.charge_point = charge_point_of(charger_id)
        self._remote_id_tag = remote_id_tag
        self.connector = connector_of(charger_id)
        self._outbox = outbox
        self._control = control
        self._store = CommandStore(outbox, charger_id)
        self._metrics = metrics
        self._clock = clock
        self._max = MAX_CURRENT_A if max_current is None else max_current
        self._wake = asyncio.Event()
        self._lease = self._store.lease()
        self._open = True  # commands may wait in the store (after a restart): look
        self._pruned_at = 0.0

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def wake(self) -> None:
        self._open = True
        self._wake.set()

    # -- receiving (the MQTT handler) --------------------------------------------------

    async def receive(self, message: Message) -> None:
        """Store or finish one command; returns when that is durable (then the PUBACK)."""
        now = self._clock.now()
        try:
            msg = parse_command(message.topic, message.payload, received_at=now)
        except ContractError as exc:
            self._malformed(message, str(exc), now)
            return
        if msg.charger != self.charger_id:
            return
        if self._seen(msg.command, msg.command_id, now):
            return
        refusal = self._refusal(msg, now)
        if refusal is not None:
            self._finish(msg, refusal[0], refusal[1], now, new=True)
            return
        if self._store.open_count() >= MAX_OPEN:
            reason = f"too many commands waiting for this charger (at most {MAX_OPEN})"
            self._finish(msg, Outcome.REJECTED, reason, now, new=True)
            return
        self._outbox.execute([self._store.insert(msg, RECEIVED, ts(now))])
        self.wake()

    def _seen(self, command: Command, command_id: str, now: datetime) -> bool:
        """True if ``command_id`` is known: its earlier result (if done) is sent again."""
        known = self._store.get(command_id)
        if known is None:
            return False
        self._metrics.commands.labels(command.value, "duplicate").inc()
        if known.result is not None:
            self._outbox.append([result_entry(self.charger_id, command, known.result, now)])
        log.info(
            "charger %s: command %s seen before (%s): not applied again",
            self.charger_id, command_id, known.stage,
        )  # fmt: skip
        return True

    def _malformed(self, message: Message, reason: str, now: datetime) -> None:
        try:
            topic = parse_command_topic(message.topic)
        except ContractError:
            self._metrics.commands.labels("unknown", Outcome.REJECTED.value).inc()
            return
        if topic.charger != self.charger_id:
            return
        cid = command_id_of(message.topic, message.payload)
        if self._seen(topic.command, cid, now):
            return
        msg = CommandMessage(self.charger_id, topic.command, None, cid, now, now + DEFAULT_EXPIRY)
        self._finish(msg, Outcome.REJECTED, reason, now, new=True)

    def _refusal(self, msg: CommandMessage, now: datetime) -> tuple[Outcome, str] | None:
        if msg.expired(now):
            return Outcome.EXPIRED, f"expired at {format_time(msg.expires_at)}"
        if msg.command is Command.CURRENT_LIMIT:
            assert msg.value is not None
            if msg.value < MIN_CURRENT_A:
                return (
                    Outcome.REJECTED,
                    f"{msg.value:g} A is below the minimum of {MIN_CURRENT_A:g} A",
                )
            if msg.value > self._max:
                return Outcome.REJECTED, f"{msg.value:g} A is above the maximum of {self._max:g} A"
        return None

    # -- results -------------------------------------------------------------------------

    def _state(self, lease: Lease | None, now: datetime) -> list[Entry]:
        """The fields ``CurrentLimit`` and ``CurrentLimitLeaseEnd`` (retained readings)."""
        values: Mapping[str, Value] = {
            "CurrentLimit": None if lease is None else lease.value,
            "CurrentLimitLeaseEnd": (
                None if lease is None or lease.lease_end is None else format_time(lease.lease_end)
            ),
        }
        return [
            Entry(
                self.charger_id,
                field_topic(self.charger_id, name),
                encode(Envelope(now, value)),
                now.timestamp(),
            )
            for name, value in values.items()
        ]

    def _finish(
        self,
        msg: CommandMessage,
        outcome: Outcome,
        reason: str,
        now: datetime,
        *,
        new: bool = False,
        lease: Lease | bool | None = False,
    ) -> None:
        """Commit ``msg``'s outcome, its result row (and a new lease and its state
        readings) in one transaction. ``lease``: ``False`` leaves it alone."""
        in_force = self._lease if lease is False else lease
        limit = msg.command is Command.CURRENT_LIMIT and isinstance(in_force, Lease)
        result = CommandResult(
            msg.command_id,
            outcome,
            reason,
            now,
            value=in_force.value if limit and isinstance(in_force, Lease) else None,
            lease_end=in_force.lease_end if limit and isinstance(in_force, Lease) else None,
        )
        payload = encode_result(result)
        stamp = ts(now)
        statements: list[Statement] = []
        if new:
            statements.append(self._store.insert(msg, DONE, stamp))
        statements.append(self._store.done(msg.command_id, outcome, payload, stamp))
        entries = [result_entry(self.charger_id, msg.command, payload, now)]
        if lease is not False:
            assert lease is None or isinstance(lease, Lease)
            statements.append(self._store.set_lease(lease))
            entries += self._state(lease, now)
        self._outbox.append(entries, also=statements)
        if lease is not False:
            assert lease is None or isinstance(lease, Lease)
            self._lease = lease
        self._metrics.commands.labels(msg.command.value, outcome.value).inc()
        level = logging.INFO if outcome is Outcome.APPLIED else logging.WARNING
        log.log(
            level, "charger %s: %s %s: %s (%s)",
            self.charger_id, msg.command.value, msg.command_id, outcome.value, reason[:200],
        )  # fmt: skip

    # -- the worker ----------------------------------------------------------------------

    async def run(self) -> None:
        """Apply commands and report leases that end, for the life of the process."""
        self._recover()
        while True:
            await self._next_work()
            now = self._clock.now()
            pending = self._settle(now)
            if pending is not None and self._control.connection(self.charge_point) is not None:
                await self._apply(pending)
                continue
            if self._lease_due(now):
                self._revert(now)

    def _lease_due(self, now: datetime) -> bool:
        lease = self._lease
        return lease is not None and lease.lease_end is not None and now >= lease.lease_end

    async def _next_work(self) -> None:
        """Return when a command can be applied, one expires, or the lease ends."""
        while True:
            now = self._clock.now()
            if self._lease_due(now):
                return
            timeout = PRUNE_EVERY
            if self._open:
                waiting = [s for s in self._store.open() if s.stage == RECEIVED]
                if not waiting:
                    self._open = False
                elif self._control.connection(self.charge_point) is not None:
                    return
                else:  # not connected: wake up when the first one expires
                    first = min(s.message.expires_at for s in waiting)
                    if now >= first:
                        return
                    timeout = min(timeout, (first - now).total_seconds() + 0.01)
            wall = time.time()
            if wall - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = wall
                self._store.prune(wall)
            lease = self._lease
            if lease is not None and lease.lease_end is not None:
                timeout = min(timeout, (lease.lease_end - now).total_seconds() + 0.01)
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _settle(self, now: datetime) -> Stored | None:
        """Expire and coalesce what waits; return the next command to apply, if any."""
        waiting = [s for s in self._store.open() if s.stage == RECEIVED]
        limits = [s for s in waiting if s.message.command is Command.CURRENT_LIMIT]
        newest = limits[-1].message.command_id if limits else None
        first: Stored | None = None
        for s in waiting:
            msg = s.message
            if msg.expired(now):
                self._finish(msg, Outcome.EXPIRED, f"expired at {format_time(msg.expires_at)}", now)
            elif msg.command is Command.CURRENT_LIMIT and msg.command_id != newest:
                self._finish(msg, Outcome.REJECTED, f"superseded by {newest}", now)
            elif first is None:
                first = s
        return first

    async def _apply(self, stored: Stored) -> None:
        msg = stored.message
        cp = self._control.connection(self.charge_point)
        now = self._clock.now()
        refusal = self._refusal(msg, now)
        if refusal is not None or cp is None:
            outcome, reason = refusal or (Outcome.REJECTED, "charge point not connected")
            self._finish(msg, outcome, reason, now)
            return
        self._outbox.execute([self._store.stage(msg.command_id, APPLYING, ts(now))])
        lease: Lease | bool | None = False
        if msg.command is Command.CURRENT_LIMIT:
            assert msg.value is not None
            value = round(msg.value, 1)
            end = None if msg.valid_for is None else now + timedelta(seconds=msg.valid_for)
            lease = Lease(msg.command_id, value, end)
        try:
            outcome, reason = await self._call(cp, msg, now)
        except TimeoutError:
            outcome, reason = Outcome.FAILED, "the charge point did not answer in time"
        except OCPPError as exc:
            outcome = Outcome.FAILED
            reason = f"the charge point answered {type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:  # a lost connection, an answer that breaks the schema
            log.warning("charger %s: %s failed", self.charger_id, msg.command.value, exc_info=True)
            outcome, reason = Outcome.FAILED, f"{type(exc).__name__} while calling the charge point"
        if outcome is not Outcome.APPLIED:
            lease = False
        self._finish(msg, outcome, reason, self._clock.now(), lease=lease)

    async def _call(self, cp: Any, msg: CommandMessage, now: datetime) -> tuple[Outcome, str]:
        match msg.command:
            case Command.CURRENT_LIMIT:
                assert msg.value is not None
                end = None if msg.valid_for is None else now + timedelta(seconds=msg.valid_for)
                return await self._profile(cp, PROFILE_ID, round(msg.value, 1), end, now)
            case Command.PAUSE:
                return await self._profile(cp, PAUSE_PROFILE_ID, 0.0, None, now)
            case Command.RESUME:
                answer = await cp.call(
                    call.ClearChargingProfile(id=PAUSE_PROFILE_ID, connector_id=self.connector),
                    suppress=False,
                )
                status = str(answer.status)
                if status in (_ACCEPTED, "Unknown"):  # Unknown: not paused, nothing to clear
                    return Outcome.APPLIED, f"ClearChargingProfile of the pause: {status}"
                return Outcome.FAILED, f"ClearChargingProfile of the pause: {status[:40]}"
            case Command.STOP:
                return await self._stop(cp)
            case Command.START:
                return await self._start(cp)
            case Command.OPERATIVE:
                return await self._availability(cp, AvailabilityType.operative)
            case Command.INOPERATIVE:
                return await self._availability(cp, AvailabilityType.inoperative)
        raise AssertionError(msg.command)  # pragma: no cover

    async def _profile(
        self, cp: Any, profile_id: int, limit: float, valid_to: datetime | None, now: datetime
    ) -> tuple[Outcome, str]:
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": STACK_LEVEL if profile_id == PROFILE_ID else PAUSE_STACK_LEVEL,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": format_time(now),
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        }
        if valid_to is not None:
            profile["validTo"] = format_time(valid_to)
        answer = await cp.call(
            call.SetChargingProfile(connector_id=self.connector, cs_charging_profiles=profile),
            suppress=False,
        )
        status = str(answer.status)
        if status == _ACCEPTED:
            return Outcome.APPLIED, f"SetChargingProfile {limit:g} A: Accepted"
        if status == "Rejected":
            return Outcome.REJECTED, f"SetChargingProfile {limit:g} A: Rejected by the charge point"
        return Outcome.FAILED, f"SetChargingProfile: {status[:40]}"

    async def _stop(self, cp: Any) -> tuple[Outcome, str]:
        running = [
            t
            for t in self._control.transactions.running(self.charge_point)
            if t.connector == str(self.connector)
        ]
        if not running:
            return Outcome.REJECTED, "no transaction"
        tx = running[-1].transaction_id
        answer = await cp.call(call.RemoteStopTransaction(transaction_id=tx), suppress=False)
        status = str(answer.status)
        if status == _ACCEPTED:
            return Outcome.APPLIED, f"RemoteStopTransaction {tx}: Accepted"
        return Outcome.REJECTED, f"RemoteStopTransaction {tx}: {status[:40]}"

    async def _start(self, cp: Any) -> tuple[Outcome, str]:
        answer = await cp.call(
            call.RemoteStartTransaction(id_tag=self._remote_id_tag, connector_id=self.connector),
            suppress=False,
        )
        status = str(answer.status)
        if status == _ACCEPTED:
            return (
                Outcome.APPLIED,
                "RemoteStartTransaction: Accepted by the charge point; the transaction starts "
                "when the vehicle is plugged in and the charge point has authorised it",
            )
        if status == "Rejected":
            return Outcome.REJECTED, "RemoteStartTransaction: Rejected by the charge point"
        return Outcome.FAILED, f"RemoteStartTransaction: {status[:40]}"

    async def _availability(self, cp: Any, kind: AvailabilityType) -> tuple[Outcome, str]:
        answer = await cp.call(
            call.ChangeAvailability(connector_id=self.connector, type=kind), suppress=False
        )
        status = str(answer.status)
        what = f"ChangeAvailability {kind.value}"
        if status == _ACCEPTED:
            return Outcome.APPLIED, f"{what}: Accepted"
        if status == "Scheduled":
            return (
                Outcome.APPLIED,
                f"{what}: Scheduled: it takes effect when the running transaction ends",
            )
        if status == "Rejected":
            return Outcome.REJECTED, f"{what}: Rejected by the charge point"
        return Outcome.FAILED, f"{what}: {status[:40]}"

    def _revert(self, now: datetime) -> None:
        """The lease ended: the charge point dropped the profile at its ``validTo``."""
        lease = self._lease
        assert lease is not None
        result = CommandResult(
            lease.command_id,
            Outcome.REVERTED,
            "the lease ended: the charge point dropped the profile at its validTo",
            now,
        )
        payload = encode_result(result)
        entries = [result_entry(self.charger_id, Command.CURRENT_LIMIT, payload, now)]
        self._outbox.append(entries + self._state(None, now), also=[self._store.set_lease(None)])
        self._lease = None
        self._metrics.commands.labels(Command.CURRENT_LIMIT.value, Outcome.REVERTED.value).inc()
        log.info("charger %s: the lease of %s ended", self.charger_id, lease.command_id)

    def _recover(self) -> None:
        """A command found ``applying`` after a restart is never sent again."""
        for stored in self._store.open():
            if stored.stage == APPLYING:
                now = self._clock.now()
                self._finish(stored.message, Outcome.FAILED, "interrupted by a restart", now)


class Control:
    """The gateway's commanders, one per listed charger, and the live connections.

    ``receive`` is the edge connection's message handler (manual acknowledgement);
    the service calls ``attach``/``detach`` as charge points connect and go.
    """

    def __init__(
        self,
        chargers: Iterable[str],
        outbox: Outbox,
        transactions: TransactionStore,
        metrics: OcppMetrics,
        *,
        clock: Clock,
        max_current: float | None = None,
        remote_id_tag: str = DEFAULT_REMOTE_ID_TAG,
    ) -> None:
        self.transactions = transactions
        self._live: dict[str, Any] = {}
        self.commanders = {
            c: OcppCommander(
                c,
                outbox,
                self,
                metrics,
                clock=clock,
                max_current=max_current,
                remote_id_tag=remote_id_tag,
            )
            for c in sorted(chargers)
        }

    def connection(self, charge_point: str) -> Any | None:
        return self._live.get(charge_point)

    def attach(self, charge_point: str, connection: Any) -> None:
        self._live[charge_point] = connection
        for c in self._of(charge_point):
            c.wake()

    def detach(self, charge_point: str, connection: Any) -> None:
        if self._live.get(charge_point) is connection:
            del self._live[charge_point]

    def _of(self, charge_point: str) -> Sequence[OcppCommander]:
        return [c for c in self.commanders.values() if c.charge_point == charge_point]

    async def receive(self, message: Message) -> None:
        try:
            charger = parse_command_topic(message.topic).charger
        except ContractError:
            log.warning("a message on an unexpected topic was ignored: %r", message.topic[:200])
            return
        commander = self.commanders.get(charger)
        if commander is None:
            log.warning("a command for charger %s, not served here, was ignored", charger)
            return
        await commander.receive(message)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for c in self.commanders.values():
                tg.create_task(c.run(), name=f"commands:{c.charger_id}")


__all__ = [
    "DEFAULT_REMOTE_ID_TAG",
    "PAUSE_PROFILE_ID",
    "PROFILE_ID",
    "Control",
    "OcppCommander",
    "charge_point_of",
    "connector_of",
]
