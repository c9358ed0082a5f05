"""OCPP 1.6J payloads -> readings of the field catalogue (pure: no I/O, no clock).

One :class:`ChargePointMapper` per connected charge point turns the payloads it pushes
(dicts as on the wire, camelCase keys) into :class:`Reading` s. It keeps the little state
the mapping needs: each connector's last status, its energy register (the plausibility
gate) and the transactions it knows. Every payload is untrusted: a payload that makes no
sense as a whole raises :class:`MappingError` (and changes nothing); a single bad value
inside an otherwise good payload is dropped and counted in :attr:`ChargePointMapper.dropped_values`.

Charger ids
-----------
A charge point id is 1 to 48 of ``a-z 0-9 - _`` without two ``_`` in a row (48: the
OCPP security whitepaper's limit for a charge point identity). Its connector 1 is the
charger ``{cp}``; connector ``n`` (2 to :data:`MAX_CONNECTORS`) is the charger ``{cp}__{n}``
(two underscores, no leading zeros). All are valid charger ids of the contract
(``[a-z0-9_-]{1,64}``) and never collide: a charge point id never contains ``__``, so
``{cp}`` is never another charge point's ``{cp2}__{n}``, and the suffix ``__{n}`` is
unambiguous. Connector 0 (the charge point as a whole) is no charger of its own.

Status -> fields
----------------
``VendorState`` is the OCPP status name; ``VendorErrorCode`` is the errorCode when it is
not ``NoError``, followed by ``/vendorErrorCode`` and `` (info)`` when given, else null.

=============== ====================== ================
status          OperationState         ConnectedVehicle
=============== ====================== ================
Available       idle                   false
Preparing       idle                   true
Charging        charging               true
SuspendedEV     idle                   true
SuspendedEVSE   idle                   true
Finishing       idle                   true
Reserved        idle                   false
Unavailable     scheduled_downtime     null (unknown)
Faulted         unscheduled_downtime   null (unknown)
=============== ====================== ================

A status of connector 0 (only Available, Unavailable, Faulted are allowed there):
Unavailable and Faulted apply to every connector seen so far (connector 1 when none has
been); Available restates each of them its own last status.

BootNotification gives ``ChargerVendor``, ``ChargerModel``, ``SerialNumber``
(chargePointSerialNumber, else chargeBoxSerialNumber) and ``FirmwareVersion`` to connector
1 and every connector seen so far, at the receive time.

Meter values
------------
Every ``meterValue`` is mapped at its own timestamp. Of its sampled values, taken: format
``Raw`` (``SignedData`` is skipped), any context, location ``Outlet`` or absent (``SoC``:
any location, usually ``EV``), measurands

* ``Energy.Active.Import.Register`` (the default), unphased, Wh or kWh ->
  ``TotalEnergyConsumption`` after the gate, and ``SessionEnergy`` = register - meterStart
  while the connector's transaction runs;
* ``Power.Active.Import``, unphased, W or kW -> ``PowerOutput``;
* ``Current.Import``, A: phase L1/L2/L3 -> ``OutputCurrentL1..3``; ``OutputCurrent`` is the
  highest phase current, or the unphased value when no phase is given;
* ``Voltage``, V: phase L1-N (or L1) -> ``VoltageL1``, likewise L2, L3; an unphased value ->
  ``VoltageL1`` (a single-phase or DC charger) unless L1 is given; line-to-line ignored;
* ``SoC``, Percent -> ``StateOfCharge``.

Anything else is ignored; a value that is not a decimal string, is not finite, has an
unknown unit, phase or context, or lies outside its field's bounds is dropped and counted.
Meter values of connector 0 (the charge point's main meter) are ignored.

Transactions
------------
StartTransaction -> ``IdTag``, ``TransactionId`` (the id the gateway gave it, as a string),
``SessionEnergy`` 0 at its timestamp, and ``TotalEnergyConsumption`` = meterStart 1 ms
before it (:data:`BEFORE_START`): the register stood there before the transaction began,
so a rise the gateway never saw (a session while it or the charge point was away) ends
before the new session and the API does not bill it to that session.
StopTransaction maps its ``transactionData`` like MeterValues, then ``SessionEnergy`` =
meterStop - meterStart and ``TotalEnergyConsumption`` = meterStop (through the gate) at its
timestamp. A transaction id the mapper does not know (a gateway restart: the gateway tells
it with :meth:`ChargePointMapper.restore_transaction`) still gives
``TotalEnergyConsumption``, on connector 1 when no other connector has been seen.

The plausibility gate (lbbrhzn/ocpp#1756)
-----------------------------------------
Some chargers report their cumulative register as 0, or a stale lower value, for a
reading or two. Per connector the gate keeps the last accepted register (value, time). A
new register reading is accepted when it is consistent with it: not lower, and not higher
than :data:`MAX_POWER_W` over the elapsed time plus :data:`SLACK_WH` (an older reading,
replayed late, must lie in the mirrored range). A reading at most :data:`SLACK_WH` on the
wrong side is a rounding echo (kWh with two decimals after a meterStart in Wh): neither
published nor counted. Any other reading is rejected (counted in
:attr:`ChargePointMapper.rejected_registers`, no ``TotalEnergyConsumption``, no
``SessionEnergy``) unless it is confirmed: :data:`CONFIRMATIONS` consecutive rejected
readings consistent with each other (a meter replaced, a register reset) make the last one
the new baseline, and a running session's energy continues from where it was (it never
goes backwards). A new transaction's meterStart is always the new baseline. Without a
baseline (a fresh mapper) the first reading is one, unless it is 0: a 0 needs confirming
too. The session's final energy is the charger's own meterStop - meterStart.

Timestamps
----------
RFC 3339 (:func:`chargelift_contract.parse_time`). A timestamp that is absent (where OCPP
allows it), not RFC 3339, before :data:`MIN_TIME` (a clock never set) or more than
:data:`MAX_FUTURE` ahead of the receive time (ingest's default window: such a reading
would be refused there) is replaced by the receive time and counted in
:attr:`ChargePointMapper.clock_corrections`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from chargelift_contract import CATALOGUE, EnvelopeError, OperationState, parse_time
from chargelift_contract.envelope import Value
from chargelift_contract.topics import quoted

__all__ = [
    "CONFIRMATIONS",
    "CONNECTOR_SEPARATOR",
    "MAX_CHARGE_POINT_ID_CHARS",
    "MAX_CONNECTORS",
    "MAX_FUTURE",
    "MAX_POWER_W",
    "MAX_TRANSACTIONS",
    "MIN_TIME",
    "SLACK_WH",
    "ChargePointMapper",
    "MappingError",
    "Reading",
    "charger_id",
    "validate_charge_point_id",
]

MAX_CHARGE_POINT_ID_CHARS: Final = 48
MAX_CONNECTORS: Final = 100
CONNECTOR_SEPARATOR: Final = "__"
_CHARGE_POINT_ID_RE = re.compile(rf"[a-z0-9_-]{{1,{MAX_CHARGE_POINT_ID_CHARS}}}", re.ASCII)

#: The highest power the gate believes a connector can deliver: the contract's bound of
#: ``PowerOutput`` (the Megawatt Charging System peaks at 3.75 MW).
MAX_POWER_W: Final = 4e6
#: Tolerance of the gate, Wh: a register in kWh with one decimal rounds by 50 Wh.
SLACK_WH: Final = 100.0
#: Consecutive consistent readings that confirm a new register baseline.
CONFIRMATIONS: Final = 3
#: Earliest believable timestamp (ingest's INGEST_MIN_SAMPLING_TIME default).
MIN_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: Largest believable lead of a charge point's clock (ingest's INGEST_MAX_FUTURE_SECONDS default).
MAX_FUTURE: Final = timedelta(seconds=300)
#: How long before a transaction's start its ``meterStart`` is placed (see start_transaction).
BEFORE_START: Final = timedelta(milliseconds=1)

#: Longest string value taken from a payload (OCPP's longest CiString is 500; ids are 20-50).
MAX_TEXT_CHARS: Final = 500
#: Most meterValue entries in one message, and sampled values in one entry.
MAX_METER_VALUES: Final = 1000
MAX_SAMPLED_VALUES: Final = 100
#: Transactions remembered per charge point (running ones and recently stopped ones).
MAX_TRANSACTIONS: Final = MAX_CONNECTORS + 20
#: OCPP 1.6 transaction ids and meter values are 32-bit integers; meters count Wh.
_MAX_TRANSACTION_ID: Final = 2**31 - 1
_MAX_METER_WH: Final = 1e12  # TotalEnergyConsumption's bound
_MAX_DECIMAL_CHARS: Final = 40
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)


class MappingError(ValueError):
    """A payload that the OCPP schema allowed but that makes no sense."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One field value of one charger at the moment the charge point sampled it."""

    charger: str
    field: str
    value: Value
    sampled_at: datetime


def validate_charge_point_id(charge_point_id: object) -> str:
    """Return ``charge_point_id`` if it may name a charge point, else raise MappingError."""
    if (
        not isinstance(charge_point_id, str)
        or not _CHARGE_POINT_ID_RE.fullmatch(charge_point_id)
        or CONNECTOR_SEPARATOR in charge_point_id
    ):
        raise MappingError(
            f"invalid charge point id {_shown(charge_point_id)}: use "
            f"1-{MAX_CHARGE_POINT_ID_CHARS} of a-z, 0-9, '-', '_' without '{CONNECTOR_SEPARATOR}'"
        )
    return charge_point_id


def _connector(raw: object, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= MAX_CONNECTORS:
        raise MappingError(
            f"connectorId {_shown(raw)}: expected an integer {low}..{MAX_CONNECTORS}"
        )
    return raw


def charger_id(charge_point_id: str, connector_id: int) -> str:
    """The charger id of a charge point's connector (the scheme in the module docstring)."""
    cp = validate_charge_point_id(charge_point_id)
    n = _connector(connector_id)
    return cp if n == 1 else f"{cp}{CONNECTOR_SEPARATOR}{n}"


# --- OCPP 1.6 vocabulary -------------------------------------------------------------------

_STATUS: Final[Mapping[str, tuple[OperationState, bool | None]]] = {
    "Available": (OperationState.IDLE, False),
    "Preparing": (OperationState.IDLE, True),
    "Charging": (OperationState.CHARGING, True),
    "SuspendedEV": (OperationState.IDLE, True),
    "SuspendedEVSE": (OperationState.IDLE, True),
    "Finishing": (OperationState.IDLE, True),
    "Reserved": (OperationState.IDLE, False),
    "Unavailable": (OperationState.SCHEDULED_DOWNTIME, None),
    "Faulted": (OperationState.UNSCHEDULED_DOWNTIME, None),
}
_WHOLE_CHARGE_POINT_STATUSES: Final = frozenset({"Available", "Unavailable", "Faulted"})
_NO_ERROR: Final = "NoError"
_ERROR_CODES: Final = frozenset(
    {
        "ConnectorLockFailure",
        "EVCommunicationError",
        "GroundFailure",
        "HighTemperature",
        "InternalError",
        "LocalListConflict",
        _NO_ERROR,
        "OtherError",
        "OverCurrentFailure",
        "OverVoltage",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ReaderFailure",
        "ResetFailure",
        "UnderVoltage",
        "WeakSignal",
    }
)
_CONTEXTS: Final = frozenset(
    {
        "Interruption.Begin",
        "Interruption.End",
        "Other",
        "Sample.Clock",
        "Sample.Periodic",
        "Transaction.Begin",
        "Transaction.End",
        "Trigger",
    }
)
_LOCATIONS: Final = frozenset({"Body", "Cable", "EV", "Inlet", "Outlet"})
_PHASES: Final = frozenset(
    {"L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"}
)
_ENERGY: Final = "Energy.Active.Import.Register"
_POWER: Final = "Power.Active.Import"
_CURRENT: Final = "Current.Import"
_VOLTAGE: Final = "Voltage"
_SOC: Final = "SoC"
#: unit -> factor to the field's unit, per measurand taken (None: the unit is absent).
_UNITS: Final[Mapping[str, Mapping[str | None, int]]] = {
    _ENERGY: {None: 1, "Wh": 1, "kWh": 1000},
    _POWER: {None: 1, "W": 1, "kW": 1000},
    _CURRENT: {None: 1, "A": 1},
    _VOLTAGE: {None: 1, "V": 1},
    _SOC: {None: 1, "Percent": 1},
}
_PHASE_OF: Final[Mapping[str, str]] = {
    "L1": "L1",
    "L2": "L2",
    "L3": "L3",
    "L1-N": "L1",
    "L2-N": "L2",
    "L3-N": "L3",
}


# --- values --------------------------------------------------------------------------------


def _text(raw: object) -> str | None:
    """A printable string of at most MAX_TEXT_CHARS (stripped), else None."""
    if not isinstance(raw, str) or len(raw) > MAX_TEXT_CHARS:
        return None
    text = raw.strip()
    return text if text and text.isprintable() else None


def _decimal(raw: object, factor: int) -> float | None:
    """A finite number from an OCPP decimal string, times ``factor``, else None.

    Decimal arithmetic: "7.4" kW is 7400 W, not 7400.000000000001.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(raw):
        return None
    number = float(Decimal(raw) * factor)
    return number if math.isfinite(number) else None


def _meter(raw: object, name: str) -> float:
    """A meter reading in Wh (OCPP integer) within the contract's register bounds."""
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float)
        or not math.isfinite(raw)
        or not 0 <= raw <= _MAX_METER_WH
    ):
        raise MappingError(f"{name} {_shown(raw)}: expected Wh, 0..{_MAX_METER_WH:g}")
    return float(raw)


def _transaction_id(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _MAX_TRANSACTION_ID:
        raise MappingError(
            f"transactionId {_shown(raw)}: expected an integer 0..{_MAX_TRANSACTION_ID}"
        )
    return raw


def _in_bounds(field_name: str, value: float) -> bool:
    return CATALOGUE[field_name].in_bounds(value)


def _number(value: float) -> int | float:
    """An integral float as an int (``11000`` rather than ``11000.0`` on the wire)."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# --- state ---------------------------------------------------------------------------------


class _Verdict(Enum):
    ACCEPTED = "accepted"  # consistent with the baseline: publish
    CONFIRMED = "confirmed"  # a new baseline, confirmed by persistence: publish, shift session
    ECHO = "echo"  # a rounding echo of the baseline: skip silently
    REJECTED = "rejected"  # implausible: do not publish, count


def _consistent(base: float, base_at: datetime, value: float, at: datetime) -> bool:
    elapsed = (at - base_at).total_seconds()
    budget = MAX_POWER_W * abs(elapsed) / 3600.0 + SLACK_WH
    if elapsed >= 0:
        return base <= value <= base + budget
    return base - budget <= value <= base


@dataclass(slots=True)
class _Gate:
    """The plausibility gate of one connector's cumulative energy register."""

    value: float | None = None
    at: datetime | None = None
    candidates: list[tuple[float, datetime]] = field(default_factory=list)

    def reset(self, value: float, at: datetime) -> None:
        if self.at is None or at >= self.at:
            self.value, self.at = value, at
            self.candidates.clear()

    def offer(self, value: float, at: datetime) -> tuple[_Verdict, float]:
        """The verdict on a reading, and the baseline before it."""
        if self.value is None or self.at is None:
            # No baseline yet (a fresh gateway, no transaction restored): any reading but a
            # 0, the transient this gate is for, is one.
            if value != 0:
                self.value, self.at = value, at
                self.candidates.clear()
                return _Verdict.ACCEPTED, value
            return self._candidate(value, at, value)
        base = self.value
        if _consistent(base, self.at, value, at):
            if at >= self.at:
                self.value, self.at = value, at
            self.candidates.clear()
            return _Verdict.ACCEPTED, base
        if abs(value - base) <= SLACK_WH:
            return _Verdict.ECHO, base
        return self._candidate(value, at, base)

    def _candidate(self, value: float, at: datetime, base: float) -> tuple[_Verdict, float]:
        """A reading the baseline does not explain: rejected unless it confirms a new one."""
        if self.candidates:
            last, last_at = self.candidates[-1]
            if at <= last_at:  # a duplicate or out of order: it confirms nothing
                return _Verdict.REJECTED, base
            if not _consistent(last, last_at, value, at):
                self.candidates.clear()
        self.candidates.append((value, at))
        if len(self.candidates) < CONFIRMATIONS:
            return _Verdict.REJECTED, base
        self.candidates.clear()
        self.value, self.at = value, at
        return _Verdict.CONFIRMED, base


@dataclass(slots=True)
class _Transaction:
    connector: int
    meter_start: float
    id_tag: str | None
    started_at: datetime
    #: Added to meter_start after a confirmed baseline change, so the session continues.
    offset: float = 0.0
    stopped_at: datetime | None = None

    def covers(self, at: datetime) -> bool:
        return self.started_at <= at and (self.stopped_at is None or at <= self.stopped_at)


@dataclass(slots=True)
class _Connector:
    gate: _Gate = field(default_factory=_Gate)
    #: Its own last status and vendor error code (a connector-0 status does not change it).
    status: str | None = None
    vendor_error: str | None = None
    #: The transaction running on it.
    transaction: int | None = None


@dataclass(slots=True)
class _Sample:
    """What one meterValue entry says, in the fields' units."""

    energy: float | None = None
    power: float | None = None
    current: dict[str, float] = field(default_factory=dict)
    current_unphased: float | None = None
    voltage: dict[str, float] = field(default_factory=dict)
    voltage_unphased: float | None = None
    soc: float | None = None


class ChargePointMapper:
    """Maps one charge point's OCPP 1.6 payloads to readings (see the module docstring).

    ``now`` (every method) is the gateway's receive time, timezone-aware. Counters for the
    gateway's metrics: :attr:`rejected_registers` (register readings the gate held back),
    :attr:`dropped_values` (single values dropped as invalid), :attr:`clock_corrections`
    (timestamps replaced by the receive time), :attr:`unattributed` (transaction messages
    that could not be put on a connector).
    """

    def __init__(self, charge_point_id: str) -> None:
        self.charge_point_id = validate_charge_point_id(charge_point_id)
        self._connectors: dict[int, _Connector] = {}
        self._transactions: OrderedDict[int, _Transaction] = OrderedDict()
        self.rejected_registers = 0
        self.dropped_values = 0
        self.clock_corrections = 0
        self.unattributed = 0

    # --- the OCPP messages ---------------------------------------------------------------

    def boot_notification(self, payload: Mapping[str, Any], now: datetime) -> list[Reading]:
        body = _payload(payload)
        at = _utc(now)
        serial = body.get("chargePointSerialNumber")
        if serial is None:
            serial = body.get("chargeBoxSerialNumber")
        values: list[tuple[str, str]] = []
        for field_name, raw in (
            ("ChargerVendor", body.get("chargePointVendor")),
            ("ChargerModel", body.get("chargePointModel")),
            ("SerialNumber", serial),
            ("FirmwareVersion", body.get("firmwareVersion")),
        ):
            if raw is None:
                continue
            text = _text(raw)
            if text is None:
                self.dropped_values += 1
            else:
                values.append((field_name, text))
        return [
            Reading(self._charger(n), name, text, at)
            for n in sorted({1, *self._connectors})
            for name, text in values
        ]

    def status_notification(self, payload: Mapping[str, Any], now: datetime) -> list[Reading]:
        body = _payload(payload)
        connector = _connector(body.get("connectorId"), allow_zero=True)
        status = body.get("status")
        if not isinstance(status, str) or status not in _STATUS:
            raise MappingError(f"unknown status {_shown(status)}")
        error = body.get("errorCode")
        if not isinstance(error, str) or error not in _ERROR_CODES:
            raise MappingError(f"unknown errorCode {_shown(error)}")
        if connector == 0 and status not in _WHOLE_CHARGE_POINT_STATUSES:
            raise MappingError(f"status {status} is not one of connector 0")
        at = self._moment(body.get("timestamp"), now)
        vendor_error = self._vendor_error(error, body.get("vendorErrorCode"), body.get("info"))
        if connector != 0:
            state = self._connector_state(connector)
            state.status, state.vendor_error = status, vendor_error
            return self._status_readings(connector, status, vendor_error, at)
        readings: list[Reading] = []
        for n in sorted(self._connectors) or [1]:
            if status == "Available":
                own = self._connectors.get(n)
                if own is not None and own.status is not None:
                    readings += self._status_readings(n, own.status, own.vendor_error, at)
                    continue
            readings += self._status_readings(n, status, vendor_error, at)
        return readings

    def meter_values(self, payload: Mapping[str, Any], now: datetime) -> list[Reading]:
        body = _payload(payload)
        connector = _connector(body.get("connectorId"), allow_zero=True)
        entries = _entries(body.get("meterValue"), "meterValue", MAX_METER_VALUES)
        if connector == 0:
            return []
        transaction = None
        raw_tx = body.get("transactionId")
        if raw_tx is not None:
            try:
                transaction = self._transactions.get(_transaction_id(raw_tx))
            except MappingError:
                self.dropped_values += 1
            if transaction is not None and transaction.connector != connector:
                transaction = None
        self._connector_state(connector)
        return self._map_entries(connector, entries, transaction, now)

    def start_transaction(
        self, payload: Mapping[str, Any], transaction_id: int, now: datetime
    ) -> list[Reading]:
        body = _payload(payload)
        tx_id = _transaction_id(transaction_id)
        connector = _connector(body.get("connectorId"))
        meter_start = _meter(body.get("meterStart"), "meterStart")
        id_tag = _text(body.get("idTag"))
        if id_tag is None:
            self.dropped_values += 1
        at = self._moment(body.get("timestamp"), now)
        self._begin(tx_id, connector, meter_start, id_tag, at)
        charger = self._charger(connector)
        return [
            Reading(charger, "IdTag", id_tag, at),
            Reading(charger, "TransactionId", str(tx_id), at),
            Reading(charger, "SessionEnergy", 0, at),
            # The register stood at meterStart *before* the transaction: a rise the gateway
            # never saw (a session while it was away) ends before this one and is not
            # billed to it (a session takes the deltas that end at or after its start).
            Reading(charger, "TotalEnergyConsumption", _number(meter_start), at - BEFORE_START),
        ]

    def stop_transaction(self, payload: Mapping[str, Any], now: datetime) -> list[Reading]:
        body = _payload(payload)
        tx_id = _transaction_id(body.get("transactionId"))
        meter_stop = _meter(body.get("meterStop"), "meterStop")
        raw_data = body.get("transactionData")
        entries = (
            [] if raw_data is None else _entries(raw_data, "transactionData", MAX_METER_VALUES)
        )
        at = self._moment(body.get("timestamp"), now)
        transaction = self._transactions.get(tx_id)
        connector: int | None
        if transaction is not None:
            connector = transaction.connector
        elif set(self._connectors) <= {1}:
            connector = 1
        else:
            connector = None
        if connector is None:
            self.unattributed += 1
            return []
        readings = self._map_entries(connector, entries, transaction, now, use_running=False)
        charger = self._charger(connector)
        state = self._connector_state(connector)
        verdict, _ = self._offer(state, meter_stop, at, transaction)
        if verdict in (_Verdict.ACCEPTED, _Verdict.CONFIRMED):
            readings.append(Reading(charger, "TotalEnergyConsumption", _number(meter_stop), at))
        if transaction is not None:
            session = meter_stop - transaction.meter_start
            if _in_bounds("SessionEnergy", session):
                readings.append(Reading(charger, "SessionEnergy", _number(session), at))
            else:
                self.dropped_values += 1
            if transaction.stopped_at is None:
                transaction.stopped_at = at
            if state.transaction == tx_id:
                state.transaction = None
        return _unique(readings)

    def authorize(self, payload: Mapping[str, Any], now: datetime) -> list[Reading]:
        """Authorize carries no reading (only a transaction says whose id tag charges)."""
        _payload(payload)
        _utc(now)
        return []

    def restore_transaction(
        self,
        transaction_id: int,
        connector_id: int,
        meter_start: int | float,
        id_tag: str | None,
        started_at: datetime,
    ) -> None:
        """Tell the mapper about a transaction still running (the gateway's store, after a
        restart), so its meter values and its StopTransaction give ``SessionEnergy``."""
        tx_id = _transaction_id(transaction_id)
        connector = _connector(connector_id)
        start = _meter(meter_start, "meterStart")
        self._begin(tx_id, connector, start, _text(id_tag), _utc(started_at))

    # --- helpers -------------------------------------------------------------------------

    def _charger(self, connector: int) -> str:
        return charger_id(self.charge_point_id, connector)

    def _connector_state(self, connector: int) -> _Connector:
        state = self._connectors.get(connector)
        if state is None:
            state = self._connectors[connector] = _Connector()
        return state

    def _moment(self, raw: object, now: datetime) -> datetime:
        received = _utc(now)
        if raw is None:
            return received
        if isinstance(raw, str) and len(raw) <= 64:
            try:
                moment = parse_time(raw)
            except EnvelopeError:
                pass
            else:
                if MIN_TIME <= moment <= received + MAX_FUTURE:
                    return moment
        self.clock_corrections += 1
        return received

    def _vendor_error(self, error: str, vendor_code: object, info: object) -> str | None:
        if error == _NO_ERROR:
            return None
        text = error
        for raw, before, after in ((vendor_code, "/", ""), (info, " (", ")")):
            if raw is None:
                continue
            part = _text(raw)
            if part is None:
                self.dropped_values += 1
            else:
                text += before + part + after
        return text

    def _status_readings(
        self, connector: int, status: str, vendor_error: str | None, at: datetime
    ) -> list[Reading]:
        state, vehicle = _STATUS[status]
        charger = self._charger(connector)
        return [
            Reading(charger, "OperationState", state.value, at),
            Reading(charger, "VendorState", status, at),
            Reading(charger, "ConnectedVehicle", vehicle, at),
            Reading(charger, "VendorErrorCode", vendor_error, at),
        ]

    def _begin(
        self,
        tx_id: int,
        connector: int,
        meter_start: float,
        id_tag: str | None,
        at: datetime,
    ) -> None:
        state = self._connector_state(connector)
        known = self._transactions.get(tx_id)
        if known is not None:  # the same StartTransaction again: nothing changes
            return
        self._transactions[tx_id] = _Transaction(connector, meter_start, id_tag, at)
        while len(self._transactions) > MAX_TRANSACTIONS:
            old_id, old = self._transactions.popitem(last=False)
            old_state = self._connectors.get(old.connector)
            if old_state is not None and old_state.transaction == old_id:
                old_state.transaction = None
        running = (
            self._transactions.get(state.transaction) if state.transaction is not None else None
        )
        if running is None or running.started_at <= at:
            state.transaction = tx_id
        state.gate.reset(meter_start, at)

    def _offer(
        self, state: _Connector, register: float, at: datetime, transaction: _Transaction | None
    ) -> tuple[_Verdict, float]:
        verdict, before = state.gate.offer(register, at)
        if verdict is _Verdict.REJECTED:
            self.rejected_registers += 1
        elif (
            verdict is _Verdict.CONFIRMED
            and transaction is not None
            and transaction.stopped_at is None
        ):
            transaction.offset += register - before
        return verdict, before

    def _map_entries(
        self,
        connector: int,
        entries: Sequence[object],
        transaction: _Transaction | None,
        now: datetime,
        *,
        use_running: bool = True,
    ) -> list[Reading]:
        """Map meterValue entries; SessionEnergy for ``transaction``, else (when
        ``use_running``) for the transaction running on the connector."""
        state = self._connector_state(connector)
        charger = self._charger(connector)
        readings: list[Reading] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                self.dropped_values += 1
                continue
            at = self._moment(entry.get("timestamp"), now)
            try:
                sampled = _entries(entry.get("sampledValue"), "sampledValue", MAX_SAMPLED_VALUES)
            except MappingError:
                self.dropped_values += 1
                continue
            sample = _Sample()
            for raw in sampled:
                self._read_sampled_value(raw, sample)
            running = transaction
            if running is None and use_running and state.transaction is not None:
                running = self._transactions.get(state.transaction)
            readings += self._sample_readings(charger, state, sample, running, at)
        return _unique(readings)

    def _read_sampled_value(self, raw: object, sample: _Sample) -> None:
        if not isinstance(raw, Mapping):
            self.dropped_values += 1
            return
        fmt = raw.get("format")
        if fmt == "SignedData":
            return
        measurand = raw.get("measurand", _ENERGY)
        location = raw.get("location")
        context = raw.get("context")
        phase = raw.get("phase")
        unit = raw.get("unit")
        if (
            fmt not in (None, "Raw")
            or not isinstance(measurand, str)
            or not (location is None or (isinstance(location, str) and location in _LOCATIONS))
            or not (context is None or (isinstance(context, str) and context in _CONTEXTS))
            or not (phase is None or (isinstance(phase, str) and phase in _PHASES))
            or not (unit is None or isinstance(unit, str))
        ):
            self.dropped_values += 1
            return
        units = _UNITS.get(measurand)
        if units is None:
            return  # a measurand chargelift does not map
        if measurand != _SOC and location not in (None, "Outlet"):
            return  # measured elsewhere than where the vehicle is supplied
        factor = units.get(unit)
        value = None if factor is None else _decimal(raw.get("value"), factor)
        if value is None:
            self.dropped_values += 1
            return
        if measurand == _ENERGY:
            if phase is None:
                sample.energy = value
        elif measurand == _POWER:
            if phase is None:
                sample.power = value
        elif measurand == _CURRENT:
            if phase is None:
                sample.current_unphased = value
            elif phase in ("L1", "L2", "L3"):
                sample.current[phase] = value
        elif measurand == _VOLTAGE:
            if phase is None:
                sample.voltage_unphased = value
            elif phase in _PHASE_OF:
                sample.voltage[_PHASE_OF[phase]] = value
        else:
            sample.soc = value

    def _sample_readings(
        self,
        charger: str,
        state: _Connector,
        sample: _Sample,
        transaction: _Transaction | None,
        at: datetime,
    ) -> list[Reading]:
        numbers: list[tuple[str, float]] = []
        if sample.power is not None:
            numbers.append(("PowerOutput", sample.power))
        for phase, amps in sorted(sample.current.items()):
            numbers.append((f"OutputCurrent{phase}", amps))
        if sample.current:
            numbers.append(("OutputCurrent", max(sample.current.values())))
        elif sample.current_unphased is not None:
            numbers.append(("OutputCurrent", sample.current_unphased))
        voltage = dict(sample.voltage)
        if sample.voltage_unphased is not None:
            voltage.setdefault("L1", sample.voltage_unphased)
        for phase, volts in sorted(voltage.items()):
            numbers.append((f"Voltage{phase}", volts))
        if sample.soc is not None:
            numbers.append(("StateOfCharge", sample.soc))
        readings: list[Reading] = []
        for name, value in numbers:
            if _in_bounds(name, value):
                readings.append(Reading(charger, name, _number(value), at))
            else:
                self.dropped_values += 1
        if sample.energy is not None:
            readings += self._energy_readings(charger, state, sample.energy, transaction, at)
        return readings

    def _energy_readings(
        self,
        charger: str,
        state: _Connector,
        register: float,
        transaction: _Transaction | None,
        at: datetime,
    ) -> list[Reading]:
        if not _in_bounds("TotalEnergyConsumption", register):
            self.dropped_values += 1
            return []
        verdict, _ = self._offer(state, register, at, transaction)
        if verdict not in (_Verdict.ACCEPTED, _Verdict.CONFIRMED):
            return []
        readings = [Reading(charger, "TotalEnergyConsumption", _number(register), at)]
        if transaction is not None and transaction.covers(at):
            # to the mWh: a register in kWh is a binary float ("5.15" kWh - 5000 Wh is 150.0000...2)
            session = round(register - (transaction.meter_start + transaction.offset), 3)
            if _in_bounds("SessionEnergy", session):
                readings.append(Reading(charger, "SessionEnergy", _number(session), at))
        return readings


def _payload(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise MappingError(f"payload is {type(payload).__name__}, not an object")
    return payload


def _entries(raw: object, name: str, limit: int) -> Sequence[object]:
    if not isinstance(raw, list | tuple):
        raise MappingError(f"{name} is {type(raw).__name__}, not an array")
    if len(raw) > limit:
        raise MappingError(f"{name} has {len(raw)} entries (at most {limit})")
    return raw


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _shown(raw: object) -> str:
    """A hostile value, short, for an error message (never a huge repr)."""
    if isinstance(raw, str):
        return quoted(raw)
    if isinstance(raw, bool | float) or (isinstance(raw, int) and abs(raw) < 2**63):
        return repr(raw)
    return f"a value of type {type(raw).__name__}"


def _unique(readings: Iterable[Reading]) -> list[Reading]:
    """One reading per (charger, field, time): the last one said wins."""
    by_key: dict[tuple[str, str, datetime], Reading] = {}
    for reading in readings:
        key = (reading.charger, reading.field, reading.sampled_at)
        by_key.pop(key, None)
        by_key[key] = reading
    return list(by_key.values())
