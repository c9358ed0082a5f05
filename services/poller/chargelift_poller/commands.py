"""Commands to a charger: one :class:`Commander` per charger applies them through its driver.

A command arrives on ``chargers/{charger}/set/{Command}`` (the contract's
:mod:`chargelift_contract.commands`); its result leaves on
``chargers/{charger}/result/{Command}`` (QoS 1, not retained) through the durable outbox,
like the readings. What happens to a command:

* **Stored before acknowledged.** :meth:`Commander.receive` (the MQTT handler; the
  PUBACK is sent when it returns) stores the command as ``received`` in the outbox's
  SQLite file, or finishes it at once: malformed (``rejected`` with the reason; the id
  derived from the bytes if it has none), expired (``expired``, never applied), out of
  range or for a charger whose last poll failed (``rejected``, the charger untouched).
* **At most once.** A command id seen before is never applied again: its earlier
  result is re-sent if it is done, nothing happens if it is still under way. The ids
  are kept (``commands`` table, :mod:`chargelift_edge.commands`: the store the OCPP
  gateway shares) until a day after the command expired
  (:data:`KEEP_DONE`; a command expires at most a day after it was issued).
* **Stage before action.** Each command's stage is committed before the step it
  names: ``received`` -> ``applying`` (then the write) -> ``done`` (outcome and result
  row in one transaction). After a crash (``kill -9``) a command found ``applying`` is
  never written again: the charger is read back and the command reported ``applied`` if
  the charger shows it, else ``failed`` ("interrupted by a restart"). One found
  ``received`` is applied if it has not expired meanwhile, else ``expired``.
* **Confirmed.** After a write the charger is read back (the driver's full read) and
  the command is ``applied`` only if the reading shows it
  (:meth:`~chargelift_poller.drivers.base.Controller.shows`); else ``failed`` with what
  the charger shows, or with the error of the write or the read.
* **Coalesced and paced.** Of the CurrentLimit commands waiting, only the newest
  received is applied; each older one is ``rejected`` ("superseded by <id>"). The
  charger is written at most once per ``min_write_interval`` (commands wait, in
  order), and never while it is being polled (the coordinator's device lock).
* **Lease.** A CurrentLimit with ``ValidFor`` holds until ``applied + ValidFor``; a new
  CurrentLimit before then replaces it (with its own lease, or none). When a lease
  ends the charger is set back to ``default_current`` and a ``reverted`` result is
  published for the lease's command. The limit in force and its lease are stored
  (``control`` table), so a restart keeps (and, if it ended meanwhile, reverts) them;
  they are published as the fields ``CurrentLimit`` and ``CurrentLimitLeaseEnd``.

The range of a limit: ``min_current`` (default 6 A) to ``max_current`` of the chargers
file, or, when that is not set, the charger's own maximum as its driver reads it (MHCP
``MaxCurrWb``); with neither known a limit is rejected ("maximum unknown").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from chargelift_contract.commands import (
    DEFAULT_EXPIRY,
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
)
from chargelift_edge.commands import dt as _dt
from chargelift_edge.commands import ts as _ts
from chargelift_edge.outbox import Entry, Outbox, Statement
from chargelift_poller.config import ControlConfig
from chargelift_poller.drivers.base import ACTIONS, Controller, Driver
from chargelift_poller.errors import ChargerError, ChargerTimeoutError, DriverFaultError
from chargelift_poller.metrics import PollerMetrics
from chargelift_poller.models import ChargerReading
from chargelift_runtime.mqtt import Message

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Commands waiting per charger; beyond that a new one is rejected.
MAX_OPEN = 1000
#: How often a command waiting for a charger's first poll looks again (s).
TICK = 0.5
#: How often done commands past :data:`KEEP_DONE` are deleted (s).
PRUNE_EVERY = 3600.0
#: Shortest pause between two attempts to revert a lease that failed (s).
REVERT_RETRY = 2.0


class Device:
    """What a commander needs of its charger's coordinator."""

    def __init__(
        self,
        lock: asyncio.Lock,
        up: Callable[[], bool | None],
        timeout: float,
    ) -> None:
        self.lock = lock
        self.up = up  # True: last poll succeeded; False: it failed; None: not polled yet
        self.timeout = timeout


class Commander:
    """Applies one charger's commands (module docstring)."""

    def __init__(
        self,
        charger_id: str,
        driver: Driver,
        control: ControlConfig,
        outbox: Outbox,
        device: Device,
        metrics: PollerMetrics,
        *,
        clock: Clock,
        driver_name: str | None = None,
    ) -> None:
        self.charger_id = charger_id
        self._driver = driver
        self._driver_name = "the driver" if driver_name is None else f"the {driver_name} driver"
        self._controller = driver if isinstance(driver, Controller) else None
        self._control = control
        self._outbox = outbox
        self._store = CommandStore(outbox, charger_id)
        self._device = device
        self._metrics = metrics
        self._clock = clock
        self._wake = asyncio.Event()
        self._last_write: float | None = None  # monotonic
        self._lease = self._store.lease()
        self._open = True  # commands may wait in the store (after a restart): look
        self._pruned_at = 0.0
        self._m_writes = metrics.charger_writes.labels(charger_id)

    # -- what the coordinator publishes -------------------------------------------

    def values(self) -> Mapping[str, Value]:
        """``CurrentLimit`` and ``CurrentLimitLeaseEnd`` now (null when none)."""
        lease = self._lease
        if lease is None:
            return {"CurrentLimit": None, "CurrentLimitLeaseEnd": None}
        end = None if lease.lease_end is None else format_time(lease.lease_end)
        return {"CurrentLimit": lease.value, "CurrentLimitLeaseEnd": end}

    @property
    def lease(self) -> Lease | None:
        return self._lease

    # -- receiving (the MQTT handler) ------------------------------------------------

    async def receive(self, message: Message) -> None:
        """Store or finish one command; returns when that is durable (then the PUBACK)."""
        now = self._clock.now()
        try:
            msg = parse_command(message.topic, message.payload, received_at=now)
        except ContractError as exc:
            self._malformed(message, str(exc), now)
            return
        if msg.charger != self.charger_id:  # the router gives each commander its own
            return
        known = self._store.get(msg.command_id)
        if known is not None:
            self._metrics.commands.labels(msg.command.value, "duplicate").inc()
            if known.result is not None:  # done: say again what became of it
                self._outbox.append([self._entry(msg.command, known.result, now)])
            log.info(
                "charger %s: command %s seen before (%s): not applied again",
                self.charger_id, msg.command_id, known.stage,
            )  # fmt: skip
            return
        refusal = self._refusal(msg, now)
        if refusal is not None:
            outcome, reason = refusal
            self._finish(msg, outcome, reason, now, new=True)
            return
        if self._store.open_count() >= MAX_OPEN:
            reason = f"too many commands waiting for this charger (at most {MAX_OPEN})"
            self._finish(msg, Outcome.REJECTED, reason, now, new=True)
            return
        self._outbox.execute([self._store.insert(msg, RECEIVED, _ts(now))])
        self._open = True
        self._wake.set()

    def _malformed(self, message: Message, reason: str, now: datetime) -> None:
        try:
            topic = parse_command_topic(message.topic)
        except ContractError:
            self._metrics.commands.labels("unknown", Outcome.REJECTED.value).inc()
            log.warning(
                "charger %s: a command on an unknown topic was ignored: %s",
                self.charger_id, reason[:200],
            )  # fmt: skip
            return
        if topic.charger != self.charger_id:
            return
        cid = command_id_of(message.topic, message.payload)
        known = self._store.get(cid)
        if known is not None:
            # The id is known: the command it names keeps its one outcome (re-sent).
            self._metrics.commands.labels(topic.command.value, "duplicate").inc()
            if known.result is not None:
                self._outbox.append([self._entry(topic.command, known.result, now)])
            return
        # Stored like any other, so that the same bytes again get the same answer.
        msg = CommandMessage(self.charger_id, topic.command, None, cid, now, now + DEFAULT_EXPIRY)
        self._finish(msg, Outcome.REJECTED, reason, now, new=True)

    def _refusal(self, msg: CommandMessage, now: datetime) -> tuple[Outcome, str] | None:
        """Why ``msg`` cannot be applied (outcome, reason), or ``None``."""
        if msg.expired(now):
            return Outcome.EXPIRED, f"expired at {format_time(msg.expires_at)}"
        if self._controller is None:
            return Outcome.REJECTED, "the driver cannot control this charger"
        if msg.command not in self._controller.commands:
            return Outcome.REJECTED, f"{self._driver_name} cannot {ACTIONS[msg.command]}"
        if self._device.up() is False:
            return Outcome.REJECTED, "charger offline"
        if msg.command is Command.CURRENT_LIMIT:
            assert msg.value is not None
            return self._out_of_range(msg.value)
        return None

    def _maximum(self) -> float | None:
        if self._control.max_current is not None:
            return self._control.max_current
        return None if self._controller is None else self._controller.hardware_max_current

    def _out_of_range(self, value: float) -> tuple[Outcome, str] | None:
        low = self._control.min_current
        if value < low:
            return Outcome.REJECTED, f"{value:g} A is below the charger's minimum of {low:g} A"
        high = self._maximum()
        if high is None:
            if self._device.up() is None:
                return None  # not read yet: checked again before it is applied
            return Outcome.REJECTED, "the charger's maximum is unknown: set max_current"
        if value > high:
            return Outcome.REJECTED, f"{value:g} A is above the charger's maximum of {high:g} A"
        return None

    # -- results ---------------------------------------------------------------------

    def _entry(self, command: Command, payload: bytes, now: datetime) -> Entry:
        return result_entry(self.charger_id, command, payload, now)

    def _finish(
        self,
        msg: CommandMessage,
        outcome: Outcome,
        reason: str,
        now: datetime,
        *,
        new: bool = False,
        lease: Lease | bool | None = False,
        also: Sequence[Statement] = (),
    ) -> None:
        """Commit ``msg``'s outcome, its result row (and a new lease) in one transaction.

        ``lease``: ``False`` leaves the control state alone; a :class:`Lease` or ``None``
        replaces it.
        """
        in_force = self._lease if lease is False else lease
        value = in_force.value if isinstance(in_force, Lease) else None
        lease_end = in_force.lease_end if isinstance(in_force, Lease) else None
        result = CommandResult(
            msg.command_id,
            outcome,
            reason,
            now,
            value=value if msg.command is Command.CURRENT_LIMIT else None,
            lease_end=lease_end if msg.command is Command.CURRENT_LIMIT else None,
        )
        payload = encode_result(result)
        stamp = _ts(now)
        statements = list(also)
        if new:
            statements.append(self._store.insert(msg, DONE, stamp))
        statements.append(self._store.done(msg.command_id, outcome, payload, stamp))
        if lease is not False:
            assert lease is None or isinstance(lease, Lease)
            statements.append(self._store.set_lease(lease))
        self._outbox.append([self._entry(msg.command, payload, now)], also=statements)
        if lease is not False:
            assert lease is None or isinstance(lease, Lease)
            self._lease = lease
        self._metrics.commands.labels(msg.command.value, outcome.value).inc()
        level = logging.INFO if outcome in (Outcome.APPLIED, Outcome.REVERTED) else logging.WARNING
        log.log(
            level, "charger %s: %s %s: %s (%s)",
            self.charger_id, msg.command.value, msg.command_id, outcome.value, reason[:200],
        )  # fmt: skip

    # -- the worker ------------------------------------------------------------------

    async def run(self) -> None:
        """Apply commands and keep the lease, for the life of the process."""
        await self._recover()
        while True:
            await self._next_work()
            await self._pace()
            now = self._clock.now()
            pending = self._settle(now)
            if pending is not None:
                await self._apply(pending)
                continue
            if self._lease_due(now):
                await self._revert()

    async def _next_work(self) -> None:
        """Return when a command waits or the lease ends.

        Idle, it sleeps until ``receive`` wakes it or the lease ends (at most
        :data:`PRUNE_EVERY`): no timer per charger ticks while nothing happens.
        """
        while True:
            now = self._clock.now()
            if self._open or self._lease_due(now):
                return
            wall = time.time()
            if wall - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = wall
                self._store.prune(wall)
            timeout = PRUNE_EVERY
            lease = self._lease
            if lease is not None and lease.lease_end is not None:
                timeout = min(timeout, (lease.lease_end - now).total_seconds() + 0.01)
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _lease_due(self, now: datetime) -> bool:
        lease = self._lease
        return lease is not None and lease.lease_end is not None and now >= lease.lease_end

    async def _pace(self) -> None:
        if self._last_write is None:
            return
        wait = self._last_write + self._control.min_write_interval - self._clock.monotonic()
        if wait > 0:
            await self._clock.sleep(wait)

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
        if first is None:
            self._open = False  # all settled; receive() says when another one waits
        return first

    async def _apply(self, stored: Stored) -> None:
        msg = stored.message
        while self._device.up() is None:  # not polled yet (start-up): wait for it
            if msg.expired(self._clock.now()):
                break
            await self._clock.sleep(TICK)
        now = self._clock.now()
        refusal = self._refusal(msg, now)
        if refusal is not None:
            self._finish(msg, refusal[0], refusal[1], now)
            return
        controller = self._controller
        assert controller is not None
        self._outbox.execute([self._store.stage(msg.command_id, APPLYING, _ts(now))])
        try:
            async with self._device.lock:
                try:
                    await self._write(controller, msg.command, msg.value)
                finally:
                    self._wrote()
                reading = await self._read()
        except ChargerError as exc:
            self._finish(msg, Outcome.FAILED, str(exc), self._clock.now())
            return
        done = self._clock.now()
        shown = controller.shows(reading, msg.command, msg.value)
        if shown is not None:
            self._finish(msg, Outcome.FAILED, shown, done)
            return
        if msg.command is Command.CURRENT_LIMIT:
            assert msg.value is not None
            self._finish(msg, Outcome.APPLIED, "confirmed", done, lease=self._new_lease(msg, done))
        else:
            self._finish(msg, Outcome.APPLIED, "confirmed", done)

    @staticmethod
    def _new_lease(msg: CommandMessage, applied: datetime) -> Lease:
        assert msg.value is not None
        end = None if msg.valid_for is None else _dt(_ts(applied) + msg.valid_for)
        return Lease(msg.command_id, msg.value, end)

    async def _write(self, controller: Controller, command: Command, value: float | None) -> None:
        self._m_writes.inc()
        await self._guarded("write", self._call(controller, command, value))

    async def _guarded(self, what: str, call: Awaitable[_T]) -> _T:
        """``call`` within the device timeout; every failure as a :class:`ChargerError`."""
        try:
            async with asyncio.timeout(self._device.timeout):
                return await call
        except TimeoutError:
            raise ChargerTimeoutError(
                self.charger_id, f"{what}: no answer within {self._device.timeout:g} s"
            ) from None
        except ChargerError:
            raise
        except Exception as exc:  # a bug met by an odd answer: only this command fails
            log.exception("charger %s: unexpected error (%s)", self.charger_id, what)
            raise DriverFaultError(
                self.charger_id, f"{what}: unexpected {type(exc).__name__} in the driver (a bug)"
            ) from None

    async def _call(self, controller: Controller, command: Command, value: float | None) -> None:
        match command:
            case Command.CURRENT_LIMIT:
                assert value is not None
                await controller.set_current_limit(value, permanent=self._control.permanent_writes)
            case Command.PAUSE:
                await controller.pause()
            case Command.RESUME:
                await controller.resume()
            case Command.STOP:
                await controller.stop()
            case Command.START:
                await controller.start()
            case Command.OPERATIVE:
                await controller.set_operative(True)
            case Command.INOPERATIVE:
                await controller.set_operative(False)

    async def _read(self) -> ChargerReading:
        return await self._guarded("read back", self._driver.read(full=True))

    def _wrote(self) -> None:
        self._last_write = self._clock.monotonic()

    def _retry_later(self) -> None:
        """The next write (a revert's retry) waits at least :data:`REVERT_RETRY`."""
        extra = max(0.0, REVERT_RETRY - self._control.min_write_interval)
        self._last_write = self._clock.monotonic() + extra

    async def _revert(self) -> None:
        lease = self._lease
        assert lease is not None
        controller = self._controller
        default = self._control.default_current or self._maximum()
        if controller is None or default is None:
            why = "no default_current and the charger's maximum is unknown"
            log.warning("charger %s: cannot revert the lease: %s", self.charger_id, why)
            self._retry_later()
            return
        try:
            async with self._device.lock:
                try:
                    await self._write(controller, Command.CURRENT_LIMIT, default)
                finally:
                    self._retry_later()  # undone below if it is confirmed
                reading = await self._read()
        except ChargerError as exc:
            log.warning(
                "charger %s: the lease of %s ended; reverting to %g A failed (%s); retrying",
                self.charger_id, lease.command_id, default, exc,
            )  # fmt: skip
            return
        shown = controller.shows(reading, Command.CURRENT_LIMIT, default)
        if shown is not None:
            log.warning(
                "charger %s: reverting to %g A not confirmed (%s); retrying",
                self.charger_id, default, shown,
            )  # fmt: skip
            return
        self._last_write = self._clock.monotonic()
        now = self._clock.now()
        result = CommandResult(
            lease.command_id,
            Outcome.REVERTED,
            f"the lease ended: back to the default of {default:g} A",
            now,
            value=default,
        )
        payload = encode_result(result)
        self._outbox.append(
            [self._entry(Command.CURRENT_LIMIT, payload, now)],
            also=[self._store.set_lease(None)],
        )
        self._lease = None
        self._metrics.commands.labels(Command.CURRENT_LIMIT.value, Outcome.REVERTED.value).inc()
        log.info(
            "charger %s: the lease of %s ended: back to %g A", self.charger_id, lease.command_id,
            default,
        )  # fmt: skip

    # -- after a restart ---------------------------------------------------------------

    async def _recover(self) -> None:
        """Settle the commands a crash left ``applying`` (module docstring)."""
        for stored in self._store.open():
            if stored.stage != APPLYING:
                continue
            msg = stored.message
            controller = self._controller
            reason = "interrupted by a restart"
            shown: str | None = reason
            if controller is not None:
                try:
                    async with self._device.lock:
                        reading = await self._read()
                    shown = controller.shows(reading, msg.command, msg.value)
                except ChargerError as exc:
                    reason = f"interrupted by a restart; the charger cannot be read back: {exc}"
            now = self._clock.now()
            if shown is None:
                lease = self._new_lease(msg, now) if msg.command is Command.CURRENT_LIMIT else False
                self._finish(msg, Outcome.APPLIED, "confirmed after a restart", now, lease=lease)
            else:
                self._finish(msg, Outcome.FAILED, reason, now)
