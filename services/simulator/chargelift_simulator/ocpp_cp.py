"""One simulated OCPP 1.6J charge point: the physical model of :mod:`.model` behind a WebSocket.

A :class:`SimChargePoint` owns a :class:`~.model.ChargerModel` (one connector), a lifetime
energy register and an ordered outbox of messages to the central system. The fleet's ticker
calls :meth:`SimChargePoint.observe` after every model step; it turns what changed into
messages (StatusNotification, Authorize, StartTransaction, MeterValues, StopTransaction),
each stamped with the charge point's own clock at that instant. One task per charge point
(:meth:`SimChargePoint.run`) connects, boots, sends the outbox in order and heartbeats; a
second one reads the connection while it is open (the ``ocpp`` library's ``start()``).

Offline, like a real charger: transaction messages (StartTransaction, MeterValues of a
transaction, StopTransaction) stay in the outbox with their own timestamps and are replayed
in order after the reconnect; a transaction started offline has a provisional (negative)
local id until the central system answers its StartTransaction, and every later message of
that transaction carries the id the central system returned. Other messages (status, meter
values outside a transaction, Authorize) are dropped while offline: the status is sent
afresh after every (re)connect.

Faults (:class:`OcppFaults`, switchable at run time) and one-shot fault methods:
:meth:`SimChargePoint.disconnect`, :meth:`SimChargePoint.duplicate_next`,
:meth:`SimChargePoint.drop_register_next`, :meth:`SimChargePoint.send_schema_violation`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import math
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from uuid import uuid4

import orjson
from ocpp.messages import Call, MessageType, unpack
from ocpp.routing import after as _after
from ocpp.routing import on as _on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from chargelift_simulator.model import (
    VOLTAGE_V,
    ChargerModel,
    ChgState,
    Command,
    PauseReason,
)

log = logging.getLogger(__name__)

VENDOR = "chargelift"
MODEL = "sim-ocpp"
FIRMWARE = "sim-1.0"
#: OCPP 1.6 idTag is a CiString20.
ID_TAG_MAX = 20
#: Heartbeat interval before the central system says otherwise (and when it says 0).
DEFAULT_HEARTBEAT_S = 60.0
#: Largest frame accepted from the central system.
MAX_FRAME = 256 * 1024
#: Schema violations :meth:`SimChargePoint.send_schema_violation` can send.
VIOLATIONS = ("value_not_string", "missing_field")
#: Actions whose messages are kept and replayed while offline.
TX_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})

Payload = dict[str, Any]

_F = TypeVar("_F", bound=Callable[..., Any])


def on(action: str) -> Callable[[_F], _F]:
    """``ocpp.routing.on`` with a type (the library has none)."""
    return cast(Callable[[_F], _F], _on(action))


def after(action: str) -> Callable[[_F], _F]:
    """``ocpp.routing.after`` with a type."""
    return cast(Callable[[_F], _F], _after(action))


def basic_token(cp_id: str, password: str) -> str:
    """The credentials of an HTTP Basic ``Authorization`` header (RFC 7617)."""
    return base64.b64encode(f"{cp_id}:{password}".encode()).decode()


#: The longest Retry-After honoured (s); a longer one is waited for this long.
MAX_RETRY_AFTER_S = 600.0


def retry_after(error: BaseException) -> float | None:
    """The seconds of a 503 answer's ``Retry-After`` (delta-seconds), None otherwise."""
    if not isinstance(error, InvalidStatus) or error.response.status_code != 503:
        return None
    value = error.response.headers.get("Retry-After", "").strip()
    if not value.isdigit() or len(value) > 6:
        return None
    return min(float(value), MAX_RETRY_AFTER_S)


def ocpp_time(ts: float) -> str:
    """Unix seconds as an OCPP timestamp (RFC 3339, UTC, milliseconds, ``Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(value: object) -> float | None:
    """An OCPP timestamp from the central system as Unix seconds; None if unusable."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(slots=True)
class OcppFaults:
    """Faults in force on one charge point; every field may be changed at run time.

    * ``clock_skew_s``: added to every timestamp the charge point sends (and to its clock,
      against which ``validTo`` is checked).
    * ``ignore_calls``: never answer a call of the central system.
    * ``duplicate_on_replay``: after every outage, the first MeterValues/StopTransaction
      of the replayed backlog is sent twice.
    * ``register_drop_in_tx``: the first periodic sample of every transaction reports an
      Energy.Active.Import.Register of 0 Wh (the next one is right again).
    * ``offline_for_s`` > 0: every transaction loses the connection ``offline_after_s``
      simulated seconds after it started, for ``offline_for_s`` real seconds.
    * ``schema_violation_every_s`` > 0: a schema-breaking MeterValues frame every so many
      real seconds while connected.
    """

    clock_skew_s: float = 0.0
    ignore_calls: bool = False
    duplicate_on_replay: bool = False
    register_drop_in_tx: bool = False
    offline_after_s: float = 30.0
    offline_for_s: float = 0.0
    schema_violation_every_s: float = 0.0

    def copy(self) -> OcppFaults:
        return OcppFaults(
            self.clock_skew_s,
            self.ignore_calls,
            self.duplicate_on_replay,
            self.register_drop_in_tx,
            self.offline_after_s,
            self.offline_for_s,
            self.schema_violation_every_s,
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how a charge point connects (security profiles 1, 2 and 3)."""

    url: str  # ws:// or wss:// prefix; the charge point id is appended
    password: str | None = field(default=None, repr=False)  # HTTP Basic (profiles 1, 2)
    ca_file: str | None = None  # wss: the CA that signed the server's certificate
    cert_file: str | None = None  # profile 3: the client certificate ...
    key_file: str | None = None  # ... and its key
    open_timeout_s: float = 10.0
    response_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("wss://"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass(slots=True)
class Transaction:
    """One transaction as the charge point knows it."""

    local_id: int  # provisional, negative: what its queued messages refer to
    id_tag: str
    meter_start: int
    started_at: float  # simulated elapsed seconds
    real_id: int | None = None  # from the central system's StartTransaction answer
    offline_done: bool = False


@dataclass(slots=True)
class Outgoing:
    """A message waiting in the outbox (payload camelCase, as on the wire)."""

    action: str
    payload: Payload
    tx: Transaction | None = None  # set: a transaction message, kept while offline


@dataclass(slots=True)
class Profile:
    """A charging profile as installed (limits in A per phase)."""

    purpose: str
    stack_level: int
    periods: list[tuple[float, float]]  # (startPeriod s, limit A), sorted
    start: float  # charge point clock (Unix s) the schedule counts from
    duration: float | None
    valid_to: float | None
    tx_id: int | None


class _ConnectionLostError(ConnectionError):
    """The connection closed while a call waited for its answer."""


_CLOSED = object()


class _Protocol(OcppChargePoint):  # type: ignore[misc]
    """The ``ocpp`` library's charge point for one connection; handlers call the owner."""

    def __init__(self, owner: SimChargePoint, connection: ClientConnection) -> None:
        super().__init__(owner.id, connection, response_timeout=owner.endpoint.response_timeout_s)
        self.owner = owner

    async def route_message(self, raw_msg: str | bytes) -> None:
        owner = self.owner
        try:
            msg = unpack(raw_msg)
        except Exception:  # noqa: BLE001 - the library's own errors; it logs and drops them too
            log.warning("%s: unreadable frame from the central system", owner.id)
            return
        if msg.message_type_id == MessageType.Call:
            owner.calls_received.append(msg.action)
            if owner.faults.ignore_calls:
                owner.calls_ignored += 1
                return
        elif msg.unique_id in owner.raw_sent:
            owner.raw_answers[msg.unique_id] = raw_msg if isinstance(raw_msg, str) else ""
            return
        await super().route_message(raw_msg)

    async def send_call(self, action: str, payload: Payload) -> Payload | None:
        """Send a call, wait for its answer: its payload, or None for a CALLERROR."""
        # Not validated here (the library would do it on a worker thread): the central
        # system validates, and the tests check that it never answered a CALLERROR.
        msg = Call(str(uuid4()), action, payload)
        async with self._call_lock:
            await self._send(msg.to_json())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._response_timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no answer to {action} within {self._response_timeout} s")
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                async with asyncio.timeout(left):
                    response = await self._response_queue.get()
                if response is _CLOSED:
                    self._response_queue.put_nowait(_CLOSED)  # for whoever waits next
                    raise _ConnectionLostError
                if response.unique_id == msg.unique_id:
                    break
        if response.message_type_id == MessageType.CallError:
            log.warning("%s: %s refused: %s", self.owner.id, action, response.error_code)
            self.owner.call_errors.append((action, str(response.error_code)))
            return None
        result = response.payload
        return result if isinstance(result, dict) else {}

    # -- calls of the central system -------------------------------------------------

    @on(Action.set_charging_profile)
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> Any:
        return call_result.SetChargingProfile(
            status=self.owner.set_charging_profile(connector_id, cs_charging_profiles)
        )

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kwargs: Any) -> Any:
        return call_result.ClearChargingProfile(
            status=self.owner.clear_charging_profile(
                kwargs.get("id"),
                kwargs.get("connector_id"),
                kwargs.get("charging_profile_purpose"),
                kwargs.get("stack_level"),
            )
        )

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        return call_result.RemoteStartTransaction(
            status=self.owner.remote_start(id_tag, kwargs.get("connector_id"))
        )

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        return call_result.RemoteStopTransaction(status=self.owner.remote_stop(transaction_id))

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str) -> Any:
        return call_result.ChangeAvailability(
            status=self.owner.change_availability(connector_id, type)
        )

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, **kwargs: Any) -> Any:
        known = {"StatusNotification", "MeterValues", "BootNotification", "Heartbeat"}
        status = "Accepted" if requested_message in known else "NotImplemented"
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger_message(self, requested_message: str, **kwargs: Any) -> None:
        self.owner.trigger(requested_message)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        known, unknown = self.owner.get_configuration(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        return call_result.ChangeConfiguration(status=self.owner.change_configuration(key, value))

    @on(Action.reset)
    def on_reset(self, type: str) -> Any:
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type: str) -> None:
        self.owner.reset(type)


class SimChargePoint:
    """A simulated OCPP 1.6J charge point with one connector (see the module docstring).

    Built by :class:`~.ocpp_fleet.OcppFleet`; tests read ``status``, ``transaction``,
    ``register_wh``, ``limit_a``, ``online`` and the counters, and switch ``faults``.
    """

    def __init__(
        self,
        model: ChargerModel,
        endpoint: Endpoint,
        *,
        serial: str,
        id_tag: str,
        meter_interval_s: float = 10.0,
        faults: OcppFaults | None = None,
        register_wh: float = 0.0,
        rng: random.Random | None = None,
        sample_phase: float = 1.0,
    ) -> None:
        self.model = model
        self.id = model.id
        self.endpoint = endpoint
        self.serial = serial
        self.id_tag = id_tag[:ID_TAG_MAX]
        self.faults = faults if faults is not None else OcppFaults()
        self.meter_interval_s = meter_interval_s
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.register_wh = register_wh
        self.transaction: Transaction | None = None
        self.transactions: list[Transaction] = []  # every one, oldest first
        self.status = "Available"
        self.online = False  # connected and booted
        self.connections = 0
        self.connect_failures = 0
        self.retry_afters = 0  # 503 answers whose Retry-After was waited for
        self.calls_received: list[str] = []
        self.calls_ignored = 0
        self.call_errors: list[tuple[str, str]] = []
        self.raw_sent: dict[str, str] = {}  # unique id -> frame of send_schema_violation
        self.raw_answers: dict[str, str] = {}  # unique id -> the central system's answer
        self.profiles: dict[int, Profile] = {}
        self.limit_a: float | None = None  # the charging-profile limit in force
        self.available = True
        self._scheduled_inoperative = False
        self._pending_id_tag: str | None = None
        self._outbox: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._local_ids = itertools.count(-1, -1)
        self._seen_session: float | None = None
        self._tx_session: float | None = None
        self._last_energy = model.energy_wh
        self._had_vehicle = model.vehicle is not None
        # The first sample after 0 < phase ≤ 1 intervals: a fleet's charge points do not
        # all sample at the same instant (real ones are not synchronised either).
        self._next_sample = model.t + meter_interval_s * sample_phase
        self._duplicate = 0
        self._register_drop = 0
        self._offline_until = 0.0
        self._connection: ClientConnection | None = None
        self._protocol: _Protocol | None = None
        self._rng = rng or random.Random(self.id)  # noqa: S311 - backoff jitter

    # -- the charge point's clock ------------------------------------------------------

    def now(self) -> float:
        """The charge point's clock (Unix seconds): simulated time plus the skew."""
        return self.model.clock.timestamp + self.faults.clock_skew_s

    def stamp(self) -> str:
        return ocpp_time(self.now())

    # -- what the model did ------------------------------------------------------------

    def observe(self) -> None:
        """Turn the model's changes since the last call into messages (after every step)."""
        m = self.model
        if m.session_start is not None and m.session_start != self._seen_session:
            self._seen_session = m.session_start
            self._last_energy = 0.0  # the model restarted its session counter
        delta = m.energy_wh - self._last_energy
        if delta > 0:
            self.register_wh += delta
        self._last_energy = m.energy_wh
        has_vehicle = m.vehicle is not None
        if has_vehicle and not self._had_vehicle and self._pending_id_tag is None:
            self._queue("Authorize", {"idTag": self.id_tag})
        self._had_vehicle = has_vehicle
        tx = self.transaction
        if tx is None and m.session_start is not None and m.session_start != self._tx_session:
            self._start_transaction(m.session_start)
        elif tx is not None and not has_vehicle:
            self._stop_transaction("EVDisconnected")
        if self.profiles:
            self._apply_limit()
        self._update_status()
        tx = self.transaction
        if self.meter_interval_s > 0 and m.t >= self._next_sample:
            self._next_sample = max(self._next_sample + self.meter_interval_s, m.t)
            drop = False
            if tx is not None and self._register_drop > 0:
                self._register_drop -= 1
                drop = True
            self._queue_meter_values("Sample.Periodic", tx, drop=drop)
        f = self.faults
        if (
            tx is not None
            and f.offline_for_s > 0
            and not tx.offline_done
            and m.t - tx.started_at >= f.offline_after_s
        ):
            tx.offline_done = True
            self.disconnect(f.offline_for_s)

    def _status_now(self) -> str:
        m = self.model
        if not self.available and self.transaction is None:
            return "Unavailable"  # Inoperative: no session, plugged in or not
        if m.vehicle is None:
            return "Available"
        state = m.state
        if state is ChgState.CHARGING:
            return "Charging"
        if state is ChgState.PAUSED:
            return "SuspendedEV" if m.pause_reason is PauseReason.VEHICLE else "SuspendedEVSE"
        if state is ChgState.TERMINATED:
            return "SuspendedEV" if self.transaction is not None else "Finishing"
        return "Preparing"

    def _update_status(self) -> None:
        status = self._status_now()
        if status != self.status:
            self.status = status
            self._queue("StatusNotification", self._status_payload(1))

    def _status_payload(self, connector: int) -> Payload:
        if connector == 0:
            status = "Available" if self.available else "Unavailable"
        else:
            status = self.status
        return {
            "connectorId": connector,
            "errorCode": "NoError",
            "status": status,
            "timestamp": self.stamp(),
        }

    def _start_transaction(self, session_start: float) -> None:
        self._tx_session = session_start
        id_tag = self._pending_id_tag or self.id_tag
        self._pending_id_tag = None
        tx = Transaction(
            local_id=next(self._local_ids),
            id_tag=id_tag,
            meter_start=int(self.register_wh),
            started_at=self.model.t,
        )
        self.transaction = tx
        self.transactions.append(tx)
        payload = {
            "connectorId": 1,
            "idTag": id_tag,
            "meterStart": tx.meter_start,
            "timestamp": self.stamp(),
        }
        self._queue("StartTransaction", payload, tx)
        self._queue_meter_values("Transaction.Begin", tx, register=tx.meter_start)
        if self.faults.register_drop_in_tx:
            self._register_drop = max(self._register_drop, 1)

    def _stop_transaction(self, reason: str) -> None:
        tx = self.transaction
        if tx is None:
            return
        self.transaction = None
        meter_stop = max(int(self.register_wh), tx.meter_start)
        self._queue_meter_values("Transaction.End", tx, register=meter_stop)
        payload = {
            "meterStop": meter_stop,
            "timestamp": self.stamp(),
            "reason": reason,
            "idTag": tx.id_tag,
        }
        self._queue("StopTransaction", payload, tx)
        for pid in [p for p, prof in self.profiles.items() if prof.purpose == "TxProfile"]:
            del self.profiles[pid]
        self._apply_limit()
        if self._scheduled_inoperative:
            self._scheduled_inoperative = False
            self._set_available(False)
        self._update_status()

    def _queue_meter_values(
        self,
        context: str,
        tx: Transaction | None,
        *,
        register: int | None = None,
        drop: bool = False,
    ) -> None:
        m = self.model
        phases = m.settings.phases
        power = m.power_w
        current = power / (phases * VOLTAGE_V)
        energy = 0 if drop else (int(self.register_wh) if register is None else register)
        values: list[dict[str, Any]] = [
            {
                "value": str(energy),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "location": "Outlet",
            },
            {
                "value": f"{power:.1f}",
                "context": context,
                "measurand": "Power.Active.Import",
                "unit": "W",
                "location": "Outlet",
            },
        ]
        values.extend(
            {
                "value": f"{current:.2f}",
                "context": context,
                "measurand": "Current.Import",
                "phase": f"L{n}",
                "unit": "A",
                "location": "Outlet",
            }
            for n in range(1, phases + 1)
        )
        values.extend(
            {
                "value": f"{VOLTAGE_V:.1f}",
                "context": context,
                "measurand": "Voltage",
                "phase": f"L{n}-N",
                "unit": "V",
                "location": "Outlet",
            }
            for n in range(1, phases + 1)
        )
        if m.vehicle is not None:
            values.append(
                {
                    "value": f"{m.vehicle.soc * 100:.1f}",
                    "context": context,
                    "measurand": "SoC",
                    "unit": "Percent",
                    "location": "EV",
                }
            )
        payload: Payload = {
            "connectorId": 1,
            "meterValue": [{"timestamp": self.stamp(), "sampledValue": values}],
        }
        self._queue("MeterValues", payload, tx)

    def _queue(self, action: str, payload: Payload, tx: Transaction | None = None) -> None:
        if tx is None and not self.online:
            return  # a real charger keeps only transaction messages while offline
        self._outbox.append(Outgoing(action, payload, tx))
        self._wake.set()

    @property
    def backlog(self) -> list[Outgoing]:
        """The messages not yet answered by the central system, in order."""
        return list(self._outbox)

    # -- calls of the central system (answered by _Protocol) ---------------------------

    def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        try:
            parsed = self._parse_profile(profile)
        except (KeyError, TypeError, ValueError) as e:
            log.info("%s: charging profile rejected: %s", self.id, e)
            return "Rejected"
        if connector_id not in (0, 1):
            return "Rejected"
        if parsed.purpose == "TxProfile":
            tx = self.transaction
            if tx is None or (parsed.tx_id is not None and parsed.tx_id != tx.real_id):
                return "Rejected"
        pid = profile["charging_profile_id"]
        # A profile with the same purpose and stack level replaces the old one.
        for old in [
            k
            for k, p in self.profiles.items()
            if p.purpose == parsed.purpose and p.stack_level == parsed.stack_level
        ]:
            del self.profiles[old]
        self.profiles[pid] = parsed
        self._apply_limit()
        self._update_status()
        return "Accepted"

    def _parse_profile(self, profile: dict[str, Any]) -> Profile:
        pid = profile["charging_profile_id"]
        purpose = profile["charging_profile_purpose"]
        stack = profile["stack_level"]
        kind = profile["charging_profile_kind"]
        schedule = profile["charging_schedule"]
        if not isinstance(pid, int) or not isinstance(stack, int):
            raise TypeError("chargingProfileId and stackLevel must be integers")
        if purpose not in ("TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"):
            raise ValueError(f"purpose {purpose!r}")
        unit = schedule["charging_rate_unit"]
        phases = self.model.settings.phases
        periods: list[tuple[float, float]] = []
        for period in schedule["charging_schedule_period"][:64]:
            start = period["start_period"]
            limit = period["limit"]
            if not (math.isfinite(start) and math.isfinite(limit) and limit >= 0 and start >= 0):
                raise ValueError("a period's startPeriod/limit is not a finite number >= 0")
            if unit == "W":
                n = period.get("number_phases") or phases
                limit = limit / (VOLTAGE_V * max(1, min(3, int(n))))
            elif unit != "A":
                raise ValueError(f"chargingRateUnit {unit!r}")
            periods.append((float(start), float(limit)))
        if not periods:
            raise ValueError("no chargingSchedulePeriod")
        periods.sort()
        start_at = parse_time(schedule.get("start_schedule"))
        if start_at is None or kind == "Relative":
            tx = self.transaction
            start_at = (
                self.model.clock.at(tx.started_at) + self.faults.clock_skew_s
                if kind == "Relative" and tx is not None
                else self.now()
            )
        duration = schedule.get("duration")
        valid_to = profile.get("valid_to")
        valid_to_ts = parse_time(valid_to) if valid_to is not None else None
        if valid_to is not None and valid_to_ts is None:
            raise ValueError("validTo is not a timestamp")
        return Profile(
            purpose=purpose,
            stack_level=stack,
            periods=periods,
            start=start_at,
            duration=float(duration) if isinstance(duration, int | float) else None,
            valid_to=valid_to_ts,
            tx_id=profile.get("transaction_id"),
        )

    def clear_charging_profile(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        doomed = [
            pid
            for pid, p in self.profiles.items()
            if (profile_id is None or pid == profile_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]
        for pid in doomed:
            del self.profiles[pid]
        self._apply_limit()
        self._update_status()
        return "Accepted" if doomed else "Unknown"

    def _profile_limit(self, profile: Profile, now: float) -> float | None:
        elapsed = now - profile.start
        if elapsed < 0 or (profile.duration is not None and elapsed > profile.duration):
            return None
        limit = None
        for start, value in profile.periods:
            if start <= elapsed:
                limit = value
        return limit

    def _apply_limit(self) -> None:
        """The limit of the profiles in force (validTo honoured) onto the model."""
        now = self.now()
        for pid in [p for p, prof in self.profiles.items() if prof.valid_to is not None]:
            valid_to = self.profiles[pid].valid_to
            if valid_to is not None and now >= valid_to:
                log.info("%s: charging profile %d lapsed (validTo)", self.id, pid)
                del self.profiles[pid]
        best: dict[str, tuple[int, float]] = {}
        for prof in self.profiles.values():
            value = self._profile_limit(prof, now)
            if value is None:
                continue
            current = best.get(prof.purpose)
            if current is None or prof.stack_level > current[0]:
                best[prof.purpose] = (prof.stack_level, value)
        limit: float | None = None
        for purpose in (
            ("TxProfile", "TxDefaultProfile")
            if self.transaction is not None
            else ("TxDefaultProfile",)
        ):
            if purpose in best:
                limit = best[purpose][1]
                break
        if "ChargePointMaxProfile" in best:
            cap = best["ChargePointMaxProfile"][1]
            limit = cap if limit is None else min(limit, cap)
        if limit != self.limit_a:
            self.limit_a = limit
            max_a = float(self.model.settings.max_curr_wb)
            self.model.set_remote_current(max_a if limit is None else min(max_a, limit))

    def remote_start(self, id_tag: str, connector_id: int | None) -> str:
        """``Accepted`` when a car is plugged in, the connector is operative and no
        transaction runs on it: the session starts at once (the physical model's Start)
        and StartTransaction carries ``id_tag``. Else ``Rejected``: no car, a transaction
        running, ``Unavailable``, another connector, or a car the model cannot start
        (full)."""
        m = self.model
        if (
            connector_id not in (None, 1)
            or self.transaction is not None
            or not self.available
            or m.vehicle is None
        ):
            return "Rejected"
        self._pending_id_tag = id_tag[:ID_TAG_MAX]
        if not m.command(Command.START, uid=self._pending_id_tag):
            self._pending_id_tag = None
            return "Rejected"
        self.observe()
        return "Accepted"

    def remote_stop(self, transaction_id: int) -> str:
        tx = self.transaction
        if tx is None or tx.real_id != transaction_id:
            return "Rejected"
        self.stop_local("Remote")
        return "Accepted"

    def stop_local(self, reason: str = "Local") -> bool:
        """End the running transaction at the charge point (the user's card); False: none."""
        if self.transaction is None:
            return False
        self.model.command(Command.TERMINATE)
        self._stop_transaction(reason)
        self.observe()
        return True

    def change_availability(self, connector_id: int, kind: str) -> str:
        if connector_id not in (0, 1) or kind not in ("Inoperative", "Operative"):
            return "Rejected"
        if kind == "Inoperative" and self.transaction is not None:
            self._scheduled_inoperative = True
            return "Scheduled"
        self._scheduled_inoperative = False
        self._set_available(kind == "Operative")
        self._update_status()
        return "Accepted"

    def _set_available(self, available: bool) -> None:
        changed = available != self.available
        self.available = available
        # Unavailable: a car that arrives waits (no session starts by itself).
        self.model.set_auto_charge(available)
        if changed:
            self._queue("StatusNotification", self._status_payload(0))

    def trigger(self, message: str) -> None:
        if message == "StatusNotification":
            self._queue("StatusNotification", self._status_payload(0))
            self._queue("StatusNotification", self._status_payload(1))
        elif message == "MeterValues":
            self._queue_meter_values("Trigger", self.transaction)
        elif message in ("BootNotification", "Heartbeat"):
            self._queue(message, self._boot_payload() if message == "BootNotification" else {})

    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        table = {
            "MeterValueSampleInterval": (str(int(self.meter_interval_s)), False),
            "HeartbeatInterval": (str(int(self.heartbeat_s)), False),
            "NumberOfConnectors": ("1", True),
            "MeterValuesSampledData": (
                "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
                True,
            ),
        }
        wanted = list(table) if not keys else keys[:64]
        known = [
            {"key": k, "readonly": table[k][1], "value": table[k][0]} for k in wanted if k in table
        ]
        unknown = [k[:50] for k in wanted if k not in table]
        return known, unknown

    def change_configuration(self, key: str, value: str) -> str:
        if key not in ("MeterValueSampleInterval", "HeartbeatInterval"):
            return (
                "Rejected"
                if key in ("NumberOfConnectors", "MeterValuesSampledData")
                else ("NotSupported")
            )
        try:
            seconds = int(value)
        except ValueError:
            return "Rejected"
        if not 0 <= seconds <= 86_400:
            return "Rejected"
        if key == "MeterValueSampleInterval":
            self.meter_interval_s = float(seconds)
            self._next_sample = self.model.t + seconds
        else:
            self.heartbeat_s = float(seconds) if seconds > 0 else DEFAULT_HEARTBEAT_S
            self._wake.set()
        return "Accepted"

    def reset(self, kind: str) -> None:
        self.stop_local("HardReset" if kind == "Hard" else "SoftReset")
        self.disconnect(0.0)

    # -- one-shot faults ---------------------------------------------------------------

    def disconnect(self, seconds: float) -> None:
        """Lose the connection now (abruptly) and stay offline ``seconds`` real seconds."""
        self._offline_until = time.monotonic() + max(0.0, seconds)
        self.online = False
        conn = self._connection
        if conn is not None:
            conn.transport.abort()
        self._wake.set()

    def duplicate_next(self, count: int = 1) -> None:
        """Send each of the next ``count`` MeterValues/StopTransaction messages twice."""
        self._duplicate += count

    def drop_register_next(self, count: int = 1) -> None:
        """The next ``count`` periodic samples in a transaction report a register of 0 Wh."""
        self._register_drop += count

    async def send_schema_violation(self, kind: str = "value_not_string") -> str:
        """Send one frame the OCPP 1.6 schema refuses; returns its unique id.

        ``value_not_string``: MeterValues whose sampledValue value is a number;
        ``missing_field``: StatusNotification without ``status``. The answer (a CALLERROR
        from a correct central system) lands in ``raw_answers[unique_id]``.
        """
        conn = self._connection
        if conn is None or not self.online:
            raise ConnectionError(f"{self.id} is not connected")
        uid = f"bad-{uuid4()}"
        payload: Payload
        if kind == "value_not_string":
            action = "MeterValues"
            payload = {
                "connectorId": 1,
                "meterValue": [
                    {
                        "timestamp": self.stamp(),
                        "sampledValue": [
                            {"value": int(self.register_wh), "unit": "Wh"},
                        ],
                    }
                ],
            }
        elif kind == "missing_field":
            action = "StatusNotification"
            payload = {"connectorId": 1, "errorCode": "NoError"}
        else:
            raise ValueError(f"schema violation {kind!r}: one of {', '.join(VIOLATIONS)}")
        frame = orjson.dumps([2, uid, action, payload]).decode()
        self.raw_sent[uid] = frame
        await conn.send(frame)
        return uid

    # -- the connection --------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        password = self.endpoint.password
        if password is None:
            return {}
        return {"Authorization": f"Basic {basic_token(self.id, password)}"}

    def _boot_payload(self) -> Payload:
        return {
            "chargePointVendor": VENDOR,
            "chargePointModel": MODEL,
            "chargePointSerialNumber": self.serial,
            "chargeBoxSerialNumber": self.serial,
            "firmwareVersion": FIRMWARE,
            "meterType": "sim",
            "meterSerialNumber": self.serial,
        }

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, serve, reconnect with backoff; until cancelled (or ``stop`` is set).

        The backoff (jittered, doubling from ``reconnect_min_s`` to ``reconnect_max_s``)
        applies to failed handshakes and to connections lost before the boot was accepted;
        a charge point that was online reconnects after ``reconnect_min_s``.
        """
        url = self.endpoint.url.rstrip("/") + "/" + self.id
        ctx = self.endpoint.ssl_context()
        backoff = self.endpoint.reconnect_min_s
        while stop is None or not stop.is_set():
            wait = self._offline_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                conn = await connect(
                    url,
                    subprotocols=[Subprotocol("ocpp1.6")],
                    ssl=ctx,
                    additional_headers=self._headers(),
                    open_timeout=self.endpoint.open_timeout_s,
                    max_size=MAX_FRAME,
                    ping_interval=None,  # the OCPP heartbeat is the keepalive
                )
            except (OSError, InvalidHandshake, TimeoutError) as e:
                self.connect_failures += 1
                log.info("%s: cannot connect to %s: %s", self.id, self.endpoint.url, e)
                told = retry_after(e)
                if told is not None:  # a busy central system said when: no sooner
                    self.retry_afters += 1
                    await asyncio.sleep(told)
                    continue
                backoff = await self._backoff(backoff)
                continue
            self.connections += 1
            booted = False
            try:
                booted = await self._session(conn, stop)
            except (ConnectionClosed, _ConnectionLostError, OSError, TimeoutError) as e:
                log.info("%s: connection lost: %r", self.id, e)
            except Exception:
                # A real charger does not stop over one odd exchange: log it and reconnect.
                log.exception("%s: unexpected error; reconnecting", self.id)
            finally:
                self.online = False
                self._connection = None
                self._protocol = None
                # What is not a transaction message is stale after an outage.
                kept = [o for o in self._outbox if o.tx is not None]
                self._outbox = deque(kept)
                conn.transport.abort()
                with contextlib.suppress(Exception):
                    await conn.close()
            if booted:
                backoff = self.endpoint.reconnect_min_s
            backoff = await self._backoff(backoff)

    async def _backoff(self, backoff: float) -> float:
        """Sleep a jittered ``backoff``; the next one (doubled, capped)."""
        await asyncio.sleep(backoff * (0.5 + self._rng.random() / 2))
        return min(backoff * 2, self.endpoint.reconnect_max_s)

    async def _session(self, conn: ClientConnection, stop: asyncio.Event | None) -> bool:
        """One connection: boot, status, then the outbox; True if the boot was accepted."""
        proto = _Protocol(self, conn)
        self._connection = conn
        self._protocol = proto
        reader = asyncio.create_task(proto.start(), name=f"ocpp-read-{self.id}")

        def closed(_: asyncio.Task[None]) -> None:
            proto._response_queue.put_nowait(_CLOSED)
            self._wake.set()

        reader.add_done_callback(closed)
        accepted = False
        try:
            await self._boot(proto)
            accepted = self.online = True
            self.status = self._status_now()
            for connector in (0, 1):
                status = Outgoing("StatusNotification", self._status_payload(connector))
                await self._send(proto, status)
            if self.faults.duplicate_on_replay and any(o.tx is not None for o in self._outbox):
                self._duplicate += 1
            await self._drive(proto, reader, stop)
        except (ConnectionClosed, _ConnectionLostError, OSError, TimeoutError) as e:
            if not accepted:
                raise
            log.info("%s: connection lost: %r", self.id, e)
        finally:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled ourselves: never swallow that
            except Exception:  # noqa: BLE001, S110 - the reader's end was handled above
                pass
        return True

    async def _boot(self, proto: _Protocol) -> None:
        while True:
            answer = await proto.send_call("BootNotification", self._boot_payload())
            status = None if answer is None else answer.get("status")
            interval = None if answer is None else answer.get("interval")
            if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
                self.heartbeat_s = float(min(interval, 86_400))
            if status == "Accepted":
                return
            await asyncio.sleep(self.heartbeat_s)

    async def _drive(
        self, proto: _Protocol, reader: asyncio.Task[None], stop: asyncio.Event | None
    ) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        next_violation = loop.time() + self.faults.schema_violation_every_s
        while not reader.done() and self.online and (stop is None or not stop.is_set()):
            if self._outbox:
                item = self._outbox[0]
                await self._send(proto, item)
                if self._outbox and self._outbox[0] is item:
                    self._outbox.popleft()
                last_sent = loop.time()
                continue
            every = self.faults.schema_violation_every_s
            if every > 0 and loop.time() >= next_violation:
                next_violation = loop.time() + every
                await self.send_schema_violation()
            timeout = last_sent + self.heartbeat_s - loop.time()
            if every > 0:
                timeout = min(timeout, next_violation - loop.time())
            if timeout > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            if loop.time() >= last_sent + self.heartbeat_s:
                await proto.send_call("Heartbeat", {})
                last_sent = loop.time()

    async def _send(self, proto: _Protocol, item: Outgoing) -> None:
        tx = item.tx
        payload = item.payload
        if tx is not None and item.action != "StartTransaction":
            if tx.real_id is None:
                if item.action == "StopTransaction":
                    log.warning("%s: StopTransaction of a transaction without id dropped", self.id)
                    return
                payload = {k: v for k, v in payload.items() if k != "transactionId"}
            else:
                payload = {**payload, "transactionId": tx.real_id}
        answer = await proto.send_call(item.action, payload)
        if item.action == "StartTransaction" and tx is not None and answer is not None:
            real = answer.get("transactionId")
            if isinstance(real, int) and not isinstance(real, bool) and tx.real_id is None:
                tx.real_id = real
        elif item.action == "BootNotification" and answer is not None:
            interval = answer.get("interval")
            if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
                self.heartbeat_s = float(min(interval, 86_400))
        if self._duplicate > 0 and item.action in ("MeterValues", "StopTransaction") and tx:
            self._duplicate -= 1
            await proto.send_call(item.action, payload)
